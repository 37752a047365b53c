//! CodePipeline's declaration side over HTTP with a gantry-aws-signed
//! client: pipelines and their versions, transitions, webhooks, the errors
//! AWS raises, and the audit row each change leaves.

use std::path::PathBuf;

use gantry_store::{BuildStore, PipelineStore, TransitionType};
use serde_json::{Value, json};

use crate::harness::*;

/// A CodePipeline operation; returns (status, JSON).
pub(crate) async fn cp(server: &TestServer, operation: &str, input: &Value) -> (u16, Value) {
    server.aws(CODEPIPELINE, SECRET, operation, input).await
}

pub(crate) async fn ok(server: &TestServer, operation: &str, input: &Value) -> Value {
    let (status, out) = cp(server, operation, input).await;
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

/// Asserts a 400 with `code`; returns the message.
async fn fails(server: &TestServer, operation: &str, input: &Value, code: &str) -> String {
    let (status, out) = cp(server, operation, input).await;
    assert_eq!(status, 400, "{operation}: {out}");
    assert_eq!(out["__type"], code, "{operation}: {out}");
    out["message"].as_str().unwrap_or_default().to_owned()
}

/// The create-pipeline input the AWS CLI tests use too.
pub fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/clients/pipeline.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture json")
}

fn with_version(pipeline: &Value, version: u32) -> Value {
    let mut p = pipeline.clone();
    p["version"] = json!(version);
    p
}

