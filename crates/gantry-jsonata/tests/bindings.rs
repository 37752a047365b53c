//! `@$var` (focus) and `#$var` (index) bindings on path steps.
mod common;
use common::*;
use serde_json::{Value, json};

fn library() -> Value {
    json!({"library": {
        "loans": [{"isbn": "1", "who": "ann"}, {"isbn": "2", "who": "bob"}],
        "books": [{"isbn": "1", "title": "A"}, {"isbn": "2", "title": "B"}, {"isbn": "3", "title": "C"}]
    }})
}

#[test]
fn focus_binding_joins_two_lists() {
    assert_eq!(
        ev(
            "library.loans@$l.books@$b[$l.isbn=$b.isbn].{'title': $b.title, 'who': $l.who}",
            &library()
        ),
        Some(json!([{"title": "A", "who": "ann"}, {"title": "B", "who": "bob"}]))
    );
    // The context stays put: after `loans@$l`, `books` is read from the library.
    assert_eq!(
        ev("$count(library.loans@$l.books)", &library()),
        Some(json!(6))
    );
}

#[test]
fn index_binding_counts_positions() {
    assert_eq!(
        ev("library.books#$i[$i < 2].title", &library()),
        Some(json!(["A", "B"]))
    );
    // After a predicate, positions count the items that passed it.
    assert_eq!(
        ev(
            "library.books[isbn != '1']#$i.{'n': $i, 't': title}",
            &library()
        ),
        Some(json!([{"n": 0, "t": "B"}, {"n": 1, "t": "C"}]))
    );
    // Sorting keeps each item's binding.
    assert_eq!(
        ev(
            "library.books#$i^(>title).{'i': $i, 't': title}",
            &library()
        ),
        Some(json!([{"i": 2, "t": "C"}, {"i": 1, "t": "B"}, {"i": 0, "t": "A"}]))
    );
    // Each step's positions are within its own input item.
    shop_eq(
        "orders#$o.items#$i.{'o': $o, 'i': $i, 'sku': sku}",
        json!([
            {"o": 0, "i": 0, "sku": "A"}, {"o": 0, "i": 1, "sku": "B"},
            {"o": 1, "i": 0, "sku": "C"}, {"o": 2, "i": 0, "sku": "A"}
        ]),
    );
}

#[test]
fn group_by_sees_bindings() {
    assert_eq!(
        ev(
            "library.loans@$l.books@$b[$l.isbn=$b.isbn]{$l.who: $b.title}",
            &library()
        ),
        Some(json!({"ann": "A", "bob": "B"}))
    );
    // Within a group, a variable bound in several tuples is an array.
    assert_eq!(
        ev("library.books#$i{'all': $i}", &library()),
        Some(json!({"all": [0, 1, 2]}))
    );
}

#[test]
fn binding_syntax_errors() {
    err("a@b", &none(), "S0214");
    err("a#1", &none(), "S0214");
    err("a[0]@$x", &none(), "S0215");
    err("a^(x)@$y", &none(), "S0216");
}
