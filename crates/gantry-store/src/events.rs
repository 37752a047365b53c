//! The store's methods for EventBridge buses, rules, targets and deliveries.

use async_trait::async_trait;

/// EventBridge buses, rules, targets and deliveries.
///
/// Methods that change something take the `actor` and write the audit log in
/// the same transaction, as [`BuildStore`](crate::BuildStore) does.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {}
