//! Server identity and ownership, on both stores: builds and executions a
//! server's store creates are owned by that server; work is taken over only
//! from a server whose heartbeat is stale (or whose row is gone); of
//! several stores racing to take work over, each row goes to exactly one;
//! an agent job's log cursor and result are fenced by its lease; a server
//! whose work was taken over cannot write to it any more; events relayed
//! through the Step Functions inbox are recorded once and settled once.

use std::collections::HashSet;
use std::sync::Arc;

use gantry_store::{
    AgentStore, BuildStore, BuildUpdate, ChunkAndEnd, ChunkStored, ExecutionCompletion,
    HistoryRecord, InboxOutcome, JobEnd, JournalAppend, NewAgentJob, NewBuild, NewExecution,
    NewInboxEntry, NewProject, OwnedWork, ServerStore, StoreError, WorkflowStore, now_ms,
};
use serde_json::json;

#[macro_use]
mod common;
use common::Backend;

async fn project(store: &impl BuildStore) {
    store
        .create_project(
            &NewProject {
                name: "p".into(),
                project: json!({"name": "p"}),
            },
            "admin",
        )
        .await
        .expect("project");
}

async fn build(store: &impl BuildStore, n: usize) -> String {
    let id = format!("p:{n:08}");
    store
        .create_build(
            &NewBuild {
                id: id.clone(),
                project: "p".into(),
                status: "IN_PROGRESS".into(),
                current_phase: "SUBMITTED".into(),
                build: json!({}),
                overrides: json!({}),
                start_ms: 1,
            },
            "admin",
        )
        .await
        .expect("build");
    id
}

fn execution(arn: &str) -> (NewExecution, JournalAppend) {
    (
        NewExecution {
            arn: arn.into(),
            name: arn.into(),
            machine_arn: "arn:sm:m".into(),
            definition: "{}".into(),
            revision: 1,
            role_arn: "role".into(),
            input: "{}".into(),
            start_ms: 10,
        },
        JournalAppend {
            execution_arn: arn.into(),
            seq: 1,
            at_ms: 10,
            event: json!({"type": "Start"}),
            history: vec![HistoryRecord {
                id: 1,
                at_ms: 10,
                event_type: "ExecutionStarted".into(),
                previous_id: None,
                details: json!({}),
            }],
            timers_started: vec![],
            timers_removed: vec![],
            tokens_opened: vec![],
            tokens_closed: vec![],
            completion: None,
            actor: "system".into(),
            audit_action: None,
            inbox_id: None,
        },
    )
}

