//! Typed reads of pipeline values with botocore's constraints (type, length,
//! character set, range, enum), each recording a diagnostic and carrying on.
//!
//! A value that has the right type but breaks a constraint (a name with a
//! space, a `runOrder` of 0) is reported *and kept*, so the cross-checks in
//! `rules` still see every action; only a value of the wrong type is dropped.

use std::sync::LazyLock;

use regex::Regex;

use crate::buildspec::read::{self as common, Cx, Fields};
use crate::span::{Span, Spanned};
use crate::yaml::{Kind, Node, shorten};

/// The reading state: diagnostics, the spelling, and whether something
/// essential was dropped (then reference checks stay quiet rather than guess).
#[derive(Debug)]
pub(crate) struct Reader {
    pub cx: Cx,
    /// JSON is typed (`"1"` is not `1`); YAML keeps scalars as written.
    pub json: bool,
    /// A stage or action was dropped: reference checks would be unreliable.
    pub incomplete: bool,
    /// Actions (by span) with an unknown key, likely a misspelt member:
    /// their artifact counts are not checked, the typo is the news.
    pub misspelt: Vec<Span>,
    /// Configuration entries present with an unusable value, as (the
    /// configuration's span, key): not "missing" as well.
    pub unusable: Vec<(Span, String)>,
}

/// The constraints of a string member.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text {
    pub min: usize,
    pub max: usize,
    /// Allowed characters and how to say so.
    pub chars: Option<CharRule>,
}

/// A character test and its description ("letters, digits and `_`").
pub(crate) type CharRule = (fn(char) -> bool, &'static str);

impl Text {
    pub const fn len(min: usize, max: usize) -> Text {
        Text {
            min,
            max,
            chars: None,
        }
    }
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_')
}
fn artifact_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}
fn namespace_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '-' | '_')
}
fn bucket_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.')
}
fn env_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `PipelineName`, `StageName`, `ActionName`, `RuleName`.
pub(crate) const NAME: Text = Text {
    min: 1,
    max: 100,
    chars: Some((name_char, "letters, digits, `.`, `@`, `-` and `_`")),
};
/// `ArtifactName`.
pub(crate) const ARTIFACT: Text = Text {
    min: 1,
    max: 100,
    chars: Some((artifact_char, "letters, digits, `-` and `_`")),
};
/// `ActionNamespace`.
pub(crate) const NAMESPACE: Text = Text {
    min: 1,
    max: 100,
    chars: Some((namespace_char, "letters, digits, `@`, `-` and `_`")),
};
/// `PipelineVariableName`.
pub(crate) const VARIABLE: Text = Text {
    min: 1,
    max: 128,
    chars: Some((namespace_char, "letters, digits, `@`, `-` and `_`")),
};
/// `ActionProvider`, `RuleProvider`.
pub(crate) const PROVIDER: Text = Text {
    min: 1,
    max: 35,
    chars: Some((artifact_char, "letters, digits, `-` and `_`")),
};
/// `Version`.
pub(crate) const VERSION: Text = Text {
    min: 1,
    max: 9,
    chars: Some((artifact_char, "letters, digits, `-` and `_`")),
};
/// `ArtifactStoreLocation` (an S3 bucket name).
pub(crate) const BUCKET: Text = Text {
    min: 3,
    max: 63,
    chars: Some((bucket_char, "letters, digits, `-` and `.`")),
};
/// `EnvironmentVariableName`.
pub(crate) const ENV_NAME: Text = Text {
    min: 1,
    max: 128,
    chars: Some((env_char, "letters, digits and `_`")),
};
/// `AWSRegionName`.
pub(crate) const REGION: Text = Text::len(4, 30);

/// `RoleArn`'s pattern, anchored.
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-[\w]+)*:iam::[0-9]{12}:role/.*$").expect("a valid pattern")
});

impl Reader {
    pub fn new(json: bool) -> Reader {
        Reader {
            cx: Cx::default(),
            json,
            incomplete: false,
            misspelt: Vec::new(),
            unusable: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.cx.error(span, message);
    }

    /// "found ...", in the file's own terms.
    pub fn found(&self, node: &Node) -> String {
        match &node.kind {
            Kind::Scalar(s) if self.json && s.plain => match s.text.as_str() {
                "null" => "null".to_string(),
                "true" | "false" => s.text.clone(),
                _ => format!("the number {}", shorten(&s.text)),
            },
            Kind::Scalar(s) if !s.plain && s.text.is_empty() => "an empty string".to_string(),
            Kind::Seq(_) if self.json => "an array".to_string(),
            Kind::Map(_) if self.json => "an object".to_string(),
            _ => node.describe(),
        }
    }

    /// "`path` must be EXPECTED, found ...".
    pub fn expected(&mut self, node: &Node, path: &str, expected: &str) {
        let found = self.found(node);
        self.error(
            node.span,
            format!("`{path}` must be {expected}, found {found}"),
        );
    }

    fn mapping_word(&self) -> &'static str {
        if self.json { "an object" } else { "a mapping" }
    }

