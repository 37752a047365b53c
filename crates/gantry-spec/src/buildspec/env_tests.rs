use super::*;
use crate::buildspec::model::{SecretRef, Shell};
use crate::buildspec::tests::{errs, has, ok, with};

fn env(block: &str) -> String {
    with(&format!("env:\n{block}"))
}

#[test]
fn shells() {
    for (text, shell) in [
        ("bash", Shell::Bash),
        ("/bin/sh", Shell::Sh),
        ("sh", Shell::Sh),
    ] {
        let spec = ok(&env(&format!("  shell: {text}\n")));
        assert_eq!(spec.env.shell.unwrap().value, shell, "{text}");
    }
}

#[test]
fn windows_shells_are_rejected() {
    for text in ["powershell.exe", "cmd.exe"] {
        has(
            &env(&format!("  shell: {text}\n")),
            7,
            10,
            "Windows shells are not supported on Linux executors",
        );
    }
    has(
        &env("  shell: zsh\n"),
        7,
        10,
        "`env.shell` must be bash or /bin/sh, found `zsh`",
    );
}

#[test]
fn variables_keep_text_as_written() {
    let spec = ok(&env(
        "  variables:\n    PATH: \"$PATH:/x\"\n    N: 1.10\n    B: yes\n    E:\n",
    ));
    let values: Vec<(&str, &str)> = spec
        .env
        .variables
        .iter()
        .map(|v| (v.name.value.as_str(), v.value.value.as_str()))
        .collect();
    assert_eq!(
        values,
        [("PATH", "$PATH:/x"), ("N", "1.10"), ("B", "yes"), ("E", "")]
    );
}

#[test]
fn codebuild_names_are_reserved() {
    has(
        &env("  variables:\n    CODEBUILD_FOO: x\n"),
        8,
        5,
        "`env.variables.CODEBUILD_FOO`: names starting with CODEBUILD_ are reserved",
    );
    has(
        &env("  parameter-store:\n    CODEBUILD_P: /p\n"),
        8,
        5,
        "`env.parameter-store.CODEBUILD_P`: names starting with CODEBUILD_ are reserved",
    );
}

#[test]
fn variable_values_must_be_scalars() {
    has(
        &env("  variables:\n    A: [1, 2]\n"),
        8,
        8,
        "`env.variables.A` must be a value, found a list",
    );
    has(
        &env("  variables:\n    'A B': x\n"),
        8,
        5,
        "not a valid environment variable name",
    );
}

#[test]
fn duplicate_variable_is_an_error() {
    has(
        &env("  variables:\n    A: 1\n    A: 2\n"),
        9,
        5,
        "duplicate key `A` in `env.variables`",
    );
}

#[test]
fn parameter_store() {
    let spec = ok(&env("  parameter-store:\n    TOKEN: /ci/token\n"));
    assert_eq!(spec.env.parameter_store[0].value.value, "/ci/token");
    has(
        &env("  parameter-store:\n    TOKEN:\n"),
        8,
        10,
        "must be a parameter name",
    );
}

fn secret(text: &str) -> SecretRef {
    parse_secret_ref(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

#[test]
fn secret_references_all_segments() {
    assert_eq!(
        secret("prod/db"),
        SecretRef {
            secret_id: "prod/db".into(),
            json_key: None,
            version_stage: None,
            version_id: None
        }
    );
    assert_eq!(secret("prod/db:password").json_key, s("password"));
    let r = secret("prod/db:password:AWSPREVIOUS");
    assert_eq!(
        (r.json_key, r.version_stage, r.version_id),
        (s("password"), s("AWSPREVIOUS"), None)
    );
    let r = secret("prod/db:password::1234-abcd");
    assert_eq!((r.version_stage, r.version_id), (None, s("1234-abcd")));
    let r = secret("prod/db:::1234");
    assert_eq!(
        (r.json_key, r.version_stage, r.version_id),
        (None, None, s("1234"))
    );
}

#[test]
fn secret_references_with_arns() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf";
    assert_eq!(secret(arn).secret_id, arn);
    let r = secret(&format!("{arn}:password:AWSCURRENT"));
    assert_eq!(r.secret_id, arn);
    assert_eq!(
        (r.json_key, r.version_stage),
        (s("password"), s("AWSCURRENT"))
    );
    assert!(parse_secret_ref("arn:aws:secretsmanager:eu-west-1").is_err());
}

#[test]
fn secret_reference_errors() {
    assert!(
        parse_secret_ref("db:key:STAGE:id")
            .unwrap_err()
            .contains("mutually exclusive")
    );
    assert!(
        parse_secret_ref("db:a:b:c:d")
            .unwrap_err()
            .contains("too many")
    );
    assert!(parse_secret_ref(":key").unwrap_err().contains("empty"));
    has(
        &env("  secrets-manager:\n    PW: db:key:STAGE:id\n"),
        8,
        9,
        "`env.secrets-manager.PW`: version-stage and version-id are mutually exclusive",
    );
    let spec = ok(&env("  secrets-manager:\n    PW: db:key\n"));
    assert_eq!(
        spec.env.secrets_manager[0].reference.value.json_key,
        s("key")
    );
    assert_eq!(spec.env.secrets_manager[0].reference.span.col, 9);
}

#[test]
fn exported_variables() {
    let spec = ok(&env(
        "  exported-variables:\n    - IMAGE_TAG\n    - CODEBUILD_BUILD_ID\n",
    ));
    assert_eq!(spec.env.exported_variables.len(), 2);
    has(
        &env("  exported-variables:\n    - AWS_REGION\n"),
        8,
        7,
        "`env.exported-variables`: `AWS_REGION` cannot be exported (names starting with AWS_ are reserved)",
    );
    has(
        &env("  exported-variables:\n    - A\n    - A\n"),
        9,
        7,
        "listed twice",
    );
    has(
        &env("  exported-variables: A\n"),
        7,
        23,
        "must be a list of variable names",
    );
}

#[test]
fn git_credential_helper() {
    let spec = ok(&env("  git-credential-helper: yes\n"));
    assert!(spec.env.git_credential_helper.unwrap().value);
    has(&env("  git-credential-helper: sure\n"), 7, 26, "yes or no");
}

#[test]
fn unknown_env_key() {
    has(
        &env("  variable:\n    A: b\n"),
        7,
        3,
        "unknown key `variable` in `env`; expected one of `shell`, `variables`",
    );
    has(
        &env("  variable:\n    A: b\n"),
        7,
        3,
        "did you mean `variables`?",
    );
}

#[test]
fn all_env_errors_are_reported_together() {
    let diags = errs(&env(
        "  shell: cmd.exe\n  variables:\n    CODEBUILD_A: 1\n  exported-variables: [AWS_X]\n",
    ));
    assert_eq!(diags.len(), 3, "{diags:#?}");
}
