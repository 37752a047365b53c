//! Operators: arithmetic, comparison, boolean, string concatenation, ranges,
//! conditionals, `??` / `?:`, blocks, variables, lambdas and chaining.
mod common;
use common::*;
use serde_json::json;

#[test]
fn arithmetic() {
    eq("1 + 2 * 3", json!(7));
    eq("(1 + 2) * 3", json!(9));
    eq("7 % 3", json!(1));
    eq("-7 % 3", json!(-1));
    eq("10 / 4", json!(2.5));
    eq("-(2 + 3)", json!(-5));
    eq("2 - -2", json!(4));
    eq("1.5e3 + 1", json!(1501));
    eq("0.1 + 0.2", json!(0.30000000000000004));
    undef("1 + missing", &none());
    undef("missing * 2", &none());
    err("1 / 0", &none(), "D1001");
    err("'a' + 1", &none(), "T2001");
    err("1 + 'a'", &none(), "T2002");
    err("-'a'", &none(), "D1002");
}

#[test]
fn comparison_and_equality() {
    eq("1 < 2", json!(true));
    eq("'abc' < 'abd'", json!(true));
    eq("2 >= 2", json!(true));
    eq("3 != 3", json!(false));
    eq("[1, 2] = [1, 2]", json!(true));
    eq("{'a': [1]} = {'a': [1]}", json!(true));
    eq("null = null", json!(true));
    eq("1 = '1'", json!(false));
    // Undefined never equals anything and comparisons with it are undefined.
    eq("missing = missing", json!(false));
    eq("missing != 1", json!(false));
    undef("missing < 1", &none());
    err("1 < '2'", &none(), "T2009");
    err("null < 1", &none(), "T2010");
    err("[1] > 0", &none(), "T2010");
}

#[test]
fn boolean_logic_and_truthiness() {
    eq("true and false", json!(false));
    eq("true or missing", json!(true));
    eq("missing or 0", json!(false));
    eq("'x' and 1", json!(true));
    eq("[] or {}", json!(false));
    eq("[0, ''] or false", json!(false));
    eq("[0, 1] and true", json!(true));
    eq("$not(null)", json!(true));
}

#[test]
fn string_concatenation() {
    eq("'a' & 'b'", json!("ab"));
    eq("'n=' & 5", json!("n=5"));
    eq("'x' & missing & 'y'", json!("xy"));
    eq(
        "'v:' & [1, 'a', {'k': true}]",
        json!("v:[1,\"a\",{\"k\":true}]"),
    );
    eq("1 & 2", json!("12"));
    eq("'' & (0.1 + 0.2)", json!("0.3"));
    eq("'big ' & 1e21", json!("big 1e+21"));
    // `&` prints numbers with 15 significant digits, as `$string` does.
    eq("'' & 123456789012345678901", json!("123456789012346000000"));
    eq("'' & -2e20", json!("-200000000000000000000"));
    eq("'small ' & 0.0000001", json!("small 1e-7"));
}

#[test]
fn membership() {
    eq("'b' in ['a', 'b']", json!(true));
    eq("3 in [1, 2]", json!(false));
    eq("'a' in 'a'", json!(true));
    eq("missing in [1]", json!(false));
}

#[test]
fn ranges() {
    eq("[1..4]", json!([1, 2, 3, 4]));
    eq("[3..1]", json!([]));
    eq("[0..0]", json!([0]));
    eq("$count([1..1000])", json!(1000));
    eq("[-2..0]", json!([-2, -1, 0]));
    err("[1.5..3]", &none(), "T2003");
    err("[1..'a']", &none(), "T2004");
    err("[1..100000000]", &none(), "D2014");
}

#[test]
fn conditionals_and_default_operators() {
    eq("1 > 0 ? 'yes' : 'no'", json!("yes"));
    eq("[] ? 'yes' : 'no'", json!("no"));
    undef("false ? 1", &none());
    eq("true ? 1", json!(1));
    eq("missing ?? 'default'", json!("default"));
    eq("0 ?? 'default'", json!(0));
    eq("null ?? 'default'", json!(null));
    eq("0 ?: 'default'", json!("default"));
    eq("'set' ?: 'default'", json!("set"));
    eq("1 = 2 ? 'a' : 2 = 2 ? 'b' : 'c'", json!("b"));
}

