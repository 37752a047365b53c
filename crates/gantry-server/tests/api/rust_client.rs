//! The CodeBuild flows with a client signing through `gantry-aws`: these
//! run everywhere, Python or not.

use serde_json::{Value, json};

use crate::harness::*;

fn phase<'a>(build: &'a Value, name: &str) -> &'a Value {
    build["phases"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["phaseType"] == name))
        .unwrap_or_else(|| panic!("no {name} phase in {build}"))
}

crate::on_both_stores!(
    projects_builds_and_logs,
    projects_builds_and_logs_on,
    projects_builds_and_logs_on_postgres
);

async fn projects_builds_and_logs_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(&db, dir.path()).await;

    let created = server
        .call("CreateProject", &inline_project("web", GOOD_BUILDSPEC))
        .await;
    assert_eq!(created["project"]["name"], "web");
    assert_eq!(
        created["project"]["arn"],
        "arn:aws:codebuild:us-east-1:000000000000:project/web"
    );
    let (status, dup) = server
        .call_as(
            SECRET,
            "CreateProject",
            &inline_project("web", GOOD_BUILDSPEC),
        )
        .await;
    assert_eq!(
        (status, dup["__type"].as_str()),
        (400, Some("ResourceAlreadyExistsException"))
    );
    let (status, bad) = server
        .call_as(
            SECRET,
            "CreateProject",
            &inline_project("bad", "version: 0.2\nphases: [\n"),
        )
        .await;
    assert_eq!(
        (status, bad["__type"].as_str()),
        (400, Some("InvalidInputException"))
    );

    let listed = server.call("ListProjects", &json!({})).await;
    assert_eq!(listed["projects"], json!(["web"]));
    let got = server
        .call("BatchGetProjects", &json!({"names": ["web", "nope"]}))
        .await;
    assert_eq!(got["projects"][0]["source"]["type"], "NO_SOURCE");
    assert_eq!(got["projectsNotFound"], json!(["nope"]));
    let updated = server
        .call(
            "UpdateProject",
            &json!({"name": "web", "description": "the site"}),
        )
        .await;
    assert_eq!(updated["project"]["description"], "the site");
    assert_eq!(updated["project"]["source"]["type"], "NO_SOURCE");

    let started = server
        .call(
            "StartBuild",
            &json!({
                "projectName": "web",
                "environmentVariablesOverride": [{"name": "WHO", "value": "rust", "type": "PLAINTEXT"}]
            }),
        )
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("web:"));
    assert_eq!(started["build"]["buildNumber"], 1);
    assert_eq!(started["build"]["buildStatus"], "IN_PROGRESS");
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    assert_eq!(build["buildComplete"], true);
    assert_eq!(phase(&build, "BUILD")["phaseStatus"], "SUCCEEDED");
    assert_eq!(phase(&build, "SUBMITTED")["phaseStatus"], "SUCCEEDED");
    assert_eq!(
        build["exportedEnvironmentVariables"],
        json!([{"name": "GREETING", "value": "hi-rust"}])
    );
    assert_eq!(build["logs"]["groupName"], "/aws/codebuild/web");
    assert_eq!(build["initiator"], AKID);

    let listed = server
        .call("ListBuildsForProject", &json!({"projectName": "web"}))
        .await;
    assert_eq!(listed["ids"], json!([id]));

    let failing = server
        .call(
            "StartBuild",
            &json!({"projectName": "web", "buildspecOverride": FAILING_BUILDSPEC}),
        )
        .await;
    let failed = server
        .wait_build(failing["build"]["id"].as_str().expect("id"))
        .await;
    assert_eq!(failed["buildStatus"], "FAILED");
    assert_eq!(failed["buildNumber"], 2);
    assert_eq!(phase(&failed, "BUILD")["phaseStatus"], "FAILED");
    // A buildspec override that does not parse is refused at StartBuild,
    // and no build is made of it.
    let (status, bad) = server
        .call_as(
            SECRET,
            "StartBuild",
            &json!({"projectName": "web", "buildspecOverride": "version: 0.2\nphases: [\n"}),
        )
        .await;
    assert_eq!(
        (status, bad["__type"].as_str()),
        (400, Some("InvalidInputException")),
        "{bad}"
    );
    let listed = server
        .call("ListBuildsForProject", &json!({"projectName": "web"}))
        .await;
    assert_eq!(listed["ids"].as_array().map(Vec::len), Some(2), "{listed}");

    server.call("DeleteProject", &json!({"name": "web"})).await;
    let (status, err) = server
        .call_as(SECRET, "DeleteProject", &json!({"name": "web"}))
        .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );
    server.stop().await;

    // The finished log moved from the database to the artifact store
    // (the default one, under the data directory), lines in order.
    let store = db.open_build_store(dir.path()).await;
    assert!(store.log_lines(&id, 0, 1000).await.expect("log").is_empty());
    let archive = store
        .log_archive(&id)
        .await
        .expect("archive")
        .expect("the log was moved");
    let object = std::fs::read(dir.path().join("artifact-store").join(&archive.object_key))
        .expect("the log object");
    let at = usize::try_from(archive.offset).expect("offset");
    let size = usize::try_from(archive.size_bytes).expect("size");
    let text = String::from_utf8(object[at..at + size].to_vec()).expect("UTF-8 log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"hello rust from p"), "{lines:#?}");
    let audit = store.audit_log(100).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "project.create" && e.actor == AKID)
    );
    assert!(
        audit
            .iter()
            .any(|e| e.action == "build.start" && e.actor == AKID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_build_stops_a_running_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    server
        .call("CreateProject", &inline_project("slow", SLOW_BUILDSPEC))
        .await;
    let started = server
        .call("StartBuild", &json!({"projectName": "slow"}))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    // Wait until BUILD runs, then stop.
    for _ in 0..300 {
        let b = server.call("BatchGetBuilds", &json!({"ids": [&id]})).await;
        if b["builds"][0]["currentPhase"] == "BUILD" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stopped = server.call("StopBuild", &json!({"id": &id})).await;
    assert_eq!(stopped["build"]["id"], id);
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "STOPPED", "{build}");
    let (status, err) = server
        .call_as(SECRET, "StopBuild", &json!({"id": "slow:nope"}))
        .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_aws_shape_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let (status, err) = server
        .call_as(SECRET, "StartBuild", &json!({"projectName": "nope"}))
        .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );
    let (status, err) = server
        .call_as(
            SECRET,
            "ListBuildsForProject",
            &json!({"projectName": "nope"}),
        )
        .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );

    let (status, err) = server
        .call_as(
            "wrong secret",
            "CreateProject",
            &inline_project("web", GOOD_BUILDSPEC),
        )
        .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("InvalidSignatureException"))
    );
    let (status, err) = server.call_as(SECRET, "NoSuchOperation", &json!({})).await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );
    // Unsigned: MissingAuthenticationToken.
    let (status, body) = server
        .raw(
            "POST",
            "/",
            &[(
                "X-Amz-Target".into(),
                "CodeBuild_20161006.ListProjects".into(),
            )],
            b"{}",
        )
        .await
        .expect("request");
    let err: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (status, err["__type"].as_str()),
        (403, Some("MissingAuthenticationTokenException"))
    );

    let listed = server.call("ListProjects", &json!({})).await;
    assert_eq!(listed["projects"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_everything_and_fails_interrupted_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    server
        .call("CreateProject", &inline_project("keep", GOOD_BUILDSPEC))
        .await;
    let started = server
        .call("StartBuild", &json!({"projectName": "keep"}))
        .await;
    let done_id = started["build"]["id"].as_str().expect("id").to_owned();
    server.wait_build(&done_id).await;
    let slow = server
        .call(
            "StartBuild",
            &json!({"projectName": "keep", "buildspecOverride": SLOW_BUILDSPEC}),
        )
        .await;
    let slow_id = slow["build"]["id"].as_str().expect("id").to_owned();
    // A graceful stop stops running builds and records them STOPPED.
    server.stop().await;
    // A crash leaves a build IN_PROGRESS in the database.
    let interrupted = plant_interrupted_build(dir.path(), "keep").await;

    let server = TestServer::start(dir.path()).await;
    let listed = server.call("ListProjects", &json!({})).await;
    assert_eq!(listed["projects"], json!(["keep"]));
    let got = server
        .call(
            "BatchGetBuilds",
            &json!({"ids": [&done_id, &slow_id, &interrupted]}),
        )
        .await;
    let builds = got["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 3, "{got}");
    assert_eq!(builds[0]["buildStatus"], "SUCCEEDED");
    assert_eq!(builds[1]["buildStatus"], "STOPPED");
    assert_eq!(builds[2]["buildStatus"], "FAILED");
    assert_eq!(builds[2]["buildComplete"], true);
    let build_phase = phase(&builds[2], "BUILD");
    assert_eq!(build_phase["phaseStatus"], "FAILED");
    assert_eq!(build_phase["contexts"][0]["statusCode"], "SERVER_RESTARTED");
    // Numbering goes on after the restart.
    let next = server
        .call("StartBuild", &json!({"projectName": "keep"}))
        .await;
    assert_eq!(next["build"]["buildNumber"], 4);
    server
        .wait_build(next["build"]["id"].as_str().expect("id"))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_source_is_cloned_per_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    std::fs::write(
        repo.join("buildspec.yml"),
        "version: 0.2\nenv:\n  exported-variables: [CONTENT]\nphases:\n  build:\n    commands:\n      - export CONTENT=$(cat data.txt)\n",
    )
    .expect("buildspec");
    std::fs::write(repo.join("data.txt"), "from-git").expect("data");
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(&repo)
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);

    let server = TestServer::start(&dir.path().join("data")).await;
    let mut project = inline_project("repo", GOOD_BUILDSPEC);
    project["source"] = json!({"type": "GITHUB", "location": format!("file://{}", repo.display())});
    server.call("CreateProject", &project).await;
    let started = server
        .call(
            "StartBuild",
            &json!({"projectName": "repo", "sourceVersion": "main"}),
        )
        .await;
    let build = server
        .wait_build(started["build"]["id"].as_str().expect("id"))
        .await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    assert_eq!(
        build["exportedEnvironmentVariables"],
        json!([{"name": "CONTENT", "value": "from-git"}])
    );
    assert_eq!(build["sourceVersion"], "main");
    assert!(
        build["resolvedSourceVersion"]
            .as_str()
            .is_some_and(|v| v.len() == 40),
        "{build}"
    );

    let bad = server
        .call(
            "StartBuild",
            &json!({"projectName": "repo", "sourceVersion": "no-such-branch"}),
        )
        .await;
    let failed = server
        .wait_build(bad["build"]["id"].as_str().expect("id"))
        .await;
    assert_eq!(failed["buildStatus"], "FAILED");
    assert_eq!(
        phase(&failed, "DOWNLOAD_SOURCE")["contexts"][0]["statusCode"],
        "CLIENT_ERROR"
    );
    server.stop().await;
}

/// Two servers started at the same moment on a new PostgreSQL database with
/// the same configured admin key: both start (one creates the key, the
/// other finds it made) and both accept it. Three new databases, three races.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_started_together_on_a_new_postgres_database_both_start() {
    const NAME: &str = "servers_started_together_on_a_new_postgres_database_both_start";
    for round in 0..3 {
        let Some(db) = Db::postgres(NAME).await else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        // Servers sharing a database share the key file.
        gantry_store::MasterKey::load_or_create(&a.join("secret.key")).expect("key");
        std::fs::copy(a.join("secret.key"), b.join("secret.key")).expect("copy key");
        let (first, second) =
            tokio::join!(TestServer::start_on(&db, &a), TestServer::start_on(&db, &b));
        for server in [&first, &second] {
            let out = server.call("ListProjects", &json!({})).await;
            assert_eq!(out["projects"], json!([]), "round {round}");
        }
        first.stop().await;
        second.stop().await;
        db.finish().await;
    }
}

