//! `GET /builds/{id}/logs`: a build's log as text, or live over
//! Server-Sent Events.
//!
//! The log text is the stored lines, each followed by `\n`; offsets are
//! byte offsets into it. A reader starts at `Last-Event-ID` (what an
//! EventSource sends when it reconnects) or `?offset=N`, else 0, and gets
//! exactly the bytes after it. Each `log` event's data is the new text as a
//! JSON string (one line on the wire, whatever the log holds, `\r`
//! included) and its `id` the offset after it; once the build is complete
//! and every byte was sent, an `end` event carries the build status.
//!
//! A stream wakes when the build runner stores lines or records a build's
//! end (a counter it bumps), waits [`COALESCE`] so a burst of small writes
//! is read at once, and reads only the lines after the last one sent. It
//! also looks every [`POLL`] without a wake-up, for lines written by
//! anything else (the store is the only truth).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gantry_store::{Store, StoreError};
use serde_json::json;
use tokio::sync::watch;

use super::{RestError, RestPath, query_param};
use crate::router::AppState;

/// How often a live stream looks for new lines when nothing woke it.
const POLL: Duration = Duration::from_secs(2);

/// How long a woken stream waits for more writes before reading.
const COALESCE: Duration = Duration::from_millis(50);

/// Lines read from the store at a time.
const BATCH: u32 = 1000;

/// The response header with the offset after the text returned.
pub(crate) const OFFSET_HEADER: &str = "x-gantry-log-offset";

/// A position in a build's log text, moving forward as lines are read.
struct Cursor {
    build: String,
    /// The last line read (or skipped whole).
    after_seq: u64,
    /// Bytes of the next line already seen by the reader.
    skip: usize,
    /// The byte offset of the reader's position.
    offset: u64,
}

impl Cursor {
    /// A cursor at `offset`; refused when the offset lies past the text
    /// written so far or inside a UTF-8 character (no offset this API hands
    /// out does either).
    async fn at<S: Store>(store: &S, build: &str, offset: u64) -> Result<Cursor, RestError> {
        let seek = store.log_seek(build, offset).await?;
        let skip = usize::try_from(offset - seek.line_start).unwrap_or(usize::MAX);
        let next = store.log_lines(build, seek.after_seq, 1).await?;
        match next.first() {
            None if skip > 0 => {
                return Err(RestError::invalid_input(format!(
                    "Offset {offset} is past the end of the log ({} bytes so far)",
                    seek.line_start
                )));
            }
            Some(line) if skip > 0 && !line.text.is_char_boundary(skip) => {
                return Err(RestError::invalid_input(format!(
                    "Offset {offset} falls inside a UTF-8 character"
                )));
            }
            _ => {}
        }
        Ok(Cursor {
            build: build.to_owned(),
            after_seq: seek.after_seq,
            skip,
            offset,
        })
    }

    /// The text after the cursor, up to [`BATCH`] lines; `None` when no
    /// new line was written.
    async fn next_chunk<S: Store>(&mut self, store: &S) -> Result<Option<String>, StoreError> {
        let lines = store.log_lines(&self.build, self.after_seq, BATCH).await?;
        let Some(last) = lines.last() else {
            return Ok(None);
        };
        self.after_seq = last.seq;
        let mut text = String::new();
        for line in &lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        // `at` checked the boundary for the first line; later chunks start
        // on a line.
        let chunk = text.get(self.skip..).unwrap_or_default().to_owned();
        self.skip = 0;
        self.offset += chunk.len() as u64;
        Ok(Some(chunk))
    }
}

/// The offset to start from: `Last-Event-ID`, else `?offset`, else 0.
fn start_offset(headers: &HeaderMap, uri: &Uri) -> Result<u64, RestError> {
    let (name, text) = match headers.get("last-event-id") {
        Some(v) => (
            "Last-Event-ID",
            v.to_str().unwrap_or("(not text)").trim().to_owned(),
        ),
        None => match query_param(uri, "offset") {
            Some(v) => ("offset", v),
            None => return Ok(0),
        },
    };
    text.parse::<u64>().map_err(|_| {
        RestError::invalid_input(format!(
            "{name} must be a byte offset (a non-negative integer), not '{text}'"
        ))
    })
}

