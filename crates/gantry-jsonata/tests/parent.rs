//! The parent operator `%`.
mod common;
use common::*;
use serde_json::json;

#[test]
fn parent_of_the_context_item() {
    shop_eq(
        "orders.items.{'sku': sku, 'order': %.id}",
        json!([
            {"sku": "A", "order": "o1"}, {"sku": "B", "order": "o1"},
            {"sku": "C", "order": "o2"}, {"sku": "A", "order": "o3"}
        ]),
    );
    shop_eq(
        "orders.items[%.customer = 'ann'].sku",
        json!(["A", "B", "A"]),
    );
    shop_eq("nested.a.b.%.b.c", json!(1));
}

#[test]
fn grandparents_and_array_values() {
    shop_eq(
        "orders.items.tags.{'tag': $, 'sku': %.sku, 'order': %.%.id}",
        json!([
            {"tag": "fruit", "sku": "A", "order": "o1"}, {"tag": "red", "sku": "A", "order": "o1"},
            {"tag": "bakery", "sku": "B", "order": "o1"}, {"tag": "dairy", "sku": "C", "order": "o2"},
            {"tag": "fruit", "sku": "A", "order": "o3"}, {"tag": "red", "sku": "A", "order": "o3"}
        ]),
    );
}

#[test]
fn order_by_a_parent_field() {
    shop_eq(
        "orders.items^(%.customer, sku).sku",
        json!(["A", "A", "B", "C"]),
    );
    shop_eq(
        "orders.items^(>%.id).(%.id & '/' & sku)",
        json!(["o3/A", "o2/C", "o1/A", "o1/B"]),
    );
}

#[test]
fn parent_is_an_error_where_it_cannot_be_known() {
    err("%", &shop(), "S0217");
    err("%.shop", &shop(), "S0217");
    err("$map(orders, function($o) { %.shop })", &shop(), "S0217");
    err("(orders.items)[%.id = 'o1']", &shop(), "S0217");
    err("orders#$i.items.%", &shop(), "S0217");
}
