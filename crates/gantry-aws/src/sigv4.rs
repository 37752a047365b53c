//! SigV4 verification (the `Authorization` header form) and signing.
//!
//! Verification recomputes the signature the client must have made and
//! compares it in constant time. The order of checks is: parse (malformed →
//! `IncompleteSignatureException`), session token (refused), credential scope
//! (region, service, date), request time (±15 minutes, or the presigned
//! expiry), access key lookup (`UnrecognizedClientException`), required signed
//! headers, payload hash, and finally the signature itself.

use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq;

use crate::canonical::{self, STREAMING_UNSIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD, UriEncoding};
use crate::error::AuthError;
use crate::key::{Credentials, SecretKey, SigningKey, SigningKeyCache};
use crate::presign;
use crate::request::RequestParts;
use crate::time;

/// The only algorithm SigV4 defines for HMAC signing.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers a signer leaves out: they are changed by proxies or carry the
/// signature itself (botocore's list plus `authorization`).
const UNSIGNABLE: [&str; 5] = [
    "authorization",
    "expect",
    "transfer-encoding",
    "user-agent",
    "x-amzn-trace-id",
];

/// What a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How far the request time may be from the server's clock (AWS: 15 minutes).
    pub max_skew: Duration,
    /// The only region accepted in the credential scope; `None` accepts any.
    pub region: Option<String>,
    /// The signing names accepted in the credential scope; empty accepts any.
    pub services: Vec<String>,
    /// Headers that must be among the signed headers (lowercase). `host` is
    /// always required, as AWS requires it.
    pub required_signed_headers: Vec<String>,
    /// Accept `UNSIGNED-PAYLOAD` with a non-empty body. Off by default: the
    /// JSON APIs carry everything in the body, which must then be signed.
    pub allow_unsigned_payload: bool,
    /// Also accept a signature whose canonical URI is the path exactly as
    /// sent, not encoded again. curl's `--aws-sigv4` before 8.x signs so,
    /// which differs from SigV4 only for paths holding characters outside
    /// the unreserved set (a build id's `:`). The literal path is the wire
    /// path, so this admits no other request. Off by default.
    pub accept_literal_path: bool,
    /// Accept temporary credentials: a request carrying
    /// `x-amz-security-token` (which must then be signed). The verifier
    /// does not judge the token; the caller checks it belongs to the key.
    /// Off by default.
    pub accept_session_token: bool,
    /// Accept `STREAMING-UNSIGNED-PAYLOAD-TRAILER` (botocore's PutObject
    /// since 1.36: an `aws-chunked` body with a checksum trailer). The body
    /// is then not covered by the signature; the caller decodes it and
    /// checks its trailer checksum. Off by default.
    pub allow_streaming_unsigned_trailer: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_skew: Duration::from_secs(15 * 60),
            region: None,
            services: Vec::new(),
            required_signed_headers: vec!["host".to_owned()],
            allow_unsigned_payload: false,
            accept_literal_path: false,
            accept_session_token: false,
            allow_streaming_unsigned_trailer: false,
        }
    }
}

impl VerifyOptions {
    /// Options for an AWS JSON protocol endpoint: `host` and `x-amz-target`
    /// must be signed, so a captured signature cannot be replayed against a
    /// different operation by rewriting the target header.
    pub fn json_protocol() -> Self {
        VerifyOptions {
            required_signed_headers: vec!["host".to_owned(), "x-amz-target".to_owned()],
            ..VerifyOptions::default()
        }
    }
}

/// Who signed a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCaller {
    /// The access key id that signed it.
    pub access_key_id: String,
    /// The region of the credential scope.
    pub region: String,
    /// The service signing name of the credential scope, e.g. `codepipeline`.
    pub service: String,
    /// The request's signing time.
    pub signed_at: SystemTime,
    /// Whether the signature was in the query string (a presigned URL).
    pub presigned: bool,
    /// Whether the signature covers the body's hash. False only for
    /// `UNSIGNED-PAYLOAD`, which is accepted with an empty body or when
    /// [`VerifyOptions::allow_unsigned_payload`] is set.
    pub payload_signed: bool,
}

