//! Finished build logs in the artifact store: once a build ends its log is
//! a range of one object (a pack, `logs/packs/...`, shared with the logs of
//! builds that ended with it), the database keeps a pointer
//! and no lines, and every reader (REST text from any offset, SSE) gets the
//! same bytes as before — on the local store, and on an S3 store (moto's)
//! shared by two servers on one PostgreSQL database.

use std::path::Path;

use gantry_store::BuildStore;
use serde_json::json;

use crate::harness::*;
use crate::on_both_stores;
use crate::rest_logs::{log_and_end, parse_sse, sse};
use crate::s3_artifacts::moto;

const LINES: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - for i in $(seq 1 1500); do echo \"line $i é\"; done\n";

async fn run_build(server: &TestServer, project: &str) -> String {
    server
        .call("CreateProject", &inline_project(project, LINES))
        .await;
    let started = server
        .call("StartBuild", &json!({ "projectName": project }))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    id
}

/// Waits for the move that follows a build's end (it runs just after the
/// end is recorded) and returns the pointer.
async fn archived(store: &dyn BuildStore, id: &str) -> gantry_store::LogArchive {
    for _ in 0..400 {
        if let Some(archive) = store.log_archive(id).await.expect("log_archive") {
            return archive;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the log of {id} was never moved to the artifact store");
}

async fn get_text(server: &TestServer, path: &str) -> String {
    let (status, body) = server
        .rest_raw(Some(SECRET), "gantry", "GET", path, None, &[])
        .await;
    assert_eq!(status, 200, "{path}");
    String::from_utf8(body).expect("utf-8")
}

/// Every reader of `server` returns `full` (from several offsets).
async fn reads_back(server: &TestServer, id: &str, full: &str) {
    let logs = format!("/builds/{id}/logs");
    assert_eq!(get_text(server, &logs).await, full);
    let (status, body) = sse(server, &logs, &[]).await;
    assert_eq!(status, 200);
    let (text, end) = log_and_end(&parse_sse(&body));
    assert_eq!(text, full);
    assert_eq!(end.expect("end")["offset"], full.len());
    let mid = full.find("line 777 ").expect("line") + 5;
    for offset in [1, mid, full.len() - 1, full.len()] {
        assert_eq!(
            get_text(server, &format!("{logs}?offset={offset}")).await,
            full[offset..],
            "text from {offset}"
        );
        let (_, body) = sse(server, &logs, &[("Last-Event-ID", &offset.to_string())]).await;
        assert_eq!(
            log_and_end(&parse_sse(&body)).0,
            full[offset..],
            "SSE from {offset}"
        );
    }
    let inside = full.find('é').expect("é") + 1;
    let (status, _) = server
        .rest_raw(
            Some(SECRET),
            "gantry",
            "GET",
            &format!("{logs}?offset={inside}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 400, "an offset inside a character is still refused");
}

fn expected_lines(full: &str) {
    assert!(
        full.contains("line 1 é\n") && full.contains("line 1500 é\n"),
        "{full}"
    );
}

async fn a_finished_log_moves_to_the_local_artifact_store_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start_on(&db, &data).await;
    let id = run_build(&server, "moved").await;
    let store = db.open_build_store(&data).await;
    let archive = archived(store.as_ref(), &id).await;
    assert!(
        archive.object_key.starts_with("logs/packs/") && archive.object_key.ends_with(".log"),
        "{archive:?}"
    );
    assert!(
        store.log_lines(&id, 0, 10).await.expect("lines").is_empty(),
        "the database holds no lines of a moved log"
    );
    let object = std::fs::read(
        data.join("artifact-store")
            .join(Path::new(&archive.object_key)),
    )
    .expect("the object is in the default store, under the data directory");
    let at = usize::try_from(archive.offset).expect("offset");
    let size = usize::try_from(archive.size_bytes).expect("size");
    let full = String::from_utf8(object[at..at + size].to_vec()).expect("utf-8");
    expected_lines(&full);
    reads_back(&server, &id, &full).await;
    server.stop().await;
}

on_both_stores!(
    a_finished_log_moves_to_the_local_artifact_store,
    a_finished_log_moves_to_the_local_artifact_store_on,
    a_finished_log_moves_to_the_local_artifact_store_on_postgres
);

/// Points `config` at moto's bucket `gantry-ci`, prefix `shared`.
pub(crate) fn s3_store(config: &mut gantry_server::Config, endpoint: &str) {
    config.artifact_store =
        Some(gantry_server::StoreLocation::parse("s3://gantry-ci/shared").expect("url"));
    config.s3 = gantry_server::S3Settings {
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some(moto::ACCESS_KEY_ID.into()),
        secret_access_key: Some(moto::SECRET_ACCESS_KEY.into()),
        session_token: None,
    };
}

/// Two servers, one PostgreSQL database, one S3 bucket, two data
/// directories: the second reads the log of a build the first one ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_reads_a_log_the_first_moved_to_s3() {
    let Some(python) = moto::python() else { return };
    let Some(db) = Db::postgres("a_second_server_reads_a_log_the_first_moved_to_s3").await else {
        return;
    };
    let moto = moto::Moto::start(&python);
    moto.boto3(&python, "s3.create_bucket(Bucket='gantry-ci')");
    let dir = tempfile::tempdir().expect("tempdir");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));

    let endpoint = moto.endpoint.clone();
    let db_a = db.clone();
    let first = TestServer::start_with(&data_a, move |c| {
        db_a.apply(c);
        s3_store(c, &endpoint);
    })
    .await;
    let id = run_build(&first, "shared").await;
    let store = db.open_build_store(&data_a).await;
    let archive = archived(store.as_ref(), &id).await;
    assert!(store.log_lines(&id, 0, 10).await.expect("lines").is_empty());
    let full = get_text(&first, &format!("/builds/{id}/logs")).await;
    expected_lines(&full);
    first.stop().await;
    let keys = moto.keys(&python, "gantry-ci");
    assert!(
        keys.contains(&format!("shared/{}", archive.object_key)),
        "{keys:?}"
    );
    assert!(
        !data_a.join("artifact-store").exists(),
        "nothing on local disk"
    );

    // The second server shares the database (and so its master key) and
    // the bucket, not the disk.
    std::fs::create_dir_all(&data_b).expect("mkdir");
    std::fs::copy(data_a.join("secret.key"), data_b.join("secret.key")).expect("key");
    let endpoint = moto.endpoint.clone();
    let db_b = db.clone();
    let second = TestServer::start_with(&data_b, move |c| {
        db_b.apply(c);
        s3_store(c, &endpoint);
    })
    .await;
    reads_back(&second, &id, &full).await;
    second.stop().await;
    db.finish().await;
}
