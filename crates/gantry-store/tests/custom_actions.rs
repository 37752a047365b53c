//! The custom-action store on both backends: types created once and
//! deleted once, jobs dispatched, acknowledged and finished once (also when
//! several servers poll at the same time), and job credentials kept
//! encrypted.

use std::sync::Arc;

use gantry_store::{
    CustomActionStore, CustomActionTypeRecord, JobCredentials, JobOutcome, NewJob, StoreError,
    now_ms,
};

#[macro_use]
mod common;
use common::Backend;

fn new_job(id: &str, query: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        nonce: "n0".into(),
        category: "Build".into(),
        provider: "Mine".into(),
        version: "1".into(),
        query_value: query.map(str::to_owned),
        pipeline: "app".into(),
        execution_id: "e".into(),
        stage: "Build".into(),
        action: "Make".into(),
        action_execution_id: format!("attempt-{id}"),
        data: serde_json::json!({"actionConfiguration": {}}),
        objects: serde_json::json!({}),
    }
}

async fn a_job_is_dispatched_once_and_acknowledged_once<B: Backend>(b: &B) {
    let s = b.open().await;
    s.create_job(&new_job("j1", None)).await.expect("create");
    let far_past = 0;
    let got = s
        .dispatch_jobs(
            "Build",
            "Mine",
            "1",
            None,
            &["n1".into(), "n2".into()],
            far_past,
        )
        .await
        .expect("dispatch");
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].status.as_str(), got[0].job.nonce.as_str()),
        ("Dispatched", "n1")
    );
    // A second poll finds nothing: the job is taken.
    let again = s
        .dispatch_jobs("Build", "Mine", "1", None, &["n3".into()], far_past)
        .await
        .expect("dispatch");
    assert!(again.is_empty());
    // A dispatched job nobody acknowledged goes to the next poller with a
    // new nonce; the first worker's nonce no longer claims it.
    let later = now_ms() + 1;
    let taken = s
        .dispatch_jobs("Build", "Mine", "1", None, &["n4".into()], later)
        .await
        .expect("redispatch");
    assert_eq!(taken[0].job.nonce, "n4");
    assert!(matches!(
        s.acknowledge_job("j1", "n1").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.acknowledge_job("j1", "n4").await.expect("ack").status,
        "InProgress"
    );
    assert_eq!(s.get_job("j1").await.expect("get").status, "InProgress");
    assert!(matches!(
        s.acknowledge_job("j1", "n4").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.acknowledge_job("nope", "n4").await,
        Err(StoreError::NotFound)
    ));
}

async fn the_query_value_selects_jobs<B: Backend>(b: &B) {
    let s = b.open().await;
    s.create_job(&new_job("a", Some("blue")))
        .await
        .expect("create");
    s.create_job(&new_job("b", Some("green")))
        .await
        .expect("create");
    let got = s
        .dispatch_jobs(
            "Build",
            "Mine",
            "1",
            Some("green"),
            &["n".into(), "m".into()],
            0,
        )
        .await
        .expect("dispatch");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job.id, "b");
}

