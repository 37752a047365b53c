use super::*;
use crate::buildspec::tests::{has, ok, with};

fn batch(block: &str) -> String {
    with(&format!("batch:\n{block}"))
}

#[test]
fn build_list() {
    let s = ok(&batch(
        "  fast-fail: true\n  build-list:\n    - identifier: linux_small\n      env:\n        compute-type: BUILD_GENERAL1_SMALL\n        privileged-mode: yes\n        variables:\n          MODE: small\n      ignore-failure: false\n    - identifier: other\n      buildspec: other/buildspec.yml\n      debug-session: true\n",
    ));
    let b = s.batch.unwrap();
    assert!(b.fast_fail);
    let BatchKind::List(tasks) = b.kind else {
        panic!("not a list")
    };
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        tasks[0].env.compute_type.as_ref().unwrap().value,
        "BUILD_GENERAL1_SMALL"
    );
    assert!(tasks[0].env.privileged_mode);
    assert_eq!(tasks[0].env.variables[0].value.value, "small");
    assert!(tasks[1].debug_session);
    assert_eq!((tasks[1].span.line, tasks[1].span.col), (16, 7));
}

#[test]
fn build_graph_with_dependencies() {
    let s = ok(&batch(
        "  build-graph:\n    - identifier: a\n    - identifier: b\n      depend-on:\n        - a\n    - identifier: c\n      depend-on: [a, b]\n",
    ));
    let BatchKind::Graph(tasks) = s.batch.unwrap().kind else {
        panic!()
    };
    assert_eq!(tasks[2].depend_on.len(), 2);
}

#[test]
fn depend_on_must_name_a_task() {
    has(
        &batch(
            "  build-graph:\n    - identifier: build_a\n    - identifier: b\n      depend-on: [build_b]\n",
        ),
        10,
        19,
        "`batch.build-graph[1].depend-on`: no task has the identifier `build_b`; did you mean `build_a`?",
    );
}

#[test]
fn graph_cycles_are_errors() {
    has(
        &batch(
            "  build-graph:\n    - identifier: a\n      depend-on: [b]\n    - identifier: b\n      depend-on: [a]\n",
        ),
        11,
        19,
        "dependency cycle a -> b -> a",
    );
    has(
        &batch("  build-graph:\n    - identifier: a\n      depend-on: [a]\n"),
        9,
        19,
        "dependency cycle a -> a",
    );
}

#[test]
fn depend_on_only_in_graphs() {
    has(
        &batch("  build-list:\n    - identifier: a\n      depend-on: [b]\n"),
        9,
        7,
        "unknown key `depend-on` in `batch.build-list[0]`",
    );
}

#[test]
fn identifiers_required_unique_and_well_formed() {
    has(
        &batch("  build-list:\n    - buildspec: x.yml\n"),
        8,
        7,
        "missing required key `identifier` in `batch.build-list[0]`",
    );
    has(
        &batch("  build-list:\n    - identifier: a\n    - identifier: a\n"),
        9,
        19,
        "`a` is already used on line 8",
    );
    has(
        &batch("  build-list:\n    - identifier: a-b\n"),
        8,
        19,
        "letters, digits and `_`",
    );
    has(
        &batch("  build-list:\n    - identifier: ''\n"),
        8,
        19,
        "letters, digits and `_`",
    );
}

#[test]
fn exactly_one_kind() {
    has(
        &batch("  fast-fail: no\n"),
        6,
        1,
        "exactly one of `build-list`, `build-graph`, `build-matrix`, `build-fanout`",
    );
    has(
        &batch("  build-list: []\n  build-fanout:\n    parallelism: 2\n"),
        8,
        3,
        "`build-fanout` given as well as `build-list`",
    );
}

#[test]
fn build_matrix() {
    let s = ok(&batch(
        "  build-matrix:\n    static:\n      ignore-failure: false\n      env:\n        type: LINUX_CONTAINER\n        privileged-mode: true\n    dynamic:\n      buildspec:\n        - matrix1.yml\n        - matrix2.yml\n      env:\n        compute-type: [BUILD_GENERAL1_SMALL]\n        image:\n          - aws/codebuild/amazonlinux-x86_64-standard:5.0\n        variables:\n          MY_VAR:\n            - VALUE1\n            - VALUE2\n",
    ));
    let BatchKind::Matrix(m) = s.batch.unwrap().kind else {
        panic!()
    };
    assert!(m.static_env.privileged_mode);
    assert_eq!(m.static_env.env_type.unwrap().value, "LINUX_CONTAINER");
    assert_eq!(m.buildspecs.len(), 2);
    assert_eq!(m.compute_types.len(), 1);
    assert_eq!(m.images.len(), 1);
    assert_eq!(m.variables[0].name.value, "MY_VAR");
    assert_eq!(m.variables[0].values.len(), 2);
    has(
        &batch("  build-matrix:\n    dynamic:\n      env:\n        variables:\n          V: one\n"),
        11,
        14,
        "must be a list of values",
    );
}

#[test]
fn build_fanout() {
    let s = ok(&batch(
        "  build-fanout:\n    parallelism: 5\n    ignore-failure: yes\n",
    ));
    let BatchKind::Fanout(f) = s.batch.unwrap().kind else {
        panic!()
    };
    assert_eq!(f.parallelism.value, 5);
    assert!(f.ignore_failure);
    has(
        &batch("  build-fanout:\n    parallelism: 0\n"),
        8,
        18,
        "`batch.build-fanout.parallelism` must be a whole number above 0, found `0`",
    );
    has(
        &batch("  build-fanout:\n    parallelism: -3\n"),
        8,
        18,
        "whole number above 0",
    );
    has(
        &batch("  build-fanout:\n    ignore-failure: no\n"),
        7,
        3,
        "missing required key `parallelism`",
    );
}
