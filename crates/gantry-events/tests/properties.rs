//! Property tests: the index agrees with one-by-one matching, and untrusted
//! patterns, events and templates never panic.

use gantry_events::{FlatEvent, InputTransformer, Pattern, RuleContext, RuleSet};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KEYS: &[&str] = &["a", "b", "c", "a.b", "b.", "$or"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "x",
            "xy",
            "XY",
            "yx",
            "",
            "10.0.0.7",
            "2001:db8::1",
            "a*b"
        ])
        .prop_map(|s| json!(s)),
        prop::sample::select(vec![0.0, 1.0, 5.0, 300.0, -2.5, 1e9]).prop_map(|n| json!(n)),
        prop::sample::select(vec![0i64, 1, 5, 300]).prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

/// Events over a small vocabulary so that patterns hit them often.
fn event() -> impl Strategy<Value = Value> {
    let leaf = scalar();
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..4).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    });
    prop::collection::btree_map(prop::sample::select(KEYS), tree, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn matcher() -> impl Strategy<Value = Value> {
    prop_oneof![
        scalar(),
        prop::sample::select(vec!["x", "X", "y", ""]).prop_map(|s| json!({"prefix": s})),
        prop::sample::select(vec!["x", "y", "Y"]).prop_map(|s| json!({"suffix": s})),
        prop::sample::select(vec!["x", "Y"])
            .prop_map(|s| json!({"prefix": {"equals-ignore-case": s}})),
        prop::sample::select(vec!["x", "Y"])
            .prop_map(|s| json!({"suffix": {"equals-ignore-case": s}})),
        prop::sample::select(vec!["xy", "x", ""]).prop_map(|s| json!({"equals-ignore-case": s})),
        prop::sample::select(vec!["x", "xy"]).prop_map(|s| json!({"anything-but": s})),
        Just(json!({"anything-but": [1, 300]})),
        Just(json!({"anything-but": {"prefix": "x"}})),
        Just(json!({"anything-but": {"suffix": ["y", "x"]}})),
        Just(json!({"anything-but": {"equals-ignore-case": ["XY"]}})),
        Just(json!({"anything-but": {"wildcard": "x*"}})),
        Just(json!({"numeric": [">", 0, "<=", 300]})),
        Just(json!({"numeric": ["<", 1]})),
        Just(json!({"numeric": ["=", 300]})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
        Just(json!({"cidr": "10.0.0.0/8"})),
        Just(json!({"cidr": "2001:db8::/32"})),
        prop::sample::select(vec!["x*", "*y", "*", "a\\*b"]).prop_map(|s| json!({"wildcard": s})),
    ]
}

fn pattern() -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec(matcher(), 1..3).prop_map(Value::Array);
    let fields = |inner: BoxedStrategy<Value>| {
        prop::collection::btree_map(prop::sample::select(&KEYS[..5]), inner, 1..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    };
    let object = leaf.prop_recursive(2, 12, 3, move |inner| fields(inner).boxed());
    let top = prop::collection::btree_map(prop::sample::select(&KEYS[..5]), object, 0..3);
    let ors = prop::option::of(prop::collection::vec(
        prop::collection::btree_map(
            prop::sample::select(&KEYS[..5]),
            prop::collection::vec(matcher(), 1..3).prop_map(Value::Array),
            1..2,
        ),
        2..3,
    ));
    (top, ors).prop_map(|(top, ors)| {
        let mut map: Map<String, Value> =
            top.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Some(alternatives) = ors {
            let alts = alternatives
                .into_iter()
                .map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
                .collect();
            map.insert("$or".into(), Value::Array(alts));
        }
        Value::Object(map)
    })
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::String),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        prop::sample::select(vec![
            "prefix",
            "suffix",
            "anything-but",
            "numeric",
            "exists",
            "cidr",
            "wildcard",
            "equals-ignore-case",
            "$or",
            "<",
            ">=",
            "="
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(vec![
                        "prefix",
                        "suffix",
                        "anything-but",
                        "numeric",
                        "exists",
                        "cidr",
                        "wildcard",
                        "equals-ignore-case",
                        "$or",
                        "a"
                    ])
                    .prop_map(str::to_string),
                    any::<String>()
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for one of the crowded fields.
fn crowded_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u32..6).prop_map(|i| json!(format!("v{i}"))),
        (0u32..6).prop_map(|i| json!(format!("V{i}-x"))),
        (0u32..4, 0u32..4).prop_map(|(a, b)| json!(format!("10.{a}.{b}.7"))),
        (-3i32..12).prop_map(|n| json!(n)),
        (-3i32..12).prop_map(|n| json!(f64::from(n) + 0.5)),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn crowded_matcher() -> impl Strategy<Value = Value> {
    let bound = -3i32..12;
    prop_oneof![
        crowded_value(),
        (0u32..6).prop_map(|i| json!({"prefix": format!("v{i}")})),
        Just(json!({"prefix": {"equals-ignore-case": "v"}})),
        Just(json!({"suffix": "-x"})),
        (0u32..6).prop_map(|i| json!({"equals-ignore-case": format!("v{i}-X")})),
        (0u32..6).prop_map(|i| json!({"wildcard": format!("V{i}*")})),
        Just(json!({"wildcard": "*-x"})),
        (0u32..4, prop::sample::select(vec![8u32, 16, 24]))
            .prop_map(|(a, m)| json!({"cidr": format!("10.{a}.0.0/{m}")})),
        (bound.clone(), bound.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, b, ia, ib)| {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            json!({"numeric": [if ia { ">=" } else { ">" }, lo, if ib { "<=" } else { "<" }, hi]})
        }),
        (
            bound.clone(),
            prop::sample::select(vec![">", ">=", "<", "<=", "="])
        )
            .prop_map(|(a, op)| json!({"numeric": [op, a]})),
        (0u32..6).prop_map(|i| json!({"anything-but": format!("v{i}")})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
    ]
}

/// Up to four conditions over four fields, sometimes nested or with `$or`.
fn crowded_pattern() -> impl Strategy<Value = Value> {
    let condition = || {
        (
            prop::sample::select(vec!["f", "g", "h.i", "h"]),
            prop::collection::vec(crowded_matcher(), 1..3),
        )
    };
    (
        prop::collection::vec(condition(), 1..4),
        prop::option::of(prop::collection::vec(condition(), 2..3)),
    )
        .prop_map(|(conditions, or)| {
            let mut map = Map::new();
            for (field, matchers) in conditions {
                map.insert(field.to_string(), Value::Array(matchers));
            }
            if let Some(alternatives) = or {
                let alts = alternatives
                    .into_iter()
                    .map(|(field, matchers)| json!({ field: matchers }))
                    .collect();
                map.insert("$or".into(), Value::Array(alts));
            }
            Value::Object(map)
        })
}

fn crowded_event() -> impl Strategy<Value = Value> {
    let field_value = prop_oneof![
        4 => crowded_value(),
        1 => prop::collection::vec(crowded_value(), 0..3).prop_map(Value::Array),
    ];
    let nested = prop_oneof![
        crowded_value(),
        crowded_value().prop_map(|v| json!({"i": v})),
        prop::collection::vec(crowded_value().prop_map(|v| json!({"i": v})), 1..3)
            .prop_map(Value::Array),
    ];
    (
        prop::option::of(field_value.clone()),
        prop::option::of(field_value),
        prop::option::of(nested),
        prop::option::of(crowded_value()),
    )
        .prop_map(|(f, g, h, hi)| {
            let mut map = Map::new();
            for (key, value) in [("f", f), ("g", g), ("h", h), ("h.i", hi)] {
                if let Some(value) = value {
                    map.insert(key.to_string(), value);
                }
            }
            Value::Object(map)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The index finds exactly the rules that match one by one.
    #[test]
    fn index_agrees_with_one_by_one(
        patterns in prop::collection::vec(pattern(), 1..40),
        events in prop::collection::vec(event(), 1..8),
    ) {
        let compiled: Vec<Pattern> = patterns.iter().filter_map(|p| Pattern::from_value(p).ok()).collect();
        let mut builder = RuleSet::builder();
        for (i, p) in compiled.iter().enumerate() {
            builder.add(i, p);
        }
        let rules = builder.build();
        for event in &events {
            let flat = FlatEvent::new(event);
            let one_by_one: Vec<usize> = (0..compiled.len()).filter(|&i| compiled[i].matches_flat(&flat)).collect();
            let indexed: Vec<usize> = rules.matches_flat(&flat).into_iter().copied().collect();
            prop_assert_eq!(&indexed, &one_by_one, "flattened event {}", event);
            // The index walks a raw event itself, only where rules look.
            let walked: Vec<usize> = rules.matches(event).into_iter().copied().collect();
            prop_assert_eq!(&walked, &one_by_one, "event {}", event);
        }
    }

    /// Many rules over few fields, so that rules share anchors, second keys,
    /// range ends, networks and wildcard starts: the index still finds
    /// exactly what one-by-one matching finds.
    #[test]
    fn crowded_index_agrees_with_one_by_one(
        patterns in prop::collection::vec(crowded_pattern(), 20..200),
        events in prop::collection::vec(crowded_event(), 1..16),
    ) {
        let compiled: Vec<Pattern> = patterns.iter().filter_map(|p| Pattern::from_value(p).ok()).collect();
        let mut builder = RuleSet::builder();
        for (i, p) in compiled.iter().enumerate() {
            builder.add(i, p);
        }
        let rules = builder.build();
        for event in &events {
            let flat = FlatEvent::new(event);
            let one_by_one: Vec<usize> = (0..compiled.len()).filter(|&i| compiled[i].matches_flat(&flat)).collect();
            let walked: Vec<usize> = rules.matches(event).into_iter().copied().collect();
            prop_assert_eq!(&walked, &one_by_one, "event {}", event);
            let indexed: Vec<usize> = rules.matches_flat(&flat).into_iter().copied().collect();
            prop_assert_eq!(&indexed, &one_by_one, "flattened event {}", event);
        }
    }

    /// Random JSON as pattern and event: an error or an answer, never a panic.
    #[test]
    fn hostile_patterns_and_events_do_not_panic(pattern in arbitrary_json(), event in arbitrary_json()) {
        if let Ok(p) = Pattern::from_value(&pattern) {
            let single = p.matches(&event);
            let mut b = RuleSet::builder();
            b.add((), &p);
            prop_assert_eq!(single, !b.build().matches(&event).is_empty());
        }
        let _ = Pattern::parse(&pattern.to_string());
    }

    /// Random text as pattern, wildcard or template: never a panic.
    #[test]
    fn hostile_text_does_not_panic(text in ".{0,64}", event in event()) {
        let _ = Pattern::parse(&text);
        let _ = Pattern::from_value(&json!({"f": [{"wildcard": text.clone()}]}));
        let _ = Pattern::from_value(&json!({"f": [{"cidr": text.clone()}]}));
        if let Ok(t) = InputTransformer::new([("k", "$.a"), ("j", "$.b[0]")], &text) {
            let _ = t.render(&event, &RuleContext::default());
        }
        let _ = InputTransformer::new([("k", text.as_str())], "<k>");
    }
}

#[test]
fn deep_event_does_not_overflow() {
    let mut event = json!("leaf");
    for _ in 0..10_000 {
        // Not json!: it would serialise `event` again, recursively.
        let mut map = Map::new();
        map.insert("a".into(), event);
        event = Value::Object(map);
    }
    let pattern = Pattern::parse(r#"{"a": [{"exists": false}]}"#).expect("valid");
    assert!(pattern.matches(&event));
    let mut rules = RuleSet::builder();
    rules.add((), &pattern);
    assert_eq!(rules.build().matches(&event).len(), 1);
    std::mem::forget(event);

    // Arrays nested 10,000 deep at a path the index walks.
    let mut event = json!("leaf");
    for _ in 0..10_000 {
        event = Value::Array(vec![event]);
    }
    let mut map = Map::new();
    map.insert("a".into(), event);
    let event = Value::Object(map);
    let pattern = Pattern::parse(r#"{"a": ["leaf"]}"#).expect("valid");
    let mut rules = RuleSet::builder();
    rules.add((), &pattern);
    assert_eq!(
        rules.build().matches(&event).len(),
        usize::from(pattern.matches(&event))
    );
    // serde_json's drop of a 10,000-deep value recurses; leak it instead.
    std::mem::forget(event);
}

#[test]
fn wide_arrays_stay_bounded() {
    // Four conditions over 300-element arrays of mismatched objects: the
    // consistency search is bounded and answers.
    let items: Vec<Value> = (0..300)
        .map(|i| json!({"p": i % 2, "q": (i + 1) % 2, "r": 1, "s": 1}))
        .collect();
    let event = json!({"x": items});
    let pattern =
        Pattern::parse(r#"{"x": {"p": [1], "q": [1], "r": [1], "s": [1]}}"#).expect("valid");
    assert!(!pattern.matches(&event));
}
