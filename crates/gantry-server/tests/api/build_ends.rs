//! A build's end is recorded even when the store refuses it for a while
//! (a database restarting, a connection dropped): the build does not stay
//! IN_PROGRESS once the store is back.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use super::harness::{Db, TestServer, inline_project};
use crate::on_both_stores;

/// Makes the store refuse to record any build's end while it is installed
/// (a trigger that aborts the update), and lets it again once removed.
enum Refusal {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Refusal {
    async fn install(db: &Db, data_dir: &std::path::Path) -> Refusal {
        match db {
            Db::Sqlite => {
                let url = format!("sqlite://{}", data_dir.join("gantry.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the server's SQLite file");
                sqlx::raw_sql(
                    "CREATE TRIGGER refuse_build_ends BEFORE UPDATE OF status ON builds
                     WHEN NEW.status <> 'IN_PROGRESS'
                     BEGIN SELECT RAISE(ABORT, 'injected: build ends refused'); END",
                )
                .execute(&mut conn)
                .await
                .expect("create the trigger");
                Refusal::Sqlite(conn)
            }
            Db::Postgres(test_db) => {
                let mut conn = sqlx::PgConnection::connect(&test_db.url)
                    .await
                    .expect("connect to the test database");
                sqlx::raw_sql(
                    "CREATE FUNCTION refuse_build_ends() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                       IF NEW.status <> 'IN_PROGRESS' THEN
                         RAISE EXCEPTION 'injected: build ends refused';
                       END IF;
                       RETURN NEW;
                     END $$;
                     CREATE TRIGGER refuse_build_ends BEFORE UPDATE ON builds
                     FOR EACH ROW EXECUTE FUNCTION refuse_build_ends();",
                )
                .execute(&mut conn)
                .await
                .expect("create the trigger");
                Refusal::Postgres(conn)
            }
        }
    }

    async fn remove(self) {
        match self {
            Refusal::Sqlite(mut conn) => {
                sqlx::raw_sql("DROP TRIGGER refuse_build_ends")
                    .execute(&mut conn)
                    .await
                    .expect("drop the trigger");
            }
            Refusal::Postgres(mut conn) => {
                sqlx::raw_sql(
                    "DROP TRIGGER refuse_build_ends ON builds; DROP FUNCTION refuse_build_ends();",
                )
                .execute(&mut conn)
                .await
                .expect("drop the trigger");
            }
        }
    }
}

on_both_stores!(
    a_build_end_the_store_refused_for_a_while_is_recorded_once_it_accepts,
    a_build_end_the_store_refused_for_a_while_is_recorded_once_it_accepts_on,
    a_build_end_the_store_refused_for_a_while_is_recorded_once_it_accepts_on_postgres
);

async fn a_build_end_the_store_refused_for_a_while_is_recorded_once_it_accepts_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(&db, dir.path()).await;
    server
        .call(
            "CreateProject",
            &inline_project(
                "refused-end",
                "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ran-once\n",
            ),
        )
        .await;
    let refusal = Refusal::install(&db, dir.path()).await;
    let out = server
        .call("StartBuild", &json!({ "projectName": "refused-end" }))
        .await;
    let id = out["build"]["id"].as_str().expect("build id").to_owned();

    // The build's last line is written just before its end is recorded:
    // once it is in, the end has been tried (and refused).
    let mut ran = false;
    for _ in 0..600 {
        if server
            .log_text(&id)
            .await
            .contains("[Container] Build SUCCEEDED")
        {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ran,
        "build {id} did not run: {}",
        server.log_text(&id).await
    );
    // A few tries are refused meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = server
        .call("BatchGetBuilds", &json!({ "ids": [&id] }))
        .await;
    assert_eq!(
        now["builds"][0]["buildStatus"], "IN_PROGRESS",
        "the store refused every end, yet: {now}"
    );

    refusal.remove().await;
    let done = server.wait_build(&id).await;
    assert_eq!(done["buildStatus"], "SUCCEEDED", "{done}");
    let log = server.log_text(&id).await;
    // Its output once (the command's own line names it too).
    assert_eq!(log.lines().filter(|l| *l == "ran-once").count(), 1, "{log}");
    server.stop().await;
}
