#![allow(dead_code)]

use gantry_jsonata::{Expression, FixedHost, Limits};
use serde_json::{Map, Value, json};

/// 2026-01-02T03:04:05.678Z
pub const NOW: i64 = 1_767_323_045_678;

pub fn shop() -> Value {
    json!({
        "shop": "Corner",
        "orders": [
            {"id": "o1", "customer": "ann", "items": [
                {"sku": "A", "name": "Apple", "price": 0.5, "qty": 10, "tags": ["fruit", "red"]},
                {"sku": "B", "name": "Bread", "price": 2.25, "qty": 1, "tags": ["bakery"]}
            ]},
            {"id": "o2", "customer": "bob", "items": [
                {"sku": "C", "name": "Cheese", "price": 7, "qty": 2, "tags": ["dairy"]}
            ]},
            {"id": "o3", "customer": "ann", "items": [
                {"sku": "A", "name": "Apple", "price": 0.5, "qty": 4, "tags": ["fruit", "red"]}
            ]}
        ],
        "nested": {"a": {"b": {"c": 1}}, "list": [[1, 2], [3]]},
        "empty": [],
        "nothing": null
    })
}

fn run(
    expr: &str,
    input: Option<&Value>,
    vars: &Map<String, Value>,
) -> Result<Option<Value>, gantry_jsonata::Error> {
    let e = Expression::parse(expr)?;
    let mut host = FixedHost::new(NOW, 42);
    e.evaluate(input, vars, &mut host, Limits::default())
}

/// Evaluates against `input`; undefined is `None`.
pub fn ev(expr: &str, input: &Value) -> Option<Value> {
    match run(expr, Some(input), &Map::new()) {
        Ok(v) => v,
        Err(e) => panic!("{expr}: unexpected error {e}"),
    }
}

/// Evaluates against the shop document and expects a value.
pub fn shop_eq(expr: &str, expected: Value) {
    assert_eq!(ev(expr, &shop()), Some(expected), "{expr}");
}

/// Evaluates with no input and expects a value.
pub fn eq(expr: &str, expected: Value) {
    match run(expr, None, &Map::new()) {
        Ok(v) => assert_eq!(v, Some(expected), "{expr}"),
        Err(e) => panic!("{expr}: unexpected error {e}"),
    }
}

/// Expects undefined.
pub fn undef(expr: &str, input: &Value) {
    assert_eq!(ev(expr, input), None, "{expr} should be undefined");
}

/// Expects an error with this code; returns the error.
pub fn err(expr: &str, input: &Value, code: &str) -> gantry_jsonata::Error {
    match run(expr, Some(input), &Map::new()) {
        Ok(v) => panic!("{expr}: expected error {code}, got {v:?}"),
        Err(e) => {
            assert_eq!(e.code, code, "{expr}: {e}");
            e
        }
    }
}

pub fn with_vars(expr: &str, vars: Value) -> Option<Value> {
    let Value::Object(m) = vars else {
        panic!("vars must be an object")
    };
    run(expr, None, &m).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

pub fn none() -> Value {
    json!({})
}

pub fn _unused() -> Value {
    json!(null)
}
