//! JSON through the YAML loader: positions, escapes, numbers, strictness.

use super::*;
use crate::pipeline::tests::{has, json};
use crate::yaml::Kind;

fn root(source: &str) -> Node {
    match load(source) {
        Ok(Some(n)) => n,
        other => panic!("{source:?}: {other:?}"),
    }
}

fn entries(node: &Node) -> &[(Node, Node)] {
    match &node.kind {
        Kind::Map(e) => e,
        other => panic!("not an object: {other:?}"),
    }
}

fn at(node: &Node) -> (u32, u32, usize, usize) {
    (
        node.span.line,
        node.span.col,
        node.span.offset,
        node.span.len,
    )
}

#[test]
fn positions_of_keys_and_values() {
    let src = "{\n  \"name\": \"app\",\n\t\"n\":\t12.5e3 }";
    let r = root(src);
    let e = entries(&r);
    assert_eq!((e[0].0.span.line, e[0].0.span.col), (2, 3));
    assert_eq!((e[0].1.span.line, e[0].1.span.col), (2, 11));
    assert_eq!(e[0].1.scalar().unwrap().text, "app");
    assert!(!e[0].1.scalar().unwrap().plain);
    // Tabs are whitespace in JSON and in YAML's flow context.
    assert_eq!((e[1].1.span.line, e[1].1.span.col), (3, 7));
    let n = e[1].1.scalar().unwrap();
    assert_eq!((n.text.as_str(), n.plain), ("12.5e3", true));
}

#[test]
fn crlf_and_tabs_between_tokens() {
    let r = root("{\r\n\t\"a\":\t1,\r\n\t\"b\":\t[\t\"x\"\t]\r\n}\r\n");
    let e = entries(&r);
    assert_eq!((e[1].0.span.line, e[1].0.span.col), (3, 2));
    assert_eq!(e[0].1.scalar().unwrap().text, "1");
}

#[test]
fn numbers_keep_their_spelling() {
    let r = root(r#"[0, -1, 1.50, 1e400, 123456789012345678901234567890, -0.0, true, null]"#);
    let Kind::Seq(items) = &r.kind else { panic!() };
    let texts: Vec<&str> = items
        .iter()
        .map(|n| n.scalar().unwrap().text.as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "0",
            "-1",
            "1.50",
            "1e400",
            "123456789012345678901234567890",
            "-0.0",
            "true",
            "null"
        ]
    );
    assert!(items.iter().all(|n| n.scalar().unwrap().plain));
}

#[test]
fn escapes_decode_like_json() {
    let r = root(r#"{"a": "x\u00e9\n\t\"\\\/y\u0000", "b": "\ud83d\ude80!", "c": "after"}"#);
    let e = entries(&r);
    assert_eq!(e[0].1.scalar().unwrap().text, "x\u{e9}\n\t\"\\/y\0");
    assert_eq!(e[1].1.scalar().unwrap().text, "\u{1F680}!");
    assert_eq!(e[2].1.scalar().unwrap().text, "after");
}

#[test]
fn surrogate_pairs_do_not_shift_later_positions() {
    let src = "{\"a\": \"\\ud83d\\ude80\\ud83d\\ude80\", \"b\": \"z\",\n\"c\": 1}";
    let r = root(src);
    let e = entries(&r);
    let b = &e[1];
    assert_eq!(&src[b.0.span.offset..b.0.span.offset + 3], "\"b\"");
    assert_eq!((b.0.span.line, b.0.span.col), (1, 35));
    assert_eq!(&src[b.1.span.offset..b.1.span.offset + 3], "\"z\"");
    // The scalar holding the pairs spans its whole spelling.
    let a = &e[0].1;
    assert_eq!(
        &src[a.span.offset..a.span.offset + a.span.len],
        "\"\\ud83d\\ude80\\ud83d\\ude80\""
    );
    // Other lines are untouched.
    assert_eq!(at(&e[2].0).0, 2);
    assert_eq!(at(&e[2].0).1, 1);
}

#[test]
fn json_syntax_is_strict() {
    for (source, line, col, needle) in [
        ("{\"a\": 1,}", 1, 8, "trailing comma"),
        ("[1,\n 2,\n]", 2, 3, "trailing comma"),
        ("{'a': 1}", 1, 2, "key must be a string"),
        ("{a: 1}", 1, 2, "key must be a string"),
        ("{\"a\": 1} # c", 1, 10, "trailing characters"),
        ("{\"a\": 1 \"b\": 2}", 1, 9, "expected `,` or `}`"),
        (
            "{\"a\": \"\\ud83d\"}",
            1,
            7,
            "invalid Unicode character escape",
        ),
        ("{\"a\": \"x", 1, 8, "EOF while parsing a string"),
    ] {
        let d = load(source).expect_err(source);
        assert_eq!((d.span.line, d.span.col), (line, col), "{source}: {d}");
        assert!(d.message.contains(needle), "{source}: {d}");
    }
}

#[test]
fn error_columns_count_characters_not_bytes() {
    let d = load("{\"é\": 1,}").unwrap_err();
    assert_eq!((d.span.line, d.span.col), (1, 8));
}

#[test]
fn deep_nesting_is_a_diagnostic() {
    let source = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let d = load(&source).unwrap_err();
    assert!(d.message.contains("nesting too deep"), "{d}");
    let source = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let d = load(&source).unwrap_err();
    assert!(d.message.contains("nesting too deep"), "{d}");
}

#[test]
fn a_whole_pipeline_reports_json_positions() {
    let source = json("").replace("\"version\": \"1\"}", "\"version\": \"1\", \"extra\": 1}");
    has(
        &source,
        7,
        91,
        "unknown key `extra` in `stages[0].actions[0].actionTypeId`",
    );
}