async fn work_is_owned_by_its_creator_and_taken_over_only_from_a_stale_owner<B: Backend>(b: &B) {
    let a = b.open().await;
    a.set_server_id("server-a");
    a.register_server("server-a", "host-a", 10_000)
        .await
        .expect("register a");
    a.register_server("server-b", "host-b", 10_000)
        .await
        .expect("register b");
    project(&a).await;
    let running = build(&a, 1).await;
    let finished = build(&a, 2).await;
    a.update_build(
        &finished,
        &BuildUpdate {
            status: "SUCCEEDED".into(),
            current_phase: "COMPLETED".into(),
            build: json!({}),
            end_ms: Some(2),
        },
        "system",
    )
    .await
    .expect("finish");
    let (x, first) = execution("arn:x:a");
    a.create_execution(&x, &first, "admin")
        .await
        .expect("execution");
    assert_eq!(
        a.owner_of(OwnedWork::Builds, &running)
            .await
            .expect("owner"),
        Some("server-a".into())
    );
    assert_eq!(
        a.owner_of(OwnedWork::StateMachineExecutions, "arn:x:a")
            .await
            .expect("owner"),
        Some("server-a".into())
    );
    // A's heartbeat (10 000) is not older than the staleness bound: B takes nothing.
    for work in [OwnedWork::Builds, OwnedWork::StateMachineExecutions] {
        assert!(
            a.take_over(work, "server-b", 10_000)
                .await
                .expect("sweep")
                .is_empty()
        );
    }
    // B keeps beating, A does not: A is stale, and B takes its unfinished work.
    assert!(a.beat_server("server-b", 40_000).await.expect("beat"));
    let taken = a
        .take_over(OwnedWork::Builds, "server-b", 30_000)
        .await
        .expect("sweep");
    assert_eq!(taken.len(), 1, "only the running build: {taken:?}");
    assert_eq!(taken[0].id, running);
    assert_eq!(taken[0].group, "p");
    assert_eq!(taken[0].previous_owner.as_deref(), Some("server-a"));
    assert_eq!(
        a.owner_of(OwnedWork::Builds, &running)
            .await
            .expect("owner"),
        Some("server-b".into())
    );
    assert_eq!(
        a.owner_of(OwnedWork::Builds, &finished)
            .await
            .expect("owner"),
        Some("server-a".into()),
        "finished work keeps its owner"
    );
    // B does not take from itself; A, now live again, does not take from live B.
    assert!(
        a.take_over(OwnedWork::Builds, "server-b", 30_000)
            .await
            .expect("again")
            .is_empty()
    );
    assert!(a.beat_server("server-a", 40_000).await.expect("beat"));
    assert!(
        a.take_over(OwnedWork::Builds, "server-a", 30_000)
            .await
            .expect("a")
            .is_empty()
    );
    // A server that declares the others dead (a single SQLite server at its
    // start) takes their work at once, however fresh their heartbeats.
    assert_eq!(a.remove_other_servers("server-c").await.expect("remove"), 2);
    a.register_server("server-c", "host-c", 40_000)
        .await
        .expect("register c");
    let execs = a
        .take_over(OwnedWork::StateMachineExecutions, "server-c", 0)
        .await
        .expect("sweep");
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0].group, "arn:sm:m");
    assert_eq!(
        a.servers()
            .await
            .expect("servers")
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["server-c"]
    );
    // A beat from a server whose row was removed says so, and adds it back.
    assert!(!a.beat_server("server-a", 41_000).await.expect("beat"));
    assert_eq!(a.servers().await.expect("servers").len(), 2);
    // A server that stops removes its row: its work is free at once (as is
    // the build of B, whose row went above).
    let again = build(&a, 3).await;
    a.remove_server("server-a").await.expect("remove");
    let mut taken: Vec<String> = a
        .take_over(OwnedWork::Builds, "server-c", 0)
        .await
        .expect("sweep")
        .into_iter()
        .map(|t| t.id)
        .collect();
    taken.sort();
    assert_eq!(taken, [running.clone(), again]);
}

async fn of_two_stores_racing_to_take_over_each_row_goes_to_exactly_one<B: Backend>(b: &B) {
    let creator = b.open().await;
    creator.set_server_id("dead");
    project(&creator).await;
    let mut all = HashSet::new();
    for n in 0..40 {
        all.insert(build(&creator, n).await);
    }
    // Two stores of their own (two connection pools, as two servers have).
    let one = Arc::new(b.open().await);
    let two = Arc::new(b.open().await);
    let now = now_ms();
    one.register_server("one", "h", now).await.expect("one");
    two.register_server("two", "h", now).await.expect("two");
    let sweep = |store: Arc<B::Store>, me: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..5 {
                let taken = store
                    .take_over(OwnedWork::Builds, me, now - 60_000)
                    .await
                    .expect("sweep");
                mine.extend(taken.into_iter().map(|t| t.id));
            }
            mine
        })
    };
    let (a, b2) = tokio::join!(sweep(one.clone(), "one"), sweep(two.clone(), "two"));
    let (a, b2) = (a.expect("join"), b2.expect("join"));
    let a_set: HashSet<_> = a.iter().cloned().collect();
    let b_set: HashSet<_> = b2.iter().cloned().collect();
    assert_eq!(
        a.len() + b2.len(),
        all.len(),
        "each row taken once: {a:?} {b2:?}"
    );
    assert!(a_set.is_disjoint(&b_set));
    assert_eq!(&a_set | &b_set, all);
    for id in &all {
        let owner = one.owner_of(OwnedWork::Builds, id).await.expect("owner");
        let expected = if a_set.contains(id) { "one" } else { "two" };
        assert_eq!(owner.as_deref(), Some(expected), "{id}");
    }
}

