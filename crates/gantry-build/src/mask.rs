//! Streaming secret masking for build logs: every occurrence of a secret
//! value becomes `***`, even when the secret arrives split across reads.
//!
//! CodeBuild masks Parameter Store and Secrets Manager values (and access key
//! ids) in build logs by exact match (FORMATS-AWS.md §1.3). Gantry does the
//! same on the byte stream coming out of the build's shell, which arrives in
//! arbitrary chunks: a secret may be cut in two by a pipe read, so the stream
//! holds back a short tail that could still turn out to be a secret.
//!
//! # Semantics
//!
//! Matching is *leftmost-longest*, non-overlapping, exactly as one
//! [`SecretMasker::mask_all`] call over the whole input would do it: scanning
//! left to right, the earliest position where any secret starts wins; among
//! secrets starting there, the longest wins; scanning resumes after it.
//! [`MaskingStream`] produces byte-for-byte the same output as
//! [`SecretMasker::mask_all`], however the input is split into chunks and
//! whenever [`MaskingStream::flush_partial`] is called.
//!
//! # Guarantee
//!
//! Every occurrence of a secret in the **input** overlaps at least one match,
//! so no input occurrence survives whole. Precisely: *every occurrence of a
//! secret in the output overlaps a `***` that the masker wrote*. Hence, if no
//! secret contains the byte `*`, the output contains no secret at all.
//!
//! What is *not* promised: when two secrets overlap in the input, only the one
//! chosen by leftmost-longest is replaced, and the rest of the other one shows
//! (secrets `abc` and `bcd` over `abcd` give `***d`). And, as in CodeBuild,
//! transformed secrets (base64, split over lines, ...) are not masked.
//!
//! # Latency
//!
//! [`MaskingStream::push`] releases every byte it can: it holds back only a
//! tail that is a *proper prefix of some secret* (so at most
//! `max_secret_len - 1` bytes). That tail starts at the earliest position
//! whose remaining bytes could still grow into a secret, or into a longer
//! secret than one already complete there. Bytes that cannot start a secret
//! are never held back beyond the push that delivered them.
//!
//! # Example
//!
//! ```
//! use gantry_build::mask::SecretMasker;
//!
//! let masker = SecretMasker::new(["hunter2", "AKIAABCDEFGHIJKLMNOP"]);
//! let mut stream = masker.stream();
//! let mut out = Vec::new();
//! stream.push(b"password: hun", &mut out);
//! assert_eq!(out, b"password: "); // "hun" could be the start of a secret
//! stream.push(b"ter2\n", &mut out);
//! stream.finish(&mut out);
//! assert_eq!(out, b"password: ***\n");
//! assert_eq!(masker.mask_all(b"x hunter2 y"), b"x *** y");
//! ```

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};

/// The text every secret occurrence is replaced with.
pub const MASK: &[u8] = b"***";

/// A compiled set of secrets; cheap to clone, shareable across threads.
#[derive(Clone, Debug)]
pub struct SecretMasker {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    automaton: AhoCorasick,
    /// The distinct non-empty secrets, for the partial-tail test.
    secrets: Vec<Vec<u8>>,
    /// `starts[b]` is true when some secret begins with byte `b`.
    starts: [bool; 256],
    max_len: usize,
}

impl SecretMasker {
    /// Compiles `secrets` into a masker. Empty secrets are ignored, duplicates
    /// are harmless. With no (non-empty) secret the masker passes bytes through.
    pub fn new(secrets: impl IntoIterator<Item = impl AsRef<[u8]>>) -> SecretMasker {
        let mut list: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        list.sort();
        list.dedup();
        if list.is_empty() {
            return SecretMasker { inner: None };
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&list)
            // Only size limits can fail a build of plain literal patterns;
            // those are far beyond any secret set, but don't panic on them.
            .unwrap_or_else(|_| {
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
                    .build(&list)
                    .expect("a noncontiguous NFA over literals always builds")
            });
        let mut starts = [false; 256];
        for s in &list {
            starts[s[0] as usize] = true;
        }
        let max_len = list.iter().map(Vec::len).max().unwrap_or(0);
        SecretMasker {
            inner: Some(Arc::new(Inner {
                automaton,
                secrets: list,
                starts,
                max_len,
            })),
        }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// The number of distinct non-empty secrets.
    pub fn secret_count(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.secrets.len())
    }

