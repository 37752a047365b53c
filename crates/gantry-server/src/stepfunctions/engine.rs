//! Hosts `gantry-states` executions durably.
//!
//! Each running execution lives in memory as an [`Execution`] behind its own lock.
//! Everything that happens to it (start, a task's result, a timer, a callback, a
//! stop) is one [`Event`]: under the lock, the engine steps the execution, writes
//! the event with the history it produced, the timers and task tokens it started or
//! ended, and the completion if any, in ONE transaction, and only then performs the
//! resulting actions (start tasks, arm timers). A crash therefore loses at most
//! actions whose cause is journalled: on start-up [`Engine::resume_all`] replays
//! every RUNNING execution's journal, re-arms its stored timers and restarts the
//! tasks still waited for. A task whose result is journalled never runs again.
//!
//! Task tokens are unguessable (keyed by a secret file beside the database, see
//! [`load_or_create_token_key`]) and never stored: the journal and the token table
//! hold their SHA-256, and stored history shows `[task token]` in their place.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use gantry_states::{Action, Event, Execution, ExecutionInfo, Outcome, StateMachine};
use gantry_store::{
    ExecutionCompletion, ExecutionRecord, HistoryRecord, InboxEntry, InboxOutcome, JournalAppend,
    NewExecution, NewInboxEntry, NewTaskToken, OwnedWork, Store, StoreError, now_ms,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::resources::{self, HttpClient};
use crate::config::Config;
use crate::router::AppState;

/// The file in the data directory that keys task tokens (32 random bytes, mode 0600).
pub(crate) const TOKEN_KEY_FILE: &str = "task-token.key";

/// Most journal entries one group commit writes.
const MAX_BATCH: usize = 512;

/// How often a server sharing its database reads the inbox of the executions it
/// owns (events other servers received for them): the delay a callback or a stop
/// sent through another server adds.
pub(crate) const INBOX_EVERY: Duration = Duration::from_millis(200);

/// How long a server that relayed an event to another server's execution waits
/// to learn whether the owner applied it, before answering that it is recorded.
const RELAY_WAIT: Duration = Duration::from_secs(3);

/// How often the relaying server looks at the relayed event's outcome.
const RELAY_POLL: Duration = Duration::from_millis(40);

/// A journal entry waiting for the group commit, and who waits for its result.
type Commit = (JournalAppend, oneshot::Sender<Result<(), StoreError>>);

/// Group commit: every entry waiting when a transaction starts goes into it (each in
/// its own savepoint), so executions running side by side share one disk sync. Each
/// waiter acts only after the commit that holds its entry is on disk.
async fn journal_writer<S: Store>(store: Arc<S>, mut rx: mpsc::UnboundedReceiver<Commit>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (entries, replies): (Vec<JournalAppend>, Vec<_>) = batch.into_iter().unzip();
        // On disk before anyone acts on it: the SQLite store's commits are
        // flushed in groups of their own (gantry-store `sqlite/durability.rs`).
        let written = match store.append_journals(&entries).await {
            Ok(results) => store.durable().await.map(|()| results),
            Err(e) => Err(e),
        };
        match written {
            Ok(results) => {
                for (result, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::other(std::io::Error::other(
                        message.clone(),
                    ))));
                }
            }
        }
    }
}

/// What stored history shows instead of a task token.
const REDACTED_TOKEN: &str = "[task token]";

/// Reads the task-token key, creating it on first use.
pub(crate) fn load_or_create_token_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(TOKEN_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} must hold exactly 32 bytes", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::getrandom(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
            std::fs::create_dir_all(dir)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&path)?;
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// SHA-256 of a task token, hex: how the store knows tokens.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS entropy: fall back on a v4 UUID's randomness (also the OS's, via another path).
        b.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    }
    u64::from_le_bytes(b)
}

/// Why an event was not applied.
#[derive(Debug)]
pub(crate) enum DeliverError {
    /// The execution is not running on this server (ended, unknown, or shutting down).
    NotRunning,
    /// The task token or timer is not one the execution waits for (any more).
    NotWaiting,
    /// The journal could not be written; the execution was reloaded from the store.
    Store(StoreError),
}

/// What became of an event relayed to the execution's owner through the store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Relayed {
    /// The owner applied it.
    Applied,
    /// Too late: the task or the execution had ended (or the same callback was
    /// relayed before).
    Refused,
    /// Recorded, not applied yet (the owner may be dead): the owner, or the
    /// server that takes its work over, applies it.
    Recorded,
}

/// Why an execution could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The execution ARN is taken.
    Exists,
    /// The store failed.
    Store(StoreError),
}

/// One running execution.
struct Live {
    arn: String,
    exec: Execution,
    /// Journalled (StartExecution) or in memory only (StartSyncExecution).
    durable: bool,
    /// Dropping a sender cancels its timer or task.
    timers: HashMap<String, oneshot::Sender<()>>,
    tasks: HashMap<String, oneshot::Sender<()>>,
    /// How many tasks each state has scheduled so far (the token's `attempt`).
    attempts: HashMap<String, u64>,
    /// StartSyncExecution's caller.
    waiters: Vec<oneshot::Sender<Outcome>>,
}