/// The parsed, not yet verified, signature of a request (either form).
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) access_key_id: String,
    pub(crate) date: String,
    pub(crate) region: String,
    pub(crate) service: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: [u8; 32],
    /// `YYYYMMDDTHHMMSSZ`, as it goes into the string to sign.
    pub(crate) amz_date: String,
    pub(crate) request_time: i64,
    /// `Some(seconds)` for the presigned form.
    pub(crate) expires: Option<u64>,
}

fn incomplete(msg: impl Into<String>) -> AuthError {
    AuthError::Incomplete(msg.into())
}

/// Parses `AKID/YYYYMMDD/region/service/aws4_request`.
pub(crate) fn parse_credential(
    credential: &str,
) -> Result<(String, String, String, String), AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminal] = parts.as_slice() else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/aws4_request, got '{credential}'."
        )));
    };
    if *terminal != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminal}'."
        )));
    }
    if akid.is_empty() || region.is_empty() || service.is_empty() {
        return Err(incomplete(format!(
            "Credential has an empty element: '{credential}'."
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential date must be YYYYMMDD, got '{date}'."
        )));
    }
    Ok((
        (*akid).to_owned(),
        (*date).to_owned(),
        (*region).to_owned(),
        (*service).to_owned(),
    ))
}

/// Parses `host;x-amz-date`: lowercase header names, sorted, no duplicates.
pub(crate) fn parse_signed_headers(list: &str) -> Result<Vec<String>, AuthError> {
    let names: Vec<&str> = list.split(';').collect();
    for name in &names {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase() && b != b':');
        if !valid {
            return Err(incomplete(format!(
                "SignedHeaders must be lowercase header names separated by ';', got '{list}'."
            )));
        }
    }
    if names.windows(2).any(|w| w[0] >= w[1]) {
        return Err(incomplete(format!(
            "SignedHeaders must be sorted and without duplicates, got '{list}'."
        )));
    }
    Ok(names.into_iter().map(str::to_owned).collect())
}

/// Decodes the 64 hex digits of a signature.
pub(crate) fn parse_signature(sig: &str) -> Result<[u8; 32], AuthError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(sig, &mut out)
        .map_err(|_| incomplete("Signature must be 64 hexadecimal digits."))?;
    Ok(out)
}

/// Parses the `Authorization` header value.
fn parse_authorization(req: &RequestParts<'_>, value: &str) -> Result<Claim, AuthError> {
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported Authorization algorithm '{algorithm}': only {ALGORITHM} is accepted."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (key, val) = component.split_once('=').unwrap_or((component, ""));
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(incomplete(format!(
                    "Authorization header has an unknown component '{key}'."
                )));
            }
        };
        if slot.replace(val).is_some() {
            return Err(incomplete(format!(
                "Authorization header has '{key}' more than once."
            )));
        }
    }
    let mut missing = Vec::new();
    for (name, slot) in [
        ("Credential", &credential),
        ("SignedHeaders", &signed_headers),
        ("Signature", &signature),
    ] {
        if slot.is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing.join(" ")));
    };
    let (access_key_id, date, region, service) = parse_credential(credential)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    let signature = parse_signature(signature)?;
    let (amz_date, request_time) = request_date(req)?;
    Ok(Claim {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
        amz_date,
        request_time,
        expires: None,
    })
}

/// The request time from `X-Amz-Date`, or failing that from `Date`.
fn request_date(req: &RequestParts<'_>) -> Result<(String, i64), AuthError> {
    let repeated = |name: &str| incomplete(format!("The '{name}' header must appear once."));
    if let Some(v) = req
        .single_header("x-amz-date")
        .map_err(|_| repeated("X-Amz-Date"))?
    {
        let t = time::parse_amz_date(v).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date must be in ISO-8601 'basic format' (YYYYMMDDTHHMMSSZ). Got '{v}'."
            ))
        })?;
        return Ok((v.to_owned(), t));
    }
    if let Some(v) = req.single_header("date").map_err(|_| repeated("Date"))? {
        let t = time::parse_http_date(v).ok_or_else(|| {
            incomplete(format!(
                "Date must be an HTTP date (IMF-fixdate). Got '{v}'."
            ))
        })?;
        return Ok((time::format_amz_date(time::from_unix_seconds(t)), t));
    }
    Err(incomplete(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ))
}

/// Verifies SigV4 signatures, with or without a signing-key cache.
///
/// One `Verifier` serves a whole server: it is `Sync`, and its cache is
/// shared by every request.
#[derive(Debug, Default)]
pub struct Verifier {
    options: VerifyOptions,
    cache: Option<SigningKeyCache>,
}

