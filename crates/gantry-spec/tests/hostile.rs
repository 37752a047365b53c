//! Hostile input: every budget ends in a diagnostic, never a hang, a stack
//! overflow or a panic. (No timing assertions: finishing is the assertion.)

use gantry_spec::buildspec::parse;

#[track_caller]
fn expect(source: &str, needle: &str) {
    let message = first_error(source);
    assert!(message.contains(needle), "{message}");
}

fn first_error(source: &str) -> String {
    match parse(source) {
        Ok(_) => panic!("hostile input was accepted"),
        Err(diags) => diags[0].message.clone(),
    }
}

#[test]
fn ten_thousand_nested_flow_lists() {
    let source = format!("version: 0.2\nphases: {}", "[".repeat(10_000));
    expect(&source, "nesting too deep");
    let source = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    expect(&source, "nesting too deep");
}

#[test]
fn deeply_nested_flow_mappings() {
    let source = format!("{}1{}", "{a: ".repeat(5_000), "}".repeat(5_000));
    expect(&source, "nesting too deep");
}

#[test]
fn deeply_nested_block_structures() {
    let mut source = String::from("version: 0.2\nphases:\n");
    for depth in 0..200 {
        source.push_str(&" ".repeat(depth + 1));
        source.push_str("k:\n");
    }
    expect(&source, "nesting too deep");
    let source = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      {}x\n",
        "- ".repeat(500)
    );
    expect(&source, "nesting too deep");
}

#[test]
fn billion_laughs() {
    let mut source = String::from(
        "version: 0.2\nlol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        source.push_str(&format!("lol{i}: &l{i} [{refs}]\n"));
    }
    source.push_str("phases: {}\n");
    let message = first_error(&source);
    assert!(message.contains("too large"), "{message}");
}

#[test]
fn quadratic_alias_blowup_through_mappings() {
    // Each level is a mapping that refers to the previous one twice.
    let mut source = String::from("a0: &a0 {x: 1, y: 2}\n");
    for i in 1..40 {
        source.push_str(&format!("a{i}: &a{i} {{x: *a{p}, y: *a{p}}}\n", p = i - 1));
    }
    expect(&source, "too large");
}

#[test]
fn fifty_megabyte_file() {
    let line = "      - echo 0123456789abcdef0123456789abcdef0123456789abcdef\n";
    let mut source = String::from("version: 0.2\nphases:\n  build:\n    commands:\n");
    while source.len() < 50 * 1024 * 1024 {
        source.push_str(line);
    }
    let message = first_error(&source);
    assert!(
        message.contains("bytes; the limit is 4194304 bytes"),
        "{message}"
    );
}

#[test]
fn too_many_nodes_within_the_size_limit() {
    let items = vec!["a"; 200_000].join(",");
    let source = format!("version: 0.2\nphases:\n  build:\n    commands: [{items}]\n");
    assert!(source.len() < 4 * 1024 * 1024);
    expect(&source, "too large");
}

#[test]
fn very_long_lines() {
    let long = "x".repeat(3 * 1024 * 1024);
    // A 3 MiB command is allowed (the budget is the file size, not the line).
    let source = format!("version: 0.2\nphases:\n  build:\n    commands:\n      - echo {long}\n");
    let spec = parse(&source).expect("a long command is valid");
    assert_eq!(
        spec.phases.build.unwrap().commands[0].value.len(),
        long.len() + 5
    );
    // A 3 MiB unknown key: the message shows only its start.
    let source = format!("version: 0.2\nphases: {{}}\n{long}: 1\n");
    let message = first_error(&source);
    assert!(message.len() < 400, "{}", message.len());
    // A 3 MiB line of flow syntax noise.
    let noise = "[{".repeat(1024 * 1024);
    let _ = parse(&noise);
    let quotes = format!("version: \"{}", "\\\"".repeat(1024 * 1024));
    let _ = parse(&quotes);
}

#[test]
fn regex_bombs_in_on_failure_are_rejected() {
    let source = "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-1-(a{1000}){1000}\n    commands: [a]\n";
    assert!(first_error(source).contains("not a valid regex"));
}

#[test]
fn control_and_odd_characters() {
    for source in [
        "\u{0}",
        "\u{feff}version: 0.2\nphases: {}\n",
        "\t\tversion: 0.2",
        "version: 0.2\r\nphases: {}\r\n",
        "%YAML 1.2\n---\nversion: 0.2\nphases: {}\n",
        "&a *a",
        "*x",
        "? [a]\n: b\n",
        "!!binary aGk=: x",
    ] {
        let _ = parse(source);
    }
}

#[test]
fn large_maps_stay_linear() {
    let vars: String = (0..40_000).map(|i| format!("    V{i}: x\n")).collect();
    let source = format!("version: 0.2\nenv:\n  variables:\n{vars}phases: {{}}\n");
    let spec = parse(&source).expect("40,000 variables are valid");
    assert_eq!(spec.env.variables.len(), 40_000);
    let dups = "    V: x\n".repeat(40_000);
    let source = format!("version: 0.2\nenv:\n  variables:\n{dups}phases: {{}}\n");
    let diags = parse(&source).unwrap_err();
    // Capped, with a last line saying how many more there were.
    assert_eq!(diags.len(), 101);
    assert!(
        diags[100].message.contains("more problems"),
        "{}",
        diags[100]
    );
}

#[test]
fn graphs_with_thousands_of_cycles() {
    let n = 3_000;
    let mut source = String::from("version: 0.2\nphases: {}\nbatch:\n  build-graph:\n");
    for i in 0..n - 1 {
        source.push_str(&format!(
            "    - identifier: t{i}\n      depend-on: [t{}]\n",
            i + 1
        ));
    }
    let all: Vec<String> = (0..n - 1).map(|i| format!("t{i}")).collect();
    source.push_str(&format!(
        "    - identifier: t{}\n      depend-on: [{}]\n",
        n - 1,
        all.join(", ")
    ));
    let diags = parse(&source).unwrap_err();
    assert!(diags.len() <= 10, "{}", diags.len());
    assert!(diags.iter().all(|d| d.message.len() < 400));
    assert!(
        diags[0].message.contains("dependency cycle t0 -> t1"),
        "{}",
        diags[0]
    );
}
