//! [`WorkflowStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::WorkflowStore;

#[async_trait]
impl WorkflowStore for SqliteStore {}