async fn finishing_is_once_and_queues_the_continuation<B: Backend>(b: &B) {
    let s = b.open().await;
    s.create_job(&new_job("j", None)).await.expect("create");
    let outcome = JobOutcome {
        status: "Succeeded".into(),
        result: serde_json::json!({}),
        next: Some(new_job("k", None)),
    };
    // A queued job cannot be answered.
    assert!(matches!(
        s.finish_job("j", &outcome, "w").await,
        Err(StoreError::Conflict(_))
    ));
    s.dispatch_jobs("Build", "Mine", "1", None, &["n".into()], 0)
        .await
        .expect("dispatch");
    s.finish_job("j", &outcome, "w").await.expect("finish");
    assert!(matches!(
        s.finish_job("j", &outcome, "w").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_job("k").await.expect("next").status, "Queued");
    assert_eq!(
        s.close_open_jobs("attempt-k", "TimedOut")
            .await
            .expect("close"),
        1
    );
    assert_eq!(s.get_job("k").await.expect("k").status, "TimedOut");
}

async fn types_are_never_created_twice_and_deleted_once<B: Backend>(b: &B) {
    let s = b.open().await;
    let t = CustomActionTypeRecord {
        category: "Build".into(),
        provider: "Mine".into(),
        version: "1".into(),
        definition: serde_json::json!({}),
        deleted: false,
        created_ms: 1,
    };
    s.create_custom_action_type(&t, 50, "a")
        .await
        .expect("create");
    s.delete_custom_action_type("Build", "Mine", "1", "a")
        .await
        .expect("delete");
    assert!(matches!(
        s.delete_custom_action_type("Build", "Mine", "1", "a").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.create_custom_action_type(&t, 50, "a").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        s.get_custom_action_type("Build", "Mine", "1")
            .await
            .expect("get")
            .deleted
    );
    let t2 = CustomActionTypeRecord {
        version: "2".into(),
        ..t
    };
    assert!(matches!(
        s.create_custom_action_type(&t2, 0, "a").await,
        Err(StoreError::Conflict(_))
    ));
}

async fn credentials_keep_the_secret_encrypted_and_round_trip<B: Backend>(b: &B) {
    let s = b.open().await;
    let c = JobCredentials {
        access_key_id: "ASIAX".into(),
        job_id: "j".into(),
        secret: "s3cr3t-value".into(),
        session_token_sha256: "ab".into(),
        expires_ms: now_ms() + 60_000,
    };
    s.put_job_credentials(&c).await.expect("put");
    assert_eq!(s.job_credentials("ASIAX").await.expect("get"), c);
    b.close(&s).await;
    assert!(!b.holds_in_clear(b"s3cr3t-value").await);
}

/// Job workers polling several servers at once (two stores on one
/// database, eight pollers, two nonces per poll): each job goes to one
/// poll with one nonce, and only that nonce acknowledges it.
async fn racing_polls_dispatch_each_job_once<B: Backend>(b: &B) {
    let servers = [Arc::new(b.open().await), Arc::new(b.open().await)];
    const JOBS: usize = 12;
    for i in 0..JOBS {
        let mut j = new_job(&format!("j{i:02}"), None);
        j.action_execution_id = "attempt".into();
        CustomActionStore::create_job(&*servers[0], &j)
            .await
            .expect("create");
    }
    let mut tasks = Vec::new();
    for poller in 0..8 {
        let store = servers[poller % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for round in 0..JOBS {
                let nonces = vec![
                    format!("p{poller}-{round}-a"),
                    format!("p{poller}-{round}-b"),
                ];
                // 0: a dispatched job is never handed out again here.
                let jobs = CustomActionStore::dispatch_jobs(
                    &*store, "Build", "Mine", "1", None, &nonces, 0,
                )
                .await
                .expect("dispatch");
                if jobs.is_empty() {
                    break;
                }
                got.extend(jobs.into_iter().map(|j| (j.job.id, j.job.nonce)));
            }
            got
        }));
    }
    let mut dispatched = Vec::new();
    for t in tasks {
        dispatched.extend(t.await.expect("join"));
    }
    dispatched.sort();
    let ids: Vec<&str> = dispatched.iter().map(|(id, _)| id.as_str()).collect();
    let want: Vec<String> = (0..JOBS).map(|i| format!("j{i:02}")).collect();
    assert_eq!(ids, want, "each job dispatched exactly once");
    for (id, nonce) in &dispatched {
        // The stored nonce is the one its poll got (no second poll
        // overwrote it), so that nonce, and only it, acknowledges.
        let s = &*servers[1];
        assert_eq!(&s.get_job(id).await.expect("job").job.nonce, nonce);
        assert!(matches!(
            s.acknowledge_job(id, "someone-else").await,
            Err(StoreError::Conflict(_))
        ));
        let (x, y) = tokio::join!(
            CustomActionStore::acknowledge_job(&*servers[0], id, nonce),
            CustomActionStore::acknowledge_job(&*servers[1], id, nonce),
        );
        assert_eq!(
            [&x, &y].iter().filter(|r| r.is_ok()).count(),
            1,
            "{x:?} {y:?}"
        );
    }
}

/// The cap on live types holds when servers create types at once.
async fn racing_creations_respect_the_cap_on_live_types<B: Backend>(b: &B) {
    let servers = [Arc::new(b.open().await), Arc::new(b.open().await)];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = servers[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let t = CustomActionTypeRecord {
                category: "Build".into(),
                provider: "Mine".into(),
                version: format!("{i}"),
                definition: serde_json::json!({}),
                deleted: false,
                created_ms: 1,
            };
            CustomActionStore::create_custom_action_type(&*store, &t, 3, "a").await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(()) => created += 1,
            Err(StoreError::Conflict(m)) => assert!(m.contains("at most 3"), "{m}"),
            Err(e) => panic!("create: {e}"),
        }
    }
    assert_eq!(created, 3);
    let live = &*servers[0].custom_action_types().await.expect("list");
    assert_eq!(live.len(), 3);
}

both_stores!(
    a_job_is_dispatched_once_and_acknowledged_once,
    the_query_value_selects_jobs,
    finishing_is_once_and_queues_the_continuation,
    types_are_never_created_twice_and_deleted_once,
    credentials_keep_the_secret_encrypted_and_round_trip,
    racing_polls_dispatch_each_job_once,
    racing_creations_respect_the_cap_on_live_types,
);