impl Verifier {
    /// A verifier that caches signing keys.
    pub fn new(options: VerifyOptions) -> Self {
        Verifier {
            options,
            cache: Some(SigningKeyCache::default()),
        }
    }

    /// A verifier that derives the signing key on every request.
    pub fn without_cache(options: VerifyOptions) -> Self {
        Verifier {
            options,
            cache: None,
        }
    }

    /// The options this verifier applies.
    pub fn options(&self) -> &VerifyOptions {
        &self.options
    }

    /// Verifies `req` at time `now`; `lookup` maps an access key id to its
    /// secret, or `None` for a key that does not exist (or is disabled).
    pub fn verify<F>(
        &self,
        req: &RequestParts<'_>,
        now: SystemTime,
        lookup: F,
    ) -> Result<VerifiedCaller, AuthError>
    where
        F: FnOnce(&str) -> Option<SecretKey>,
    {
        let mut authorization = req.header_values("authorization");
        let header = authorization.next();
        if authorization.next().is_some() {
            return Err(incomplete("The 'Authorization' header must appear once."));
        }
        let presigned = req.query_param("X-Amz-Algorithm").is_some();
        let claim = match (header, presigned) {
            (Some(_), true) => {
                return Err(incomplete(
                    "Only one authentication mechanism is allowed: both an Authorization header and X-Amz-Algorithm in the query were sent.",
                ));
            }
            (Some(value), false) => {
                let value = std::str::from_utf8(value)
                    .map_err(|_| incomplete("The Authorization header is not valid UTF-8."))?;
                parse_authorization(req, value)?
            }
            (None, true) => presign::parse_query(req)?,
            (None, false) => return Err(AuthError::MissingAuthentication),
        };
        self.check_claim(req, &claim, now)?;
        let secret = lookup(&claim.access_key_id).ok_or(AuthError::UnknownAccessKey)?;
        let signing_key = match &self.cache {
            Some(cache) => cache.get(
                &claim.access_key_id,
                &secret,
                &claim.date,
                &claim.region,
                &claim.service,
            ),
            None => SigningKey::derive(&secret, &claim.date, &claim.region, &claim.service),
        };
        let payload_signed = self.check_signature(req, &claim, &signing_key)?;
        Ok(VerifiedCaller {
            access_key_id: claim.access_key_id,
            region: claim.region,
            service: claim.service,
            signed_at: time::from_unix_seconds(claim.request_time),
            presigned: claim.expires.is_some(),
            payload_signed,
        })
    }

