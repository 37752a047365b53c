//! Access keys, their secrets encrypted with the [`MasterKey`].

use sqlx::Row;

use super::connections::Connections;
use super::writer::Writer;
use super::{audit, db_error};
use crate::{MasterKey, NewAccessKey, StoreError, now_ms};

pub(crate) async fn create(
    pool: &Writer,
    master: &MasterKey,
    key: &NewAccessKey,
    actor: &str,
) -> Result<(), StoreError> {
    let (nonce, cipher) = master.seal(&key.access_key_id, key.secret.as_bytes());
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query(
        "INSERT INTO access_keys (access_key_id, secret_nonce, secret_cipher, is_admin, created_ms)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&key.access_key_id)
    .bind(nonce)
    .bind(cipher)
    .bind(key.is_admin)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let detail = if key.is_admin { "admin" } else { "" };
    audit::record(
        &mut tx,
        actor,
        "access_key.create",
        &key.access_key_id,
        detail,
    )
    .await?;
    tx.commit().await.map_err(db_error)
}

pub(crate) async fn secret(
    pool: &Connections,
    master: &MasterKey,
    access_key_id: &str,
) -> Result<String, StoreError> {
    let row =
        sqlx::query("SELECT secret_nonce, secret_cipher FROM access_keys WHERE access_key_id = ?")
            .bind(access_key_id)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
    let nonce: Vec<u8> = row.try_get("secret_nonce").map_err(db_error)?;
    let cipher: Vec<u8> = row.try_get("secret_cipher").map_err(db_error)?;
    let plain = master
        .open(access_key_id, &nonce, &cipher)
        .map_err(StoreError::other)?;
    String::from_utf8(plain).map_err(StoreError::other)
}

pub(crate) async fn count(pool: &Connections) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_keys")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    Ok(n as u64)
}
