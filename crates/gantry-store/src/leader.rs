//! Leases through the database: which of several servers sharing one
//! database runs the work that must run once (schedules, timers, polling).
//!
//! A lease is a row `(name, holder, term, expires_ms)`. A server takes it
//! when it is free or expired and renews it before it expires; both are one
//! conditional upsert, so of two servers racing for an expired lease exactly
//! one gets it. `term` grows by one each time the lease changes hands, so a
//! holder can tell that it lost the lease in between two renewals.
//!
//! Times come from the caller's clock: servers sharing a database must keep
//! their clocks in step to well within the lease's time to live.

use async_trait::async_trait;

use crate::StoreError;

/// A lease as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease's name, e.g. `"singletons"`.
    pub name: String,
    /// Who holds (or last held) it: a server's instance id.
    pub holder: String,
    /// Counts the changes of holder from 1.
    pub term: u64,
    /// When the lease runs out unless renewed (epoch milliseconds).
    pub expires_ms: i64,
}

/// Lease rows for leader election. Leases are the servers' own bookkeeping,
/// renewed every few seconds, and are not audited.
#[async_trait]
pub trait LeaderStore: Send + Sync + 'static {
    /// Takes the lease `name` for `holder` until `now_ms + ttl_ms` when it is
    /// free, expired (`expires_ms <= now_ms`) or already held by `holder`
    /// (a renewal). Returns the lease when `holder` now holds it, `None`
    /// when another holder's lease is still running.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<LeaseRecord>, StoreError>;

    /// Ends `holder`'s lease at once (a clean shutdown), so another server
    /// need not wait for it to expire. Does nothing when `holder` does not
    /// hold it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// The lease's row, expired or not; `None` when it was never taken.
    async fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError>;
}
