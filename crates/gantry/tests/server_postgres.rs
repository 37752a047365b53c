//! `gantry server --database postgres://...` as a process: it starts on a
//! fresh database, serves, keeps nothing of the store in the data directory,
//! and a restart (after SIGKILL) on the same database finds everything.
//! Skips without `GANTRY_TEST_POSTGRES_URL` (fails with
//! `GANTRY_REQUIRE_POSTGRES=1`).

mod support;

use gantry_store::testing::{TestDatabase, postgres_url};
use serde_json::{Value, json};
use support::{CODEBUILD, call};

const KEY: (&str, &str) = ("GANTRYPGKEY", "gantry/pg+Secret/Key=0123456789abcdef");

fn codebuild(addr: &str, operation: &str, input: &Value) -> Value {
    let (status, out) = call(addr, KEY, CODEBUILD, operation, input).expect("server reachable");
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

#[test]
fn the_server_runs_on_postgres_and_restarts_on_the_same_database() {
    let Some(server_url) =
        postgres_url("the_server_runs_on_postgres_and_restarts_on_the_same_database")
    else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime
        .block_on(TestDatabase::create(&server_url))
        .expect("create test database");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let server = support::start_with_args(&data, KEY, &["--database", &db.url]);
    codebuild(
        &server.addr,
        "CreateProject",
        &json!({
            "name": "on-pg",
            "source": {"type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ran\n"},
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {"type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL"},
            "serviceRole": "gantry"
        }),
    );
    server.kill();
    assert!(
        !data.join("gantry.db").exists(),
        "no SQLite database in the data directory when --database is PostgreSQL"
    );

    // The same database (and key file): the project and the admin key are there.
    let server = support::start_with_args(&data, KEY, &["--database", &db.url]);
    let projects = codebuild(&server.addr, "ListProjects", &json!({}));
    assert_eq!(projects["projects"], json!(["on-pg"]));
    server.kill();

    // A new data directory on the same database: the first admin key is not
    // made twice (the database has keys), and this key file cannot open the
    // stored secrets, so the old key is refused rather than misread.
    let other = dir.path().join("other");
    let server = support::start_with_args(&other, KEY, &["--database", &db.url]);
    let (status, _) =
        call(&server.addr, KEY, CODEBUILD, "ListProjects", &json!({})).expect("server reachable");
    assert_ne!(status, 200);
    server.kill();

    runtime
        .block_on(db.drop_database())
        .expect("drop test database");
}
