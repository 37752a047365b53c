//! Remote agents: the server's half of the agent protocol (`/agent/v1`),
//! agent tokens (`/api/v1/agent-tokens`), and the in-process hub that ties
//! a queued job to the build waiting for it. `command` jobs (Step Functions'
//! `gantry:agent:runCommand`) need no waiter in memory: their log lines and
//! end go to the store, where their task reads them, across a restart too.
//!
//! The job queue itself is durable (`AgentStore`); what lives only in
//! memory is what a restart would lose anyway — the waiting long polls and
//! the channel from a job's agent to its build's log writer. A job is
//! offered to one poller at a time, acknowledged with the offer's nonce
//! into a lease whose epoch fences every later message, and returned to the
//! queue by the [`reaper`] when its lease runs out. See docs/agents.md.

pub(crate) mod checks;
pub(crate) mod offers;
pub(crate) mod protocol;
pub(crate) mod queue;
pub(crate) mod remote;
pub(crate) mod tokens;
mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gantry_store::{
    AgentJobRecord, AgentRecord, AgentTokenRecord, OfferableJob, QueueNews, Store, StoreError,
    job_status, labels_match, now_ms,
};
use tokio::sync::{Notify, mpsc, watch};

use crate::worker::Msg;

/// The project tag naming the labels a build's agent must have.
pub(crate) const LABELS_TAG: &str = "gantry:agent-labels";

/// How long an offer waits for its acknowledgement before another poller
/// may get the job.
pub(crate) const OFFER_TTL: Duration = Duration::from_secs(5);

/// How long a token found live is believed without asking the store again:
/// a revocation made through another server takes effect within this (one
/// made through this server, at once).
pub(crate) const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// How many leases a build's job gets before it fails.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// What happened to a job, told to the build waiting for it.
#[derive(Debug)]
pub(crate) enum Ending {
    /// An agent acknowledged it (a new attempt; see [`AgentHub::tell_leased`]).
    Leased { attempt: u32 },
    /// Its lease ran out and it is queued again.
    Requeued {
        agent: String,
        attempt: u32,
        max: u32,
    },
    /// It failed for good (out of attempts, or stopped with a dead agent).
    Failed(String),
    /// Its agent sent the result (already fenced and recorded in `jobs`).
    Result(Arc<gantry_agent::protocol::JobResult>),
    /// Its agent sent the result, and the build's end (made by the build's
    /// [`remote::Finisher`]) was recorded with the job's.
    Recorded(Box<gantry_store::BuildUpdate>),
}

/// A job whose build waits in this process.
pub(crate) struct LiveJob {
    /// The build's log writer (the same one the local agent feeds).
    pub log: mpsc::UnboundedSender<Msg>,
    /// To the build's task.
    pub ends: mpsc::UnboundedSender<Ending>,
    /// Serialises a job's log chunks on this server (the position itself
    /// is the `jobs` row's, shared by every server).
    pub serial: tokio::sync::Mutex<()>,
    /// What the build's end is made of, when the build waits here; `None`
    /// for a relay: the job's agent talks to this server while another one
    /// owns the build, and this entry only writes the log
    /// ([`remote::live_or_relay`]).
    pub finisher: Option<Arc<remote::Finisher>>,
}

impl LiveJob {
    /// Whether this entry only relays the log of a build waiting elsewhere.
    pub fn is_relay(&self) -> bool {
        self.finisher.is_none()
    }
}

/// A long poll waiting for a job, with the labels of its agent.
struct Waiter {
    id: u64,
    labels: Vec<String>,
    wake: Arc<Wake>,
}

/// How a waiting long poll is woken.
#[derive(Default)]
struct Wake {
    notify: Notify,
    /// The job it was woken for, until it takes the wake-up.
    pending: Mutex<Option<OfferableJob>>,
}

/// A long poll's place among the waiters; leaves it when dropped.
pub(crate) struct Waiting<'a> {
    hub: &'a AgentHub,
    id: u64,
    labels: Vec<String>,
    wake: Arc<Wake>,
}

