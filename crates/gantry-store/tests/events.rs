//! The `EventStore` on both stores: rules, targets, the outbox, scheduled
//! fires, dead letters, and connections with encrypted secrets.

use gantry_store::{
    ApiDestinationRecord, BuildStore, EventStore, NewConnection, NewDelivery, NewRule, StoreError,
    TargetRecord,
};
use serde_json::json;

#[macro_use]
mod common;
use common::Backend;

fn rule(name: &str, schedule: Option<&str>, now_ms: i64) -> NewRule {
    NewRule {
        bus: "default".into(),
        name: name.into(),
        state: "ENABLED".into(),
        event_pattern: schedule.is_none().then(|| r#"{"source": ["a"]}"#.into()),
        schedule: schedule.map(str::to_owned),
        description: None,
        role_arn: None,
        now_ms,
    }
}

fn target(id: &str) -> TargetRecord {
    TargetRecord {
        id: id.into(),
        arn: "http://127.0.0.1:9/".into(),
        target: json!({"Id": id, "Arn": "http://127.0.0.1:9/"}),
    }
}

fn delivery(rule: &str, target_id: &str, due_ms: i64) -> NewDelivery {
    NewDelivery {
        event_id: format!("e-{due_ms}"),
        event: json!({"id": format!("e-{due_ms}"), "detail": {}}),
        bus: "default".into(),
        rule: rule.into(),
        target: target(target_id),
        due_ms,
    }
}

async fn rules_targets_and_their_rules<B: Backend>(b: &B) {
    let store = b.open().await;
    assert!(store.bus_exists("default").await.expect("bus"));
    assert!(!store.bus_exists("other").await.expect("bus"));
    let mut on_other = rule("r", None, 1);
    on_other.bus = "other".into();
    assert!(matches!(
        store.put_rule(&on_other, "me").await,
        Err(StoreError::NotFound)
    ));

    let created = store
        .put_rule(&rule("tick", Some("rate(5 minutes)"), 1_000), "me")
        .await
        .expect("put");
    assert_eq!(
        created.last_fire_ms,
        Some(1_000),
        "a rate counts from its creation"
    );
    // Replacing without changing the schedule keeps the anchor and creation time.
    let mut same = rule("tick", Some("rate(5 minutes)"), 9_000);
    same.description = Some("now described".into());
    let kept = store.put_rule(&same, "me").await.expect("put");
    assert_eq!((kept.created_ms, kept.last_fire_ms), (1_000, Some(1_000)));
    assert_eq!(kept.description.as_deref(), Some("now described"));
    // A new schedule restarts the count.
    let changed = store
        .put_rule(&rule("tick", Some("rate(1 hour)"), 20_000), "me")
        .await
        .expect("put");
    assert_eq!(changed.last_fire_ms, Some(20_000));

    store
        .put_rule(&rule("a_1", None, 1), "me")
        .await
        .expect("put");
    store
        .put_rule(&rule("a%", None, 1), "me")
        .await
        .expect("put");
    let names: Vec<String> = store
        .list_rules("default", "a_")
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a_1"], "prefixes are literal, not LIKE patterns");

    assert!(matches!(
        store
            .put_targets("default", "ghost", &[target("t")], "me")
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .put_targets("default", "a_1", &[target("t1"), target("t2")], "me")
        .await
        .expect("targets");
    assert!(matches!(
        store.delete_rule("default", "a_1", "me").await,
        Err(StoreError::Conflict(_))
    ));
    let removed = store
        .remove_targets("default", "a_1", &["t1".into(), "ghost".into()], "me")
        .await
        .expect("remove");
    assert_eq!(removed, ["t1"]);
    let all = store.all_targets().await.expect("all");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].targets[0].id, "t2");
    store
        .remove_targets("default", "a_1", &["t2".into()], "me")
        .await
        .expect("remove");
    store
        .delete_rule("default", "a_1", "me")
        .await
        .expect("delete");
    assert!(matches!(
        store.delete_rule("default", "a_1", "me").await,
        Err(StoreError::NotFound)
    ));
    store
        .set_rule_state("default", "a%", "DISABLED", "me")
        .await
        .expect("disable");
    assert_eq!(
        store.get_rule("default", "a%").await.expect("get").state,
        "DISABLED"
    );

    let audit = store.audit_log(50).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "events.rule.delete" && a.target == "default/a_1")
    );
    assert!(
        audit
            .iter()
            .any(|a| a.action == "events.targets.remove" && a.detail == "t1")
    );
}

