//! The agent protocol's messages: JSON bodies under `/agent/v1`, shared by
//! the server (which answers them) and the agent (which sends them).
//! docs/agents.md describes the exchange.

use std::time::Duration;

use gantry_build::{BuildEvent, PhaseStatus, PhaseType};
use serde::{Deserialize, Serialize};

/// Where the protocol is mounted.
pub const PREFIX: &str = "/agent/v1";

/// How long the server holds a poll before answering 204.
pub const POLL_HOLD: Duration = Duration::from_secs(25);

/// `POST /agent/v1/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    /// The agent's labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// `host`, `sandbox` or `docker`.
    pub executor: String,
    /// Its host name.
    #[serde(default)]
    pub hostname: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// The job kinds it runs besides `codebuild` (which every agent runs):
    /// `command`. The server adds a `kind:<kind>` label for each, and a job
    /// of that kind asks for the label, so an agent that predates a kind is
    /// never offered its jobs.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// The job kind of a Step Functions `gantry:agent:runCommand` task.
pub const COMMAND_KIND: &str = "command";

/// The label an agent gets for each extra job kind it runs.
pub fn kind_label(kind: &str) -> String {
    format!("kind:{kind}")
}

/// The answer to [`Register`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The id to poll with.
    pub agent_id: String,
    /// The labels the server matches jobs against (the agent's, plus
    /// `executor:<kind>`).
    pub labels: Vec<String>,
    /// The server's lease timeout; heartbeats go at a third of it.
    pub lease_timeout_ms: u64,
    /// The server takes a job's last log chunk inside its result
    /// ([`JobResult::log`]); an older server, which leaves this out, does not.
    #[serde(default)]
    pub result_log: bool,
    /// The server answers a result sent with `?next=<agent id>` with the
    /// next job offered to that agent, when one is ready
    /// ([`ResultAccepted::offer`]); an older server, which leaves this
    /// out, does not.
    #[serde(default)]
    pub next_offer: bool,
    /// The server answers a result sent with `?next=<agent id>&lease=1`
    /// with the next job already leased to that agent
    /// ([`ResultAccepted::lease`]): acknowledged for it, so the agent
    /// sends no acknowledgement of its own. An older server, which leaves
    /// this out, does not.
    #[serde(default)]
    pub next_lease: bool,
    /// The server answers a poll sent with `?lease=1` with the job already
    /// leased to the agent (a [`Lease`], not an [`Offer`]): acknowledged
    /// for it, as with [`Registered::next_lease`]. An older server, which
    /// leaves this out, does not.
    #[serde(default)]
    pub poll_lease: bool,
}

/// `POST /agent/v1/agents/{agent_id}/poll`'s 200 answer: a job offered
/// for a short while, to acknowledge with its nonce.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    /// The job.
    pub job_id: String,
    /// Proof of the offer, for [`Ack`].
    pub nonce: String,
    /// What kind of job (`codebuild`, `command`).
    pub kind: String,
}

/// `POST /agent/v1/jobs/{job_id}/ack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledging agent.
    pub agent_id: String,
    /// The offer's nonce.
    pub nonce: String,
}

/// The answer to [`Ack`]: the lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub job_id: String,
    /// The lease's id.
    pub lease_id: String,
    /// The fencing token every later message carries.
    pub epoch: i64,
    /// How long the lease lasts without a heartbeat: the lease timeout, or
    /// a shorter first term for a lease that came with a poll's answer.
    /// The first heartbeat is due a third of the way in.
    pub expires_in_ms: u64,
    /// What to run.
    pub payload: Payload,
}

/// What a lease runs. On the wire it is the payload's object itself (a
/// build's is what it always was), told apart by its fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// A CodeBuild build (`codebuild` jobs).
    Build(BuildPayload),
    /// Shell commands (`command` jobs).
    Command(CommandPayload),
}

impl Payload {
    /// What the lease runs, for logs: the build's id or the command job's
    /// execution.
    pub fn describe(&self) -> &str {
        match self {
            Payload::Build(b) => &b.build_id,
            Payload::Command(c) => &c.execution_arn,
        }
    }
}

/// Shell commands an agent runs for a Step Functions task, each with
/// `sh -c`, in order, stopping at the first that fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandPayload {
    /// The commands.
    pub commands: Vec<String>,
    /// Environment variables added to the agent's own.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Where they run: relative to a fresh directory of the job's (the
    /// default), or an absolute path on the agent.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// How long all of them may take together before they are killed.
    pub timeout_seconds: u64,
    /// The Step Functions execution the task belongs to (for logs).
    #[serde(default)]
    pub execution_arn: String,
}

