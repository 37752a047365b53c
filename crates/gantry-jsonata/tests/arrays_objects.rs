//! Array, object, boolean and type functions.
mod common;
use common::*;
use serde_json::json;

#[test]
fn counting_and_existence() {
    shop_eq("$count(orders)", json!(3));
    shop_eq("$count(shop)", json!(1));
    shop_eq("$count(missing)", json!(0));
    shop_eq("$count(empty)", json!(0));
    shop_eq("$exists(shop)", json!(true));
    shop_eq("$exists(missing)", json!(false));
    shop_eq("$exists(nothing)", json!(true));
    shop_eq("$exists(empty)", json!(true));
}

#[test]
fn boolean_function() {
    eq("$boolean('')", json!(false));
    eq("$boolean('0')", json!(true));
    eq("$boolean(0)", json!(false));
    eq("$boolean([[]])", json!(false));
    eq("$boolean([0, 1])", json!(true));
    eq("$boolean({})", json!(false));
    eq("$boolean({'a': 0})", json!(true));
    eq("$boolean(function() {1})", json!(false));
    undef("$boolean(missing)", &none());
    eq("$not(1)", json!(false));
}

#[test]
fn append_reverse_distinct_zip() {
    eq("$append([1, 2], [3])", json!([1, 2, 3]));
    eq("$append(1, 2)", json!([1, 2]));
    eq("$append([1], missing)", json!([1]));
    eq("$append(missing, 'x')", json!("x"));
    eq("$reverse([1, 2, 3])", json!([3, 2, 1]));
    eq(
        "$distinct([1, 2, 1, 'a', 'a', [1], [1]])",
        json!([1, 2, "a", [1]]),
    );
    eq("$distinct(5)", json!(5));
    eq("$zip([1, 2, 3], ['a', 'b'])", json!([[1, "a"], [2, "b"]]));
    eq("$zip([1, 2])", json!([[1], [2]]));
}

#[test]
fn sorting() {
    eq("$sort([3, 1, 2])", json!([1, 2, 3]));
    eq("$sort(['b', 'a', 'C'])", json!(["C", "a", "b"]));
    eq("$sort([1])", json!([1]));
    err("$sort([1, 'a'])", &none(), "D3070");
    shop_eq(
        "$sort(orders.items, function($a, $b) { $a.qty > $b.qty }).qty",
        json!([1, 2, 4, 10]),
    );
    // Stable: equal keys keep their order.
    eq(
        "$sort([{'k': 1, 'v': 'a'}, {'k': 0, 'v': 'b'}, {'k': 1, 'v': 'c'}], function($x, $y) { $x.k > $y.k }).v",
        json!(["b", "a", "c"]),
    );
}

#[test]
fn shuffle_keeps_items() {
    eq("$count($shuffle([1..20]))", json!(20));
    eq("$sort($shuffle([1..20])) = [1..20]", json!(true));
}

#[test]
fn keys_lookup_spread_merge() {
    eq("$keys({'b': 1, 'a': 2})", json!(["b", "a"]));
    eq("$keys({'only': 1})", json!("only"));
    eq("$keys([{'a': 1}, {'b': 2, 'a': 3}])", json!(["a", "b"]));
    undef("$keys(5)", &none());
    eq("$lookup({'a': 1}, 'a')", json!(1));
    undef("$lookup({'a': 1}, 'b')", &none());
    eq("$lookup([{'a': 1}, {'a': 2}], 'a')", json!([1, 2]));
    eq("$spread({'a': 1, 'b': 2})", json!([{"a": 1}, {"b": 2}]));
    eq(
        "$spread([{'a': 1}, {'b': 2, 'c': 3}])",
        json!([{"a": 1}, {"b": 2}, {"c": 3}]),
    );
    eq(
        "$merge([{'a': 1, 'b': 1}, {'b': 2}])",
        json!({"a": 1, "b": 2}),
    );
    eq("$merge({'a': 1})", json!({"a": 1}));
    err("$merge([{'a': 1}, 2])", &none(), "T0412");
}

