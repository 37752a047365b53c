//! One compiled operator and what it says about one scalar event value.
//!
//! Type rules (checked against EventBridge by the conformance cases):
//! positive string operators (`prefix`, `suffix`, `equals-ignore-case`,
//! `wildcard`, `cidr`) only ever match strings; `numeric` only numbers;
//! `anything-but` in every form matches *any* present value that is not
//! excluded, including `null` and values of another type.

use crate::cidr::Cidr;
use crate::flatten::Scalar;
use crate::wildcard::Wildcard;

/// A numeric bound: the value and whether it is included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub(crate) value: f64,
    pub(crate) inclusive: bool,
}

/// `numeric`: an interval with optional ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) lower: Option<Bound>,
    pub(crate) upper: Option<Bound>,
}

impl Range {
    pub(crate) fn contains(&self, x: f64) -> bool {
        let above = match self.lower {
            None => true,
            Some(b) if b.inclusive => x >= b.value,
            Some(b) => x > b.value,
        };
        let below = match self.upper {
            None => true,
            Some(b) if b.inclusive => x <= b.value,
            Some(b) => x < b.value,
        };
        above && below
    }
}

/// A value operator. `exists` is not here: it is a property of the condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    /// Exact string.
    Str(Box<str>),
    /// Exact number, compared by value (`300` matches `300.0`).
    Num(f64),
    Bool(bool),
    Null,
    Prefix(Box<str>),
    /// Operand already lower-cased.
    PrefixIgnoreCase(Box<str>),
    Suffix(Box<str>),
    SuffixIgnoreCase(Box<str>),
    EqualsIgnoreCase(Box<str>),
    Numeric(Range),
    Cidr(Cidr),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
}

/// The forms of `anything-but`. Each matches a present value unless the
/// value is excluded by one of the listed operands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnythingBut {
    Strings(Box<[Box<str>]>),
    Numbers(Box<[f64]>),
    Prefixes(Box<[Box<str>]>),
    Suffixes(Box<[Box<str>]>),
    /// Lower-cased.
    IgnoreCase(Box<[Box<str>]>),
    Wildcards(Box<[Wildcard]>),
}

pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

impl Matcher {
    pub(crate) fn matches(&self, value: &Scalar<'_>) -> bool {
        match (self, value) {
            (Matcher::AnythingBut(ab), v) => !ab.excludes(v),
            (Matcher::Str(p), Scalar::Str(s)) => **p == **s,
            (Matcher::Num(p), Scalar::Num(n)) => p == n,
            (Matcher::Bool(p), Scalar::Bool(b)) => p == b,
            (Matcher::Null, Scalar::Null) => true,
            (Matcher::Prefix(p), Scalar::Str(s)) => s.starts_with(&**p),
            (Matcher::Suffix(p), Scalar::Str(s)) => s.ends_with(&**p),
            (Matcher::PrefixIgnoreCase(p), Scalar::Str(s)) => fold(s).starts_with(&**p),
            (Matcher::SuffixIgnoreCase(p), Scalar::Str(s)) => fold(s).ends_with(&**p),
            (Matcher::EqualsIgnoreCase(p), Scalar::Str(s)) => fold(s) == **p,
            (Matcher::Numeric(r), Scalar::Num(n)) => r.contains(*n),
            (Matcher::Cidr(c), Scalar::Str(s)) => c.contains(s),
            (Matcher::Wildcard(w), Scalar::Str(s)) => w.matches(s),
            _ => false,
        }
    }
}

impl AnythingBut {
    fn excludes(&self, value: &Scalar<'_>) -> bool {
        match (self, value) {
            (AnythingBut::Strings(list), Scalar::Str(s)) => list.iter().any(|x| **x == **s),
            (AnythingBut::Numbers(list), Scalar::Num(n)) => list.iter().any(|x| x == n),
            (AnythingBut::Prefixes(list), Scalar::Str(s)) => {
                list.iter().any(|p| s.starts_with(&**p))
            }
            (AnythingBut::Suffixes(list), Scalar::Str(s)) => list.iter().any(|p| s.ends_with(&**p)),
            (AnythingBut::IgnoreCase(list), Scalar::Str(s)) => {
                let folded = fold(s);
                list.iter().any(|p| **p == *folded)
            }
            (AnythingBut::Wildcards(list), Scalar::Str(s)) => list.iter().any(|w| w.matches(s)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Scalar<'_> {
        Scalar::Str(x)
    }

    #[test]
    fn types_do_not_cross() {
        assert!(!Matcher::Str("300".into()).matches(&Scalar::Num(300.0)));
        assert!(Matcher::Num(300.0).matches(&Scalar::Num(300.0)));
        assert!(!Matcher::Null.matches(&s("")));
        assert!(!Matcher::Str("".into()).matches(&Scalar::Null));
        assert!(!Matcher::Prefix("1".into()).matches(&Scalar::Num(12.0)));
    }

    #[test]
    fn anything_but_matches_other_types_and_null() {
        let ab = Matcher::AnythingBut(AnythingBut::Strings(vec!["101".into()].into()));
        assert!(ab.matches(&Scalar::Num(101.0)));
        assert!(ab.matches(&Scalar::Null));
        assert!(!ab.matches(&s("101")));
        let abp = Matcher::AnythingBut(AnythingBut::Prefixes(vec!["init".into()].into()));
        assert!(abp.matches(&Scalar::Num(12.0)));
        assert!(!abp.matches(&s("init-x")));
    }

    #[test]
    fn ranges() {
        let r = Range {
            lower: Some(Bound {
                value: 0.0,
                inclusive: false,
            }),
            upper: Some(Bound {
                value: 5.0,
                inclusive: true,
            }),
        };
        assert!(!r.contains(0.0));
        assert!(r.contains(5.0));
        assert!(!r.contains(5.000001));
    }
}