impl Waiting<'_> {
    /// (Re)joins the waiters, at the end, unless still among them. Called
    /// before each look at the queue, so a job queued during the look
    /// wakes this poll rather than nobody.
    pub fn join(&self) {
        let mut waiters = locked(&self.hub.waiters);
        if !waiters.iter().any(|w| w.id == self.id) {
            waiters.push(Waiter {
                id: self.id,
                labels: self.labels.clone(),
                wake: self.wake.clone(),
            });
        }
    }

    /// Resolves once a job this poll's agent can take was queued (or
    /// [`AgentHub::job_ready`] was called) since the poll last took a
    /// wake-up, with that job when it was one ([`AgentHub::job_ready_for`]).
    /// One that came while the poll was busy is kept, not lost.
    pub async fn woken(&self) -> Option<OfferableJob> {
        self.wake.notify.notified().await;
        locked(&self.wake.pending).take()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        locked(&self.hub.waiters).retain(|w| w.id != self.id);
        // Woken for a job while busy with another look and leaving (with
        // some offer): the wake-up is passed on, or that job would wait for
        // the periodic re-check.
        // (The guard goes first: wake_for takes the waiters' lock.)
        // (Not noted as queued again: it may have been taken meanwhile.)
        let pending = locked(&self.wake.pending).take();
        if let Some(job) = pending {
            self.hub.wake_for(&job);
        }
    }
}

/// Offers remembered before lapsed ones are dropped.
const OFFERS_KEPT: usize = 1024;

/// Leases remembered ([`AgentHub::remember_lease`]) before all are
/// forgotten: far more than the jobs a server's agents run at once.
const LEASES_KEPT: usize = 4096;

/// A cached token check.
struct CachedToken {
    record: AgentTokenRecord,
    at: std::time::Instant,
}