/// Job `j`, queued and leased (its first attempt) to agent `a1`
/// until `expires_in_ms` from now; returns (now, the lease's epoch).
async fn leased_job<S: AgentStore>(store: &S, expires_in_ms: i64) -> (i64, i64) {
    lease_job(store, "j", expires_in_ms).await
}

/// Queues job `id` and leases it for `expires_in_ms`: (now, the epoch).
async fn lease_job<S: AgentStore>(store: &S, id: &str, expires_in_ms: i64) -> (i64, i64) {
    store
        .enqueue_job(&NewAgentJob {
            id: id.into(),
            kind: "codebuild".into(),
            labels: vec![],
            payload: json!({}),
            max_attempts: 3,
        })
        .await
        .expect("enqueue");
    let now = now_ms();
    let leased = store
        .ack_job(id, 0, "a1", "l1", now + expires_in_ms)
        .await
        .expect("ack");
    (now, leased.lease_epoch)
}

async fn a_jobs_log_cursor_and_result_are_fenced_by_its_lease<B: Backend>(b: &B) {
    let store = b.open().await;
    // A lease that has already run out, for the expiry below.
    let (now, e) = leased_job(&store, -1).await;
    assert_eq!(store.job_log_acked("j", e).await.expect("acked"), 0);
    assert_eq!(
        store
            .store_log_chunk("log", &[], "j", e, 1)
            .await
            .expect("1"),
        ChunkStored {
            acked: 1,
            stored: true
        }
    );
    assert_eq!(
        store
            .store_log_chunk("log", &[], "j", e, 1)
            .await
            .expect("1 again"),
        ChunkStored {
            acked: 1,
            stored: false
        }
    );
    assert_eq!(
        store
            .store_log_chunk("log", &[], "j", e, 3)
            .await
            .expect("gap"),
        ChunkStored {
            acked: 1,
            stored: false
        }
    );
    assert_eq!(
        store
            .store_log_chunk("log", &[], "j", e, 2)
            .await
            .expect("2"),
        ChunkStored {
            acked: 2,
            stored: true
        }
    );
    assert_eq!(
        store
            .store_log_chunk("log", &[], "j", e + 1, 1)
            .await
            .expect("other"),
        ChunkStored {
            acked: 0,
            stored: false
        }
    );
    assert_eq!(store.job_result("j").await.expect("none"), None);
    let result = json!({"epoch": e, "build": {"buildStatus": "SUCCEEDED"}});
    assert!(matches!(
        store.record_job_result("j", e + 1, &result).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .record_job_result("j", e, &result)
        .await
        .expect("record");
    assert_eq!(store.job_result("j").await.expect("result"), Some(result));
    // The lease runs out; the next lease starts with no cursor and no result.
    store.expire_leases(now).await.expect("expire");
    // Queued again under the same epoch until the next lease: the old
    // lease's next chunk is refused all the same.
    assert!(
        !store
            .store_log_chunk("log", &["late".into()], "j", e, 3)
            .await
            .expect("late chunk")
            .stored
    );
    let second = store
        .ack_job("j", 1, "a2", "l2", now + 60_000)
        .await
        .expect("ack");
    assert_eq!(
        store
            .job_log_acked("j", second.lease_epoch)
            .await
            .expect("acked"),
        0
    );
    assert_eq!(store.job_result("j").await.expect("cleared"), None);
    assert!(matches!(
        store.job_result("missing").await,
        Err(StoreError::NotFound)
    ));
}

/// A log chunk's lines and its cursor are stored together or not at all:
/// a chunk out of order, resent or of a stale lease stores no line.
async fn a_log_chunk_and_its_cursor_are_one_write<B: Backend>(b: &B) {
    let store = b.open().await;
    let (_, e) = leased_job(&store, 60_000).await;
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let acked = store
        .store_log_chunk("log-1", &lines(&["a", "b", "c"]), "j", e, 1)
        .await
        .expect("chunk 1");
    assert_eq!(
        acked,
        ChunkStored {
            acked: 1,
            stored: true
        }
    );
    // Resent, after a gap, or of another lease: nothing stored.
    for (seq, epoch) in [(1, e), (3, e), (2, e + 1)] {
        let acked = store
            .store_log_chunk("log-1", &lines(&["dup"]), "j", epoch, seq)
            .await
            .expect("refused chunk");
        let expected = ChunkStored {
            acked: if epoch == e { 1 } else { 0 },
            stored: false,
        };
        assert_eq!(acked, expected, "seq {seq} epoch {epoch}");
    }
    // A long chunk stays numbered, in its order.
    let many: Vec<String> = (0..700).map(|i| format!("line {i}")).collect();
    assert_eq!(
        store
            .store_log_chunk("log-1", &many, "j", e, 2)
            .await
            .expect("chunk 2"),
        ChunkStored {
            acked: 2,
            stored: true
        }
    );
    // An empty chunk moves the cursor too.
    assert_eq!(
        store
            .store_log_chunk("log-1", &[], "j", e, 3)
            .await
            .expect("chunk 3"),
        ChunkStored {
            acked: 3,
            stored: true
        }
    );
    let got: Vec<(u64, String)> = store
        .log_lines("log-1", 0, 1000)
        .await
        .expect("lines")
        .into_iter()
        .map(|l| (l.seq, l.text))
        .collect();
    assert_eq!(got.len(), 703);
    assert_eq!(
        got[..3],
        [(1, "a".into()), (2, "b".into()), (3, "c".into())]
    );
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, (seq, _))| *seq == i as u64 + 1)
    );
    assert!(
        got[3..]
            .iter()
            .enumerate()
            .all(|(i, (_, text))| *text == format!("line {i}"))
    );
    assert!(!got.iter().any(|(_, l)| l == "dup"));
    // Appending goes on from the last line.
    assert_eq!(
        store
            .append_log_lines("log-1", &lines(&["x", "y"]))
            .await
            .expect("append"),
        705
    );
}

