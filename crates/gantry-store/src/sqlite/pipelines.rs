//! [`PipelineStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::PipelineStore;

#[async_trait]
impl PipelineStore for SqliteStore {}
