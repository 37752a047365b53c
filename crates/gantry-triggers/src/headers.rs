//! Request headers as this crate sees them: (name, value) pairs looked up
//! without regard to the case of the name, so the crate never depends on an
//! HTTP library's header map.

/// The headers of one webhook request.
///
/// Built from any iterator of (name, value) pairs; names compare
/// case-insensitively (`x-hub-signature-256` finds `X-Hub-Signature-256`).
/// Values are kept as bytes, because HTTP allows header values that are not
/// UTF-8; the lookups that need text say so when they do not get it. From
/// an `http::HeaderMap`: `Headers::new(map.iter().map(|(k, v)| (k.as_str(),
/// v.as_bytes())))`.
///
/// ```
/// use gantry_triggers::Headers;
///
/// let headers: Headers = [("X-GitHub-Event", "push")].into_iter().collect();
/// assert_eq!(headers.text("x-github-event"), Some("push"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// Headers from (name, value) pairs, in the order received.
    pub fn new<I, K, V>(pairs: I) -> Headers
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        pairs.into_iter().collect()
    }

    /// Every value of `name`, in the order received.
    pub fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `name` when it appears exactly once.
    pub(crate) fn single(&self, name: &str) -> Lookup<'_> {
        let mut values = self.all(name);
        match (values.next(), values.next()) {
            (None, _) => Lookup::Missing,
            (Some(value), None) => Lookup::One(value),
            (Some(_), Some(_)) => Lookup::Repeated,
        }
    }

    /// The first value of `name` as text with surrounding whitespace removed,
    /// or `None` when the header is absent or not UTF-8.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.all(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether `name` is present at all.
    pub fn contains(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Headers {
        Headers {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_vec()))
                .collect(),
        }
    }
}

/// What a single-valued header lookup found.
pub(crate) enum Lookup<'a> {
    Missing,
    One(&'a [u8]),
    Repeated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case() {
        let h = Headers::new([("X-Gitlab-Token", "t")]);
        assert_eq!(h.text("x-gitlab-token"), Some("t"));
        assert_eq!(h.text("X-GITLAB-TOKEN"), Some("t"));
        assert!(h.contains("x-GitLab-token"));
        assert!(!h.contains("x-gitlab-event"));
    }

    #[test]
    fn single_tells_missing_one_and_repeated_apart() {
        let h = Headers::new([("A", "1"), ("b", "2"), ("B", "3")]);
        assert!(matches!(h.single("a"), Lookup::One(b"1")));
        assert!(matches!(h.single("B"), Lookup::Repeated));
        assert!(matches!(h.single("c"), Lookup::Missing));
    }

    #[test]
    fn text_is_none_for_values_that_are_not_utf8() {
        let h = Headers::new([("X-Gitea-Event", &b"\xff\xfe"[..])]);
        assert_eq!(h.text("x-gitea-event"), None);
        assert!(h.contains("x-gitea-event"));
    }
}