/// The newest audit entries as (actor, action, target), newest first.
async fn audit(server: &TestServer, n: u32) -> Vec<(String, String, String)> {
    let store = open_store(&server.data_dir).await;
    let entries = store.audit_log(n).await.expect("audit");
    store.close().await;
    entries
        .into_iter()
        .map(|e| (e.actor, e.action, e.target))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_round_trip_keep_versions_and_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let input = fixture();
    let declared = input["pipeline"].clone();

    let created = ok(&server, "CreatePipeline", &input).await;
    assert_eq!(created["pipeline"], with_version(&declared, 1));
    assert_eq!(created["tags"], input["tags"]);
    assert_eq!(
        audit(&server, 1).await[0],
        (AKID.into(), "pipeline.create".into(), "shop-web".into())
    );

    let msg = fails(
        &server,
        "CreatePipeline",
        &input,
        "PipelineNameInUseException",
    )
    .await;
    assert!(msg.contains("shop-web"), "{msg}");

    // GetPipeline prints exactly what went in, plus the version and metadata.
    let got = ok(&server, "GetPipeline", &json!({"name": "shop-web"})).await;
    assert_eq!(got["pipeline"], with_version(&declared, 1));
    assert_eq!(
        got["metadata"]["pipelineArn"],
        "arn:aws:codepipeline:us-east-1:000000000000:shop-web"
    );
    assert!(got["metadata"]["created"].as_f64().is_some());
    assert_eq!(got["metadata"]["created"], got["metadata"]["updated"]);

    // UpdatePipeline bumps the version, whatever version the input says.
    let mut changed = with_version(&declared, 42);
    changed["stages"][2]["actions"][1]["configuration"]["ProjectName"] = json!("shop-deploy-2");
    let updated = ok(&server, "UpdatePipeline", &json!({"pipeline": changed})).await;
    assert_eq!(updated["pipeline"]["version"], 2);
    assert_eq!(
        audit(&server, 1).await[0],
        (AKID.into(), "pipeline.update".into(), "shop-web".into())
    );
    let current = ok(&server, "GetPipeline", &json!({"name": "shop-web"})).await;
    assert_eq!(current["pipeline"], with_version(&changed, 2));
    assert_eq!(current["metadata"]["created"], got["metadata"]["created"]);
    // The old version is still there.
    let old = ok(
        &server,
        "GetPipeline",
        &json!({"name": "shop-web", "version": 1}),
    )
    .await;
    assert_eq!(old["pipeline"], with_version(&declared, 1));
    let msg = fails(
        &server,
        "GetPipeline",
        &json!({"name": "shop-web", "version": 3}),
        "PipelineVersionNotFoundException",
    )
    .await;
    assert!(msg.contains("latest is 2"), "{msg}");
    fails(
        &server,
        "GetPipeline",
        &json!({"name": "shop-web", "version": 0}),
        "ValidationException",
    )
    .await;
    fails(
        &server,
        "GetPipeline",
        &json!({"name": "nope"}),
        "PipelineNotFoundException",
    )
    .await;
    fails(
        &server,
        "GetPipeline",
        &json!({"name": "no spaces"}),
        "ValidationException",
    )
    .await;
    let mut ghost = declared.clone();
    ghost["name"] = json!("ghost");
    fails(
        &server,
        "UpdatePipeline",
        &json!({"pipeline": ghost}),
        "PipelineNotFoundException",
    )
    .await;

    let listed = ok(&server, "ListPipelines", &json!({})).await;
    let summary = &listed["pipelines"][0];
    assert_eq!(summary["name"], "shop-web");
    assert_eq!(summary["version"], 2);
    assert_eq!(summary["pipelineType"], "V2");
    assert_eq!(summary["executionMode"], "QUEUED");
    assert!(listed.get("nextToken").is_none());

    ok(&server, "DeletePipeline", &json!({"name": "shop-web"})).await;
    assert_eq!(
        audit(&server, 1).await[0],
        (AKID.into(), "pipeline.delete".into(), "shop-web".into())
    );
    fails(
        &server,
        "GetPipeline",
        &json!({"name": "shop-web"}),
        "PipelineNotFoundException",
    )
    .await;
    // Deleting what is gone succeeds and records nothing.
    ok(&server, "DeletePipeline", &json!({"name": "shop-web"})).await;
    assert_eq!(audit(&server, 1).await[0].1, "pipeline.delete");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_declarations_raise_aws_exceptions_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let base = fixture()["pipeline"].clone();
    let create = |p: Value| json!({ "pipeline": p });

    let mut one_stage = base.clone();
    one_stage["stages"] = json!([base["stages"][0]]);
    one_stage
        .as_object_mut()
        .expect("object")
        .remove("triggers");
    let msg = fails(
        &server,
        "CreatePipeline",
        &create(one_stage),
        "InvalidStructureException",
    )
    .await;
    assert!(msg.contains("at least 2 stages"), "{msg}");

    let mut missing_input = base.clone();
    missing_input["stages"][1]["actions"][0]["inputArtifacts"][0]["name"] = json!("Source");
    let msg = fails(
        &server,
        "CreatePipeline",
        &create(missing_input),
        "InvalidStructureException",
    )
    .await;
    assert!(msg.contains("input artifact `Source`"), "{msg}");

    let mut build_first = base.clone();
    build_first["stages"][0]["actions"][0]["actionTypeId"]["category"] = json!("Build");
    fails(
        &server,
        "CreatePipeline",
        &create(build_first),
        "InvalidStageDeclarationException",
    )
    .await;

    let mut no_project = base.clone();
    no_project["stages"][1]["actions"][1]["configuration"] = json!({});
    let msg = fails(
        &server,
        "CreatePipeline",
        &create(no_project),
        "InvalidActionDeclarationException",
    )
    .await;
    assert!(msg.contains("ProjectName"), "{msg}");

    let mut bad_run_order = base.clone();
    bad_run_order["stages"][1]["actions"][0]["runOrder"] = json!(1000);
    let msg = fails(
        &server,
        "CreatePipeline",
        &create(bad_run_order),
        "ValidationException",
    )
    .await;
    assert!(
        msg.contains("pipeline.stages[1].actions[0].runOrder"),
        "the message names the field path: {msg}"
    );

    let mut typo = base.clone();
    typo["stages"][1]["actions"][0]["inputArtifact"] = json!([]);
    let msg = fails(
        &server,
        "CreatePipeline",
        &create(typo),
        "ValidationException",
    )
    .await;
    assert!(msg.contains("inputArtifacts"), "a suggestion: {msg}");

    fails(
        &server,
        "CreatePipeline",
        &json!({"tags": []}),
        "ValidationException",
    )
    .await;
    let (status, out) = cp(&server, "CreatePipeline", &json!("not an object")).await;
    assert_eq!(
        (status, out["__type"].as_str()),
        (400, Some("SerializationException"))
    );

    // Nothing was created by any of it, and nothing audited.
    let listed = ok(&server, "ListPipelines", &json!({})).await;
    assert_eq!(listed["pipelines"], json!([]));
    assert!(
        audit(&server, 50)
            .await
            .iter()
            .all(|(_, action, _)| !action.starts_with("pipeline."))
    );

    // An update is checked the same way and leaves the pipeline as it was.
    ok(&server, "CreatePipeline", &create(base.clone())).await;
    let mut broken = base.clone();
    broken["stages"][2]["actions"][1]["inputArtifacts"][0]["name"] = json!("Nothing");
    fails(
        &server,
        "UpdatePipeline",
        &create(broken),
        "InvalidStructureException",
    )
    .await;
    let got = ok(&server, "GetPipeline", &json!({"name": "shop-web"})).await;
    assert_eq!(got["pipeline"]["version"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pipelines_pages_with_next_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let base = fixture()["pipeline"].clone();
    for name in ["c-app", "a-app", "b-app"] {
        let mut p = base.clone();
        p["name"] = json!(name);
        ok(&server, "CreatePipeline", &json!({ "pipeline": p })).await;
    }
    let first = ok(&server, "ListPipelines", &json!({"maxResults": 2})).await;
    let names: Vec<&str> = first["pipelines"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["a-app", "b-app"]);
    let token = first["nextToken"].as_str().expect("a next token");
    let second = ok(
        &server,
        "ListPipelines",
        &json!({"maxResults": 2, "nextToken": token}),
    )
    .await;
    assert_eq!(second["pipelines"][0]["name"], "c-app");
    assert_eq!(second["pipelines"].as_array().map(Vec::len), Some(1));
    assert!(second.get("nextToken").is_none());
    fails(
        &server,
        "ListPipelines",
        &json!({"nextToken": "not-a-token"}),
        "InvalidNextTokenException",
    )
    .await;
    fails(
        &server,
        "ListPipelines",
        &json!({"maxResults": 0}),
        "ValidationException",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_transitions_disable_and_enable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    ok(&server, "CreatePipeline", &fixture()).await;
    let disable = |stage: &str, reason: &str| {
        json!({"pipelineName": "shop-web", "stageName": stage,
               "transitionType": "Inbound", "reason": reason})
    };
    ok(
        &server,
        "DisableStageTransition",
        &disable("Release", "Release freeze (until Monday)"),
    )
    .await;
    assert_eq!(
        audit(&server, 1).await[0],
        (
            AKID.into(),
            "transition.disable".into(),
            "shop-web/Release".into()
        )
    );
    ok(
        &server,
        "DisableStageTransition",
        &json!({"pipelineName": "shop-web", "stageName": "Build",
                "transitionType": "Outbound", "reason": "hold"}),
    )
    .await;
    {
        let store = open_store(&server.data_dir).await;
        let rows = store.disabled_transitions("shop-web").await.expect("rows");
        store.close().await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].stage, "Release");
        assert_eq!(rows[1].transition_type, TransitionType::Inbound);
        assert_eq!(rows[1].reason, "Release freeze (until Monday)");
        assert_eq!(rows[1].disabled_by, AKID);
    }

    let msg = fails(
        &server,
        "DisableStageTransition",
        &disable("Deploy", "x"),
        "StageNotFoundException",
    )
    .await;
    assert!(msg.contains("Source, Build, Release"), "{msg}");
    let mut other = disable("Build", "x");
    other["pipelineName"] = json!("nope");
    fails(
        &server,
        "DisableStageTransition",
        &other,
        "PipelineNotFoundException",
    )
    .await;
    fails(
        &server,
        "DisableStageTransition",
        &disable("Build", "under_score"),
        "ValidationException",
    )
    .await;
    let mut sideways = disable("Build", "x");
    sideways["transitionType"] = json!("Sideways");
    fails(
        &server,
        "DisableStageTransition",
        &sideways,
        "ValidationException",
    )
    .await;
    let mut no_reason = disable("Build", "x");
    no_reason.as_object_mut().expect("object").remove("reason");
    fails(
        &server,
        "DisableStageTransition",
        &no_reason,
        "ValidationException",
    )
    .await;

    let enable =
        json!({"pipelineName": "shop-web", "stageName": "Release", "transitionType": "Inbound"});
    ok(&server, "EnableStageTransition", &enable).await;
    assert_eq!(
        audit(&server, 1).await[0],
        (
            AKID.into(),
            "transition.enable".into(),
            "shop-web/Release".into()
        )
    );
    let store = open_store(&server.data_dir).await;
    let rows = store.disabled_transitions("shop-web").await.expect("rows");
    store.close().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].transition_type, TransitionType::Outbound);
    let mut missing_stage = enable.clone();
    missing_stage["stageName"] = json!("Nope");
    fails(
        &server,
        "EnableStageTransition",
        &missing_stage,
        "StageNotFoundException",
    )
    .await;
    server.stop().await;
}

