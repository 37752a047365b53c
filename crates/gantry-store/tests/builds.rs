//! Access keys, projects, builds and their logs, on both stores: every
//! `BuildStore` method, build numbers under concurrent creates, and reopening.

use std::sync::Arc;

use gantry_store::{
    BuildStore, BuildUpdate, LogArchive, LogMove, MasterKey, NewAccessKey, NewBuild, NewProject,
    ProjectSort, SortOrder, StoreError,
};
use serde_json::json;

#[macro_use]
mod common;
use common::Backend;

fn project(name: &str, description: &str) -> NewProject {
    NewProject {
        name: name.into(),
        project: json!({"name": name, "description": description}),
    }
}

fn build(id: &str, project: &str) -> NewBuild {
    NewBuild {
        id: id.into(),
        project: project.into(),
        status: "IN_PROGRESS".into(),
        current_phase: "QUEUED".into(),
        build: json!({"phases": []}),
        overrides: json!({"sourceVersion": "main"}),
        start_ms: 1000,
    }
}

async fn access_keys_are_encrypted_and_come_back<B: Backend>(b: &B) {
    let store = b.open().await;
    assert_eq!(store.count_access_keys().await.expect("count"), 0);
    let key = NewAccessKey {
        access_key_id: "AKID1".into(),
        secret: "very-secret-value".into(),
        is_admin: true,
    };
    assert!(!format!("{key:?}").contains("very-secret"));
    store
        .create_access_key(&key, "system")
        .await
        .expect("create");
    assert!(matches!(
        store.create_access_key(&key, "system").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count_access_keys().await.expect("count"), 1);
    assert_eq!(
        store.access_key_secret("AKID1").await.expect("secret"),
        "very-secret-value"
    );
    assert!(matches!(
        store.access_key_secret("NOPE").await,
        Err(StoreError::NotFound)
    ));
    b.close(&store).await;
    // The secret is not in the database file in clear.
    assert!(!b.holds_in_clear(b"very-secret-value").await);
    // With another key file the secret does not decrypt.
    let other = MasterKey::from_bytes(&[7u8; 32]).expect("key");
    let store = b.open_with(other).await;
    assert!(matches!(
        store.access_key_secret("AKID1").await,
        Err(StoreError::Other(_))
    ));
}

async fn projects_crud_and_listing<B: Backend>(b: &B) {
    let store = b.open().await;
    let a = store
        .create_project(&project("beta", "first"), "alice")
        .await
        .expect("create");
    assert_eq!(a.project["description"], "first");
    store
        .create_project(&project("alpha", ""), "alice")
        .await
        .expect("create");
    assert!(matches!(
        store.create_project(&project("beta", ""), "alice").await,
        Err(StoreError::Conflict(_))
    ));
    let updated = store
        .update_project(&project("beta", "second"), "bob")
        .await
        .expect("update");
    assert_eq!(updated.project["description"], "second");
    assert_eq!(updated.created_ms, a.created_ms);
    assert!(updated.modified_ms >= a.modified_ms);
    assert!(matches!(
        store.update_project(&project("gamma", ""), "bob").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_project("beta").await.expect("get").name, "beta");
    let got = store
        .get_projects(&["beta".into(), "nope".into(), "alpha".into()])
        .await
        .expect("get many");
    let names: Vec<_> = got.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["beta", "alpha"]);
    assert_eq!(
        store
            .list_projects(ProjectSort::Name, SortOrder::Ascending)
            .await
            .expect("list"),
        ["alpha", "beta"]
    );
    assert_eq!(
        store
            .list_projects(ProjectSort::Name, SortOrder::Descending)
            .await
            .expect("list"),
        ["beta", "alpha"]
    );
    assert_eq!(
        store
            .list_projects(ProjectSort::CreatedTime, SortOrder::Ascending)
            .await
            .expect("list")
            .len(),
        2
    );
    store
        .list_projects(ProjectSort::LastModifiedTime, SortOrder::Descending)
        .await
        .expect("list");
    store.delete_project("alpha", "bob").await.expect("delete");
    assert!(matches!(
        store.delete_project("alpha", "bob").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_project("alpha").await,
        Err(StoreError::NotFound)
    ));
    let audit = store.audit_log(10).await.expect("audit");
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "project.delete",
            "project.update",
            "project.create",
            "project.create"
        ]
    );
    assert_eq!(audit[0].actor, "bob");
    assert_eq!(audit[0].target, "alpha");
}

