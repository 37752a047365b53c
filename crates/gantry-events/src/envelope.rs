//! The event envelope and the PutEvents entry it is built from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::EnvelopeError;

/// `detail-type` may be at most this many characters.
const MAX_DETAIL_TYPE: usize = 128;
/// A PutEvents entry may be at most this many bytes.
const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// An event as EventBridge delivers it to rules and targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `"0"`.
    pub version: String,
    /// A UUID per event, chosen by the bus.
    pub id: String,
    /// Free text naming the kind of event, with `source` identifying the detail schema.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// Who sent it: `gantry.codebuild`, or a user's reverse-DNS name.
    pub source: String,
    /// The 12-digit account.
    pub account: String,
    /// RFC 3339 timestamp.
    pub time: String,
    /// The region it was put in.
    pub region: String,
    /// ARNs the event concerns (may be empty).
    pub resources: Vec<String>,
    /// The event's own content: a JSON object.
    pub detail: Value,
}

impl Event {
    /// The event as the JSON object patterns and transformers see.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "version": self.version,
            "id": self.id,
            "detail-type": self.detail_type,
            "source": self.source,
            "account": self.account,
            "time": self.time,
            "region": self.region,
            "resources": self.resources,
            "detail": self.detail,
        })
    }
}

/// One entry of a PutEvents request, as the API spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEventsEntry {
    /// Required.
    pub source: Option<String>,
    /// Required.
    pub detail_type: Option<String>,
    /// Required: a JSON object, as text.
    pub detail: Option<String>,
    /// ARNs; optional.
    #[serde(default)]
    pub resources: Vec<String>,
    /// RFC 3339; when absent the bus uses the time of the call.
    pub time: Option<String>,
    /// The bus; absent means `default`.
    pub event_bus_name: Option<String>,
    /// X-Ray trace header, kept as given.
    pub trace_header: Option<String>,
}

impl PutEventsEntry {
    /// Checks the entry as PutEvents does and returns its parsed detail.
    ///
    /// `allow_aws_sources` lets Gantry's own services (not users) put events
    /// whose source is reserved.
    pub fn validate(&self, allow_aws_sources: bool) -> Result<Value, EnvelopeError> {
        let source = self
            .source
            .as_deref()
            .ok_or(EnvelopeError::Missing("Source"))?;
        let detail_type = self
            .detail_type
            .as_deref()
            .ok_or(EnvelopeError::Missing("DetailType"))?;
        let detail = self
            .detail
            .as_deref()
            .ok_or(EnvelopeError::Missing("Detail"))?;
        if source.is_empty() {
            return Err(EnvelopeError::Missing("Source"));
        }
        if detail_type.is_empty() {
            return Err(EnvelopeError::Missing("DetailType"));
        }
        if detail_type.chars().count() > MAX_DETAIL_TYPE {
            return Err(EnvelopeError::TooLong {
                field: "DetailType",
                max: MAX_DETAIL_TYPE,
            });
        }
        if !allow_aws_sources && source.starts_with("aws.") {
            return Err(EnvelopeError::ReservedSource(source.to_string()));
        }
        let size = self.size();
        if size > MAX_ENTRY_BYTES {
            return Err(EnvelopeError::EntryTooLarge(size));
        }
        if let Some(time) = &self.time
            && !is_rfc3339(time)
        {
            return Err(EnvelopeError::BadTime(time.clone()));
        }
        let detail: Value = serde_json::from_str(detail)
            .map_err(|e| EnvelopeError::MalformedDetail(e.to_string()))?;
        if !detail.is_object() {
            return Err(EnvelopeError::MalformedDetail("not a JSON object".into()));
        }
        check_integers(&detail)?;
        Ok(detail)
    }

