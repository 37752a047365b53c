//! `gantry logs BUILD_ID [-f]`: a build's log. With `-f` it follows the
//! server's Server-Sent Events stream until the build ends, reconnecting
//! from the last byte offset received (`Last-Event-ID`) when the
//! connection drops, so nothing is printed twice or skipped.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::client::{Client, Failure, ServerArgs, block_on, print_json, segment};

/// Reconnections in a row without receiving an event before giving up.
const MAX_RECONNECTS: u32 = 10;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The build's id (PROJECT:UUID).
    build_id: String,
    /// Follow the log until the build ends.
    #[arg(short = 'f', long)]
    follow: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: LogsArgs) -> ExitCode {
    block_on("logs", logs(args))
}

async fn logs(args: LogsArgs) -> Result<(), Failure> {
    let client = Client::from_env(&args.server)?;
    let path = format!("/builds/{}/logs", segment(&args.build_id));
    if args.follow {
        return follow(&client, &path, args.server.json).await;
    }
    let response = client.send(reqwest::Method::GET, &path, None, &[]).await?;
    let offset = response
        .headers()
        .get("x-gantry-log-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let text = response
        .text()
        .await
        .map_err(|e| Failure::Request(format!("reading the log failed: {e}")))?;
    if args.server.json {
        print_json(&json!({ "text": text, "offset": offset }));
    } else {
        print!("{text}");
    }
    Ok(())
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events as they complete.
#[derive(Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    /// Adds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        // CR LF and lone CR end lines too; the data here is JSON, which
        // never holds a raw CR, so dropping them is safe.
        self.pending
            .extend(bytes.iter().copied().filter(|&b| b != b'\r'));
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.pending.drain(..end + 2).collect();
            if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                events.push(event);
            }
        }
        events
    }
}

/// An event block; `None` for comments and blocks without data.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        event: "message".into(),
        id: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}

/// What the follower does after an event.
enum Next {
    Continue,
    Ended,
}

/// Prints one event; `offset` moves to the event's id.
fn handle(event: &SseEvent, offset: &mut u64, json_out: bool) -> Result<Next, Failure> {
    match event.event.as_str() {
        "log" => {
            let text: String = serde_json::from_str(&event.data).map_err(|e| {
                Failure::Request(format!(
                    "the server sent a log event that is not a JSON string: {e}"
                ))
            })?;
            if let Some(id) = event.id.as_deref().and_then(|i| i.parse().ok()) {
                *offset = id;
            }
            if json_out {
                println!("{}", json!({ "offset": *offset, "text": text }));
            } else {
                print!("{text}");
            }
            let _ = std::io::stdout().flush();
            Ok(Next::Continue)
        }
        "end" => {
            let end: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            let status = end["status"].as_str().unwrap_or("unknown");
            if json_out {
                println!(
                    "{}",
                    json!({ "end": true, "status": status, "offset": *offset })
                );
            } else {
                eprintln!("build ended: {status}");
            }
            Ok(Next::Ended)
        }
        // `error` (the server could not read the log) and unknown events:
        // reconnecting from the offset is the remedy for both.
        _ => Ok(Next::Continue),
    }
}

/// Follows the stream to its `end` event, reconnecting after drops.
async fn follow(client: &Client, path: &str, json_out: bool) -> Result<(), Failure> {
    let mut offset: u64 = 0;
    let mut failures: u32 = 0;
    loop {
        let resume = offset.to_string();
        let mut headers = vec![("accept", "text/event-stream")];
        if offset > 0 {
            headers.push(("last-event-id", resume.as_str()));
        }
        let mut response = match client
            .send(reqwest::Method::GET, path, None, &headers)
            .await
        {
            Ok(r) => r,
            Err(Failure::Unreachable(m)) if failures < MAX_RECONNECTS => {
                failures += 1;
                eprintln!("gantry logs: {m}; reconnecting from byte {offset}");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut parser = SseParser::default();
        // Ended or dropped before `end`: resume from the offset.
        while let Ok(Some(bytes)) = response.chunk().await {
            for event in parser.push(&bytes) {
                failures = 0;
                if let Next::Ended = handle(&event, &mut offset, json_out)? {
                    return Ok(());
                }
            }
        }
        failures += 1;
        if failures > MAX_RECONNECTS {
            return Err(Failure::Request(format!(
                "the log stream kept ending early; stopped at byte {offset}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunk_boundaries() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: log\nid: 6\nda").is_empty());
        let events = p.push(b"ta: \"hello\\n\"\n\nevent: end\r\nid: 6\r\ndata: {}\r\n\r\n");
        assert_eq!(
            events,
            [
                SseEvent {
                    event: "log".into(),
                    id: Some("6".into()),
                    data: "\"hello\\n\"".into()
                },
                SseEvent {
                    event: "end".into(),
                    id: Some("6".into()),
                    data: "{}".into()
                },
            ]
        );
        let mut offset = 0;
        assert!(matches!(
            handle(&events[0], &mut offset, true),
            Ok(Next::Continue)
        ));
        assert_eq!(offset, 6);
        assert!(matches!(
            handle(&events[1], &mut offset, true),
            Ok(Next::Ended)
        ));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        let e = p.push(b"data: a\ndata: b\n\n");
        assert_eq!(e[0].data, "a\nb");
        assert_eq!(e[0].event, "message");
    }
}
