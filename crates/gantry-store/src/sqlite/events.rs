//! [`EventStore`] on SQLite.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, audit, db_error, parse_json};
use crate::{
    ApiDestinationRecord, ConnectionRecord, DeadLetterRecord, DeliveryRecord, EventStore,
    NewConnection, NewDelivery, NewRule, RuleRecord, RuleTargets, StoreError, TargetRecord, now_ms,
};

const RULE_COLUMNS: &str =
    "bus, name, state, event_pattern, schedule, description, role_arn, created_ms, last_fire_ms";
const DELIVERY_COLUMNS: &str = "id, event_id, event_json, bus, rule, target_id, target_json, status, attempts, next_attempt_ms, created_ms, last_error";

fn rule(row: &SqliteRow) -> Result<RuleRecord, StoreError> {
    Ok(RuleRecord {
        bus: row.try_get("bus").map_err(db_error)?,
        name: row.try_get("name").map_err(db_error)?,
        state: row.try_get("state").map_err(db_error)?,
        event_pattern: row.try_get("event_pattern").map_err(db_error)?,
        schedule: row.try_get("schedule").map_err(db_error)?,
        description: row.try_get("description").map_err(db_error)?,
        role_arn: row.try_get("role_arn").map_err(db_error)?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        last_fire_ms: row.try_get("last_fire_ms").map_err(db_error)?,
    })
}

fn target(row: &SqliteRow) -> Result<TargetRecord, StoreError> {
    let json: String = row.try_get("target_json").map_err(db_error)?;
    Ok(TargetRecord {
        id: row.try_get("id").map_err(db_error)?,
        arn: row.try_get("arn").map_err(db_error)?,
        target: parse_json(&json)?,
    })
}

fn delivery(row: &SqliteRow) -> Result<DeliveryRecord, StoreError> {
    let event: String = row.try_get("event_json").map_err(db_error)?;
    let target_json: String = row.try_get("target_json").map_err(db_error)?;
    let target: Value = parse_json(&target_json)?;
    let attempts: i64 = row.try_get("attempts").map_err(db_error)?;
    let target_id: String = row.try_get("target_id").map_err(db_error)?;
    Ok(DeliveryRecord {
        id: row.try_get("id").map_err(db_error)?,
        event_id: row.try_get("event_id").map_err(db_error)?,
        event: parse_json(&event)?,
        bus: row.try_get("bus").map_err(db_error)?,
        rule: row.try_get("rule").map_err(db_error)?,
        target: TargetRecord {
            arn: target
                .get("Arn")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            id: target_id,
            target,
        },
        status: row.try_get("status").map_err(db_error)?,
        attempts: attempts.max(0) as u32,
        next_attempt_ms: row.try_get("next_attempt_ms").map_err(db_error)?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        last_error: row.try_get("last_error").map_err(db_error)?,
    })
}

