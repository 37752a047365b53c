//! One test per provider rule.

use crate::pipeline::tests::{BASE, has, json, lacks, ok};

fn build_config(config: &str) -> String {
    BASE.replace("{ProjectName: app}", config)
}

#[test]
fn unknown_aws_provider_lists_the_supported_ones() {
    has(
        &BASE.replace("provider: CodeBuild", "provider: CodeDeploy"),
        14,
        63,
        "provider `CodeDeploy` at `stages[1].actions[0].actionTypeId.provider` is not supported for owner `AWS`; Gantry supports Source/AWS/Git, Build/AWS/CodeBuild, Test/AWS/CodeBuild, Approval/AWS/Manual, Invoke/AWS/StepFunctions",
    );
    has(
        &BASE.replace("provider: CodeBuild", "provider: codebuild"),
        14,
        63,
        "did you mean `CodeBuild`?",
    );
    has(
        &BASE.replace(
            "owner: AWS, provider: CodeBuild",
            "owner: ThirdParty, provider: CodeBuild",
        ),
        14,
        48,
        "`stages[1].actions[0].actionTypeId.owner: ThirdParty` is not supported",
    );
}

#[test]
fn custom_actions_take_any_configuration() {
    ok(&BASE
        .replace(
            "owner: AWS, provider: CodeBuild",
            "owner: Custom, provider: Anything",
        )
        .replace("{ProjectName: app}", "{Whatever: 1, Else: two}"));
    has(
        &BASE.replace("owner: AWS, provider: CodeBuild", "owner: Custom, provider: Anything").replace("inputArtifacts: [{name: Code}]", "inputArtifacts: [{name: Code}]\n        outputArtifacts: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}, {name: f}]"),
        17,
        34,
        "(Build/Custom/Anything) takes at most 5 `outputArtifacts`, found 6",
    );
}

#[test]
fn provider_version_is_1() {
    has(
        &BASE.replace(
            "provider: CodeBuild, version: 1",
            "provider: CodeBuild, version: 2",
        ),
        14,
        83,
        "`stages[1].actions[0].actionTypeId.version` must be `1` for `AWS/CodeBuild`, found `2`",
    );
}

#[test]
fn configuration_keys_are_checked_per_provider() {
    has(
        &build_config("{ProjectName: app, ProjectNmae: x}"),
        15,
        43,
        "unknown key `ProjectNmae` in `stages[1].actions[0].configuration`; expected one of `ProjectName`, `PrimarySource`, `EnvironmentVariables`, `BatchEnabled`, `CombineArtifacts`; did you mean `ProjectName`? (for `AWS/CodeBuild`)",
    );
    has(
        &build_config("{PrimarySource: Code}"),
        15,
        24,
        "`AWS/CodeBuild` requires `configuration.ProjectName`; missing in action `Compile` (stage `Build`)",
    );
    has(
        &build_config("{ProjectName: \"\"}"),
        15,
        38,
        "`stages[1].actions[0].configuration.ProjectName` must not be empty",
    );
    let long = "x".repeat(1001);
    has(
        &build_config(&format!("{{ProjectName: {long}}}")),
        15,
        38,
        "must be at most 1000 characters, found 1001",
    );
}

#[test]
fn git_source_configuration() {
    has(
        &BASE.replace(
            "{RepositoryUrl: 'https://example.com/a.git'}",
            "{BranchName: main}",
        ),
        9,
        24,
        "`AWS/Git` requires `configuration.RepositoryUrl`",
    );
    has(
        &BASE.replace("'https://example.com/a.git'", "'not a url'"),
        9,
        40,
        "must be a git URL",
    );
    for url in [
        "file:///srv/git/a.git",
        "git@example.com:a/b.git",
        "ssh://git@h:22/a.git",
        "/srv/git/a",
    ] {
        ok(&BASE.replace("'https://example.com/a.git'", &format!("'{url}'")));
    }
    has(
        &BASE.replace(
            "'https://example.com/a.git'}",
            "'https://example.com/a.git', BranchName: 'a..b'}",
        ),
        9,
        81,
        "is not a valid git branch name (it contains `..`)",
    );
    has(
        &BASE.replace(
            "'https://example.com/a.git'}",
            "'https://example.com/a.git', PollForSourceChanges: maybe}",
        ),
        9,
        91,
        "`stages[0].actions[0].configuration.PollForSourceChanges` must be `true` or `false`, found `maybe`",
    );
    has(
        &BASE.replace(
            "outputArtifacts: [{name: Code}]\n  -",
            "outputArtifacts: []\n  -",
        ),
        8,
        64,
        "(Source/AWS/Git) takes exactly 1 `outputArtifacts`, found 0",
    );
}

#[test]
fn codebuild_primary_source() {
    let two = BASE.replace("inputArtifacts: [{name: Code}]", "inputArtifacts: [{name: Code}, {name: Code2}]").replace("outputArtifacts: [{name: Code}]\n  -", "outputArtifacts: [{name: Code}]\n      - name: Two\n        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}\n        configuration: {RepositoryUrl: /srv/b}\n        outputArtifacts: [{name: Code2}]\n  -");
    has(
        &two,
        20,
        47,
        "has 2 input artifacts, so `configuration.PrimarySource` must say which one holds the buildspec",
    );
    ok(&two.replace(
        "{ProjectName: app}",
        "{ProjectName: app, PrimarySource: Code2}",
    ));
    has(
        &two.replace(
            "{ProjectName: app}",
            "{ProjectName: app, PrimarySource: Nope}",
        ),
        19,
        58,
        "must name one of the action's input artifacts (`Code`, `Code2`), found `Nope`",
    );
}