/// How a command job ended, sent in [`JobResult::command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// The exit code of the last command run (the first that failed, or the
    /// last of all); -1 when it was killed by a signal.
    pub exit_code: i32,
    /// Which command (from 1) that was.
    pub command_index: usize,
    /// How many commands there were.
    pub command_count: usize,
    /// The tail of standard output (all commands together).
    pub stdout: String,
    /// The tail of standard error.
    pub stderr: String,
    /// The time limit ran out (the command was killed).
    #[serde(default)]
    pub timed_out: bool,
    /// Someone stopped it (the command was killed).
    #[serde(default)]
    pub stopped: bool,
}

impl CommandOutcome {
    /// Whether every command ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 && !self.timed_out && !self.stopped
    }
}

/// How much of each output stream a command job keeps for its result:
/// the last 64 KiB (two of them stay within Step Functions' 256 KiB
/// payload limit with room for the rest of the state's data).
pub const COMMAND_OUTPUT_TAIL: usize = 64 * 1024;

/// A CodeBuild build, as an agent runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildPayload {
    /// `project:uuid`.
    pub build_id: String,
    /// The build's ARN, as the server's API reports it (absent from older
    /// servers: the build then gets a local one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_arn: Option<String>,
    /// The project.
    pub project: String,
    /// The build number.
    pub build_number: u64,
    /// Who started it.
    pub initiator: String,
    /// The buildspec's YAML.
    pub buildspec: String,
    /// Environment variables, resolved.
    pub env: Vec<(String, String)>,
    /// The image (`gantry:host`, `gantry:sandbox` or a Docker image).
    pub image: String,
    /// The build timeout.
    pub timeout_minutes: u64,
    /// Whether the build's artifacts are collected and uploaded.
    pub wants_artifacts: bool,
    /// The source tree, fetched from `GET /agent/v1/jobs/{id}/source`
    /// as a zip; `None` for a build without source.
    pub source: Option<String>,
}

/// `POST /agent/v1/jobs/{job_id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The lease's epoch.
    pub epoch: i64,
}

/// The answer to [`Heartbeat`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The lease's new remaining time.
    pub expires_in_ms: u64,
    /// Someone stopped the build: stop it and send the result.
    pub stop: bool,
}

/// One entry of a log chunk: a line or a phase change, in build order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogItem {
    /// A log line.
    Line(String),
    /// A phase began.
    PhaseStarted(String),
    /// A phase ended.
    PhaseFinished {
        /// Which.
        phase: String,
        /// How.
        status: String,
        /// How long it took.
        duration_ms: u64,
    },
}

impl LogItem {
    /// The wire form of a runner event.
    pub fn from_event(event: &BuildEvent) -> LogItem {
        match event {
            BuildEvent::Line(line) => LogItem::Line(line.clone()),
            BuildEvent::PhaseStarted(p) => LogItem::PhaseStarted(p.as_str().into()),
            BuildEvent::PhaseFinished {
                phase,
                status,
                duration,
            } => LogItem::PhaseFinished {
                phase: phase.as_str().into(),
                status: status.as_str().into(),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            },
        }
    }

    /// The runner event back; an unknown phase or status is an error
    /// naming it.
    pub fn to_event(&self) -> Result<BuildEvent, String> {
        Ok(match self {
            LogItem::Line(line) => BuildEvent::Line(line.clone()),
            LogItem::PhaseStarted(p) => BuildEvent::PhaseStarted(phase_type(p)?),
            LogItem::PhaseFinished {
                phase,
                status,
                duration_ms,
            } => BuildEvent::PhaseFinished {
                phase: phase_type(phase)?,
                status: phase_status(status)?,
                duration: Duration::from_millis(*duration_ms),
            },
        })
    }
}

/// A phase name as CodeBuild spells it.
pub fn phase_type(name: &str) -> Result<PhaseType, String> {
    use PhaseType::*;
    [
        Submitted,
        Queued,
        Provisioning,
        DownloadSource,
        Install,
        PreBuild,
        Build,
        PostBuild,
        UploadArtifacts,
        Finalizing,
        Completed,
    ]
    .into_iter()
    .find(|p| p.as_str() == name)
    .ok_or_else(|| format!("unknown phase `{name}`"))
}

/// A status name as CodeBuild spells it.
pub fn phase_status(name: &str) -> Result<PhaseStatus, String> {
    use PhaseStatus::*;
    [Succeeded, Failed, Fault, TimedOut, InProgress, Stopped]
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| format!("unknown status `{name}`"))
}

