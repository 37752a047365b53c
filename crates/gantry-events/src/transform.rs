//! Input transformers: `InputPathsMap` + `InputTemplate` turned into a target's input.
//!
//! The template is scanned once, when the transformer is built, into text and
//! placeholder slots; each slot knows whether it sits inside a JSON string
//! literal. Rendering only fills slots:
//!
//! - a slot standing alone as a JSON value gets the value's JSON text
//!   (strings keep their quotes; a missing value becomes `null` so the output
//!   stays JSON);
//! - a slot inside a string literal, or anywhere in a template that is not
//!   JSON, gets a string's characters without quotes (and other values'
//!   JSON text), without escaping, as EventBridge does; a missing value is
//!   dropped.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::TransformError;

const MAX_PATHS: usize = 100;
const MAX_KEY_LEN: usize = 256;
const MAX_TEMPLATE: usize = 8192;

const RULE_ARN: &str = "aws.events.rule-arn";
const RULE_NAME: &str = "aws.events.rule-name";
const INGESTION_TIME: &str = "aws.events.event.ingestion-time";
const EVENT: &str = "aws.events.event";
const EVENT_JSON: &str = "aws.events.event.json";
const RESERVED: &[&str] = &[RULE_ARN, RULE_NAME, INGESTION_TIME, EVENT, EVENT_JSON];

/// What the bus knows about the rule and the event, for the predefined
/// `<aws.events.*>` placeholders. The crate reads no clock: the caller
/// passes the ingestion time (ISO 8601).
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleContext<'a> {
    /// `<aws.events.rule-name>`.
    pub rule_name: &'a str,
    /// `<aws.events.rule-arn>`.
    pub rule_arn: &'a str,
    /// `<aws.events.event.ingestion-time>`.
    pub ingestion_time: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Slot { name: String, quoted: bool },
}

/// A compiled input transformer.
///
/// ```
/// use gantry_events::{InputTransformer, RuleContext};
/// use serde_json::json;
///
/// let t = InputTransformer::new(
///     [("state", "$.detail.state"), ("id", "$.detail.id")],
///     r#"{"text": "Build <id> is <state>", "state": <state>, "rule": <aws.events.rule-name>}"#,
/// )?;
/// let event = json!({"detail": {"state": "FAILED", "id": "b-1"}});
/// let ctx = RuleContext { rule_name: "notify", ..RuleContext::default() };
/// assert_eq!(
///     t.render(&event, &ctx)?,
///     r#"{"text": "Build b-1 is FAILED", "state": "FAILED", "rule": "notify"}"#
/// );
/// # Ok::<(), gantry_events::TransformError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputTransformer {
    paths: BTreeMap<String, Vec<Step>>,
    segments: Vec<Segment>,
    json: bool,
}

