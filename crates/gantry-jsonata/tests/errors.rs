//! Syntax errors carry JSONata's codes and the offset; messages say what was expected.
mod common;
use common::*;
use gantry_jsonata::Expression;

fn parse_err(src: &str, code: &str, pos: usize) -> String {
    match Expression::parse(src) {
        Ok(_) => panic!("{src}: expected {code}"),
        Err(e) => {
            assert_eq!((e.code, e.position), (code, Some(pos)), "{src}: {e}");
            e.to_string()
        }
    }
}

#[test]
fn unterminated_literals() {
    parse_err("'abc", "S0101", 0);
    parse_err("a + \"x", "S0101", 4);
    parse_err("`name", "S0105", 0);
    parse_err("/* x", "S0106", 0);
    parse_err("'\\q'", "S0103", 1);
    parse_err("'\\u12'", "S0104", 3);
    parse_err("$match('a', /abc)", "S0302", 12);
}

#[test]
fn unexpected_tokens() {
    let m = parse_err("(1 + 2", "S0203", 6);
    assert!(m.contains("Expected \")\""), "{m}");
    let m = parse_err("[1, 2", "S0203", 5);
    assert!(m.contains("\"]\""), "{m}");
    parse_err("{'a' 1}", "S0202", 5);
    parse_err("1 +", "S0207", 3);
    parse_err("a b", "S0201", 2);
    parse_err(")", "S0211", 0);
    parse_err("1 := 2", "S0212", 2);
    parse_err("a.1", "S0213", 1);
    parse_err("function(x) { 1 }", "S0208", 9);
    parse_err("a{'x': 1}{'y': 2}", "S0210", 9);
    parse_err("a{'x': 1}[0]", "S0209", 9);
    parse_err("#", "S0211", 0);
}

#[test]
fn runtime_errors_carry_a_position() {
    let e = err("1 + 'x'", &none(), "T2002");
    assert_eq!(e.position, Some(2));
    let e = err("  $nope()", &none(), "T1006");
    assert_eq!(e.position, Some(7));
    assert_eq!(e.to_string(), "T1006: Attempted to invoke a non-function");
}

#[test]
fn keys_must_be_strings() {
    err("{1: 'a'}", &none(), "T1003");
    err(
        "[{'k': 'a', 'v': 1}, {'k': 'a', 'v': 2}]{k: v, k & '': v}",
        &none(),
        "D1009",
    );
}
