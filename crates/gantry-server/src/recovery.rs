//! Ownership of in-flight work, and what happens to a dead owner's.
//!
//! Every server process has an id (new at each start) and a row in the
//! `servers` table whose heartbeat it renews every
//! [`Ownership::every`]. Builds, Step Functions executions and pipeline
//! executions are owned by the server that created them (the store stamps
//! its server's id). At start, and then at every heartbeat, a server takes
//! over the work of servers whose heartbeat is older than
//! [`Ownership::stale_after`] (or whose row is gone), one compare-and-swap
//! per row, so exactly one server gets each piece:
//!
//! - a build on the embedded agent died with its server: it is marked
//!   FAILED, its unfinished phase carrying the `SERVER_RESTARTED` context;
//! - a build on a remote agent is not: its agent may still be running it.
//!   The new owner waits for its job again and finishes the build when the
//!   job ends (whichever server took the agent's result);
//! - a Step Functions execution or a pipeline execution is resumed from the
//!   store by its new owner.
//!
//! A server alone on its database (SQLite) knows its previous lives are
//! dead, so at start it drops their rows and takes their work at once.
//! Open agent jobs are left alone: an agent that died loses its lease to
//! the reaper.

use std::sync::Arc;
use std::time::Duration;

use gantry_store::{BuildRecord, BuildUpdate, OwnedWork, Store, StoreError, TakenOver, now_ms};
use serde_json::{Value, json};

use crate::router::AppState;
use crate::worker::phase_json;

/// The phase context's status code for a build the restart interrupted.
pub(crate) const SERVER_RESTARTED: &str = "SERVER_RESTARTED";

/// This server's identity and the heartbeat's timing.
#[derive(Debug, Clone)]
pub(crate) struct Ownership {
    /// The server's id (a UUID, new at each start).
    pub id: String,
    /// How often the heartbeat is renewed and dead servers' work looked for.
    pub every: Duration,
    /// How old a heartbeat is when its server counts as dead.
    pub stale_after: Duration,
}

impl Ownership {
    /// A new identity: timing from the leader election's (renewed as often
    /// as the lease, stale when a lease would have run out), or a lease's
    /// defaults for a server alone on its database.
    pub(crate) fn new(election: Option<&crate::LeaderElection>) -> Ownership {
        let election = election.cloned().unwrap_or_default();
        Ownership {
            id: uuid::Uuid::new_v4().to_string(),
            every: election.renew_every,
            stale_after: election.ttl,
        }
    }

