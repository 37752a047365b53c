//! The pipeline side of both stores:
//! versions, optimistic updates, transitions, webhooks with encrypted
//! secrets, and the audit row of every change.

use std::sync::Arc;

use gantry_store::{
    BuildStore, DisabledTransition, NewPipeline, NewWebhook, PipelineStore, StoreError,
    TransitionType,
};
use serde_json::json;

#[macro_use]
mod common;
use common::Backend;

fn pipeline(name: &str, version: u32, stages: &[&str]) -> NewPipeline {
    NewPipeline {
        name: name.into(),
        declaration: json!({"name": name, "version": version, "stages": stages}).to_string(),
        pipeline_type: "V1".into(),
        execution_mode: "SUPERSEDED".into(),
        stage_names: stages.iter().map(|s| s.to_string()).collect(),
        tags: json!([{"key": "team", "value": "web"}]),
    }
}

fn webhook(name: &str, url_id: &str, secret: Option<&str>) -> NewWebhook {
    NewWebhook {
        name: name.into(),
        pipeline: "app".into(),
        definition: json!({"name": name, "targetPipeline": "app", "authentication": "GITHUB_HMAC"}),
        secret: secret.map(str::to_owned),
        url_id: url_id.into(),
        tags: json!([]),
    }
}

async fn last_audit(store: &impl BuildStore) -> (String, String, String) {
    let e = store.audit_log(1).await.expect("audit").remove(0);
    (e.action, e.target, e.detail)
}

async fn pipelines_keep_every_version_and_update_optimistically<B: Backend>(b: &B) {
    let store = b.open().await;
    let created = store
        .create_pipeline(&pipeline("app", 1, &["Source", "Build"]), "AK")
        .await
        .expect("create");
    assert_eq!((created.version, created.latest_version), (1, 1));
    assert_eq!(
        last_audit(&store).await,
        ("pipeline.create".into(), "app".into(), "version 1".into())
    );
    assert!(matches!(
        store
            .create_pipeline(&pipeline("app", 1, &["Source"]), "AK")
            .await,
        Err(StoreError::Conflict(_))
    ));

    let mut v2 = pipeline("app", 2, &["Source", "Build", "Deploy"]);
    v2.tags = json!([]);
    let updated = store.update_pipeline(&v2, 1, "AK").await.expect("update");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_ms, created.created_ms);
    // An update keeps the tags the pipeline was created with.
    assert_eq!(updated.tags, json!([{"key": "team", "value": "web"}]));
    assert_eq!(
        last_audit(&store).await,
        ("pipeline.update".into(), "app".into(), "version 2".into())
    );
    // A second update from version 1 lost the race.
    assert!(matches!(
        store.update_pipeline(&v2, 1, "AK").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .update_pipeline(&pipeline("nope", 2, &[]), 1, "AK")
            .await,
        Err(StoreError::NotFound)
    ));

    let current = store.get_pipeline("app", None).await.expect("current");
    assert_eq!(current.version, 2);
    assert!(current.declaration.contains("Deploy"));
    let old = store.get_pipeline("app", Some(1)).await.expect("v1");
    assert_eq!((old.version, old.latest_version), (1, 2));
    assert!(!old.declaration.contains("Deploy"));
    assert!(matches!(
        store.get_pipeline("app", Some(3)).await,
        Err(StoreError::NotFound)
    ));

    let list = store.list_pipelines().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].version, 2);

    store.delete_pipeline("app", "AK").await.expect("delete");
    assert_eq!(
        last_audit(&store).await,
        ("pipeline.delete".into(), "app".into(), "".into())
    );
    assert!(matches!(
        store.get_pipeline("app", Some(1)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_pipeline("app", "AK").await,
        Err(StoreError::NotFound)
    ));
    // Created again, it starts over at version 1.
    let again = store
        .create_pipeline(&pipeline("app", 1, &["Source", "Build"]), "AK")
        .await
        .expect("create again");
    assert_eq!(again.version, 1);
}