/// A job's last chunk and its end in one write: the end only when the
/// lease is still the job's and every chunk up to `last_seq` is stored
/// (the one written with it included); the chunk is stored either way.
async fn a_last_chunk_and_the_jobs_end_are_one_write<B: Backend>(b: &B) {
    let store = b.open().await;
    let (_, e) = leased_job(&store, 60_000).await;
    let result = json!({"epoch": e, "build": {"buildStatus": "SUCCEEDED"}});
    let end = |last_seq| JobEnd {
        status: "SUCCEEDED",
        error: None,
        result: &result,
        last_seq,
        build: None,
    };
    // Chunk 2 with a result claiming 2 chunks, chunk 1 missing: neither.
    let early = store
        .store_last_chunk_and_finish("log-1", &["two".into()], "j", e, 2, &end(2))
        .await
        .expect("early");
    assert_eq!(
        early,
        ChunkAndEnd {
            chunk: ChunkStored {
                acked: 0,
                stored: false
            },
            ended: false,
            build_ended: false
        }
    );
    // Chunk 1 with a result claiming 2: the chunk is stored, the job goes on.
    let short = store
        .store_last_chunk_and_finish("log-1", &["one".into()], "j", e, 1, &end(2))
        .await
        .expect("short");
    assert_eq!(
        short,
        ChunkAndEnd {
            chunk: ChunkStored {
                acked: 1,
                stored: true
            },
            ended: false,
            build_ended: false
        }
    );
    assert_eq!(store.job_result("j").await.expect("none yet"), None);
    // Of another lease: nothing.
    let stale = store
        .store_last_chunk_and_finish("log-1", &["x".into()], "j", e + 1, 2, &end(2))
        .await
        .expect("stale");
    assert!(!stale.ended && !stale.chunk.stored, "{stale:?}");
    // The real last chunk: stored, and the job ends with its result.
    let done = store
        .store_last_chunk_and_finish("log-1", &["two".into()], "j", e, 2, &end(2))
        .await
        .expect("done");
    assert_eq!(
        done,
        ChunkAndEnd {
            chunk: ChunkStored {
                acked: 2,
                stored: true
            },
            ended: true,
            build_ended: false
        }
    );
    let job = store.get_agent_job("j").await.expect("job");
    assert_eq!(job.status, "SUCCEEDED");
    assert_eq!(
        store.job_result("j").await.expect("kept"),
        Some(result.clone())
    );
    // Resent (its answer lost): the job has ended, nothing more is stored.
    let again = store
        .store_last_chunk_and_finish("log-1", &["two".into()], "j", e, 2, &end(2))
        .await
        .expect("again");
    assert!(!again.ended && !again.chunk.stored, "{again:?}");
    let got: Vec<String> = store
        .log_lines("log-1", 0, 100)
        .await
        .expect("lines")
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(got, ["one", "two"]);
}

