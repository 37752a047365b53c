//! The transform operator `| pattern | update [, delete] |`.
mod common;
use common::*;
use serde_json::json;

#[test]
fn updates_matched_objects_in_a_copy() {
    shop_eq(
        "($t := $ ~> |orders.items|{'price': price * 2}|; $t.orders.items.price)",
        json!([1, 4.5, 14, 1]),
    );
    // The input itself is unchanged.
    shop_eq(
        "($t := $ ~> |nested.a|{'z': 1}|; [$t.nested.a.z, $exists(nested.a.z), $t.nested.a.b.c])",
        json!([1, false, 1]),
    );
    // Only the matched objects change.
    shop_eq(
        "($ ~> |orders[customer='bob']|{'vip': true}|).orders.vip",
        json!(true),
    );
    shop_eq(
        "$count(($ ~> |orders[id='zzz']|{'x': 1}|).orders)",
        json!(3),
    );
}

#[test]
fn deletes_fields() {
    shop_eq(
        "($ ~> |orders|{}, 'items'|).orders",
        json!([
            {"id": "o1", "customer": "ann"},
            {"id": "o2", "customer": "bob"},
            {"id": "o3", "customer": "ann"}
        ]),
    );
    shop_eq(
        "($ ~> |orders.items|{'n': qty}, ['qty', 'tags', 'price']|).orders[0].items",
        json!([{"name": "Apple", "sku": "A", "n": 10}, {"name": "Bread", "sku": "B", "n": 1}]),
    );
}

#[test]
fn transforms_are_functions() {
    shop_eq(
        "$map(orders, |$|{'n': $count(items)}, ['items', 'customer']|)",
        json!([{"id": "o1", "n": 2}, {"id": "o2", "n": 1}, {"id": "o3", "n": 1}]),
    );
    undef("missing ~> |a|{}|", &shop());
}

#[test]
fn transform_errors() {
    err("$ ~> |orders|5|", &shop(), "T2011");
    err("$ ~> |orders|{}, 5|", &shop(), "T2012");
    err("$ ~> |orders|{}", &shop(), "S0203");
}
