//! The event bus: the match index over enabled rules, `publish` for
//! Gantry's own state changes and `put_events` for PutEvents, and the
//! lifecycle of the delivery worker and the scheduler.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gantry_events::{Event, Pattern, PutEventsEntry, RuleSet, Schedule, rfc3339_from_ms};
use gantry_store::{NewDelivery, RuleRecord, Store, StoreError, TargetRecord};
use serde_json::Value;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use super::invoke::{TargetInvoker, Unwired};
use crate::config::Config;

/// What time it is, in epoch milliseconds. The delivery worker (due times,
/// backoff, event age) and the scheduler read time only through this, so
/// tests can move time forward instead of waiting.
pub trait Clock: Send + Sync + 'static {
    /// Now, epoch milliseconds (UTC).
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        gantry_store::now_ms()
    }
}

/// The event bus's settings (part of [`Config`]).
#[derive(Clone)]
pub struct EventsConfig {
    /// The clock for schedules, due times and backoff.
    pub clock: Arc<dyn Clock>,
    /// The first retry waits this long; each further retry twice as long as
    /// the previous one, up to [`EventsConfig::max_backoff`].
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How often the delivery worker and the scheduler look for due work
    /// (the worker is also woken at once by every accepted event).
    pub poll_interval: Duration,
    /// How long one HTTP delivery may take.
    pub http_timeout: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            clock: Arc::new(SystemClock),
            retry_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            http_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsConfig")
            .field("retry_base", &self.retry_base)
            .field("max_backoff", &self.max_backoff)
            .field("poll_interval", &self.poll_interval)
            .field("http_timeout", &self.http_timeout)
            .finish_non_exhaustive()
    }
}

/// An enabled rule with targets, as the index and the scheduler see it.
#[derive(Debug, Clone)]
pub(crate) struct LiveRule {
    pub bus: String,
    pub name: String,
    pub arn: String,
    pub targets: Vec<TargetRecord>,
}

/// An enabled scheduled rule with targets.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledRule {
    pub rule: LiveRule,
    pub schedule: Schedule,
    pub last_fire_ms: Option<i64>,
    pub created_ms: i64,
}

/// The match index: rebuilt from the store whenever rules or targets change.
pub(crate) struct Index {
    set: RuleSet<usize>,
    rules: Vec<LiveRule>,
    pub scheduled: Vec<ScheduledRule>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            set: RuleSet::builder().build(),
            rules: Vec::new(),
            scheduled: Vec::new(),
        }
    }
}

/// The rule ARN: `rule/NAME` on the default bus, `rule/BUS/NAME` elsewhere.
pub(crate) fn rule_arn(config: &Config, bus: &str, name: &str) -> String {
    let path = if bus == "default" {
        name.to_owned()
    } else {
        format!("{bus}/{name}")
    };
    format!(
        "arn:aws:events:{}:{}:rule/{path}",
        config.region, config.account_id
    )
}