/// A result resent after its answer was lost, whose last chunk was stored
/// the first time: the chunk is not stored again, and the job ends (every
/// chunk is in). Lines the server writes to the same log between chunks
/// are numbered in order with the chunks'.
async fn a_resent_last_chunk_ends_the_job_once_every_chunk_is_in<B: Backend>(b: &B) {
    let store = b.open().await;
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (_, e) = leased_job(&store, 60_000).await;
    let result = json!({"epoch": e});
    let end = JobEnd {
        status: "FAILED",
        error: Some("exit status 1"),
        result: &result,
        last_seq: 2,
        build: None,
    };
    let first = store
        .store_log_chunk("log-1", &lines(&["a", "b"]), "j", e, 1)
        .await
        .expect("1");
    assert!(first.stored, "{first:?}");
    assert_eq!(
        store
            .append_log_lines("log-1", &lines(&["server"]))
            .await
            .expect("server's line"),
        3
    );
    let second = store
        .store_log_chunk("log-1", &lines(&["c"]), "j", e, 2)
        .await
        .expect("2");
    assert_eq!(
        second,
        ChunkStored {
            acked: 2,
            stored: true
        }
    );
    let resent = store
        .store_last_chunk_and_finish("log-1", &lines(&["c"]), "j", e, 2, &end)
        .await
        .expect("resent");
    assert_eq!(
        resent,
        ChunkAndEnd {
            chunk: ChunkStored {
                acked: 2,
                stored: false
            },
            ended: true,
            build_ended: false
        }
    );
    let job = store.get_agent_job("j").await.expect("job");
    assert_eq!(
        (job.status.as_str(), job.error.as_deref()),
        ("FAILED", Some("exit status 1"))
    );
    assert_eq!(
        store.job_result("j").await.expect("kept"),
        Some(result.clone())
    );
    // Once more: the job has ended, so nothing changes.
    let again = store
        .store_last_chunk_and_finish("log-1", &lines(&["c"]), "j", e, 2, &end)
        .await
        .expect("again");
    assert!(!again.ended && !again.chunk.stored, "{again:?}");
    let got: Vec<(u64, String)> = store
        .log_lines("log-1", 0, 100)
        .await
        .expect("lines")
        .into_iter()
        .map(|l| (l.seq, l.text))
        .collect();
    assert_eq!(
        got,
        [
            (1, "a".to_owned()),
            (2, "b".to_owned()),
            (3, "server".to_owned()),
            (4, "c".to_owned())
        ]
    );
}

/// Journal entry `seq` of `arn` (its history event numbered `seq`).
fn next_entry(arn: &str, seq: u64) -> JournalAppend {
    let (_, mut e) = execution(arn);
    e.seq = seq;
    e.at_ms = 10 + seq as i64;
    e.event = json!({"type": "TimerFired", "n": seq});
    e.history[0].id = seq;
    e.history[0].event_type = "WaitStateExited".into();
    e.history[0].previous_id = Some(seq - 1);
    e
}

fn ended(mut e: JournalAppend) -> JournalAppend {
    e.completion = Some(ExecutionCompletion {
        status: "SUCCEEDED".into(),
        output: Some("{}".into()),
        error: None,
        cause: None,
        stop_ms: e.at_ms,
    });
    e
}

fn build_end(status: &str) -> BuildUpdate {
    BuildUpdate {
        status: status.into(),
        current_phase: "COMPLETED".into(),
        build: json!({"by": status}),
        end_ms: Some(5),
    }
}

