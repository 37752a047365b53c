//! The `/agent/v1` routes: register, long poll, acknowledge, heartbeat,
//! log chunks, source download, uploads and results. Every request carries
//! `Authorization: Bearer <agent token>`; every message about a leased job
//! carries the lease's epoch and is refused with 409 once that lease is
//! no longer the job's (fencing).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use gantry_agent::protocol::{
    self as wire, Ack, ErrorBody, Heartbeat, HeartbeatReply, JobResult, Lease, LogAck, LogChunk,
    Offer, Register, Registered, ResultAccepted,
};
use gantry_store::{
    AgentJobRecord, AgentRecord, AgentTokenRecord, OfferableJob, Store, StoreError, job_status,
    labels_match, now_ms, parse_labels,
};
use serde::de::DeserializeOwned;

use super::queue::Next;
use super::{AgentHub, Ending, OFFER_TTL, offers, tokens, uploads};
use crate::router::AppState;
use crate::worker::Msg;

/// The largest JSON message (a log chunk, a result).
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// An error answered to an agent: a status and `{"message": ...}`.
pub(crate) struct AgentError(pub StatusCode, pub String);

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        json_status(self.0, &ErrorBody { message: self.1 })
    }
}

impl From<(StatusCode, String)> for AgentError {
    fn from((s, m): (StatusCode, String)) -> Self {
        AgentError(s, m)
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => AgentError(StatusCode::CONFLICT, m),
            StoreError::NotFound => {
                AgentError(StatusCode::NOT_FOUND, "no such job or agent".into())
            }
            other => AgentError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

fn bad(message: impl Into<String>) -> AgentError {
    AgentError(StatusCode::BAD_REQUEST, message.into())
}

fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, AgentError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("bad {what} message: {e}")))
}

/// `value` as a JSON response with `status`.
pub(crate) fn json_status<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    json_status(StatusCode::OK, value)
}

pub(crate) fn router<S: Store>() -> Router<AppState<S>> {
    let p = wire::PREFIX;
    Router::new()
        .route(&format!("{p}/register"), post(register::<S>))
        .route(&format!("{p}/agents/{{agent}}/poll"), post(poll::<S>))
        .route(&format!("{p}/jobs/{{job}}/ack"), post(ack::<S>))
        .route(&format!("{p}/jobs/{{job}}/heartbeat"), post(heartbeat::<S>))
        .route(&format!("{p}/jobs/{{job}}/logs"), post(logs::<S>))
        .route(&format!("{p}/jobs/{{job}}/source"), get(source::<S>))
        .route(&format!("{p}/jobs/{{job}}/result"), post(result::<S>))
        .route(
            &format!("{p}/uploads/{{sha256}}"),
            put(uploads::put::<S>).head(uploads::head::<S>),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE))
}

fn hub<S: Store>(state: &AppState<S>) -> &Arc<AgentHub> {
    &state.runner.hub
}

/// The token, and the agent it must own.
async fn owned_agent<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    agent_id: &str,
) -> Result<AgentRecord, AgentError> {
    let agent = hub(state)
        .agent(state.store.as_ref(), agent_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AgentError(
                StatusCode::NOT_FOUND,
                format!("agent {agent_id} is not registered; register again"),
            ),
            other => other.into(),
        })?;
    if agent.token_id != token.id {
        return Err(AgentError(
            StatusCode::FORBIDDEN,
            format!("agent {agent_id} registered with another token"),
        ));
    }
    Ok(agent)
}

/// The job, when it is leased under `epoch` to an agent of this token.
async fn fenced_job<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    job_id: &str,
    epoch: i64,
) -> Result<AgentJobRecord, AgentError> {
    let job = state.store.check_lease(job_id, epoch).await?;
    owned_agent(state, token, job.agent_id.as_deref().unwrap_or("")).await?;
    Ok(job)
}

