/*!
The AWS wire protocol, server side, for Gantry's AWS-compatible API.

This crate verifies AWS Signature Version 4 — the `Authorization` header
form and the presigned query-string form — and speaks the AWS JSON 1.0/1.1
protocol (`X-Amz-Target` dispatch, `{"__type", "message"}` errors,
`x-amzn-RequestId`, epoch-second timestamps). It has no HTTP framework of
its own: a server copies the method, the raw request target, the headers
and the body into a [`RequestParts`] and gets back a [`VerifiedCaller`] or
an [`AuthError`] that converts into the error AWS would send. It also
signs, so Gantry's own CLI can talk to the server the way boto3 does.

# Example

A request signed by [`sign`] verifies with the right secret and is refused,
with AWS's error code, with a wrong one or 20 minutes later:

```
use std::time::{Duration, SystemTime};
use gantry_aws::{Credentials, RequestParts, SecretKey, SigningParams, Verifier, VerifyOptions};

let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
let body = br#"{"maxResults": 10}"#;

// Client side: sign.
let unsigned = RequestParts::new("POST", "/")
    .header("Host", "localhost:8080")
    .header("Content-Type", "application/x-amz-json-1.1")
    .header("X-Amz-Target", "CodePipeline_20150709.ListPipelines")
    .body(body);
let params = SigningParams { credentials: &creds, region: "us-east-1", service: "codepipeline", time: now };
let signed = gantry_aws::sign(&unsigned, &params).expect("has a Host header");
let mut request = unsigned.clone();
for (name, value) in signed.pairs() {
    request = request.header(name, value);
}

// Server side: verify.
let verifier = Verifier::new(VerifyOptions::json_protocol());
let lookup = |id: &str| (id == "AKIDEXAMPLE").then(|| creds.secret.clone());
let caller = verifier.verify(&request, now, lookup).expect("signature verifies");
assert_eq!((caller.access_key_id.as_str(), caller.service.as_str()), ("AKIDEXAMPLE", "codepipeline"));

let wrong = |_: &str| Some(SecretKey::new("not the secret"));
let err = verifier.verify(&request, now, wrong).unwrap_err();
assert_eq!(err.code().as_str(), "InvalidSignatureException");

let later = now + Duration::from_secs(20 * 60);
let err = verifier.verify(&request, later, lookup).unwrap_err();
assert!(err.is_time_skew());
assert!(err.to_string().starts_with("Signature expired"));
```

# What is checked

See `docs/aws-protocol.md` in the repository for every rule, the error each
failure produces and the decisions taken where AWS leaves room (session
tokens are refused, `UNSIGNED-PAYLOAD` needs an empty body unless allowed,
`x-amz-target` must be signed on JSON endpoints).
*/
#![deny(missing_docs)]

mod canonical;
mod error;
mod json_protocol;
mod key;
mod presign;
mod request;
mod sigv4;
mod time;

pub use canonical::{
    EMPTY_SHA256, STREAMING_UNSIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD, UriEncoding,
    canonical_query, canonical_uri, sha256_hex, uri_encode,
};
pub use error::{AuthError, AwsError, ErrorCode};
pub use json_protocol::{
    JsonResponse, Service, Target, check_content_type, new_request_id, parse_body, parse_target,
    parse_timestamp, timestamp,
};
pub use key::{Credentials, SecretKey, SigningKeyCache};
pub use presign::{MAX_EXPIRES, presign};
pub use request::{Payload, RequestParts};
pub use sigv4::{
    ALGORITHM, SignError, SignedHeaders, SigningParams, VerifiedCaller, Verifier, VerifyOptions,
    sign, verify,
};

/// The pieces of the signing computation, exposed for tests and diagnostics:
/// a server can log the canonical request it computed when a client's
/// signature does not match (the canonical request holds no secret).
pub mod debug {
    pub use crate::sigv4::debug_canonical_request as canonical_request;
    pub use crate::sigv4::debug_string_to_sign as string_to_sign;
}