async fn builds_numbers_updates_and_logs<B: Backend>(b: &B) {
    let store = b.open().await;
    assert!(matches!(
        store.create_build(&build("web:1", "web"), "a").await,
        Err(StoreError::NotFound)
    ));
    store
        .create_project(&project("web", ""), "a")
        .await
        .expect("project");
    let b1 = store
        .create_build(&build("web:1", "web"), "a")
        .await
        .expect("build");
    let b2 = store
        .create_build(&build("web:2", "web"), "a")
        .await
        .expect("build");
    assert_eq!((b1.number, b2.number), (1, 2));
    assert_eq!(b1.overrides["sourceVersion"], "main");
    assert!(matches!(
        store.create_build(&build("web:1", "web"), "a").await,
        Err(StoreError::Conflict(_))
    ));
    let update = BuildUpdate {
        status: "SUCCEEDED".into(),
        current_phase: "COMPLETED".into(),
        build: json!({"phases": [{"phaseType": "BUILD"}]}),
        end_ms: Some(2000),
    };
    store
        .update_build("web:1", &update, "system")
        .await
        .expect("update");
    assert!(matches!(
        store.update_build("web:9", &update, "system").await,
        Err(StoreError::NotFound)
    ));
    let got = store
        .get_builds(&["web:1".into(), "web:9".into()])
        .await
        .expect("get");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, "SUCCEEDED");
    assert_eq!(got[0].end_ms, Some(2000));
    assert_eq!(got[0].build["phases"][0]["phaseType"], "BUILD");
    // In the order asked for, one query or not: a build asked for twice
    // comes twice, an unknown one not at all.
    let asked: Vec<String> = ["web:2", "web:9", "web:1", "web:2"]
        .map(String::from)
        .into();
    let got = store.get_builds(&asked).await.expect("get many");
    let ids: Vec<_> = got.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["web:2", "web:1", "web:2"]);
    assert_eq!(
        store
            .list_builds_for_project("web", SortOrder::Descending)
            .await
            .expect("list"),
        ["web:2", "web:1"]
    );
    let running = store.builds_with_status("IN_PROGRESS").await.expect("q");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, "web:2");
    // Every change is audited, and only changes: the refused create (a
    // duplicate id) and the update of an unknown build left no entry, and
    // the refused create did not use up a number.
    let audit = store.audit_log(10).await.expect("audit");
    let entries: Vec<_> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("build.update", "web:1", "SUCCEEDED COMPLETED"),
            ("build.start", "web:2", "number 2"),
            ("build.start", "web:1", "number 1"),
            ("project.create", "web", ""),
        ]
    );
    assert_eq!(audit[0].actor, "system");
    assert_eq!(audit[1].actor, "a");

    assert_eq!(
        store
            .append_log_lines("web:1", &["one".into(), "two".into()])
            .await
            .expect("append"),
        2
    );
    assert_eq!(
        store
            .append_log_lines("web:1", &["three".into()])
            .await
            .expect("append"),
        3
    );
    assert_eq!(store.append_log_lines("web:1", &[]).await.expect("noop"), 3);
    let lines = store.log_lines("web:1", 1, 10).await.expect("lines");
    let texts: Vec<_> = lines.iter().map(|l| (l.seq, l.text.as_str())).collect();
    assert_eq!(texts, [(2, "two"), (3, "three")]);
    assert_eq!(
        store.log_lines("web:1", 0, 1).await.expect("lines").len(),
        1
    );

    // The text is "one\ntwo\nthree\n" (4 + 4 + 6 bytes); "é" below is two.
    let seek = |offset| {
        let store = &store;
        async move { store.log_seek("web:1", offset).await.expect("seek") }
    };
    let at = |after_seq, line_start| gantry_store::LogSeek {
        after_seq,
        line_start,
    };
    assert_eq!(seek(0).await, at(0, 0));
    assert_eq!(seek(3).await, at(0, 0), "inside the first line");
    assert_eq!(seek(4).await, at(1, 4), "just after the first newline");
    assert_eq!(seek(9).await, at(2, 8));
    assert_eq!(seek(14).await, at(3, 14), "the end");
    assert_eq!(seek(99).await, at(3, 14), "past the end");
    assert_eq!(
        store.log_seek("nope", 5).await.expect("seek"),
        at(0, 0),
        "no log"
    );
    store
        .append_log_lines("web:1", &["é".into()])
        .await
        .expect("append");
    assert_eq!(seek(17).await, at(4, 17), "lengths are bytes, not chars");
    assert_eq!(seek(16).await, at(3, 14));

    store
        .record_audit("alice", "build.stop", "web:2", "requested")
        .await
        .expect("audit");
    let audit = store.audit_log(1).await.expect("audit");
    assert_eq!(audit[0].action, "build.stop");

    // Deleting and re-creating a project numbers its builds on.
    store.delete_project("web", "a").await.expect("delete");
    store
        .create_project(&project("web", ""), "a")
        .await
        .expect("again");
    let b3 = store
        .create_build(&build("web:3", "web"), "a")
        .await
        .expect("build");
    assert_eq!(b3.number, 3);
}