async fn concurrent_updates_from_one_version_have_one_winner<B: Backend>(b: &B) {
    let store = Arc::new(b.open().await);
    store
        .create_pipeline(&pipeline("app", 1, &["Source", "Build"]), "AK")
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .update_pipeline(&pipeline("app", 2, &["Source", "Build"]), 1, "AK")
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(r) => {
                assert_eq!(r.version, 2);
                won += 1;
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        store.get_pipeline("app", None).await.expect("get").version,
        2
    );
}

async fn transitions_are_rows_while_disabled<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .create_pipeline(&pipeline("app", 1, &["Source", "Build", "Deploy"]), "AK")
        .await
        .expect("create");
    let disabled = |stage: &str, t: TransitionType, reason: &str| DisabledTransition {
        pipeline: "app".into(),
        stage: stage.into(),
        transition_type: t,
        reason: reason.into(),
        disabled_by: "AK".into(),
        disabled_ms: 1000,
    };
    store
        .disable_transition(&disabled("Build", TransitionType::Inbound, "freeze"), "AK")
        .await
        .expect("disable");
    assert_eq!(
        last_audit(&store).await,
        (
            "transition.disable".into(),
            "app/Build".into(),
            "Inbound: freeze".into()
        )
    );
    // Disabling again changes the reason; still one row.
    store
        .disable_transition(&disabled("Build", TransitionType::Inbound, "later"), "AK")
        .await
        .expect("disable again");
    store
        .disable_transition(&disabled("Deploy", TransitionType::Outbound, "x"), "AK")
        .await
        .expect("outbound");
    let rows = store.disabled_transitions("app").await.expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].reason, "later");
    assert_eq!(rows[1].transition_type, TransitionType::Outbound);
    assert!(matches!(
        store
            .disable_transition(
                &DisabledTransition {
                    pipeline: "nope".into(),
                    ..disabled("Build", TransitionType::Inbound, "x")
                },
                "AK"
            )
            .await,
        Err(StoreError::NotFound)
    ));

    store
        .enable_transition("app", "Build", TransitionType::Inbound, "AK")
        .await
        .expect("enable");
    assert_eq!(
        last_audit(&store).await,
        (
            "transition.enable".into(),
            "app/Build".into(),
            "Inbound".into()
        )
    );
    assert_eq!(
        store.disabled_transitions("app").await.expect("rows").len(),
        1
    );
    assert!(matches!(
        store
            .enable_transition("nope", "Build", TransitionType::Inbound, "AK")
            .await,
        Err(StoreError::NotFound)
    ));

    // An update without the Deploy stage forgets its transition.
    store
        .update_pipeline(&pipeline("app", 2, &["Source", "Build"]), 1, "AK")
        .await
        .expect("update");
    assert!(
        store
            .disabled_transitions("app")
            .await
            .expect("rows")
            .is_empty()
    );

    // Deleting the pipeline takes its transitions along.
    store
        .disable_transition(&disabled("Build", TransitionType::Inbound, "x"), "AK")
        .await
        .expect("disable");
    store.delete_pipeline("app", "AK").await.expect("delete");
    assert!(
        store
            .disabled_transitions("app")
            .await
            .expect("rows")
            .is_empty()
    );
}

