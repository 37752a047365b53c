//! The scheduler: fires scheduled rules when they are due.
//!
//! Durable: each rule's last fire time is in the store and is moved forward
//! in the same transaction that enqueues the fire's deliveries, guarded by
//! the previous value, so a fire is recorded exactly once and a restart
//! neither repeats it nor forgets it.
//!
//! Catch-up: when several fire times passed while the server was down, the
//! rule fires **once**, for the most recent of them (the event's `time` is
//! that fire time), and a warning says how many were skipped. Firing every
//! missed slot would flood targets after a long outage; skipping silently
//! would hide it.

use std::sync::Arc;

use gantry_events::{Schedule, rfc3339_from_ms};
use gantry_store::{NewDelivery, Store};
use serde_json::json;
use tokio::sync::watch;

use super::bus::{EventBus, ScheduledRule};

/// At most this many missed fire times are counted one by one.
const MAX_CATCH_UP_STEPS: u32 = 100_000;

pub(crate) async fn run<S: Store>(bus: Arc<EventBus<S>>, mut stop: watch::Receiver<bool>) {
    let poll = bus.config.events.poll_interval;
    loop {
        if *stop.borrow() {
            return;
        }
        // With several servers on one database, rules put through another
        // server are not in this one's index: read them afresh each round.
        if bus.config.leader_election.is_some()
            && let Err(e) = bus.reload().await
        {
            tracing::error!(error = %e, "reloading rules for the scheduler failed");
        }
        let now = bus.now_ms();
        let index = bus.index();
        let mut changed = false;
        for rule in &index.scheduled {
            changed |= fire_if_due(&bus, rule, now).await;
        }
        if changed {
            // The index holds last fire times: refresh it from the store.
            if let Err(e) = bus.reload().await {
                tracing::error!(error = %e, "reloading rules after a scheduled fire failed");
            }
            bus.wake.notify_one();
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// The fire time to use at `now`, if one is due: the most recent due slot,
/// and how many earlier slots it stands for.
pub(crate) fn due_slot(
    schedule: &Schedule,
    last_fire_ms: Option<i64>,
    created_ms: i64,
    now: i64,
) -> Option<(i64, u32)> {
    let anchor = last_fire_ms.unwrap_or(created_ms);
    let mut slot = schedule.next_after(anchor, anchor)?;
    if slot > now {
        return None;
    }
    let mut skipped = 0;
    while skipped < MAX_CATCH_UP_STEPS {
        match schedule.next_after(slot, anchor) {
            Some(next) if next <= now => {
                slot = next;
                skipped += 1;
            }
            _ => break,
        }
    }
    Some((slot, skipped))
}

/// Fires `rule` if it is due. True when the stored last fire time moved
/// (this fire, or one this index had not seen yet), so the index is stale.
async fn fire_if_due<S: Store>(bus: &EventBus<S>, rule: &ScheduledRule, now: i64) -> bool {
    let Some((slot, skipped)) = due_slot(&rule.schedule, rule.last_fire_ms, rule.created_ms, now)
    else {
        return false;
    };
    if skipped > 0 {
        tracing::warn!(rule = %rule.rule.name, skipped, "missed scheduled fires while stopped; firing once for the latest");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let event = json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": bus.config.account_id,
        "time": rfc3339_from_ms(slot),
        "region": bus.config.region,
        "resources": [rule.rule.arn],
        "detail": {},
    });
    let deliveries: Vec<NewDelivery> = rule
        .rule
        .targets
        .iter()
        .map(|t| NewDelivery {
            event_id: id.clone(),
            event: event.clone(),
            bus: rule.rule.bus.clone(),
            rule: rule.rule.name.clone(),
            target: t.clone(),
            due_ms: now,
        })
        .collect();
    match bus
        .store
        .fire_schedule(
            &rule.rule.bus,
            &rule.rule.name,
            rule.last_fire_ms,
            slot,
            &deliveries,
        )
        .await
    {
        Ok(fired) => {
            if !fired {
                tracing::debug!(rule = %rule.rule.name, "the rule was fired or changed meanwhile");
            }
            true
        }
        Err(e) => {
            tracing::error!(rule = %rule.rule.name, error = %e, "recording a scheduled fire failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_events::ms_from_rfc3339;

    fn at(s: &str) -> i64 {
        ms_from_rfc3339(s).expect("time")
    }

    #[test]
    fn due_slots_and_catch_up() {
        let rate = Schedule::parse("rate(5 minutes)").expect("rate");
        let created = at("2024-05-01T12:00:00Z");
        assert_eq!(
            due_slot(&rate, None, created, at("2024-05-01T12:04:59Z")),
            None
        );
        assert_eq!(
            due_slot(&rate, None, created, at("2024-05-01T12:05:00Z")),
            Some((at("2024-05-01T12:05:00Z"), 0))
        );
        // Down for an hour: one fire, for 13:05, standing for 12 missed ones.
        assert_eq!(
            due_slot(
                &rate,
                Some(at("2024-05-01T12:05:00Z")),
                created,
                at("2024-05-01T13:07:00Z")
            ),
            Some((at("2024-05-01T13:05:00Z"), 11))
        );
        let cron = Schedule::parse("cron(0 * * * ? *)").expect("cron");
        assert_eq!(
            due_slot(&cron, None, created, at("2024-05-01T14:30:00Z")),
            Some((at("2024-05-01T14:00:00Z"), 1))
        );
    }
}