async fn register<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let reg: Register = parse(&body, "register")?;
    if !matches!(reg.executor.as_str(), "host" | "sandbox" | "docker") {
        return Err(bad(format!(
            "executor must be host, sandbox or docker, not `{}`",
            reg.executor
        )));
    }
    if reg.capacity == 0 {
        return Err(bad("capacity must be at least 1"));
    }
    if reg.labels.len() > 64 || reg.labels.iter().any(|l| l.len() > 100) {
        return Err(bad("labels: at most 64, each at most 100 characters"));
    }
    for (field, value) in [("hostname", &reg.hostname), ("version", &reg.version)] {
        if value.len() > 255 || value.chars().any(char::is_control) {
            return Err(bad(format!(
                "{field} must be at most 255 characters, without control characters"
            )));
        }
    }
    let mut labels = parse_labels(&reg.labels.join(","));
    labels.push(format!("executor:{}", reg.executor));
    // Kinds this server does not know are ignored: a newer agent still
    // takes the jobs it is offered.
    if reg.kinds.iter().any(|k| k == wire::COMMAND_KIND) {
        labels.push(wire::kind_label(wire::COMMAND_KIND));
    }
    labels.sort();
    labels.dedup();
    let agent = AgentRecord {
        id: format!("agent-{}", uuid::Uuid::new_v4().simple()),
        token_id: token.id.clone(),
        labels: labels.clone(),
        capacity: reg.capacity,
        executor: reg.executor,
        hostname: reg.hostname,
        version: reg.version,
        registered_ms: now_ms(),
    };
    state.store.register_agent(&agent).await?;
    tracing::info!(agent = %agent.id, host = %agent.hostname, labels = ?agent.labels, "agent registered");
    let agent_id = agent.id.clone();
    hub(&state).remember_agent(agent);
    Ok(json(&Registered {
        agent_id,
        labels,
        lease_timeout_ms: hub(&state).lease_ms(),
        result_log: true,
        next_offer: true,
        next_lease: true,
        poll_lease: true,
    }))
}

/// Offers `woken_for` (the job a poll was woken for, handed over by the
/// hub) to `agent` when it still can be here, without reading the queue;
/// else the oldest matching job this server knows queued, if any, or (when
/// the hub says so: now and then, and while the store holds jobs this
/// server did not queue) the oldest matching job in the store's queue
/// ([`super::queue`]). An offer is a signed nonce, no write
/// ([`super::offers`]). A job offered may meanwhile have been taken
/// through another server: its acknowledgement then loses, as any stale
/// offer's does, and the agent polls again.
async fn try_offer<S: Store>(
    state: &AppState<S>,
    agent: &AgentRecord,
    woken_for: Option<OfferableJob>,
) -> Result<Option<Offer>, AgentError> {
    let now = now_ms();
    let until = now + i64::try_from(OFFER_TTL.as_millis()).unwrap_or(5000);
    let key = hub(state).offer_key(state.store.as_ref()).await?;
    let offer = |job: OfferableJob| Offer {
        nonce: key.nonce(&job.id, job.attempts, &agent.id, until),
        job_id: job.id,
        kind: job.kind,
    };
    if let Some(job) = woken_for
        && labels_match(&agent.labels, &job.labels)
        && hub(state).claim_offer(&job.id, now, until)
    {
        return Ok(Some(offer(job)));
    }
    match hub(state).next_offer(&agent.labels, now, until) {
        Next::Offer(job) => return Ok(Some(offer(job))),
        Next::Nothing => return Ok(None),
        Next::Scan => {}
    }
    // The oldest few first: nearly always one of them fits and is free, and
    // reading a hundred rows (labels parsed and all) for every offer cost
    // more than the offer when a thousand builds were queued. The wider
    // look is for the agent that fits none of them (or finds them all
    // offered to other polls).
    // Jobs offered to other polls here are among those read (offers are
    // not stored), so each look reads that many more.
    let out = u32::try_from(hub(state).offers_out()).unwrap_or(u32::MAX);
    for page in OFFER_PAGES {
        let limit = page.saturating_add(out);
        let jobs = state.store.offerable_jobs(limit).await?;
        let full = jobs.len() >= limit as usize;
        hub(state).queue_scanned(&jobs, full);
        for job in jobs {
            if !labels_match(&agent.labels, &job.labels) {
                continue;
            }
            // Offered to another poll here and not lapsed: the next job,
            // rather than an offer whose acknowledgement could only lose.
            if !hub(state).claim_offer(&job.id, now, until) {
                continue;
            }
            return Ok(Some(offer(job)));
        }
        if !full {
            // That was every offerable job.
            break;
        }
    }
    // The pages read may all be jobs on offer here or for other agents,
    // with one this agent can run further back: one this server queued,
    // then, if any.
    match hub(state).next_offer(&agent.labels, now, until) {
        Next::Offer(job) => Ok(Some(offer(job))),
        Next::Scan | Next::Nothing => Ok(None),
    }
}

