//! Undefined, null and sequence edge cases.
mod common;
use common::*;
use serde_json::json;

#[test]
fn undefined_disappears_from_constructors() {
    shop_eq("[missing]", json!([]));
    shop_eq("[missing, 1, nothing]", json!([1, null]));
    shop_eq("{'a': missing, 'b': nothing}", json!({"b": null}));
    shop_eq("missing & 'x'", json!("x"));
    shop_eq("$count(missing)", json!(0));
    shop_eq("$exists(nothing)", json!(true));
    shop_eq("'x' in missing", json!(false));
    undef("$not(missing)", &shop());
    undef("$string(missing)", &shop());
    undef("$sum(missing.x)", &shop());
    undef("[][0]", &shop());
    undef("missing[0]", &shop());
    shop_eq("$count(orders[customer = 'nobody'])", json!(0));
}

#[test]
fn null_is_a_value() {
    shop_eq("nothing = null", json!(true));
    shop_eq("missing = null", json!(false));
    shop_eq("$type(nothing)", json!("null"));
    err("nothing + 1", &shop(), "T2001");
    shop_eq("nothing ?? 'fallback'", json!(null));
    shop_eq("nothing ?: 'fallback'", json!("fallback"));
}

#[test]
fn singletons_unwrap_but_data_arrays_stay() {
    let data = json!({"a": [{"b": [1]}, {"b": [2]}], "one": {"b": [[1, 2]]}, "mixed": [{"b": {"c": 1}}, {"b": {"c": [2, 3]}}], "n": 5});
    assert_eq!(ev("a.b", &data), Some(json!([1, 2])));
    assert_eq!(ev("a[0].b", &data), Some(json!([1])));
    assert_eq!(ev("one.b", &data), Some(json!([[1, 2]])));
    assert_eq!(ev("mixed.b.c", &data), Some(json!([1, 2, 3])));
    assert_eq!(ev("n[0]", &data), Some(json!(5)));
    assert_eq!(ev("n[-1]", &data), Some(json!(5)));
    assert_eq!(ev("n[true]", &data), Some(json!(5)));
    undef("n[1]", &data);
    undef("n[false]", &data);
    assert_eq!(ev("$keys({'k': 1})[]", &data), Some(json!(["k"])));
    assert_eq!(ev("a[0].b[]", &data), Some(json!([1])));
}

#[test]
fn function_results_are_sequences() {
    eq("$map([1, 2], function($v) { [$v] })", json!([[1], [2]]));
    eq("$map([1], function($v) { [$v] })", json!([1]));
    eq("$filter([1, 2, 3], function($v) { $v = 2 })", json!(2));
    eq(
        "$count($filter([1, 2, 3], function($v) { $v > 5 }))",
        json!(0),
    );
    eq("[$map([1], function($v) { $v })]", json!([1]));
}

#[test]
fn top_level_arrays_are_one_item() {
    let data = json!([{"a": 1}, {"a": 2}, {"b": 3}]);
    assert_eq!(ev("a", &data), Some(json!([1, 2])));
    assert_eq!(ev("$[0]", &data), Some(json!({"a": 1})));
    assert_eq!(ev("$count($)", &data), Some(json!(3)));
    // `*` on the array gives its items (their fields need another step).
    assert_eq!(ev("*", &data), Some(data.clone()));
    assert_eq!(ev("*.*", &data), Some(json!([1, 2, 3])));
    assert_eq!(ev("$[a > 1].a", &data), Some(json!(2)));
    assert_eq!(ev("{'n': $count($)}", &data), Some(json!({"n": 3})));
}
