//! The store's methods for Step Functions state machines, their executions and journals.

use async_trait::async_trait;

/// Step Functions state machines, their executions and journals.
///
/// Methods that change something take the `actor` and write the audit log in
/// the same transaction, as [`BuildStore`](crate::BuildStore) does.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {}
