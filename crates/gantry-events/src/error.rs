//! Errors: why a pattern, a transformer or an event entry was refused.
//!
//! Pattern reasons use the wording of EventBridge's
//! `InvalidEventPatternException` where we know it, so a message a user
//! searches for leads to the same answers it would for AWS.

use std::fmt;

/// An event pattern that cannot be compiled.
///
/// Holds every problem found (the parser does not stop at the first one);
/// [`Display`](fmt::Display) renders the first in EventBridge's form,
/// `Event pattern is not valid. Reason: …`, followed by the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    issues: Vec<PatternIssue>,
}

/// One problem in an event pattern, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (at {path})")]
pub struct PatternIssue {
    /// The dotted field path in the pattern, `$` for the pattern itself.
    pub path: String,
    /// What is wrong there.
    pub reason: PatternReason,
}

/// What is wrong with a pattern, worded as EventBridge words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternReason {
    /// The text is not JSON.
    #[error("Filter is not valid JSON: {0}")]
    NotJson(String),
    /// The pattern (or a nested field) is not a JSON object.
    #[error("Filter is not an object")]
    NotAnObject,
    /// The pattern text is longer than PutRule accepts.
    #[error("Event pattern is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A field's value is neither an object nor an array.
    #[error("\"{0}\" must be an object or an array")]
    NotObjectOrArray(String),
    /// A leaf array is empty.
    #[error("Empty arrays are not allowed")]
    EmptyArray,
    /// A leaf array holds an array or some other non-scalar.
    #[error("Match value must be String, number, true, false, or null")]
    BadMatchValue,
    /// A match expression has zero or several keys.
    #[error("Only one key allowed in match expression")]
    OneKeyOnly,
    /// A match expression names an operator that does not exist.
    #[error("Unrecognized match type {0}")]
    UnknownOperator(String),
    /// An operator's operand has the wrong type.
    #[error("{0} match pattern must be a string")]
    MustBeString(&'static str),
    /// `exists` takes a boolean.
    #[error("exists match pattern must be either true or false.")]
    ExistsNotBool,
    /// `anything-but` was given something other than a string, a number or a list of them.
    #[error("Value of anything-but must be an array or single string/number value.")]
    AnythingButValue,
    /// An `anything-but` list mixes types or contains null/booleans.
    #[error("Inside anything but list, start|null|boolean is not supported.")]
    AnythingButList,
    /// An `anything-but` list mixes strings and numbers.
    #[error("Inside anything but list, all values must be of the same type (strings or numbers)")]
    AnythingButMixed,
    /// `anything-but` with an object naming an unsupported operator.
    #[error("Unsupported anything-but pattern: {0}")]
    AnythingButOperator(String),
    /// `anything-but/{prefix,suffix,equals-ignore-case,wildcard}` with a non-string.
    #[error("Inside anything-but/{0} list, number|start|null|boolean is not supported.")]
    AnythingButInnerType(&'static str),
    /// `anything-but` with an empty prefix or suffix.
    #[error("Null prefix/suffix not allowed")]
    EmptyPrefixSuffix,
    /// `prefix`/`suffix` with an object other than `equals-ignore-case`.
    #[error("Unsupported {0} pattern: {1}")]
    UnsupportedNested(&'static str, String),
    /// `numeric` was not an array.
    #[error("Value of numeric must be an array.")]
    NumericNotArray,
    /// A member of a `numeric` array is not an operator where one was expected.
    #[error("Invalid member in numeric match: {0}")]
    NumericMember(String),
    /// An unknown comparison operator.
    #[error("Unrecognized numeric range operator: {0}")]
    NumericOperator(String),
    /// An operand that is not a number.
    #[error("Value of {0} must be numeric")]
    NumericValue(String),
    /// More terms after `=`, `<` or `<=`.
    #[error("Too many elements in numeric expression")]
    NumericTooMany,
    /// The second comparison of a range is not an upper bound.
    #[error("Bad numeric range operator: {0}")]
    NumericRangeOperator(String),
    /// The lower bound is not below the upper bound.
    #[error("Bottom must be less than top")]
    NumericBottomTop,
    /// More than four members.
    #[error("Too many terms in numeric range expression")]
    NumericRangeTooMany,
    /// A CIDR without exactly one `/`.
    #[error("Malformed CIDR, one '/' required")]
    CidrSlash,
    /// A CIDR whose mask is not an integer in range.
    #[error("Malformed CIDR, mask bits must be an integer")]
    CidrMask,
    /// A CIDR whose address does not parse.
    #[error("Nonstandard IP address: {0}")]
    CidrAddress(String),
    /// `**` in a wildcard.
    #[error("Consecutive wildcard characters at pos {0}")]
    ConsecutiveWildcards(usize),
    /// A backslash followed by something other than `*` or `\`.
    #[error("Invalid escape character at pos {0}")]
    WildcardEscape(usize),
    /// A wildcard whose matching automaton would be too large.
    #[error(
        "Rule is too complex - try using fewer wildcard characters or fewer repeating character sequences after a wildcard character"
    )]
    WildcardTooComplex,
    /// `$or` with fewer than two alternatives.
    #[error("Or relationship must contain at least 2 alternatives")]
    OrTooFew,
    /// The `$or` alternatives multiply to more than the limit.
    #[error("The pattern has {0} combinations, more than the limit of 1000")]
    TooManyCombinations(u64),
    /// The pattern nests deeper than we follow.
    #[error("Pattern nests deeper than {0} levels")]
    TooDeep(usize),
}

