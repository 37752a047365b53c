//! Trigger rules: source action, one trigger per source, filters, globs, limits.

use crate::pipeline::tests::{BASE, has, ok};

fn trigger(git: &str) -> String {
    format!(
        "{BASE}triggers:\n  - providerType: CodeStarSourceConnection\n    gitConfiguration:\n      sourceActionName: Checkout\n{git}"
    )
}

#[test]
fn a_realistic_trigger_is_valid() {
    let p = ok(&trigger(
        "      push:\n        - branches: {includes: [main, 'release/**'], excludes: ['release/old-*']}\n          filePaths: {includes: ['src/**/*.rs', '{a,b}/**']}\n        - tags: {includes: ['v[0-9]*']}\n      pullRequest:\n        - events: [OPEN, UPDATED]\n          branches: {includes: [main]}\n",
    ));
    let t = &p.triggers.expect("triggers")[0];
    let push = t.git_configuration.push.as_ref().expect("push");
    assert_eq!(push.len(), 2);
    assert_eq!(
        push[0]
            .branches
            .as_ref()
            .unwrap()
            .includes
            .as_ref()
            .unwrap()[1]
            .value,
        "release/**"
    );
}

#[test]
fn source_action_must_exist_and_be_a_source() {
    let source = trigger("      push: [{branches: {includes: [main]}}]\n")
        .replace("sourceActionName: Checkout", "sourceActionName: Compile");
    has(
        &source,
        20,
        25,
        "`triggers[0].gitConfiguration.sourceActionName` is `Compile`, which is not a source action of this pipeline; source actions: `Checkout`",
    );
}

#[test]
fn one_trigger_per_source_action() {
    let one = "  - providerType: CodeStarSourceConnection\n    gitConfiguration:\n      sourceActionName: Checkout\n      push: [{branches: {includes: [main]}}]\n";
    has(
        &format!("{BASE}triggers:\n{one}{one}"),
        24,
        25,
        "a second trigger for source action `Checkout`",
    );
}

#[test]
fn filters_and_criteria_are_not_empty() {
    has(
        &trigger("      push: [{}]\n"),
        21,
        14,
        "`triggers[0].gitConfiguration.push[0]` must give `tags`, `branches` or `filePaths`",
    );
    has(
        &trigger("      push: [{branches: {}}]\n"),
        21,
        25,
        "`triggers[0].gitConfiguration.push[0].branches` must give `includes`, `excludes` or both",
    );
    has(
        &trigger("      push: []\n"),
        21,
        13,
        "`triggers[0].gitConfiguration.push` must have at least 1 item, found 0",
    );
}

#[test]
fn limits_from_the_api_model() {
    let four = "[{tags: {includes: [a]}}, {tags: {includes: [b]}}, {tags: {includes: [c]}}, {tags: {includes: [d]}}]";
    has(
        &trigger(&format!("      push: {four}\n")),
        21,
        13,
        "must have at most 3 items, found 4",
    );
    let long = "a".repeat(256);
    has(
        &trigger(&format!(
            "      push: [{{branches: {{includes: [{long}]}}}}]\n"
        )),
        21,
        37,
        "must be at most 255 characters, found 256",
    );
    has(
        &trigger("      pullRequest: [{events: [OPEN, MERGED]}]\n"),
        21,
        37,
        "must be one of `OPEN`, `UPDATED` or `CLOSED`, found `MERGED`",
    );
    has(
        &trigger("      pullRequest: [{events: [OPEN, OPEN]}]\n"),
        21,
        37,
        "lists an event twice",
    );
}

#[test]
fn globs_must_compile() {
    has(
        &trigger("      push: [{filePaths: {excludes: ['src/{a,b']}}]\n"),
        21,
        38,
        "`triggers[0].gitConfiguration.push[0].filePaths.excludes[0]` is not a valid glob: unclosed alternate group",
    );
}

#[test]
fn trigger_shape() {
    has(
        &trigger("      push: [{branches: {includes: [main]}}]\n")
            .replace("CodeStarSourceConnection", "GitHub"),
        18,
        19,
        "`triggers[0].providerType` must be one of `CodeStarSourceConnection`, found `GitHub`",
    );
    has(
        &format!("{BASE}triggers:\n  - providerType: CodeStarSourceConnection\n"),
        18,
        5,
        "missing required key `gitConfiguration` in `triggers[0]`",
    );
}