/// The in-process side of the queue.
pub(crate) struct AgentHub {
    /// Long polls waiting for a job, oldest first. A queued job wakes the
    /// oldest one whose labels match, not all of them: every woken poll
    /// reads the queue and tries a conditional offer, so waking all would
    /// cost database work per job in proportion to the agents.
    waiters: Mutex<Vec<Waiter>>,
    next_waiter: std::sync::atomic::AtomicU64,
    /// Jobs this server has offered, with when each offer lapses (epoch
    /// ms): other polls here skip them rather than offer them again to an
    /// agent whose acknowledgement could only lose ([`offers`]).
    offered: Mutex<HashMap<String, i64>>,
    /// The jobs this server knows to be queued, so an offer seldom reads
    /// the store's queue ([`queue`]).
    queue: Mutex<queue::OfferQueue>,
    /// The key offers are signed with, read from the store on first use.
    offer_key: tokio::sync::OnceCell<offers::OfferKey>,
    /// Live tokens by hash, believed for [`TOKEN_CACHE_TTL`].
    tokens: Mutex<HashMap<String, CachedToken>>,
    live: Mutex<HashMap<String, Arc<LiveJob>>>,
    /// Serialises each `command` job's log chunks on this server (their
    /// position is the `jobs` row's, as for builds; nothing waits for such
    /// a job in memory: its lines go to the store, its end is read from it).
    command_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped when a `command` job ends, so the task waiting for it reads
    /// it at once rather than at its next look.
    command_ends: watch::Sender<u64>,
    /// Agents by id (which token they belong to), read on every request.
    agents: Mutex<HashMap<String, AgentRecord>>,
    /// Jobs acknowledged here, as their lease began, by job id: what a
    /// lease does not change (the job's kind and payload, the agent and
    /// the epoch) is read from here when the agent's result comes, rather
    /// than from the store ([`AgentHub::leased_here`]).
    leased: Mutex<HashMap<String, AgentJobRecord>>,
    pub lease_timeout: Duration,
    /// What waiting builds check each second, read for all at once.
    pub checks: checks::WaitChecks,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentHub {
    pub fn new(lease_timeout: Duration) -> AgentHub {
        AgentHub {
            waiters: Mutex::new(Vec::new()),
            next_waiter: std::sync::atomic::AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            offered: Mutex::new(HashMap::new()),
            queue: Mutex::new(queue::OfferQueue::default()),
            offer_key: tokio::sync::OnceCell::new(),
            live: Mutex::new(HashMap::new()),
            command_locks: Mutex::new(HashMap::new()),
            command_ends: watch::Sender::new(0),
            agents: Mutex::new(HashMap::new()),
            leased: Mutex::new(HashMap::new()),
            lease_timeout,
            checks: checks::WaitChecks::default(),
        }
    }

    /// Wakes every waiting long poll: jobs whose labels are not known here
    /// may be offerable (e.g. a `command` job), and the next offer reads
    /// the store's queue to find them.
    pub fn job_ready(&self) {
        locked(&self.queue).rescan();
        for w in locked(&self.waiters).drain(..) {
            w.wake.notify.notify_one();
        }
    }

    /// `job` can be offered: wakes the longest-waiting long poll whose
    /// agent has its labels, and only that one, handing it the job (so it
    /// offers it without reading the queue). The others keep sleeping;
    /// should the woken one not take the job (another poll got it first),
    /// the job is taken anyway, and a job nobody here was woken for is
    /// still found by the polls' periodic re-check. The job is among those
    /// known queued here from now on, until acknowledged.
    pub fn job_ready_for(&self, job: &OfferableJob) {
        locked(&self.queue).queued(job);
        self.wake_for(job);
    }

    /// Wakes the longest-waiting long poll whose agent has `job`'s labels,
    /// handing it the job.
    fn wake_for(&self, job: &OfferableJob) {
        self.wake_one(&job.labels, Some(job));
    }

    /// Wakes the longest-waiting long poll whose agent has `labels`,
    /// handing it `job` when there is one to hand.
    fn wake_one(&self, labels: &[String], job: Option<&OfferableJob>) {
        let mut waiters = locked(&self.waiters);
        if let Some(i) = waiters.iter().position(|w| labels_match(&w.labels, labels)) {
            let w = waiters.remove(i);
            if let Some(job) = job {
                *locked(&w.wake.pending) = Some(job.clone());
            }
            w.wake.notify.notify_one();
        }
    }

    /// A job needing `labels` was queued through another server: the
    /// longest-waiting poll here whose agent has them is woken, and looks
    /// in the store (as does any offer here that finds nothing in memory).
    pub fn queued_elsewhere(&self, labels: &[String]) {
        locked(&self.queue).queued_elsewhere();
        self.wake_one(labels, None);
    }

    /// Claims `job_id` for an offer lasting until `until_ms`, unless this
    /// server has an offer of it out that has not lapsed at `now_ms`.
    pub fn claim_offer(&self, job_id: &str, now_ms: i64, until_ms: i64) -> bool {
        let mut offered = locked(&self.offered);
        // Offers nobody acknowledged (the agent went away) are dropped
        // here, now and then, rather than by a timer.
        if offered.len() >= OFFERS_KEPT {
            offered.retain(|_, until| *until >= now_ms);
        }
        match offered.get(job_id) {
            Some(until) if *until >= now_ms => false,
            _ => {
                offered.insert(job_id.to_owned(), until_ms);
                true
            }
        }
    }

    /// How many offers this server remembers (some may have lapsed).
    pub fn offers_out(&self) -> usize {
        locked(&self.offered).len()
    }

    /// The job was acknowledged (or its offer refused): its offer here is
    /// over, and it is no longer known queued here (when the acknowledgement
    /// was refused, it was taken by another, or is no longer queued).
    pub fn offer_ended(&self, job_id: &str) {
        locked(&self.offered).remove(job_id);
        locked(&self.queue).gone(job_id);
    }

    /// What an offer to an agent with `labels` should do next: offer a job
    /// known queued here (claimed for it until `until_ms`), read the
    /// store's queue, or offer nothing ([`queue`]).
    pub fn next_offer(&self, labels: &[String], now_ms: i64, until_ms: i64) -> queue::Next {
        // (The queue's lock, then the offers': claim_offer takes only the
        // latter, and nothing takes them the other way round.)
        locked(&self.queue).next(labels, std::time::Instant::now(), |job| {
            self.claim_offer(&job.id, now_ms, until_ms)
        })
    }

    /// A read of the store's queue returned `page`, `full` when as many
    /// rows as asked for.
    pub fn queue_scanned(&self, page: &[OfferableJob], full: bool) {
        locked(&self.queue).scanned(page, full);
    }

    /// Remembers `job` as its lease began here (its acknowledgement's row).
    pub fn remember_lease(&self, job: &AgentJobRecord) {
        let mut leased = locked(&self.leased);
        // A cache: entries of leases that ended elsewhere (expired, their
        // result taken by another server) would otherwise stay.
        if leased.len() >= LEASES_KEPT {
            leased.clear();
        }
        leased.insert(job.id.clone(), job.clone());
    }

    /// Job `job_id` as lease `epoch` began, when it was acknowledged
    /// here. Only what a lease does not change is current (kind, payload,
    /// agent, epoch): whether the lease still holds is for the store to
    /// say, in the write it fences.
    pub fn leased_here(&self, job_id: &str, epoch: i64) -> Option<AgentJobRecord> {
        locked(&self.leased)
            .get(job_id)
            .filter(|job| job.lease_epoch == epoch)
            .cloned()
    }

    /// Forgets the lease of `job_id` taken here (its result is in).
    pub fn forget_lease(&self, job_id: &str) {
        locked(&self.leased).remove(job_id);
    }

    /// The key offers are signed with: the one in the store, stored there
    /// first by whichever server needed it first ([`offers`]).
    pub async fn offer_key<S: Store>(&self, store: &S) -> Result<&offers::OfferKey, StoreError> {
        self.offer_key
            .get_or_try_init(|| async {
                let fresh = offers::new_key_document().map_err(|e| StoreError::Other(e.into()))?;
                let stored = store
                    .server_state_or_insert(offers::KEY_DOCUMENT, &fresh)
                    .await?;
                offers::key_from_document(&stored).map_err(|e| StoreError::Other(e.into()))
            })
            .await
    }

    /// A long poll of an agent with `labels`, among the waiters from now on.
    pub fn wait_for_job(&self, labels: &[String]) -> Waiting<'_> {
        let waiting = Waiting {
            hub: self,
            id: self
                .next_waiter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            labels: labels.to_vec(),
            wake: Arc::new(Wake::default()),
        };
        waiting.join();
        waiting
    }

