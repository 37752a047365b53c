//! CodeBuild's events, as AWS shapes them: "CodeBuild Build State Change"
//! and "CodeBuild Build Phase Change", with `source: gantry.codebuild`.

use gantry_store::{BuildRecord, Store};
use serde_json::{Value, json};

use super::EventBus;
use crate::codebuild::arn;

/// The event source of build events.
pub(crate) const SOURCE: &str = "gantry.codebuild";

/// `additional-information`: the build's details, in the event's spelling.
fn additional_information(build: &Value, complete: bool) -> Value {
    let mut info = json!({ "build-complete": complete });
    let copy = [
        ("initiator", "initiator"),
        ("timeoutInMinutes", "timeout-in-minutes"),
        ("queuedTimeoutInMinutes", "queued-timeout-in-minutes"),
        ("startTime", "build-start-time"),
        ("sourceVersion", "source-version"),
        ("resolvedSourceVersion", "resolved-source-version"),
        ("buildNumber", "build-number"),
        ("source", "source"),
        ("environment", "environment"),
        ("artifacts", "artifact"),
        ("logs", "logs"),
        ("phases", "phases"),
    ];
    for (from, to) in copy {
        if let Some(v) = build.get(from) {
            info[to] = v.clone();
        }
    }
    info
}

impl<S: Store> EventBus<S> {
    /// "CodeBuild Build State Change" for a build now in `status`.
    pub(crate) async fn build_state_change(
        &self,
        record: &BuildRecord,
        status: &str,
        build: &Value,
    ) {
        // Shaping the event copies most of the build; a dozen a build.
        if !self.listens_on("default") {
            return;
        }
        let build_arn = arn(&self.config, "build", &record.id);
        let complete = status != "IN_PROGRESS";
        let detail = json!({
            "build-status": status,
            "project-name": record.project,
            "build-id": build_arn,
            "additional-information": additional_information(build, complete),
            "current-phase": if complete { "COMPLETED" } else { record.current_phase.as_str() },
            "current-phase-context": "[]",
            "version": "1",
        });
        self.publish(
            SOURCE,
            "CodeBuild Build State Change",
            vec![build_arn],
            detail,
        )
        .await;
    }

    /// "CodeBuild Build Phase Change" for the phase entry that just ended
    /// (an entry of the build's `phases`, in CodeBuild's API shape).
    pub(crate) async fn build_phase_change(
        &self,
        record: &BuildRecord,
        build: &Value,
        phase: &Value,
    ) {
        if !self.listens_on("default") {
            return;
        }
        let build_arn = arn(&self.config, "build", &record.id);
        let field = |name: &str| phase.get(name).cloned().unwrap_or(Value::Null);
        let contexts = phase
            .get("contexts")
            .map_or_else(|| "[]".to_owned(), Value::to_string);
        let detail = json!({
            "completed-phase": field("phaseType"),
            "completed-phase-status": field("phaseStatus"),
            "completed-phase-duration-seconds": field("durationInSeconds"),
            "completed-phase-start": field("startTime"),
            "completed-phase-end": field("endTime"),
            "completed-phase-context": contexts,
            "project-name": record.project,
            "build-id": build_arn,
            "additional-information": additional_information(build, false),
            "version": "1",
        });
        self.publish(
            SOURCE,
            "CodeBuild Build Phase Change",
            vec![build_arn],
            detail,
        )
        .await;
    }
}