async fn build_numbers_are_unique_under_concurrent_creates<B: Backend>(b: &B) {
    let store = Arc::new(b.open().await);
    store
        .create_project(&project("web", ""), "a")
        .await
        .expect("project");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_build(&build(&format!("web:{i}"), "web"), "a")
                .await
                .map(|b| b.number)
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.expect("join").expect("create"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=40).collect::<Vec<u64>>());
}

async fn reopening_keeps_everything<B: Backend>(b: &B) {
    {
        let store = b.open().await;
        store
            .create_access_key(
                &NewAccessKey {
                    access_key_id: "AK".into(),
                    secret: "s3cr3t".into(),
                    is_admin: true,
                },
                "system",
            )
            .await
            .expect("key");
        store
            .create_project(&project("web", "d"), "a")
            .await
            .expect("project");
        store
            .create_build(&build("web:1", "web"), "a")
            .await
            .expect("build");
        store
            .append_log_lines("web:1", &["hello".into()])
            .await
            .expect("log");
        b.close(&store).await;
    }
    let store = b.open().await;
    assert_eq!(
        store.access_key_secret("AK").await.expect("secret"),
        "s3cr3t"
    );
    assert_eq!(
        store.get_project("web").await.expect("project").project["description"],
        "d"
    );
    let b = store.get_builds(&["web:1".into()]).await.expect("build");
    assert_eq!(b[0].number, 1);
    assert_eq!(
        store.log_lines("web:1", 0, 10).await.expect("log")[0].text,
        "hello"
    );
    assert_eq!(store.audit_log(100).await.expect("audit").len(), 3);
    let b2 = store
        .create_build(&build("web:2", "web"), "a")
        .await
        .expect("build");
    assert_eq!(b2.number, 2);
}

