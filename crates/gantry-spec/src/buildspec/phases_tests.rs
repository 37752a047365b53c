use super::*;
use crate::buildspec::tests::{errs, has, ok};

fn spec(phases: &str) -> String {
    format!("version: 0.2\nphases:\n{phases}")
}

fn retry(count: u32, pattern: Option<&str>) -> OnFailure {
    OnFailure::Retry {
        count,
        pattern: pattern.map(str::to_string),
    }
}

#[test]
fn all_four_phases_in_order() {
    let s = ok(&spec(
        "  install:\n    runtime-versions:\n      nodejs: 18\n      python: 3.10\n  pre_build:\n    commands: [a]\n  build:\n    commands: [b]\n    finally: [c]\n  post_build:\n    commands: [d]\n",
    ));
    let install = s.phases.install.unwrap();
    assert!(install.commands.is_empty());
    let rt: Vec<_> = install
        .runtime_versions
        .iter()
        .map(|r| (r.name.value.as_str(), r.value.value.as_str()))
        .collect();
    assert_eq!(rt, [("nodejs", "18"), ("python", "3.10")]);
    assert_eq!(s.phases.pre_build.unwrap().commands[0].value, "a");
    assert_eq!(s.phases.build.as_ref().unwrap().finally[0].value, "c");
    assert_eq!(s.phases.post_build.unwrap().commands[0].value, "d");
}

#[test]
fn commands_required_except_in_install() {
    has(
        &spec("  build:\n    finally: [x]\n"),
        3,
        3,
        "missing required key `commands` in `phases.build`",
    );
    has(
        &spec("  post_build:\n"),
        3,
        3,
        "missing required key `commands` in `phases.post_build`",
    );
    ok(&spec(
        "  install:\n    runtime-versions:\n      java: corretto17\n",
    ));
}

#[test]
fn unknown_phase_suggests() {
    has(
        &spec("  pre-build:\n    commands: [a]\n"),
        3,
        3,
        "unknown key `pre-build` in `phases`; expected one of `install`, `pre_build`, `build`, `post_build`; did you mean `pre_build`?",
    );
}

#[test]
fn unknown_phase_key_example_from_the_brief() {
    has(
        &spec("  build:\n    commands: [a]\n    comands: [b]\n"),
        5,
        5,
        "unknown key `comands` in `phases.build`; expected one of `run-as`, `on-failure`, `commands`, `finally`; did you mean `commands`?",
    );
}

#[test]
fn runtime_versions_only_in_install() {
    has(
        &spec("  build:\n    runtime-versions:\n      nodejs: 18\n    commands: [a]\n"),
        4,
        5,
        "`runtime-versions` is only allowed in `phases.install`, not in `phases.build`",
    );
}

#[test]
fn phase_run_as() {
    let s = ok(&spec("  build:\n    run-as: ci\n    commands: [a]\n"));
    assert_eq!(s.phases.build.unwrap().run_as.unwrap().value, "ci");
}

#[test]
fn numbers_and_booleans_in_commands_keep_their_text() {
    let s = ok(&spec(
        "  build:\n    commands:\n      - 1.10\n      - yes\n      - 0x1F\n      - 'quoted: ok'\n      - |\n        multi\n        line\n",
    ));
    let cmds: Vec<_> = s
        .phases
        .build
        .unwrap()
        .commands
        .into_iter()
        .map(|c| c.value)
        .collect();
    assert_eq!(cmds, ["1.10", "yes", "0x1F", "quoted: ok", "multi\nline\n"]);
}

#[test]
fn unquoted_colon_in_command_suggests_quoting() {
    has(
        &spec("  build:\n    commands:\n      - echo a: b\n"),
        5,
        9,
        "`phases.build.commands[0]` is a mapping, not a command: YAML reads `echo a: b` as `key: value` because of the `: `; quote the whole command, e.g. - 'echo a: b'",
    );
}

#[test]
fn nested_list_and_empty_command_are_errors() {
    has(
        &spec("  build:\n    commands:\n      - [a, b]\n"),
        5,
        9,
        "`phases.build.commands[0]` is a list, not a command",
    );
    has(
        &spec("  build:\n    commands:\n      - a\n      -\n"),
        6,
        8,
        "`phases.build.commands[1]` is empty",
    );
    has(
        &spec("  build:\n    commands: make\n"),
        4,
        15,
        "`phases.build.commands` must be a list of commands, found `make`",
    );
    has(
        &spec("  build:\n    finally:\n      - k: v\n    commands: []\n"),
        5,
        9,
        "`phases.build.finally[0]` is a mapping",
    );
}

#[test]
fn on_failure_forms() {
    assert_eq!(parse_on_failure("ABORT"), Ok(OnFailure::Abort));
    assert_eq!(parse_on_failure("CONTINUE"), Ok(OnFailure::Continue));
    assert_eq!(parse_on_failure("RETRY"), Ok(retry(3, None)));
    assert_eq!(parse_on_failure("RETRY-0"), Ok(retry(0, None)));
    assert_eq!(parse_on_failure("RETRY-100"), Ok(retry(100, None)));
    assert_eq!(
        parse_on_failure("RETRY-.*timeout.*"),
        Ok(retry(3, Some(".*timeout.*")))
    );
    assert_eq!(
        parse_on_failure("RETRY-5-^Error: [0-9]+$"),
        Ok(retry(5, Some("^Error: [0-9]+$")))
    );
    // A regex that merely starts with digits, not followed by `-`.
    assert_eq!(parse_on_failure("RETRY-5xx"), Ok(retry(3, Some("5xx"))));
}

#[test]
fn on_failure_errors() {
    assert!(
        parse_on_failure("RETRY-101")
            .unwrap_err()
            .contains("0 to 100")
    );
    assert!(
        parse_on_failure("RETRY-99999999999999999999")
            .unwrap_err()
            .contains("0 to 100")
    );
    assert!(
        parse_on_failure("RETRY-2-(")
            .unwrap_err()
            .contains("not a valid regex")
    );
    assert!(parse_on_failure("RETRY-").unwrap_err().contains("empty"));
    assert!(
        parse_on_failure("abort")
            .unwrap_err()
            .contains("upper-case")
    );
    assert!(
        parse_on_failure("RETRY-a{99999}{99999}")
            .unwrap_err()
            .contains("not a valid regex")
    );
    has(
        &spec("  build:\n    on-failure: STOP\n    commands: [a]\n"),
        4,
        17,
        "`phases.build.on-failure` must be ABORT, CONTINUE or RETRY[-count][-regex], found `STOP`",
    );
    let s = ok(&spec(
        "  build:\n    on-failure: RETRY-2-flaky\n    commands: [a]\n",
    ));
    let f = s.phases.build.unwrap().on_failure.unwrap();
    assert_eq!(f.value, retry(2, Some("flaky")));
    assert_eq!((f.span.line, f.span.col), (4, 17));
}

#[test]
fn several_phase_errors_at_once() {
    let d = errs(&spec(
        "  install:\n    runtime-versions: [x]\n  build:\n    on-failure: NOPE\n    commands: [ {a: b} ]\n",
    ));
    assert_eq!(d.len(), 3, "{d:#?}");
}
