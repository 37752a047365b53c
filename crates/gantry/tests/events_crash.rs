//! `gantry server` as a process, SIGKILLed while an accepted event's
//! delivery is still pending: after the restart the event is delivered.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{EVENTS, Running};

mod support;

const AKID: &str = "GANTRYEVENTSCRASH";
const SECRET: &str = "events/crash+Secret=0123456789abcdef";

fn start(data_dir: &Path) -> Running {
    support::start(data_dir, (AKID, SECRET))
}

fn call(addr: &str, operation: &str, input: &Value) -> (u16, Value) {
    support::call(addr, (AKID, SECRET), EVENTS, operation, input).expect("server reachable")
}

/// A receiver on a thread: records (status answered, body) of each request.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(u16, String)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(503));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (status.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let body = read_request(&mut stream);
                let code = s.load(Ordering::SeqCst);
                v.lock().expect("lock").push((code, body));
                let _ = stream.write_all(
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Receiver { url, status, seen }
    }

    fn seen(&self) -> Vec<(u16, String)> {
        self.seen.lock().expect("lock").clone()
    }
}

fn read_request(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
            }
        }
    }
    String::new()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_pending_delivery_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    let mut first = start(&data);
    let addr = first.addr.clone();
    let (status, out) = call(
        &addr,
        "PutRule",
        &json!({"Name": "r", "EventPattern": r#"{"source": ["crash.test"]}"#}),
    );
    assert_eq!(status, 200, "{out}");
    let (status, out) = call(
        &addr,
        "PutTargets",
        &json!({"Rule": "r", "Targets": [{"Id": "t", "Arn": receiver.url}]}),
    );
    assert_eq!(
        (status, out["FailedEntryCount"].clone()),
        (200, json!(0)),
        "{out}"
    );
    let (status, out) = call(
        &addr,
        "PutEvents",
        &json!({"Entries": [{"Source": "crash.test", "DetailType": "t", "Detail": "{\"n\": 1}"}]}),
    );
    assert_eq!(status, 200, "{out}");
    let id = out["Entries"][0]["EventId"]
        .as_str()
        .expect("id")
        .to_owned();
    // The receiver refuses (503): the delivery stays pending, retried later.
    wait_for("a first attempt", || !receiver.seen().is_empty());
    first.child.kill().expect("kill");
    first.child.wait().expect("wait");

    receiver.status.store(200, Ordering::SeqCst);
    let mut second = start(&data);
    wait_for("delivery after the restart", || {
        receiver.seen().iter().any(|(code, _)| *code == 200)
    });
    let (_, body) = receiver
        .seen()
        .into_iter()
        .find(|(code, _)| *code == 200)
        .expect("delivered");
    let event: Value = serde_json::from_str(&body).expect("event JSON");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["detail"]["n"], 1);
    second.child.kill().expect("kill");
    second.child.wait().expect("wait");
}