/// How many of the oldest offerable jobs an offer looks at, besides those
/// offered to other polls: a first look, then a wider one.
const OFFER_PAGES: [u32; 2] = [16, 100];

/// Held until a matching job is offerable (200 with the offer) or
/// [`wire::POLL_HOLD`] passes (204). Woken by the hub, not by a timer.
///
/// With `?lease=1` the answer is the job leased to the agent instead,
/// acknowledged on its behalf as a result's `&lease=1` is
/// ([`lease_offered`]): a job then costs the agent no acknowledgement
/// request. An offer whose lease loses to another acknowledgement is
/// skipped and the poll goes on.
async fn poll<S: Store>(
    State(state): State<AppState<S>>,
    Path(agent_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let agent = owned_agent(&state, &token, &agent_id).await?;
    let leased = crate::rest::query_param(&uri, "lease").as_deref() == Some("1");
    let deadline = tokio::time::Instant::now() + wire::POLL_HOLD;
    let mut closing = state.closing.subscribe();
    let waiting = hub(&state).wait_for_job(&agent.labels);
    let mut woken_for = None;
    loop {
        waiting.join();
        if let Some(offer) = try_offer(&state, &agent, woken_for.take()).await? {
            if !leased {
                return Ok(json(&offer));
            }
            match lease_to_poller(&state, &agent, offer).await {
                Ok(lease) => return Ok(json(&lease)),
                // Lost to another acknowledgement, or lapsed: look again.
                Err(AgentError(StatusCode::CONFLICT, message)) => {
                    tracing::debug!(agent = %agent.id, %message, "no lease for the poll");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *closing.borrow() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // An offer nobody acknowledged lapses without a wake-up; the
        // OFFER_TTL cap lets a waiting poller pick such a job up.
        let wait = (deadline - now).min(OFFER_TTL);
        tokio::select! {
            job = waiting.woken() => woken_for = job,
            _ = closing.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Leases `offer` to the polling `agent` for a first term of
/// [`poll_lease_term`], on a task of its own, so the lease is taken whole
/// — the job's row, the hub's records, the log's "took the build" line —
/// even when the poll's connection drops meanwhile and its handler is
/// dropped with it.
///
/// The short first term is for the poll nobody is at the other end of: a
/// poll held for an agent whose host died or was cut off stays waiting
/// here until its hold ends, and the hub wakes the longest-waiting poll
/// first. A job leased to it goes back to the queue as soon as an offer
/// to it would have lapsed, not a whole lease timeout later. A live agent
/// renews a third of the way into the term its lease names, which gives
/// it the full lease.
async fn lease_to_poller<S: Store>(
    state: &AppState<S>,
    agent: &AgentRecord,
    offer: Offer,
) -> Result<Lease, AgentError> {
    let (state, agent) = (state.clone(), agent.clone());
    let term = poll_lease_term(hub(&state).lease_ms());
    tokio::spawn(
        async move { lease_offered(&state, &agent, &offer.job_id, &offer.nonce, term).await },
    )
    .await
    .map_err(|e| {
        AgentError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("leasing the job offered to the poll failed: {e}"),
        )
    })?
}

/// The first term of a lease made for a poll: an offer's time to live,
/// or the lease timeout when that is shorter.
fn poll_lease_term(lease_ms: u64) -> u64 {
    u64::try_from(OFFER_TTL.as_millis())
        .unwrap_or(u64::MAX)
        .min(lease_ms)
}

async fn ack<S: Store>(
    State(state): State<AppState<S>>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let ack: Ack = parse(&body, "ack")?;
    let agent = owned_agent(&state, &token, &ack.agent_id).await?;
    let term = hub(&state).lease_ms();
    let lease = lease_offered(&state, &agent, &job_id, &ack.nonce, term).await?;
    Ok(json(&lease))
}

/// Turns the offer of `job_id` to `agent` (its nonce) into a lease
/// running out `term_ms` from now unless renewed: the acknowledgement,
/// made by the agent's `ack` request or, for the job offered with a
/// result's or a poll's answer, by the server on the agent's behalf.
/// Only one acknowledgement of a job wins (the store's fenced update).
async fn lease_offered<S: Store>(
    state: &AppState<S>,
    agent: &AgentRecord,
    job_id: &str,
    nonce: &str,
    term_ms: u64,
) -> Result<Lease, AgentError> {
    let hub = hub(state);
    let attempts = hub
        .offer_key(state.store.as_ref())
        .await?
        .check(nonce, job_id, &agent.id, now_ms())
        .map_err(|refused| {
            AgentError(
                StatusCode::CONFLICT,
                match refused {
                    offers::Refused::Forged => {
                        format!(
                            "the nonce is not an offer of job {job_id} to agent {}",
                            agent.id
                        )
                    }
                    offers::Refused::Lapsed => {
                        format!("the offer of job {job_id} lapsed; poll again")
                    }
                },
            )
        })?;
    let lease_id = format!("lease-{}", uuid::Uuid::new_v4().simple());
    let expires = now_ms() + i64::try_from(term_ms).unwrap_or(i64::MAX / 2);
    let leased = state
        .store
        .ack_job(job_id, attempts, &agent.id, &lease_id, expires)
        .await;
    // Taken, by this acknowledgement or another: no more offers of it here.
    hub.offer_ended(job_id);
    let job = leased?;
    hub.remember_lease(&job);
    let payload: wire::Payload = serde_json::from_value(job.payload.clone()).map_err(|e| {
        AgentError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("job {job_id}'s payload is unreadable: {e}"),
        )
    })?;
    hub.tell_leased(
        job_id,
        &format!("{} ({})", agent.id, agent.hostname),
        job.attempts,
        now_ms(),
    );
    Ok(Lease {
        job_id: job_id.to_owned(),
        lease_id,
        epoch: job.lease_epoch,
        expires_in_ms: term_ms,
        payload,
    })
}

async fn heartbeat<S: Store>(
    State(state): State<AppState<S>>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let beat: Heartbeat = parse(&body, "heartbeat")?;
    fenced_job(&state, &token, &job_id, beat.epoch).await?;
    let hub = hub(&state);
    let expires = now_ms() + i64::try_from(hub.lease_ms()).unwrap_or(i64::MAX / 2);
    let job = state
        .store
        .renew_lease(&job_id, beat.epoch, expires)
        .await?;
    Ok(json(&HeartbeatReply {
        expires_in_ms: hub.lease_ms(),
        stop: job.cancel_requested,
    }))
}

/// Stores chunk `seq` when it is the next one, ignores one already
/// stored, and answers the highest chunk stored with all before it.
async fn logs<S: Store>(
    State(state): State<AppState<S>>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let chunk: LogChunk = parse(&body, "log chunk")?;
    let events = chunk_events(&chunk)?;
    // Any server takes the chunk: the build's own writer when it waits
    // here, else a relay to the build in the store. The cursor is the
    // `jobs` row's, so the agent may switch servers between chunks.
    let job = fenced_job(&state, &token, &job_id, chunk.epoch).await?;
    let stored = store_chunk(&state, &token, &job, chunk, events, None).await?;
    Ok(json(&LogAck {
        acked: stored.acked,
    }))
}

/// How a build's job ends, written with its last log chunk when that
/// came inside the result.
struct JobOutcome {
    status: &'static str,
    error: Option<String>,
    /// The result as kept in the job's row.
    kept: serde_json::Value,
    last_seq: u64,
    /// The result itself, for the build's end.
    result: Arc<JobResult>,
}

/// What storing a log chunk did.
struct ChunkTaken {
    /// The highest chunk stored with all before it.
    acked: u64,
    /// With an end: whether the job ended with the chunk.
    ended: Option<bool>,
    /// Whether the build's end was recorded with the job's (and its task
    /// told so).
    build_recorded: bool,
}

/// Stores a chunk (a command's or a build's) in a task of its own, which
/// the request's end cannot cancel: its lines and the job's log cursor are
/// one transaction, but a build's chunk also has its writer flushed before
/// and its phase changes after, which a dropped request (the agent's
/// connection cut while it waits for the answer) should not cut short.
/// `end`: the chunk came inside a build's result, and the job ends in the
/// chunk's transaction (`Some(ended)` in the answer says whether it did).
async fn store_chunk<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    job: &AgentJobRecord,
    chunk: LogChunk,
    events: Vec<gantry_build::BuildEvent>,
    end: Option<JobOutcome>,
) -> Result<ChunkTaken, AgentError> {
    let what = format!("storing log chunk {} of job {}", chunk.seq, job.id);
    let (state, token, job) = (state.clone(), token.clone(), job.clone());
    tokio::spawn(async move {
        if job.kind == wire::COMMAND_KIND {
            let acked = command_chunk(&state, &token, &job.id, &chunk).await?;
            Ok(ChunkTaken {
                acked,
                ended: None,
                build_recorded: false,
            })
        } else {
            build_chunk(&state, &token, &job, &chunk, events, end).await
        }
    })
    .await
    .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}")))?
}

/// A chunk's items as build events (400 naming a bad one).
fn chunk_events(chunk: &LogChunk) -> Result<Vec<gantry_build::BuildEvent>, AgentError> {
    chunk
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| item.to_event().map_err(|e| bad(format!("items[{i}]: {e}"))))
        .collect()
}

/// Feeds a fenced chunk of a build's log to its writer when it is the
/// next one (a resent one is ignored), and returns, once it is stored, the
/// highest chunk stored with all before it; with `end`, also whether the
/// job ended in the same transaction, and whether the build's end went
/// with it (when the build waits here: its task is then told).
async fn build_chunk<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    job: &AgentJobRecord,
    chunk: &LogChunk,
    events: Vec<gantry_build::BuildEvent>,
    end: Option<JobOutcome>,
) -> Result<ChunkTaken, AgentError> {
    let job_id = job.id.as_str();
    let live = super::remote::live_or_relay(&state.runner, job)
        .await
        .map_err(|e| AgentError(StatusCode::CONFLICT, e))?;
    let _one_at_a_time = live.serial.lock().await;
    let flushed = |live: &super::LiveJob| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = live.log.send(Msg::Flush(tx)).is_ok();
        async move { sent && rx.await.is_ok() }
    };
    let ended_error = || {
        AgentError(
            StatusCode::CONFLICT,
            format!("job {job_id}'s build has ended"),
        )
    };
    // What the build's writer holds goes first (the server's own lines,
    // "Agent ... took the build"), so the log keeps the order of events:
    // handed over, to be written in the chunk's own transaction.
    let (taker, taken) = tokio::sync::oneshot::channel();
    if live.log.send(Msg::Take(taker)).is_err() {
        return Err(ended_error());
    }
    let Ok(mut lines) = taken.await else {
        return Err(ended_error());
    };
    let servers_lines = lines.len();
    let mut others = Vec::new();
    for event in events {
        match event {
            gantry_build::BuildEvent::Line(line) => lines.push(line),
            other => others.push(other),
        }
    }
    // Lines taken from the writer but not stored go back to it, ahead of
    // any that came since.
    let give_back = |lines: &mut Vec<String>| {
        if servers_lines > 0 {
            let back: Vec<String> = lines.drain(..servers_lines).collect();
            let _ = live.log.send(Msg::Restore(back));
        }
    };
    // The chunk's lines and its acknowledgement in one transaction, fenced
    // by the lease (LEASED under this epoch) and the order (the chunk
    // before is the last stored): a crash cannot store the one without the
    // other, and a resend stores nothing.
    let Some(build_id) = super::remote::build_of(job) else {
        give_back(&mut lines);
        return Err(AgentError(
            StatusCode::CONFLICT,
            format!("job {job_id} has no build"),
        ));
    };
    // The build's end too, when the build waits here: made as its task
    // would make it, written in the same commit as the job's. Not while
    // the server shuts down (the task marks a stopped build's end so).
    let build_end = match (&end, &live.finisher) {
        (Some(end), Some(finisher)) if !state.runner.shutting_down() => {
            Some(finisher.end_from(&end.result))
        }
        _ => None,
    };
    let stored = match &end {
        None => state
            .store
            .store_log_chunk(&build_id, &lines, job_id, chunk.epoch, chunk.seq)
            .await
            .map(|chunk| (chunk, None, false)),
        Some(end) => {
            let job_end = gantry_store::JobEnd {
                status: end.status,
                error: end.error.as_deref(),
                result: &end.kept,
                last_seq: end.last_seq,
                build: build_end.as_ref(),
            };
            state
                .store
                .store_last_chunk_and_finish(
                    &build_id,
                    &lines,
                    job_id,
                    chunk.epoch,
                    chunk.seq,
                    &job_end,
                )
                .await
                .map(|done| (done.chunk, Some(done.ended), done.build_ended))
        }
    };
    let (outcome, ended, build_recorded) = match stored {
        Ok(stored) => stored,
        Err(e) => {
            give_back(&mut lines);
            return Err(e.into());
        }
    };
    if !outcome.stored {
        give_back(&mut lines);
        // Resent or early, or the lease is over: the lease decides which
        // answer (a stale one is a 409). A job that just ended is no
        // longer leased, and rightly so.
        if ended != Some(true) {
            fenced_job(state, token, job_id, chunk.epoch).await?;
        }
        let build_recorded = tell_recorded(&live, build_recorded, build_end);
        return Ok(ChunkTaken {
            acked: outcome.acked,
            ended,
            build_recorded,
        });
    }
    state.runner.log_grew();
    // Phase changes go through the writer, which records the build's
    // progress and tells EventBridge; they are progress only (the result
    // carries every phase), so a crash before they are written loses
    // nothing the build's end does not restore. A chunk that came with the
    // result is not written as progress at all: the end, written next,
    // supersedes it (one transaction fewer per build).
    for event in others {
        let msg = if end.is_some() {
            Msg::FinalEvent(event)
        } else {
            Msg::Event(event)
        };
        let _ = live.log.send(msg);
    }
    if !flushed(&live).await && ended.is_none() {
        return Err(ended_error());
    }
    // Told last, so the build's task finds the chunk's phase events in
    // its writer when it flushes it.
    let build_recorded = tell_recorded(&live, build_recorded, build_end);
    Ok(ChunkTaken {
        acked: outcome.acked,
        ended,
        build_recorded,
    })
}

