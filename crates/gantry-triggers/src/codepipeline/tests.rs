use serde_json::json;

use super::*;
use crate::signature::sign_sha256;

const SECRET: &str = "a-unique-secret-per-webhook";

fn webhook(value: Value) -> WebhookDefinition {
    serde_json::from_value(value).unwrap()
}

fn github_webhook() -> WebhookDefinition {
    webhook(json!({
        "name": "shop-Source-webhook",
        "targetPipeline": "shop",
        "targetAction": "Source",
        "filters": [
            {"jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}"},
            {"jsonPath": "$.repository.full_name", "matchEquals": "acme/shop"}
        ],
        "authentication": "GITHUB_HMAC",
        "authenticationConfiguration": {"SecretToken": SECRET}
    }))
}

fn pipeline(branch: &str) -> PipelineDeclaration {
    let yaml = format!(
        "name: shop
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Source
        actionTypeId: {{category: Source, owner: AWS, provider: Git, version: 1}}
        configuration: {{RepositoryUrl: 'https://github.com/acme/shop.git', BranchName: {branch}}}
        outputArtifacts: [{{name: Src}}]
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {{category: Build, owner: AWS, provider: CodeBuild, version: 1}}
        configuration: {{ProjectName: shop}}
        inputArtifacts: [{{name: Src}}]
"
    );
    gantry_spec::pipeline::parse_yaml(&yaml).unwrap()
}

fn source_action(branch: &str) -> ActionDeclaration {
    pipeline(branch).stages.remove(0).actions.remove(0)
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[test]
fn the_wire_shape_is_the_api_models() {
    let w = github_webhook();
    assert_eq!(w.authentication, WebhookAuthenticationType::GithubHmac);
    assert_eq!(
        w.filters[0].match_equals.as_deref(),
        Some("refs/heads/{BranchName}")
    );
    let back = serde_json::to_value(&w).unwrap();
    assert_eq!(
        back,
        json!({
            "name": "shop-Source-webhook",
            "targetPipeline": "shop",
            "targetAction": "Source",
            "filters": [
                {"jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}"},
                {"jsonPath": "$.repository.full_name", "matchEquals": "acme/shop"}
            ],
            "authentication": "GITHUB_HMAC",
            "authenticationConfiguration": {"SecretToken": SECRET}
        })
    );
    let ip = webhook(json!({
        "name": "w", "targetPipeline": "p", "targetAction": "a",
        "filters": [{"jsonPath": "$.ref"}],
        "authentication": "IP",
        "authenticationConfiguration": {"AllowedIPRange": "10.0.0.0/8"}
    }));
    assert_eq!(
        ip.authentication_configuration.allowed_ip_range.as_deref(),
        Some("10.0.0.0/8")
    );
    assert_eq!(
        serde_json::to_value(&ip).unwrap()["filters"],
        json!([{"jsonPath": "$.ref"}]),
        "an absent matchEquals stays absent"
    );
}

#[test]
fn unknown_members_and_enum_values_are_refused() {
    let base = json!({
        "name": "w", "targetPipeline": "p", "targetAction": "a", "filters": [],
        "authentication": "UNAUTHENTICATED", "authenticationConfiguration": {}
    });
    let mut v = base.clone();
    v["authenticationConfiguration"] = json!({"secretToken": "x"});
    let err = serde_json::from_value::<WebhookDefinition>(v).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `secretToken`"),
        "{err}"
    );
    let mut v = base.clone();
    v["authentication"] = json!("BASIC");
    let err = serde_json::from_value::<WebhookDefinition>(v).unwrap_err();
    assert!(err.to_string().contains("unknown variant `BASIC`"), "{err}");
    let mut v = base;
    v.as_object_mut().unwrap().remove("filters");
    let err = serde_json::from_value::<WebhookDefinition>(v).unwrap_err();
    assert!(err.to_string().contains("missing field `filters`"), "{err}");
}

#[test]
fn debug_and_redacted_never_show_the_secret() {
    let w = github_webhook();
    assert!(!format!("{w:?}").contains(SECRET));
    assert!(format!("{w:?}").contains("****"));
    let shown = w.redacted();
    assert_eq!(
        shown.authentication_configuration.secret_token.as_deref(),
        Some(REDACTED)
    );
    assert_eq!(shown.filters, w.filters);
}

#[test]
fn a_valid_definition_validates() {
    assert_eq!(github_webhook().validate(), Ok(()));
}