impl InputTransformer {
    /// Builds a transformer from `InputPathsMap` entries and an `InputTemplate`.
    pub fn new<K, V>(
        input_paths_map: impl IntoIterator<Item = (K, V)>,
        input_template: &str,
    ) -> Result<InputTransformer, TransformError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut paths = BTreeMap::new();
        for (key, path) in input_paths_map {
            let (key, path) = (key.as_ref(), path.as_ref());
            let key_ok = !key.is_empty()
                && key.chars().count() <= MAX_KEY_LEN
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !key_ok {
                return Err(TransformError::BadKey(key.to_string()));
            }
            let steps = parse_path(path).map_err(|why| TransformError::BadPath {
                key: key.to_string(),
                path: path.to_string(),
                why,
            })?;
            paths.insert(key.to_string(), steps);
            if paths.len() > MAX_PATHS {
                return Err(TransformError::TooManyPaths(paths.len()));
            }
        }
        let length = input_template.chars().count();
        if length == 0 || length > MAX_TEMPLATE {
            return Err(TransformError::TemplateLength(length));
        }
        let trimmed = input_template.trim_start();
        let json = trimmed.starts_with(['{', '[', '"']);
        let known = |name: &str| paths.contains_key(name) || RESERVED.contains(&name);
        let segments = scan(input_template, json, &known)?;
        Ok(InputTransformer {
            paths,
            segments,
            json,
        })
    }

    /// Fills the template for one matched event.
    pub fn render(&self, event: &Value, ctx: &RuleContext<'_>) -> Result<String, TransformError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Slot { name, quoted } => {
                    let value = self.lookup(name, event, ctx);
                    match (value, quoted) {
                        (None, true) => {}
                        (None, false) => out.push_str("null"),
                        (Some(Value::String(s)), true) => out.push_str(&s),
                        (Some(v), _) => out.push_str(&v.to_string()),
                    }
                }
            }
        }
        if self.json
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&out)
        {
            return Err(TransformError::InvalidOutput(e.to_string()));
        }
        Ok(out)
    }

    fn lookup(&self, name: &str, event: &Value, ctx: &RuleContext<'_>) -> Option<Value> {
        match name {
            RULE_ARN => Some(Value::String(ctx.rule_arn.into())),
            RULE_NAME => Some(Value::String(ctx.rule_name.into())),
            INGESTION_TIME => Some(Value::String(ctx.ingestion_time.into())),
            EVENT => {
                let mut envelope = event.clone();
                if let Value::Object(map) = &mut envelope {
                    map.remove("detail");
                }
                Some(envelope)
            }
            EVENT_JSON => Some(event.clone()),
            _ => {
                let steps = self.paths.get(name)?;
                let mut at = event;
                for step in steps {
                    at = match step {
                        Step::Key(k) => at.get(k.as_str())?,
                        Step::Index(i) => at.get(*i)?,
                    };
                }
                Some(at.clone())
            }
        }
    }
}

/// `$`, then `.name`, `[index]`, `['name']` or `["name"]` steps.
fn parse_path(path: &str) -> Result<Vec<Step>, &'static str> {
    let mut rest = path.strip_prefix('$').ok_or("must start with $")?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("empty field name");
            }
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or("unclosed [")?;
            let inside = &r[..close];
            let quoted = inside
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            match quoted {
                Some(name) => steps.push(Step::Key(name.to_string())),
                None => steps.push(Step::Index(inside.parse().map_err(|_| "bad array index")?)),
            }
            rest = &r[close + 1..];
        } else {
            return Err("expected . or [ after a step");
        }
    }
    Ok(steps)
}

