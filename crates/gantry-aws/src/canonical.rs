//! The SigV4 canonical request: URI, query string, headers and payload hash.
//!
//! Every rule here is one an independent client applies before it signs, so
//! each must produce byte-for-byte what botocore and the AWS SDKs produce:
//!
//! - **URI.** For every service but S3 the path *as sent on the wire* (already
//!   percent-encoded once) has its dot segments removed and runs of slashes
//!   collapsed, then every byte outside the unreserved set and `/` is encoded
//!   again — so `%20` on the wire signs as `%2520`. S3 is the exception: no
//!   normalisation, and the path is decoded and encoded exactly once.
//! - **Query.** Each `name=value` is percent-decoded and re-encoded with the
//!   strict encoder (only `A-Z a-z 0-9 - _ . ~` stay literal, so `+` becomes
//!   `%2B` and a space `%20`), then sorted by encoded name and, for repeated
//!   names, by encoded value. A name with no `=` gets an empty value.
//! - **Headers.** Names lowercased; values trimmed with runs of whitespace
//!   folded to one space; repeated headers joined with `,` in arrival order;
//!   sorted by name.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Everything but the RFC 3986 unreserved characters.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The strict set, but `/` stays literal: path segments keep their separators.
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// The hex SHA-256 of the empty string, the payload hash of a request with no body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The literal payload hash a client sends when it does not sign the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The payload hash of an `aws-chunked` body whose chunks are unsigned and
/// end with a checksum trailer (S3 PutObject from botocore ≥ 1.36).
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/// How a service's canonical URI is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriEncoding {
    /// Every service except S3: normalise the wire path, then encode it again.
    Double,
    /// S3: keep the path as it is (no dot-segment removal) and encode each
    /// segment once, from its decoded form.
    Single,
}

impl UriEncoding {
    /// The encoding SigV4 prescribes for a signing name (`s3` → single).
    pub fn for_service(service: &str) -> Self {
        if service == "s3" {
            UriEncoding::Single
        } else {
            UriEncoding::Double
        }
    }
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Removes `.` and `..` segments and empty segments (runs of `/`) the way
/// botocore does: a trailing slash survives only if some segment does.
fn normalise_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normalised = String::with_capacity(path.len());
    if path.starts_with('/') {
        normalised.push('/');
    }
    normalised.push_str(&out.join("/"));
    if path.ends_with('/') && !out.is_empty() {
        normalised.push('/');
    }
    if normalised.is_empty() {
        normalised.push('/');
    }
    normalised
}

/// The canonical URI of a wire path (no query string, no fragment).
pub fn canonical_uri(wire_path: &str, encoding: UriEncoding) -> String {
    match encoding {
        UriEncoding::Double => {
            let normalised = normalise_path(wire_path);
            utf8_percent_encode(&normalised, PATH).to_string()
        }
        UriEncoding::Single => {
            if wire_path.is_empty() {
                return "/".to_owned();
            }
            // Segment by segment, so an encoded slash stays inside its segment.
            let segments: Vec<String> = wire_path
                .split('/')
                .map(|seg| uri_encode(&percent_decode_str(seg).collect::<Vec<u8>>()))
                .collect();
            segments.join("/")
        }
    }
}

/// Strict SigV4 encoding of raw bytes (query names and values).
pub fn uri_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, STRICT).to_string()
}

/// The query's `(name, value)` pairs, decoded, in wire order. Empty pieces
/// (`a=1&&b=2`, a trailing `&`) are dropped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (
            percent_decode_str(name).collect(),
            percent_decode_str(value).collect(),
        )
    })
}

/// The canonical query string. `skip` names a parameter left out (the
/// presigned form leaves out `X-Amz-Signature`); it is compared decoded.
pub fn canonical_query(query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .filter(|(name, _)| skip.is_none_or(|s| name.as_slice() != s.as_bytes()))
        .map(|(name, value)| (uri_encode(&name), uri_encode(&value)))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 8);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Trims a header value and folds each run of whitespace into one space,
/// as botocore's `' '.join(value.split())` does.
fn fold_value(value: &[u8], out: &mut Vec<u8>) {
    let mut pending_space = false;
    let mut wrote = false;
    for &b in value {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c) {
            pending_space = wrote;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            wrote = true;
        }
    }
}