/// `POST /agent/v1/jobs/{job_id}/logs`: chunk `seq` (1, 2, ... per lease).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogChunk {
    /// The lease's epoch.
    pub epoch: i64,
    /// The chunk's number within the lease, from 1.
    pub seq: u64,
    /// Its lines and phase changes.
    pub items: Vec<LogItem>,
}

/// The answer to [`LogChunk`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogAck {
    /// The highest chunk number stored with all before it.
    pub acked: u64,
}

/// `HEAD`/`PUT /agent/v1/uploads/{sha256}`'s answer: how many bytes the
/// server holds, and whether the upload is whole and verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    /// Bytes received so far.
    pub offset: u64,
    /// The bytes hash to the name and are kept.
    pub complete: bool,
}

/// The header carrying an upload's received length.
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// `POST /agent/v1/jobs/{job_id}/result`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    /// The lease's epoch.
    pub epoch: i64,
    /// The last log chunk sent; the server refuses the result until it
    /// holds every chunk up to it.
    pub last_seq: u64,
    /// `gantry_build::BuildResult` as JSON, or `None` when the agent could
    /// not run the build (then `error` says why).
    pub build: Option<serde_json::Value>,
    /// Why the build could not run.
    pub error: Option<String>,
    /// The phase the error belongs to (`DOWNLOAD_SOURCE`, `PROVISIONING`).
    pub error_phase: Option<String>,
    /// The sha256 (hex) of an uploaded zip of the build's artifacts.
    pub artifacts_sha256: Option<String>,
    /// A command job's end (`None` for builds, and when the commands could
    /// not be started: then `error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandOutcome>,
    /// The job's last log chunk (numbered `last_seq`), sent with the
    /// result instead of on its own: a short job's whole log then costs no
    /// request (and no database commit) of its own. Only to a server that
    /// said [`Registered::result_log`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogChunk>,
}

/// `POST /agent/v1/jobs/{job_id}/result`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultAccepted {
    /// Always `true`: a refused result is an error status.
    pub accepted: bool,
    /// With `?next=<agent id>`: a job offered to that agent, as a poll
    /// would have answered at once, to acknowledge with its nonce. The
    /// slot the result frees takes its next job without a poll of its
    /// own (one request fewer per job while jobs are waiting). `None`
    /// when no job is ready for it: the agent polls as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    /// With `?next=<agent id>&lease=1`: the next job, leased to that agent
    /// as an acknowledgement of its offer would have (then `offer` is left
    /// out). If this answer is lost, the lease runs out and the job goes
    /// back to the queue, as after a lost answer to an acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// An error body: `{"message": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
}

/// `POST /api/v1/agent-tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateToken {
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_unknown_names_are_named() {
        let events = [
            BuildEvent::Line("hello".into()),
            BuildEvent::PhaseStarted(PhaseType::PreBuild),
            BuildEvent::PhaseFinished {
                phase: PhaseType::UploadArtifacts,
                status: PhaseStatus::TimedOut,
                duration: Duration::from_millis(1500),
            },
        ];
        for e in &events {
            assert_eq!(&LogItem::from_event(e).to_event().expect("round trip"), e);
        }
        let bad = LogItem::PhaseStarted("LUNCH".into()).to_event();
        assert!(bad.expect_err("unknown").contains("LUNCH"));
    }

    #[test]
    fn payloads_are_told_apart_by_their_fields_and_builds_look_as_before() {
        let build = serde_json::json!({
            "build_id": "p:1", "project": "p", "build_number": 1, "initiator": "me",
            "buildspec": "version: 0.2", "env": [], "image": "gantry:host",
            "timeout_minutes": 5, "wants_artifacts": false, "source": null});
        let parsed: Payload = serde_json::from_value(build.clone()).expect("build");
        assert!(matches!(&parsed, Payload::Build(b) if b.build_id == "p:1"));
        assert_eq!(serde_json::to_value(&parsed).expect("json"), build);
        let command = serde_json::json!({"commands": ["echo hi"], "timeout_seconds": 5});
        let parsed: Payload = serde_json::from_value(command).expect("command");
        assert!(matches!(&parsed, Payload::Command(c) if c.commands == ["echo hi"]));
        // A registration from an agent that predates job kinds has none.
        let old: Register =
            serde_json::from_value(serde_json::json!({"capacity": 1, "executor": "host"}))
                .expect("register");
        assert!(old.kinds.is_empty());
    }
}