/// Tells the build's task its end was recorded with its job's, when it
/// was; returns whether.
fn tell_recorded(
    live: &super::LiveJob,
    recorded: bool,
    build_end: Option<gantry_store::BuildUpdate>,
) -> bool {
    match build_end {
        Some(update) if recorded => {
            let _ = live.ends.send(Ending::Recorded(Box::new(update)));
            true
        }
        _ => false,
    }
}

/// The job's source tree as a zip (`payload.source`).
async fn source<S: Store>(
    State(state): State<AppState<S>>,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let epoch: i64 = crate::rest::query_param(&uri, "epoch")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| bad("the epoch query parameter (an integer) is required"))?;
    let job = fenced_job(&state, &token, &job_id, epoch).await?;
    let reference = job
        .payload
        .get("source")
        .and_then(|s| s.as_str())
        .ok_or_else(|| AgentError(StatusCode::NOT_FOUND, format!("job {job_id} has no source")))?;
    let reference: gantry_artifacts::ArtifactRef = reference
        .parse()
        .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")))?;
    let file = tempfile::tempfile()
        .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut file = state
        .runner
        .objects
        .write_zip(&reference, file)
        .await
        .map_err(|e| {
            AgentError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("packing the source: {e}"),
            )
        })?;
    let bytes = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        let mut out = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut out)?;
        Ok::<_, std::io::Error>(out)
    })
    .await
    .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/zip")],
        Body::from(bytes),
    )
        .into_response())
}

