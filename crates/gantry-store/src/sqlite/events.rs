//! [`EventStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::EventStore;

#[async_trait]
impl EventStore for SqliteStore {}