    fn stale_before(&self) -> i64 {
        now_ms().saturating_sub(i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Registers this server; `alone` (no other server shares the database)
/// also declares every other server row dead: this server's previous lives.
pub(crate) async fn register<S: Store>(
    store: &S,
    me: &Ownership,
    alone: bool,
) -> Result<(), StoreError> {
    store.set_server_id(&me.id);
    if alone {
        let gone = store.remove_other_servers(&me.id).await?;
        if gone > 0 {
            tracing::info!(
                servers = gone,
                "this server's previous lives are over; taking their work"
            );
        }
    }
    store
        .register_server(&me.id, &gantry_store::hostname(), now_ms())
        .await
}

/// Takes over dead servers' builds: fails those that ran on the embedded
/// agent, waits again for those on remote agents. Returns the failed ids.
pub(crate) async fn take_over_builds<S: Store>(
    state: &AppState<S>,
    me: &Ownership,
) -> Result<Vec<String>, StoreError> {
    let store = state.store.as_ref();
    let taken = store
        .take_over(OwnedWork::Builds, &me.id, me.stale_before())
        .await?;
    let mut failed = Vec::new();
    for t in taken {
        let Some(record) = store.get_builds(std::slice::from_ref(&t.id)).await?.pop() else {
            continue;
        };
        let uuid = t.id.split_once(':').map_or(t.id.as_str(), |(_, u)| u);
        match store.get_agent_job(&format!("job-{uuid}")).await {
            Ok(_) => {
                tracing::info!(build = %t.id, from = ?t.previous_owner,
                    "took over a remote agent's build; waiting for its job");
                state
                    .runner
                    .reattach(crate::agents::remote::reattached_job(record));
            }
            Err(StoreError::NotFound) => {
                fail_interrupted_build(store, record).await?;
                failed.push(t.id);
            }
            Err(e) => {
                tracing::error!(build = %t.id, error = %e, "could not tell where a taken-over build runs");
            }
        }
    }
    Ok(failed)
}

/// Takes over dead servers' Step Functions executions and resumes them.
pub(crate) async fn take_over_executions<S: Store>(
    state: &AppState<S>,
    me: &Ownership,
) -> Result<Vec<String>, StoreError> {
    let taken = state
        .store
        .take_over(OwnedWork::StateMachineExecutions, &me.id, me.stale_before())
        .await?;
    let arns: Vec<String> = taken.into_iter().map(|t| t.id).collect();
    // Callbacks and stops other servers recorded while the owner was dead
    // (or this server down) are applied there, before the tasks still
    // waited for run again.
    state.engine.resume_taken(&arns).await
}

/// How long settled inbox entries are kept (a relaying server reads its
/// entry's outcome for a few seconds).
const INBOX_KEPT: Duration = Duration::from_secs(60);

/// Takes over dead servers' pipeline executions and resumes them; returns
/// how many actions were started again.
pub(crate) async fn take_over_pipelines<S: Store>(
    state: &AppState<S>,
    me: &Ownership,
) -> Result<usize, String> {
    let taken: Vec<TakenOver> = state
        .store
        .take_over(OwnedWork::PipelineExecutions, &me.id, me.stale_before())
        .await
        .map_err(|e| e.to_string())?;
    if taken.is_empty() {
        return Ok(0);
    }
    state
        .pipelines
        .resume(state, &taken)
        .await
        .map_err(|e| e.to_string())
}

/// Renews this server's heartbeat and takes over dead servers' work, every
/// [`Ownership::every`], for as long as the server runs.
pub(crate) async fn keep_owning<S: Store>(state: AppState<S>, me: Arc<Ownership>) {
    let mut ticks = tokio::time::interval(me.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match state.store.beat_server(&me.id, now_ms()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(server = %me.id,
                "this server's row was gone (declared dead); it is back, but its work may have been taken over"),
            Err(e) => {
                tracing::warn!(error = %e, "renewing this server's heartbeat failed");
                continue;
            }
        }
        // Work taken from this server while it was paused or cut off (its
        // row went stale or was removed): it stops driving it. The store
        // refuses its late journal entries anyway; this stops the timers and
        // the work in memory too.
        match state.engine.release_lost().await {
            Ok(lost) if !lost.is_empty() => tracing::warn!(executions = ?lost,
                "another server took these Step Functions executions over; no longer driving them here"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checking which executions this server still owns failed")
            }
        }
        let kept = i64::try_from(INBOX_KEPT.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = state.store.prune_inbox(now_ms().saturating_sub(kept)).await {
            tracing::warn!(error = %e, "pruning the Step Functions inbox failed");
        }
        match take_over_builds(&state, &me).await {
            Ok(failed) if !failed.is_empty() => {
                tracing::warn!(builds = ?failed, "failed the embedded-agent builds of a dead server");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "taking over a dead server's builds failed"),
        }
        match take_over_executions(&state, &me).await {
            Ok(arns) if !arns.is_empty() => {
                tracing::info!(executions = ?arns, "resumed a dead server's Step Functions executions");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "taking over a dead server's executions failed"),
        }
        match take_over_pipelines(&state, &me).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(actions = n, "resumed a dead server's pipeline actions"),
            Err(e) => tracing::error!(error = %e, "taking over a dead server's pipelines failed"),
        }
    }
}

/// Marks a build whose process died with its server FAILED.
async fn fail_interrupted_build<S: Store>(
    store: &S,
    record: BuildRecord,
) -> Result<(), StoreError> {
    let now = now_ms();
    let message = format!(
        "The Gantry server running this build stopped while the build was in phase {}; the build was marked FAILED when the server restarted (or another server sharing its database took its work over).",
        record.current_phase
    );
    let mut build = record.build.clone();
    interrupt_phases(&mut build, &record.current_phase, now, &message);
    let update = BuildUpdate {
        status: "FAILED".into(),
        current_phase: "COMPLETED".into(),
        build,
        end_ms: Some(now),
    };
    store.update_build(&record.id, &update, "system").await?;
    tracing::warn!(build = %record.id, "marked an interrupted build FAILED");
    Ok(())
}

/// Ends the unfinished phase FAILED with the restart's context (adding the
/// current phase when the list lacks it), then a COMPLETED phase.
fn interrupt_phases(build: &mut Value, current: &str, now: i64, message: &str) {
    let Some(obj) = build.as_object_mut() else {
        return;
    };
    let phases = obj.entry("phases").or_insert_with(|| json!([]));
    let Some(list) = phases.as_array_mut() else {
        return;
    };
    let context = json!({ "statusCode": SERVER_RESTARTED, "message": message });
    let open = list
        .iter_mut()
        .rev()
        .find(|p| p.get("endTime").is_none() && p.get("phaseStatus").is_none());
    match open {
        Some(phase) => {
            phase["phaseStatus"] = json!("FAILED");
            phase["endTime"] = crate::codebuild::timestamp_ms(now);
            phase["contexts"] = json!([context]);
        }
        None => list.push(phase_json(
            current,
            Some("FAILED"),
            now,
            Some(now),
            &[(SERVER_RESTARTED, message)],
        )),
    }
    list.push(phase_json("COMPLETED", None, now, None, &[]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_phase_fails_with_the_restart_context() {
        let mut build = json!({"phases": [
            {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "startTime": 1, "endTime": 1},
            {"phaseType": "BUILD", "startTime": 2},
        ]});
        interrupt_phases(&mut build, "BUILD", 5000, "restarted");
        assert_eq!(build["phases"][1]["phaseStatus"], "FAILED");
        assert_eq!(
            build["phases"][1]["contexts"][0]["statusCode"],
            SERVER_RESTARTED
        );
        assert_eq!(build["phases"][2]["phaseType"], "COMPLETED");
    }
}