/// A result is taken only after every log chunk up to its `last_seq`
/// (the lease's, in the `jobs` row). `acked` is the cursor as the result's
/// own chunk just left it, when it carried one.
async fn logs_complete<S: Store>(
    state: &AppState<S>,
    job_id: &str,
    result: &JobResult,
    acked: Option<u64>,
) -> Result<(), AgentError> {
    let acked = match acked {
        Some(acked) => acked,
        None => state.store.job_log_acked(job_id, result.epoch).await?,
    };
    if acked < result.last_seq {
        return Err(AgentError(
            StatusCode::CONFLICT,
            format!(
                "log chunks {}..={} are missing; send them before the result",
                acked + 1,
                result.last_seq
            ),
        ));
    }
    Ok(())
}

/// The job's end, fenced: stored only when the lease is still this one
/// and every log chunk up to `last_seq` is in. With `?next=<agent id>`,
/// the answer also offers that agent (the token's) the next job ready for
/// it, as a poll would have at once: the agent's freed slot takes it
/// without a poll request of its own; with `&lease=1` as well, the job
/// comes leased, acknowledged for the agent ([`lease_offered`]).
async fn result<S: Store>(
    State(state): State<AppState<S>>,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AgentError> {
    let token = tokens::bearer(&state, &headers).await?;
    let result: JobResult = parse(&body, "result")?;
    let next_for = crate::rest::query_param(&uri, "next");
    let leased = crate::rest::query_param(&uri, "lease").as_deref() == Some("1");
    take_result(&state, &token, &job_id, result).await?;
    let (offer, lease) = match next_for {
        Some(agent_id) => next_job(&state, &token, &agent_id, leased).await,
        None => (None, None),
    };
    Ok(json(&ResultAccepted {
        accepted: true,
        offer,
        lease,
    }))
}

/// The next job for `agent_id` after a result, offered, or leased to it
/// when `leased` (the agent asked with `lease=1`: its slot takes the job
/// without an acknowledgement of its own, one request fewer per job).
/// Neither when none is ready, the agent is not the token's, or the lease
/// lost to another acknowledgement. The result is taken whatever happens
/// here, so a failure only costs the agent a poll.
async fn next_job<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    agent_id: &str,
    leased: bool,
) -> (Option<Offer>, Option<Lease>) {
    let Ok(agent) = owned_agent(state, token, agent_id).await else {
        return (None, None);
    };
    let offer = match try_offer(state, &agent, None).await {
        Ok(Some(offer)) => offer,
        Ok(None) => return (None, None),
        Err(AgentError(status, message)) => {
            tracing::debug!(agent = %agent_id, %status, %message, "no offer with the result");
            return (None, None);
        }
    };
    if !leased {
        return (Some(offer), None);
    }
    let term = hub(state).lease_ms();
    match lease_offered(state, &agent, &offer.job_id, &offer.nonce, term).await {
        Ok(lease) => (None, Some(lease)),
        Err(AgentError(status, message)) => {
            tracing::debug!(agent = %agent_id, job = %offer.job_id, %status, %message, "no lease with the result");
            (None, None)
        }
    }
}

