//! The agent store on both backends: tokens by hash, the job queue,
//! acknowledgements, fencing epochs, expiry and cancellation, and
//! (for PostgreSQL's sake) several servers racing for the same jobs.

use std::sync::Arc;

use gantry_store::job_status::{FAILED, LEASED, QUEUED, SUCCEEDED};
use gantry_store::{
    AgentStore, BuildStore, NewAgentJob, QueueNews, ServerStore, StoreError, labels_match, now_ms,
    parse_labels,
};

#[macro_use]
mod common;
use common::Backend;

fn job(id: &str, max_attempts: u32) -> NewAgentJob {
    NewAgentJob {
        id: id.into(),
        kind: "codebuild".into(),
        labels: vec!["linux".into()],
        payload: serde_json::json!({"build": id}),
        max_attempts,
    }
}

async fn of_two_acknowledgements_of_one_attempt_exactly_one_wins<B: Backend>(b: &B) {
    let store = b.open().await;
    store.enqueue_job(&job("j1", 3)).await.expect("enqueue");
    store.enqueue_job(&job("j2", 3)).await.expect("enqueue");
    let now = now_ms();
    // The queue as a poll sees it: oldest first, with each job's attempts
    // so far (what its offer names).
    let queued = store.offerable_jobs(10).await.expect("list");
    let seen: Vec<(&str, u32)> = queued.iter().map(|j| (j.id.as_str(), j.attempts)).collect();
    assert_eq!(seen, [("j1", 0), ("j2", 0)]);
    assert_eq!(queued[0].labels, ["linux"]);
    let (x, y) = tokio::join!(
        store.ack_job("j1", 0, "agent-1", "lease-1", now + 30_000),
        store.ack_job("j1", 0, "agent-2", "lease-2", now + 30_000),
    );
    let wins = [&x, &y].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{x:?} {y:?}");
    assert!(
        [&x, &y]
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_))))
    );
    let leased = store.get_agent_job("j1").await.expect("job");
    assert_eq!(leased.status, LEASED);
    assert_eq!(leased.lease_epoch, 1);
    assert_eq!(leased.attempts, 1);
    // A leased job is no longer offerable.
    let queued = store.offerable_jobs(10).await.expect("list");
    assert_eq!(
        queued.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["j2"]
    );
    // An acknowledgement of another attempt never takes the job.
    assert!(matches!(
        store.ack_job("j2", 1, "agent-1", "l", now + 1).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_agent_job("j2").await.expect("j2").status, QUEUED);
    assert!(matches!(
        store.ack_job("missing", 0, "agent-1", "l", now + 1).await,
        Err(StoreError::NotFound)
    ));
}

