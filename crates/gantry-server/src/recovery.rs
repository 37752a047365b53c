//! Start-up recovery: builds the store says were running were interrupted.
//!
//! The embedded agent's builds die with the server process, so a build
//! still IN_PROGRESS in the database when the server starts can never
//! finish: it is marked FAILED, its unfinished phase carrying a context that
//! says why. (A later issue lets remote agents resume their builds instead.)

use gantry_store::{BuildUpdate, Store, StoreError, now_ms};
use serde_json::{Value, json};

use crate::worker::phase_json;

/// The phase context's status code for a build the restart interrupted.
pub(crate) const SERVER_RESTARTED: &str = "SERVER_RESTARTED";

/// Fails the agent jobs of builds a restart interrupted: their builds were
/// just marked FAILED, and an agent must not pick them up.
pub(crate) async fn fail_orphaned_jobs<S: Store>(store: &S) -> Result<(), StoreError> {
    let n = store
        .abandon_open_jobs("the server restarted; the job's build was marked FAILED")
        .await?;
    if n > 0 {
        tracing::warn!(jobs = n, "failed the agent jobs of interrupted builds");
    }
    Ok(())
}

/// Marks every IN_PROGRESS build FAILED; returns their ids.
pub(crate) async fn fail_interrupted_builds<S: Store>(
    store: &S,
) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let mut ids = Vec::new();
    for record in store.builds_with_status("IN_PROGRESS").await? {
        let message = format!(
            "The Gantry server stopped while this build was in phase {}; the build was marked FAILED when the server started again.",
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
        ids.push(record.id);
    }
    Ok(ids)
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
