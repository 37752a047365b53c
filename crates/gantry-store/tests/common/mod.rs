//! One test body, two stores: [`both_stores!`] turns each named
//! `async fn name<B: Backend>(b: &B)` into `name::sqlite` and
//! `name::postgres` tests. The PostgreSQL test runs against a fresh database
//! on the server `GANTRY_TEST_POSTGRES_URL` names, and skips with a note when
//! it is not set (fails when `GANTRY_REQUIRE_POSTGRES=1`).

#![allow(dead_code, async_fn_in_trait)]

use std::path::PathBuf;

use gantry_store::testing::{TestDatabase, postgres_url};
use gantry_store::{MasterKey, PgStore, SqliteStore, Store};

/// A database for one test, and the key file beside it.
pub trait Backend {
    /// The store type this backend opens.
    type Store: Store + Clone;

    /// Whether several servers can share the store (PostgreSQL).
    const SHARED: bool;

    /// The test's key file (created on first use).
    fn key_path(&self) -> PathBuf;

    /// Opens (again) the test's database with `key`.
    async fn open_with(&self, key: MasterKey) -> Self::Store;

    /// Closes a store's connections.
    async fn close(&self, store: &Self::Store);

    /// Whether `needle` appears anywhere in the database as stored (the
    /// files for SQLite, every row of every table for PostgreSQL).
    async fn holds_in_clear(&self, needle: &[u8]) -> bool;

    /// Opens (again) the test's database with the test's key file.
    async fn open(&self) -> Self::Store {
        let key = MasterKey::load_or_create(&self.key_path()).expect("key file");
        self.open_with(key).await
    }
}

/// A SQLite file in a temporary directory.
pub struct SqliteBackend {
    pub dir: tempfile::TempDir,
}

impl SqliteBackend {
    pub fn new() -> SqliteBackend {
        SqliteBackend {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;
    const SHARED: bool = false;

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    async fn open_with(&self, key: MasterKey) -> SqliteStore {
        SqliteStore::open(&self.dir.path().join("gantry.db"), key)
            .await
            .expect("open SQLite store")
    }

    async fn close(&self, store: &SqliteStore) {
        store.close().await;
    }

    async fn holds_in_clear(&self, needle: &[u8]) -> bool {
        ["gantry.db", "gantry.db-wal"].iter().any(|file| {
            let bytes = std::fs::read(self.dir.path().join(file)).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
    }
}

/// A fresh database on the test PostgreSQL server.
pub struct PgBackend {
    pub dir: tempfile::TempDir,
    pub db: TestDatabase,
}

impl PgBackend {
    /// `None` (the test skips) when no server is configured.
    pub async fn new(test: &str) -> Option<PgBackend> {
        let url = postgres_url(test)?;
        let db = TestDatabase::create(&url)
            .await
            .expect("create a test database");
        Some(PgBackend {
            dir: tempfile::tempdir().expect("tempdir"),
            db,
        })
    }

    /// Drops the test's database (after the test passed).
    pub async fn finish(self) {
        self.db.drop_database().await.expect("drop test database");
    }
}

impl Backend for PgBackend {
    type Store = PgStore;
    const SHARED: bool = true;

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    async fn open_with(&self, key: MasterKey) -> PgStore {
        PgStore::connect(&self.db.url, key)
            .await
            .expect("open PostgreSQL store")
    }

    async fn close(&self, store: &PgStore) {
        store.close().await;
    }

    async fn holds_in_clear(&self, needle: &[u8]) -> bool {
        self.db
            .holds_in_clear(needle)
            .await
            .expect("search the database")
    }
}

/// `both_stores!(a, b)`: tests `a::sqlite`, `a::postgres`, `b::sqlite`, ...
/// each running the generic `async fn a<B: Backend>(b: &B)` of the file.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let b = crate::common::SqliteBackend::new();
                    super::$name(&b).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let Some(b) = crate::common::PgBackend::new(module_path!()).await else {
                        return;
                    };
                    super::$name(&b).await;
                    b.finish().await;
                }
            }
        )*
    };
}