/// Takes a job's result (a build's or a command's), fenced by its lease;
/// the build's owner is told, here or through the `jobs` row.
async fn take_result<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    job_id: &str,
    mut result: JobResult,
) -> Result<(), AgentError> {
    // The last log chunk may come inside the result; it is that lease's.
    // (Not kept in the job's row with the rest: it is in the log.)
    let tail = match result.log.take() {
        Some(chunk) if chunk.epoch != result.epoch => {
            return Err(bad("the result's log chunk is of another lease"));
        }
        Some(chunk) => {
            let events = chunk_events(&chunk)?;
            Some((chunk, events))
        }
        None => None,
    };
    // The job as its lease began, from memory when it began here (one read
    // fewer per build): the writes below are fenced by the lease in the
    // store, and one that is refused says why from the store.
    let job = match hub(state).leased_here(job_id, result.epoch) {
        Some(job) => {
            owned_agent(state, token, job.agent_id.as_deref().unwrap_or("")).await?;
            job
        }
        None => fenced_job(state, token, job_id, result.epoch).await?,
    };
    if job.kind == wire::COMMAND_KIND {
        if let Some((chunk, events)) = tail {
            store_chunk(state, token, &job, chunk, events, None).await?;
        }
        return command_result(state, &job, result).await;
    }
    // Any server takes the result: it is kept in the `jobs` row, and the
    // build's owner (here or elsewhere) finishes the build from it.
    // The build's artifact directory (a job without a build has none).
    let artifacts_dir = job
        .payload
        .get("build_id")
        .and_then(|b| b.as_str())
        .map(|b| super::remote::artifacts_dir(&state.config.data_dir, b));
    // Without a chunk of its own the log must be whole already; with one,
    // the store checks it as it writes the chunk and the end together.
    if tail.is_none() {
        logs_complete(state, job_id, &result, None).await?;
    }
    // Unpacked beside the build's artifact directory, then stored in the
    // artifact store and the result's locations made references before the
    // result is recorded, so the build's owner (any server) reads them. A
    // stale lease stores only blobs nobody refers to.
    match (&result.artifacts_sha256, artifacts_dir) {
        (Some(sha), Some(dir)) => {
            let incoming = dir.with_extension(format!("incoming-{}", result.epoch));
            let unpacked = uploads::unpack_into(&state.runner.objects, sha, &incoming).await;
            let kept = match (unpacked, result.build.as_mut()) {
                (Ok(()), Some(build)) => {
                    crate::build_artifacts::keep(&state.runner.objects, build, &incoming).await
                }
                (other, _) => other,
            };
            let _ = tokio::fs::remove_dir_all(&incoming).await;
            kept.map_err(|e| AgentError(StatusCode::CONFLICT, e))?;
        }
        (Some(_), None) => {
            return Err(AgentError(
                StatusCode::CONFLICT,
                format!("job {job_id} has no build to keep artifacts for"),
            ));
        }
        (None, _) => {}
    }
    let ok = result
        .build
        .as_ref()
        .and_then(|b| b.get("buildStatus"))
        .and_then(|s| s.as_str())
        == Some("SUCCEEDED");
    let status = if ok {
        job_status::SUCCEEDED
    } else {
        job_status::FAILED
    };
    let kept = serde_json::to_value(&result)
        .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let result = Arc::new(result);
    let mut build_recorded = false;
    // The result and the job's end in one fenced update, and with the
    // last log chunk when it came along: one commit (and one fsync) per
    // build, and no moment where the row holds a result but the job is
    // still leased.
    match tail {
        Some((chunk, events)) => {
            let end = JobOutcome {
                status,
                error: result.error.clone(),
                kept,
                last_seq: result.last_seq,
                result: result.clone(),
            };
            let taken = store_chunk(state, token, &job, chunk, events, Some(end)).await?;
            build_recorded = taken.build_recorded;
            if taken.ended != Some(true) {
                // A chunk before this one is missing, or the lease moved on
                // meanwhile (a 409 either way, saying which).
                logs_complete(state, job_id, &result, Some(taken.acked)).await?;
                fenced_job(state, token, job_id, result.epoch).await?;
                return Err(AgentError(
                    StatusCode::CONFLICT,
                    format!("job {job_id} did not end; send the result again"),
                ));
            }
        }
        None => {
            state
                .store
                .finish_agent_job_with_result(
                    job_id,
                    result.epoch,
                    status,
                    result.error.as_deref(),
                    &kept,
                )
                .await?;
        }
    }
    // Kept until now, so a result retried after a failure above still
    // finds its upload.
    if let Some(sha) = &result.artifacts_sha256 {
        uploads::forget(&state.runner.objects, sha).await;
    }
    if !build_recorded {
        hub(state).tell(job_id, Ending::Result(result));
    }
    hub(state).drop_relay(job_id);
    hub(state).forget_lease(job_id);
    Ok(())
}

