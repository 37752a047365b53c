//! What the benchmarks that need a server share: a `gantry server` run in
//! this process on its own runtime, and signed AWS JSON calls to it over
//! plain blocking sockets (the benchmark thread plays the client).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use gantry_aws::{Credentials, RequestParts, SigningParams};
use serde_json::Value;

/// The admin key the benchmark servers are given.
pub(crate) const AKID: &str = "GANTRYBENCH";
pub(crate) const SECRET: &str = "bench/Secret+Key=0123456789abcdef0123";

/// A server on 127.0.0.1, in this process, with a runtime of its own.
pub(crate) struct InProcessServer {
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), gantry_server::ServerError>>,
}

impl InProcessServer {
    /// Starts a server on `data`, with the configuration adjusted first;
    /// returns once it accepts connections.
    pub fn start(
        data: &Path,
        adjust: impl FnOnce(&mut gantry_server::Config),
    ) -> Result<InProcessServer, String> {
        let mut config = gantry_server::Config::new(data);
        config.admin_key = Some((AKID.into(), SECRET.into()));
        adjust(&mut config);
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(gantry_server::launch_with_tcp_listener(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        let ready = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > ready {
                return Err("the server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(InProcessServer {
            addr,
            runtime,
            stop,
            task,
        })
    }

    /// Stops the server and waits for it.
    pub fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.runtime
            .block_on(self.task)
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// One HTTP/1.1 request to the server; (status, body).
pub(crate) fn http(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, response[split + 4..].to_vec()))
}

/// A signed AWS JSON 1.1 call that must succeed.
pub(crate) fn aws(
    addr: SocketAddr,
    service: &str,
    prefix: &str,
    operation: &str,
    input: &Value,
) -> Result<Value, String> {
    aws_json(
        addr,
        service,
        prefix,
        "application/x-amz-json-1.1",
        operation,
        input,
    )
}

/// A signed AWS JSON call with the service's content type (Step Functions
/// speaks JSON 1.0) that must succeed, on a connection of its own.
pub(crate) fn aws_json(
    addr: SocketAddr,
    service: &str,
    prefix: &str,
    content_type: &str,
    operation: &str,
    input: &Value,
) -> Result<Value, String> {
    let (headers, body) = signed(addr, service, prefix, content_type, operation, input)?;
    let (status, out) = http(addr, "/", &headers, &body)?;
    answer(operation, status, &out)
}

/// Request headers, as (name, value).
type Headers = Vec<(String, String)>;

/// The headers and body of a signed AWS JSON call.
fn signed(
    addr: SocketAddr,
    service: &str,
    prefix: &str,
    content_type: &str,
    operation: &str,
    input: &Value,
) -> Result<(Headers, Vec<u8>), String> {
    let body = serde_json::to_vec(input).map_err(|e| e.to_string())?;
    let host = addr.to_string();
    let target = format!("{prefix}.{operation}");
    let unsigned = RequestParts::new("POST", "/")
        .header("Host", &host)
        .header("Content-Type", content_type)
        .header("X-Amz-Target", &target)
        .body(&body);
    let creds = Credentials::new(AKID, SECRET);
    let params = SigningParams {
        credentials: &creds,
        region: "us-east-1",
        service,
        time: SystemTime::now(),
    };
    let signed = gantry_aws::sign(&unsigned, &params).map_err(|e| e.to_string())?;
    let mut headers = vec![
        ("Content-Type".to_owned(), content_type.to_owned()),
        ("X-Amz-Target".to_owned(), target),
    ];
    for (n, v) in signed.pairs() {
        headers.push((n.to_owned(), v.to_owned()));
    }
    Ok((headers, body))
}

fn answer(operation: &str, status: u16, out: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(out).unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!("{operation}: {status} {value}"));
    }
    Ok(value)
}

/// A client's connection to the server kept open from one call to the
/// next, as the AWS SDKs keep theirs: a connection per call would have
/// the server accept, set up and tear down one for every call, which no
/// SDK client makes it do.
pub(crate) struct Connection {
    addr: SocketAddr,
    stream: Option<std::io::BufReader<TcpStream>>,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Connection {
        Connection { addr, stream: None }
    }

    /// A signed AWS JSON 1.1 call that must succeed.
    pub fn aws(
        &mut self,
        service: &str,
        prefix: &str,
        operation: &str,
        input: &Value,
    ) -> Result<Value, String> {
        let (headers, body) = signed(
            self.addr,
            service,
            prefix,
            "application/x-amz-json-1.1",
            operation,
            input,
        )?;
        let sent = self.post("/", &headers, &body);
        if sent.is_err() {
            // Whatever the connection was in the middle of, it is not
            // reused.
            self.stream = None;
        }
        let (status, out) = sent?;
        answer(operation, status, &out)
    }

    fn post(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        use std::io::BufRead;
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                self.stream.insert(std::io::BufReader::new(stream))
            }
        };
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut whole = request.into_bytes();
        whole.extend_from_slice(body);
        stream
            .get_mut()
            .write_all(&whole)
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        stream.read_line(&mut line).map_err(|e| e.to_string())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            stream.read_line(&mut line).map_err(|e| e.to_string())?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                stream.read_line(&mut line).map_err(|e| e.to_string())?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|e| format!("bad chunk size {line:?}: {e}"))?;
                let mut chunk = vec![0; size + 2];
                stream.read_exact(&mut chunk).map_err(|e| e.to_string())?;
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            out.resize(length, 0);
            stream.read_exact(&mut out).map_err(|e| e.to_string())?;
        } else {
            stream.read_to_end(&mut out).map_err(|e| e.to_string())?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok((status, out))
    }
}