#[test]
fn blocks_and_variables() {
    eq("($a := 2; $b := $a * 3; $a + $b)", json!(8));
    eq("($x := 1; ($x := 2); $x)", json!(1));
    undef("()", &none());
    eq("($a := $b := 4; $a + $b)", json!(8));
    assert_eq!(
        with_vars("$v.n * 2", json!({"v": {"n": 21}})),
        Some(json!(42))
    );
    undef("$nope", &none());
    err("1 := 2", &none(), "S0212");
}

#[test]
fn lambdas_closures_and_recursion() {
    eq("function($x) { $x * 2 }(21)", json!(42));
    eq("($double := function($x) { $x * 2 }; $double(4))", json!(8));
    eq(
        "($add := function($a) { function($b) { $a + $b } }; $add(3)(4))",
        json!(7),
    );
    eq(
        "($fact := function($n) { $n <= 1 ? 1 : $n * $fact($n - 1) }; $fact(10))",
        json!(3628800),
    );
    eq(
        "($fib := λ($n) { $n < 2 ? $n : $fib($n - 1) + $fib($n - 2) }; $fib(15))",
        json!(610),
    );
    eq("function($a, $b) { $exists($b) }(1)", json!(false));
    eq("function($x)<n:n> { $x + 1 }(1)", json!(2));
    shop_eq(
        "($total := function($o) { $sum($o.items.(price * qty)) }; orders.$total($))",
        json!([7.25, 14, 2]),
    );
}

#[test]
fn partial_application() {
    eq(
        "($first := $substring(?, 0, 1); $first('hello'))",
        json!("h"),
    );
    eq(
        "($add := function($a, $b) { $a + $b }; $inc := $add(1, ?); $inc(41))",
        json!(42),
    );
    err("($f := 1; $f(?))", &none(), "T1006");
}

#[test]
fn function_chaining() {
    eq("'hello' ~> $uppercase", json!("HELLO"));
    eq("'  a  b ' ~> $trim ~> $uppercase", json!("A B"));
    eq("[3, 1, 2] ~> $sort ~> $reverse", json!([3, 2, 1]));
    eq("'a,b' ~> $split(',')", json!(["a", "b"]));
    eq(
        "($f := $uppercase ~> $substring(?, 0, 2); $f('hello'))",
        json!("HE"),
    );
    eq(
        "[1, 2, 3] ~> $map(function($v) { $v * 10 }) ~> $sum",
        json!(60),
    );
    err("1 ~> 2", &none(), "T2006");
}

#[test]
fn non_functions_cannot_be_called() {
    err("foo()", &shop(), "T1005");
    err("$foo()", &shop(), "T1006");
    err("shop()", &shop(), "T1005");
}

#[test]
fn comments_are_ignored() {
    eq("/* a comment */ 1 + /* another */ 2", json!(3));
    err("1 /* open", &none(), "S0106");
}

#[test]
fn regex_literals() {
    eq("$contains('Hello', /l+/)", json!(true));
    eq("$contains('Hello', /L/i)", json!(true));
    eq("/b(.)/('abc').groups", json!(["c"]));
    eq("$replace('a1b22', /[0-9]+/, '#')", json!("a#b#"));
    // A `/` after a value is division.
    eq("($x := 8; $x / 2)", json!(4));
    eq("(8) / 2 / 2", json!(2));
}

#[test]
fn lambda_signatures_are_checked() {
    eq("function($x)<n:n> { $x + 1 }(1)", json!(2));
    err("function($x)<n:n> { $x + 1 }('a')", &none(), "T0410");
    err(
        "function($x)<(ns):s> { $string($x) }(true)",
        &none(),
        "T0410",
    );
    eq("function($x)<(ns):s> { $string($x) }(2)", json!("2"));
    undef("function($x)<n:n> { $x }(missing)", &none());
    // A single value where an array is expected becomes an array.
    eq("function($a)<a:a> { $a }(5)", json!([5]));
    eq("function($a)<a<n>:n> { $sum($a) }([1, 2])", json!(3));
    err(
        "function($a)<a<n>:n> { $sum($a) }([1, 'x'])",
        &none(),
        "T0412",
    );
    // Optional parameters and functions.
    eq(
        "function($s, $n)<sn?:s> { $s & $string($n) }('a')",
        json!("a"),
    );
    eq(
        "function($f)<f:n> { $f(2) }(function($v) { $v * 3 })",
        json!(6),
    );
    err("function($s)<s:s> { $s }('a', 'b')", &none(), "T0410");
    // `-`: a missing argument is the context value.
    eq(
        "['a', 'b'].function($s)<s-:s> { $uppercase($s) }()",
        json!(["A", "B"]),
    );
    err("function($x)<q:n> { 1 }", &none(), "S0402");
}