#[test]
fn constraint_violations_are_listed_the_aws_way() {
    let mut w = github_webhook();
    w.name = "shop webhook".into();
    let err = w.validate().unwrap_err();
    assert_eq!(err.code(), "ValidationException");
    assert_eq!(
        err.to_string(),
        "1 validation error detected: Value 'shop webhook' at 'webhook.name' failed to satisfy \
         constraint: Member must satisfy regular expression pattern: [A-Za-z0-9.@\\-_]+"
    );

    let mut w = github_webhook();
    w.target_pipeline = "p".repeat(101);
    w.target_action = String::new();
    w.filters[1].match_equals = Some("x".repeat(151));
    let err = w.validate().unwrap_err().to_string();
    assert!(err.starts_with("3 validation errors detected: "), "{err}");
    assert!(err.contains("at 'webhook.targetPipeline' failed to satisfy constraint: Member must have length less than or equal to 100"));
    assert!(err.contains("Value '' at 'webhook.targetAction' failed to satisfy constraint: Member must have length greater than or equal to 1"));
    assert!(err.contains("at 'webhook.filters.2.member.matchEquals' failed to satisfy constraint: Member must have length less than or equal to 150"));
}

#[test]
fn at_most_five_filters() {
    let mut w = github_webhook();
    w.filters = vec![
        WebhookFilterRule {
            json_path: "$.ref".into(),
            match_equals: None
        };
        6
    ];
    assert_eq!(
        w.validate().unwrap_err().to_string(),
        "1 validation error detected: Value at 'webhook.filters' failed to satisfy constraint: \
         Member must have length less than or equal to 5"
    );
    w.filters.pop();
    assert_eq!(w.validate(), Ok(()));
}

#[test]
fn secret_token_length_errors_do_not_echo_it() {
    let mut w = github_webhook();
    let long = "s".repeat(101);
    w.authentication_configuration.secret_token = Some(long.clone());
    let err = w.validate().unwrap_err().to_string();
    assert!(!err.contains(&long));
    assert!(err.contains("'webhook.authenticationConfiguration.SecretToken' failed to satisfy constraint: Member must have length less than or equal to 100"));
}

#[test]
fn json_paths_must_parse() {
    let mut w = github_webhook();
    w.filters[1].json_path = "$.repository[".into();
    let err = w.validate().unwrap_err();
    assert_eq!(err.code(), "InvalidWebhookFilterPatternException");
    assert!(
        err.to_string()
            .starts_with("The JsonPath '$.repository[' of filter 2 is not valid: "),
        "{err}"
    );
    // Jayway's relative spelling is accepted: `ref` means `$.ref`.
    w.filters[1].json_path = "repository.full_name".into();
    assert_eq!(w.validate(), Ok(()));
}

#[test]
fn authentication_parameters_must_fit_the_type() {
    let cases = [
        (
            "GITHUB_HMAC",
            json!({}),
            "GITHUB_HMAC authentication requires SecretToken in authenticationConfiguration",
        ),
        (
            "IP",
            json!({"SecretToken": "x"}),
            "IP authentication requires AllowedIPRange in authenticationConfiguration",
        ),
        (
            "IP",
            json!({"AllowedIPRange": "10.0.0.0/40"}),
            "AllowedIPRange must be a valid CIDR range: `10.0.0.0/40` is not a CIDR range: an IPv4 prefix length is at most 32",
        ),
        (
            "UNAUTHENTICATED",
            json!({"AllowedIPRange": "10.0.0.0/8"}),
            "UNAUTHENTICATED authentication takes no authenticationConfiguration properties",
        ),
    ];
    for (auth, config, message) in cases {
        let w = webhook(json!({
            "name": "w", "targetPipeline": "p", "targetAction": "a", "filters": [],
            "authentication": auth, "authenticationConfiguration": config
        }));
        let err = w.validate().unwrap_err();
        assert_eq!(
            err.code(),
            "InvalidWebhookAuthenticationParametersException",
            "{auth}"
        );
        assert_eq!(err.to_string(), message);
    }
    let ipv6 = webhook(json!({
        "name": "w", "targetPipeline": "p", "targetAction": "a", "filters": [],
        "authentication": "IP", "authenticationConfiguration": {"AllowedIPRange": "2001:db8::/32"}
    }));
    assert_eq!(ipv6.validate(), Ok(()));
}

