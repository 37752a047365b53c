//! Verifications per second, with and without the signing-key cache.
//!
//! `cargo bench -p gantry-aws --bench verify` prints figures and ratios; it
//! asserts nothing about time. Each request is a boto3-shaped
//! `CodePipeline.ListPipelines` call with a small JSON body.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gantry_aws::{Credentials, RequestParts, SecretKey, SigningParams, Verifier, VerifyOptions};

const BODY: &[u8] = br#"{"maxResults": 100, "nextToken": "eyJwYWdlIjogMn0="}"#;

struct Owned {
    headers: Vec<(String, String)>,
}

fn signed(creds: &Credentials, time: SystemTime) -> Owned {
    let base = [
        ("Host", "127.0.0.1:8080"),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", "CodePipeline_20150709.ListPipelines"),
        (
            "User-Agent",
            "Boto3/1.44.5 md/Botocore#1.44.5 ua/2.1 os/linux#6.1",
        ),
        ("Content-Length", "52"),
    ];
    let mut req = RequestParts::new("POST", "/").body(BODY);
    for (n, v) in &base {
        req = req.header(n, *v);
    }
    let params = SigningParams {
        credentials: creds,
        region: "us-east-1",
        service: "codepipeline",
        time,
    };
    let sig = gantry_aws::sign(&req, &params).expect("signable");
    let mut headers: Vec<(String, String)> = base
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for (n, v) in sig.pairs() {
        headers.push((n.to_owned(), v.to_owned()));
    }
    Owned { headers }
}

fn run(label: &str, verifier: &Verifier, req: &Owned, now: SystemTime, secret: &SecretKey) -> f64 {
    let parts = {
        let mut r = RequestParts::new("POST", "/").body(BODY);
        for (n, v) in &req.headers {
            r = r.header(n, v);
        }
        r
    };
    // Warm up, then run for about a second.
    for _ in 0..1000 {
        let _ = black_box(verifier.verify(&parts, now, |_| Some(secret.clone())));
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..500 {
            let ok = verifier.verify(black_box(&parts), now, |_| Some(secret.clone()));
            assert!(ok.is_ok());
        }
        n += 500;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "{label:<28} {rate:>12.0} verifications/s  ({:.2} µs each)",
        1e6 / rate
    );
    rate
}

fn main() {
    let creds = Credentials::new("AKIDGANTRYBENCH", "bench/Secret+Key=0123456789abcdefghij");
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let req = signed(&creds, now);
    let options = VerifyOptions::json_protocol();
    println!("gantry-aws SigV4 verification, one ListPipelines request, 1 thread");
    let cached = run(
        "with signing-key cache",
        &Verifier::new(options.clone()),
        &req,
        now,
        &creds.secret,
    );
    let uncached = run(
        "without cache",
        &Verifier::without_cache(options),
        &req,
        now,
        &creds.secret,
    );
    println!("cache speed-up: {:.2}x", cached / uncached);
}
