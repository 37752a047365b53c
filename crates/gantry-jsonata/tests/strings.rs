//! String functions.
mod common;
use common::*;
use serde_json::json;

#[test]
fn string_casts() {
    eq("$string(1)", json!("1"));
    eq("$string(1.50)", json!("1.5"));
    eq("$string(0.1 + 0.2)", json!("0.3"));
    eq("$string(1/3)", json!("0.333333333333333"));
    eq("$string(true)", json!("true"));
    eq("$string(null)", json!("null"));
    eq("$string([1, 'two'])", json!("[1,\"two\"]"));
    eq("$string({'a': 1})", json!("{\"a\":1}"));
    eq(
        "$string({'a': [1]}, true)",
        json!("{\n  \"a\": [\n    1\n  ]\n}"),
    );
    eq("$string('x')", json!("x"));
    eq("$string(function() {1})", json!(""));
    eq("$string(1e300 * 10)", json!("1e+301"));
    eq("$string($power(2, 60))", json!("1152921504606850000"));
    undef("$string(missing)", &none());
    assert_eq!(ev("$string()", &json!(12)), Some(json!("12")));
}

#[test]
fn length_and_substrings() {
    eq("$length('héllo')", json!(5));
    eq("$length('')", json!(0));
    err("$length(5)", &none(), "T0410");
    eq("$substring('Hello World', 3)", json!("lo World"));
    eq("$substring('Hello World', 3, 5)", json!("lo Wo"));
    eq("$substring('Hello World', -4)", json!("orld"));
    eq("$substring('Hello World', -4, 2)", json!("or"));
    eq("$substring('Hello', 2, 0)", json!(""));
    eq("$substring('Hello', -10, 2)", json!("He"));
    eq("$substring('Hello', 10)", json!(""));
    eq("$substring('Hello', 1e300, 1e300)", json!(""));
    eq("$substring('Hello', 1, 1e300)", json!("ello"));
    eq("$substring('Hello', -1e300, 1e300)", json!("Hello"));
    eq("$substringBefore('Hello World', ' ')", json!("Hello"));
    eq("$substringBefore('Hello', 'x')", json!("Hello"));
    eq("$substringAfter('Hello World', 'o')", json!(" World"));
    eq("$substringAfter('Hello', 'x')", json!("Hello"));
    assert_eq!(ev("$substringBefore('-')", &json!("a-b")), Some(json!("a")));
}

#[test]
fn case_trim_pad() {
    eq("$uppercase('abc')", json!("ABC"));
    eq("$lowercase('ÀB')", json!("àb"));
    eq("$trim('  a \n\t b  ')", json!("a b"));
    eq("$pad('ab', 5)", json!("ab   "));
    eq("$pad('ab', -5, '#')", json!("###ab"));
    eq("$pad('ab', 6, 'xy')", json!("abxyxy"));
    eq("$pad('abcdef', 3)", json!("abcdef"));
}

#[test]
fn contains_split_join() {
    eq("$contains('abracadabra', 'cad')", json!(true));
    eq("$contains('abracadabra', /c.d/)", json!(true));
    eq("$contains('abc', 'x')", json!(false));
    eq("$split('a, b,c', ',')", json!(["a", " b", "c"]));
    eq("$split('a, b,c', /,\\s*/)", json!(["a", "b", "c"]));
    eq("$split('abc', '')", json!(["a", "b", "c"]));
    eq("$split('a-b-c', '-', 2)", json!(["a", "b"]));
    eq("$split('abc', 'x')", json!(["abc"]));
    err("$split('a', '-', -1)", &none(), "D3020");
    eq("$join(['a', 'b', 'c'])", json!("abc"));
    eq("$join(['a', 'b'], ', ')", json!("a, b"));
    eq("$join('solo', ',')", json!("solo"));
    err("$join([1, 2])", &none(), "T0412");
}

#[test]
fn match_and_replace() {
    eq(
        "$match('ab12cd345', /[0-9]+/)",
        json!([{"match": "12", "index": 2, "groups": []}, {"match": "345", "index": 6, "groups": []}]),
    );
    eq(
        "$match('key=val', /(\\w+)=(\\w+)/).groups",
        json!(["key", "val"]),
    );
    eq("$match('aaa', /a/, 2).index", json!([0, 1]));
    undef("$match('xyz', /[0-9]/)", &none());
    err("$match('abc', /x*/)", &none(), "D1004");
    eq("$replace('John Smith', 'John', 'Mr')", json!("Mr Smith"));
    eq("$replace('aaa', 'a', 'b', 2)", json!("bba"));
    eq(
        "$replace('John Smith', /(\\w+)\\s(\\w+)/, '$2, $1')",
        json!("Smith, John"),
    );
    eq(
        "$replace('price: 10', /(\\d+)/, '$$$1')",
        json!("price: $10"),
    );
    eq("$replace('abc', /b/, '$9')", json!("ac"));
    eq(
        "$replace('temps 10C 20C', /(\\d+)C/, function($m) { $string($number($m.groups[0]) * 9 / 5 + 32) & 'F' })",
        json!("temps 50F 68F"),
    );
    err("$replace('abc', '', 'x')", &none(), "D3010");
    err("$replace('abc', /b/, function($m) { 1 })", &none(), "D3012");
}

#[test]
fn encodings() {
    eq(
        "$base64encode('myuser:mypass')",
        json!("bXl1c2VyOm15cGFzcw=="),
    );
    eq(
        "$base64decode('bXl1c2VyOm15cGFzcw==')",
        json!("myuser:mypass"),
    );
    eq("$base64decode($base64encode('héllo ✓'))", json!("héllo ✓"));
    eq(
        "$encodeUrlComponent('?x=test & ü')",
        json!("%3Fx%3Dtest%20%26%20%C3%BC"),
    );
    eq(
        "$encodeUrl('https://x.org/a b?q=ü')",
        json!("https://x.org/a%20b?q=%C3%BC"),
    );
    eq(
        "$decodeUrlComponent('%3Fx%3Dtest%20%C3%BC')",
        json!("?x=test ü"),
    );
    eq(
        "$decodeUrl('https://x.org/a%20b?q=%3D')",
        json!("https://x.org/a b?q=%3D"),
    );
    err("$decodeUrlComponent('%E0%A4%A')", &none(), "D3140");
}

#[test]
fn eval_function() {
    eq("$eval('1 + 2')", json!(3));
    eq("$eval('a.b', {'a': {'b': 5}})", json!(5));
    eq("$eval('[1,2,3]') ~> $count", json!(3));
    err("$eval('1 +')", &none(), "D3120");
}
