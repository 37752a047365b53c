//! Verification behaviour: refusals and their codes, replay, tampering,
//! presigned URLs, and property tests over random requests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_aws::{
    AuthError, Credentials, RequestParts, SecretKey, SigningParams, Verifier, VerifyOptions,
};
use proptest::prelude::*;

const AKID: &str = "AKIDGANTRY";
const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn creds() -> Credentials {
    Credentials::new(AKID, SECRET)
}

fn lookup(id: &str) -> Option<SecretKey> {
    (id == AKID).then(|| SecretKey::new(SECRET))
}

fn params(c: &Credentials, t: SystemTime) -> SigningParams<'_> {
    SigningParams {
        credentials: c,
        region: "us-east-1",
        service: "codepipeline",
        time: t,
    }
}

/// An owned request, so tests can tamper with any part of it.
#[derive(Debug, Clone)]
struct Owned {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Owned {
    fn json(op: &str, body: &str) -> Self {
        Owned {
            method: "POST".into(),
            target: "/".into(),
            headers: vec![
                ("Host".into(), b"127.0.0.1:8080".to_vec()),
                (
                    "Content-Type".into(),
                    b"application/x-amz-json-1.1".to_vec(),
                ),
                (
                    "X-Amz-Target".into(),
                    format!("CodePipeline_20150709.{op}").into_bytes(),
                ),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    fn parts(&self) -> RequestParts<'_> {
        let mut r = RequestParts::new(&self.method, &self.target).body(&self.body);
        for (n, v) in &self.headers {
            r = r.header(n, v);
        }
        r
    }

    fn signed(mut self, t: SystemTime) -> Self {
        let c = creds();
        let s = gantry_aws::sign(&self.parts(), &params(&c, t)).expect("signable");
        for (n, v) in s.pairs() {
            self.headers.push((n.to_owned(), v.as_bytes().to_vec()));
        }
        self
    }

    fn set_header(&mut self, name: &str, value: &str) {
        for (n, v) in &mut self.headers {
            if n.eq_ignore_ascii_case(name) {
                *v = value.as_bytes().to_vec();
            }
        }
    }

    fn verify(&self, at: SystemTime) -> Result<gantry_aws::VerifiedCaller, AuthError> {
        Verifier::new(VerifyOptions::json_protocol()).verify(&self.parts(), at, lookup)
    }
}

fn code(r: Result<gantry_aws::VerifiedCaller, AuthError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().as_str().to_owned(),
    }
}

#[test]
fn a_signed_request_verifies() {
    let req = Owned::json("ListPipelines", "{}").signed(now());
    let caller = req.verify(now()).expect("verifies");
    assert_eq!(caller.access_key_id, AKID);
    assert_eq!(caller.service, "codepipeline");
    assert_eq!(caller.signed_at, now());
    assert!(caller.payload_signed);
}

#[test]
fn unsigned_requests_are_missing_authentication() {
    let req = Owned::json("ListPipelines", "{}");
    assert_eq!(req.verify(now()), Err(AuthError::MissingAuthentication));
    assert_eq!(
        code(req.verify(now())),
        "MissingAuthenticationTokenException"
    );
}

#[test]
fn unknown_keys_and_wrong_secrets_have_distinct_codes() {
    let req = Owned::json("ListPipelines", "{}").signed(now());
    let v = Verifier::new(VerifyOptions::default());
    assert_eq!(
        v.verify(&req.parts(), now(), |_| None),
        Err(AuthError::UnknownAccessKey)
    );
    assert_eq!(
        v.verify(&req.parts(), now(), |_| Some(SecretKey::new("wrong"))),
        Err(AuthError::SignatureMismatch)
    );
}

#[test]
fn time_window_is_fifteen_minutes_each_way() {
    let req = Owned::json("ListPipelines", "{}").signed(now());
    let min = |m: u64| Duration::from_secs(m * 60);
    assert!(req.verify(now() + min(14)).is_ok());
    assert!(req.verify(now() - min(14)).is_ok());
    let replayed = req.verify(now() + min(20));
    assert!(
        matches!(replayed, Err(AuthError::Expired { .. })),
        "{replayed:?}"
    );
    assert_eq!(code(replayed), "InvalidSignatureException");
    let early = req.verify(now() - min(20));
    assert!(
        matches!(early, Err(AuthError::NotYetValid { .. })),
        "{early:?}"
    );
}

#[test]
fn tampering_with_any_part_is_refused() {
    let good = Owned::json("ListPipelines", r#"{"maxResults":10}"#).signed(now());
    assert!(good.verify(now()).is_ok());

    let mut body = good.clone();
    body.body = br#"{"maxResults":11}"#.to_vec();
    assert_eq!(body.verify(now()), Err(AuthError::SignatureMismatch));

    let mut target = good.clone();
    target.set_header("X-Amz-Target", "CodePipeline_20150709.DeletePipeline");
    assert_eq!(target.verify(now()), Err(AuthError::SignatureMismatch));

    let mut host = good.clone();
    host.set_header("Host", "127.0.0.1:8081");
    assert_eq!(host.verify(now()), Err(AuthError::SignatureMismatch));

    let mut query = good.clone();
    query.target = "/?a=1".into();
    assert_eq!(query.verify(now()), Err(AuthError::SignatureMismatch));

    let mut path = good.clone();
    path.target = "/x".into();
    assert_eq!(path.verify(now()), Err(AuthError::SignatureMismatch));

    let mut method = good.clone();
    method.method = "PUT".into();
    assert_eq!(method.verify(now()), Err(AuthError::SignatureMismatch));

    let mut date = good.clone();
    date.set_header("X-Amz-Date", "20231114T221321Z");
    assert_eq!(date.verify(now()), Err(AuthError::SignatureMismatch));
}

#[test]
fn x_amz_target_must_be_signed_on_json_endpoints() {
    // Sign without the target header, then add it: a replay to another operation.
    let mut req = Owned::json("ListPipelines", "{}");
    req.headers.retain(|(n, _)| n != "X-Amz-Target");
    let mut req = req.signed(now());
    req.headers.push((
        "X-Amz-Target".into(),
        b"CodePipeline_20150709.DeletePipeline".to_vec(),
    ));
    assert!(matches!(req.verify(now()), Err(AuthError::Incomplete(_))));
    // The default options accept it: only host is required there.
    let v = Verifier::new(VerifyOptions::default());
    assert!(v.verify(&req.parts(), now(), lookup).is_ok());
}

#[test]
fn content_sha256_header_must_match_the_body() {
    let mut req = Owned::json("ListPipelines", "{}");
    let hash = gantry_aws::sha256_hex(b"{}");
    req.headers
        .push(("x-amz-content-sha256".into(), hash.into_bytes()));
    let mut req = req.signed(now());
    assert!(req.verify(now()).is_ok());
    req.body = b"{ }".to_vec();
    assert_eq!(req.verify(now()), Err(AuthError::PayloadHashMismatch));
}

#[test]
fn unsigned_payload_needs_an_empty_body_or_permission() {
    let mut req = Owned::json("ListPipelines", "{}");
    req.headers
        .push(("x-amz-content-sha256".into(), b"UNSIGNED-PAYLOAD".to_vec()));
    let req = req.signed(now());
    assert!(matches!(
        req.verify(now()),
        Err(AuthError::UnsignedPayloadRefused(_))
    ));
    let v = Verifier::new(VerifyOptions {
        allow_unsigned_payload: true,
        ..VerifyOptions::json_protocol()
    });
    let caller = v.verify(&req.parts(), now(), lookup).expect("allowed");
    assert!(!caller.payload_signed);
}

#[test]
fn a_literal_path_option_does_not_open_other_paths() {
    let signed = Owned::json("ListPipelines", "{}").signed(now());
    let lenient = Verifier::new(VerifyOptions {
        accept_literal_path: true,
        ..VerifyOptions::json_protocol()
    });
    lenient
        .verify(&signed.parts(), now(), lookup)
        .expect("a standard signature still verifies");
    let mut moved = signed.clone();
    moved.target = "/other:path".into();
    assert!(matches!(
        lenient.verify(&moved.parts(), now(), lookup),
        Err(AuthError::SignatureMismatch)
    ));
}

#[test]
fn scope_restrictions_apply() {
    let req = Owned::json("ListPipelines", "{}").signed(now());
    let region = Verifier::new(VerifyOptions {
        region: Some("eu-west-1".into()),
        ..VerifyOptions::default()
    });
    assert!(matches!(
        region.verify(&req.parts(), now(), lookup),
        Err(AuthError::WrongScope(_))
    ));
    let service = Verifier::new(VerifyOptions {
        services: vec!["codebuild".into()],
        ..VerifyOptions::default()
    });
    assert!(matches!(
        service.verify(&req.parts(), now(), lookup),
        Err(AuthError::WrongScope(_))
    ));
    let caller = req.verify(now()).expect("verifies");
    assert!(
        gantry_aws::Service::CodePipeline
            .check_caller(&caller)
            .is_ok()
    );
    let e = gantry_aws::Service::CodeBuild
        .check_caller(&caller)
        .expect_err("wrong service");
    assert_eq!(e.code.as_str(), "InvalidSignatureException");
}

#[test]
fn malformed_authorization_is_incomplete() {
    let base = Owned::json("ListPipelines", "{}").signed(now());
    let good = base
        .headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let variants = [
        good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        good.replace("Credential=", "Credentials="),
        good.replace("/aws4_request", "/aws5_request"),
        good.replace("SignedHeaders=content-type;", "SignedHeaders=Content-Type;"),
        good.replace(
            "SignedHeaders=content-type;host",
            "SignedHeaders=host;content-type",
        ),
        format!("{good}, Signature=00"),
        good.replace("Signature=", "Signature=zz"),
        "AWS4-HMAC-SHA256".into(),
        "Bearer abc".into(),
        String::new(),
    ];
    for bad in variants {
        let mut req = base.clone();
        req.set_header("Authorization", &bad);
        assert_eq!(
            code(req.verify(now())),
            "IncompleteSignatureException",
            "{bad}"
        );
    }
    let mut twice = base.clone();
    twice
        .headers
        .push(("authorization".into(), good.clone().into_bytes()));
    assert_eq!(code(twice.verify(now())), "IncompleteSignatureException");
    let mut no_date = base.clone();
    no_date.headers.retain(|(n, _)| n != "X-Amz-Date");
    assert_eq!(code(no_date.verify(now())), "IncompleteSignatureException");
}

#[test]
fn session_tokens_are_refused() {
    let mut req = Owned::json("ListPipelines", "{}");
    req.headers
        .push(("X-Amz-Security-Token".into(), b"token".to_vec()));
    let req = req.signed(now());
    assert_eq!(req.verify(now()), Err(AuthError::SessionTokenNotAccepted));
    assert_eq!(code(req.verify(now())), "UnrecognizedClientException");
}

#[test]
fn session_tokens_are_accepted_when_allowed_and_signed() {
    let allowing = Verifier::new(VerifyOptions {
        accept_session_token: true,
        ..VerifyOptions::json_protocol()
    });
    let mut req = Owned::json("ListPipelines", "{}");
    req.headers
        .push(("X-Amz-Security-Token".into(), b"token".to_vec()));
    let signed = req.clone().signed(now());
    assert!(allowing.verify(&signed.parts(), now(), lookup).is_ok());
    // A token added after signing is not covered by the signature.
    let mut late = Owned::json("ListPipelines", "{}").signed(now());
    late.headers
        .push(("X-Amz-Security-Token".into(), b"token".to_vec()));
    assert!(matches!(
        allowing.verify(&late.parts(), now(), lookup),
        Err(AuthError::Incomplete(_))
    ));
}

#[test]
fn streaming_unsigned_trailer_payloads_need_permission() {
    let mut req = Owned::json("ListPipelines", "5\r\nhello\r\n0\r\n\r\n");
    req.headers.push((
        "x-amz-content-sha256".into(),
        b"STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_vec(),
    ));
    let req = req.signed(now());
    assert!(matches!(
        req.verify(now()),
        Err(AuthError::UnsignedPayloadRefused(_))
    ));
    let v = Verifier::new(VerifyOptions {
        allow_streaming_unsigned_trailer: true,
        ..VerifyOptions::json_protocol()
    });
    let caller = v.verify(&req.parts(), now(), lookup).expect("allowed");
    assert!(!caller.payload_signed);
    // Other streaming forms stay refused.
    let mut signed_chunks = Owned::json("ListPipelines", "x");
    signed_chunks.headers.push((
        "x-amz-content-sha256".into(),
        b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_vec(),
    ));
    let signed_chunks = signed_chunks.signed(now());
    assert!(v.verify(&signed_chunks.parts(), now(), lookup).is_err());
}

#[test]
fn presigned_urls_round_trip_and_expire() {
    let c = creds();
    let bare = RequestParts::new("GET", "/?name=a%20b%2Fc").header("Host", "127.0.0.1:8080");
    let query =
        gantry_aws::presign(&bare, &params(&c, now()), Duration::from_secs(300)).expect("presign");
    assert!(query.starts_with("name=a%20b%2Fc&X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
    let target = format!("/?{query}");
    let req = RequestParts::new("GET", &target).header("Host", "127.0.0.1:8080");
    let v = Verifier::new(VerifyOptions::default());
    let caller = v.verify(&req, now(), lookup).expect("verifies");
    assert!(caller.presigned);
    assert!(
        v.verify(&req, now() + Duration::from_secs(299), lookup)
            .is_ok()
    );
    let late = v.verify(&req, now() + Duration::from_secs(301), lookup);
    assert!(matches!(late, Err(AuthError::Expired { .. })), "{late:?}");
    let early = v.verify(&req, now() - Duration::from_secs(20 * 60), lookup);
    assert!(
        matches!(early, Err(AuthError::NotYetValid { .. })),
        "{early:?}"
    );

    let tampered = target.replace("a%20b", "a%20c");
    let req = RequestParts::new("GET", &tampered).header("Host", "127.0.0.1:8080");
    assert_eq!(
        v.verify(&req, now(), lookup),
        Err(AuthError::SignatureMismatch)
    );

    let long = target.replace("X-Amz-Expires=300", "X-Amz-Expires=604801");
    let req = RequestParts::new("GET", &long).header("Host", "127.0.0.1:8080");
    assert!(matches!(
        v.verify(&req, now(), lookup),
        Err(AuthError::Incomplete(_))
    ));

    let both = RequestParts::new("GET", &target)
        .header("Host", "127.0.0.1:8080")
        .header("Authorization", "AWS4-HMAC-SHA256 x");
    assert!(matches!(
        v.verify(&both, now(), lookup),
        Err(AuthError::Incomplete(_))
    ));

    let body = RequestParts::new("GET", &target)
        .header("Host", "127.0.0.1:8080")
        .body(b"{}");
    assert!(matches!(
        v.verify(&body, now(), lookup),
        Err(AuthError::SignatureMismatch)
    ));
}

#[test]
fn cached_and_uncached_verifiers_agree() {
    let cached = Verifier::new(VerifyOptions::default());
    let uncached = Verifier::without_cache(VerifyOptions::default());
    for i in 0..5u64 {
        let t = now() + Duration::from_secs(i * 86_400);
        let req = Owned::json("ListPipelines", "{}").signed(t);
        assert!(cached.verify(&req.parts(), t, lookup).is_ok());
        assert!(uncached.verify(&req.parts(), t, lookup).is_ok());
        let wrong = |_: &str| Some(SecretKey::new("rotated"));
        assert_eq!(
            cached.verify(&req.parts(), t, wrong),
            Err(AuthError::SignatureMismatch)
        );
    }
}

// ---- property tests ----

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,12}"
}

prop_compose! {
    fn random_request()(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        segments in prop::collection::vec(token(), 0..4),
        params in prop::collection::vec((token(), token()), 0..4),
        headers in prop::collection::vec(("x-h[a-z]{1,6}", token()), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) -> Owned {
        let mut target = format!("/{}", segments.join("/"));
        if !params.is_empty() {
            let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            target = format!("{target}?{}", q.join("&"));
        }
        let mut hs: Vec<(String, Vec<u8>)> = vec![("Host".into(), b"127.0.0.1:8080".to_vec())];
        for (n, v) in headers {
            hs.push((n, v.into_bytes()));
        }
        Owned { method: method.into(), target, headers: hs, body }
    }
}

/// Replaces the alphanumeric byte at `pos` (counted over alphanumerics) by
/// a different alphanumeric: a change no canonicalisation rule can undo.
fn mutate_alnum(s: &mut String, pos: usize) -> bool {
    let idx: Vec<usize> = s
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .collect();
    if idx.is_empty() {
        return false;
    }
    let i = idx[pos % idx.len()];
    let c = s.as_bytes()[i];
    let replacement = if c == b'z' { 'y' } else { 'z' };
    s.replace_range(i..=i, &replacement.to_string());
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn signed_requests_verify(req in random_request(), skew in -800i64..800) {
        let t = now();
        let signed = req.signed(t);
        let at = if skew >= 0 { t + Duration::from_secs(skew as u64) } else { t - Duration::from_secs(skew.unsigned_abs()) };
        let v = Verifier::new(VerifyOptions::default());
        prop_assert!(v.verify(&signed.parts(), at, lookup).is_ok());
    }

    #[test]
    fn any_single_change_fails(req in random_request(), part in 0usize..6, pos in 0usize..1000, byte in any::<u8>()) {
        let good = req.signed(now());
        let mut bad = good.clone();
        let changed = match part {
            0 => {
                if bad.body.is_empty() { bad.body.push(byte); } else {
                    let i = pos % bad.body.len();
                    bad.body[i] = bad.body[i].wrapping_add(1 + byte % 255);
                }
                true
            }
            1 => mutate_alnum(&mut bad.target, pos),
            2 => mutate_alnum(&mut bad.method, pos),
            _ => {
                // A header value: Host, an x-h* header, X-Amz-Date or the signature.
                let i = pos % bad.headers.len();
                let mut v = String::from_utf8_lossy(&bad.headers[i].1).into_owned();
                let ok = mutate_alnum(&mut v, pos / 7);
                bad.headers[i].1 = v.into_bytes();
                ok
            }
        };
        prop_assume!(changed);
        let v = Verifier::new(VerifyOptions::default());
        prop_assert!(v.verify(&bad.parts(), now(), lookup).is_err(), "{bad:?}");
    }

    #[test]
    fn garbage_never_panics(
        auth in proptest::collection::vec(any::<u8>(), 0..200),
        auth_text in "AWS4-HMAC-SHA256 [ -~]{0,200}",
        date in "[ -~]{0,20}",
        target in "[ -~]{0,80}",
        sha in "[ -~]{0,70}",
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let v = Verifier::new(VerifyOptions::json_protocol());
        for a in [auth.as_slice(), auth_text.as_bytes()] {
            let req = RequestParts::new("POST", &target)
                .header("Host", "h")
                .header("Authorization", a)
                .header("X-Amz-Date", &date)
                .header("x-amz-content-sha256", &sha)
                .body(&body);
            let _ = v.verify(&req, now(), lookup);
            let _ = gantry_aws::debug::canonical_request(&req);
        }
        let presigned = format!("/?X-Amz-Algorithm=AWS4-HMAC-SHA256&{target}");
        let req = RequestParts::new("GET", &presigned).header("Host", "h");
        prop_assert!(v.verify(&req, now(), lookup).is_err());
    }
}