/// The execution host; one per server.
pub(crate) struct Engine<S: Store> {
    store: Arc<S>,
    config: Arc<Config>,
    token_key: [u8; 32],
    app: StdMutex<Option<AppState<S>>>,
    live: StdMutex<HashMap<String, Arc<Mutex<Live>>>>,
    /// Token hash → execution ARN, for in-memory (express) executions.
    memory_tokens: StdMutex<HashMap<String, String>>,
    shutdown: watch::Sender<bool>,
    /// The group-commit writer (absent outside a Tokio runtime: entries are then
    /// written one transaction each).
    journal: Option<mpsc::UnboundedSender<Commit>>,
    pub(crate) http: HttpClient,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The journal's JSON for an event: a task token is replaced by its hash.
fn journal_json(event: &Event) -> Value {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut()
        && let Some(Value::String(token)) = obj.remove("token")
    {
        obj.insert("token_sha256".into(), Value::String(token_hash(&token)));
    }
    v
}

/// The event a journal entry holds; a hashed token is matched against the tokens the
/// execution waits for (a token it no longer waits for changes nothing on replay).
fn journal_event(mut v: Value, pending: &[String]) -> Result<Event, serde_json::Error> {
    if let Some(obj) = v.as_object_mut()
        && let Some(Value::String(hash)) = obj.remove("token_sha256")
    {
        let token = pending
            .iter()
            .find(|t| token_hash(t) == hash)
            .cloned()
            .unwrap_or_else(|| format!("closed-{hash}"));
        obj.insert("token".into(), Value::String(token));
    }
    serde_json::from_value(v)
}

fn redact(v: &mut Value, tokens: &[String]) {
    match v {
        Value::String(s) => {
            for t in tokens {
                if s.contains(t.as_str()) {
                    *s = s.replace(t.as_str(), REDACTED_TOKEN);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact(i, tokens)),
        Value::Object(map) => map.values_mut().for_each(|i| redact(i, tokens)),
        _ => {}
    }
}

fn event_token(event: &Event) -> Option<&str> {
    match event {
        Event::TaskSucceeded { token, .. }
        | Event::TaskFailed { token, .. }
        | Event::TaskHeartbeat { token, .. } => Some(token),
        _ => None,
    }
}

/// The `source` of Step Functions events (AWS's is `aws.states`).
const STATES_SOURCE: &str = "gantry.states";
/// Their detail type, as AWS names it.
const STATUS_CHANGE: &str = "Step Functions Execution Status Change";

/// The detail of a status-change event, in the members AWS sends (dates in
/// epoch milliseconds; absent values `null`).
fn status_detail(x: &gantry_store::ExecutionRecord) -> Value {
    let included = serde_json::json!({"included": true});
    serde_json::json!({
        "executionArn": x.arn,
        "stateMachineArn": x.machine_arn,
        "name": x.name,
        "status": x.status,
        "startDate": x.start_ms,
        "stopDate": x.stop_ms,
        "input": x.input,
        "output": x.output,
        "inputDetails": included,
        "outputDetails": x.output.as_ref().map(|_| included.clone()),
        "error": x.error,
        "cause": x.cause,
    })
}

fn completion(outcome: &Outcome, at: i64) -> ExecutionCompletion {
    let (output, failure) = match outcome {
        Outcome::Succeeded { output } => (Some(output.to_string()), None),
        Outcome::Failed(f) | Outcome::TimedOut(f) | Outcome::Aborted(f) => (None, Some(f)),
    };
    ExecutionCompletion {
        status: outcome.status().into(),
        output,
        error: failure.map(|f| f.error.clone()),
        cause: failure.map(|f| f.cause.clone()),
        stop_ms: at,
    }
}

impl<S: Store> Engine<S> {
    pub(crate) fn new(
        store: Arc<S>,
        config: Arc<Config>,
        token_key: [u8; 32],
        http: HttpClient,
    ) -> Engine<S> {
        let journal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (tx, rx) = mpsc::unbounded_channel();
            runtime.spawn(journal_writer(store.clone(), rx));
            tx
        });
        Engine {
            journal,
            store,
            config,
            token_key,
            app: StdMutex::new(None),
            live: StdMutex::new(HashMap::new()),
            memory_tokens: StdMutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            http,
        }
    }

    /// Gives the engine the server's state, which task resources use (CodeBuild).
    pub(crate) fn attach(&self, app: AppState<S>) {
        *lock(&self.app) = Some(app);
    }

    pub(crate) fn app(&self) -> Option<AppState<S>> {
        lock(&self.app).clone()
    }

    pub(crate) fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Writes one journal entry (through the group commit when there is one).
    async fn commit(&self, entry: JournalAppend) -> Result<(), StoreError> {
        let Some(writer) = &self.journal else {
            return self.store.append_journal(&entry).await;
        };
        let (tx, rx) = oneshot::channel();
        if writer.send((entry, tx)).is_err() {
            return Err(StoreError::other(std::io::Error::other(
                "the journal writer has stopped",
            )));
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::other(std::io::Error::other(
                "the journal writer has stopped",
            )))
        })
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether the engine is shutting down, readable later (a task that is
    /// dropped tells a shutdown, after which its work goes on and is
    /// followed after the restart, from a cancellation, which ends it).
    pub(crate) fn shutdown_flag(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops every timer and task (running executions stay RUNNING in the store and
    /// resume on the next start) and refuses further events.
    pub(crate) fn shutdown(&self) {
        self.shutdown.send_replace(true);
        lock(&self.live).clear();
        lock(&self.memory_tokens).clear();
        lock(&self.app).take();
    }

    fn new_execution(&self, machine: Arc<StateMachine>) -> Execution {
        Execution::new(machine).with_task_token_key(self.token_key)
    }

    /// The journal entry for `event`, just applied to `l.exec` with `actions` as its
    /// result; `history_from` is the history's length before.
    fn entry(
        &self,
        l: &mut Live,
        event: &Event,
        actions: &[Action],
        history_from: usize,
        actor: &str,
        audit: Option<&str>,
    ) -> JournalAppend {
        let at = event.at();
        let mut timers_started = Vec::new();
        let mut timers_removed = Vec::new();
        let mut tokens_opened = Vec::new();
        let mut tokens_closed = Vec::new();
        let mut done = None;
        let mut new_tokens = Vec::new();
        if let Event::TimerFired { id, .. } = event {
            timers_removed.push(id.clone());
        }
        if let Event::TaskSucceeded { token, .. } | Event::TaskFailed { token, .. } = event {
            tokens_closed.push(token_hash(token));
        }
        for a in actions {
            match a {
                Action::ScheduleTask { token, state, .. } => {
                    let n = l.attempts.entry(state.clone()).or_insert(0);
                    tokens_opened.push(NewTaskToken {
                        token_hash: token_hash(token),
                        state_name: state.clone(),
                        attempt: *n,
                    });
                    *n += 1;
                    new_tokens.push(token.clone());
                }
                Action::CancelTask { token } => tokens_closed.push(token_hash(token)),
                Action::StartTimer { id, at } => timers_started.push((id.clone(), *at)),
                Action::CancelTimer { id } => timers_removed.push(id.clone()),
                Action::Complete(outcome) => done = Some(completion(outcome, at)),
            }
        }
        new_tokens.extend(
            l.exec
                .pending()
                .filter(|k| k.starts_with("task-"))
                .map(str::to_owned),
        );
        let history = l.exec.history()[history_from..]
            .iter()
            .map(|h| {
                let mut details = h.details.clone();
                redact(&mut details, &new_tokens);
                HistoryRecord {
                    id: h.id,
                    at_ms: h.timestamp,
                    event_type: h.kind.clone(),
                    previous_id: h.id.checked_sub(1).filter(|p| *p > 0),
                    details,
                }
            })
            .collect();
        let audit_action = match (audit, &done) {
            (Some(a), _) => Some(a.to_owned()),
            (None, Some(_)) => Some("execution.complete".to_owned()),
            (None, None) => None,
        };
        JournalAppend {
            execution_arn: l.arn.clone(),
            seq: l.exec.journal().len() as u64,
            at_ms: at,
            event: journal_json(event),
            history,
            timers_started,
            timers_removed,
            tokens_opened,
            tokens_closed,
            completion: done,
            actor: actor.to_owned(),
            audit_action,
            inbox_id: None,
        }
    }

    /// Starts a journalled execution: the execution row and its `Started` entry are
    /// committed before anything runs.
    pub(crate) async fn start(
        self: &Arc<Self>,
        new: NewExecution,
        machine: Arc<StateMachine>,
        info: ExecutionInfo,
        input: Value,
        actor: &str,
    ) -> Result<(), StartError> {
        let mut live = Live {
            arn: new.arn.clone(),
            exec: self.new_execution(machine),
            durable: true,
            timers: HashMap::new(),
            tasks: HashMap::new(),
            attempts: HashMap::new(),
            waiters: Vec::new(),
        };
        let event = Event::Started {
            input,
            info,
            seed: random_u64(),
            at: new.start_ms,
        };
        let actions = live.exec.step(event.clone());
        let first = self.entry(&mut live, &event, &actions, 0, actor, None);
        match self.store.create_execution(&new, &first, actor).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(StartError::Exists),
            Err(e) => return Err(StartError::Store(e)),
        }
        // Awaited, so that RUNNING is on the bus before any later status;
        // from the start's own data, as the execution may already have
        // ended in its first step.
        if let Some(app) = self.app() {
            let detail = serde_json::json!({
                "executionArn": new.arn,
                "stateMachineArn": new.machine_arn,
                "name": new.name,
                "status": "RUNNING",
                "startDate": new.start_ms,
                "stopDate": null,
                "input": new.input,
                "output": null,
                "inputDetails": {"included": true},
                "outputDetails": null,
                "error": null,
                "cause": null,
            });
            app.events
                .publish(STATES_SOURCE, STATUS_CHANGE, vec![new.arn.clone()], detail)
                .await;
        }
        self.go_live(live, actions).await;
        Ok(())
    }

    /// Runs an in-memory execution to its end (StartSyncExecution), at most `limit`.
    pub(crate) async fn run_sync(
        self: &Arc<Self>,
        arn: String,
        machine: Arc<StateMachine>,
        info: ExecutionInfo,
        input: Value,
        limit: Duration,
    ) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let mut live = Live {
            arn: arn.clone(),
            // Express: no history is kept, so no history limit either.
            exec: self.new_execution(machine).without_history_limit(),
            durable: false,
            timers: HashMap::new(),
            tasks: HashMap::new(),
            attempts: HashMap::new(),
            waiters: vec![tx],
        };
        let actions = live.exec.step(Event::Started {
            input,
            info,
            seed: random_u64(),
            at: now_ms(),
        });
        self.go_live(live, actions).await;
        let outcome = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Aborted(gantry_states::Failure::new(
                "States.Runtime",
                "the server stopped before the execution ended",
            )),
            Err(_) => Outcome::TimedOut(gantry_states::Failure::new(
                "States.Timeout",
                "StartSyncExecution ran longer than its limit",
            )),
        };
        lock(&self.live).remove(&arn);
        outcome
    }

