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
//!
//! A finished build's log is one object in the artifact store (see
//! `build_logs`), the same text; a reader at an offset in it reads a byte
//! range. A reader that finds no new line in the database looks for the
//! object, so a log moved while it is being read is followed across.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gantry_artifacts::ArtifactStore;
use gantry_store::{LogArchive, Store, StoreError};
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

/// Bytes of an archived log per event of a live stream (about the size of
/// [`BATCH`] lines).
const STREAM_CHUNK: u64 = 16 << 10;

/// Bytes of an archived log per ranged read for a text response.
const TEXT_CHUNK: u64 = 4 << 20;

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
    /// Set once the log is found in the artifact store: reads go there.
    archived: Option<LogArchive>,
}

impl Cursor {
    /// A cursor at `offset`; refused when the offset lies past the text
    /// written so far or inside a UTF-8 character (no offset this API hands
    /// out does either).
    async fn at<S: Store>(
        store: &S,
        objects: &ArtifactStore,
        build: &str,
        offset: u64,
    ) -> Result<Cursor, RestError> {
        if let Some(archive) = store.log_archive(build).await? {
            return Cursor::in_archive(objects, build, archive, offset).await;
        }
        let seek = store.log_seek(build, offset).await?;
        let skip = usize::try_from(offset - seek.line_start).unwrap_or(usize::MAX);
        let next = store.log_lines(build, seek.after_seq, 1).await?;
        match next.first() {
            None if skip > 0 => {
                // The lines may have moved to the artifact store since.
                if let Some(archive) = store.log_archive(build).await? {
                    return Cursor::in_archive(objects, build, archive, offset).await;
                }
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
            archived: None,
        })
    }

    /// A cursor at `offset` in an archived log, refused as [`Cursor::at`]
    /// refuses.
    async fn in_archive(
        objects: &ArtifactStore,
        build: &str,
        archive: LogArchive,
        offset: u64,
    ) -> Result<Cursor, RestError> {
        if offset > archive.size_bytes {
            return Err(RestError::invalid_input(format!(
                "Offset {offset} is past the end of the log ({} bytes so far)",
                archive.size_bytes
            )));
        }
        if offset < archive.size_bytes {
            let byte = crate::build_logs::read_range(objects, &archive, offset..offset + 1).await?;
            // 0b10xx_xxxx is a continuation byte: the middle of a character.
            if byte.first().is_some_and(|b| b & 0xC0 == 0x80) {
                return Err(RestError::invalid_input(format!(
                    "Offset {offset} falls inside a UTF-8 character"
                )));
            }
        }
        Ok(Cursor {
            build: build.to_owned(),
            after_seq: 0,
            skip: 0,
            offset,
            archived: Some(archive),
        })
    }