    /// Everything that can be checked without the secret.
    fn check_claim(
        &self,
        req: &RequestParts<'_>,
        claim: &Claim,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let header_token = req.header_values("x-amz-security-token").next().is_some();
        if (header_token || req.query_param("X-Amz-Security-Token").is_some())
            && !self.options.accept_session_token
        {
            return Err(AuthError::SessionTokenNotAccepted);
        }
        if header_token
            && claim.expires.is_none()
            && !claim
                .signed_headers
                .iter()
                .any(|h| h == "x-amz-security-token")
        {
            return Err(incomplete(
                "'x-amz-security-token' must be a signed header (in SignedHeaders).",
            ));
        }
        if let Some(region) = &self.options.region
            && &claim.region != region
        {
            return Err(AuthError::WrongScope(format!(
                "Credential should be scoped to a valid region, not '{}'.",
                claim.region
            )));
        }
        if !self.options.services.is_empty()
            && !self.options.services.iter().any(|s| s == &claim.service)
        {
            return Err(AuthError::WrongScope(format!(
                "Credential should be scoped to correct service: '{}'.",
                self.options.services.join("' or '")
            )));
        }
        if !claim.amz_date.starts_with(&claim.date) {
            return Err(AuthError::WrongScope(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                claim.date,
                claim.amz_date.get(..8).unwrap_or(""),
                claim.amz_date
            )));
        }
        check_time(claim, now, self.options.max_skew)?;
        for required in &self.options.required_signed_headers {
            if !claim.signed_headers.iter().any(|h| h == required) {
                return Err(incomplete(format!(
                    "'{required}' must be a signed header (in SignedHeaders)."
                )));
            }
        }
        if !claim.signed_headers.iter().any(|h| h == "host") {
            return Err(incomplete(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        Ok(())
    }

    /// Recomputes the signature; returns whether the payload was signed.
    fn check_signature(
        &self,
        req: &RequestParts<'_>,
        claim: &Claim,
        key: &SigningKey,
    ) -> Result<bool, AuthError> {
        let mut parts = CanonicalParts::new(req, claim)?;
        let mut uris = vec![parts.uri.clone()];
        let literal = if req.path.is_empty() { "/" } else { req.path };
        if self.options.accept_literal_path && literal != parts.uri {
            uris.push(literal.to_owned());
        }
        let payloads = self.payload_candidates(req, claim)?;
        for uri in uris {
            parts.uri = uri;
            for (hash, signed) in &payloads {
                let sts = parts.string_to_sign(req, claim, hash);
                if bool::from(key.sign(sts.as_bytes()).ct_eq(&claim.signature)) {
                    return Ok(*signed);
                }
            }
        }
        Err(AuthError::SignatureMismatch)
    }

    /// The payload hashes the client may have signed, each with whether it
    /// covers the body. Usually exactly one.
    fn payload_candidates(
        &self,
        req: &RequestParts<'_>,
        claim: &Claim,
    ) -> Result<Vec<(String, bool)>, AuthError> {
        let declared = req.single_header("x-amz-content-sha256").map_err(|_| {
            incomplete("The 'x-amz-content-sha256' header must appear once and be ASCII.")
        })?;
        let unsigned_ok = self.options.allow_unsigned_payload || req.payload.is_empty();
        match declared {
            Some(UNSIGNED_PAYLOAD) => {
                if !unsigned_ok {
                    return Err(AuthError::UnsignedPayloadRefused(UNSIGNED_PAYLOAD.into()));
                }
                Ok(vec![(UNSIGNED_PAYLOAD.to_owned(), req.payload.is_empty())])
            }
            Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                if !v.eq_ignore_ascii_case(&req.payload.sha256_hex()) {
                    return Err(AuthError::PayloadHashMismatch);
                }
                Ok(vec![(v.to_owned(), true)])
            }
            Some(v)
                if v == STREAMING_UNSIGNED_PAYLOAD_TRAILER
                    && self.options.allow_streaming_unsigned_trailer =>
            {
                Ok(vec![(v.to_owned(), false)])
            }
            Some(v) if v.starts_with("STREAMING-") => {
                Err(AuthError::UnsignedPayloadRefused(v.to_owned()))
            }
            Some(v) => Err(incomplete(format!(
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 in hex, got '{v}'."
            ))),
            // botocore presigns with UNSIGNED-PAYLOAD, the AWS documentation's
            // examples with the hash of the (empty) body: accept either.
            None if claim.expires.is_some() => {
                let mut candidates = vec![(req.payload.sha256_hex(), true)];
                if unsigned_ok {
                    candidates.push((UNSIGNED_PAYLOAD.to_owned(), req.payload.is_empty()));
                }
                Ok(candidates)
            }
            None => Ok(vec![(req.payload.sha256_hex(), true)]),
        }
    }
}

/// The parts of the canonical request that do not depend on the payload hash.
struct CanonicalParts {
    uri: String,
    query: String,
    headers: Vec<u8>,
    signed_list: String,
    scope: String,
}

impl CanonicalParts {
    fn new(req: &RequestParts<'_>, claim: &Claim) -> Result<Self, AuthError> {
        let signed: Vec<&str> = claim.signed_headers.iter().map(String::as_str).collect();
        let headers = canonical::canonical_headers(&req.headers, &signed).map_err(|name| {
            incomplete(format!(
                "Signed header '{name}' is not present in the request."
            ))
        })?;
        Ok(CanonicalParts {
            uri: canonical::canonical_uri(req.path, UriEncoding::for_service(&claim.service)),
            query: canonical::canonical_query(req.query, claim.expires.map(|_| "X-Amz-Signature")),
            headers,
            signed_list: claim.signed_headers.join(";"),
            scope: format!(
                "{}/{}/{}/aws4_request",
                claim.date, claim.region, claim.service
            ),
        })
    }