async fn a_stale_epoch_is_fenced_off_renewals_and_results<B: Backend>(b: &B) {
    let store = b.open().await;
    store.enqueue_job(&job("j", 3)).await.expect("enqueue");
    let now = now_ms();
    let first = store
        .ack_job("j", 0, "a1", "l1", now - 1)
        .await
        .expect("ack");
    // The lease ran out: back to the queue, attempt 1 used.
    let expired = store.expire_leases(now).await.expect("expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].job.status, QUEUED);
    assert_eq!(expired[0].agent_id.as_deref(), Some("a1"));
    let second = store
        .ack_job("j", 1, "a2", "l2", now + 60_000)
        .await
        .expect("ack");
    assert_eq!(second.lease_epoch, first.lease_epoch + 1);
    for result in [
        store
            .renew_lease("j", first.lease_epoch, now + 90_000)
            .await,
        store.check_lease("j", first.lease_epoch).await,
        store
            .finish_agent_job("j", first.lease_epoch, SUCCEEDED, None)
            .await,
    ] {
        match result {
            Err(StoreError::Conflict(m)) => assert!(m.contains("stale"), "{m}"),
            other => panic!("expected a fencing conflict, got {other:?}"),
        }
    }
    store
        .renew_lease("j", second.lease_epoch, now + 90_000)
        .await
        .expect("the current lease renews");
    let done = store
        .finish_agent_job("j", second.lease_epoch, SUCCEEDED, None)
        .await
        .expect("finish");
    assert_eq!(done.status, SUCCEEDED);
    assert!(matches!(
        store.renew_lease("j", second.lease_epoch, now).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn expiry_requeues_until_max_attempts_then_fails<B: Backend>(b: &B) {
    let store = b.open().await;
    store.enqueue_job(&job("j", 2)).await.expect("enqueue");
    let now = now_ms();
    for attempt in 1..=2 {
        store
            .ack_job("j", attempt - 1, "a", "l", now - 1)
            .await
            .expect("ack");
        // A live lease is not touched.
        store
            .enqueue_job(&job(&format!("live{attempt}"), 1))
            .await
            .expect("enqueue");
        let expired = store.expire_leases(now).await.expect("expire");
        assert_eq!(expired.len(), 1);
        let want = if attempt == 1 { QUEUED } else { FAILED };
        assert_eq!(expired[0].job.status, want, "attempt {attempt}");
    }
    let failed = store.get_agent_job("j").await.expect("job");
    assert!(failed.error.expect("why").contains("attempt 2 of 2"));
    assert!(store.expire_leases(now).await.expect("expire").is_empty());
}

async fn tokens_are_found_by_hash_until_revoked_and_audited<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .create_agent_token("atok-1", "ci", "abc", "admin")
        .await
        .expect("create");
    assert_eq!(
        store
            .use_agent_token("abc")
            .await
            .expect("use")
            .map(|t| t.id),
        Some("atok-1".into())
    );
    assert!(store.use_agent_token("abd").await.expect("use").is_none());
    let listed = store.list_agent_tokens().await.expect("list");
    assert!(listed[0].last_used_ms.is_some());
    store
        .revoke_agent_token("atok-1", "admin")
        .await
        .expect("revoke");
    assert!(store.use_agent_token("abc").await.expect("use").is_none());
    assert!(matches!(
        store.revoke_agent_token("atok-1", "admin").await,
        Err(StoreError::NotFound)
    ));
    let audit = BuildStore::audit_log(&store, 10).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"agent_token.create"), "{actions:?}");
    assert!(actions.contains(&"agent_token.revoke"), "{actions:?}");
}

async fn cancelling_fails_a_queued_job_and_flags_a_leased_one<B: Backend>(b: &B) {
    let store = b.open().await;
    store.enqueue_job(&job("q", 1)).await.expect("enqueue");
    assert_eq!(store.cancel_job("q").await.expect("cancel").status, FAILED);
    store.enqueue_job(&job("l", 1)).await.expect("enqueue");
    let now = now_ms();
    store
        .ack_job("l", 0, "a", "x", now + 60_000)
        .await
        .expect("ack");
    let leased = store.cancel_job("l").await.expect("cancel");
    assert_eq!(leased.status, LEASED);
    assert!(leased.cancel_requested);
    assert_eq!(
        store.get_agent_job("q").await.expect("q").error.as_deref(),
        Some("cancelled")
    );
}

/// A `command` job keeps what its agent reported (its waiter reads it from
/// the store, across a restart), and only under the lease's epoch.
async fn command_jobs_keep_their_result_and_outlive_a_restart<B: Backend>(b: &B) {
    let store = b.open().await;
    let mut command = job("cmd", 2);
    command.kind = "command".into();
    store.enqueue_job(&command).await.expect("enqueue");
    assert_eq!(store.get_agent_job("cmd").await.expect("cmd").result, None);
    let now = now_ms();
    let leased = store
        .ack_job("cmd", 0, "a", "x", now + 60_000)
        .await
        .expect("ack");
    assert_eq!(store.get_agent_job("cmd").await.expect("c").status, LEASED);
    let report = serde_json::json!({"exit_code": 3, "stdout": "out", "stderr": "err"});
    let stale = store
        .finish_agent_job_with_result("cmd", leased.lease_epoch - 1, FAILED, None, &report)
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.get_agent_job("cmd").await.expect("c").result, None);
    let done = store
        .finish_agent_job_with_result("cmd", leased.lease_epoch, FAILED, Some("exit 3"), &report)
        .await
        .expect("finish");
    assert_eq!(done.status, FAILED);
    assert_eq!(done.result.as_ref(), Some(&report));
    let read = store.get_agent_job("cmd").await.expect("c");
    assert_eq!(read.result, Some(report));
    assert_eq!(read.error.as_deref(), Some("exit 3"));
}

