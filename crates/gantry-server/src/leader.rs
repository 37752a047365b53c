//! Leader election between servers sharing one database: the work that
//! must run once however many servers there are (the event bus's scheduler
//! and delivery worker, Git polling) runs only on the server holding the
//! `singletons` lease ([`gantry_store::LeaderStore`]).
//!
//! Every server renews (or tries to take) the lease every
//! [`LeaderElection::renew_every`]; a lease not renewed runs out after
//! [`LeaderElection::ttl`] and the next server to try takes it. A server
//! stops its singleton work as soon as one renewal fails or is refused, and
//! the lease outlives that moment by at least `ttl - renew_every`, so two
//! servers never run it at once as long as a renewal (bounded by
//! `renew_every`) and the hosts' clocks agree to well within that margin.
//! A server that stops cleanly gives the lease up, so a replica takes over
//! at its next renewal rather than after the lease runs out.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gantry_store::Store;
use tokio::sync::watch;

/// The lease the singleton work runs under.
pub(crate) const LEASE: &str = "singletons";

/// How leases are taken and kept ([`Config::leader_election`](crate::Config)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// How long a lease lasts unless renewed: how soon a replica takes over
    /// from a server that died.
    pub ttl: Duration,
    /// How often the lease is renewed (and a free lease tried); must be
    /// well under `ttl`.
    pub renew_every: Duration,
}

impl Default for LeaderElection {
    /// A 10 s lease renewed every 3 s.
    fn default() -> Self {
        LeaderElection {
            ttl: Duration::from_secs(10),
            renew_every: Duration::from_secs(3),
        }
    }
}

impl LeaderElection {
    /// Refuses settings under which two servers could both think they lead.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_every.is_zero() || self.renew_every * 2 > self.ttl {
            return Err(format!(
                "leader election: renew_every ({:?}) must be more than zero and at most half the ttl ({:?})",
                self.renew_every, self.ttl
            ));
        }
        Ok(())
    }
}

/// This server's standing: a watch that is true while it holds the lease.
/// Dropped without [`Leadership::stop`] (the server's task was cancelled, as
/// good as dead) it stops renewing and closes the watch, which stops the
/// singleton work, but keeps the lease: a replica takes it when it runs out.
pub(crate) struct Leadership {
    leader: watch::Receiver<bool>,
    // Kept so the watch never closes while the server runs.
    _always: Option<watch::Sender<bool>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Leadership {
    /// Starts electing when `election` is set (servers sharing a database);
    /// without it this server is the only one and always leads.
    pub(crate) fn start<S: Store>(store: Arc<S>, election: Option<LeaderElection>) -> Leadership {
        let (stop, stop_rx) = watch::channel(false);
        let Some(election) = election else {
            let (always, leader) = watch::channel(true);
            return Leadership {
                leader,
                _always: Some(always),
                stop,
                task: None,
            };
        };
        let (tx, leader) = watch::channel(false);
        let task = tokio::spawn(campaign(store, election, tx, stop_rx));
        Leadership {
            leader,
            _always: None,
            stop,
            task: Some(task),
        }
    }

    /// True while this server leads.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Stops renewing and gives the lease up (when held).
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Takes or renews the lease every `renew_every` until `stop`; publishes
/// whether it is held.
async fn campaign<S: Store>(
    store: Arc<S>,
    election: LeaderElection,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    // A new holder id per process: a restarted server waits for its
    // previous life's lease to run out like any other replica.
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4());
    let ttl_ms = i64::try_from(election.ttl.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(election.renew_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        let attempt = store.acquire_lease(LEASE, &holder, gantry_store::now_ms(), ttl_ms);
        let held = match tokio::time::timeout(election.renew_every, attempt).await {
            Ok(Ok(Some(lease))) => {
                if !*leader.borrow() {
                    tracing::info!(%holder, term = lease.term, "this server now leads (schedules, deliveries, polling)");
                }
                true
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "renewing the leader lease failed");
                false
            }
            Err(_) => {
                tracing::warn!("renewing the leader lease timed out");
                false
            }
        };
        if *leader.borrow() && !held {
            tracing::warn!(%holder, "this server no longer leads; stopping its singleton work");
        }
        leader.send_if_modified(|l| std::mem::replace(l, held) != held);
    }
    if *leader.borrow() {
        leader.send_replace(false);
        if let Err(e) = store.release_lease(LEASE, &holder).await {
            tracing::warn!(error = %e, "giving up the leader lease failed");
        }
    }
}

/// Runs `work()` while `leader` is true: started each time it turns true,
/// dropped (cancelled at its next await) when it turns false or the watch
/// closes (the [`Leadership`] is gone). Returns when `work` returns, or when
/// `stop` turns true.
pub(crate) async fn while_leader<F, Fut>(
    mut leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = gained(&mut leader) => {}
            () = stopping(&mut stop) => return,
        }
        tokio::select! {
            () = work() => return,
            () = lost(&mut leader) => {}
            () = stopping(&mut stop) => return,
        }
    }
}

/// Completes when the lease is held; never once the watch has closed.
async fn gained(leader: &mut watch::Receiver<bool>) {
    let held = leader.wait_for(|held| *held).await.is_ok();
    // A closed watch still shows its last value: not a lease.
    if !held || leader.has_changed().is_err() {
        std::future::pending::<()>().await;
    }
}

/// Completes when the lease is lost or the watch closes.
async fn lost(leader: &mut watch::Receiver<bool>) {
    let _ = leader.wait_for(|held| !*held).await;
}

/// Completes when `stop` turns true; never when it closes first.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
