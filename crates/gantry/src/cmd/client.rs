//! What the client commands share: finding the server (`--server` or
//! `GANTRY_SERVER`) and the access key (`GANTRY_ACCESS_KEY_ID`,
//! `GANTRY_SECRET_ACCESS_KEY`), and SigV4-signed requests to the REST API
//! under `/api/v1` (credential scope service `gantry`).
//!
//! Exit codes: 2 for a usage problem found before any request (no server,
//! no key, a malformed argument), 1 for a failed request (the server's
//! error message is printed), 0 otherwise.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use gantry_aws::{Credentials, RequestParts, SigningParams};
use serde_json::Value;

/// The SigV4 service name of the REST API.
const SIGNING_NAME: &str = "gantry";
/// Signing needs a region; the server accepts any.
const REGION: &str = "us-east-1";

/// The options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "GANTRY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why a client command failed, and the exit code it means.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// The server refused the request or its answer was unusable: exit 1.
    Request(String),
    /// The server could not be reached (a retry may help): exit 1.
    Unreachable(String),
}

impl Failure {
    /// Prints the message as `gantry COMMAND: message` and gives the code.
    pub fn report(self, command: &str) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("gantry {command}: {m}");
                ExitCode::from(2)
            }
            Failure::Request(m) | Failure::Unreachable(m) => {
                eprintln!("gantry {command}: {m}");
                ExitCode::from(1)
            }
        }
    }
}

/// Runs an async client command on a fresh runtime.
pub fn block_on<F>(command: &str, work: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gantry {command}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(command),
    }
}

/// A signed connection to one server.
pub struct Client {
    base: reqwest::Url,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Client {
    /// The server from `args`, the key from the environment.
    pub fn from_env(args: &ServerArgs) -> Result<Client, Failure> {
        let server = args
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Failure::Usage("no server given: pass --server URL or set GANTRY_SERVER".into())
            })?;
        let id = std::env::var("GANTRY_ACCESS_KEY_ID")
            .ok()
            .filter(|s| !s.is_empty());
        let secret = std::env::var("GANTRY_SECRET_ACCESS_KEY")
            .ok()
            .filter(|s| !s.is_empty());
        let (Some(id), Some(secret)) = (id, secret) else {
            return Err(Failure::Usage(
                "no access key: set GANTRY_ACCESS_KEY_ID and GANTRY_SECRET_ACCESS_KEY".into(),
            ));
        };
        Client::new(&server, Credentials::new(id, secret))
    }

    fn new(server: &str, credentials: Credentials) -> Result<Client, Failure> {
        let base = reqwest::Url::parse(server.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "the server '{server}' is not an http:// or https:// URL"
                ))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::Request(format!("cannot create an HTTP client: {e}")))?;
        Ok(Client {
            base,
            credentials,
            http,
        })
    }

    /// The URL of `/api/v1` + `path` (path segments already escaped).
    fn url(&self, path: &str) -> Result<reqwest::Url, Failure> {
        let prefix = self.base.path().trim_end_matches('/');
        let mut url = self.base.clone();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        url.set_path(&format!("{prefix}/api/v1{path}"));
        url.set_query((!query.is_empty()).then_some(query));
        Ok(url)
    }

    /// Sends a signed request; a non-2xx answer becomes the server's message.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, Failure> {
        let url = self.url(path)?;
        // Host as reqwest sends it: the port only when it is not the default.
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(Failure::Usage(format!("{url} has no host"))),
        };
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut unsigned = RequestParts::new(method.as_str(), &target)
            .header("host", &host)
            .body(&bytes);
        if body.is_some() {
            unsigned = unsigned.header("content-type", "application/json");
        }
        let params = SigningParams {
            credentials: &self.credentials,
            region: REGION,
            service: SIGNING_NAME,
            time: SystemTime::now(),
        };
        let signed = gantry_aws::sign(&unsigned, &params)
            .map_err(|e| Failure::Request(format!("cannot sign the request: {e}")))?;
        let mut request = self.http.request(method, url.clone()).header("host", &host);
        for (n, v) in signed.pairs() {
            request = request.header(n, v);
        }
        for (n, v) in headers {
            request = request.header(*n, *v);
        }
        if body.is_some() {
            request = request
                .header("content-type", "application/json")
                .body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Unreachable(format!("cannot reach {}: {e}", self.base)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let e = &v["error"];
                Some(format!(
                    "{}: {}",
                    e["code"].as_str()?,
                    e["message"].as_str()?
                ))
            })
            .unwrap_or_else(|| format!("the server answered {status}: {}", text.trim()));
        Err(Failure::Request(message))
    }

    /// A signed request whose 2xx answer is JSON.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let response = self.send(method, path, body, &[]).await?;
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Request(format!("reading the answer failed: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| Failure::Request(format!("the server's answer is not JSON: {e}")))
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.json(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.json(reqwest::Method::POST, path, Some(body)).await
    }
}

/// One path segment, percent-encoded (names and ids are user input).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints a JSON answer (indented; jq and scripts read it the same).
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A status for people: `-` when there is none yet.
pub fn status_text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_escape_what_a_path_cannot_hold() {
        assert_eq!(segment("web-app.1"), "web-app.1");
        assert_eq!(segment("proj:0a-1"), "proj:0a-1");
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
    }

    #[test]
    fn urls_keep_a_base_path_and_split_the_query() {
        let c = Client::new("http://h:8080/gantry/", Credentials::new("a", "b")).expect("client");
        let u = c.url("/builds/p:1/logs?offset=5").expect("url");
        assert_eq!(
            u.as_str(),
            "http://h:8080/gantry/api/v1/builds/p:1/logs?offset=5"
        );
        assert!(matches!(
            Client::new("ftp://h", Credentials::new("a", "b")),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            Client::new("not a url", Credentials::new("a", "b")),
            Err(Failure::Usage(_))
        ));
    }
}