/// The build's status, or NotFound.
async fn build_status<S: Store>(store: &S, id: &str) -> Result<String, RestError> {
    match store.get_builds(&[id.to_owned()]).await?.into_iter().next() {
        Some(b) => Ok(b.status),
        None => Err(RestError::not_found(format!("Build {id} was not found"))),
    }
}

pub(super) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    RestPath(id): RestPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let offset = start_offset(&headers, &uri)?;
    build_status(state.store.as_ref(), &id).await?;
    let cursor = Cursor::at(state.store.as_ref(), &id, offset).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_stream {
        let signals = Signals {
            written: state.runner.log_changes(),
            closing: state.closing.subscribe(),
        };
        Ok(stream(state.store.clone(), cursor, signals).into_response())
    } else {
        text(state.store.as_ref(), cursor).await
    }
}

/// The text after the cursor as it stands now.
async fn text<S: Store>(store: &S, mut cursor: Cursor) -> Result<Response, RestError> {
    let mut out = String::new();
    while let Some(chunk) = cursor.next_chunk(store).await? {
        out.push_str(&chunk);
    }
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::HeaderName::from_static(OFFSET_HEADER),
                cursor.offset.to_string(),
            ),
        ],
        out,
    )
        .into_response())
}

/// Where a live stream is.
enum Phase {
    Following(Cursor),
    Ended,
}

/// What wakes a live stream: log writes, and the server closing.
struct Signals {
    written: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
}

/// Resolves once the server is closing (or the signal is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held in a stream.
    let _ = closing.wait_for(|c| *c).await;
}

/// The live stream: new text as it is written, then `end`.
fn stream<S: Store>(
    store: Arc<S>,
    cursor: Cursor,
    signals: Signals,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(
        (store, Phase::Following(cursor), signals),
        |(store, phase, mut signals)| async move {
            let Phase::Following(mut cursor) = phase else {
                return None;
            };
            loop {
                // A server shutting down ends the stream without `end`;
                // the client resumes from its last id elsewhere or later.
                if *signals.closing.borrow() {
                    return None;
                }
                // Marked seen before the store is read: a write after this
                // point wakes the wait below.
                signals.written.borrow_and_update();
                match next_event(store.as_ref(), &mut cursor).await {
                    Ok(Some((event, true))) => {
                        return Some((Ok(event), (store, Phase::Ended, signals)));
                    }
                    Ok(Some((event, false))) => {
                        return Some((Ok(event), (store, Phase::Following(cursor), signals)));
                    }
                    Ok(None) => {
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => {}
                            Ok(()) = signals.written.changed() => {
                                tokio::time::sleep(COALESCE).await;
                            }
                            () = closed(&mut signals.closing) => return None,
                        }
                    }
                    Err(e) => {
                        tracing::error!(build = %cursor.build, error = %e.message, "streaming a log failed");
                        let event = Event::default().event("error").data(
                            json!({ "message": "reading the log failed; reconnect to resume" })
                                .to_string(),
                        );
                        return Some((Ok(event), (store, Phase::Ended, signals)));
                    }
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The next event, `true` when it is the last; `None` when there is
/// nothing yet. The status is read before the lines: a build recorded as
/// complete has all its lines written (the worker flushes them first), so
/// an empty read after it means the end.
async fn next_event<S: Store>(
    store: &S,
    cursor: &mut Cursor,
) -> Result<Option<(Event, bool)>, RestError> {
    let status = build_status(store, &cursor.build).await?;
    if let Some(chunk) = cursor.next_chunk(store).await? {
        let event = Event::default()
            .event("log")
            .id(cursor.offset.to_string())
            .data(json!(chunk).to_string());
        return Ok(Some((event, false)));
    }
    if status != "IN_PROGRESS" {
        let event = Event::default()
            .event("end")
            .id(cursor.offset.to_string())
            .data(json!({ "status": status, "offset": cursor.offset }).to_string());
        return Ok(Some((event, true)));
    }
    Ok(None)
}