    fn list_word(&self) -> &'static str {
        if self.json { "an array" } else { "a list" }
    }

    /// A fixed-shape block with the members `allowed`.
    pub fn block<'n>(
        &mut self,
        node: &'n Node,
        at: Span,
        path: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        if !matches!(node.kind, Kind::Map(_)) {
            let word = self.mapping_word();
            self.expected(node, path, word);
            return None;
        }
        common::fields(&mut self.cx, node, at, path, allowed)
    }

    /// A user-keyed mapping (configuration, artifactStores).
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
    ) -> Option<Vec<(Spanned<String>, &'n Node)>> {
        if !matches!(node.kind, Kind::Map(_)) {
            let word = self.mapping_word();
            self.expected(node, path, word);
            return None;
        }
        Some(common::user_map(&mut self.cx, node, path))
    }

    /// The raw text of a string scalar: JSON wants a quoted string; YAML
    /// takes any non-null scalar as written (`version: 1`, `Poll: false`).
    pub fn raw_string(&mut self, node: &Node, path: &str) -> Option<Spanned<String>> {
        match node.scalar() {
            Some(s) if !node.is_null() && (!self.json || !s.plain) => {
                Some(Spanned::new(s.text.clone(), node.span))
            }
            _ => {
                self.expected(node, path, "a string");
                None
            }
        }
    }

    /// A string member checked against `rule`; kept when only the rule fails.
    pub fn string(&mut self, node: &Node, path: &str, rule: Text) -> Option<Spanned<String>> {
        let value = self.raw_string(node, path)?;
        self.check(&value, path, rule);
        Some(value)
    }

    /// Checks `value` against `rule`, reporting at the value.
    pub fn check(&mut self, value: &Spanned<String>, path: &str, rule: Text) {
        let count = value.value.chars().count();
        if count < rule.min {
            let message = if count == 0 {
                format!("`{path}` must not be empty")
            } else {
                format!(
                    "`{path}` must be at least {} characters, found {count}",
                    rule.min
                )
            };
            self.error(value.span, message);
        } else if count > rule.max {
            self.error(
                value.span,
                format!(
                    "`{path}` must be at most {} characters, found {count}",
                    rule.max
                ),
            );
        }
        if let Some((ok, allowed)) = rule.chars
            && let Some(bad) = value.value.chars().find(|c| !ok(*c))
        {
            self.error(
                value.span,
                format!(
                    "`{path}` may only contain {allowed}, found {} in `{}`",
                    describe_char(bad),
                    shorten(&value.value)
                ),
            );
        }
    }

    /// An IAM role ARN.
    pub fn role_arn(&mut self, node: &Node, path: &str) -> Option<Spanned<String>> {
        let value = self.string(node, path, Text::len(1, 1024))?;
        if !ROLE_ARN.is_match(&value.value) {
            self.error(
                value.span,
                format!(
                    "`{path}` must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), found `{}`",
                    shorten(&value.value)
                ),
            );
        }
        Some(value)
    }

    /// A whole number in `min..=max`; kept when only the range fails.
    pub fn integer(&mut self, node: &Node, path: &str, min: u32, max: u32) -> Option<Spanned<u32>> {
        let expected = format!("a whole number from {min} to {max}");
        let number = match node.scalar() {
            Some(s) if !node.is_null() && (s.plain || !self.json) => {
                s.text.trim().parse::<u64>().ok()
            }
            _ => None,
        };
        let Some(number) = number else {
            match node.scalar() {
                Some(s) if self.json && !s.plain => self.error(
                    node.span,
                    format!(
                        "`{path}` must be {expected}, found the string \"{}\" (write the number without quotes)",
                        shorten(&s.text)
                    ),
                ),
                _ => self.expected(node, path, &expected),
            }
            return None;
        };
        if number < u64::from(min) || number > u64::from(max) {
            self.expected(node, path, &expected);
        }
        let clamped = u32::try_from(number).unwrap_or(u32::MAX);
        Some(Spanned::new(clamped, node.span))
    }

    /// One of the `choices` (exact spelling; a near miss is suggested).
    pub fn choice<T: Copy>(
        &mut self,
        node: &Node,
        path: &str,
        choices: &[(&str, T)],
    ) -> Option<Spanned<T>> {
        let text = match node.scalar() {
            Some(s) if !node.is_null() && (!self.json || !s.plain) => s.text.as_str(),
            _ => "",
        };
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(Spanned::new(*v, node.span));
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let mut message = format!("one of {}", one_of(&names));
        let found = self.found(node);
        message = format!("`{path}` must be {message}, found {found}");
        let guess = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(text))
            .copied()
            .or_else(|| common::did_you_mean(text, &names));
        if let Some(guess) = guess.filter(|_| !text.is_empty()) {
            message.push_str(&format!("; did you mean `{guess}`?"));
        }
        self.error(node.span, message);
        None
    }

    /// A list with `min..=max` items (the count is reported and the items kept).
    pub fn list<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        min: usize,
        max: usize,
    ) -> Option<&'n [Node]> {
        let Kind::Seq(items) = &node.kind else {
            let word = self.list_word();
            self.expected(node, path, word);
            return None;
        };
        let what = if items.len() == 1 { "item" } else { "items" };
        if items.len() < min {
            self.error(
                node.span,
                format!(
                    "`{path}` must have at least {min} {}, found {}",
                    if min == 1 { "item" } else { "items" },
                    items.len()
                ),
            );
        } else if items.len() > max {
            self.error(
                node.span,
                format!(
                    "`{path}` must have at most {max} items, found {} {what}",
                    items.len()
                ),
            );
        }
        Some(items)
    }

    /// A list of strings, each checked against `rule`.
    pub fn strings(
        &mut self,
        node: &Node,
        path: &str,
        (min, max): (usize, usize),
        rule: Text,
    ) -> Option<Vec<Spanned<String>>> {
        let items = self.list(node, path, min, max)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| self.string(n, &format!("{path}[{i}]"), rule))
                .collect(),
        )
    }
}

/// "`A`, `B` or `C`".
pub(crate) fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        c => format!("`{c}`"),
    }
}

/// `parent.key` (re-exported for the converters).
pub(crate) use common::join;