    /// The entry's size as EventBridge counts it.
    pub fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_deref().map_or(0, str::len);
        text(&self.source)
            + text(&self.detail_type)
            + text(&self.detail)
            + self.resources.iter().map(String::len).sum::<usize>()
            + if self.time.is_some() { 14 } else { 0 }
    }

    /// Validates the entry and wraps it in the envelope. The bus supplies
    /// the id, account, region and the time of the call (used when the entry
    /// has none); this crate reads no clock.
    pub fn into_event(
        self,
        id: &str,
        account: &str,
        region: &str,
        now: &str,
        allow_aws_sources: bool,
    ) -> Result<Event, EnvelopeError> {
        let detail = self.validate(allow_aws_sources)?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EnvelopeError::BadAccount(account.to_string()));
        }
        Ok(Event {
            version: "0".into(),
            id: id.into(),
            detail_type: self.detail_type.unwrap_or_default(),
            source: self.source.unwrap_or_default(),
            account: account.into(),
            time: self.time.unwrap_or_else(|| now.to_string()),
            region: region.into(),
            resources: self.resources,
            detail,
        })
    }
}

fn check_integers(value: &Value) -> Result<(), EnvelopeError> {
    match value {
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => {
            Err(EnvelopeError::IntegerRange(n.to_string()))
        }
        Value::Array(items) => items.iter().try_for_each(check_integers),
        Value::Object(map) => map.values().try_for_each(check_integers),
        _ => Ok(()),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| {
                d.iter()
                    .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
            })
    };
    let (Some(_year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    let seps = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !seps
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [sign, h1, h2, b':', m1, m2] if matches!(sign, b'+' | b'-') => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
                && (*h1 - b'0') * 10 + (*h2 - b'0') <= 23
                && (*m1 - b'0') * 10 + (*m2 - b'0') <= 59
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> PutEventsEntry {
        PutEventsEntry {
            source: Some("com.example.app".into()),
            detail_type: Some("Order Placed".into()),
            detail: Some(r#"{"id": 7}"#.into()),
            ..PutEventsEntry::default()
        }
    }

    #[test]
    fn builds_the_envelope() {
        let event = entry()
            .into_event(
                "e-1",
                "123456789012",
                "eu-west-1",
                "2024-01-02T03:04:05Z",
                false,
            )
            .expect("valid");
        let value = event.to_value();
        assert_eq!(value["detail-type"], "Order Placed");
        assert_eq!(value["time"], "2024-01-02T03:04:05Z");
        assert_eq!(value["detail"]["id"], 7);
    }

    #[test]
    fn required_fields_and_limits() {
        let mut e = entry();
        e.detail = None;
        assert_eq!(e.validate(false), Err(EnvelopeError::Missing("Detail")));
        let mut e = entry();
        e.detail = Some("[1]".into());
        assert!(matches!(
            e.validate(false),
            Err(EnvelopeError::MalformedDetail(_))
        ));
        let mut e = entry();
        e.source = Some("aws.ec2".into());
        assert!(matches!(
            e.validate(false),
            Err(EnvelopeError::ReservedSource(_))
        ));
        assert!(e.validate(true).is_ok());
        let mut e = entry();
        e.detail = Some(r#"{"big": 18446744073709551615}"#.into());
        assert!(matches!(
            e.validate(false),
            Err(EnvelopeError::IntegerRange(_))
        ));
        let mut e = entry();
        e.time = Some("yesterday".into());
        assert!(matches!(e.validate(false), Err(EnvelopeError::BadTime(_))));
        let mut e = entry();
        e.detail_type = Some("x".repeat(129));
        assert!(matches!(
            e.validate(false),
            Err(EnvelopeError::TooLong { .. })
        ));
    }

    #[test]
    fn rfc3339() {
        assert!(is_rfc3339("2022-07-13T13:48:01Z"));
        assert!(is_rfc3339("2022-07-13T13:48:01.123+02:00"));
        assert!(!is_rfc3339("2022-13-13T13:48:01Z"));
        assert!(!is_rfc3339("2022-07-13T13:48:01"));
        assert!(!is_rfc3339("2022-07-13T13:48:01.Z"));
        assert!(!is_rfc3339("é"));
    }
}
