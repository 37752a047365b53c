//! One test per cross-member rule, each checking where it is reported.

use crate::pipeline::tests::{BASE, has, lacks, ok, with};

/// An extra Build-stage action (starting on line 17) with `body` lines.
fn action(name: &str, body: &str) -> String {
    with(&format!("      - name: {name}\n{body}"))
}

const TEST: &str = "        actionTypeId: {category: Test, owner: AWS, provider: CodeBuild, version: 1}\n        configuration: {ProjectName: t}\n";

#[test]
fn at_least_two_stages() {
    let one = BASE.split("  - name: Build").next().unwrap();
    has(
        one,
        4,
        3,
        "a pipeline needs at least 2 stages (a source stage and one more), found 1 in `stages`",
    );
    has(
        "name: a\nroleArn: arn:aws:iam::123456789012:role/r\nstages: []\n",
        3,
        9,
        "found 0",
    );
}

#[test]
fn first_stage_holds_only_source_actions() {
    let source = BASE.replace(
        "        outputArtifacts: [{name: Code}]\n  - name: Build",
        "        outputArtifacts: [{name: Code}]\n      - name: Early\n        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}\n        configuration: {ProjectName: x}\n        inputArtifacts: [{name: Code}]\n  - name: Build",
    );
    has(
        &source,
        12,
        34,
        "the first stage may hold only Source actions; action `Early` (stage `Source`) at `stages[0].actions[1]` is a Build action",
    );
}

#[test]
fn source_actions_only_in_the_first_stage() {
    has(
        &action(
            "Other",
            "        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}\n        configuration: {RepositoryUrl: /srv/git/b.git}\n        outputArtifacts: [{name: B}]\n",
        ),
        18,
        34,
        "Source actions are allowed only in the first stage; action `Other` (stage `Build`) at `stages[1].actions[1]` is one",
    );
}

#[test]
fn stage_names_are_unique() {
    has(
        &BASE.replace("  - name: Build", "  - name: Source"),
        11,
        11,
        "duplicate stage name `Source` at `stages[1].name`; stage names must be unique (first used on line 4)",
    );
}

#[test]
fn action_names_are_unique_within_a_stage() {
    has(
        &action("Compile", TEST),
        17,
        15,
        "duplicate action name `Compile` in stage `Build`",
    );
    // The same name in another stage is fine.
    ok(&BASE.replace("- name: Compile", "- name: Checkout"));
}

#[test]
fn output_artifact_names_are_unique() {
    has(
        &action(
            "Again",
            &format!(
                "{TEST}        inputArtifacts: [{{name: Code}}]\n        outputArtifacts: [{{name: Code}}]\n"
            ),
        ),
        21,
        34,
        "output artifact `Code` of action `Again` (stage `Build`) is already produced by action `Checkout` (stage `Source`) (line 10)",
    );
}

#[test]
fn inputs_come_from_earlier_actions() {
    has(
        &BASE.replace(
            "inputArtifacts: [{name: Code}]",
            "inputArtifacts: [{name: Cod}]",
        ),
        16,
        33,
        "input artifact `Cod` of action `Compile` (stage `Build`) is not produced by an earlier action; earlier outputs: `Code`",
    );
}

#[test]
fn inputs_from_the_same_run_order_do_not_count() {
    let base = BASE.replace(
        "inputArtifacts: [{name: Code}]",
        "inputArtifacts: [{name: Code}]\n        outputArtifacts: [{name: Bin}]",
    );
    let later = |run_order: &str| {
        format!(
            "{base}      - name: Pack\n{run_order}{TEST}        inputArtifacts: [{{name: Bin}}]\n"
        )
    };
    has(
        &later(""),
        21,
        33,
        "is produced by action `Compile` (stage `Build`), which does not run before it",
    );
    ok(&later("        runOrder: 2\n"));
}

#[test]
fn an_input_is_listed_once() {
    has(
        &BASE.replace(
            "inputArtifacts: [{name: Code}]",
            "inputArtifacts: [{name: Code}, {name: Code}]",
        ),
        16,
        47,
        "input artifact `Code` is listed twice",
    );
}

#[test]
fn namespaces_are_unique_and_not_reserved() {
    has(
        &action(
            "Pack",
            &format!("        namespace: Src\n{TEST}        inputArtifacts: [{{name: Code}}]\n"),
        ),
        18,
        20,
        "namespace `Src` at `stages[1].actions[1].namespace` is already used by action `Checkout`",
    );
    has(
        &BASE.replace("namespace: Src", "namespace: codepipeline"),
        7,
        20,
        "is reserved for CodePipeline's own variables",
    );
    has(
        &BASE.replace("namespace: Src", "namespace: Code"),
        7,
        20,
        "is also the name of an output artifact",
    );
    has(
        &BASE.replace("namespace: Src", "namespace: \"my ns\""),
        7,
        20,
        "may only contain letters, digits, `@`, `-` and `_`, found a space",
    );
}