/// The canonical headers block (each `name:value\n`) for the names in
/// `signed` (already lowercase and sorted). A signed name absent from
/// `headers` is an error carrying that name.
pub fn canonical_headers<'n>(
    headers: &[(&str, &[u8])],
    signed: &[&'n str],
) -> Result<Vec<u8>, &'n str> {
    let mut out = Vec::with_capacity(64 * signed.len());
    for &name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut found = false;
        for (header, value) in headers {
            if header.eq_ignore_ascii_case(name) {
                if found {
                    out.push(b',');
                }
                found = true;
                fold_value(value, &mut out);
            }
        }
        if !found {
            return Err(name);
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// Assembles the canonical request from its parts.
pub fn canonical_request(
    method: &str,
    uri: &str,
    query: &str,
    headers: &[u8],
    signed_headers: &str,
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        method.len() + uri.len() + query.len() + headers.len() + signed_headers.len() + 72,
    );
    for part in [method.as_bytes(), uri.as_bytes(), query.as_bytes(), headers] {
        out.extend_from_slice(part);
        out.push(b'\n');
    }
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_normalisation_follows_botocore() {
        for (wire, canonical) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/a/b/../c/./d/", "/a/c/d/"),
            ("/../../a", "/a"),
            ("/a/..b/.c", "/a/..b/.c"),
        ] {
            assert_eq!(
                canonical_uri(wire, UriEncoding::Double),
                canonical,
                "{wire:?}"
            );
        }
    }

    #[test]
    fn non_s3_paths_are_encoded_twice() {
        assert_eq!(canonical_uri("/a%20b", UriEncoding::Double), "/a%2520b");
        assert_eq!(canonical_uri("/a%2Fb", UriEncoding::Double), "/a%252Fb");
        assert_eq!(
            canonical_uri("/example space/", UriEncoding::Double),
            "/example%20space/"
        );
        assert_eq!(
            canonical_uri("/\u{1234}", UriEncoding::Double),
            "/%E1%88%B4"
        );
        assert_eq!(canonical_uri("/$delete", UriEncoding::Double), "/%24delete");
        // An encoded dot is not a dot segment on the wire.
        assert_eq!(
            canonical_uri("/a/%2E%2E/b", UriEncoding::Double),
            "/a/%252E%252E/b"
        );
    }

    #[test]
    fn s3_paths_are_encoded_once_and_not_normalised() {
        assert_eq!(canonical_uri("/a%20b", UriEncoding::Single), "/a%20b");
        assert_eq!(
            canonical_uri("//a/./b/../", UriEncoding::Single),
            "//a/./b/../"
        );
        assert_eq!(canonical_uri("/a+b", UriEncoding::Single), "/a%2Bb");
        assert_eq!(canonical_uri("/a%2fb", UriEncoding::Single), "/a%2Fb");
    }

    #[test]
    fn unreserved_characters_stay_literal() {
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        assert_eq!(uri_encode(unreserved.as_bytes()), unreserved);
        assert_eq!(uri_encode(b"a b+c/d=e&f*"), "a%20b%2Bc%2Fd%3De%26f%2A");
    }

    #[test]
    fn query_sorting_and_encoding() {
        for (query, canonical) in [
            ("", ""),
            ("Param2=value2&Param1=value1", "Param1=value1&Param2=value2"),
            ("Param1=value2&Param1=value1", "Param1=value1&Param1=value2"),
            ("Param1=value2&Param1=Value1", "Param1=Value1&Param1=value2"),
            ("a=10&a=9", "a=10&a=9"),
            ("x=a.b&x=a%2Fb", "x=a%2Fb&x=a.b"),
            ("a=1&a=1", "a=1&a=1"),
            ("q=a+b", "q=a%2Bb"),
            ("q=a%20b", "q=a%20b"),
            ("b&a=1", "a=1&b="),
            ("a=1=2", "a=1%3D2"),
            ("a=%2f", "a=%2F"),
            ("a=1&&b=2&", "a=1&b=2"),
            ("%E1%88%B4=bar", "%E1%88%B4=bar"),
            ("\u{1234}=bar", "%E1%88%B4=bar"),
            ("foo foo=bar bar", "foo%20foo=bar%20bar"),
            ("a=%zz", "a=%25zz"),
        ] {
            assert_eq!(canonical_query(query, None), canonical, "{query:?}");
        }
        assert_eq!(
            canonical_query(
                "X-Amz-Signature=abc&b=1&X-Amz-Date=1",
                Some("X-Amz-Signature")
            ),
            "X-Amz-Date=1&b=1"
        );
    }

    #[test]
    fn header_values_are_trimmed_folded_and_joined() {
        let headers: [(&str, &[u8]); 5] = [
            ("My-Header1", b" value1 "),
            ("my-header2", b"\"a   b \t  c\""),
            ("MY-HEADER1", b"value2"),
            ("Host", b"example.amazonaws.com"),
            ("empty", b"   "),
        ];
        let block = canonical_headers(&headers, &["empty", "host", "my-header1", "my-header2"]);
        assert_eq!(
            block.as_deref().map(String::from_utf8_lossy).as_deref(),
            Ok(
                "empty:\nhost:example.amazonaws.com\nmy-header1:value1,value2\nmy-header2:\"a b c\"\n"
            )
        );
        assert_eq!(
            canonical_headers(&headers, &["x-amz-date"]),
            Err("x-amz-date")
        );
    }
}