async fn webhooks_keep_their_url_and_encrypt_their_secret<B: Backend>(b: &B) {
    let store = b.open().await;
    let put = store
        .put_webhook(&webhook("gh", "url-1", Some("hush-hush-value")), "AK")
        .await
        .expect("put");
    assert!(put.has_secret);
    assert_eq!(put.url_id, "url-1");
    assert_eq!(last_audit(&store).await.0, "webhook.put".to_string());
    assert!(!format!("{:?}", webhook("gh", "u", Some("hush-hush-value"))).contains("hush"));

    // Putting it again keeps the URL id, whatever id the caller proposes.
    let mut changed = webhook("gh", "url-2", Some("new-secret-value"));
    changed.pipeline = "other".into();
    let again = store.put_webhook(&changed, "AK").await.expect("put again");
    assert_eq!(again.url_id, "url-1");
    assert_eq!(again.pipeline, "other");
    assert_eq!(again.created_ms, put.created_ms);

    let found = store.webhook_by_url_id("url-1").await.expect("by url");
    assert_eq!(found.secret.as_deref(), Some("new-secret-value"));
    assert!(!format!("{found:?}").contains("new-secret"));
    assert!(matches!(
        store.webhook_by_url_id("url-2").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.webhook_secret("gh").await.expect("secret").as_deref(),
        Some("new-secret-value")
    );

    store
        .put_webhook(&webhook("open", "url-3", None), "AK")
        .await
        .expect("put unauthenticated");
    assert_eq!(store.webhook_secret("open").await.expect("none"), None);
    let names: Vec<String> = store
        .list_webhooks()
        .await
        .expect("list")
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["gh", "open"]);

    store
        .record_webhook_trigger("gh", 1234, "system")
        .await
        .expect("trigger");
    store
        .set_webhook_registered("gh", true, "AK")
        .await
        .expect("register");
    assert_eq!(
        last_audit(&store).await,
        (
            "webhook.register".into(),
            "gh".into(),
            "registered with third party".into()
        )
    );
    let gh = store.get_webhook("gh").await.expect("get");
    assert_eq!(gh.last_triggered_ms, Some(1234));
    assert!(gh.registered);
    assert!(matches!(
        store.record_webhook_trigger("nope", 1, "system").await,
        Err(StoreError::NotFound)
    ));

    assert!(store.delete_webhook("gh", "AK").await.expect("delete"));
    assert_eq!(
        last_audit(&store).await,
        ("webhook.delete".into(), "gh".into(), "".into())
    );
    // Deleting again succeeds and records nothing.
    assert!(
        !store
            .delete_webhook("gh", "AK")
            .await
            .expect("delete again")
    );
    assert_eq!(last_audit(&store).await.0, "webhook.delete".to_string());
    // A webhook made again under the name gets a new URL.
    let remade = store
        .put_webhook(&webhook("gh", "url-4", Some("s")), "AK")
        .await
        .expect("remake");
    assert_eq!(remade.url_id, "url-4");

    b.close(&store).await;
    assert!(
        !b.holds_in_clear(b"new-secret-value").await,
        "the secret is in the database in clear"
    );
}

async fn a_webhook_secret_does_not_open_under_another_key_file<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .put_webhook(&webhook("gh", "url-1", Some("secret")), "AK")
        .await
        .expect("put");
    b.close(&store).await;
    std::fs::remove_file(b.key_path()).expect("rm key");
    let store = b.open().await;
    assert!(matches!(
        store.webhook_by_url_id("url-1").await,
        Err(StoreError::Other(_))
    ));
}

/// A document servers must share (a key): the first stored is the one
/// every server gets, whoever raced to store it, and `put` still replaces.
async fn a_shared_server_document_is_stored_once_and_read_by_all<B: Backend>(b: &B) {
    let servers = [Arc::new(b.open().await), Arc::new(b.open().await)];
    assert_eq!(servers[0].server_state("k").await.expect("read"), None);
    let mut racers = Vec::new();
    for i in 0..6 {
        let store = servers[i % 2].clone();
        racers.push(tokio::spawn(async move {
            store
                .server_state_or_insert("k", &json!({ "v": i }))
                .await
                .expect("insert or read")
        }));
    }
    let mut got = Vec::new();
    for r in racers {
        got.push(r.await.expect("join"));
    }
    assert!(got.iter().all(|v| *v == got[0]), "{got:?}");
    assert_eq!(
        servers[1].server_state("k").await.expect("read"),
        Some(got[0].clone())
    );
    assert_eq!(
        servers[1]
            .server_state_or_insert("k", &json!("other"))
            .await
            .expect("read"),
        got[0]
    );
    servers[0]
        .put_server_state("k", &json!("replaced"))
        .await
        .expect("put");
    assert_eq!(
        servers[1]
            .server_state_or_insert("k", &json!("other"))
            .await
            .expect("read"),
        json!("replaced")
    );
}

both_stores!(
    a_shared_server_document_is_stored_once_and_read_by_all,
    pipelines_keep_every_version_and_update_optimistically,
    concurrent_updates_from_one_version_have_one_winner,
    transitions_are_rows_while_disabled,
    webhooks_keep_their_url_and_encrypt_their_secret,
    a_webhook_secret_does_not_open_under_another_key_file,
);
