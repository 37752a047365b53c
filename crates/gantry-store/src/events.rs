//! The store's methods for EventBridge buses, rules, targets and deliveries.

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;

/// A rule to create or replace (PutRule).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRule {
    /// The bus; `default` unless the caller named another.
    pub bus: String,
    /// The rule's name, unique on its bus.
    pub name: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The event pattern's text, when the rule matches events.
    pub event_pattern: Option<String>,
    /// `rate(...)` or `cron(...)`, when the rule runs on a schedule.
    pub schedule: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The role ARN, kept as given (Gantry does not assume roles).
    pub role_arn: Option<String>,
    /// Now, epoch milliseconds: the creation time of a new rule, and the
    /// anchor a rate counts from when the schedule is new or changed.
    pub now_ms: i64,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRecord {
    /// The bus.
    pub bus: String,
    /// The name.
    pub name: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The event pattern's text.
    pub event_pattern: Option<String>,
    /// The schedule expression.
    pub schedule: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The role ARN.
    pub role_arn: Option<String>,
    /// When it was created.
    pub created_ms: i64,
    /// For scheduled rules: the last fire time, or the anchor before the first.
    pub last_fire_ms: Option<i64>,
}

/// One target of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRecord {
    /// The target's id, unique within its rule.
    pub id: String,
    /// What it calls: an ARN or an `http(s)://` URL.
    pub arn: String,
    /// The whole target as PutTargets took it (botocore's `Target`).
    pub target: Value,
}

/// A rule's targets, for building the server's match index.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTargets {
    /// The bus.
    pub bus: String,
    /// The rule's name.
    pub rule: String,
    /// Its targets.
    pub targets: Vec<TargetRecord>,
}

/// A delivery to enqueue: one event for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The event's id.
    pub event_id: String,
    /// The event in its envelope.
    pub event: Value,
    /// The bus it was put on.
    pub bus: String,
    /// The rule that matched it.
    pub rule: String,
    /// The target, as it was when the event was accepted.
    pub target: TargetRecord,
    /// When the first attempt is due.
    pub due_ms: i64,
}

/// A delivery in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// Its row id.
    pub id: i64,
    /// The event's id.
    pub event_id: String,
    /// The event.
    pub event: Value,
    /// The bus.
    pub bus: String,
    /// The rule.
    pub rule: String,
    /// The target.
    pub target: TargetRecord,
    /// `PENDING`, `DELIVERED` or `DEAD`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_ms: i64,
    /// When the event was accepted.
    pub created_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A delivery given up on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    /// The outbox row it came from.
    pub delivery_id: i64,
    /// The event's id.
    pub event_id: String,
    /// The event.
    pub event: Value,
    /// The bus.
    pub bus: String,
    /// The rule.
    pub rule: String,
    /// The target's id.
    pub target_id: String,
    /// The target's ARN or URL.
    pub target_arn: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was given up.
    pub reason: String,
    /// When.
    pub at_ms: i64,
}

/// A connection to create: its public description and its secret part.
#[derive(Clone, PartialEq)]
pub struct NewConnection {
    /// The unique name.
    pub name: String,
    /// What DescribeConnection shows (no secret values).
    pub connection: Value,
    /// The secret parameters (e.g. `{"ApiKeyValue": "..."}`), encrypted
    /// before they are written.
    pub secret: Value,
}

impl fmt::Debug for NewConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewConnection")
            .field("name", &self.name)
            .field("connection", &self.connection)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A stored connection, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRecord {
    /// The name.
    pub name: String,
    /// The public description.
    pub connection: Value,
    /// When it was created.
    pub created_ms: i64,
}

/// A stored API destination.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiDestinationRecord {
    /// The name.
    pub name: String,
    /// The connection it authenticates with.
    pub connection: String,
    /// The destination as DescribeApiDestination shows it.
    pub destination: Value,
    /// When it was created.
    pub created_ms: i64,
}