#[test]
fn references_name_earlier_namespaces() {
    ok(&BASE.replace(
        "{ProjectName: app}",
        "{ProjectName: \"app-#{Src.CommitId}-#{codepipeline.PipelineExecutionId}\"}",
    ));
    // Column of the reference itself, inside the quoted value.
    has(
        &BASE.replace(
            "{ProjectName: app}",
            "{ProjectName: \"app-#{Nope.CommitId}\"}",
        ),
        15,
        43,
        "`#{Nope.CommitId}` names namespace `Nope`, which no action declares; namespaces of earlier actions: `Src`",
    );
    has(
        &BASE.replace("{ProjectName: app}", "{ProjectName: \"#{Src}\"}"),
        15,
        39,
        "variable reference `#{Src}` must be `#{Namespace.Variable}`",
    );
    has(
        &BASE.replace(
            "{ProjectName: app}",
            "{ProjectName: \"#{codepipeline.Nope}\"}",
        ),
        15,
        39,
        "the `codepipeline` namespace provides only `PipelineExecutionId`",
    );
}

#[test]
fn references_to_later_or_same_actions_are_errors() {
    let source = BASE.replace("{ProjectName: app}", "{ProjectName: \"#{Pk.X}\"}")
        + "      - name: Pack\n        namespace: Pk\n        runOrder: 1\n"
        + TEST
        + "        inputArtifacts: [{name: Code}]\n";
    has(
        &source,
        15,
        39,
        "refers to namespace `Pk` of action `Pack` (stage `Build`), which does not run before action `Compile`",
    );
}

#[test]
fn git_source_variables_are_known() {
    has(
        &BASE.replace("{ProjectName: app}", "{ProjectName: \"#{Src.Sha}\"}"),
        15,
        39,
        "produces only `CommitId`, `BranchName`, `AuthorDate`, `CommitMessage`",
    );
}

#[test]
fn pipeline_variables_must_be_declared() {
    let uses = BASE.replace("{ProjectName: app}", "{ProjectName: \"#{variables.Env}\"}");
    has(
        &uses,
        15,
        39,
        "`#{variables.Env}` names pipeline variable `Env`, which is not declared",
    );
    ok(&format!(
        "{uses}variables:\n  - name: Env\n    defaultValue: dev\n"
    ));
    has(
        &format!("{uses}variables:\n  - name: Env\n  - name: Env\n"),
        19,
        11,
        "duplicate pipeline variable `Env` at `variables[1].name`; first declared on line 18",
    );
}

#[test]
fn v2_members_need_v2() {
    has(
        &with("pipelineType: V1\nexecutionMode: QUEUED\n"),
        18,
        16,
        "`executionMode: QUEUED` requires `pipelineType: V2`",
    );
    // Without pipelineType, V2 members make the pipeline V2 (as in AWS).
    ok(&with("executionMode: QUEUED\nvariables:\n  - name: X\n"));
}

#[test]
fn parallel_mode_forbids_rollback() {
    let source = BASE.replace(
        "  - name: Build\n",
        "  - name: Build\n    onFailure: {result: ROLLBACK}\n",
    ) + "executionMode: PARALLEL\n";
    has(
        &source,
        12,
        25,
        "`stages[1].onFailure.result: ROLLBACK` is not available with `executionMode: PARALLEL`",
    );
    lacks(&source.replace("PARALLEL", "QUEUED"), "ROLLBACK");
}

#[test]
fn artifact_stores() {
    has(
        &with(
            "artifactStore: {type: S3, location: bucket}\nartifactStores:\n  eu-west-1: {type: S3, location: bucket}\n",
        ),
        19,
        3,
        "`artifactStore` and `artifactStores` cannot both be given",
    );
    has(
        &(BASE.replace(
            "{ProjectName: app}",
            "{ProjectName: app}\n        region: us-east-1",
        ) + "artifactStores:\n  eu-west-1: {type: S3, location: bucket}\n"),
        16,
        17,
        "`stages[1].actions[0].region` is `us-east-1`, which has no entry in `artifactStores` (has `eu-west-1`)",
    );
    has(
        &with("artifactStore: {type: S4, location: b}\n"),
        17,
        23,
        "`artifactStore.type` must be one of `S3`, found `S4`",
    );
    has(
        &with("artifactStore: {type: S3, location: b}\n"),
        17,
        37,
        "`artifactStore.location` must be at least 3 characters, found 1",
    );
}

#[test]
fn run_order_range() {
    for bad in ["0", "1000", "-1", "1.5", "x"] {
        has(
            &BASE.replace(
                "{ProjectName: app}",
                &format!("{{ProjectName: app}}\n        runOrder: {bad}"),
            ),
            16,
            19,
            "`stages[1].actions[0].runOrder` must be a whole number from 1 to 999",
        );
    }
    ok(&BASE.replace(
        "{ProjectName: app}",
        "{ProjectName: app}\n        runOrder: 999",
    ));
}

#[test]
fn names_follow_the_api_patterns() {
    has(
        &BASE.replace("name: app", "name: my/app"),
        1,
        7,
        "`name` may only contain letters, digits, `.`, `@`, `-` and `_`, found `/`",
    );
    let long = "a".repeat(101);
    has(
        &BASE.replace("name: Compile", &format!("name: {long}")),
        13,
        15,
        "must be at most 100 characters, found 101",
    );
    has(
        &BASE.replace("{name: Code}]\n  -", "{name: Co.de}]\n  -"),
        10,
        34,
        "may only contain letters, digits, `-` and `_`, found `.`",
    );
    has(
        &BASE.replace("role/gantry", "user/gantry"),
        2,
        10,
        "`roleArn` must be an IAM role ARN",
    );
}