/// A `command` job's log chunk: its lines go to the store under the job's
/// id, in order and once, like a build's; the highest chunk stored with all
/// before it.
async fn command_chunk<S: Store>(
    state: &AppState<S>,
    token: &AgentTokenRecord,
    job_id: &str,
    chunk: &LogChunk,
) -> Result<u64, AgentError> {
    let lock = hub(state).command_lock(job_id);
    let _one_at_a_time = lock.lock().await;
    // Checked again under the lock: the lease may have moved meanwhile.
    fenced_job(state, token, job_id, chunk.epoch).await?;
    let mut acked = state.store.job_log_acked(job_id, chunk.epoch).await?;
    if chunk.seq == acked + 1 {
        let lines: Vec<String> = chunk
            .items
            .iter()
            .filter_map(|item| match item {
                wire::LogItem::Line(line) => Some(line.clone()),
                _ => None,
            })
            .collect();
        acked = state
            .store
            .store_log_chunk(job_id, &lines, job_id, chunk.epoch, chunk.seq)
            .await?
            .acked;
    }
    Ok(acked)
}

/// The last `max` bytes of `text`, from a whole character (an agent's
/// report is trusted no further than its size).
fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// A `command` job's end, fenced, kept in the store for its task: what the
/// commands did, or (`{"agent_error": ...}`) why the agent could not run
/// them.
async fn command_result<S: Store>(
    state: &AppState<S>,
    job: &AgentJobRecord,
    result: JobResult,
) -> Result<(), AgentError> {
    logs_complete(state, &job.id, &result, None).await?;
    let (status, error, report) = match result.command {
        Some(mut outcome) => {
            outcome.stdout = tail(&outcome.stdout, wire::COMMAND_OUTPUT_TAIL);
            outcome.stderr = tail(&outcome.stderr, wire::COMMAND_OUTPUT_TAIL);
            let status = if outcome.succeeded() {
                job_status::SUCCEEDED
            } else {
                job_status::FAILED
            };
            let report = serde_json::to_value(&outcome)
                .map_err(|e| AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            (status, None, report)
        }
        None => {
            let why = tail(
                result
                    .error
                    .as_deref()
                    .unwrap_or("the agent could not run the commands"),
                4096,
            );
            let report = serde_json::json!({ "agent_error": why });
            (job_status::FAILED, Some(why), report)
        }
    };
    state
        .store
        .finish_agent_job_with_result(&job.id, result.epoch, status, error.as_deref(), &report)
        .await?;
    hub(state).forget_lease(&job.id);
    hub(state).command_ended(&job.id);
    Ok(())
}