#[test]
fn github_hmac_checks_the_signature_with_the_secret_token() {
    let w = github_webhook();
    let body = br#"{"ref": "refs/heads/main"}"#;
    let good = Headers::new([("X-Hub-Signature-256", sign_sha256(SECRET, body))]);
    assert_eq!(w.authenticate(&good, body, localhost()), Ok(()));
    let bad = Headers::new([("X-Hub-Signature-256", sign_sha256("guess", body))]);
    assert_eq!(
        w.authenticate(&bad, body, localhost()),
        Err(WebhookError::Signature(SignatureError::Mismatch {
            header: "X-Hub-Signature-256"
        }))
    );
    assert!(matches!(
        w.authenticate(&Headers::default(), body, localhost()),
        Err(WebhookError::Signature(SignatureError::Missing { .. }))
    ));
}

#[test]
fn ip_authentication_checks_the_callers_address() {
    let w = webhook(json!({
        "name": "w", "targetPipeline": "p", "targetAction": "Source", "filters": [],
        "authentication": "IP", "authenticationConfiguration": {"AllowedIPRange": "192.30.252.0/22"}
    }));
    let h = Headers::default();
    assert_eq!(
        w.authenticate(&h, b"{}", "192.30.253.7".parse().unwrap()),
        Ok(())
    );
    assert_eq!(
        w.authenticate(&h, b"{}", "::ffff:192.30.255.255".parse().unwrap()),
        Ok(())
    );
    let err = w
        .authenticate(&h, b"{}", "192.30.248.1".parse().unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "webhook authentication failed: 192.30.248.1 is not in the allowed IP range 192.30.252.0/22"
    );
}

#[test]
fn unauthenticated_accepts_anyone() {
    let w = webhook(json!({
        "name": "w", "targetPipeline": "p", "targetAction": "a", "filters": [],
        "authentication": "UNAUTHENTICATED", "authenticationConfiguration": {}
    }));
    assert_eq!(
        w.authenticate(&Headers::default(), b"", "203.0.113.1".parse().unwrap()),
        Ok(())
    );
}

fn config(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |key| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn placeholders_take_the_target_actions_configuration() {
    let w = github_webhook();
    let payload = json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}});
    let (start, reason) = w.filters_match(&payload, config(&[("BranchName", "main")]));
    assert!(start);
    assert_eq!(
        reason,
        "every filter holds: `$.ref` is `refs/heads/main`; `$.repository.full_name` is `acme/shop`"
    );
    let (start, reason) = w.filters_match(&payload, config(&[("BranchName", "release")]));
    assert!(!start);
    assert_eq!(
        reason,
        "filter 1 does not hold: `$.ref` is `\"refs/heads/main\"`; expected `refs/heads/release`"
    );
}

#[test]
fn an_unknown_placeholder_never_matches() {
    let w = github_webhook();
    // Even a payload that spells the placeholder literally.
    let payload =
        json!({"ref": "refs/heads/{BranchName}", "repository": {"full_name": "acme/shop"}});
    let (start, reason) = w.filters_match(&payload, config(&[("Branch", "main")]));
    assert!(!start);
    assert_eq!(
        reason,
        "filter 1 does not hold: `{BranchName}` in matchEquals is not a configuration key of the target action"
    );
}

#[test]
fn braces_that_are_no_placeholder_are_literal() {
    let c = config(&[("A", "1")]);
    assert_eq!(expand("x{A}y{A}", &c), Ok("x1y1".into()));
    assert_eq!(expand("{}", &c), Ok("{}".into()));
    assert_eq!(expand("{A", &c), Ok("{A".into()));
    assert_eq!(expand("{{A}", &c), Ok("{1".into()));
    assert_eq!(expand("a}b", &c), Ok("a}b".into()));
    assert_eq!(expand("{B}", &c), Err("B".into()));
    assert_eq!(expand("", &c), Ok(String::new()));
}

#[test]
fn without_match_equals_the_path_must_select_something() {
    let w = webhook(json!({
        "name": "w", "targetPipeline": "p", "targetAction": "a",
        "filters": [{"jsonPath": "$.pull_request.merged_at"}],
        "authentication": "UNAUTHENTICATED", "authenticationConfiguration": {}
    }));
    let none = |_: &str| None;
    assert!(
        w.filters_match(&json!({"pull_request": {"merged_at": "2024-01-01"}}), none)
            .0
    );
    let (start, reason) = w.filters_match(&json!({"pull_request": {}}), none);
    assert!(!start);
    assert_eq!(
        reason,
        "filter 1 does not hold: `$.pull_request.merged_at` selects nothing"
    );
}