/// Every answer waits for the SQLite group commit's flush of the WAL: when
/// that flush fails, the answer is a 500 (the change may not be on disk),
/// and so is every answer after it, until a restart. The flush is made to
/// fail by putting a symbolic link that loops where the WAL file is named
/// (SQLite keeps writing the file it has open).
#[tokio::test]
async fn an_answer_whose_changes_could_not_be_flushed_is_a_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    server
        .call("CreateProject", &inline_project("web", GOOD_BUILDSPEC))
        .await;
    let wal = dir.path().join("gantry.db-wal");
    assert!(wal.exists(), "the WAL is where the store keeps it");
    std::fs::rename(&wal, dir.path().join("moved-wal")).expect("move the WAL");
    std::os::unix::fs::symlink("gantry.db-wal", &wal).expect("a looping link");
    let (status, out) = server
        .call_as(
            SECRET,
            "CreateProject",
            &inline_project("api", GOOD_BUILDSPEC),
        )
        .await;
    assert_eq!(status, 500, "{out}");
    assert_eq!(out["__type"], "InternalFailure", "{out}");
    assert!(
        out["message"].as_str().unwrap_or("").contains("durably"),
        "{out}"
    );
    // Even once the file is back, and for a request that changes nothing.
    std::fs::remove_file(&wal).expect("remove the link");
    std::fs::rename(dir.path().join("moved-wal"), &wal).expect("restore");
    let (status, out) = server.call_as(SECRET, "ListProjects", &json!({})).await;
    assert_eq!(status, 500, "{out}");
}
