//! Engine steps on both stores: a step's builds are created in the step's
//! own transaction, so the two are stored together or not at all.

use gantry_store::{
    BuildStore, ExecutionChanges, ExecutionStore, NewBuild, NewProject, PipelineExecutionRecord,
    StoreError,
};
use serde_json::json;

#[macro_use]
mod common;
use common::Backend;

fn execution(id: &str) -> PipelineExecutionRecord {
    PipelineExecutionRecord {
        id: id.into(),
        pipeline: "pipe".into(),
        seq: 1,
        status: "InProgress".into(),
        active: true,
        start_ms: 1000,
        update_ms: 1000,
        body: json!({ "id": id }),
    }
}

fn build(id: &str, project: &str) -> (NewBuild, String) {
    let new = NewBuild {
        id: id.into(),
        project: project.into(),
        status: "IN_PROGRESS".into(),
        current_phase: "QUEUED".into(),
        build: json!({ "phases": [] }),
        overrides: json!({}),
        start_ms: 1000,
    };
    (new, "codepipeline/pipe".into())
}

async fn a_step_stores_its_builds_in_its_own_transaction<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .create_project(
            &NewProject {
                name: "app".into(),
                project: json!({ "name": "app" }),
            },
            "alice",
        )
        .await
        .expect("project");
    let step = ExecutionChanges {
        pipeline: "pipe".into(),
        executions: vec![execution("e1")],
        builds: vec![build("app:one", "app"), build("app:two", "app")],
        ..ExecutionChanges::default()
    };
    let created = store
        .save_execution_changes(&step, "system", "")
        .await
        .expect("save");
    let numbered: Vec<(&str, u64)> = created.iter().map(|b| (b.id.as_str(), b.number)).collect();
    assert_eq!(numbered, [("app:one", 1), ("app:two", 2)]);
    let stored = store
        .get_builds(&["app:one".into(), "app:two".into()])
        .await
        .expect("builds");
    assert_eq!(stored, created);
    store
        .get_pipeline_execution("pipe", "e1")
        .await
        .expect("the step's execution");

    // A build that cannot be created (no such project) fails the whole
    // step: its execution is not stored either.
    let failing = ExecutionChanges {
        pipeline: "pipe".into(),
        executions: vec![execution("e2")],
        builds: vec![build("app:three", "app"), build("gone:one", "gone")],
        ..ExecutionChanges::default()
    };
    assert!(matches!(
        store.save_execution_changes(&failing, "system", "").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_pipeline_execution("pipe", "e2").await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .get_builds(&["app:three".into()])
            .await
            .expect("builds")
            .is_empty(),
        "a build of the failed step was stored"
    );
}

both_stores!(a_step_stores_its_builds_in_its_own_transaction);
