//! Untrusted expressions end in an error, never a hang, panic or stack overflow.
mod common;
use common::*;
use gantry_jsonata::{Expression, FixedHost, Limits};
use proptest::prelude::*;
use serde_json::{Map, json};

fn run(src: &str) -> Result<Option<serde_json::Value>, gantry_jsonata::Error> {
    let e = Expression::parse(src)?;
    e.evaluate(
        Some(&shop()),
        &Map::new(),
        &mut FixedHost::new(NOW, 1),
        Limits::default(),
    )
}

/// Runs on a thread with a 2 MiB stack, the size of a Tokio worker's.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic or overflow")
}

#[test]
fn infinite_recursion_is_a_depth_error() {
    let e =
        on_small_stack(|| run("($f := function($n) { 1 + $f($n + 1) * 2 }; $f(0))")).unwrap_err();
    assert_eq!(e.code, "U1001");
}

#[test]
fn moderate_recursion_still_works() {
    let r = on_small_stack(|| run("($f := function($n) { $n = 0 ? 0 : 1 + $f($n - 1) }; $f(60))"));
    assert_eq!(r, Ok(Some(json!(60))));
}

#[test]
fn tail_recursion_is_not_limited_by_the_stack() {
    let r = on_small_stack(|| {
        run(
            "($loop := function($n, $acc) { $n = 0 ? $acc : $loop($n - 1, $acc + $n) }; $loop(20000, 0))",
        )
    });
    assert_eq!(r, Ok(Some(json!(200010000))));
    // Through a block and a conditional without an else.
    let r = on_small_stack(|| {
        run("($f := function($n) { ($m := $n - 1; $m > 0 ? $f($m) : 'done') }; $f(5000))")
    });
    assert_eq!(r, Ok(Some(json!("done"))));
    // An endless tail loop ends with the budget.
    let e = on_small_stack(|| run("($f := function($n) { $f($n + 1) }; $f(0))")).unwrap_err();
    assert_eq!(e.code, "U1002");
}

#[test]
fn long_loops_run_out_of_budget() {
    let e =
        on_small_stack(|| run("$reduce([1..1000000], function($a, $v) { $a + $v })")).unwrap_err();
    assert_eq!(e.code, "U1002");
    let e = on_small_stack(|| run("$count([1..3000].($x := $; [1..3000].($x * $)))")).unwrap_err();
    assert_eq!(e.code, "U1002");
}

#[test]
fn a_small_budget_is_enforced() {
    let e = Expression::parse("$sum([1..100].($ * 2))").expect("parses");
    let limits = Limits {
        max_steps: 50,
        ..Limits::default()
    };
    let r = e.evaluate(None, &Map::new(), &mut FixedHost::new(0, 0), limits);
    assert_eq!(r.map_err(|e| e.code), Err("U1002"));
    let r = e.evaluate(
        None,
        &Map::new(),
        &mut FixedHost::new(0, 0),
        Limits::default(),
    );
    assert_eq!(r, Ok(Some(json!(10100))));
}

#[test]
fn deeply_nested_source_is_refused() {
    let src = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let e = on_small_stack(move || run(&src)).unwrap_err();
    assert_eq!(e.code, "U1001");
    let src = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let e = on_small_stack(move || run(&src)).unwrap_err();
    assert_eq!(e.code, "U1001");
    let src = "1".to_string() + &" + 1".repeat(20000);
    let e = on_small_stack(move || run(&src)).unwrap_err();
    assert_eq!(e.code, "U1001");
    // A long chain within the limit evaluates.
    let src = "'' ".to_string() + &" & 'x'".repeat(300);
    let r = on_small_stack(move || run(&src)).expect("evaluates");
    assert_eq!(r, Some(json!("x".repeat(300))));
    let src = "-".repeat(5000) + "1";
    let e = on_small_stack(move || run(&src)).unwrap_err();
    assert_eq!(e.code, "U1001");
}

#[test]
fn deeply_nested_values_are_refused() {
    let e = on_small_stack(|| run("$reduce([1..100000], function($a, $v) { [[$a]] }, [])"))
        .unwrap_err();
    assert!(e.code == "U1003" || e.code == "U1002", "{e}");
    let e = on_small_stack(|| run("$reduce([1..100000], function($a, $v) { {'x': $a} }, {})"))
        .unwrap_err();
    assert!(e.code == "U1003" || e.code == "U1002", "{e}");
}