#[test]
fn each_and_sift() {
    eq(
        "$each({'a': 1, 'b': 2}, function($v, $k) { $k & '=' & $v })",
        json!(["a=1", "b=2"]),
    );
    eq(
        "$sift({'a': 1, 'b': 2, 'c': 3}, function($v) { $v > 1 })",
        json!({"b": 2, "c": 3}),
    );
    eq(
        "$sift({'a': 1, 'bb': 2}, function($v, $k) { $length($k) = 2 })",
        json!({"bb": 2}),
    );
    undef("$sift({'a': 1}, function($v) { false })", &none());
}

#[test]
fn types_errors_assertions() {
    eq("$type(1)", json!("number"));
    eq("$type('s')", json!("string"));
    eq("$type(null)", json!("null"));
    eq("$type([])", json!("array"));
    eq("$type({})", json!("object"));
    eq("$type(true)", json!("boolean"));
    eq("$type($type)", json!("function"));
    undef("$type(missing)", &none());
    let e = err("$error('custom failure')", &none(), "D3137");
    assert_eq!(e.message, "custom failure");
    err("$error()", &none(), "D3137");
    undef("$assert(true, 'fine')", &none());
    let e = err("$assert(1 = 2, 'one is not two')", &none(), "D3141");
    assert_eq!(e.message, "one is not two");
    err("$assert('yes')", &none(), "T0410");
}

#[test]
fn higher_order_functions() {
    eq("$map([1, 2, 3], function($v) { $v * 2 })", json!([2, 4, 6]));
    eq("$map([1, 2, 3], function($v, $i) { $i })", json!([0, 1, 2]));
    eq(
        "$map([1, 2], function($v, $i, $a) { $count($a) })",
        json!([2, 2]),
    );
    eq("$map(['a', 'b'], $uppercase)", json!(["A", "B"]));
    // A function's sequence result is one item of $map's result.
    eq(
        "$map([{'a': 1}, {'b': 2, 'c': 3}], $keys)",
        json!([["a"], ["b", "c"]]),
    );
    // Built-ins receive as many arguments as JavaScript declares: $string gets one.
    eq("$map([1, {'a': 2}], $string)", json!(["1", "{\"a\":2}"]));
    // $map returns a sequence: one result unwraps.
    eq("$map([1], function($v) { $v })", json!(1));
    eq("$map(5, function($v) { $v + 1 })", json!(6));
    eq(
        "$map([1, 2], function($v) { $v = 1 ? missing : $v })",
        json!(2),
    );
    eq(
        "$filter([1, 2, 3, 4], function($v) { $v % 2 = 0 })",
        json!([2, 4]),
    );
    eq(
        "$filter([1, 2, 3], function($v, $i) { $i > 0 })",
        json!([2, 3]),
    );
    undef("$filter([1, 2], function($v) { $v > 5 })", &none());
    eq("$single([1, 2, 3], function($v) { $v = 2 })", json!(2));
    err(
        "$single([1, 2, 3], function($v) { $v > 1 })",
        &none(),
        "D3138",
    );
    err(
        "$single([1, 2, 3], function($v) { $v > 5 })",
        &none(),
        "D3139",
    );
    eq(
        "$reduce([1, 2, 3, 4], function($acc, $v) { $acc + $v })",
        json!(10),
    );
    eq(
        "$reduce([1, 2, 3], function($acc, $v) { $acc + $v }, 10)",
        json!(16),
    );
    eq(
        "$reduce(['a', 'b'], function($acc, $v, $i) { $acc & $i & $v }, '')",
        json!("0a1b"),
    );
    undef("$reduce([], function($a, $b) { $a + $b })", &none());
    err("$reduce([1, 2], function($a) { $a })", &none(), "D3050");
    err("$map([1], 5)", &none(), "T0410");
}