/// Splits the template into text and slots, checking placement rules.
fn scan(
    template: &str,
    json: bool,
    known: &dyn Fn(&str) -> bool,
) -> Result<Vec<Segment>, TransformError> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut in_string = false;
    let mut escaped = false;
    // Slots seen in the current string literal, to refuse them in keys.
    let mut string_slots: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(close) = rest[1..].find('>')
        {
            let name = &rest[1..1 + close];
            let well_formed = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if well_formed && known(name) {
                let quoted = !json || in_string;
                if json && in_string && (name == EVENT || name == EVENT_JSON) {
                    return Err(TransformError::EventInsideString(name.to_string()));
                }
                if json && !in_string && rest[close + 2..].trim_start().starts_with(':') {
                    return Err(TransformError::PlaceholderAsKey(name.to_string()));
                }
                if in_string {
                    string_slots.push(name.to_string());
                }
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Slot {
                    name: name.to_string(),
                    quoted,
                });
                rest = &rest[close + 2..];
                escaped = false;
                continue;
            }
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
        if !json {
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if let Some(name) = string_slots.first()
                    && rest.trim_start().starts_with(':')
                {
                    return Err(TransformError::PlaceholderAsKey(name.clone()));
                }
                string_slots.clear();
            }
        } else if c == '"' {
            in_string = true;
        }
    }
    if in_string {
        return Err(TransformError::UnterminatedString);
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "id": "e-1", "source": "s", "detail-type": "t",
            "detail": {"instance-id": "i-1", "state": "RUNNING", "n": 5, "list": [{"x": "first"}], "obj": {"a": 1}}
        })
    }

    fn render(map: &[(&str, &str)], template: &str) -> Result<String, TransformError> {
        let ctx = RuleContext {
            rule_name: "r",
            rule_arn: "arn:aws:events:us-east-1:123456789012:rule/r",
            ingestion_time: "2024-01-01T00:00:00Z",
        };
        InputTransformer::new(map.iter().copied(), template)?.render(&event(), &ctx)
    }

    const MAP: &[(&str, &str)] = &[
        ("instance", "$.detail.instance-id"),
        ("state", "$.detail.state"),
        ("n", "$.detail.n"),
        ("first", "$.detail.list[0].x"),
        ("obj", "$.detail.obj"),
        ("missing", "$.detail.nope"),
    ];

    #[test]
    fn quoting_follows_position() {
        assert_eq!(
            render(
                MAP,
                r#"{"instance": <instance>, "state": "<state>", "n": <n>}"#
            ),
            Ok(r#"{"instance": "i-1", "state": "RUNNING", "n": 5}"#.into())
        );
        assert_eq!(
            render(MAP, r#""<instance> is in state <state>""#),
            Ok(r#""i-1 is in state RUNNING""#.into())
        );
        assert_eq!(
            render(MAP, "<instance> is in state <state> (<n>)"),
            Ok("i-1 is in state RUNNING (5)".into())
        );
        assert_eq!(
            render(MAP, r#"{"o": <obj>, "f": <first>}"#),
            Ok(r#"{"o": {"a":1}, "f": "first"}"#.into())
        );
    }

    #[test]
    fn missing_values() {
        assert_eq!(
            render(MAP, r#"{"m": "[<missing>]", "v": <missing>}"#),
            Ok(r#"{"m": "[]", "v": null}"#.into())
        );
        assert_eq!(render(MAP, "x<missing>y"), Ok("xy".into()));
    }

    #[test]
    fn reserved_variables() {
        assert_eq!(
            render(&[], r#"{"rule": <aws.events.rule-name>, "arn": "<aws.events.rule-arn>", "at": <aws.events.event.ingestion-time>}"#),
            Ok(r#"{"rule": "r", "arn": "arn:aws:events:us-east-1:123456789012:rule/r", "at": "2024-01-01T00:00:00Z"}"#.into())
        );
        let whole = render(&[], r#"{"e": <aws.events.event>}"#).expect("renders");
        let v: Value = serde_json::from_str(&whole).expect("json");
        assert_eq!(v["e"]["id"], "e-1");
        assert!(v["e"].get("detail").is_none());
        let full = render(&[], "<aws.events.event.json>").expect("renders");
        assert_eq!(serde_json::from_str::<Value>(&full).expect("json"), event());
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            render(MAP, r#"{<state>: 1}"#),
            Err(TransformError::PlaceholderAsKey(_))
        ));
        assert!(matches!(
            render(MAP, r#"{"<state>": 1}"#),
            Err(TransformError::PlaceholderAsKey(_))
        ));
        assert!(matches!(
            render(&[], r#"{"e": "<aws.events.event>"}"#),
            Err(TransformError::EventInsideString(_))
        ));
        assert!(matches!(
            render(&[("bad.key", "$.a")], "x"),
            Err(TransformError::BadKey(_))
        ));
        assert!(matches!(
            render(&[("k", "detail.a")], "x"),
            Err(TransformError::BadPath { .. })
        ));
        assert!(matches!(
            render(&[], ""),
            Err(TransformError::TemplateLength(0))
        ));
        assert!(matches!(
            render(&[], &"x".repeat(8193)),
            Err(TransformError::TemplateLength(8193))
        ));
        let many: Vec<(String, String)> = (0..101)
            .map(|i| (format!("k{i}"), "$.a".to_string()))
            .collect();
        assert!(matches!(
            InputTransformer::new(many, "x"),
            Err(TransformError::TooManyPaths(101))
        ));
        // A string value with a quote breaks a JSON template: EventBridge does not escape.
        let quote = json!({"detail": {"q": "say \"hi\""}});
        let t = InputTransformer::new([("q", "$.detail.q")], r#"{"q": "<q>"}"#).expect("valid");
        assert!(matches!(
            t.render(&quote, &RuleContext::default()),
            Err(TransformError::InvalidOutput(_))
        ));
    }

    #[test]
    fn unknown_angle_brackets_are_text() {
        assert_eq!(
            render(MAP, "<b>bold</b> <state>"),
            Ok("<b>bold</b> RUNNING".into())
        );
    }
}