async fn outbox_retries_and_dead_letters<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .enqueue_deliveries(
            &[
                delivery("r", "a", 200),
                delivery("r", "b", 100),
                delivery("r", "c", 300),
            ],
            Some(("me", "3 accepted")),
        )
        .await
        .expect("enqueue");
    let due = store.due_deliveries(250, 10).await.expect("due");
    let ids: Vec<&str> = due.iter().map(|d| d.target.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"], "due only, oldest due first");
    assert_eq!(due[0].target.arn, "http://127.0.0.1:9/");

    store
        .complete_delivery(due[0].id, 260)
        .await
        .expect("complete");
    store
        .retry_delivery(due[1].id, 1, 1_000, "the endpoint answered 500")
        .await
        .expect("retry");
    let due = store.due_deliveries(999, 10).await.expect("due");
    assert_eq!(
        due.iter().map(|d| d.target.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    let due = store.due_deliveries(1_000, 10).await.expect("due");
    let a = due
        .iter()
        .find(|d| d.target.id == "a")
        .expect("a is due again");
    assert_eq!(a.attempts, 1);
    assert_eq!(a.last_error.as_deref(), Some("the endpoint answered 500"));

    store
        .dead_letter(a.id, 2, "gave up", 1_100)
        .await
        .expect("dead");
    assert!(matches!(
        store.dead_letter(a.id, 2, "twice", 1_100).await,
        Err(StoreError::NotFound)
    ));
    let letters = store.dead_letters(10).await.expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (
            letters[0].target_id.as_str(),
            letters[0].attempts,
            letters[0].reason.as_str()
        ),
        ("a", 2, "gave up")
    );
    assert_eq!(letters[0].event["id"], "e-200");
    let statuses: Vec<String> = store
        .recent_deliveries(10)
        .await
        .expect("recent")
        .into_iter()
        .map(|d| format!("{}:{}", d.target.id, d.status))
        .collect();
    assert_eq!(
        statuses,
        ["c:PENDING", "b:DELIVERED", "a:DEAD"],
        "newest first"
    );
}

async fn a_scheduled_fire_is_recorded_once<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .put_rule(&rule("tick", Some("rate(1 minute)"), 0), "me")
        .await
        .expect("put");
    let fired = store
        .fire_schedule(
            "default",
            "tick",
            Some(0),
            60_000,
            &[delivery("tick", "t", 60_000)],
        )
        .await
        .expect("fire");
    assert!(fired);
    // A second scheduler that read the old value does not fire again.
    let again = store
        .fire_schedule(
            "default",
            "tick",
            Some(0),
            60_000,
            &[delivery("tick", "t", 60_000)],
        )
        .await
        .expect("fire");
    assert!(!again);
    assert_eq!(
        store.due_deliveries(i64::MAX, 10).await.expect("due").len(),
        1
    );
    assert_eq!(
        store
            .get_rule("default", "tick")
            .await
            .expect("get")
            .last_fire_ms,
        Some(60_000)
    );
    // A restart reads the fire back.
    drop(store);
    let store = b.open().await;
    assert_eq!(
        store
            .get_rule("default", "tick")
            .await
            .expect("get")
            .last_fire_ms,
        Some(60_000)
    );
}

async fn connection_secrets_are_encrypted_and_destinations_hold_them<B: Backend>(b: &B) {
    let store = b.open().await;
    let connection = NewConnection {
        name: "chat".into(),
        connection: json!({"Name": "chat", "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "k"}}}),
        secret: json!({"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "very-secret-value"}}),
    };
    assert!(!format!("{connection:?}").contains("very-secret-value"));
    store
        .create_connection(&connection, "me")
        .await
        .expect("create");
    assert!(matches!(
        store.create_connection(&connection, "me").await,
        Err(StoreError::Conflict(_))
    ));
    let got = store.get_connection("chat").await.expect("get");
    assert!(!got.connection.to_string().contains("very-secret-value"));
    assert_eq!(
        store.connection_secret("chat").await.expect("secret")["ApiKeyAuthParameters"]["ApiKeyValue"],
        "very-secret-value"
    );
    b.close(&store).await;
    assert!(
        !b.holds_in_clear(b"very-secret-value").await,
        "the database holds the secret in clear"
    );
    let store = b.open().await;

    let dest = ApiDestinationRecord {
        name: "d".into(),
        connection: "chat".into(),
        destination: json!({"Name": "d"}),
        created_ms: 5,
    };
    let orphan = ApiDestinationRecord {
        connection: "ghost".into(),
        ..dest.clone()
    };
    assert!(matches!(
        store.create_api_destination(&orphan, "me").await,
        Err(StoreError::NotFound)
    ));
    store
        .create_api_destination(&dest, "me")
        .await
        .expect("create");
    assert_eq!(store.get_api_destination("d").await.expect("get"), dest);
    assert!(matches!(
        store.delete_connection("chat", "me").await,
        Err(StoreError::Conflict(_))
    ));
    store
        .delete_api_destination("d", "me")
        .await
        .expect("delete");
    store.delete_connection("chat", "me").await.expect("delete");
    assert!(matches!(
        store.connection_secret("chat").await,
        Err(StoreError::NotFound)
    ));
}

both_stores!(
    rules_targets_and_their_rules,
    outbox_retries_and_dead_letters,
    a_scheduled_fire_is_recorded_once,
    connection_secrets_are_encrypted_and_destinations_hold_them,
);