    /// How many long polls wait here.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        locked(&self.waiters).len()
    }

    /// The live token with this hash, when checked less than
    /// [`TOKEN_CACHE_TTL`] ago.
    pub fn cached_token(&self, hash: &str) -> Option<AgentTokenRecord> {
        let mut tokens = locked(&self.tokens);
        match tokens.get(hash) {
            Some(c) if c.at.elapsed() < TOKEN_CACHE_TTL => Some(c.record.clone()),
            Some(_) => {
                tokens.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers a token the store found live.
    pub fn cache_token(&self, hash: &str, record: AgentTokenRecord) {
        let mut tokens = locked(&self.tokens);
        // Bounded: expired entries go whenever the map has grown.
        if tokens.len() >= 1024 {
            tokens.retain(|_, c| c.at.elapsed() < TOKEN_CACHE_TTL);
        }
        tokens.insert(
            hash.to_owned(),
            CachedToken {
                record,
                at: std::time::Instant::now(),
            },
        );
    }

    /// Forgets a revoked token at once.
    pub fn forget_token(&self, token_id: &str) {
        locked(&self.tokens).retain(|_, c| c.record.id != token_id);
    }

    pub fn attach(&self, job_id: &str, live: Arc<LiveJob>) {
        locked(&self.live).insert(job_id.to_owned(), live);
    }

    /// The job's build no longer waits here (it ended, or was lost to
    /// another server): the job is no longer known queued here either.
    pub fn detach(&self, job_id: &str) {
        locked(&self.live).remove(job_id);
        locked(&self.queue).gone(job_id);
    }

    /// Drops the job's relay, if it has one here (its result is in).
    pub fn drop_relay(&self, job_id: &str) {
        let mut live = locked(&self.live);
        if live.get(job_id).is_some_and(|l| l.is_relay()) {
            live.remove(job_id);
        }
    }

    /// Adds `relay` unless the job already has an entry; returns the entry.
    pub fn attach_relay(&self, job_id: &str, relay: Arc<LiveJob>) -> Arc<LiveJob> {
        locked(&self.live)
            .entry(job_id.to_owned())
            .or_insert(relay)
            .clone()
    }

    /// The jobs whose builds wait here (relays excluded: their builds wait
    /// on another server).
    pub fn waiting_jobs(&self) -> Vec<String> {
        locked(&self.live)
            .iter()
            .filter(|(_, l)| !l.is_relay())
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn live(&self, job_id: &str) -> Option<Arc<LiveJob>> {
        locked(&self.live).get(job_id).cloned()
    }

    /// An agent acknowledged the job: the build waiting here for it learns
    /// when the lease began and logs who took it, before the acknowledgement
    /// is answered — so before the agent's first chunk, which takes that
    /// line into its own commit, or its result, which may end the build.
    pub fn tell_leased(&self, job_id: &str, agent: &str, attempt: u32, at_ms: i64) {
        let Some(live) = self.live(job_id) else {
            return;
        };
        let Some(finisher) = &live.finisher else {
            return;
        };
        finisher.leased(at_ms, false);
        let _ = live.log.send(Msg::Aside(format!(
            "[Container] Agent {agent} took the build (attempt {attempt})"
        )));
        let _ = live.ends.send(Ending::Leased { attempt });
    }

    /// Tells the job's build, if it waits here.
    pub fn tell(&self, job_id: &str, ending: Ending) {
        if let Some(live) = self.live(job_id) {
            let _ = live.ends.send(ending);
        }
    }

    /// The lock that serialises a `command` job's log chunks here.
    pub fn command_lock(&self, job_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        locked(&self.command_locks)
            .entry(job_id.to_owned())
            .or_default()
            .clone()
    }

    /// A `command` job ended (or its waiter gave up on it): its lock goes,
    /// and waiters look at the store.
    pub fn command_ended(&self, job_id: &str) {
        locked(&self.command_locks).remove(job_id);
        self.command_ends.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a `command` job ends.
    pub fn command_end_changes(&self) -> watch::Receiver<u64> {
        self.command_ends.subscribe()
    }

    pub fn remember_agent(&self, agent: AgentRecord) {
        locked(&self.agents).insert(agent.id.clone(), agent);
    }

    /// The agent, from memory or the store.
    pub async fn agent<S: Store>(
        &self,
        store: &S,
        id: &str,
    ) -> Result<AgentRecord, gantry_store::StoreError> {
        if let Some(a) = locked(&self.agents).get(id).cloned() {
            return Ok(a);
        }
        let agent = store.get_agent(id).await?;
        self.remember_agent(agent.clone());
        Ok(agent)
    }

    pub fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease_timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Follows the store's news of jobs queued through other servers, for as
/// long as the server runs, waking a poll here for each (only a store
/// shared by several servers has such news).
pub(crate) async fn follow_queue<S: Store>(store: Arc<S>, hub: Arc<AgentHub>) {
    loop {
        let mut feed = match store.queue_feed().await {
            Ok(Some(feed)) => feed,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "listening for jobs other servers queue failed; trying again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(news) = feed.recv().await {
            match news {
                QueueNews::Queued {
                    labels: Some(labels),
                } => hub.queued_elsewhere(&labels),
                // Labels not told, or news lost: every poll looks.
                QueueNews::Queued { labels: None } | QueueNews::Missed => hub.job_ready(),
            }
        }
        // The store closed: the server is stopping.
        return;
    }
}

/// Returns expired leases to the queue (or fails their jobs) for as long
/// as the server runs, checking a few times per lease timeout so a job
/// is back within the timeout plus a fraction of it.
pub(crate) async fn reaper<S: Store>(store: Arc<S>, hub: Arc<AgentHub>) {
    let tick = (hub.lease_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let expired = match store.expire_leases(now_ms()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "expiring agent leases failed");
                continue;
            }
        };
        for lease in expired {
            // (Its entry among the leases begun here stays: the lease
            // may as well have run out through another server's reaper,
            // so a late result is refused by the store's fenced write,
            // whichever server expired it.)
            let agent = lease.agent_id.unwrap_or_default();
            tracing::warn!(job = %lease.job.id, agent = %agent, status = %lease.job.status,
                "an agent's lease ran out");
            let ending = if lease.job.status == job_status::QUEUED {
                hub.job_ready_for(&OfferableJob {
                    id: lease.job.id.clone(),
                    kind: lease.job.kind.clone(),
                    labels: lease.job.labels.clone(),
                    attempts: lease.job.attempts,
                });
                Ending::Requeued {
                    agent,
                    attempt: lease.job.attempts,
                    max: lease.job.max_attempts,
                }
            } else {
                Ending::Failed(
                    lease
                        .job
                        .error
                        .unwrap_or_else(|| "the lease ran out".into()),
                )
            };
            if lease.job.kind == gantry_agent::protocol::COMMAND_KIND
                && lease.job.status != job_status::QUEUED
            {
                hub.command_ended(&lease.job.id);
            }
            let over = matches!(ending, Ending::Failed(_));
            hub.tell(&lease.job.id, ending);
            if over {
                // No result will come: a relay for its log is done.
                hub.drop_relay(&lease.job.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    /// A queued job needing `l`.
    fn ready(l: &[&str]) -> OfferableJob {
        OfferableJob {
            id: format!("job-{}", l.join("-")),
            kind: "codebuild".into(),
            labels: labels(l),
            attempts: 0,
        }
    }

    fn woken(w: &Waiting<'_>) -> bool {
        w.woken().now_or_never().is_some()
    }

    #[test]
    fn a_queued_job_wakes_one_poller_whose_labels_match() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let docker = hub.wait_for_job(&labels(&["executor:docker"]));
        let first = hub.wait_for_job(&labels(&["executor:host", "linux"]));
        let second = hub.wait_for_job(&labels(&["executor:host"]));
        assert_eq!(hub.waiting(), 3);
        hub.job_ready_for(&ready(&["executor:host"]));
        assert_eq!(
            first.woken().now_or_never(),
            Some(Some(ready(&["executor:host"]))),
            "the longest-waiting matching poll is woken, and handed the job"
        );
        assert!(!woken(&second), "the other matching poll sleeps on");
        assert!(
            !woken(&docker),
            "a poll whose labels do not match sleeps on"
        );
        assert_eq!(hub.waiting(), 2);
        hub.job_ready_for(&ready(&["executor:host", "linux"]));
        assert!(
            !woken(&second),
            "a poll without every label the job needs is not woken"
        );
        hub.job_ready_for(&ready(&["executor:host"]));
        assert!(woken(&second));
        assert!(!woken(&docker));
        // A woken poll that looks again rejoins at the end.
        first.join();
        second.join();
        assert_eq!(hub.waiting(), 3);
        hub.job_ready();
        assert_eq!(
            docker.woken().now_or_never(),
            Some(None),
            "woken for any job: handed none"
        );
        assert!(woken(&first) && woken(&second));
        assert_eq!(hub.waiting(), 0);
    }

    #[test]
    fn a_wake_up_taken_while_busy_is_kept_or_passed_on_when_the_poll_leaves() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let host = labels(&["executor:host"]);
        let busy = hub.wait_for_job(&host);
        // Woken while not waiting (looking at the queue): kept for its wait.
        hub.job_ready_for(&ready(&["executor:host"]));
        busy.join();
        assert!(woken(&busy), "the wake-up is kept");
        let next = hub.wait_for_job(&host);
        // Woken again while busy, and leaving with another job's offer:
        // the wake-up goes to the next poll rather than being lost.
        hub.job_ready_for(&ready(&["executor:host"]));
        assert!(!woken(&next));
        drop(busy);
        assert_eq!(
            next.woken().now_or_never(),
            Some(Some(ready(&["executor:host"]))),
            "passed on, with the job"
        );
        assert_eq!(hub.waiting(), 0);
    }

    #[test]
    fn a_job_queued_elsewhere_wakes_one_matching_poll_to_look_in_the_store() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let t0 = std::time::Instant::now();
        // The first look reads the store; it held nothing.
        assert_eq!(
            locked(&hub.queue).next(&labels(&["executor:host"]), t0, |_| true),
            queue::Next::Scan
        );
        hub.queue_scanned(&[], false);
        let docker = hub.wait_for_job(&labels(&["executor:docker"]));
        let first = hub.wait_for_job(&labels(&["executor:host"]));
        let second = hub.wait_for_job(&labels(&["executor:host"]));
        hub.queued_elsewhere(&labels(&["executor:host"]));
        assert_eq!(
            first.woken().now_or_never(),
            Some(None),
            "the longest-waiting matching poll, with no job in hand"
        );
        assert!(!woken(&second) && !woken(&docker));
        // Its look finds nothing in memory, and reads the store.
        assert_eq!(
            locked(&hub.queue).next(&labels(&["executor:host"]), t0, |_| true),
            queue::Next::Scan
        );
    }

    #[test]
    fn a_job_is_offered_once_until_its_offer_lapses_or_ends() {
        let hub = AgentHub::new(Duration::from_secs(30));
        assert!(hub.claim_offer("job-1", 1000, 6000), "free");
        assert!(
            !hub.claim_offer("job-1", 1001, 6001),
            "offered to another poll"
        );
        assert!(hub.claim_offer("job-2", 1001, 6001), "other jobs are free");
        assert!(
            !hub.claim_offer("job-1", 6000, 11_000),
            "still out at its last moment"
        );
        assert!(
            hub.claim_offer("job-1", 6001, 11_001),
            "lapsed: offered again"
        );
        hub.offer_ended("job-1");
        assert!(
            hub.claim_offer("job-1", 6002, 11_002),
            "acknowledged: free again"
        );
        // Lapsed offers are dropped once many are kept; live ones stay.
        for i in 0..OFFERS_KEPT {
            assert!(hub.claim_offer(&format!("old-{i}"), 7000, 7001));
        }
        assert!(hub.claim_offer("new", 8000, 13_000));
        assert!(hub.offers_out() < 10, "lapsed ones dropped");
        assert!(!hub.claim_offer("new", 8001, 13_001), "the live one kept");
    }

    #[test]
    fn tokens_are_believed_briefly_and_forgotten_on_revocation() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let record = AgentTokenRecord {
            id: "atok-1".into(),
            name: "t".into(),
            created_ms: 0,
            last_used_ms: None,
            revoked_ms: None,
        };
        hub.cache_token("h1", record.clone());
        hub.cache_token(
            "h2",
            AgentTokenRecord {
                id: "atok-2".into(),
                ..record.clone()
            },
        );
        assert_eq!(hub.cached_token("h1").expect("cached").id, "atok-1");
        hub.forget_token("atok-1");
        assert!(hub.cached_token("h1").is_none(), "revoked here: at once");
        assert!(hub.cached_token("h2").is_some());
        // Older than the TTL: asked again (a revocation elsewhere shows).
        if let Some(c) = locked(&hub.tokens).get_mut("h2") {
            c.at = std::time::Instant::now()
                .checked_sub(TOKEN_CACHE_TTL)
                .expect("instant");
        }
        assert!(hub.cached_token("h2").is_none());
        assert!(hub.cached_token("unknown").is_none());
    }
}