/// EventBridge buses, rules, targets and deliveries.
///
/// Methods that change something take the `actor` and write the audit log in
/// the same transaction, as [`BuildStore`](crate::BuildStore) does.
/// Deliveries are the bus's own bookkeeping and are not audited one by one.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    // Buses and rules.

    /// Whether a bus exists (`default` always does).
    async fn bus_exists(&self, bus: &str) -> Result<bool, StoreError>;
    /// Creates or replaces a rule, keeping its creation time, and its last
    /// fire time unless the schedule changed. `NotFound` when the bus does
    /// not exist.
    async fn put_rule(&self, rule: &NewRule, actor: &str) -> Result<RuleRecord, StoreError>;
    /// One rule.
    async fn get_rule(&self, bus: &str, name: &str) -> Result<RuleRecord, StoreError>;
    /// A bus's rules whose names start with `prefix`, by name.
    async fn list_rules(&self, bus: &str, prefix: &str) -> Result<Vec<RuleRecord>, StoreError>;
    /// Every rule on every bus.
    async fn all_rules(&self) -> Result<Vec<RuleRecord>, StoreError>;
    /// Deletes a rule. `Conflict` while it has targets, `NotFound` when absent.
    async fn delete_rule(&self, bus: &str, name: &str, actor: &str) -> Result<(), StoreError>;
    /// Sets `ENABLED` / `DISABLED`.
    async fn set_rule_state(
        &self,
        bus: &str,
        name: &str,
        state: &str,
        actor: &str,
    ) -> Result<(), StoreError>;

    // Targets.

    /// Adds or replaces targets (by id). `NotFound` when the rule does not exist.
    async fn put_targets(
        &self,
        bus: &str,
        rule: &str,
        targets: &[TargetRecord],
        actor: &str,
    ) -> Result<(), StoreError>;
    /// Removes targets by id; returns the ids that existed and were removed.
    async fn remove_targets(
        &self,
        bus: &str,
        rule: &str,
        ids: &[String],
        actor: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// A rule's targets, by id.
    async fn list_targets(&self, bus: &str, rule: &str) -> Result<Vec<TargetRecord>, StoreError>;
    /// Every rule's targets (rules without targets are left out).
    async fn all_targets(&self) -> Result<Vec<RuleTargets>, StoreError>;

    // The outbox.

    /// Accepts events: writes their deliveries, and an audit row when
    /// `audit` is `(actor, detail)`, in one transaction.
    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        audit: Option<(&str, &str)>,
    ) -> Result<(), StoreError>;
    /// Records a scheduled rule's fire at `fired_ms` and enqueues its
    /// deliveries, in one transaction, only if the rule's last fire time is
    /// still `previous` (so two schedulers never fire it twice). Returns
    /// whether it fired.
    async fn fire_schedule(
        &self,
        bus: &str,
        rule: &str,
        previous: Option<i64>,
        fired_ms: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool, StoreError>;
    /// Up to `limit` PENDING deliveries due at `now_ms`, oldest due first.
    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// The newest `limit` deliveries in any status, newest first.
    async fn recent_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Marks a delivery DELIVERED.
    async fn complete_delivery(&self, id: i64, now_ms: i64) -> Result<(), StoreError>;
    /// Records a failed attempt and when to try again.
    async fn retry_delivery(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Gives a delivery up: marks it DEAD and writes its dead-letter record,
    /// in one transaction.
    async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The newest `limit` dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterRecord>, StoreError>;

    // Connections and API destinations.

    /// Creates a connection, its secret encrypted. `Conflict` when the name is taken.
    async fn create_connection(
        &self,
        connection: &NewConnection,
        actor: &str,
    ) -> Result<ConnectionRecord, StoreError>;
    /// One connection, without its secret.
    async fn get_connection(&self, name: &str) -> Result<ConnectionRecord, StoreError>;
    /// A connection's decrypted secret parameters, for delivery only.
    async fn connection_secret(&self, name: &str) -> Result<Value, StoreError>;
    /// Deletes a connection. `Conflict` while an API destination uses it.
    async fn delete_connection(&self, name: &str, actor: &str) -> Result<(), StoreError>;
    /// Creates an API destination. `Conflict` when the name is taken,
    /// `NotFound` when its connection does not exist.
    async fn create_api_destination(
        &self,
        destination: &ApiDestinationRecord,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// One API destination.
    async fn get_api_destination(&self, name: &str) -> Result<ApiDestinationRecord, StoreError>;
    /// Deletes an API destination.
    async fn delete_api_destination(&self, name: &str, actor: &str) -> Result<(), StoreError>;
}
