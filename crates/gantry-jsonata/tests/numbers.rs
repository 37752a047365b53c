//! Numeric functions and number formatting.
mod common;
use common::*;
use serde_json::json;

#[test]
fn number_casts() {
    eq("$number('42')", json!(42));
    eq("$number('-1.5e2')", json!(-150));
    eq("$number('0x1F')", json!(31));
    eq("$number('0b101')", json!(5));
    eq("$number(true)", json!(1));
    eq("$number(5)", json!(5));
    undef("$number(missing)", &none());
    err("$number('12a')", &none(), "D3030");
    err("$number(' 1')", &none(), "D3030");
    err("$number(null)", &none(), "D3030");
}

#[test]
fn rounding() {
    eq("$abs(-3.5)", json!(3.5));
    eq("$floor(-3.5)", json!(-4));
    eq("$ceil(3.1)", json!(4));
    eq("$round(2.5)", json!(2));
    eq("$round(3.5)", json!(4));
    eq("$round(-2.5)", json!(-2));
    eq("$round(2.6)", json!(3));
    eq("$round(123.456, 2)", json!(123.46));
    eq("$round(0.125, 2)", json!(0.12));
    eq("$round(0.135, 2)", json!(0.14));
    eq("$round(1250, -2)", json!(1200));
    eq("$round(1350, -2)", json!(1400));
    eq("$round(-0.4)", json!(0));
}

#[test]
fn powers_and_roots() {
    eq("$power(2, 10)", json!(1024));
    eq("$power(4, 0.5)", json!(2));
    eq("$sqrt(16)", json!(4));
    err("$sqrt(-1)", &none(), "D3060");
    err("$power(10, 400)", &none(), "D3061");
    err("$power(-1, 0.5)", &none(), "D3061");
}

#[test]
fn aggregates() {
    shop_eq("$sum(orders.items.qty)", json!(17));
    shop_eq("$max(orders.items.price)", json!(7));
    shop_eq("$min(orders.items.price)", json!(0.5));
    shop_eq("$average(orders.items.qty)", json!(4.25));
    eq("$sum([])", json!(0));
    undef("$max([])", &none());
    undef("$average([])", &none());
    eq("$sum(5)", json!(5));
    undef("$sum(missing)", &none());
    err("$sum([1, 'a'])", &none(), "T0412");
}

#[test]
fn random_is_in_unit_interval_and_comes_from_the_host() {
    let a = ev("$random()", &none()).and_then(|v| v.as_f64());
    let b = ev("$random()", &none()).and_then(|v| v.as_f64());
    let a = a.expect("a number");
    assert!((0.0..1.0).contains(&a));
    // Same host seed, same number: randomness comes only from the host.
    assert_eq!(Some(a), b);
    eq("$random() != $random()", json!(true));
}

#[test]
fn format_number_pictures() {
    eq("$formatNumber(12345.6, '#,###.00')", json!("12,345.60"));
    eq("$formatNumber(1234.5678, '#,##0.00')", json!("1,234.57"));
    eq("$formatNumber(0.5, '0%')", json!("50%"));
    eq("$formatNumber(3, '000')", json!("003"));
    eq("$formatNumber(-3.14159, '0.00')", json!("-3.14"));
    eq("$formatNumber(-0.004, '0.00')", json!("-0.00"));
    eq("$formatNumber(1234.5, '$#,##0.00')", json!("$1,234.50"));
    eq("$formatNumber(0.25, '#.###')", json!(".25"));
    eq(
        "$formatNumber(1234567.891, '#,##0.0##')",
        json!("1,234,567.891"),
    );
    eq("$formatNumber(-5, '0;(0)')", json!("(5)"));
    eq("$formatNumber(1234.5, '0.0e0')", json!("1.2e3"));
    eq(
        "$formatNumber(1234.5, '#.##0,00', {'decimal-separator': ',', 'grouping-separator': '.'})",
        json!("1.234,50"),
    );
    err("$formatNumber(1, 'abc')", &none(), "D3080");
}

#[test]
fn format_base_and_integers() {
    eq("$formatBase(100, 2)", json!("1100100"));
    eq("$formatBase(255, 16)", json!("ff"));
    eq("$formatBase(-10, 8)", json!("-12"));
    eq("$formatBase(10)", json!("10"));
    err("$formatBase(10, 1)", &none(), "D3100");
    eq("$formatInteger(2026, '0')", json!("2026"));
    eq("$formatInteger(7, '000')", json!("007"));
    eq("$formatInteger(1234567, '#,##0')", json!("1,234,567"));
    eq("$formatInteger(1999, 'I')", json!("MCMXCIX"));
    eq("$formatInteger(28, 'a')", json!("ab"));
    eq(
        "$formatInteger(123, 'w')",
        json!("one hundred and twenty-three"),
    );
    eq("$formatInteger(21, 'W')", json!("TWENTY-ONE"));
    eq("$parseInteger('MCMXCIX', 'I')", json!(1999));
    eq("$parseInteger('1,234', '#,##0')", json!(1234));
    eq("$parseInteger('ab', 'a')", json!(28));
}