    /// The length of the longest secret (0 when there is none); a stream
    /// never holds back more than this minus one bytes.
    pub fn max_secret_len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.max_len)
    }

    /// Masks a whole input in one go: the reference the stream agrees with.
    pub fn mask_all(&self, input: &[u8]) -> Vec<u8> {
        let Some(inner) = &self.inner else {
            return input.to_vec();
        };
        let mut out = Vec::with_capacity(input.len());
        let mut last = 0;
        for m in inner.automaton.find_iter(input) {
            out.extend_from_slice(&input[last..m.start()]);
            out.extend_from_slice(MASK);
            last = m.end();
        }
        out.extend_from_slice(&input[last..]);
        out
    }

    /// Starts masking a new stream (one per log, or per stdout/stderr pipe).
    pub fn stream(&self) -> MaskingStream {
        MaskingStream {
            inner: self.inner.clone(),
            held: Vec::new(),
        }
    }
}

/// One stream being masked; feed it with [`push`](MaskingStream::push).
#[derive(Debug)]
pub struct MaskingStream {
    inner: Option<Arc<Inner>>,
    /// Input not yet released: always empty or a proper prefix of a secret.
    held: Vec<u8>,
}

impl MaskingStream {
    /// Takes the next `chunk` of input and appends to `out` every masked byte
    /// that is now certain, holding back only a possible start of a secret.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(inner) = &self.inner else {
            out.extend_from_slice(chunk);
            return;
        };
        if self.held.is_empty() {
            // The common case: nothing pending, scan the chunk in place.
            let consumed = release(inner, chunk, false, out);
            self.held.extend_from_slice(&chunk[consumed..]);
        } else {
            self.held.extend_from_slice(chunk);
            let consumed = release(inner, &self.held, false, out);
            self.held.drain(..consumed);
        }
    }

    /// Releases held-back bytes that can no longer be the start of a secret.
    ///
    /// Meant for a timer (so a stalled partial line still shows). Because
    /// [`push`](MaskingStream::push) already releases everything that cannot
    /// start a secret, this currently has nothing to add; what stays held is
    /// exactly a proper prefix of some secret, which must wait for the next
    /// bytes (or [`finish`](MaskingStream::finish)) to be decided. Calling it
    /// at any time never changes the overall output.
    pub fn flush_partial(&mut self, out: &mut Vec<u8>) {
        let Some(inner) = &self.inner else { return };
        if self.held.is_empty() {
            return;
        }
        let consumed = release(inner, &self.held, false, out);
        self.held.drain(..consumed);
    }

    /// Ends the stream: masks and releases whatever is still held.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if let Some(inner) = &self.inner {
            let consumed = release(inner, &self.held, true, out);
            debug_assert_eq!(consumed, self.held.len());
        }
        self.held.clear();
    }

    /// The bytes currently held back (a proper prefix of some secret, or empty).
    pub fn held(&self) -> &[u8] {
        &self.held
    }
}

/// Masks `buf` into `out` as far as it is decided and returns how many bytes
/// of `buf` were consumed; the rest must be kept for later. With `at_end`,
/// nothing more will come, so everything is decided.
///
/// A match starting at `s` is decided when no position `p <= s` has a tail
/// `buf[p..]` that is a proper prefix of a secret: only such a tail could
/// become an earlier match, or a longer match at the same start, once more
/// bytes arrive. So everything before the first such position `hold` is final.
fn release(inner: &Inner, buf: &[u8], at_end: bool, out: &mut Vec<u8>) -> usize {
    let len = buf.len();
    let mut hold = if at_end {
        len
    } else {
        first_partial(inner, buf, 0)
    };
    let mut pos = 0;
    loop {
        if pos > hold {
            // The last match swallowed the old candidate; look again after it.
            hold = first_partial(inner, buf, pos);
        }
        let found = inner.automaton.find(Input::new(buf).span(pos..len));
        match found {
            Some(m) if m.start() < hold => {
                out.extend_from_slice(&buf[pos..m.start()]);
                out.extend_from_slice(MASK);
                pos = m.end();
            }
            _ => {
                out.extend_from_slice(&buf[pos..hold]);
                return hold;
            }
        }
    }
}

