//! Test support: a fresh PostgreSQL database per test.
//!
//! Test suites run against PostgreSQL when `GANTRY_TEST_POSTGRES_URL` names
//! a server (e.g. `postgres://gantry@127.0.0.1:5432/postgres`, a role that
//! may create databases). Without it they skip the PostgreSQL half with a
//! note, unless `GANTRY_REQUIRE_POSTGRES=1`, when they fail instead (CI sets
//! it, so a broken setup cannot pass as a skip).

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::StoreError;

/// The variable naming the test server.
pub const POSTGRES_URL_VAR: &str = "GANTRY_TEST_POSTGRES_URL";
/// The variable that turns a missing server into a failure.
pub const REQUIRE_POSTGRES_VAR: &str = "GANTRY_REQUIRE_POSTGRES";

/// The test server's URL, or `None` (with a note on stderr) when tests
/// should skip PostgreSQL.
///
/// # Panics
///
/// When the URL is missing and `GANTRY_REQUIRE_POSTGRES=1`.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_POSTGRES_VAR).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set");
            }
            eprintln!("{test}: skipping PostgreSQL ({POSTGRES_URL_VAR} is not set)");
            None
        }
    }
}

/// A database created for one test on the server at `server_url`, dropped
/// by [`TestDatabase::drop_database`] (a test that fails leaves it behind
/// for inspection; the names are random, so it does not get in the way).
#[derive(Debug, Clone)]
pub struct TestDatabase {
    server_url: String,
    /// The new database's name, `gantry_test_<random>`.
    pub name: String,
    /// A URL for the new database (the server's URL with its name).
    pub url: String,
}

impl TestDatabase {
    /// Creates `gantry_test_<random>` on the server.
    pub async fn create(server_url: &str) -> Result<TestDatabase, StoreError> {
        let name = format!("gantry_test_{}", random_suffix());
        let options = PgConnectOptions::from_str(server_url).map_err(StoreError::other)?;
        let mut conn = options.connect().await.map_err(StoreError::other)?;
        // The name is ours (letters, digits, `_`), never from input.
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(StoreError::other)?;
        conn.close().await.map_err(StoreError::other)?;
        let url = options.database(&name).to_url_lossy().to_string();
        Ok(TestDatabase {
            server_url: server_url.to_owned(),
            name,
            url,
        })
    }

    /// Drops the database, disconnecting whoever still uses it.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let options = PgConnectOptions::from_str(&self.server_url).map_err(StoreError::other)?;
        let mut conn = options.connect().await.map_err(StoreError::other)?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map_err(StoreError::other)?;
        conn.close().await.map_err(StoreError::other)
    }
}

fn random_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process from the OS; the counter and the
    // clock make names unique within one process too.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl TestDatabase {
    /// Whether `needle` appears in any row of any table, as text or as the
    /// hex PostgreSQL prints `BYTEA` in: a secret stored in clear is found.
    pub async fn holds_in_clear(&self, needle: &[u8]) -> Result<bool, StoreError> {
        let mut conn = PgConnectOptions::from_str(&self.url)
            .map_err(StoreError::other)?
            .connect()
            .await
            .map_err(StoreError::other)?;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT tablename::TEXT FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(&mut conn)
                .await
                .map_err(StoreError::other)?;
        let text = String::from_utf8_lossy(needle).into_owned();
        let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
        for table in tables {
            // Table names come from the catalogue, quoted.
            let sql = format!(
                "SELECT COUNT(*) FROM \"{}\" t WHERE strpos(t::TEXT, $1) > 0 OR strpos(t::TEXT, $2) > 0",
                table.replace('"', "\"\"")
            );
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(&text)
                .bind(&hex)
                .fetch_one(&mut conn)
                .await
                .map_err(StoreError::other)?;
            if n > 0 {
                return Ok(true);
            }
        }
        conn.close().await.map_err(StoreError::other)?;
        Ok(false)
    }
}
