//! A JSON value that knows where it sits in the payload, so that every
//! "missing" or "wrong type" error names the field path
//! (`pull_request.head.sha`, `commits[2].added[0]`).

use serde_json::Value;

use super::EventError;

/// A value and its path from the payload's root.
#[derive(Clone)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The payload itself, which must be an object.
    pub(crate) fn root(value: &'a Value) -> Result<Node<'a>, EventError> {
        let node = Node {
            value,
            path: String::new(),
        };
        if value.is_object() {
            Ok(node)
        } else {
            Err(node.wrong("an object"))
        }
    }

    /// The path, `payload` for the root.
    pub(crate) fn path(&self) -> String {
        if self.path.is_empty() {
            "payload".to_string()
        } else {
            self.path.clone()
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Member `key`; absent or `null` is an error saying what was expected.
    pub(crate) fn field(&self, key: &str, expected: &'static str) -> Result<Node<'a>, EventError> {
        self.opt(key)?.ok_or_else(|| EventError::Missing {
            path: self.child_path(key),
            expected,
        })
    }

    /// Member `key`, or `None` when absent or `null`. This node must be an object.
    pub(crate) fn opt(&self, key: &str) -> Result<Option<Node<'a>>, EventError> {
        let Some(object) = self.value.as_object() else {
            return Err(self.wrong("an object"));
        };
        Ok(object.get(key).filter(|v| !v.is_null()).map(|value| Node {
            value,
            path: self.child_path(key),
        }))
    }

    /// This value as text.
    pub(crate) fn str(&self) -> Result<&'a str, EventError> {
        self.value.as_str().ok_or_else(|| self.wrong("a string"))
    }

    /// Member `key` as text (required).
    pub(crate) fn string(&self, key: &str) -> Result<String, EventError> {
        Ok(self.field(key, "a string")?.str()?.to_string())
    }

    /// Member `key` as text, when present.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, EventError> {
        match self.opt(key)? {
            Some(node) => Ok(Some(node.str()?.to_string())),
            None => Ok(None),
        }
    }

    /// Member `key` as a boolean, when present.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, EventError> {
        match self.opt(key)? {
            Some(node) => node
                .value
                .as_bool()
                .map(Some)
                .ok_or_else(|| node.wrong("true or false")),
            None => Ok(None),
        }
    }

    /// Member `key` as a whole number ≥ 0 (required).
    pub(crate) fn u64(&self, key: &str) -> Result<u64, EventError> {
        let node = self.field(key, "a whole number")?;
        node.value
            .as_u64()
            .ok_or_else(|| node.wrong("a whole number"))
    }

    /// Member `key` as a whole number ≥ 0, when present.
    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>, EventError> {
        match self.opt(key)? {
            Some(node) => node
                .value
                .as_u64()
                .map(Some)
                .ok_or_else(|| node.wrong("a whole number")),
            None => Ok(None),
        }
    }

    /// Member `key` as an array, when present.
    pub(crate) fn opt_array(&self, key: &str) -> Result<Option<Vec<Node<'a>>>, EventError> {
        match self.opt(key)? {
            Some(node) => node.elements().map(Some),
            None => Ok(None),
        }
    }

    fn elements(&self) -> Result<Vec<Node<'a>>, EventError> {
        let Some(items) = self.value.as_array() else {
            return Err(self.wrong("an array"));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// The error for a value of the wrong type.
    pub(crate) fn wrong(&self, expected: &'static str) -> EventError {
        EventError::Type {
            path: self.path(),
            expected,
            found: kind(self.value),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
