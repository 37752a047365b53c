//! What the process-level server tests share: starting `gantry server` as a
//! child process with a known admin key, and signed AWS JSON calls to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use gantry_aws::{Credentials, RequestParts, SigningParams};
use serde_json::Value;

/// A `gantry server` child process and the address it listens on.
pub struct Running {
    pub child: Child,
    pub addr: String,
}

impl Running {
    /// SIGKILL, and reap the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gantry server` on port 0 over `data_dir` with `key` as the
/// admin key, and waits for its address.
pub fn start(data_dir: &Path, key: (&str, &str)) -> Running {
    start_with_args(data_dir, key, &[])
}

/// Like [`start`], with more `gantry server` arguments.
pub fn start_with_args(data_dir: &Path, key: (&str, &str), extra: &[&str]) -> Running {
    launch(data_dir, key, "127.0.0.1:0", extra)
}

/// Like [`start`], listening on `listen` (e.g. the port of a server that
/// was killed, to restart it where its clients expect it).
pub fn start_on(data_dir: &Path, key: (&str, &str), listen: &str) -> Running {
    launch(data_dir, key, listen, &[])
}

fn launch(data_dir: &Path, key: (&str, &str), listen: &str, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["server", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("GANTRY_ADMIN_ACCESS_KEY_ID", key.0)
        .env("GANTRY_ADMIN_SECRET_ACCESS_KEY", key.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gantry server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keeps reading after the address is known, so the server never
        // blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let address = rx.recv_timeout(left).ok().map(|line| {
            line.split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        });
        match address {
            Some(Some(addr)) => return Running { child, addr },
            Some(None) => {}
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not print its address within 60 s");
            }
        }
    }
}

/// An AWS service as the JSON protocol addresses it.
#[derive(Clone, Copy)]
pub struct Service {
    /// `X-Amz-Target` prefix, e.g. `CodePipeline_20150709`.
    pub target: &'static str,
    /// The SigV4 signing name, e.g. `codepipeline`.
    pub signing_name: &'static str,
    /// `application/x-amz-json-1.1` or `-1.0`.
    pub content_type: &'static str,
}

pub const CODEPIPELINE: Service = Service {
    target: "CodePipeline_20150709",
    signing_name: "codepipeline",
    content_type: "application/x-amz-json-1.1",
};

pub const CODEBUILD: Service = Service {
    target: "CodeBuild_20161006",
    signing_name: "codebuild",
    content_type: "application/x-amz-json-1.1",
};

pub const STEP_FUNCTIONS: Service = Service {
    target: "AWSStepFunctions",
    signing_name: "states",
    content_type: "application/x-amz-json-1.0",
};

pub const EVENTS: Service = Service {
    target: "AWSEvents",
    signing_name: "events",
    content_type: "application/x-amz-json-1.1",
};

/// A signed call; `None` when the server is not reachable.
pub fn call(
    addr: &str,
    key: (&str, &str),
    service: Service,
    operation: &str,
    input: &Value,
) -> Option<(u16, Value)> {
    let body = serde_json::to_vec(input).expect("json");
    let target = format!("{}.{operation}", service.target);
    let unsigned = RequestParts::new("POST", "/")
        .header("Host", addr)
        .header("Content-Type", service.content_type)
        .header("X-Amz-Target", &target)
        .body(&body);
    let creds = Credentials::new(key.0, key.1);
    let params = SigningParams {
        credentials: &creds,
        region: "us-east-1",
        service: service.signing_name,
        time: SystemTime::now(),
    };
    let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {}\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\n",
        service.content_type,
        body.len()
    );
    for (n, v) in signed.pairs() {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(&body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let value = serde_json::from_slice(&response[split + 4..]).ok()?;
    Some((status, value))
}

/// Runs `git` in `dir` with a fixed author; panics when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A bare repository `origin.git` under `root` whose `main` holds
/// `version.txt`; returns its `file://` URL.
pub fn repository(root: &Path) -> String {
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("dir");
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("version.txt"), "1").expect("file");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(root, &["clone", "-q", "--bare", "work", "origin.git"]);
    format!("file://{}", root.join("origin.git").display())
}
