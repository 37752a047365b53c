//! The presigned (query-string) form of SigV4.
//!
//! The signature travels in `X-Amz-Algorithm`, `X-Amz-Credential`,
//! `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders` and
//! `X-Amz-Signature`. The canonical query string includes every parameter
//! but `X-Amz-Signature`; the payload hash is `UNSIGNED-PAYLOAD` (what
//! botocore uses) or the body's hash (what the AWS documentation's examples
//! use). A presigned request is valid from its `X-Amz-Date` (less the
//! allowed clock skew) until `X-Amz-Date + X-Amz-Expires`, at most 7 days.

use std::time::Duration;

use crate::canonical;
use crate::error::AuthError;
use crate::request::RequestParts;
use crate::sigv4::{
    ALGORITHM, Claim, SignError, SigningParams, parse_credential, parse_signature,
    parse_signed_headers, signable_headers, signature_for,
};
use crate::time;

/// The longest validity AWS allows a presigned request: 7 days.
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

fn incomplete(msg: impl Into<String>) -> AuthError {
    AuthError::Incomplete(msg.into())
}

/// The one value of a query parameter, as UTF-8.
fn param(req: &RequestParts<'_>, name: &str) -> Result<String, AuthError> {
    let mut values = canonical::query_pairs(req.query)
        .filter(|(n, _)| n.as_slice() == name.as_bytes())
        .map(|(_, v)| v);
    let first = values.next().ok_or_else(|| {
        incomplete(format!(
            "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
        ))
    })?;
    if values.next().is_some() {
        return Err(incomplete(format!(
            "The query-string parameter '{name}' must appear once."
        )));
    }
    String::from_utf8(first).map_err(|_| incomplete(format!("'{name}' is not valid UTF-8.")))
}

/// Parses the presigned parameters of a request.
pub(crate) fn parse_query(req: &RequestParts<'_>) -> Result<Claim, AuthError> {
    let algorithm = param(req, "X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\", not '{algorithm}'."
        )));
    }
    let (access_key_id, date, region, service) =
        parse_credential(&param(req, "X-Amz-Credential")?)?;
    let amz_date = param(req, "X-Amz-Date")?;
    let request_time = time::parse_amz_date(&amz_date).ok_or_else(|| {
        incomplete(format!(
            "X-Amz-Date must be in ISO-8601 'basic format' (YYYYMMDDTHHMMSSZ). Got '{amz_date}'."
        ))
    })?;
    let expires_text = param(req, "X-Amz-Expires")?;
    let expires = expires_text
        .parse::<u64>()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES.as_secs()).contains(e))
        .ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Expires must be a whole number of seconds from 1 to {}, got '{expires_text}'.",
                MAX_EXPIRES.as_secs()
            ))
        })?;
    let signed_headers = parse_signed_headers(&param(req, "X-Amz-SignedHeaders")?)?;
    let signature = parse_signature(&param(req, "X-Amz-Signature")?)?;
    Ok(Claim {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
        amz_date,
        request_time,
        expires: Some(expires),
    })
}

/// Presigns a request: returns the query string (without `?`) to send it
/// with — the request's own parameters followed by the `X-Amz-*` ones.
///
/// Every header of the request (except the unsignable ones) is signed, as
/// botocore does, so whoever uses the URL must send those headers with the
/// same values; `Host` is required. The payload is `UNSIGNED-PAYLOAD`.
/// `expires` is clamped to 1 second .. 7 days.
pub fn presign(
    req: &RequestParts<'_>,
    params: &SigningParams<'_>,
    expires: Duration,
) -> Result<String, SignError> {
    if req.header_values("host").next().is_none() {
        return Err(SignError::MissingHost);
    }
    if req.header_values("authorization").next().is_some() {
        return Err(SignError::AlreadySigned("Authorization"));
    }
    let amz_date = time::format_amz_date(params.time);
    let date = amz_date.get(..8).unwrap_or("");
    let signed = signable_headers(req);
    let expires = expires.as_secs().clamp(1, MAX_EXPIRES.as_secs());
    let credential = format!(
        "{}/{date}/{}/{}/aws4_request",
        params.credentials.access_key_id, params.region, params.service
    );
    let mut query = req.query.trim_end_matches('&').to_owned();
    for (name, value) in [
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", signed.join(";")),
    ] {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(name);
        query.push('=');
        query.push_str(&canonical::uri_encode(value.as_bytes()));
    }
    let canonical_query = canonical::canonical_query(&query, None);
    let signature = signature_for(
        req,
        params,
        &signed,
        &[],
        &canonical_query,
        canonical::UNSIGNED_PAYLOAD,
        &amz_date,
    );
    query.push_str("&X-Amz-Signature=");
    query.push_str(&signature);
    Ok(query)
}
