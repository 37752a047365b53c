//! The `wildcard` operator: `*` for any run of characters, `\*` and `\\` as literals.
//!
//! Validation follows event-ruler: `**` is refused, so is any other escape,
//! and so is a pattern whose automaton would keep too many states alive at
//! once (AWS's "Rule is too complex" check, approximated here by simulating the
//! pattern's NFA over its own alphabet and bounding the live state count).

use std::collections::{BTreeSet, HashSet};

use crate::error::PatternReason;

/// More simultaneously live NFA states than this is "too complex". Eleven
/// (counting the accepting state) accepts five `*`-separated segments
/// (`*a*a*a*a*a`) and refuses six (`*:*:*:*:*:event-bus/*`), which is where
/// EventBridge starts refusing them too.
const MAX_LIVE_STATES: usize = 11;
/// Subset construction stops here and calls the pattern too complex.
const MAX_SUBSETS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    Star,
}

/// A compiled wildcard expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wildcard {
    tokens: Box<[Token]>,
}

impl Wildcard {
    pub(crate) fn parse(text: &str) -> Result<Wildcard, PatternReason> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        let mut last_was_star = false;
        while let Some((pos, c)) = chars.next() {
            match c {
                '*' => {
                    if last_was_star {
                        return Err(PatternReason::ConsecutiveWildcards(pos));
                    }
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal).into()));
                    }
                    tokens.push(Token::Star);
                    last_was_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '\\'))) => literal.push(e),
                    _ => return Err(PatternReason::WildcardEscape(pos + 1)),
                },
                other => literal.push(other),
            }
            last_was_star = false;
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal.into()));
        }
        let wildcard = Wildcard {
            tokens: tokens.into(),
        };
        if wildcard.live_states() > MAX_LIVE_STATES {
            return Err(PatternReason::WildcardTooComplex);
        }
        Ok(wildcard)
    }

    /// The literal text every match starts with (empty if the pattern starts with `*`).
    pub(crate) fn literal_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(lit)) => lit,
            _ => "",
        }
    }

    /// Whether `text` matches, in O(len(text) × len(pattern)) at worst.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let tokens = &self.tokens;
        let Some((first, rest)) = tokens.split_first() else {
            return text.is_empty();
        };
        let mut rest_text = text;
        let mut tokens: &[Token] = tokens;
        // A leading literal must be a prefix.
        if let Token::Literal(lit) = first {
            match rest_text.strip_prefix(&**lit) {
                Some(r) => rest_text = r,
                None => return false,
            }
            tokens = rest;
        }
        if tokens.is_empty() {
            return rest_text.is_empty();
        }
        // Now tokens start with Star. A trailing literal must be a suffix.
        let (tokens, suffix) = match tokens.last() {
            Some(Token::Literal(lit)) => (&tokens[..tokens.len() - 1], Some(&**lit)),
            _ => (tokens, None),
        };
        if let Some(suffix) = suffix {
            match rest_text.strip_suffix(suffix) {
                Some(r) => rest_text = r,
                None => return false,
            }
        }
        // Middle: Star (Lit Star)*; greedy leftmost search is exact here
        // because every literal is flanked by stars.
        for token in tokens {
            if let Token::Literal(lit) = token {
                match rest_text.find(&**lit) {
                    Some(at) => rest_text = &rest_text[at + lit.len()..],
                    None => return false,
                }
            }
        }
        true
    }

    /// The most NFA states alive at once over any input, capped.
    fn live_states(&self) -> usize {
        // Positions: one per byte of literal, one per star, plus accept.
        let mut units: Vec<Option<u8>> = Vec::new(); // None = star
        for token in self.tokens.iter() {
            match token {
                Token::Star => units.push(None),
                Token::Literal(lit) => units.extend(lit.bytes().map(Some)),
            }
        }
        if !units.iter().any(Option::is_none) {
            return 1;
        }
        let closure = |set: &mut BTreeSet<usize>| {
            let mut grown = true;
            while grown {
                grown = false;
                let stars: Vec<usize> = set
                    .iter()
                    .copied()
                    .filter(|&i| i < units.len() && units[i].is_none())
                    .collect();
                for i in stars {
                    grown |= set.insert(i + 1);
                }
            }
        };
        let mut alphabet: Vec<Option<u8>> = units.iter().copied().flatten().map(Some).collect();
        alphabet.sort_unstable();
        alphabet.dedup();
        alphabet.push(None); // any byte that appears in no literal
        let mut start = BTreeSet::from([0usize]);
        closure(&mut start);
        let mut seen: HashSet<BTreeSet<usize>> = HashSet::new();
        let mut pending = vec![start];
        let mut worst = 0;
        while let Some(set) = pending.pop() {
            worst = worst.max(set.len());
            if worst > MAX_LIVE_STATES || seen.len() > MAX_SUBSETS {
                return usize::MAX;
            }
            if !seen.insert(set.clone()) {
                continue;
            }
            for byte in &alphabet {
                let mut next = BTreeSet::new();
                for &i in &set {
                    match units.get(i) {
                        Some(None) => {
                            next.insert(i);
                        }
                        Some(Some(b)) if Some(*b) == *byte => {
                            next.insert(i + 1);
                        }
                        _ => {}
                    }
                }
                if next.is_empty() {
                    continue;
                }
                closure(&mut next);
                if !seen.contains(&next) {
                    pending.push(next);
                }
            }
        }
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Wildcard {
        Wildcard::parse(s).expect("valid wildcard")
    }

    #[test]
    fn matching() {
        assert!(w("dir/*.png").matches("dir/a.png"));
        assert!(w("dir/*.png").matches("dir/.png"));
        assert!(!w("dir/*.png").matches("dir/a.jpg"));
        assert!(w("*").matches(""));
        assert!(w("").matches(""));
        assert!(!w("").matches("x"));
        assert!(w("a*b*c").matches("abc"));
        assert!(w("a*b*c").matches("aXbYbc"));
        assert!(!w("a*b*c").matches("acb"));
        assert!(w("*ab").matches("abab"));
        assert!(!w("ab*ab").matches("ab"));
        assert!(w(r"a\*b").matches("a*b"));
        assert!(!w(r"a\*b").matches("axb"));
        assert!(w(r"a\\*").matches(r"a\zzz"));
        assert!(w("/Users/*/doc.txt").matches("/Users/x/dir/doc.txt"));
    }

    #[test]
    fn validation() {
        assert_eq!(
            Wildcard::parse("a**"),
            Err(PatternReason::ConsecutiveWildcards(2))
        );
        assert_eq!(
            Wildcard::parse(r"a\b"),
            Err(PatternReason::WildcardEscape(2))
        );
        assert_eq!(
            Wildcard::parse("a\\"),
            Err(PatternReason::WildcardEscape(2))
        );
        assert!(Wildcard::parse(r"\**").is_ok());
        assert!(Wildcard::parse("*a*a*a*a*a").is_ok());
        assert_eq!(
            Wildcard::parse("*:*:*:*:*:event-bus/*"),
            Err(PatternReason::WildcardTooComplex)
        );
        assert!(Wildcard::parse("arn:aws:events:us-east-1:*:event-bus/*").is_ok());
        assert!(Wildcard::parse("/Users/*/dir/dir/dir/dir/dir/doc.txt").is_ok());
    }
}