#[test]
fn labels_parse_and_match_as_supersets() {
    assert_eq!(parse_labels(" linux,docker, ,linux"), ["docker", "linux"]);
    let have = parse_labels("linux,docker,gpu");
    assert!(labels_match(&have, &parse_labels("docker,linux")));
    assert!(labels_match(&have, &[]));
    assert!(!labels_match(
        &parse_labels("linux"),
        &parse_labels("linux,docker")
    ));
}

/// Several servers (here: two stores on one database, eight tasks) race to
/// acknowledge every job's first attempt (each as if offered it): each job
/// is leased once, to the acknowledgement that won.
async fn racing_servers_lease_each_job_once<B: Backend>(b: &B) {
    let servers = [Arc::new(b.open().await), Arc::new(b.open().await)];
    const JOBS: usize = 12;
    const RACERS: usize = 8;
    for i in 0..JOBS {
        AgentStore::enqueue_job(&*servers[0], &job(&format!("j{i:02}"), 3))
            .await
            .expect("enqueue");
    }
    let now = now_ms();
    let want: Vec<String> = (0..JOBS).map(|i| format!("j{i:02}")).collect();
    let mut tasks = Vec::new();
    for racer in 0..RACERS {
        let store = servers[racer % 2].clone();
        let ids = want.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for id in &ids {
                let agent = format!("agent-{racer}");
                match AgentStore::ack_job(&*store, id, 0, &agent, "lease", now + 60_000).await {
                    Ok(job) => won.push((job.id, agent)),
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("ack {id}: {e}"),
                }
            }
            won
        }));
    }
    let mut leases = Vec::new();
    for t in tasks {
        leases.extend(t.await.expect("join"));
    }
    leases.sort();
    assert_eq!(
        leases.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        want,
        "each job leased exactly once"
    );
    for (id, agent) in &leases {
        let job = AgentStore::get_agent_job(&*servers[1], id)
            .await
            .expect("job");
        assert_eq!(
            (job.status.as_str(), job.lease_epoch, job.attempts),
            (LEASED, 1, 1)
        );
        assert_eq!(job.agent_id.as_ref(), Some(agent), "{id}");
    }
}

/// Every server reaps expired leases: two stores on one database, racing,
/// hand each expired lease to exactly one of them.
async fn racing_reapers_expire_each_lease_once<B: Backend>(b: &B) {
    let servers = [Arc::new(b.open().await), Arc::new(b.open().await)];
    const JOBS: usize = 12;
    let now = now_ms();
    for i in 0..JOBS {
        let id = format!("j{i:02}");
        let store = &*servers[0];
        store.enqueue_job(&job(&id, 3)).await.expect("enqueue");
        store.ack_job(&id, 0, "a", "l", now - 1).await.expect("ack");
    }
    let mut tasks = Vec::new();
    for reaper in 0..6 {
        let store = servers[reaper % 2].clone();
        tasks.push(tokio::spawn(async move {
            AgentStore::expire_leases(&*store, now)
                .await
                .expect("expire")
        }));
    }
    let mut expired = Vec::new();
    for t in tasks {
        expired.extend(t.await.expect("join"));
    }
    let mut ids: Vec<String> = expired.iter().map(|e| e.job.id.clone()).collect();
    ids.sort();
    let want: Vec<String> = (0..JOBS).map(|i| format!("j{i:02}")).collect();
    assert_eq!(ids, want, "each expired lease reaped exactly once");
    assert!(expired.iter().all(|e| e.job.status == QUEUED));
    assert!(expired.iter().all(|e| e.agent_id.as_deref() == Some("a")));
}

