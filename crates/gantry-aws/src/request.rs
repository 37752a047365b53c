//! The parts of an HTTP request that SigV4 covers, as plain borrowed data.
//!
//! No HTTP framework type appears here: a server built on axum, hyper or a
//! raw socket fills a [`RequestParts`] from its own request type in a few
//! lines, and tests build one by hand.

/// What the verifier knows about the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The whole body, hashed by the verifier.
    Bytes(&'a [u8]),
    /// The body's SHA-256, computed by the caller while streaming it in.
    Sha256([u8; 32]),
}

impl Payload<'_> {
    /// The hex SHA-256 of the payload.
    pub(crate) fn sha256_hex(&self) -> String {
        match self {
            Payload::Bytes(b) => crate::canonical::sha256_hex(b),
            Payload::Sha256(h) => hex::encode(h),
        }
    }

    /// Whether the body is empty.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Payload::Bytes(b) => b.is_empty(),
            Payload::Sha256(h) => hex::encode(h) == crate::canonical::EMPTY_SHA256,
        }
    }
}

/// A request as SigV4 sees it.
///
/// `path` and `query` are the request target exactly as it arrived on the
/// wire — still percent-encoded, not decoded or normalised by a router —
/// because the client signed that form. Header names may be in any case;
/// a header that arrived several times appears several times, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The raw path, e.g. `/` or `/a%20b`.
    pub path: &'a str,
    /// The raw query string without the `?`, or empty.
    pub query: &'a str,
    /// Every header as `(name, value)`; values are raw bytes.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The body, or its hash.
    pub payload: Payload<'a>,
}

impl<'a> RequestParts<'a> {
    /// A request for `method` and a request target `path?query`, with no
    /// headers and an empty body.
    pub fn new(method: &'a str, target: &'a str) -> Self {
        let target = target.split_once('#').map_or(target, |(t, _)| t);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        RequestParts {
            method,
            path,
            query,
            headers: Vec::new(),
            payload: Payload::Bytes(b""),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.headers.push((name, value.as_ref()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.payload = Payload::Bytes(body);
        self
    }

    /// The values of a header, case-insensitively, in arrival order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The single value of a header as text; `Err(())` when it appears more
    /// than once or is not UTF-8, `Ok(None)` when absent.
    pub(crate) fn single_header(&self, name: &str) -> Result<Option<&'a str>, ()> {
        let mut values = self.header_values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(());
        }
        match first {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .map(|s| Some(s.trim()))
                .map_err(|_| ()),
        }
    }

    /// The first decoded value of a query parameter (case-sensitive name).
    pub(crate) fn query_param(&self, name: &str) -> Option<Vec<u8>> {
        crate::canonical::query_pairs(self.query)
            .find(|(n, _)| n.as_slice() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_splits_into_path_and_query() {
        let r = RequestParts::new("GET", "/a%20b?x=1&y#frag");
        assert_eq!((r.path, r.query), ("/a%20b", "x=1&y"));
        let r = RequestParts::new("GET", "/");
        assert_eq!((r.path, r.query), ("/", ""));
    }

    #[test]
    fn repeated_headers_are_refused_as_single_values() {
        let r = RequestParts::new("GET", "/")
            .header("X-Amz-Date", "a")
            .header("x-amz-date", "b");
        assert_eq!(r.single_header("x-amz-date"), Err(()));
        assert_eq!(r.single_header("host"), Ok(None));
    }
}