#[test]
fn numbers_booleans_and_several_selected_values() {
    let rule = |path: &str, equals: &str| {
        webhook(json!({
            "name": "w", "targetPipeline": "p", "targetAction": "a",
            "filters": [{"jsonPath": path, "matchEquals": equals}],
            "authentication": "UNAUTHENTICATED", "authenticationConfiguration": {}
        }))
    };
    let none = |_: &str| None;
    let payload = json!({
        "number": 42, "merged": true, "deleted": null,
        "commits": [{"id": "a"}, {"id": "b"}], "repository": {"name": "shop"}
    });
    assert!(rule("$.number", "42").filters_match(&payload, none).0);
    assert!(rule("$.merged", "true").filters_match(&payload, none).0);
    assert!(!rule("$.deleted", "null").filters_match(&payload, none).0);
    assert!(!rule("$.repository", "shop").filters_match(&payload, none).0);
    // Any selected value may match.
    assert!(rule("$.commits[*].id", "b").filters_match(&payload, none).0);
    assert!(!rule("$.commits[*].id", "c").filters_match(&payload, none).0);
    // Jayway's relative spelling.
    assert!(
        rule("repository.name", "shop")
            .filters_match(&payload, none)
            .0
    );
}

#[test]
fn no_filters_always_match() {
    let w = webhook(json!({
        "name": "w", "targetPipeline": "p", "targetAction": "a", "filters": [],
        "authentication": "UNAUTHENTICATED", "authenticationConfiguration": {}
    }));
    assert_eq!(
        w.filters_match(&json!({}), |_: &str| None),
        (true, "the webhook has no filters".to_string())
    );
}

#[test]
fn evaluate_runs_authentication_payload_and_filters_in_order() {
    let w = github_webhook();
    let action = source_action("main");
    let body = br#"{"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}}"#;
    let signed = Headers::new([("X-Hub-Signature-256", sign_sha256(SECRET, body))]);
    let d = w.evaluate(&signed, body, localhost(), &action).unwrap();
    assert!(d.start, "{}", d.reason);
    assert_eq!(d.source_action, "Source");

    let d = w
        .evaluate(&signed, body, localhost(), &source_action("develop"))
        .unwrap();
    assert!(!d.start);
    assert!(
        d.reason.contains("expected `refs/heads/develop`"),
        "{}",
        d.reason
    );

    // Authentication comes before the body is even read.
    let junk = b"not json";
    let unsigned = Headers::default();
    assert!(matches!(
        w.evaluate(&unsigned, junk, localhost(), &action),
        Err(WebhookError::Signature(_))
    ));
    let signed_junk = Headers::new([("X-Hub-Signature-256", sign_sha256(SECRET, junk))]);
    assert!(matches!(
        w.evaluate(&signed_junk, junk, localhost(), &action),
        Err(WebhookError::Payload(EventError::Json { .. }))
    ));

    let mut other = w.clone();
    other.target_action = "Checkout".into();
    assert_eq!(
        other
            .evaluate(&signed, body, localhost(), &action)
            .unwrap_err()
            .to_string(),
        "the webhook targets action `Checkout`, not `Source`"
    );
}

#[test]
fn a_stored_definition_that_skipped_validation_fails_closed() {
    let mut w = github_webhook();
    w.authentication_configuration.secret_token = None;
    assert!(matches!(
        w.authenticate(&Headers::default(), b"{}", localhost()),
        Err(WebhookError::Misconfigured(_))
    ));
    let mut w = github_webhook();
    w.authentication = WebhookAuthenticationType::Ip;
    w.authentication_configuration.allowed_ip_range = Some("everywhere".into());
    assert!(matches!(
        w.authenticate(&Headers::default(), b"{}", localhost()),
        Err(WebhookError::Misconfigured(_))
    ));
    let mut w = github_webhook();
    w.filters[0].json_path = "$[".into();
    let (start, reason) = w.filters_match(&json!({}), |_: &str| None);
    assert!(!start);
    assert!(reason.contains("is not a valid JSONPath"), "{reason}");
}

#[test]
fn the_target_must_be_a_source_action_of_the_target_pipeline() {
    let p = pipeline("main");
    let w = github_webhook();
    assert_eq!(w.target_action_in(&p).unwrap().name.value, "Source");

    let mut other = w.clone();
    other.target_pipeline = "billing".into();
    let err = other.target_action_in(&p).unwrap_err();
    assert_eq!(err.code(), "PipelineNotFoundException");
    assert_eq!(
        err.to_string(),
        "Pipeline 'billing' not found (the pipeline given is 'shop')"
    );

    for action in ["Compile", "Missing"] {
        let mut other = w.clone();
        other.target_action = action.into();
        let err = other.target_action_in(&p).unwrap_err();
        assert_eq!(err.code(), "ValidationException");
        assert_eq!(
            err.to_string(),
            format!(
                "Action '{action}' is not a source action in the first stage of pipeline 'shop'"
            )
        );
    }
}
