//! What a build leaves in the store is kept whole when the store refuses
//! it for a while (a database restarting, a connection dropped): its job
//! for an agent, its log lines and its end are written once the store is
//! back, and a line the database could not hold (a NUL) does not cost the
//! lines around it.

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

/// What a [`Refusal`] refuses.
#[derive(Clone, Copy)]
enum Refused {
    /// Every update that ends a build (status no longer IN_PROGRESS).
    BuildEnds,
    /// Every log line.
    LogLines,
    /// Every job queued for an agent.
    Jobs,
}

impl Refusal {
    async fn install(db: &Db, data_dir: &std::path::Path, what: Refused) -> Refusal {
        let (sqlite, postgres) = match what {
            Refused::BuildEnds => (
                "CREATE TRIGGER refusal BEFORE UPDATE OF status ON builds
                 WHEN NEW.status <> 'IN_PROGRESS'
                 BEGIN SELECT RAISE(ABORT, 'injected: refused'); END",
                "CREATE FUNCTION refusal() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.status <> 'IN_PROGRESS' THEN RAISE EXCEPTION 'injected: refused'; END IF;
                   RETURN NEW;
                 END $$;
                 CREATE TRIGGER refusal BEFORE UPDATE ON builds
                 FOR EACH ROW EXECUTE FUNCTION refusal();",
            ),
            Refused::LogLines => (
                "CREATE TRIGGER refusal BEFORE INSERT ON build_log_lines
                 BEGIN SELECT RAISE(ABORT, 'injected: refused'); END",
                "CREATE FUNCTION refusal() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'injected: refused'; END $$;
                 CREATE TRIGGER refusal BEFORE INSERT ON build_log_lines
                 FOR EACH ROW EXECUTE FUNCTION refusal();",
            ),
            Refused::Jobs => (
                "CREATE TRIGGER refusal BEFORE INSERT ON jobs
                 BEGIN SELECT RAISE(ABORT, 'injected: refused'); END",
                "CREATE FUNCTION refusal() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'injected: refused'; END $$;
                 CREATE TRIGGER refusal BEFORE INSERT ON jobs
                 FOR EACH ROW EXECUTE FUNCTION refusal();",
            ),
        };
        match db {
            Db::Sqlite => {
                let url = format!("sqlite://{}", data_dir.join("gantry.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the server's SQLite file");
                sqlx::raw_sql(sqlite)
                    .execute(&mut conn)
                    .await
                    .expect("create the trigger");
                Refusal::Sqlite(conn)
            }
            Db::Postgres(test_db) => {
                let mut conn = sqlx::PgConnection::connect(&test_db.url)
                    .await
                    .expect("connect to the test database");
                sqlx::raw_sql(postgres)
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
                sqlx::raw_sql("DROP TRIGGER refusal")
                    .execute(&mut conn)
                    .await
                    .expect("drop the trigger");
            }
            Refusal::Postgres(mut conn) => {
                // The trigger goes with its function.
                sqlx::raw_sql("DROP FUNCTION refusal() CASCADE")
                    .execute(&mut conn)
                    .await
                    .expect("drop the trigger");
            }
        }
    }
}

/// Waits `wait`, then asserts the build has not ended (the store refuses
/// what it needs to end).
async fn still_in_progress_after(server: &TestServer, id: &str, wait: Duration) {
    tokio::time::sleep(wait).await;
    let now = server.call("BatchGetBuilds", &json!({ "ids": [id] })).await;
    assert_eq!(
        now["builds"][0]["buildStatus"], "IN_PROGRESS",
        "the store refused it, yet: {now}"
    );
}

/// Waits for the build to end; asserts it SUCCEEDED and its log has the
/// line `ran-once` once (the command's own line names it too); the log.
async fn ends_with_its_output_once(server: &TestServer, id: &str) -> String {
    let done = server.wait_build(id).await;
    assert_eq!(done["buildStatus"], "SUCCEEDED", "{done}");
    let log = server.log_text(id).await;
    assert_eq!(log.lines().filter(|l| *l == "ran-once").count(), 1, "{log}");
    log
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
    let refusal = Refusal::install(&db, dir.path(), Refused::BuildEnds).await;
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
    still_in_progress_after(&server, &id, Duration::from_millis(500)).await;
    refusal.remove().await;
    ends_with_its_output_once(&server, &id).await;
    server.stop().await;
}

on_both_stores!(
    log_lines_the_store_refused_for_a_while_are_all_kept_before_the_build_ends,
    log_lines_the_store_refused_for_a_while_are_all_kept_before_the_build_ends_on,
    log_lines_the_store_refused_for_a_while_are_all_kept_before_the_build_ends_on_postgres
);

async fn log_lines_the_store_refused_for_a_while_are_all_kept_before_the_build_ends_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(&db, &dir.path().join("data")).await;
    let marker = dir.path().join("ran");
    let buildspec = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ran-once\n      - touch {}\n",
        marker.display()
    );
    server
        .call(
            "CreateProject",
            &inline_project("refused-lines", &buildspec),
        )
        .await;
    let refusal = Refusal::install(&db, &dir.path().join("data"), Refused::LogLines).await;
    let out = server
        .call("StartBuild", &json!({ "projectName": "refused-lines" }))
        .await;
    let id = out["build"]["id"].as_str().expect("build id").to_owned();
    let mut ran = false;
    for _ in 0..600 {
        if marker.exists() {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ran, "build {id} did not run");
    // Its end waits for its lines, which the store refuses.
    still_in_progress_after(&server, &id, Duration::from_millis(500)).await;
    refusal.remove().await;
    let log = ends_with_its_output_once(&server, &id).await;
    assert!(log.contains("[Container] Build SUCCEEDED"), "{log}");
    server.stop().await;
}