const PIECES: &[&str] = &[
    "a",
    "b",
    ".",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    ":",
    ";",
    "?",
    "??",
    "?:",
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "&",
    "and",
    "or",
    "in",
    "..",
    ":=",
    "~>",
    "^",
    "$",
    "$$",
    "$x",
    "$f",
    "1",
    "0",
    "-1",
    "2.5",
    "'s'",
    "\"t\"",
    "true",
    "null",
    "**",
    "function",
    "λ",
    "$map",
    "$reduce",
    "$sort",
    "$string",
    "$sum",
    "$count",
    "$keys",
    "$replace",
    "$split",
    "$match",
    "/x/",
    "/a*/",
    "`q`",
    "orders",
    "items",
    "price",
    "#",
    "@",
    "|",
    "\\",
    "'",
    "\"",
    "$eval",
    "$formatNumber",
    "'#,##0.00'",
    "$fromMillis",
    "'[Y]-[M]'",
    "$pad",
    "1e308",
    "$power",
    " ",
    "\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn random_token_soup_never_panics(ix in proptest::collection::vec(0..PIECES.len(), 0..40)) {
        let src: String = ix.iter().map(|&i| PIECES[i]).collect::<Vec<_>>().join(" ");
        let _ = run(&src);
        let joined: String = ix.iter().map(|&i| PIECES[i]).collect();
        let _ = run(&joined);
    }

    #[test]
    fn random_strings_never_panic(src in "\\PC{0,60}") {
        let _ = run(&src);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const ON_DATA: &[&str] = &[
    "a",
    "b",
    "c",
    "a.b",
    "**",
    "*",
    "a[0]",
    "a[-1]",
    "a[b]",
    "$",
    "$$",
    "a^(b)",
    "a{b: c}",
    "$count(a)",
    "$sum(a)",
    "$keys($)",
    "$string($)",
    "$sort(a)",
    "$reverse(a)",
    "a.b.c",
    "$distinct(**)",
    "$map(a, function($v) { $v })",
    "$spread($)",
    "$merge(a)",
    "$each($, function($v, $k) { $k })",
    "a#$i[$i > 0]",
    "a@$x.b",
    "$ ~> |a|{'z': 1}|",
    "$max(a)",
    "$average(**)",
    "$lookup($, 'a')",
    "$join(a)",
    "$append(a, b)",
    "a = b",
    "a < b",
    "a + b",
    "a & b",
    "a in b",
    "[a, b]",
    "{'k': a}",
    "$type(a)",
    "$boolean(a)",
    "$number(a)",
    "$zip(a, b)",
    "$filter(a, function($v) { $v })",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, .. ProptestConfig::default() })]

    #[test]
    fn expressions_on_random_data_never_panic(
        input in json_value(),
        ix in proptest::collection::vec(0..ON_DATA.len(), 1..4),
        ops in proptest::collection::vec(0..4usize, 3),
    ) {
        let joins = [".", " & ", " ~> $string() & ", ")["];
        let mut src = String::from(ON_DATA[ix[0]]);
        for (k, &i) in ix.iter().enumerate().skip(1) {
            src.push_str(joins[ops[k % 3]]);
            src.push_str(ON_DATA[i]);
        }
        if let Ok(e) = Expression::parse(&src) {
            let _ = e.evaluate(Some(&input), &Map::new(), &mut FixedHost::new(NOW, 3), Limits::default());
        }
    }

    /// Integer arithmetic follows the usual precedence and left associativity.
    #[test]
    fn arithmetic_matches_rust(a in -1000i64..1000, b in -1000i64..1000, c in 1i64..100, d in -1000i64..1000) {
        let src = format!("{a} + {b} * {c} - {d} % {c} - ({a} - {b}) * 2");
        let expected = a + b * c - d % c - (a - b) * 2;
        let got = gantry_jsonata::evaluate(&src, None, &Map::new(), &mut FixedHost::new(0, 0));
        prop_assert_eq!(got, Ok(Some(json!(expected))));
    }
}

#[test]
fn quadratic_loops_over_builtins_run_out_of_budget() {
    // Each of these does little per step but copies a growing value each time.
    for src in [
        "$reduce([1..200000], function($a, $v) { $a & 'xxxxxxxxxxxxxxxx' }, '')",
        "$reduce([1..200000], function($a, $v) { $append($a, $v) }, [])",
        "$count($distinct([1..100000]))",
        "($big := [1..100000]; $count([1..200000].$count($big)))",
        "($s := $pad('', 100000, 'x'); $count([1..100000].$length($s)))",
        "($big := {'a': [1..100000]}; $count([1..100000][$big = $big]))",
        "($big := {'a': [1..10000]}; $count([1..100000].$string($big)))",
    ] {
        let e = on_small_stack(move || run(src)).unwrap_err();
        assert_eq!(e.code, "U1002", "{src}");
    }
    // Linear work of the same size is fine.
    let r = on_small_stack(|| run("$count($distinct([1..1000]))"));
    assert_eq!(r, Ok(Some(json!(1000))));
    let r = on_small_stack(|| run("$length($join([1..20000].$string(), ','))"));
    assert_eq!(r, Ok(Some(json!(108893))));
}