async fn insert_deliveries(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
) -> Result<(), StoreError> {
    let now = now_ms();
    for d in deliveries {
        sqlx::query(
            "INSERT INTO event_outbox (event_id, event_json, bus, rule, target_id, target_json,
                                       status, attempts, next_attempt_ms, created_ms)
             VALUES (?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?)",
        )
        .bind(&d.event_id)
        .bind(d.event.to_string())
        .bind(&d.bus)
        .bind(&d.rule)
        .bind(&d.target.id)
        .bind(d.target.target.to_string())
        .bind(d.due_ms)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn bus_exists(&self, bus: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_buses WHERE name = ?")
            .bind(bus)
            .fetch_one(&self.readers)
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn put_rule(&self, new: &NewRule, actor: &str) -> Result<RuleRecord, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        // The write comes first so the transaction holds the write lock
        // before it reads (see the module comment in sqlite/mod.rs).
        let anchor = new.schedule.as_ref().map(|_| new.now_ms);
        let sql = format!(
            "INSERT INTO event_rules ({RULE_COLUMNS})
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM event_buses WHERE name = ?)
             ON CONFLICT (bus, name) DO UPDATE SET
                state = excluded.state,
                event_pattern = excluded.event_pattern,
                description = excluded.description,
                role_arn = excluded.role_arn,
                last_fire_ms = CASE WHEN event_rules.schedule IS excluded.schedule
                                    THEN event_rules.last_fire_ms ELSE excluded.last_fire_ms END,
                schedule = excluded.schedule
             RETURNING {RULE_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&new.bus)
            .bind(&new.name)
            .bind(&new.state)
            .bind(&new.event_pattern)
            .bind(&new.schedule)
            .bind(&new.description)
            .bind(&new.role_arn)
            .bind(new.now_ms)
            .bind(anchor)
            .bind(&new.bus)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        let record = rule(&row)?;
        audit::record(
            &mut tx,
            actor,
            "events.rule.put",
            &format!("{}/{}", new.bus, new.name),
            &new.state,
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn get_rule(&self, bus: &str, name: &str) -> Result<RuleRecord, StoreError> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM event_rules WHERE bus = ? AND name = ?");
        let row = sqlx::query(&sql)
            .bind(bus)
            .bind(name)
            .fetch_optional(&self.writer)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        rule(&row)
    }

    async fn list_rules(&self, bus: &str, prefix: &str) -> Result<Vec<RuleRecord>, StoreError> {
        // substr() rather than LIKE: names may contain `_` and `%`.
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM event_rules
             WHERE bus = ? AND substr(name, 1, length(?)) = ? ORDER BY name"
        );
        let rows = sqlx::query(&sql)
            .bind(bus)
            .bind(prefix)
            .bind(prefix)
            .fetch_all(&self.writer)
            .await
            .map_err(db_error)?;
        rows.iter().map(rule).collect()
    }

    async fn all_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM event_rules ORDER BY bus, name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.writer)
            .await
            .map_err(db_error)?;
        rows.iter().map(rule).collect()
    }

    async fn delete_rule(&self, bus: &str, name: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let deleted = sqlx::query(
            "DELETE FROM event_rules WHERE bus = ? AND name = ?
             AND NOT EXISTS (SELECT 1 FROM event_targets WHERE bus = ? AND rule = ?)",
        )
        .bind(bus)
        .bind(name)
        .bind(bus)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if deleted == 0 {
            let exists: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM event_rules WHERE bus = ? AND name = ?")
                    .bind(bus)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
            return Err(if exists == 0 {
                StoreError::NotFound
            } else {
                StoreError::Conflict(format!("rule {name} still has targets"))
            });
        }
        audit::record(
            &mut tx,
            actor,
            "events.rule.delete",
            &format!("{bus}/{name}"),
            "",
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn set_rule_state(
        &self,
        bus: &str,
        name: &str,
        state: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let n = sqlx::query("UPDATE event_rules SET state = ? WHERE bus = ? AND name = ?")
            .bind(state)
            .bind(bus)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(
            &mut tx,
            actor,
            "events.rule.state",
            &format!("{bus}/{name}"),
            state,
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn put_targets(
        &self,
        bus: &str,
        rule_name: &str,
        targets: &[TargetRecord],
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        for t in targets {
            sqlx::query(
                "INSERT INTO event_targets (bus, rule, id, arn, target_json)
                 SELECT ?, ?, ?, ?, ? WHERE EXISTS
                    (SELECT 1 FROM event_rules WHERE bus = ? AND name = ?)
                 ON CONFLICT (bus, rule, id) DO UPDATE SET
                    arn = excluded.arn, target_json = excluded.target_json",
            )
            .bind(bus)
            .bind(rule_name)
            .bind(&t.id)
            .bind(&t.arn)
            .bind(t.target.to_string())
            .bind(bus)
            .bind(rule_name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let exists: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM event_rules WHERE bus = ? AND name = ?")
                .bind(bus)
                .bind(rule_name)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        if exists == 0 {
            return Err(StoreError::NotFound);
        }
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        audit::record(
            &mut tx,
            actor,
            "events.targets.put",
            &format!("{bus}/{rule_name}"),
            &ids.join(","),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn remove_targets(
        &self,
        bus: &str,
        rule_name: &str,
        ids: &[String],
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut removed = Vec::new();
        for id in ids {
            let n = sqlx::query("DELETE FROM event_targets WHERE bus = ? AND rule = ? AND id = ?")
                .bind(bus)
                .bind(rule_name)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
            if n > 0 {
                removed.push(id.clone());
            }
        }
        audit::record(
            &mut tx,
            actor,
            "events.targets.remove",
            &format!("{bus}/{rule_name}"),
            &removed.join(","),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(removed)
    }

    async fn list_targets(
        &self,
        bus: &str,
        rule_name: &str,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, arn, target_json FROM event_targets WHERE bus = ? AND rule = ? ORDER BY id",
        )
        .bind(bus)
        .bind(rule_name)
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        rows.iter().map(target).collect()
    }

    async fn all_targets(&self) -> Result<Vec<RuleTargets>, StoreError> {
        let rows = sqlx::query(
            "SELECT bus, rule, id, arn, target_json FROM event_targets ORDER BY bus, rule, id",
        )
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        let mut out: Vec<RuleTargets> = Vec::new();
        for row in &rows {
            let bus: String = row.try_get("bus").map_err(db_error)?;
            let rule_name: String = row.try_get("rule").map_err(db_error)?;
            let t = target(row)?;
            match out.last_mut() {
                Some(last) if last.bus == bus && last.rule == rule_name => last.targets.push(t),
                _ => out.push(RuleTargets {
                    bus,
                    rule: rule_name,
                    targets: vec![t],
                }),
            }
        }
        Ok(out)
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        audit_row: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() && audit_row.is_none() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        insert_deliveries(&mut tx, deliveries).await?;
        if let Some((actor, detail)) = audit_row {
            audit::record(&mut tx, actor, "events.put", "events", detail).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn fire_schedule(
        &self,
        bus: &str,
        rule_name: &str,
        previous: Option<i64>,
        fired_ms: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let n = sqlx::query(
            "UPDATE event_rules SET last_fire_ms = ?
             WHERE bus = ? AND name = ? AND last_fire_ms IS ?",
        )
        .bind(fired_ms)
        .bind(bus)
        .bind(rule_name)
        .bind(previous)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        insert_deliveries(&mut tx, deliveries).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn due_deliveries(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM event_outbox
             WHERE status = 'PENDING' AND next_attempt_ms <= ?
             ORDER BY next_attempt_ms, id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await
            .map_err(db_error)?;
        rows.iter().map(delivery).collect()
    }

    async fn recent_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM event_outbox ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await
            .map_err(db_error)?;
        rows.iter().map(delivery).collect()
    }

    async fn complete_delivery(&self, id: i64, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE event_outbox SET status = 'DELIVERED', attempts = attempts + 1, finished_ms = ?
             WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn retry_delivery(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE event_outbox SET attempts = ?, next_attempt_ms = ?, last_error = ? WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(next_attempt_ms)
        .bind(error)
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let sql = format!(
            "UPDATE event_outbox SET status = 'DEAD', attempts = ?, last_error = ?, finished_ms = ?
             WHERE id = ? AND status = 'PENDING' RETURNING {DELIVERY_COLUMNS}"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(i64::from(attempts))
            .bind(reason)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
        else {
            return Err(StoreError::NotFound);
        };
        let d = delivery(&row)?;
        sqlx::query(
            "INSERT INTO event_dead_letters (delivery_id, event_id, event_json, bus, rule,
                                             target_id, target_arn, attempts, reason, at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(d.id)
        .bind(&d.event_id)
        .bind(d.event.to_string())
        .bind(&d.bus)
        .bind(&d.rule)
        .bind(&d.target.id)
        .bind(&d.target.arn)
        .bind(i64::from(attempts))
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT delivery_id, event_id, event_json, bus, rule, target_id, target_arn, attempts,
                    reason, at_ms
             FROM event_dead_letters ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("event_json").map_err(db_error)?;
                let attempts: i64 = r.try_get("attempts").map_err(db_error)?;
                Ok(DeadLetterRecord {
                    delivery_id: r.try_get("delivery_id").map_err(db_error)?,
                    event_id: r.try_get("event_id").map_err(db_error)?,
                    event: parse_json(&event)?,
                    bus: r.try_get("bus").map_err(db_error)?,
                    rule: r.try_get("rule").map_err(db_error)?,
                    target_id: r.try_get("target_id").map_err(db_error)?,
                    target_arn: r.try_get("target_arn").map_err(db_error)?,
                    attempts: attempts.max(0) as u32,
                    reason: r.try_get("reason").map_err(db_error)?,
                    at_ms: r.try_get("at_ms").map_err(db_error)?,
                })
            })
            .collect()
    }

    async fn create_connection(
        &self,
        connection: &NewConnection,
        actor: &str,
    ) -> Result<ConnectionRecord, StoreError> {
        let secret = connection.secret.to_string();
        let (nonce, cipher) = self.key.seal(&connection.name, secret.as_bytes());
        let now = now_ms();
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO event_connections (name, connection_json, secret_nonce, secret_cipher, created_ms)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&connection.name)
        .bind(connection.connection.to_string())
        .bind(nonce)
        .bind(cipher)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        audit::record(
            &mut tx,
            actor,
            "events.connection.create",
            &connection.name,
            "",
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(ConnectionRecord {
            name: connection.name.clone(),
            connection: connection.connection.clone(),
            created_ms: now,
        })
    }

    async fn get_connection(&self, name: &str) -> Result<ConnectionRecord, StoreError> {
        let row = sqlx::query(
            "SELECT name, connection_json, created_ms FROM event_connections WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        let json: String = row.try_get("connection_json").map_err(db_error)?;
        Ok(ConnectionRecord {
            name: row.try_get("name").map_err(db_error)?,
            connection: parse_json(&json)?,
            created_ms: row.try_get("created_ms").map_err(db_error)?,
        })
    }

    async fn connection_secret(&self, name: &str) -> Result<Value, StoreError> {
        let row =
            sqlx::query("SELECT secret_nonce, secret_cipher FROM event_connections WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.writer)
                .await
                .map_err(db_error)?
                .ok_or(StoreError::NotFound)?;
        let nonce: Vec<u8> = row.try_get("secret_nonce").map_err(db_error)?;
        let cipher: Vec<u8> = row.try_get("secret_cipher").map_err(db_error)?;
        let plain = self
            .key
            .open(name, &nonce, &cipher)
            .map_err(StoreError::other)?;
        serde_json::from_slice(&plain).map_err(StoreError::other)
    }

    async fn delete_connection(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let n = sqlx::query(
            "DELETE FROM event_connections WHERE name = ?
             AND NOT EXISTS (SELECT 1 FROM event_api_destinations WHERE connection = ?)",
        )
        .bind(name)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if n == 0 {
            let exists: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM event_connections WHERE name = ?")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
            return Err(if exists == 0 {
                StoreError::NotFound
            } else {
                StoreError::Conflict(format!("connection {name} is used by an API destination"))
            });
        }
        audit::record(&mut tx, actor, "events.connection.delete", name, "").await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_api_destination(
        &self,
        d: &ApiDestinationRecord,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let n = sqlx::query(
            "INSERT INTO event_api_destinations (name, connection, destination_json, created_ms)
             SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM event_connections WHERE name = ?)",
        )
        .bind(&d.name)
        .bind(&d.connection)
        .bind(d.destination.to_string())
        .bind(d.created_ms)
        .bind(&d.connection)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(
            &mut tx,
            actor,
            "events.api_destination.create",
            &d.name,
            &d.connection,
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_api_destination(&self, name: &str) -> Result<ApiDestinationRecord, StoreError> {
        let row = sqlx::query(
            "SELECT name, connection, destination_json, created_ms
             FROM event_api_destinations WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        let json: String = row.try_get("destination_json").map_err(db_error)?;
        Ok(ApiDestinationRecord {
            name: row.try_get("name").map_err(db_error)?,
            connection: row.try_get("connection").map_err(db_error)?,
            destination: parse_json(&json)?,
            created_ms: row.try_get("created_ms").map_err(db_error)?,
        })
    }

    async fn delete_api_destination(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let n = sqlx::query("DELETE FROM event_api_destinations WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(&mut tx, actor, "events.api_destination.delete", name, "").await?;
        tx.commit().await.map_err(db_error)
    }
}