/// The bus handle in `AppState`.
pub(crate) struct EventBus<S: Store> {
    pub store: Arc<S>,
    pub config: Arc<Config>,
    index: RwLock<Arc<Index>>,
    reloading: Mutex<()>,
    pub wake: Notify,
    invoker: RwLock<Arc<dyn TargetInvoker>>,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// A PutEvents entry's outcome.
pub(crate) type EntryResult = Result<String, (String, String)>;

impl<S: Store> EventBus<S> {
    /// The bus; `http` is the client its deliveries use.
    pub fn new(store: Arc<S>, config: Arc<Config>, http: reqwest::Client) -> EventBus<S> {
        EventBus {
            store,
            config,
            index: RwLock::new(Arc::new(Index::default())),
            reloading: Mutex::new(()),
            wake: Notify::new(),
            invoker: RwLock::new(Arc::new(Unwired)),
            http,
            stop: watch::channel(false).0,
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.config.events.clock.now_ms()
    }

    /// Lets the pipeline and Step Functions parts start what targets name.
    pub fn set_invoker(&self, invoker: Arc<dyn TargetInvoker>) {
        *self.invoker.write().unwrap_or_else(|e| e.into_inner()) = invoker;
    }

    pub fn invoker(&self) -> Arc<dyn TargetInvoker> {
        self.invoker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn index(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether an event put on `bus` now could reach anyone: an enabled
    /// rule with targets is on that bus (as the index last read them; the
    /// same snapshot decides the deliveries).
    pub fn listens_on(&self, bus: &str) -> bool {
        self.index().rules.iter().any(|r| r.bus == bus)
    }

    /// Rebuilds the index from the store. Reloads are serialised so an older
    /// snapshot never replaces a newer one.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let rules = self.store.all_rules().await?;
        let targets = self.store.all_targets().await?;
        let mut builder = RuleSet::builder();
        let mut live = Vec::new();
        let mut scheduled = Vec::new();
        for r in rules.into_iter().filter(|r| r.state != "DISABLED") {
            let Some(t) = targets.iter().find(|t| t.bus == r.bus && t.rule == r.name) else {
                continue;
            };
            let entry = LiveRule {
                arn: rule_arn(&self.config, &r.bus, &r.name),
                bus: r.bus.clone(),
                name: r.name.clone(),
                targets: t.targets.clone(),
            };
            add_rule(&mut builder, &mut live, &mut scheduled, &r, entry);
        }
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Index {
            set: builder.build(),
            rules: live,
            scheduled,
        });
        Ok(())
    }

    /// The deliveries an event makes: one per target of every enabled rule
    /// on its bus that matches it.
    fn deliveries_for(&self, bus: &str, event: &Event, now: i64) -> Vec<NewDelivery> {
        let index = self.index();
        let value = event.to_value();
        let mut out = Vec::new();
        for &i in index.set.matches(&value) {
            let Some(rule) = index.rules.get(i).filter(|r| r.bus == bus) else {
                continue;
            };
            for target in &rule.targets {
                out.push(NewDelivery {
                    event_id: event.id.clone(),
                    event: value.clone(),
                    bus: bus.to_owned(),
                    rule: rule.name.clone(),
                    target: target.clone(),
                    due_ms: now,
                });
            }
        }
        out
    }

    /// PutEvents: validates each entry, and writes the deliveries of every
    /// valid one with one audit row, in one transaction. Returns one result
    /// per entry: the event id, or (ErrorCode, ErrorMessage).
    pub async fn put_events(
        &self,
        entries: Vec<PutEventsEntry>,
        actor: &str,
        allow_aws_sources: bool,
    ) -> Result<Vec<EntryResult>, StoreError> {
        let now = self.now_ms();
        let now_text = rfc3339_from_ms(now);
        let mut results = Vec::with_capacity(entries.len());
        let mut deliveries = Vec::new();
        for mut entry in entries {
            let bus = super::bus_name(entry.event_bus_name.as_deref());
            // The default bus is made with the schema and nothing deletes
            // it; asking the store for it cost a query per event, a dozen
            // per build with Gantry's own state and phase events.
            if bus != "default" && !self.store.bus_exists(&bus).await? {
                results.push(Err((
                    "InvalidArgument".to_owned(),
                    format!("Event bus {bus} does not exist."),
                )));
                continue;
            }
            entry.event_bus_name = None;
            let id = uuid::Uuid::new_v4().to_string();
            match entry.into_event(
                &id,
                &self.config.account_id,
                &self.config.region,
                &now_text,
                allow_aws_sources,
            ) {
                Ok(event) => {
                    deliveries.extend(self.deliveries_for(&bus, &event, now));
                    results.push(Ok(id));
                }
                Err(e) => results.push(Err(entry_error(&e))),
            }
        }
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        let detail = format!("{accepted} accepted, {} deliveries", deliveries.len());
        let audit = (!allow_aws_sources).then_some((actor, detail.as_str()));
        self.store.enqueue_deliveries(&deliveries, audit).await?;
        if !deliveries.is_empty() {
            self.wake.notify_one();
        }
        Ok(results)
    }

    /// Publishes one of Gantry's own events on the default bus. Failures
    /// are logged: a state change is never undone because its event could
    /// not be recorded.
    pub async fn publish(
        &self,
        source: &str,
        detail_type: &str,
        resources: Vec<String>,
        detail: Value,
    ) {
        if !self.listens_on("default") {
            return;
        }
        let entry = PutEventsEntry {
            source: Some(source.to_owned()),
            detail_type: Some(detail_type.to_owned()),
            detail: Some(detail.to_string()),
            resources,
            ..PutEventsEntry::default()
        };
        match self.put_events(vec![entry], "system", true).await {
            Ok(results) => {
                if let Some(Err((code, message))) = results.first() {
                    tracing::error!(%source, %detail_type, %code, %message, "publishing an event failed");
                }
            }
            Err(e) => {
                tracing::error!(%source, %detail_type, error = %e, "publishing an event failed");
            }
        }
    }

    /// Queues one message for `url` through the outbox, with the event
    /// deliveries' retries, backoff and dead letters, so it survives a
    /// restart. `purpose` stands where a rule's name would (it names the
    /// delivery in logs and dead letters).
    pub async fn send_message(
        &self,
        purpose: &str,
        url: &str,
        body: &Value,
    ) -> Result<(), StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let delivery = NewDelivery {
            event_id: id.clone(),
            event: serde_json::json!({ "id": id, "detail-type": purpose }),
            bus: "default".to_owned(),
            rule: purpose.to_owned(),
            target: TargetRecord {
                id: purpose.to_owned(),
                arn: url.to_owned(),
                target: serde_json::json!({ "Id": purpose, "Arn": url, "Input": body.to_string() }),
            },
            due_ms: self.now_ms(),
        };
        self.store.enqueue_deliveries(&[delivery], None).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Loads the index and starts the delivery worker and the scheduler,
    /// which run while `leader` is true (this server holds the lease among
    /// those sharing the database; always, for a server on its own).
    pub async fn start(self: &Arc<Self>, leader: watch::Receiver<bool>) -> Result<(), StoreError> {
        self.reload().await?;
        let bus = self.clone();
        let worker = tokio::spawn(crate::leader::while_leader(
            leader.clone(),
            self.stop.subscribe(),
            move || super::delivery::run(bus.clone(), bus.stop.subscribe()),
        ));
        let bus = self.clone();
        let scheduler = tokio::spawn(crate::leader::while_leader(
            leader,
            self.stop.subscribe(),
            move || super::scheduler::run(bus.clone(), bus.stop.subscribe()),
        ));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(worker);
        tasks.push(scheduler);
        // On a shared database another server may change rules: every
        // server, leader or not, matches the events it accepts, so each
        // reads the rules afresh every second (EventBridge's own rule
        // changes are eventually consistent in the same way).
        if self.config.leader_election.is_some() {
            tasks.push(tokio::spawn(refresh_rules(
                self.clone(),
                self.stop.subscribe(),
            )));
        }
        Ok(())
    }

    /// Stops the worker and the scheduler and waits for them. A delivery in
    /// flight is abandoned; its row stays PENDING and is retried on the next
    /// start (at-least-once).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        // The server's invoker holds the app state, which holds this bus:
        // dropping it breaks the cycle.
        self.set_invoker(Arc::new(Unwired));
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// How often a server sharing its database re-reads the rules.
const RULE_REFRESH: Duration = Duration::from_secs(1);

async fn refresh_rules<S: Store>(bus: Arc<EventBus<S>>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RULE_REFRESH) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = bus.reload().await {
            tracing::warn!(error = %e, "re-reading the event rules failed; retrying");
        }
    }
}

fn add_rule(
    builder: &mut gantry_events::RuleSetBuilder<usize>,
    live: &mut Vec<LiveRule>,
    scheduled: &mut Vec<ScheduledRule>,
    r: &RuleRecord,
    entry: LiveRule,
) {
    if let Some(text) = &r.event_pattern {
        match Pattern::parse(text) {
            Ok(pattern) => {
                builder.add(live.len(), &pattern);
                live.push(entry.clone());
            }
            Err(e) => {
                tracing::error!(rule = %r.name, error = %e, "a stored pattern no longer compiles")
            }
        }
    }
    if let Some(text) = &r.schedule {
        match Schedule::parse(text) {
            Ok(schedule) => scheduled.push(ScheduledRule {
                rule: entry,
                schedule,
                last_fire_ms: r.last_fire_ms,
                created_ms: r.created_ms,
            }),
            Err(e) => {
                tracing::error!(rule = %r.name, error = %e, "a stored schedule no longer parses")
            }
        }
    }
}

/// PutEvents' per-entry ErrorCode and ErrorMessage for an invalid entry.
fn entry_error(e: &gantry_events::EnvelopeError) -> (String, String) {
    use gantry_events::EnvelopeError as E;
    let code = match e {
        E::MalformedDetail(_) | E::IntegerRange(_) => "MalformedDetail",
        E::ReservedSource(_) => "NotAuthorizedForSource",
        _ => "InvalidArgument",
    };
    (code.to_owned(), e.to_string())
}