/// The states of many jobs in one read: those that exist, with where they
/// stand; unknown ids are left out; more ids than one statement takes.
async fn job_states_are_read_for_many_jobs_at_once<B: Backend>(b: &B) {
    let store = b.open().await;
    for i in 0..3 {
        store
            .enqueue_job(&job(&format!("j{i}"), 3))
            .await
            .expect("enqueue");
    }
    let now = now_ms();
    store
        .ack_job("j1", 0, "agent-7", "lease", now + 30_000)
        .await
        .expect("ack");
    let mut ids: Vec<String> = (0..1200).map(|i| format!("missing-{i}")).collect();
    ids.extend(["j0", "j1", "j2"].map(String::from));
    let mut states = store.job_states(&ids).await.expect("states");
    states.sort_by(|a, b| a.id.cmp(&b.id));
    let seen: Vec<(&str, &str, u32, Option<&str>)> = states
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.status.as_str(),
                s.attempts,
                s.agent_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("j0", QUEUED, 0, None),
            ("j1", LEASED, 1, Some("agent-7")),
            ("j2", QUEUED, 0, None)
        ]
    );
    assert!(store.job_states(&[]).await.expect("none").is_empty());
}

/// The next news on `feed`, waiting for it (a notification comes once
/// its statement commits, on a connection of its own).
async fn next_news(feed: &mut gantry_store::QueueFeed) -> QueueNews {
    tokio::time::timeout(std::time::Duration::from_secs(30), feed.recv())
        .await
        .expect("news within 30 s")
        .expect("the feed is open")
}

/// Two servers' stores on one database ("here" and "there"), and here's
/// feed of news: `None` for a store nothing else can share (SQLite), which
/// has no feed to follow.
async fn two_servers<B: Backend>(b: &B) -> Option<(B::Store, B::Store, gantry_store::QueueFeed)> {
    let here = b.open().await;
    let there = b.open().await;
    here.set_server_id("server-here");
    there.set_server_id("server-there");
    let feed = here.queue_feed().await.expect("feed");
    assert_eq!(
        feed.is_some(),
        B::SHARED,
        "a shared store, and only one, has news"
    );
    Some((here, there, feed?))
}

async fn a_job_queued_through_one_server_is_news_to_the_others<B: Backend>(b: &B) {
    let Some((here, there, mut feed)) = two_servers(b).await else {
        return;
    };
    // This server's own jobs are not news to it; the other's are, with
    // their labels.
    here.enqueue_job(&job("mine", 3)).await.expect("enqueue");
    let mut theirs = job("theirs", 1);
    theirs.labels = vec!["docker".into(), "linux".into()];
    there.enqueue_job(&theirs).await.expect("enqueue");
    assert_eq!(
        next_news(&mut feed).await,
        QueueNews::Queued {
            labels: Some(vec!["docker".into(), "linux".into()])
        }
    );
    // Labels too long to tell: news all the same, without them.
    let mut long = job("long", 1);
    long.labels = (0..60).map(|i| format!("{i:0>90}")).collect();
    there.enqueue_job(&long).await.expect("enqueue");
    assert_eq!(
        next_news(&mut feed).await,
        QueueNews::Queued { labels: None }
    );
    // Queued again by the other server's reaper: news again.
    let now = now_ms();
    there
        .ack_job("mine", 0, "agent-1", "lease", now - 1)
        .await
        .expect("ack");
    let expired = there.expire_leases(now).await.expect("expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(
        next_news(&mut feed).await,
        QueueNews::Queued {
            labels: Some(vec!["linux".into()])
        }
    );
    // And nothing else: not the other server's job it failed for good, nor
    // this server's own jobs.
    here.enqueue_job(&job("mine-too", 1))
        .await
        .expect("enqueue");
    there
        .ack_job("theirs", 0, "agent-1", "lease", now - 1)
        .await
        .expect("ack");
    assert_eq!(there.expire_leases(now).await.expect("expire").len(), 1);
    there.enqueue_job(&job("last", 1)).await.expect("enqueue");
    assert_eq!(
        next_news(&mut feed).await,
        QueueNews::Queued {
            labels: Some(vec!["linux".into()])
        },
        "the next news is the last job's"
    );
    assert!(feed.try_recv().is_err(), "no more news");
}