    async fn go_live(self: &Arc<Self>, live: Live, actions: Vec<Action>) {
        let arn = live.arn.clone();
        let live = Arc::new(Mutex::new(live));
        let mut l = live.lock().await;
        lock(&self.live).insert(arn, live.clone());
        self.perform(&mut l, actions);
    }

    /// Applies one event to a running execution: step, journal, then act.
    /// `expect` names the token or timer the event is for; unless the execution still
    /// waits for it, nothing is applied (`NotWaiting`) and nothing journalled.
    pub(crate) async fn deliver(
        self: &Arc<Self>,
        arn: &str,
        event: Event,
        actor: &str,
        audit: Option<&str>,
        expect: Option<&str>,
    ) -> Result<(), DeliverError> {
        self.deliver_from(arn, event, actor, audit, expect, None)
            .await
    }

    /// [`Engine::deliver`], for an event recorded in the inbox as `inbox` (then
    /// marked applied with its journal entry).
    async fn deliver_from(
        self: &Arc<Self>,
        arn: &str,
        event: Event,
        actor: &str,
        audit: Option<&str>,
        expect: Option<&str>,
        inbox: Option<i64>,
    ) -> Result<(), DeliverError> {
        let Some(live) = lock(&self.live).get(arn).cloned() else {
            return Err(DeliverError::NotRunning);
        };
        let mut l = live.lock().await;
        if l.exec.outcome().is_some() || self.is_shut_down() {
            return Err(DeliverError::NotRunning);
        }
        if let Some(key) = expect
            && !l.exec.pending().any(|k| k == key)
        {
            return Err(DeliverError::NotWaiting);
        }
        let history_from = l.exec.history().len();
        let actions = l.exec.step(event.clone());
        let mut entry = self.entry(&mut l, &event, &actions, history_from, actor, audit);
        entry.inbox_id = inbox;
        if l.durable
            && let Err(e) = self.commit(entry).await
        {
            // Refused because another server took the execution over while this
            // one was paused or cut off: it is no longer this server's to drive.
            if !self.still_owned(arn).await {
                tracing::warn!(execution = %arn, error = %e,
                    "another server took this execution over; no longer driving it here");
                self.release(&mut l);
                return Err(DeliverError::NotRunning);
            }
            // The execution in memory is now ahead of its journal: drop it and rebuild
            // it from the store, as a restart would.
            tracing::error!(execution = %arn, error = %e, "journal append failed; reloading the execution");
            drop(l);
            lock(&self.live).remove(arn);
            if let Ok(record) = self.store.get_execution(arn).await
                && record.status == "RUNNING"
                && let Err(e) = self.resume(&record).await
            {
                tracing::error!(execution = %arn, error = %e, "could not reload the execution");
            }
            return Err(DeliverError::Store(e));
        }
        if let Some(token) = event_token(&event)
            && !matches!(event, Event::TaskHeartbeat { .. })
        {
            l.tasks.remove(token);
            lock(&self.memory_tokens).remove(&token_hash(token));
        }
        if let Event::TimerFired { id, .. } = &event {
            l.timers.remove(id);
        }
        self.perform(&mut l, actions);
        Ok(())
    }