async fn log_lines_from_concurrent_writers_are_numbered_once<B: Backend>(b: &B) {
    // Two stores on one database stand for two servers.
    let (first, second) = (Arc::new(b.open().await), Arc::new(b.open().await));
    first
        .create_project(&project("web", ""), "a")
        .await
        .expect("project");
    first
        .create_build(&build("web:1", "web"), "a")
        .await
        .expect("build");
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let (first, second) = (first.clone(), second.clone());
        tasks.push(tokio::spawn(async move {
            for batch in 0..5 {
                let lines = vec![
                    format!("w{writer} b{batch} 1"),
                    format!("w{writer} b{batch} 2"),
                ];
                let store: &dyn BuildStore = if writer % 2 == 0 { &*first } else { &*second };
                store.append_log_lines("web:1", &lines).await?;
            }
            Ok::<(), StoreError>(())
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("append");
    }
    let lines = first.log_lines("web:1", 0, 1000).await.expect("lines");
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
    // A batch's lines stay together.
    for pair in lines.chunks(2) {
        assert_eq!(
            pair[0].text.trim_end_matches('1'),
            pair[1].text.trim_end_matches('2'),
            "{pair:?}"
        );
    }
}

async fn archiving_a_log_records_the_pointer_and_deletes_the_lines<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .create_project(&project("web", ""), "admin")
        .await
        .expect("project");
    store
        .create_build(&build("web:1", "web"), "admin")
        .await
        .expect("build");
    store
        .append_log_lines("web:1", &["one".into(), "two".into()])
        .await
        .expect("append");
    // Still running: not a candidate for the sweep.
    assert!(
        store
            .builds_with_unarchived_logs(10)
            .await
            .expect("q")
            .is_empty()
    );
    let done = BuildUpdate {
        status: "SUCCEEDED".into(),
        current_phase: "COMPLETED".into(),
        build: json!({}),
        end_ms: Some(2000),
    };
    store
        .update_build("web:1", &done, "system")
        .await
        .expect("update");
    assert_eq!(
        store.builds_with_unarchived_logs(10).await.expect("q"),
        ["web:1"]
    );
    assert_eq!(store.log_archive("web:1").await.expect("q"), None);

    let archive = LogArchive {
        build_id: "web:1".into(),
        object_key: "logs/builds/web:1.log".into(),
        offset: 0,
        size_bytes: 8,
        line_count: 2,
        archived_ms: 3000,
    };
    let moved = |archive: &LogArchive, through_seq| {
        [LogMove {
            archive: archive.clone(),
            through_seq,
        }]
    };
    store
        .archive_logs(&moved(&archive, 2))
        .await
        .expect("archive");
    assert_eq!(
        store.log_archive("web:1").await.expect("q"),
        Some(archive.clone())
    );
    assert!(
        store
            .log_lines("web:1", 0, 10)
            .await
            .expect("lines")
            .is_empty()
    );
    assert!(
        store
            .builds_with_unarchived_logs(10)
            .await
            .expect("q")
            .is_empty()
    );

    // A line that came late stays until it is archived in its turn, and
    // only lines up to `through_seq` are deleted.
    store
        .append_log_lines("web:1", &["late".into()])
        .await
        .expect("append");
    assert_eq!(
        store.builds_with_unarchived_logs(10).await.expect("q"),
        ["web:1"]
    );
    // Packed this time, behind another build's log: the offset is kept.
    let again = LogArchive {
        object_key: "logs/packs/3000-a.log".into(),
        offset: 4096,
        size_bytes: 13,
        line_count: 3,
        ..archive
    };
    store
        .archive_logs(&moved(&again, 0))
        .await
        .expect("archive");
    assert_eq!(
        store.log_archive("web:1").await.expect("q"),
        Some(again.clone())
    );
    assert_eq!(
        store.log_lines("web:1", 0, 10).await.expect("lines").len(),
        1
    );
    store
        .archive_logs(&moved(&again, u64::MAX))
        .await
        .expect("archive");
    assert!(
        store
            .log_lines("web:1", 0, 10)
            .await
            .expect("lines")
            .is_empty()
    );
}

/// Several builds' logs move in one call (one transaction): each gets its
/// pointer and loses its lines, a build not in the call keeps both, and a
/// build named twice keeps its later move.
async fn many_logs_move_in_one_call<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .create_project(&project("web", ""), "admin")
        .await
        .expect("project");
    let done = BuildUpdate {
        status: "SUCCEEDED".into(),
        current_phase: "COMPLETED".into(),
        build: json!({}),
        end_ms: Some(2000),
    };
    for id in ["web:1", "web:2", "web:3"] {
        store
            .create_build(&build(id, "web"), "admin")
            .await
            .expect("build");
        store
            .append_log_lines(id, &[format!("line of {id}")])
            .await
            .expect("append");
        store.update_build(id, &done, "system").await.expect("end");
    }
    let moves: Vec<LogMove> = ["web:1", "web:3"]
        .into_iter()
        .map(|id| LogMove {
            archive: LogArchive {
                build_id: id.into(),
                object_key: "logs/packs/3000-b.log".into(),
                offset: if id == "web:1" { 0 } else { 12 },
                size_bytes: 12,
                line_count: 1,
                archived_ms: 3000,
            },
            through_seq: 1,
        })
        .collect();
    // The same build twice in one call: the later move is the one kept.
    let mut twice = moves.clone();
    twice.insert(
        0,
        LogMove {
            archive: LogArchive {
                archived_ms: 2500,
                ..moves[0].archive.clone()
            },
            through_seq: 1,
        },
    );
    store.archive_logs(&twice).await.expect("archive");
    for m in &moves {
        assert_eq!(
            store.log_archive(&m.archive.build_id).await.expect("q"),
            Some(m.archive.clone())
        );
        assert!(
            store
                .log_lines(&m.archive.build_id, 0, 10)
                .await
                .expect("lines")
                .is_empty()
        );
    }
    assert_eq!(store.log_archive("web:2").await.expect("q"), None);
    assert_eq!(
        store.log_lines("web:2", 0, 10).await.expect("lines").len(),
        1
    );
    assert_eq!(
        store.builds_with_unarchived_logs(10).await.expect("q"),
        ["web:2"]
    );
    // Nothing to move is no transaction at all, and no error.
    store.archive_logs(&[]).await.expect("nothing");

    // Read for many builds at once, as the archiver does: the records of
    // those archived (and only theirs), and the first lines of each log
    // by build and line number, up to a limit in all.
    let all: Vec<String> = ["web:3", "web:9", "web:2", "web:1"]
        .map(String::from)
        .into();
    let mut archived: Vec<LogArchive> = store.log_archives(&all).await.expect("archives");
    archived.sort_by(|a, b| a.build_id.cmp(&b.build_id));
    assert_eq!(
        archived,
        [moves[0].archive.clone(), moves[1].archive.clone()]
    );
    store
        .append_log_lines("web:1", &["late 1".into(), "late 2".into()])
        .await
        .expect("late");
    // (Compared without line numbers: after a move, SQLite numbers on from
    // the lines left, PostgreSQL from the last line ever written.)
    let first = |limit| {
        let store = &store;
        let all = &all;
        async move {
            let lines = store
                .first_log_lines(all, limit)
                .await
                .expect("first lines");
            assert!(
                lines
                    .windows(2)
                    .all(|w| w[0].0 != w[1].0 || w[0].1.seq < w[1].1.seq),
                "{lines:?}"
            );
            lines
                .into_iter()
                .map(|(id, l)| (id, l.text))
                .collect::<Vec<_>>()
        }
    };
    let line = |id: &str, text: &str| (id.to_owned(), text.to_owned());
    assert_eq!(
        first(10).await,
        [
            line("web:1", "late 1"),
            line("web:1", "late 2"),
            line("web:2", "line of web:2"),
        ]
    );
    assert_eq!(
        first(2).await,
        [line("web:1", "late 1"), line("web:1", "late 2")]
    );
}

both_stores!(
    archiving_a_log_records_the_pointer_and_deletes_the_lines,
    many_logs_move_in_one_call,
    access_keys_are_encrypted_and_come_back,
    projects_crud_and_listing,
    builds_numbers_updates_and_logs,
    build_numbers_are_unique_under_concurrent_creates,
    log_lines_from_concurrent_writers_are_numbered_once,
    reopening_keeps_everything,
);