    /// The text after the cursor, up to [`BATCH`] lines (from an archived
    /// log, about `max_bytes`); `None` when no new line was written.
    async fn next_chunk<S: Store>(
        &mut self,
        store: &S,
        objects: &ArtifactStore,
        max_bytes: u64,
    ) -> Result<Option<String>, StoreError> {
        if let Some(archive) = &self.archived {
            if self.offset >= archive.size_bytes {
                return Ok(None);
            }
            let chunk =
                crate::build_logs::read_text(objects, archive, self.offset, max_bytes).await?;
            self.offset += chunk.len() as u64;
            return Ok((!chunk.is_empty()).then_some(chunk));
        }
        let lines = store.log_lines(&self.build, self.after_seq, BATCH).await?;
        let Some(last) = lines.last() else {
            // Nothing new in the database: the build may have ended and
            // its log moved; the object holds the same text, so the reader
            // carries on at the same offset.
            if let Some(archive) = store.log_archive(&self.build).await? {
                self.archived = Some(archive);
                self.skip = 0;
                return Box::pin(self.next_chunk(store, objects, max_bytes)).await;
            }
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
    let objects = state.runner.objects.clone();
    let cursor = Cursor::at(state.store.as_ref(), &objects, &id, offset).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_stream {
        let signals = Signals {
            written: state.runner.log_changes(),
            closing: state.closing.subscribe(),
        };
        Ok(stream(state.store.clone(), objects, cursor, signals).into_response())
    } else {
        text(state.store.as_ref(), &objects, cursor).await
    }
}

/// The text after the cursor as it stands now.
async fn text<S: Store>(
    store: &S,
    objects: &ArtifactStore,
    mut cursor: Cursor,
) -> Result<Response, RestError> {
    let mut out = String::new();
    while let Some(chunk) = cursor.next_chunk(store, objects, TEXT_CHUNK).await? {
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
    objects: ArtifactStore,
    cursor: Cursor,
    signals: Signals,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(
        (store, Phase::Following(cursor), signals),
        move |(store, phase, mut signals)| {
            let objects = objects.clone();
            async move {
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
                    match next_event(store.as_ref(), &objects, &mut cursor).await {
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
    objects: &ArtifactStore,
    cursor: &mut Cursor,
) -> Result<Option<(Event, bool)>, RestError> {
    let status = build_status(store, &cursor.build).await?;
    if let Some(chunk) = cursor.next_chunk(store, objects, STREAM_CHUNK).await? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::{BuildStore, BuildUpdate, NewBuild, NewProject};
    use serde_json::json;

    async fn read_all(
        store: &gantry_store::SqliteStore,
        objects: &ArtifactStore,
        offset: u64,
    ) -> String {
        let mut cursor = Cursor::at(store, objects, "web:1", offset)
            .await
            .map_err(|e| e.message)
            .expect("cursor");
        let mut out = String::new();
        while let Some(chunk) = cursor.next_chunk(store, objects, 7).await.expect("chunk") {
            out.push_str(&chunk);
        }
        out
    }

    /// The move of a finished log: object first, then the pointer and the
    /// row deletion. Readers see the same text before, in between (a crash
    /// there) and after, and one reading across the move misses nothing.
    #[tokio::test]
    async fn a_log_reads_the_same_before_during_and_after_its_move() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = gantry_store::MasterKey::load_or_create(&dir.path().join("k")).expect("key");
        let store = gantry_store::SqliteStore::open(&dir.path().join("db"), key)
            .await
            .expect("store");
        let objects = ArtifactStore::local(dir.path().join("objects")).expect("objects");
        store
            .create_project(
                &NewProject {
                    name: "web".into(),
                    project: json!({"name": "web"}),
                },
                "test",
            )
            .await
            .expect("project");
        store
            .create_build(
                &NewBuild {
                    id: "web:1".into(),
                    project: "web".into(),
                    status: "IN_PROGRESS".into(),
                    current_phase: "BUILD".into(),
                    build: json!({}),
                    overrides: json!({}),
                    start_ms: 1,
                },
                "test",
            )
            .await
            .expect("build");
        let lines: Vec<String> = ["first", "ünïcödé line", "", "\r and more", "last"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let full: String = lines.iter().map(|l| format!("{l}\n")).collect();
        store
            .append_log_lines("web:1", &lines[..2])
            .await
            .expect("append");
        // A reader part-way through, in the database, while the build runs.
        let mut follower = Cursor::at(&store, &objects, "web:1", 3)
            .await
            .map_err(|e| e.message)
            .expect("cursor");
        let first = follower
            .next_chunk(&store, &objects, 7)
            .await
            .expect("chunk")
            .expect("text");
        assert_eq!(first, full[3..lines[0].len() + lines[1].len() + 2]);
        store
            .append_log_lines("web:1", &lines[2..])
            .await
            .expect("append");
        assert_eq!(read_all(&store, &objects, 0).await, full);

        store
            .update_build(
                "web:1",
                &BuildUpdate {
                    status: "SUCCEEDED".into(),
                    current_phase: "COMPLETED".into(),
                    build: json!({}),
                    end_ms: Some(2),
                },
                "system",
            )
            .await
            .expect("end");
        // A crash after the object was written: the rows are still there
        // and the object is not recorded; readers use the rows.
        objects
            .put_named(
                &crate::build_logs::object_key("web:1"),
                full.clone().into_bytes(),
            )
            .await
            .expect("put");
        assert_eq!(read_all(&store, &objects, 0).await, full);
        assert_eq!(
            store.builds_with_unarchived_logs(10).await.expect("q"),
            ["web:1"]
        );

        // The sweep (the next start) finishes the move.
        assert_eq!(crate::build_logs::sweep(&store, &objects).await, 1);
        assert!(
            store
                .log_lines("web:1", 0, 100)
                .await
                .expect("q")
                .is_empty()
        );
        let archive = store
            .log_archive("web:1")
            .await
            .expect("q")
            .expect("archived");
        assert_eq!(archive.size_bytes, full.len() as u64);
        assert_eq!(archive.line_count, lines.len() as u64);
        assert_eq!(
            crate::build_logs::read_range(&objects, &archive, 0..archive.size_bytes)
                .await
                .expect("get"),
            full.as_bytes()
        );
        assert_eq!(crate::build_logs::sweep(&store, &objects).await, 0);

        // Every offset on a character boundary reads the rest; others are
        // refused as before.
        for offset in 0..=full.len() {
            let at = Cursor::at(&store, &objects, "web:1", offset as u64).await;
            if full.is_char_boundary(offset) {
                assert_eq!(
                    read_all(&store, &objects, offset as u64).await,
                    full[offset..]
                );
            } else {
                assert!(at.is_err(), "offset {offset} is inside a character");
            }
        }
        assert!(
            Cursor::at(&store, &objects, "web:1", full.len() as u64 + 1)
                .await
                .is_err()
        );

        // The reader that started in the database carries on in the object.
        let mut rest = String::new();
        while let Some(chunk) = follower
            .next_chunk(&store, &objects, 7)
            .await
            .expect("chunk")
        {
            rest.push_str(&chunk);
        }
        assert_eq!(format!("{first}{rest}"), full[3..]);
        assert_eq!(follower.offset, full.len() as u64);
    }
}