/// The first position `p >= from` where `buf[p..]` is a proper prefix of some
/// secret, or `buf.len()` when there is none. Only the last `max_len - 1`
/// positions can qualify.
fn first_partial(inner: &Inner, buf: &[u8], from: usize) -> usize {
    let len = buf.len();
    let lo = from.max(len.saturating_sub(inner.max_len.saturating_sub(1)));
    (lo..len)
        .find(|&p| {
            inner.starts[buf[p] as usize] && {
                let tail = &buf[p..];
                inner
                    .secrets
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            }
        })
        .unwrap_or(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream_all(masker: &SecretMasker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = masker.stream();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn masks_each_occurrence() {
        let m = SecretMasker::new(["s3cr3t"]);
        assert_eq!(m.mask_all(b"a s3cr3t b s3cr3ts3cr3t"), b"a *** b ******");
    }

    #[test]
    fn no_secrets_passes_through() {
        let m = SecretMasker::new(Vec::<Vec<u8>>::new());
        assert!(m.is_empty());
        assert_eq!(stream_all(&m, &[b"abc", b"def"]), b"abcdef");
        let m = SecretMasker::new([""]);
        assert!(m.is_empty());
    }

    #[test]
    fn duplicates_and_empties_are_dropped() {
        let m = SecretMasker::new(["tok", "", "tok", "longer-token"]);
        assert_eq!(m.secret_count(), 2);
        assert_eq!(m.max_secret_len(), 12);
    }

    #[test]
    fn streams_can_move_to_other_threads() {
        fn send_static<T: Send + Sync + 'static>() {}
        send_static::<SecretMasker>();
        fn send<T: Send + 'static>() {}
        send::<MaskingStream>();
    }

    #[test]
    fn longest_wins_at_same_start() {
        let m = SecretMasker::new(["abc", "abcdef"]);
        assert_eq!(m.mask_all(b"xabcdefx"), b"x***x");
        assert_eq!(stream_all(&m, &[b"xabc", b"def", b"x"]), b"x***x");
        assert_eq!(stream_all(&m, &[b"xabc", b"dxf"]), b"x***dxf");
    }

    #[test]
    fn split_secret_is_masked() {
        let m = SecretMasker::new(["hunter2"]);
        assert_eq!(stream_all(&m, &[b"pw=hun", b"ter2!"]), b"pw=***!");
        let mut out = Vec::new();
        let mut s = m.stream();
        for b in b"pw=hunter2!" {
            s.push(&[*b], &mut out);
        }
        s.finish(&mut out);
        assert_eq!(out, b"pw=***!");
    }

    #[test]
    fn holds_only_a_possible_secret_start() {
        let m = SecretMasker::new(["hunter2"]);
        let mut s = m.stream();
        let mut out = Vec::new();
        s.push(b"line one\nhunt", &mut out);
        assert_eq!(out, b"line one\n");
        assert_eq!(s.held(), b"hunt");
        s.push(b"ing", &mut out);
        assert_eq!(out, b"line one\nhunting");
        assert_eq!(s.held(), b"");
    }

    #[test]
    fn overlapping_secrets_documented_leak() {
        let m = SecretMasker::new(["abc", "bcd"]);
        assert_eq!(m.mask_all(b"abcd"), b"***d");
    }

    #[test]
    fn flush_partial_keeps_output_identical() {
        let m = SecretMasker::new(["hunter2"]);
        let mut s = m.stream();
        let mut out = Vec::new();
        s.push(b"hun", &mut out);
        s.flush_partial(&mut out);
        assert_eq!(out, b"");
        s.push(b"gry", &mut out);
        s.flush_partial(&mut out);
        assert_eq!(out, b"hungry");
        s.finish(&mut out);
        assert_eq!(out, b"hungry");
    }

    fn secrets_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(b'a'..=b'd', 0..6), 0..5)
    }

    fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![b'a'..=b'd', Just(b'\n'), Just(b'*')], 0..80)
    }

    /// A split of `input` into chunks, each followed (or not) by a flush.
    fn split(input: &[u8], cuts: &[(usize, bool)]) -> Vec<(Vec<u8>, bool)> {
        let mut points: Vec<(usize, bool)> = cuts
            .iter()
            .map(|&(c, f)| (c % (input.len() + 1), f))
            .collect();
        points.sort();
        let mut out = Vec::new();
        let mut last = 0;
        for (p, f) in points {
            out.push((input[last..p].to_vec(), f));
            last = p;
        }
        out.push((input[last..].to_vec(), false));
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    proptest! {
        /// (a) any split and any flush interleaving gives the one-shot output.
        #[test]
        fn prop_stream_equals_one_shot(
            secrets in secrets_strategy(),
            input in input_strategy(),
            cuts in prop::collection::vec((0usize..100, any::<bool>()), 0..12),
        ) {
            let m = SecretMasker::new(&secrets);
            let mut s = m.stream();
            let mut out = Vec::new();
            for (chunk, flush) in split(&input, &cuts) {
                s.push(&chunk, &mut out);
                if flush {
                    s.flush_partial(&mut out);
                }
            }
            s.finish(&mut out);
            prop_assert_eq!(out, m.mask_all(&input));
        }

        /// (b) every secret occurrence left in the output overlaps a `***`
        /// written by the masker; with no `*` in any secret, none is left.
        #[test]
        fn prop_no_secret_in_output(
            secrets in secrets_strategy(),
            input in prop::collection::vec(b'a'..=b'd', 0..80),
        ) {
            let m = SecretMasker::new(&secrets);
            let out = m.mask_all(&input);
            for s in &secrets {
                prop_assert!(!contains(&out, s), "{:?} left in {:?}", s, out);
            }
        }

        /// (b, general) with `*` everywhere: each output occurrence of a
        /// secret overlaps some mask the masker wrote.
        #[test]
        fn prop_leftovers_touch_a_mask(
            secrets in prop::collection::vec(
                prop::collection::vec(prop_oneof![b'a'..=b'b', Just(b'*')], 1..4), 0..4),
            input in prop::collection::vec(prop_oneof![b'a'..=b'b', Just(b'*')], 0..40),
        ) {
            let m = SecretMasker::new(&secrets);
            let out = m.mask_all(&input);
            // Which output bytes belong to a `***` the masker wrote.
            let mut mask_cover = vec![false; out.len()];
            let (mut last, mut o) = (0, 0);
            let matches: Vec<_> = m
                .inner
                .as_ref()
                .map(|i| i.automaton.find_iter(&input).collect())
                .unwrap_or_default();
            for mt in matches {
                o += mt.start() - last;
                for c in &mut mask_cover[o..o + MASK.len()] {
                    *c = true;
                }
                o += MASK.len();
                last = mt.end();
            }
            for s in &secrets {
                for i in 0..out.len().saturating_sub(s.len() - 1) {
                    if &out[i..i + s.len()] == s.as_slice() {
                        prop_assert!(mask_cover[i..i + s.len()].iter().any(|&c| c));
                    }
                }
            }
        }

        /// (c) a secret split at any point across two pushes is masked.
        #[test]
        fn prop_split_secret_masked(
            secret in prop::collection::vec(b'a'..=b'z', 1..20),
            before in "[ -~]{0,10}",
            after in "[ -~]{0,10}",
            cut in 0usize..20,
        ) {
            prop_assume!(!secret.contains(&b'*'));
            let m = SecretMasker::new([&secret]);
            let mut input = before.clone().into_bytes();
            let at = input.len() + cut % (secret.len() + 1);
            input.extend_from_slice(&secret);
            input.extend_from_slice(after.as_bytes());
            let out = stream_all(&m, &[&input[..at], &input[at..]]);
            prop_assert!(!contains(&out, &secret));
            prop_assert_eq!(out, m.mask_all(&input));
        }

        /// (d) after every push, the held tail is empty or a proper prefix of
        /// a secret, hence shorter than the longest secret.
        #[test]
        fn prop_held_is_a_proper_prefix(
            secrets in secrets_strategy(),
            input in input_strategy(),
            cuts in prop::collection::vec((0usize..100, any::<bool>()), 0..12),
        ) {
            let m = SecretMasker::new(&secrets);
            let mut s = m.stream();
            let mut out = Vec::new();
            for (chunk, _) in split(&input, &cuts) {
                s.push(&chunk, &mut out);
                let held = s.held();
                prop_assert!(held.len() < m.max_secret_len().max(1));
                if !held.is_empty() {
                    prop_assert!(secrets.iter().any(|x| x.len() > held.len() && x.starts_with(held)));
                }
            }
        }
    }

    /// Prints masking throughput: `cargo test --release -p gantry-build --lib
    /// mask::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let secrets: Vec<String> = (0..10)
            .map(|i| format!("s3cr3t-{i}-AKIA{:016}", i * 7919))
            .collect();
        let m = SecretMasker::new(&secrets);
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < 64 << 20 {
            text.extend_from_slice(
                format!(
                    "[Container] 2024/01/01 12:00:{:02} Running command npm run build -- step {i} compiled src/module_{i}.ts ok\n",
                    i % 60
                )
                .as_bytes(),
            );
            if i.is_multiple_of(1000) {
                text.extend_from_slice(secrets[(i / 1000) as usize % 10].as_bytes());
            }
            i += 1;
        }
        for chunk in [128usize, 4096, 65536] {
            let start = std::time::Instant::now();
            let mut s = m.stream();
            let mut out = Vec::with_capacity(text.len());
            for c in text.chunks(chunk) {
                s.push(c, &mut out);
                std::hint::black_box(&out);
                out.clear();
            }
            s.finish(&mut out);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "masking {} MB in {chunk}-byte chunks: {:.0} MB/s",
                text.len() >> 20,
                text.len() as f64 / secs / 1e6
            );
        }
    }
}