    fn canonical_request(&self, req: &RequestParts<'_>, payload_hash: &str) -> Vec<u8> {
        canonical::canonical_request(
            req.method,
            &self.uri,
            &self.query,
            &self.headers,
            &self.signed_list,
            payload_hash,
        )
    }

    fn string_to_sign(&self, req: &RequestParts<'_>, claim: &Claim, payload_hash: &str) -> String {
        string_to_sign(
            &claim.amz_date,
            &self.scope,
            &self.canonical_request(req, payload_hash),
        )
    }
}

/// Parses a request's signature (either form) without verifying it.
fn parse_claim(req: &RequestParts<'_>) -> Result<Claim, AuthError> {
    match req.header_values("authorization").next() {
        Some(value) => {
            let value = std::str::from_utf8(value)
                .map_err(|_| incomplete("The Authorization header is not valid UTF-8."))?;
            parse_authorization(req, value)
        }
        None if req.query_param("X-Amz-Algorithm").is_some() => presign::parse_query(req),
        None => Err(AuthError::MissingAuthentication),
    }
}

/// The canonical request and string to sign a verifier builds for `req`,
/// from the scope and signed headers in the request's own signature and the
/// payload hash it tries first.
fn debug_parts(req: &RequestParts<'_>) -> Result<(Vec<u8>, String), AuthError> {
    let claim = parse_claim(req)?;
    let verifier = Verifier::without_cache(VerifyOptions {
        allow_unsigned_payload: true,
        ..VerifyOptions::default()
    });
    let hash = verifier
        .payload_candidates(req, &claim)?
        .into_iter()
        .next()
        .map(|(h, _)| h)
        .unwrap_or_default();
    let parts = CanonicalParts::new(req, &claim)?;
    let creq = parts.canonical_request(req, &hash);
    let sts = string_to_sign(&claim.amz_date, &parts.scope, &creq);
    Ok((creq, sts))
}

/// The canonical request a verifier builds for `req` (non-UTF-8 header
/// bytes shown lossily). It contains no secret, so a server may log it when
/// a signature does not match, for comparison with the client's.
pub fn debug_canonical_request(req: &RequestParts<'_>) -> Result<String, AuthError> {
    debug_parts(req).map(|(creq, _)| String::from_utf8_lossy(&creq).into_owned())
}

/// The string to sign for `req`, as the verifier builds it.
pub fn debug_string_to_sign(req: &RequestParts<'_>) -> Result<String, AuthError> {
    debug_parts(req).map(|(_, sts)| sts)
}

/// Checks the request time against `now`: within `max_skew` for the header
/// form; for the presigned form, not in the future beyond the skew and not
/// past its expiry.
fn check_time(claim: &Claim, now: SystemTime, max_skew: Duration) -> Result<(), AuthError> {
    let now_s = time::unix_seconds(now);
    let skew = i64::try_from(max_skew.as_secs()).unwrap_or(i64::MAX);
    let fmt = |s: i64| time::format_amz_date(time::from_unix_seconds(s));
    let minutes = max_skew.as_secs() / 60;
    if claim.request_time > now_s.saturating_add(skew) {
        return Err(AuthError::NotYetValid {
            signed: claim.amz_date.clone(),
            limit: fmt(now_s.saturating_add(skew)),
            now: fmt(now_s),
            minutes,
        });
    }
    match claim.expires {
        None if claim.request_time < now_s.saturating_sub(skew) => Err(AuthError::Expired {
            signed: claim.amz_date.clone(),
            limit: fmt(now_s.saturating_sub(skew)),
            now: fmt(now_s),
            minutes,
        }),
        Some(expires) => {
            let expires = i64::try_from(expires).unwrap_or(i64::MAX);
            let end = claim.request_time.saturating_add(expires);
            if end < now_s {
                Err(AuthError::Expired {
                    signed: fmt(end),
                    limit: fmt(now_s),
                    now: fmt(now_s),
                    minutes: 0,
                })
            } else {
                Ok(())
            }
        }
        None => Ok(()),
    }
}

/// The string to sign: algorithm, time, scope and the canonical request's hash.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        canonical::sha256_hex(canonical_request)
    )
}

/// Verifies a request with default options and no signing-key cache.
///
/// A server should build one [`Verifier`] instead, so keys are cached.
pub fn verify<F>(
    req: &RequestParts<'_>,
    now: SystemTime,
    lookup: F,
) -> Result<VerifiedCaller, AuthError>
where
    F: FnOnce(&str) -> Option<SecretKey>,
{
    Verifier::without_cache(VerifyOptions::default()).verify(req, now, lookup)
}

