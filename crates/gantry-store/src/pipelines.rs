//! The store's methods for CodePipeline pipelines, their executions, webhooks and approvals.

use async_trait::async_trait;

/// CodePipeline pipelines, their executions, webhooks and approvals.
///
/// Methods that change something take the `actor` and write the audit log in
/// the same transaction, as [`BuildStore`](crate::BuildStore) does.
#[async_trait]
pub trait PipelineStore: Send + Sync + 'static {}