/// A (paused past its heartbeat's time to live) loses its build and its
/// execution to B; A's late journal entries (one by one or in a group
/// commit), its execution end and its build end are refused, B's go in.
async fn a_server_whose_work_was_taken_over_cannot_write_to_it<B: Backend>(b: &B) {
    let a = b.open().await;
    a.set_server_id("server-a");
    a.register_server("server-a", "host-a", 10_000)
        .await
        .expect("register a");
    project(&a).await;
    let id = build(&a, 1).await;
    let (x, first) = execution("arn:x:fenced");
    a.create_execution(&x, &first, "admin")
        .await
        .expect("execution");
    a.append_journal(&next_entry("arn:x:fenced", 2))
        .await
        .expect("the owner appends");
    assert_eq!(
        a.owned(OwnedWork::StateMachineExecutions, "server-a")
            .await
            .expect("owned"),
        ["arn:x:fenced"]
    );

    let other = b.open().await;
    other.set_server_id("server-b");
    other
        .register_server("server-b", "host-b", 40_000)
        .await
        .expect("register b");
    for work in [OwnedWork::Builds, OwnedWork::StateMachineExecutions] {
        assert_eq!(
            other
                .take_over(work, "server-b", 30_000)
                .await
                .expect("take over")
                .len(),
            1
        );
    }
    assert!(
        a.owned(OwnedWork::StateMachineExecutions, "server-a")
            .await
            .expect("owned")
            .is_empty(),
        "A can tell it lost the execution"
    );

    // A wakes up and writes what it was about to.
    let late = a.append_journal(&next_entry("arn:x:fenced", 3)).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    let batch = a
        .append_journals(&[ended(next_entry("arn:x:fenced", 3))])
        .await
        .expect("the batch commits");
    assert!(
        matches!(batch[..], [Err(StoreError::Conflict(_))]),
        "{batch:?}"
    );
    let late = a.update_build(&id, &build_end("SUCCEEDED"), "system").await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(a.journal("arn:x:fenced").await.expect("journal").len(), 2);
    assert_eq!(
        a.get_execution("arn:x:fenced")
            .await
            .expect("execution")
            .status,
        "RUNNING"
    );
    let stored = a
        .get_builds(std::slice::from_ref(&id))
        .await
        .expect("build");
    assert_eq!(stored[0].status, "IN_PROGRESS", "A did not end B's build");

    // The new owner goes on.
    other
        .append_journal(&ended(next_entry("arn:x:fenced", 3)))
        .await
        .expect("the new owner appends");
    other
        .update_build(&id, &build_end("FAILED"), "system")
        .await
        .expect("the new owner ends the build");
    assert_eq!(
        a.get_execution("arn:x:fenced")
            .await
            .expect("execution")
            .status,
        "SUCCEEDED"
    );
    // A store without a server id (a tool, `gantry local`) is not fenced.
    let tool = b.open().await;
    tool.update_build(&id, &build_end("STOPPED"), "admin")
        .await
        .expect("no owner to check");
    // An unknown build is still NotFound, not Conflict.
    assert!(matches!(
        a.update_build("p:nope", &build_end("FAILED"), "system")
            .await,
        Err(StoreError::NotFound)
    ));
}

fn inbox_entry(arn: &str, dedup: Option<&str>, n: u64) -> NewInboxEntry {
    NewInboxEntry {
        execution_arn: arn.into(),
        dedup: dedup.map(str::to_owned),
        event: json!({"type": "TaskHeartbeat", "token_sha256": "h", "n": n}),
        actor: "AKID".into(),
        audit_action: Some("task.success".into()),
        created_ms: 100,
    }
}