fn webhook(name: &str, auth: &str, config: Value) -> Value {
    json!({
        "name": name,
        "targetPipeline": "shop-web",
        "targetAction": "Checkout",
        "filters": [{"jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}"}],
        "authentication": auth,
        "authenticationConfiguration": config,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_put_list_delete_with_a_hidden_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    ok(&server, "CreatePipeline", &fixture()).await;

    let put = ok(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("gh", "GITHUB_HMAC", json!({"SecretToken": "s3cr3t-token"})),
                "tags": [{"key": "team", "value": "web"}]}),
    )
    .await;
    let item = &put["webhook"];
    let url = item["url"].as_str().expect("url");
    let prefix = format!("{}/webhooks/codepipeline/", server.url());
    assert!(url.starts_with(&prefix), "{url}");
    let url_id = &url[prefix.len()..];
    assert!(url_id.len() >= 32, "an opaque id: {url_id}");
    assert_eq!(
        item["arn"],
        "arn:aws:codepipeline:us-east-1:000000000000:webhook:gh"
    );
    assert_eq!(
        item["definition"]["authenticationConfiguration"]["SecretToken"],
        "****"
    );
    assert_eq!(item["definition"]["filters"][0]["jsonPath"], "$.ref");
    assert_eq!(item["tags"], json!([{"key": "team", "value": "web"}]));
    assert!(!put.to_string().contains("s3cr3t"));
    assert_eq!(
        audit(&server, 1).await[0],
        (AKID.into(), "webhook.put".into(), "gh".into())
    );
    {
        let store = open_store(&server.data_dir).await;
        let found = store.webhook_by_url_id(url_id).await.expect("by url");
        store.close().await;
        assert_eq!(found.secret.as_deref(), Some("s3cr3t-token"));
        assert_eq!(found.webhook.pipeline, "shop-web");
    }

    // Putting it again with the redacted token (as ListWebhooks shows it)
    // keeps the token and the URL.
    let listed = ok(&server, "ListWebhooks", &json!({})).await;
    let mut definition = listed["webhooks"][0]["definition"].clone();
    definition["filters"] = json!([{"jsonPath": "$.repository.name", "matchEquals": "shop"}]);
    let again = ok(&server, "PutWebhook", &json!({ "webhook": definition })).await;
    assert_eq!(again["webhook"]["url"], url);
    {
        let store = open_store(&server.data_dir).await;
        let found = store.webhook_by_url_id(url_id).await.expect("by url");
        store.close().await;
        assert_eq!(found.secret.as_deref(), Some("s3cr3t-token"));
        assert_eq!(
            found.webhook.definition["filters"][0]["jsonPath"],
            "$.repository.name"
        );
    }

    ok(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("ips", "IP", json!({"AllowedIPRange": "10.0.0.0/8"}))}),
    )
    .await;
    let page = ok(&server, "ListWebhooks", &json!({"MaxResults": 1})).await;
    assert_eq!(page["webhooks"][0]["definition"]["name"], "gh");
    let token = page["NextToken"].as_str().expect("next token");
    let rest = ok(
        &server,
        "ListWebhooks",
        &json!({"MaxResults": 1, "NextToken": token}),
    )
    .await;
    assert_eq!(rest["webhooks"][0]["definition"]["name"], "ips");
    assert_eq!(
        rest["webhooks"][0]["definition"]["authenticationConfiguration"],
        json!({"AllowedIPRange": "10.0.0.0/8"})
    );
    assert!(rest.get("NextToken").is_none());

    // Refusals.
    fails(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("x", "GITHUB_HMAC", json!({}))}),
        "InvalidWebhookAuthenticationParametersException",
    )
    .await;
    fails(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("x", "IP", json!({"AllowedIPRange": "everywhere"}))}),
        "InvalidWebhookAuthenticationParametersException",
    )
    .await;
    let mut bad_path = webhook("x", "UNAUTHENTICATED", json!({}));
    bad_path["filters"][0]["jsonPath"] = json!("ref");
    fails(
        &server,
        "PutWebhook",
        &json!({ "webhook": bad_path }),
        "InvalidWebhookFilterPatternException",
    )
    .await;
    let mut no_pipeline = webhook("x", "UNAUTHENTICATED", json!({}));
    no_pipeline["targetPipeline"] = json!("nope");
    fails(
        &server,
        "PutWebhook",
        &json!({ "webhook": no_pipeline }),
        "PipelineNotFoundException",
    )
    .await;
    let mut not_source = webhook("x", "UNAUTHENTICATED", json!({}));
    not_source["targetAction"] = json!("Compile");
    let msg = fails(
        &server,
        "PutWebhook",
        &json!({ "webhook": not_source }),
        "ValidationException",
    )
    .await;
    assert!(msg.contains("Checkout"), "{msg}");
    fails(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("x", "UNAUTHENTICATED", json!({"SecretToken": "****"}))}),
        "InvalidWebhookAuthenticationParametersException",
    )
    .await;
    let mut unknown_member = webhook("x", "UNAUTHENTICATED", json!({}));
    unknown_member["target"] = json!("typo");
    fails(
        &server,
        "PutWebhook",
        &json!({ "webhook": unknown_member }),
        "SerializationException",
    )
    .await;

    // Register and deregister are recorded, nothing more.
    ok(
        &server,
        "RegisterWebhookWithThirdParty",
        &json!({"webhookName": "gh"}),
    )
    .await;
    assert_eq!(audit(&server, 1).await[0].1, "webhook.register");
    ok(
        &server,
        "DeregisterWebhookWithThirdParty",
        &json!({"webhookName": "gh"}),
    )
    .await;
    assert_eq!(audit(&server, 1).await[0].1, "webhook.deregister");
    fails(
        &server,
        "RegisterWebhookWithThirdParty",
        &json!({"webhookName": "nope"}),
        "WebhookNotFoundException",
    )
    .await;

    ok(&server, "DeleteWebhook", &json!({"name": "gh"})).await;
    assert_eq!(
        audit(&server, 1).await[0],
        (AKID.into(), "webhook.delete".into(), "gh".into())
    );
    ok(&server, "DeleteWebhook", &json!({"name": "gh"})).await;
    let listed = ok(&server, "ListWebhooks", &json!({})).await;
    assert_eq!(listed["webhooks"].as_array().map(Vec::len), Some(1));
    // Made again, it gets a new URL.
    let remade = ok(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("gh", "GITHUB_HMAC", json!({"SecretToken": "other"}))}),
    )
    .await;
    assert_ne!(remade["webhook"]["url"], url);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_and_webhooks_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    ok(&server, "CreatePipeline", &fixture()).await;
    let put = ok(
        &server,
        "PutWebhook",
        &json!({"webhook": webhook("gh", "GITHUB_HMAC", json!({"SecretToken": "tok"}))}),
    )
    .await;
    let url = put["webhook"]["url"].as_str().expect("url").to_owned();
    let url_id = url.rsplit('/').next().expect("id").to_owned();
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let got = ok(&server, "GetPipeline", &json!({"name": "shop-web"})).await;
    assert_eq!(got["pipeline"], with_version(&fixture()["pipeline"], 1));
    let listed = ok(&server, "ListWebhooks", &json!({})).await;
    assert!(
        listed["webhooks"][0]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&url_id))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_each_make_a_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = std::sync::Arc::new(TestServer::start(dir.path()).await);
    ok(&server, "CreatePipeline", &fixture()).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = fixture()["pipeline"].clone();
            p["stages"][1]["actions"][0]["configuration"]["ProjectName"] = json!(format!("b{i}"));
            ok(&server, "UpdatePipeline", &json!({ "pipeline": p })).await["pipeline"]["version"]
                .as_u64()
                .expect("version")
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join"));
    }
    versions.sort_unstable();
    assert_eq!(versions, [2, 3, 4, 5]);
    for v in 1..=5 {
        ok(
            &server,
            "GetPipeline",
            &json!({"name": "shop-web", "version": v}),
        )
        .await;
    }
    let server = std::sync::Arc::into_inner(server).expect("sole owner");
    server.stop().await;
}
