//! Reading a request's JSON body field by field, so a bad body is refused
//! with the field's name and what was expected (serde's messages name a
//! line and column, not the member).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::RestError;

/// A request body: a JSON object (an empty body is `{}`).
pub(crate) struct JsonBody {
    fields: Map<String, Value>,
}

impl JsonBody {
    /// Parses `bytes`; only the members in `allowed` may appear.
    pub(crate) fn parse(bytes: &[u8], allowed: &[&str]) -> Result<JsonBody, RestError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody { fields: Map::new() });
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| RestError::invalid_input(format!("The body is not JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(RestError::invalid_input("The body must be a JSON object"));
        };
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(RestError::invalid_input(format!(
                "Unknown field '{unknown}'; expected one of: {}",
                allowed.join(", ")
            )));
        }
        Ok(JsonBody { fields })
    }

    fn wrong(name: &str, expected: &str, got: &Value) -> RestError {
        let kind = match got {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        RestError::invalid_input(format!("Field '{name}' must be {expected}, not {kind}"))
    }

    /// A string member, if present.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, RestError> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Self::wrong(name, "a string", other)),
        }
    }

    /// A boolean member, if present.
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, RestError> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Self::wrong(name, "a boolean", other)),
        }
    }

    /// An object of string values (`{"k": "v"}`), empty when absent.
    pub(crate) fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, RestError> {
        match self.fields.get(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(Self::wrong(&format!("{name}.{k}"), "a string", other)),
                })
                .collect(),
            Some(other) => Err(Self::wrong(name, "an object of string values", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl Sized, RestError>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn members_are_read_with_their_names_in_errors() {
        let body = JsonBody::parse(
            br#"{"status": "Approved", "abandon": true, "variables": {"a": "1"}}"#,
            &["status", "abandon", "variables"],
        )
        .expect("parses");
        assert_eq!(
            body.string("status").expect("ok").as_deref(),
            Some("Approved")
        );
        assert_eq!(body.boolean("abandon").expect("ok"), Some(true));
        assert_eq!(body.string_map("variables").expect("ok")["a"], "1");
        assert_eq!(body.string("summary").expect("ok"), None);

        let body = JsonBody::parse(
            br#"{"status": 1, "variables": {"a": 2}}"#,
            &["status", "variables"],
        )
        .expect("parses");
        assert_eq!(
            message(body.string("status")),
            "Field 'status' must be a string, not a number"
        );
        assert!(message(body.string_map("variables")).contains("'variables.a'"));
        assert!(message(JsonBody::parse(b"{\"x\": 1}", &["status"])).contains("Unknown field 'x'"));
        assert!(message(JsonBody::parse(b"[1]", &["status"])).contains("JSON object"));
        assert!(message(JsonBody::parse(b"{", &["status"])).contains("not JSON"));
        assert!(JsonBody::parse(b"  ", &["status"]).is_ok());
    }
}