/// Who signs, for which scope, at what time.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// The access key and secret.
    pub credentials: &'a Credentials,
    /// The region of the scope, e.g. `us-east-1`.
    pub region: &'a str,
    /// The service signing name, e.g. `codepipeline`.
    pub service: &'a str,
    /// The signing time.
    pub time: SystemTime,
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// SigV4 requires the `Host` header to be signed.
    #[error("the request has no Host header; SigV4 requires one")]
    MissingHost,
    /// The request already carries a header the signer sets.
    #[error("the request already has a '{0}' header; the signer sets it")]
    AlreadySigned(&'static str),
}

/// The headers [`sign`] produced, to add to the request as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The value of `X-Amz-Date`.
    pub x_amz_date: String,
    /// The value of `Authorization`.
    pub authorization: String,
}

impl SignedHeaders {
    /// The two headers as `(name, value)` pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 2] {
        [
            ("X-Amz-Date", self.x_amz_date.as_str()),
            ("Authorization", self.authorization.as_str()),
        ]
    }
}

/// The lowercase names of the headers a signer signs, sorted, deduplicated.
pub(crate) fn signable_headers(req: &RequestParts<'_>) -> Vec<String> {
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| !UNSIGNABLE.contains(&n.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Computes the signature of a request whose canonical parts are given.
pub(crate) fn signature_for(
    req: &RequestParts<'_>,
    params: &SigningParams<'_>,
    signed: &[String],
    extra_headers: &[(&str, &[u8])],
    query: &str,
    payload_hash: &str,
    amz_date: &str,
) -> String {
    let mut all: Vec<(&str, &[u8])> = req.headers.clone();
    all.extend_from_slice(extra_headers);
    let names: Vec<&str> = signed.iter().map(String::as_str).collect();
    // Every name came from `all`, so none can be missing.
    let headers = canonical::canonical_headers(&all, &names).unwrap_or_default();
    let uri = canonical::canonical_uri(req.path, UriEncoding::for_service(params.service));
    let creq = canonical::canonical_request(
        req.method,
        &uri,
        query,
        &headers,
        &signed.join(";"),
        payload_hash,
    );
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{}/{}/aws4_request", params.region, params.service);
    let key = SigningKey::derive(
        &params.credentials.secret,
        date,
        params.region,
        params.service,
    );
    hex::encode(key.sign(string_to_sign(amz_date, &scope, &creq).as_bytes()))
}

/// Signs a request in the header form, as an SDK does: every header present
/// (except `User-Agent`, `Expect`, `Transfer-Encoding`, `X-Amzn-Trace-Id`)
/// is signed, plus the `X-Amz-Date` this adds. The payload hash is the
/// body's, or the request's own `x-amz-content-sha256` when it has one.
pub fn sign(
    req: &RequestParts<'_>,
    params: &SigningParams<'_>,
) -> Result<SignedHeaders, SignError> {
    if req.header_values("host").next().is_none() {
        return Err(SignError::MissingHost);
    }
    for name in ["authorization", "x-amz-date"] {
        if req.header_values(name).next().is_some() {
            return Err(SignError::AlreadySigned(if name == "authorization" {
                "Authorization"
            } else {
                "X-Amz-Date"
            }));
        }
    }
    let amz_date = time::format_amz_date(params.time);
    let mut signed = signable_headers(req);
    signed.push("x-amz-date".to_owned());
    signed.sort();
    let payload_hash = match req.single_header("x-amz-content-sha256") {
        Ok(Some(v)) => v.to_owned(),
        _ => req.payload.sha256_hex(),
    };
    let query = canonical::canonical_query(req.query, None);
    let signature = signature_for(
        req,
        params,
        &signed,
        &[("x-amz-date", amz_date.as_bytes())],
        &query,
        &payload_hash,
        &amz_date,
    );
    let date = amz_date.get(..8).unwrap_or("");
    let authorization = format!(
        "{ALGORITHM} Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
        params.credentials.access_key_id,
        params.region,
        params.service,
        signed.join(";"),
    );
    Ok(SignedHeaders {
        x_amz_date: amz_date,
        authorization,
    })
}
