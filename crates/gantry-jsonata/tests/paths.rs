//! Path navigation and JSONata's sequence semantics.
mod common;
use common::*;
use serde_json::json;

#[test]
fn simple_fields_and_missing_fields() {
    shop_eq("shop", json!("Corner"));
    shop_eq("nested.a.b.c", json!(1));
    undef("nested.a.x", &shop());
    undef("missing", &shop());
    shop_eq("nothing", json!(null));
    shop_eq("`shop`", json!("Corner"));
}

#[test]
fn mapping_over_arrays_flattens() {
    shop_eq("orders.id", json!(["o1", "o2", "o3"]));
    shop_eq("orders.items.sku", json!(["A", "B", "C", "A"]));
    shop_eq(
        "orders.items.tags",
        json!(["fruit", "red", "bakery", "dairy", "fruit", "red"]),
    );
    // A nested array in the data is flattened one level per step.
    shop_eq("nested.list", json!([[1, 2], [3]]));
    shop_eq("nested.list.$", json!([1, 2, 3]));
}

#[test]
fn singleton_sequences_unwrap_and_brackets_keep_them() {
    shop_eq("orders[id='o2'].customer", json!("bob"));
    shop_eq("orders[id='o2'].customer[]", json!(["bob"]));
    shop_eq("orders[1].items.sku", json!("C"));
    shop_eq("orders[1].items[].sku", json!(["C"]));
    // A single-item array in the data stays an array.
    shop_eq("orders[2].items.tags", json!(["fruit", "red"]));
    shop_eq("orders[1].items.tags", json!(["dairy"]));
}

#[test]
fn numeric_and_negative_indexes() {
    shop_eq("orders[0].id", json!("o1"));
    shop_eq("orders[-1].id", json!("o3"));
    shop_eq("orders[-3].id", json!("o1"));
    undef("orders[5].id", &shop());
    undef("orders[-4].id", &shop());
    shop_eq("orders[1.7].id", json!("o2"));
    // Index applies within each step: the first item of each order.
    shop_eq("orders.items[0].sku", json!(["A", "C", "A"]));
    // Parenthesised: the first of the flattened sequence.
    shop_eq("(orders.items)[0].sku", json!("A"));
    shop_eq("orders.items[[0, 1]].sku", json!(["A", "B", "C", "A"]));
}

#[test]
fn predicates_filter_by_truthiness() {
    shop_eq("orders[customer='ann'].id", json!(["o1", "o3"]));
    shop_eq("orders.items[price > 1].name", json!(["Bread", "Cheese"]));
    shop_eq("orders.items['red' in tags].sku", json!(["A", "A"]));
    // `=` compares whole values: an array is not equal to one of its items.
    undef("orders.items[tags='red'].sku", &shop());
    shop_eq("orders[items[sku='C']].id", json!("o2"));
    undef("orders[customer='zed'].id", &shop());
    shop_eq("orders.items[price > 1][qty > 1].name", json!("Cheese"));
}

#[test]
fn wildcards_and_descendants() {
    shop_eq("nested.a.*", json!({"c": 1}));
    shop_eq("nested.*.b.c", json!(1));
    shop_eq("nested.**.c", json!(1));
    shop_eq("$count(orders.**.sku)", json!(4));
    // Keys come in the input document's order (serde_json sorts them).
    shop_eq(
        "orders[0].items[0].*",
        json!(["Apple", 0.5, 10, "A", "fruit", "red"]),
    );
}

#[test]
fn context_root_and_variables() {
    shop_eq("$.shop", json!("Corner"));
    shop_eq("orders[0].$$.shop", json!("Corner"));
    shop_eq(
        "(orders.items.{'o': $$.shop, 's': sku})[0]",
        json!({"o": "Corner", "s": "A"}),
    );
    // A predicate on the last step applies to each step result, not to the whole sequence.
    shop_eq("$count(orders.items.{'s': sku}[0])", json!(4));
    assert_eq!(ev("$", &json!(5)), Some(json!(5)));
    assert_eq!(ev("$[1]", &json!([1, 2, 3])), Some(json!(2)));
    assert_eq!(ev("a", &json!([{"a": 1}, {"a": 2}])), Some(json!([1, 2])));
    assert_eq!(ev("$$", &json!([1])), Some(json!([1])));
}

#[test]
fn array_constructors_in_paths_do_not_flatten() {
    shop_eq(
        "orders.[id, customer]",
        json!([["o1", "ann"], ["o2", "bob"], ["o3", "ann"]]),
    );
    shop_eq("orders.items.[sku]", json!([["A"], ["B"], ["C"], ["A"]]));
    shop_eq("[orders.id]", json!(["o1", "o2", "o3"]));
    shop_eq("[orders[0].id]", json!(["o1"]));
    eq("[1, [2, 3], [[4]]]", json!([1, [2, 3], [[4]]]));
    eq("[1..3, 7]", json!([1, 2, 3, 7]));
    eq("[]", json!([]));
}

#[test]
fn object_constructors_and_group_by() {
    shop_eq(
        "orders{customer: $count(items)}",
        json!({"ann": 3, "bob": 1}),
    );
    shop_eq(
        "orders.items{sku: $sum(qty)}",
        json!({"A": 14, "B": 1, "C": 2}),
    );
    shop_eq(
        "orders.items{name: qty}",
        json!({"Apple": [10, 4], "Bread": 1, "Cheese": 2}),
    );
    shop_eq("{'n': $count(orders)}", json!({"n": 3}));
    shop_eq(
        "(orders.{'id': id, 'n': $count(items)})[1]",
        json!({"id": "o2", "n": 1}),
    );
    // Undefined values drop the key.
    shop_eq("{'a': missing, 'b': 1}", json!({"b": 1}));
    eq("{}", json!({}));
}

#[test]
fn order_by() {
    shop_eq("orders.items^(price).sku", json!(["A", "A", "B", "C"]));
    shop_eq("orders.items^(>price, qty).qty", json!([2, 1, 4, 10]));
    shop_eq("orders.items^(name, >qty).qty", json!([10, 4, 1, 2]));
    shop_eq("(orders.items^(>qty))[0].name", json!("Apple"));
    err("orders.items^(tags)", &shop(), "T2008");
    err("[{'a': 1}, {'a': 'x'}]^(a)", &shop(), "T2007");
}

#[test]
fn string_literal_steps_are_names() {
    assert_eq!(ev("a.'b c'", &json!({"a": {"b c": 3}})), Some(json!(3)));
    assert_eq!(ev("a.\"b\"", &json!({"a": {"b": 3}})), Some(json!(3)));
}

#[test]
fn functions_as_steps_map_over_items() {
    shop_eq("orders.$count(items)", json!([2, 1, 1]));
    shop_eq(
        "orders.items.$uppercase(name)",
        json!(["APPLE", "BREAD", "CHEESE", "APPLE"]),
    );
    shop_eq(
        "orders.items.name.$uppercase()",
        json!(["APPLE", "BREAD", "CHEESE", "APPLE"]),
    );
    shop_eq("orders.items.(price * qty)", json!([5, 2.25, 14, 2]));
}