impl PatternError {
    pub(crate) fn new(issues: Vec<PatternIssue>) -> PatternError {
        debug_assert!(!issues.is_empty());
        PatternError { issues }
    }

    pub(crate) fn one(path: impl Into<String>, reason: PatternReason) -> PatternError {
        PatternError::new(vec![PatternIssue {
            path: path.into(),
            reason,
        }])
    }

    /// Every problem found, in pattern order.
    pub fn issues(&self) -> &[PatternIssue] {
        &self.issues
    }

    /// The first problem's reason, as EventBridge would report it.
    pub fn reason(&self) -> String {
        match self.issues.first() {
            Some(issue) => issue.reason.to_string(),
            None => "unknown".to_string(),
        }
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Event pattern is not valid. Reason: ")?;
        match self.issues.first() {
            Some(first) => write!(f, "{first}")?,
            None => write!(f, "unknown")?,
        }
        if self.issues.len() > 1 {
            write!(f, " (and {} more)", self.issues.len() - 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for PatternError {}

/// An input transformer that cannot be built or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// More than 100 `InputPathsMap` entries.
    #[error("InputPathsMap has {0} entries; at most 100 are allowed")]
    TooManyPaths(usize),
    /// A key that is empty, too long or uses other characters than `[A-Za-z0-9_-]`.
    #[error("InputPathsMap key {0:?} must be 1-256 characters of [A-Za-z0-9_-]")]
    BadKey(String),
    /// A value that is not a JSON path in dot notation.
    #[error("InputPathsMap value {path:?} for key {key:?} is not a valid JSON path: {why}")]
    BadPath {
        /// The key.
        key: String,
        /// The path text.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A template that is empty or longer than 8192 characters.
    #[error("InputTemplate must be 1 to 8192 characters long (got {0})")]
    TemplateLength(usize),
    /// A placeholder used as an object key.
    #[error(
        "InputTemplate uses placeholder <{0}> as an object key; placeholders may only be values"
    )]
    PlaceholderAsKey(String),
    /// `<aws.events.event>` or `<aws.events.event.json>` inside a string.
    #[error("InputTemplate uses <{0}> inside a string; it may only stand as a JSON value")]
    EventInsideString(String),
    /// A string literal that is never closed.
    #[error("InputTemplate has an unterminated string")]
    UnterminatedString,
    /// The filled-in template is not valid JSON although the template is a JSON document.
    #[error("the transformed input is not valid JSON: {0}")]
    InvalidOutput(String),
}

/// A PutEvents entry that EventBridge would fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// `Source`, `DetailType` or `Detail` is missing.
    #[error("Parameter {0} is not valid. Reason: {0} is a required argument.")]
    Missing(&'static str),
    /// `Detail` is not a JSON object.
    #[error("Detail is malformed: {0}")]
    MalformedDetail(String),
    /// A field is longer than allowed.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// The entry is larger than 256 KiB.
    #[error("the entry is {0} bytes; an entry may be at most 262144 bytes")]
    EntryTooLarge(usize),
    /// A source in the `aws.` namespace, reserved for AWS services.
    #[error("Source {0:?} is reserved: sources starting with \"aws.\" are for AWS services")]
    ReservedSource(String),
    /// `Time` is not an RFC 3339 timestamp.
    #[error("Time {0:?} is not an RFC 3339 timestamp")]
    BadTime(String),
    /// An integer in the detail outside signed 64 bits.
    #[error("Detail contains an integer outside the signed 64-bit range: {0}")]
    IntegerRange(String),
    /// `account` is not 12 digits.
    #[error("account {0:?} must be 12 digits")]
    BadAccount(String),
}