#[test]
fn codebuild_environment_variables_inside_yaml() {
    let env = |value: &str| {
        build_config(&format!(
            "{{ProjectName: app, EnvironmentVariables: '{value}'}}"
        ))
    };
    ok(&env(
        r#"[{"name":"A","value":"1"},{"name":"B","value":"/p","type":"PARAMETER_STORE"}]"#,
    ));
    // Positions inside the single-quoted value: col of `"type"`'s value.
    has(
        &env(r#"[{"name":"A","value":"1","type":"PLAIN"}]"#),
        15,
        98,
        "`stages[1].actions[0].configuration.EnvironmentVariables[0].type` must be one of `PLAINTEXT`, `PARAMETER_STORE` or `SECRETS_MANAGER`, found `PLAIN`",
    );
    has(
        &env(r#"[{"name":"A"}]"#),
        15,
        67,
        "missing required key `value` in `stages[1].actions[0].configuration.EnvironmentVariables[0]`",
    );
    has(
        &env(r#"{"name":"A","value":"1"}"#),
        15,
        66,
        "must be a JSON array of {name, value, type}, found an object",
    );
    has(
        &env(r#"[{"name":"CODEBUILD_X","value":"1"}]"#),
        15,
        75,
        "names starting with `CODEBUILD_` are reserved",
    );
    has(
        &env(r#"[{"name":"A","value":1}]"#),
        15,
        87,
        "`stages[1].actions[0].configuration.EnvironmentVariables[0].value` must be a string, found the number 1",
    );
    has(
        &env(r#"[{"name":"A","valeu":"1"}]"#),
        15,
        79,
        "unknown key `valeu`",
    );
}

#[test]
fn codebuild_environment_variables_inside_json() {
    let source = json("").replace(
        "\"ProjectName\": \"app\"",
        r#""ProjectName": "app", "EnvironmentVariables": "[{\"name\":\"A\",\"value\":\"\u00e9\",\"type\":\"NOPE\"}]""#,
    );
    // Escapes before the problem (`\"`, `\u00e9`) are counted as written.
    has(&source, 13, 113, "found `NOPE`");
    let source = json("").replace(
        "\"ProjectName\": \"app\"",
        r#""ProjectName": "app", "EnvironmentVariables": "[{\"name\":\"A\",}]""#,
    );
    has(&source, 13, 82, "invalid JSON: a trailing comma");
}

#[test]
fn manual_approval() {
    let approval = |config: &str, extra: &str| {
        format!(
            "{BASE}  - name: Approve\n    actions:\n      - name: Ok\n        actionTypeId: {{category: Approval, owner: AWS, provider: Manual, version: 1}}\n        configuration: {config}\n{extra}"
        )
    };
    ok(&approval(
        "{CustomData: hi, ExternalEntityLink: 'https://x', NotificationArn: 'arn:aws:sns:us-east-1:123456789012:topic'}",
        "        timeoutInMinutes: 60\n",
    ));
    ok(&approval(
        "{NotificationArn: 'https://hooks.slack.com/services/T0/B0/x'}",
        "",
    ));
    has(
        &approval("{NotificationArn: x}", ""),
        21,
        42,
        "must be an SNS topic ARN",
    );
    has(
        &approval("{ExternalEntityLink: x}", ""),
        21,
        45,
        "must be an http(s) URL",
    );
    has(
        &approval("{}", "        timeoutInMinutes: 4\n"),
        22,
        27,
        "`stages[2].actions[0].timeoutInMinutes` must be a whole number from 5 to 86400",
    );
    has(&approval("{Custom: x}", ""), 21, 25, "unknown key `Custom`");
}

#[test]
fn step_functions() {
    let invoke = |config: &str, extra: &str| {
        format!(
            "{BASE}  - name: Run\n    actions:\n      - name: Sfn\n        actionTypeId: {{category: Invoke, owner: AWS, provider: StepFunctions, version: 1}}\n        configuration: {config}\n{extra}"
        )
    };
    let arn = "StateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:m'";
    ok(&invoke(
        &format!("{{{arn}, Input: '{{\"a\": 1}}', ExecutionNamePrefix: run}}"),
        "",
    ));
    has(
        &invoke("{StateMachineArn: m}", ""),
        21,
        42,
        "must be a state machine ARN",
    );
    has(
        &invoke(&format!("{{{arn}, Input: '{{\"a\": }}'}}"), ""),
        21,
        112,
        "with `InputType: Literal` must be JSON",
    );
    has(
        &invoke(&format!("{{{arn}, InputType: FilePath}}"), ""),
        21,
        109,
        "has `InputType: FilePath`, so `configuration.Input` must name a file",
    );
    has(
        &invoke(
            &format!("{{{arn}, InputType: FilePath, Input: in.json}}"),
            "",
        ),
        21,
        109,
        "needs an input artifact",
    );
    ok(&invoke(
        &format!("{{{arn}, InputType: FilePath, Input: in.json}}"),
        "        inputArtifacts: [{name: Code}]\n",
    ));
    has(
        &invoke(&format!("{{{arn}, InputType: File}}"), ""),
        21,
        109,
        "must be `Literal` or `FilePath`",
    );
    has(
        &invoke(&format!("{{{arn}, ExecutionNamePrefix: 'a b'}}"), ""),
        21,
        119,
        "may not contain spaces",
    );
    lacks(&invoke(&format!("{{{arn}}}"), ""), "Input");
}
