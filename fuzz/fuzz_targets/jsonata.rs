//! Feeds arbitrary bytes to the JSONata parser and evaluator as Step
//! Functions' `{% %}` expressions are: untrusted text, evaluated against a
//! document with arrays, objects and numbers under the default limits.
//! Nothing may panic or overflow the stack; every failure is an error with
//! a JSONata code.
#![no_main]

use gantry_jsonata::{Expression, FixedHost, Limits};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, json};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let expr = match Expression::parse(src) {
        Ok(e) => e,
        Err(e) => {
            assert!(!e.code.is_empty());
            return;
        }
    };
    let input = json!({
        "orders": [
            {"id": 1, "items": [{"sku": "a", "qty": 2, "price": 3.5}], "tags": ["x", "y"]},
            {"id": 2, "items": [], "tags": null, "note": "caf\u{e9}"}
        ],
        "n": -0.5,
        "flag": true
    });
    let mut bindings = Map::new();
    bindings.insert("states".into(), json!({"input": input, "context": {"Execution": {"Id": "e"}}}));
    let mut host = FixedHost::new(1_700_000_000_000, 7);
    let limits = Limits {
        max_steps: 200_000,
        ..Limits::default()
    };
    if let Err(e) = expr.evaluate(Some(&input), &bindings, &mut host, limits) {
        assert!(!e.code.is_empty());
    }
});