/// Any server records events for an execution it does not hold; its owner
/// (only) reads them, in order; SendTaskSuccess/Failure of a token is
/// recorded once; an entry is applied with its journal entry, once, or
/// refused by its owner only; an entry left pending when the execution ended
/// counts as refused; settled entries are pruned.
async fn the_inbox_records_events_for_the_owner_and_settles_each_once<B: Backend>(b: &B) {
    let a = b.open().await;
    a.set_server_id("server-a");
    let (x, first) = execution("arn:x:inbox");
    a.create_execution(&x, &first, "admin")
        .await
        .expect("execution");
    let other = b.open().await;
    other.set_server_id("server-b");
    let arn = "arn:x:inbox";

    let success = other
        .post_to_inbox(&inbox_entry(arn, Some("token-1"), 1))
        .await
        .expect("recorded");
    let twice = other
        .post_to_inbox(&inbox_entry(arn, Some("token-1"), 2))
        .await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let beat = other
        .post_to_inbox(&inbox_entry(arn, None, 3))
        .await
        .expect("heartbeat");
    let again = other
        .post_to_inbox(&inbox_entry(arn, None, 4))
        .await
        .expect("heartbeats repeat");
    assert!(matches!(
        other
            .post_to_inbox(&inbox_entry("arn:x:none", None, 5))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        other.inbox_outcome(success).await.expect("outcome"),
        InboxOutcome::Pending
    );
    assert!(
        other
            .inbox_for_owner("server-b")
            .await
            .expect("b's")
            .is_empty()
    );
    let mine = a.inbox_for_owner("server-a").await.expect("a's");
    assert_eq!(
        mine.iter().map(|e| e.id).collect::<Vec<_>>(),
        [success, beat, again]
    );
    assert_eq!(mine[0].event["n"], 1);
    assert_eq!(mine[0].actor, "AKID");
    assert_eq!(mine[0].audit_action.as_deref(), Some("task.success"));

    // Applied with the journal entry it caused.
    let mut applying = next_entry(arn, 2);
    applying.inbox_id = Some(success);
    a.append_journal(&applying).await.expect("append");
    assert_eq!(
        other.inbox_outcome(success).await.expect("outcome"),
        InboxOutcome::Applied
    );
    // Refused by the owner only (B's refusal changes nothing).
    other.refuse_inbox_entry(beat, 200).await.expect("no-op");
    assert_eq!(
        other.inbox_outcome(beat).await.expect("outcome"),
        InboxOutcome::Pending
    );
    a.refuse_inbox_entry(beat, 200).await.expect("refuse");
    assert_eq!(
        other.inbox_outcome(beat).await.expect("outcome"),
        InboxOutcome::Refused
    );
    assert_eq!(
        a.inbox_for_owner("server-a")
            .await
            .expect("a's")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [again]
    );
    // The execution ends with `again` unapplied: it was not applied.
    a.append_journal(&ended(next_entry(arn, 3)))
        .await
        .expect("end");
    assert_eq!(
        other.inbox_outcome(again).await.expect("outcome"),
        InboxOutcome::Refused
    );
    assert!(a.inbox_for_owner("server-a").await.expect("a's").is_empty());
    assert!(matches!(
        other.post_to_inbox(&inbox_entry(arn, None, 6)).await,
        Err(StoreError::NotFound)
    ));
    // Kept a while for the relaying server to read, then pruned.
    assert_eq!(a.prune_inbox(5).await.expect("prune"), 0);
    assert_eq!(a.prune_inbox(now_ms()).await.expect("prune"), 3);
    assert!(matches!(
        other.inbox_outcome(success).await,
        Err(StoreError::NotFound)
    ));
}

async fn build_status(store: &impl BuildStore, id: &str) -> (String, serde_json::Value) {
    let found = store
        .get_builds(&[id.to_owned()])
        .await
        .expect("read")
        .pop()
        .expect("the build");
    (found.status, found.build)
}

/// A build's end written with its job's (the agent's last chunk inside
/// its result): only when the job ends in that write, whether by the
/// chunk completing the log or by a resend once every chunk is in; by the
/// build's owner only (a server that lost the build ends the job, not the
/// build); audited as any build update.
async fn a_builds_end_goes_with_its_jobs_end<B: Backend>(b: &B) {
    let store = b.open().await;
    store.set_server_id("server-a");
    store
        .register_server("server-a", "host-a", 10_000)
        .await
        .expect("register a");
    project(&store).await;
    let first = build(&store, 1).await;
    let (_, e) = lease_job(&store, "j1", 60_000).await;
    let result = json!({"epoch": e});
    let update = build_end("SUCCEEDED");
    let end = |last_seq| JobEnd {
        status: "SUCCEEDED",
        error: None,
        result: &result,
        last_seq,
        build: Some(&update),
    };
    // Chunk 1 of 2: stored; the job goes on, and so does the build.
    let short = store
        .store_last_chunk_and_finish(&first, &["one".into()], "j1", e, 1, &end(2))
        .await
        .expect("short");
    assert!(
        short.chunk.stored && !short.ended && !short.build_ended,
        "{short:?}"
    );
    assert_eq!(build_status(&store, &first).await.0, "IN_PROGRESS");
    // Chunk 2 completes the log: the job and the build end in one write.
    let done = store
        .store_last_chunk_and_finish(&first, &["two".into()], "j1", e, 2, &end(2))
        .await
        .expect("done");
    assert!(
        done.chunk.stored && done.ended && done.build_ended,
        "{done:?}"
    );
    assert_eq!(
        build_status(&store, &first).await,
        ("SUCCEEDED".to_owned(), json!({"by": "SUCCEEDED"}))
    );
    assert_eq!(
        store.get_agent_job("j1").await.expect("job").status,
        "SUCCEEDED"
    );
    let audit = store.audit_log(100).await.expect("audit");
    assert!(
        audit.iter().any(|a| a.actor == "system"
            && a.action == "build.update"
            && a.target == first
            && a.detail == "SUCCEEDED COMPLETED"),
        "{audit:?}"
    );
    // Resent after a lost answer: the job has ended; nothing is written.
    let again = store
        .store_last_chunk_and_finish(&first, &["two".into()], "j1", e, 2, &end(2))
        .await
        .expect("again");
    assert!(!again.ended && !again.build_ended, "{again:?}");

    // The last chunk stored on its own, then the result resent with it:
    // the job ends once every chunk is in, and the build with it.
    let second = build(&store, 2).await;
    let (_, e2) = lease_job(&store, "j2", 60_000).await;
    let result2 = json!({"epoch": e2});
    let failed = build_end("FAILED");
    let end2 = JobEnd {
        status: "FAILED",
        error: Some("exit status 1"),
        result: &result2,
        last_seq: 1,
        build: Some(&failed),
    };
    let chunk = store
        .store_log_chunk(&second, &["only".into()], "j2", e2, 1)
        .await
        .expect("chunk");
    assert!(chunk.stored, "{chunk:?}");
    let resent = store
        .store_last_chunk_and_finish(&second, &["only".into()], "j2", e2, 1, &end2)
        .await
        .expect("resent");
    assert!(
        !resent.chunk.stored && resent.ended && resent.build_ended,
        "{resent:?}"
    );
    assert_eq!(build_status(&store, &second).await.0, "FAILED");

    // A build another server took over: the job ends (its result is kept
    // for the new owner), the build is left to that owner.
    let third = build(&store, 3).await;
    let (_, e3) = lease_job(&store, "j3", 60_000).await;
    let other = b.open().await;
    other.set_server_id("server-b");
    other
        .register_server("server-b", "host-b", 40_000)
        .await
        .expect("register b");
    let taken = other
        .take_over(OwnedWork::Builds, "server-b", 30_000)
        .await
        .expect("take over");
    assert_eq!(taken.len(), 1, "{taken:?}");
    let result3 = json!({"epoch": e3});
    let end3 = JobEnd {
        status: "SUCCEEDED",
        error: None,
        result: &result3,
        last_seq: 1,
        build: Some(&update),
    };
    let late = store
        .store_last_chunk_and_finish(&third, &["x".into()], "j3", e3, 1, &end3)
        .await
        .expect("late");
    assert!(
        late.chunk.stored && late.ended && !late.build_ended,
        "{late:?}"
    );
    assert_eq!(build_status(&store, &third).await.0, "IN_PROGRESS");
    assert_eq!(
        store.job_result("j3").await.expect("kept"),
        Some(result3.clone())
    );
}

both_stores!(
    a_server_whose_work_was_taken_over_cannot_write_to_it,
    the_inbox_records_events_for_the_owner_and_settles_each_once,
    work_is_owned_by_its_creator_and_taken_over_only_from_a_stale_owner,
    of_two_stores_racing_to_take_over_each_row_goes_to_exactly_one,
    a_jobs_log_cursor_and_result_are_fenced_by_its_lease,
    a_log_chunk_and_its_cursor_are_one_write,
    a_last_chunk_and_the_jobs_end_are_one_write,
    a_resent_last_chunk_ends_the_job_once_every_chunk_is_in,
    a_builds_end_goes_with_its_jobs_end,
);