    /// Performs the actions of a journalled step.
    fn perform(self: &Arc<Self>, l: &mut Live, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::ScheduleTask {
                    token,
                    resource,
                    input,
                    timeout_seconds,
                    ..
                } => {
                    let hash = token_hash(&token);
                    if !l.durable {
                        lock(&self.memory_tokens).insert(hash.clone(), l.arn.clone());
                    }
                    let (tx, rx) = oneshot::channel();
                    l.tasks.insert(token.clone(), tx);
                    let task = resources::Task {
                        execution_arn: l.arn.clone(),
                        token,
                        token_hash: hash,
                        resource,
                        input,
                        timeout_seconds,
                        handle: None,
                    };
                    tokio::spawn(self.clone().run_task(task, rx));
                }
                Action::StartTimer { id, at } => {
                    let (tx, rx) = oneshot::channel();
                    l.timers.insert(id.clone(), tx);
                    tokio::spawn(self.clone().timer(l.arn.clone(), id, at, rx));
                }
                Action::CancelTimer { id } => {
                    l.timers.remove(&id);
                }
                Action::CancelTask { token } => {
                    let running = l.tasks.remove(&token).is_some();
                    lock(&self.memory_tokens).remove(&token_hash(&token));
                    if running && l.durable {
                        tokio::spawn(self.clone().stop_started_work(token_hash(&token)));
                    }
                }
                Action::Complete(outcome) => {
                    l.timers.clear();
                    l.tasks.clear();
                    for w in l.waiters.drain(..) {
                        let _ = w.send(outcome.clone());
                    }
                    lock(&self.live).remove(&l.arn);
                    if l.durable {
                        let engine = self.clone();
                        let arn = l.arn.clone();
                        tokio::spawn(async move { engine.publish_status(&arn).await });
                    }
                }
            }
        }
    }

    /// Publishes the execution's end as it is stored, as "Step Functions
    /// Execution Status Change" from `gantry.states` (Standard executions
    /// only: AWS sends none for Express ones either).
    async fn publish_status(&self, arn: &str) {
        let Some(app) = self.app() else {
            return;
        };
        match self.store.get_execution(arn).await {
            Ok(record) => {
                app.events
                    .publish(
                        STATES_SOURCE,
                        STATUS_CHANGE,
                        vec![record.arn.clone()],
                        status_detail(&record),
                    )
                    .await;
            }
            Err(e) => {
                tracing::warn!(execution = %arn, error = %e, "reading an execution to publish its status failed")
            }
        }
    }

    /// Stops what a cancelled task started, when it recorded it: a build,
    /// or an agent's command job (which the task's own cancellation also
    /// cancels; this covers a task that was not running in this process).
    async fn stop_started_work(self: Arc<Self>, hash: String) {
        let Ok(token) = self.store.task_token(&hash).await else {
            return;
        };
        if let Some(job) = token
            .handle
            .as_deref()
            .filter(|h| resources::is_command_job(h))
        {
            match self.store.cancel_job(job).await {
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(%job, error = %e, "cancelling the command job of a cancelled task failed")
                }
            }
            return;
        }
        if let (Some(build), Some(app)) = (token.handle, self.app())
            && build != resources::DELIVERED
        {
            let stopping = app.runner.stop(&build);
            tracing::info!(%build, stopping, "stopping the build of a cancelled task");
        }
    }

    async fn timer(
        self: Arc<Self>,
        arn: String,
        id: String,
        at: i64,
        cancel: oneshot::Receiver<()>,
    ) {
        let mut shutdown = self.shutdown.subscribe();
        let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel => return,
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let event = Event::TimerFired {
            id: id.clone(),
            at: now_ms().max(at),
        };
        match self.deliver(&arn, event, "system", None, Some(&id)).await {
            Ok(()) | Err(DeliverError::NotRunning | DeliverError::NotWaiting) => {}
            Err(DeliverError::Store(e)) => {
                tracing::error!(execution = %arn, timer = %id, error = %e, "timer not journalled");
            }
        }
    }

    async fn run_task(self: Arc<Self>, task: resources::Task, cancel: oneshot::Receiver<()>) {
        let mut shutdown = self.shutdown.subscribe();
        let arn = task.execution_arn.clone();
        let token = task.token.clone();
        let result = tokio::select! {
            r = resources::run(&self, &task) => r,
            _ = cancel => return,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        // `None`: the task completes through a callback (SendTaskSuccess/Failure).
        let Some(result) = result else { return };
        let at = now_ms();
        let event = match result {
            Ok(output) => Event::TaskSucceeded {
                token: token.clone(),
                output,
                at,
            },
            Err(e) => Event::TaskFailed {
                token: token.clone(),
                error: e.error,
                cause: e.cause,
                at,
            },
        };
        match self
            .deliver(&arn, event, "system", None, Some(&token))
            .await
        {
            Ok(()) | Err(DeliverError::NotRunning | DeliverError::NotWaiting) => {}
            Err(DeliverError::Store(e)) => {
                tracing::error!(execution = %arn, error = %e, "task result not journalled");
            }
        }
    }

    /// Whether this server still owns `arn` (always, for a server without an id).
    /// A store error counts as owned: the caller then reloads the execution from
    /// the store, whose append refuses it again if it is not.
    async fn still_owned(&self, arn: &str) -> bool {
        let Some(me) = self.store.server_id() else {
            return true;
        };
        match self
            .store
            .owner_of(OwnedWork::StateMachineExecutions, arn)
            .await
        {
            Ok(owner) => owner.as_deref() == Some(me.as_str()),
            Err(StoreError::NotFound) => false,
            Err(_) => true,
        }
    }

    /// Stops driving an execution another server now owns: its timers are
    /// cancelled, and it leaves memory so nothing more is journalled for it here.
    /// Its running tasks are not cancelled (cancelling would cancel, say, the
    /// agent job the new owner follows): they run to their end, and their result
    /// finds the execution gone from here and is dropped.
    fn release(&self, l: &mut Live) {
        lock(&self.live).remove(&l.arn);
        l.timers.clear();
        let tasks: Vec<oneshot::Sender<()>> = l.tasks.drain().map(|(_, tx)| tx).collect();
        l.waiters.clear();
        if !tasks.is_empty() {
            tokio::spawn(async move {
                for mut tx in tasks {
                    tx.closed().await;
                }
            });
        }
    }

    /// Whether the execution is held (driven) by this server.
    pub(crate) fn is_live(&self, arn: &str) -> bool {
        lock(&self.live).contains_key(arn)
    }

    /// Whether other servers may share the database (and so own executions this
    /// server does not hold): events for those go through the inbox.
    pub(crate) fn shared(&self) -> bool {
        self.config.leader_election.is_some() && self.store.server_id().is_some()
    }

    /// Drops from memory the durable executions this server no longer owns in
    /// the store: taken over by another server while this one was paused longer
    /// than the heartbeat's time to live, or cut off from the database. Returns
    /// their ARNs.
    pub(crate) async fn release_lost(&self) -> Result<Vec<String>, StoreError> {
        let Some(me) = self.store.server_id() else {
            return Ok(Vec::new());
        };
        // Listed before the store is asked: an execution started or resumed
        // meanwhile is owned by this server in the store before it is live here.
        let held: Vec<(String, Arc<Mutex<Live>>)> = lock(&self.live)
            .iter()
            .map(|(arn, l)| (arn.clone(), l.clone()))
            .collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let owned: HashSet<String> = self
            .store
            .owned(OwnedWork::StateMachineExecutions, &me)
            .await?
            .into_iter()
            .collect();
        let mut lost = Vec::new();
        for (arn, live) in held {
            if owned.contains(&arn) {
                continue;
            }
            let mut l = live.lock().await;
            // In-memory (express) executions are no one else's; an execution
            // that just ended leaves memory by itself.
            if !l.durable || l.exec.outcome().is_some() || !self.is_live(&arn) {
                continue;
            }
            // Asked again under the lock: it may have ended in the store since.
            if self.still_owned(&arn).await {
                continue;
            }
            self.release(&mut l);
            lost.push(arn);
        }
        Ok(lost)
    }

    /// Applies the events other servers recorded for the executions this server
    /// owns (see [`Engine::relay`]); returns how many were applied.
    pub(crate) async fn read_inbox(self: &Arc<Self>) -> Result<usize, StoreError> {
        let Some(me) = self.store.server_id() else {
            return Ok(0);
        };
        let mut applied = 0;
        for entry in self.store.inbox_for_owner(&me).await? {
            if self.apply_inbox_entry(entry).await? {
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// Reads the inbox every [`INBOX_EVERY`] until the engine shuts down.
    pub(crate) async fn watch_inbox(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(INBOX_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.is_shut_down() {
            ticks.tick().await;
            if let Err(e) = self.read_inbox().await {
                tracing::warn!(error = %e, "reading the Step Functions inbox failed");
            }
        }
    }

    async fn apply_inbox_entry(self: &Arc<Self>, entry: InboxEntry) -> Result<bool, StoreError> {
        let arn = entry.execution_arn.clone();
        let Some(live) = lock(&self.live).get(&arn).cloned() else {
            // Owned but not in memory yet (being resumed): the next round.
            return Ok(false);
        };
        // The token is recorded by its hash: matched back against the tokens the
        // execution waits for, as a journal entry is on replay.
        let event = {
            let l = live.lock().await;
            let pending: Vec<String> = l.exec.pending().map(str::to_owned).collect();
            journal_event(entry.event.clone(), &pending)
        };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(execution = %arn, inbox = entry.id, error = %e,
                    "an inbox entry does not hold an event; refusing it");
                self.store.refuse_inbox_entry(entry.id, now_ms()).await?;
                return Ok(false);
            }
        };
        let expect = event_token(&event).map(str::to_owned);
        let done = self
            .deliver_from(
                &arn,
                event,
                &entry.actor,
                entry.audit_action.as_deref(),
                expect.as_deref(),
                Some(entry.id),
            )
            .await;
        match done {
            Ok(()) => Ok(true),
            Err(DeliverError::NotWaiting) => {
                self.store.refuse_inbox_entry(entry.id, now_ms()).await?;
                Ok(false)
            }
            // Ended here (refused), or shutting down / taken over (left to the
            // server that drives the execution next).
            Err(DeliverError::NotRunning) => {
                if !self.is_shut_down() && self.still_owned(&arn).await {
                    self.store.refuse_inbox_entry(entry.id, now_ms()).await?;
                }
                Ok(false)
            }
            Err(DeliverError::Store(e)) => {
                tracing::warn!(execution = %arn, inbox = entry.id, error = %e,
                    "applying an inbox entry failed; trying again at the next round");
                Ok(false)
            }
        }
    }

    /// Records `event` for the owner of `arn`, an execution this server does not
    /// hold, and waits up to [`RELAY_WAIT`] for the owner to apply it.
    /// SendTaskSuccess/Failure are recorded once per token, so the same callback
    /// sent through two servers is applied once.
    pub(crate) async fn relay(
        &self,
        arn: &str,
        event: &Event,
        actor: &str,
        audit: Option<&str>,
    ) -> Result<Relayed, StoreError> {
        let dedup = match event {
            Event::TaskSucceeded { token, .. } | Event::TaskFailed { token, .. } => {
                Some(token_hash(token))
            }
            _ => None,
        };
        let entry = NewInboxEntry {
            execution_arn: arn.to_owned(),
            dedup,
            event: journal_json(event),
            actor: actor.to_owned(),
            audit_action: audit.map(str::to_owned),
            created_ms: now_ms(),
        };
        let id = match self.store.post_to_inbox(&entry).await {
            Ok(id) => id,
            // Not running any more, or this token's callback was recorded before.
            Err(StoreError::NotFound | StoreError::Conflict(_)) => return Ok(Relayed::Refused),
            Err(e) => return Err(e),
        };
        let deadline = tokio::time::Instant::now() + RELAY_WAIT;
        loop {
            match self.store.inbox_outcome(id).await {
                Ok(InboxOutcome::Applied) => return Ok(Relayed::Applied),
                Ok(InboxOutcome::Refused) => return Ok(Relayed::Refused),
                Ok(InboxOutcome::Pending) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Relayed::Recorded);
            }
            tokio::time::sleep(RELAY_POLL).await;
        }
    }

    /// The execution a task token belongs to, if the token is known.
    pub(crate) async fn token_owner(
        &self,
        token: &str,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let hash = token_hash(token);
        if let Some(arn) = lock(&self.memory_tokens).get(&hash) {
            return Ok(Some((arn.clone(), true)));
        }
        match self.store.task_token(&hash).await {
            Ok(t) => Ok(Some((t.execution_arn, t.status == "PENDING"))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Resumes the RUNNING executions among `arns` from their journals: those
    /// this server took over (its previous life's at start, a dead server's
    /// later; see `recovery.rs`). Another live server's are never resumed
    /// here, so no execution is driven twice.
    pub(crate) async fn resume_taken(
        self: &Arc<Self>,
        arns: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let running = self.store.list_executions(None, Some("RUNNING")).await?;
        let mut resumed = Vec::new();
        let mut tasks = Vec::new();
        for x in running.into_iter().filter(|x| arns.contains(&x.arn)) {
            // Live here already (an event reloaded it): not twice.
            if lock(&self.live).contains_key(&x.arn) {
                continue;
            }
            match self.resume_inner(&x, Some(&mut tasks)).await {
                Ok(()) => resumed.push(x.arn),
                Err(e) => {
                    tracing::error!(execution = %x.arn, error = %e, "could not resume the execution")
                }
            }
        }
        // Callbacks and stops other servers recorded while the owner was
        // dead are applied before the tasks still waited for run again: a
        // task whose callback is already recorded must not be sent twice.
        let inbox = match resumed.is_empty() {
            true => Ok(0),
            false => self.read_inbox().await,
        };
        // Started even when the inbox could not be read: its entries are
        // applied at the next round, and a task must not be left waiting.
        for (task, cancel) in tasks {
            self.start_unless_settled(task, cancel);
        }
        inbox.map(|_| resumed)
    }

    /// Runs a resumed task, unless its execution stopped waiting for it
    /// meanwhile (an inbox entry settled it, which drops its cancel sender).
    fn start_unless_settled(
        self: &Arc<Self>,
        task: resources::Task,
        mut cancel: oneshot::Receiver<()>,
    ) {
        if matches!(
            cancel.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ) {
            tokio::spawn(self.clone().run_task(task, cancel));
        }
    }

    /// Replays one execution's journal and picks up its timers and pending tasks.
    /// (Boxed: a failed journal append reloads through here, and timers started here
    /// deliver events, so the future's type would otherwise contain itself.)
    fn resume<'a>(
        self: &'a Arc<Self>,
        x: &'a ExecutionRecord,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>
    {
        Box::pin(self.resume_inner(x, None))
    }

    /// [`Engine::resume`]; with `defer`, the tasks still waited for are
    /// handed back (with their cancel receivers) instead of started.
    async fn resume_inner(
        self: &Arc<Self>,
        x: &ExecutionRecord,
        defer: Option<&mut Vec<(resources::Task, oneshot::Receiver<()>)>>,
    ) -> Result<(), StoreError> {
        let definition: Value = serde_json::from_str(&x.definition).map_err(StoreError::other)?;
        let machine = gantry_states::parse_definition(&definition).map_err(StoreError::other)?;
        let journal = self.store.journal(&x.arn).await?;
        let mut exec = self.new_execution(Arc::new(machine));
        let mut scheduled: HashMap<String, (String, Value, Option<u64>)> = HashMap::new();
        let mut attempts: HashMap<String, u64> = HashMap::new();
        for entry in journal {
            let pending: Vec<String> = exec.pending().map(str::to_owned).collect();
            let event = journal_event(entry.event, &pending).map_err(StoreError::other)?;
            for a in exec.step(event) {
                match a {
                    Action::ScheduleTask {
                        token,
                        state,
                        resource,
                        input,
                        timeout_seconds,
                        ..
                    } => {
                        *attempts.entry(state).or_insert(0) += 1;
                        scheduled.insert(token, (resource, input, timeout_seconds));
                    }
                    Action::CancelTask { token } => {
                        scheduled.remove(&token);
                    }
                    _ => {}
                }
            }
        }
        if exec.outcome().is_some() {
            return Ok(());
        }
        let waiting: HashSet<String> = exec.pending().map(str::to_owned).collect();
        scheduled.retain(|token, _| waiting.contains(token));
        let timers = self.store.timers(&x.arn).await?;
        let mut handles = Vec::new();
        for (token, (resource, input, timeout_seconds)) in scheduled {
            let hash = token_hash(&token);
            let handle = self
                .store
                .task_token(&hash)
                .await
                .ok()
                .and_then(|t| t.handle);
            handles.push(resources::Task {
                execution_arn: x.arn.clone(),
                token,
                token_hash: hash,
                resource,
                input,
                timeout_seconds,
                handle,
            });
        }
        let live = Arc::new(Mutex::new(Live {
            arn: x.arn.clone(),
            exec,
            durable: true,
            timers: HashMap::new(),
            tasks: HashMap::new(),
            attempts,
            waiters: Vec::new(),
        }));
        let mut l = live.lock().await;
        lock(&self.live).insert(x.arn.clone(), live.clone());
        for (id, at) in timers {
            if !waiting.contains(&id) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            l.timers.insert(id.clone(), tx);
            tokio::spawn(self.clone().timer(x.arn.clone(), id, at, rx));
        }
        let mut defer = defer;
        for task in handles {
            let (tx, rx) = oneshot::channel();
            l.tasks.insert(task.token.clone(), tx);
            match defer.as_deref_mut() {
                Some(later) => later.push((task, rx)),
                None => {
                    tokio::spawn(self.clone().run_task(task, rx));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn journalled_tokens_are_hashed_and_matched_back_on_replay() {
        let event = Event::TaskSucceeded {
            token: "task-1-abc".into(),
            output: json!(1),
            at: 5,
        };
        let stored = journal_json(&event);
        assert!(!stored.to_string().contains("task-1-abc"), "{stored}");
        assert_eq!(stored["token_sha256"], token_hash("task-1-abc"));
        let back = journal_event(stored.clone(), &["task-9-x".into(), "task-1-abc".into()])
            .expect("event");
        assert_eq!(back, event);
        // A token no longer waited for comes back as one that matches nothing.
        let Event::TaskSucceeded { token, .. } = journal_event(stored, &[]).expect("event") else {
            panic!("kind changed");
        };
        assert!(token.starts_with("closed-"));
    }

    #[test]
    fn redaction_replaces_tokens_inside_strings() {
        let mut v = json!({"a": ["x task-1-abc y", {"t": "task-1-abc"}], "n": 1});
        redact(&mut v, &["task-1-abc".into()]);
        assert_eq!(
            v,
            json!({"a": ["x [task token] y", {"t": "[task token]"}], "n": 1})
        );
    }

    #[test]
    fn the_token_key_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_token_key(dir.path()).expect("create");
        let b = load_or_create_token_key(dir.path()).expect("read");
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(TOKEN_KEY_FILE), b"short").expect("write");
        assert!(load_or_create_token_key(dir.path()).is_err());
    }
}
