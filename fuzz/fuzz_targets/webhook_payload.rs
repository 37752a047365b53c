//! Feeds arbitrary bytes to everything a webhook request reaches: the
//! payload parser of every provider and event kind, the trigger filters of
//! a pipeline with push, tag, pull-request and file-path filters, a
//! CodePipeline webhook (signed, so the body reaches its JSONPath filters),
//! and the bytes read as a webhook definition. Nothing may panic, and a
//! decision that starts must name a source action of the pipeline.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use gantry_spec::pipeline::PipelineDeclaration;
use gantry_triggers::codepipeline::WebhookDefinition;
use gantry_triggers::{Headers, Provider, event, filter, signature};
use libfuzzer_sys::fuzz_target;

const PIPELINE: &str = "name: shop
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Repo
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'https://github.com/acme/shop.git', BranchName: main}
        outputArtifacts: [{name: Src}]
      - name: Docs
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'git@github.com:acme/docs.git'}
        outputArtifacts: [{name: DocSrc}]
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: shop, PrimarySource: Src}
        inputArtifacts: [{name: Src}, {name: DocSrc}]
triggers:
  - providerType: CodeStarSourceConnection
    gitConfiguration:
      sourceActionName: Repo
      push:
        - tags: {includes: ['v*'], excludes: ['v*-rc*']}
        - branches: {includes: [main, 'release/**'], excludes: ['release/old/*']}
          filePaths: {includes: ['src/**', '{a,b}/*.rs'], excludes: ['**/*.md']}
      pullRequest:
        - events: [OPEN, UPDATED]
          branches: {includes: [main]}
          filePaths: {excludes: ['docs/**']}
";

const WEBHOOK: &str = r#"{
  "name": "shop-Repo",
  "targetPipeline": "shop",
  "targetAction": "Repo",
  "filters": [
    {"jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}"},
    {"jsonPath": "$.commits[*].author.name"},
    {"jsonPath": "$..id", "matchEquals": "{Missing}"},
    {"jsonPath": "repository.full_name", "matchEquals": "acme/shop"}
  ],
  "authentication": "GITHUB_HMAC",
  "authenticationConfiguration": {"SecretToken": "fuzz"}
}"#;

const KINDS: &[(Provider, &[&str])] = &[
    (Provider::GitHub, &["push", "pull_request", "ping"]),
    (
        Provider::GitLab,
        &["Push Hook", "Tag Push Hook", "Merge Request Hook", "System Hook"],
    ),
    (Provider::Gitea, &["push", "pull_request"]),
    (Provider::Forgejo, &["push", "pull_request"]),
];

fn pipeline() -> &'static PipelineDeclaration {
    static P: OnceLock<PipelineDeclaration> = OnceLock::new();
    P.get_or_init(|| gantry_spec::pipeline::parse_yaml(PIPELINE).expect("the fuzz pipeline is valid"))
}

fn webhook() -> &'static WebhookDefinition {
    static W: OnceLock<WebhookDefinition> = OnceLock::new();
    W.get_or_init(|| serde_json::from_str(WEBHOOK).expect("the fuzz webhook is valid"))
}

fn check(pipeline: &PipelineDeclaration, event: &event::GitEvent) {
    let sources = ["Repo", "Docs"];
    let decisions = filter::decide(pipeline, event);
    assert_eq!(decisions.len(), sources.len());
    for (d, name) in decisions.iter().zip(sources) {
        assert_eq!(d.source_action, name);
        assert!(!d.reason.is_empty());
    }
    let _ = filter::needs_changed_files(pipeline, event);
}

fuzz_target!(|data: &[u8]| {
    let pipeline = pipeline();
    for (provider, kinds) in KINDS {
        for kind in *kinds {
            if let Ok(mut event) = event::parse(*provider, kind, data) {
                check(pipeline, &event);
                if let Some(files) = event.changed_files() {
                    assert!(files.paths.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
                }
                event.set_changed_files(["src/main.rs", "docs/a.md"]);
                check(pipeline, &event);
            }
        }
    }

    // The bytes as a signed CodePipeline webhook request.
    let webhook = webhook();
    let action = &pipeline.stages[0].actions[0];
    let headers = Headers::new([("X-Hub-Signature-256", signature::sign_sha256("fuzz", data))]);
    let remote = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if let Ok(decision) = webhook.evaluate(&headers, data, remote, action) {
        assert_eq!(decision.source_action, "Repo");
    }
    // Unsigned, it never gets past authentication.
    assert!(webhook.evaluate(&Headers::default(), data, remote, action).is_err());

    // The bytes as headers: signature checks must fail cleanly.
    let as_headers = Headers::new([
        ("X-Hub-Signature-256", data),
        ("X-Hub-Signature", data),
        ("X-Gitlab-Token", data),
        ("X-Gitea-Signature", data),
        ("X-Gantry-Signature-256", data),
    ]);
    for provider in [Provider::GitHub, Provider::GitLab, Provider::Gitea] {
        let _ = provider.verify(&as_headers, b"{}", "fuzz");
    }
    let _ = signature::verify_generic(&as_headers, b"{}", "fuzz");

    // The bytes as a webhook definition (PutWebhook input).
    if let Ok(definition) = serde_json::from_slice::<WebhookDefinition>(data) {
        let _ = definition.validate();
        let payload = serde_json::json!({"ref": "refs/heads/main", "n": 1, "a": [true, null]});
        let _ = definition.filters_match(&payload, |key| Some(key.to_string()));
        let _ = definition.authenticate(&Headers::default(), data, remote);
    }
});
