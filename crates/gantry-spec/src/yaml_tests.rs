use super::*;

fn small(max_depth: usize, max_nodes: usize) -> Limits {
    Limits {
        max_bytes: 1 << 20,
        max_depth,
        max_nodes,
    }
}

fn root(source: &str) -> Node {
    load(source, LIMITS)
        .expect("valid YAML")
        .expect("a document")
}

fn entries(node: &Node) -> &[(Node, Node)] {
    match &node.kind {
        Kind::Map(e) => e,
        other => panic!("not a mapping: {other:?}"),
    }
}

#[test]
fn scalars_keep_text_and_plainness() {
    let r = root("a: 0.10\nb: '0.10'\nc: !!str 1\nd:\ne: ~\n");
    let e = entries(&r);
    let s = |i: usize| e[i].1.scalar().expect("scalar").clone();
    assert_eq!((s(0).text.as_str(), s(0).plain), ("0.10", true));
    assert_eq!((s(1).text.as_str(), s(1).plain), ("0.10", false));
    assert!(!s(2).plain);
    assert!(e[3].1.is_null() && e[4].1.is_null());
    assert!(!e[1].1.is_null());
}

#[test]
fn spans_are_one_based_with_byte_offsets() {
    let src = "k: é\nlist:\n  - ü: x\n";
    let r = root(src);
    let e = entries(&r);
    assert_eq!(
        (
            e[0].1.span.line,
            e[0].1.span.col,
            e[0].1.span.offset,
            e[0].1.span.len
        ),
        (1, 4, 3, 2)
    );
    let Kind::Seq(items) = &e[1].1.kind else {
        panic!()
    };
    let (key, value) = &entries(&items[0])[0];
    assert_eq!((key.span.line, key.span.col), (3, 5));
    assert_eq!(&src[key.span.offset..key.span.offset + key.span.len], "ü");
    assert_eq!(
        &src[value.span.offset..value.span.offset + value.span.len],
        "x"
    );
}

#[test]
fn long_non_ascii_text_maps_offsets_correctly() {
    let src = format!("{}: v\nsecond: ü\n", "é".repeat(300));
    let r = root(&src);
    let value = &entries(&r)[1].1;
    assert_eq!(
        &src[value.span.offset..value.span.offset + value.span.len],
        "ü"
    );
}

#[test]
fn depth_budget() {
    assert!(load("[[[1]]]", small(3, 100)).is_ok());
    let err = load("[[[[1]]]]", small(3, 100)).unwrap_err();
    assert!(
        err.message.contains("nesting too deep: more than 3"),
        "{err}"
    );
    assert_eq!((err.span.line, err.span.col), (1, 4));
}

#[test]
fn node_budget_counts_alias_copies() {
    let src = "a: &x [1, 2, 3]\nb: *x\nc: *x\n";
    // Root, three keys, the list (4 nodes) and two aliases copying it: 16.
    assert!(load(src, small(10, 16)).is_ok());
    let err = load(src, small(10, 15)).unwrap_err();
    assert!(err.message.contains("too large"), "{err}");
    assert_eq!((err.span.line, err.span.col), (3, 4));
}

#[test]
fn size_budget() {
    let limits = Limits {
        max_bytes: 10,
        ..LIMITS
    };
    let err = load("a: 0123456789", limits).unwrap_err();
    assert!(
        err.message
            .contains("file is 13 bytes; the limit is 10 bytes"),
        "{err}"
    );
}

#[test]
fn aliases_copy_the_anchored_node_at_the_alias_position() {
    let r = root("a: &x {k: v}\nb: *x\n");
    let e = entries(&r);
    assert_eq!(entries(&e[1].1)[0].0.scalar().unwrap().text, "k");
    assert_eq!(e[1].1.span.line, 2);
}

#[test]
fn merge_keys_own_keys_win() {
    let r = root("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
    let m = &entries(&r)[1].1;
    let pairs: Vec<(String, String)> = entries(m)
        .iter()
        .map(|(k, v)| {
            (
                k.scalar().unwrap().text.clone(),
                v.scalar().unwrap().text.clone(),
            )
        })
        .collect();
    assert_eq!(pairs, [("y".into(), "3".into()), ("x".into(), "1".into())]);
}

#[test]
fn merge_key_with_a_list_of_mappings() {
    let r = root("a: &a {x: 1}\nb: &b {y: 2}\nm:\n  <<: [*a, *b]\n");
    assert_eq!(entries(&entries(&r)[2].1).len(), 2);
}

#[test]
fn quoted_merge_key_is_an_ordinary_key() {
    let r = root("a: &a {x: 1}\nm:\n  '<<': *a\n");
    assert_eq!(entries(&entries(&r)[1].1)[0].0.scalar().unwrap().text, "<<");
}

#[test]
fn empty_input_has_no_document() {
    assert_eq!(load("", LIMITS), Ok(None));
    assert_eq!(load("# comment\n", LIMITS), Ok(None));
}

#[test]
fn undefined_alias_is_an_error() {
    let err = load("a: *nope\n", LIMITS).unwrap_err();
    assert!(err.message.starts_with("invalid YAML"), "{err}");
}

#[test]
fn custom_tags_are_errors() {
    let err = load("a: !Ref x\n", LIMITS).unwrap_err();
    assert!(err.message.contains("unsupported YAML tag `!Ref`"), "{err}");
}

#[test]
fn describe_and_shorten() {
    assert_eq!(root("[a]").describe(), "a list");
    assert_eq!(root("{a: b}").describe(), "a mapping");
    assert_eq!(root("x").describe(), "`x`");
    assert_eq!(shorten(&"é".repeat(100)), format!("{}...", "é".repeat(60)));
}