async fn a_server_alone_tells_nobody_of_its_jobs<B: Backend>(b: &B) {
    let Some((here, there, mut feed)) = two_servers(b).await else {
        return;
    };
    // The other server's heartbeat finds no other server's row: it sends
    // no news (a NOTIFY serialises commits).
    there
        .register_server("server-there", "host", now_ms())
        .await
        .expect("register");
    assert!(
        there
            .beat_server("server-there", now_ms())
            .await
            .expect("beat")
    );
    there.enqueue_job(&job("quiet", 1)).await.expect("enqueue");
    // Once this server has a row, the other's next heartbeat sees it.
    here.register_server("server-here", "host", now_ms())
        .await
        .expect("register");
    there
        .beat_server("server-there", now_ms())
        .await
        .expect("beat");
    there.enqueue_job(&job("told", 1)).await.expect("enqueue");
    assert_eq!(
        next_news(&mut feed).await,
        QueueNews::Queued {
            labels: Some(vec!["linux".into()])
        },
        "news of the job queued once another server was seen, and only of it"
    );
    // (Had the first job been told too, this would be the second news.)
    let mut second = job("told-again", 1);
    second.labels = vec!["second".into()];
    there.enqueue_job(&second).await.expect("enqueue");
    assert_eq!(
        next_news(&mut feed).await,
        QueueNews::Queued {
            labels: Some(vec!["second".into()])
        }
    );
}

/// A job queued with lines for its build's log: both in one write, the
/// lines numbered after the log's last; a job id already taken queues
/// nothing and appends nothing.
async fn a_job_and_its_builds_lines_are_queued_in_one_write<B: Backend>(b: &B) {
    let store = b.open().await;
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store
            .append_log_lines("p:1", &lines(&["checked out"]))
            .await
            .expect("a line before"),
        1
    );
    let queued = store
        .enqueue_job_with_log(&job("j1", 3), "p:1", &lines(&["waiting", "still"]))
        .await
        .expect("enqueue");
    assert_eq!((queued.id.as_str(), queued.status.as_str()), ("j1", QUEUED));
    let taken = store
        .enqueue_job_with_log(&job("j1", 3), "p:1", &lines(&["twice"]))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let log: Vec<(u64, String)> = store
        .log_lines("p:1", 0, 100)
        .await
        .expect("log")
        .into_iter()
        .map(|l| (l.seq, l.text))
        .collect();
    assert_eq!(
        log,
        [
            (1, "checked out".to_owned()),
            (2, "waiting".to_owned()),
            (3, "still".to_owned())
        ]
    );
    // No lines: the job alone, and the log as it was.
    store
        .enqueue_job_with_log(&job("j2", 3), "p:1", &[])
        .await
        .expect("enqueue without lines");
    assert_eq!(store.log_lines("p:1", 0, 100).await.expect("log").len(), 3);
    assert_eq!(
        store.get_agent_job("j2").await.expect("queued").status,
        QUEUED
    );
}

both_stores!(
    a_job_queued_through_one_server_is_news_to_the_others,
    a_server_alone_tells_nobody_of_its_jobs,
    of_two_acknowledgements_of_one_attempt_exactly_one_wins,
    a_stale_epoch_is_fenced_off_renewals_and_results,
    expiry_requeues_until_max_attempts_then_fails,
    tokens_are_found_by_hash_until_revoked_and_audited,
    cancelling_fails_a_queued_job_and_flags_a_leased_one,
    racing_servers_lease_each_job_once,
    racing_reapers_expire_each_lease_once,
    command_jobs_keep_their_result_and_outlive_a_restart,
    job_states_are_read_for_many_jobs_at_once,
    a_job_and_its_builds_lines_are_queued_in_one_write,
);