on_both_stores!(
    a_nul_in_a_log_line_becomes_a_replacement_character_and_costs_no_line,
    a_nul_in_a_log_line_becomes_a_replacement_character_and_costs_no_line_on,
    a_nul_in_a_log_line_becomes_a_replacement_character_and_costs_no_line_on_postgres
);

async fn a_nul_in_a_log_line_becomes_a_replacement_character_and_costs_no_line_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(&db, dir.path()).await;
    let buildspec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo before-it\n      - printf 'left\\000right\\n'\n      - echo after-it\n";
    server
        .call("CreateProject", &inline_project("nul-line", buildspec))
        .await;
    let out = server
        .call("StartBuild", &json!({ "projectName": "nul-line" }))
        .await;
    let id = out["build"]["id"].as_str().expect("build id").to_owned();
    let done = server.wait_build(&id).await;
    assert_eq!(done["buildStatus"], "SUCCEEDED", "{done}");
    let log = server.log_text(&id).await;
    assert!(log.contains("left\u{FFFD}right\n"), "{log:?}");
    assert!(!log.contains('\0'), "{log:?}");
    for line in ["before-it", "after-it"] {
        assert_eq!(log.lines().filter(|l| *l == line).count(), 1, "{log}");
    }
    server.stop().await;
}

on_both_stores!(
    a_build_whose_job_the_store_refused_for_a_while_runs_on_an_agent_once_it_accepts,
    a_build_whose_job_the_store_refused_for_a_while_runs_on_an_agent_once_it_accepts_on,
    a_build_whose_job_the_store_refused_for_a_while_runs_on_an_agent_once_it_accepts_on_postgres
);

async fn a_build_whose_job_the_store_refused_for_a_while_runs_on_an_agent_once_it_accepts_on(
    db: Db,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start_with(&data, |c| {
        db.apply(c);
        c.local_agent = false;
    })
    .await;
    let (token, _) = super::agents::token(&server).await;
    let (drain, agent) =
        super::agents::spawn_agent(&server, &token, &[], "patient", &dir.path().join("work"));
    server
        .call(
            "CreateProject",
            &inline_project(
                "refused-job",
                "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ran-once\n",
            ),
        )
        .await;
    let refusal = Refusal::install(&db, &data, Refused::Jobs).await;
    let out = server
        .call("StartBuild", &json!({ "projectName": "refused-job" }))
        .await;
    let id = out["build"]["id"].as_str().expect("build id").to_owned();
    // The build's task tries to queue its job at once; a second on, it is
    // still trying (before, the build had failed).
    still_in_progress_after(&server, &id, Duration::from_millis(1000)).await;
    refusal.remove().await;
    let log = ends_with_its_output_once(&server, &id).await;
    assert!(log.contains("patient"), "run by the agent: {log}");
    super::agents::stop_agent(drain, agent).await;
    server.stop().await;
}
