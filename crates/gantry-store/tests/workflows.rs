//! Step Functions' side of both stores: state machines, executions, the
//! journal written once per sequence number, batches, timers and task tokens.

use gantry_store::{
    BuildStore, ExecutionCompletion, HistoryRecord, JournalAppend, NewExecution, NewStateMachine,
    NewTaskToken, StateMachineUpdate, StoreError, WorkflowStore,
};
use serde_json::json;

#[macro_use]
mod common;
use common::Backend;

fn machine_new() -> NewStateMachine {
    NewStateMachine {
        name: "m".into(),
        arn: "arn:sm:m".into(),
        definition: "{}".into(),
        role_arn: "role".into(),
        machine_type: "STANDARD".into(),
        revision_id: "r1".into(),
        created_ms: 5,
    }
}

fn entry(seq: u64) -> JournalAppend {
    JournalAppend {
        execution_arn: "arn:x:1".into(),
        seq,
        at_ms: 10 + seq as i64,
        event: json!({"type": "E", "seq": seq}),
        history: vec![HistoryRecord {
            id: seq,
            at_ms: 10,
            event_type: "PassStateEntered".into(),
            previous_id: seq.checked_sub(1).filter(|p| *p > 0),
            details: json!({"name": "A"}),
        }],
        timers_started: vec![],
        timers_removed: vec![],
        tokens_opened: vec![],
        tokens_closed: vec![],
        completion: None,
        actor: "system".into(),
        audit_action: None,
        inbox_id: None,
    }
}

fn execution_new() -> NewExecution {
    NewExecution {
        arn: "arn:x:1".into(),
        name: "1".into(),
        machine_arn: "arn:sm:m".into(),
        definition: "{\"d\":1}".into(),
        revision: 1,
        role_arn: "role".into(),
        input: "{}".into(),
        start_ms: 10,
    }
}

async fn state_machines_create_update_list_delete<B: Backend>(b: &B) {
    let s = b.open().await;
    let created = s
        .create_state_machine(&machine_new(), "admin")
        .await
        .expect("create");
    assert_eq!((created.revision, created.status.as_str()), (1, "ACTIVE"));
    assert!(matches!(
        s.create_state_machine(&machine_new(), "admin").await,
        Err(StoreError::Conflict(_))
    ));
    let update = StateMachineUpdate {
        definition: Some("{\"x\":1}".into()),
        role_arn: None,
        revision_id: "r2".into(),
        updated_ms: 9,
    };
    let updated = s
        .update_state_machine("arn:sm:m", &update, "admin")
        .await
        .expect("update");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.definition, "{\"x\":1}");
    assert_eq!(updated.role_arn, "role");
    assert!(matches!(
        s.update_state_machine("arn:sm:none", &update, "admin")
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_state_machines().await.expect("list").len(), 1);
    s.delete_state_machine("arn:sm:m", "admin")
        .await
        .expect("delete");
    s.delete_state_machine("arn:sm:m", "admin")
        .await
        .expect("delete again succeeds");
    assert!(matches!(
        s.get_state_machine("arn:sm:m").await,
        Err(StoreError::NotFound)
    ));
    let audit = s.audit_log(10).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "statemachine.delete",
            "statemachine.update",
            "statemachine.create"
        ]
    );
}

async fn a_journal_sequence_number_is_written_once<B: Backend>(b: &B) {
    let s = b.open().await;
    s.create_execution(&execution_new(), &entry(1), "admin")
        .await
        .expect("create");
    assert!(matches!(
        s.create_execution(&execution_new(), &entry(1), "admin")
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.append_journal(&entry(2)).await.expect("append 2");
    // The same transition again is refused, and nothing of it is written.
    let mut again = entry(2);
    again.history[0].id = 3;
    assert!(matches!(
        s.append_journal(&again).await,
        Err(StoreError::Conflict(_))
    ));
    let journal = s.journal("arn:x:1").await.expect("journal");
    assert_eq!(journal.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(s.history("arn:x:1").await.expect("history").len(), 2);
}

async fn a_batch_commits_its_good_entries_and_refuses_the_bad_ones<B: Backend>(b: &B) {
    let s = b.open().await;
    s.create_execution(&execution_new(), &entry(1), "admin")
        .await
        .expect("create");
    let mut other = entry(1);
    other.execution_arn = "arn:x:none".into();
    let results = s
        .append_journals(&[entry(2), entry(2), other, entry(3)])
        .await
        .expect("batch");
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(StoreError::Conflict(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(StoreError::NotFound)),
        "{:?}",
        results[2]
    );
    assert!(results[3].is_ok());
    let journal = s.journal("arn:x:1").await.expect("journal");
    assert_eq!(journal.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(s.history("arn:x:1").await.expect("history").len(), 3);
}

async fn timers_tokens_and_completion_change_with_their_entry<B: Backend>(b: &B) {
    let s = b.open().await;
    let mut first = entry(1);
    first.timers_started = vec![("t1".into(), 100), ("t2".into(), 200)];
    first.tokens_opened = vec![NewTaskToken {
        token_hash: "h1".into(),
        state_name: "Call".into(),
        attempt: 0,
    }];
    s.create_execution(&execution_new(), &first, "admin")
        .await
        .expect("create");
    assert_eq!(
        s.timers("arn:x:1").await.expect("timers"),
        [("t1".to_string(), 100), ("t2".to_string(), 200)]
    );
    let token = s.task_token("h1").await.expect("token");
    assert_eq!(
        (token.status.as_str(), token.state_name.as_str()),
        ("PENDING", "Call")
    );
    s.set_task_handle("h1", "build-1").await.expect("handle");
    assert_eq!(
        s.task_token("h1").await.expect("token").handle.as_deref(),
        Some("build-1")
    );
    assert!(matches!(
        s.set_task_handle("nope", "x").await,
        Err(StoreError::NotFound)
    ));

    let mut second = entry(2);
    second.timers_removed = vec!["t1".into()];
    second.tokens_closed = vec!["h1".into()];
    s.append_journal(&second).await.expect("append");
    assert_eq!(
        s.timers("arn:x:1").await.expect("timers"),
        [("t2".to_string(), 200)]
    );
    assert_eq!(s.task_token("h1").await.expect("token").status, "CLOSED");

    let mut last = entry(3);
    last.completion = Some(ExecutionCompletion {
        status: "SUCCEEDED".into(),
        output: Some("{\"ok\":true}".into()),
        error: None,
        cause: None,
        stop_ms: 50,
    });
    last.audit_action = Some("execution.complete".into());
    s.append_journal(&last).await.expect("complete");
    let x = s.get_execution("arn:x:1").await.expect("execution");
    assert_eq!(x.status, "SUCCEEDED");
    assert_eq!(x.output.as_deref(), Some("{\"ok\":true}"));
    assert_eq!(x.stop_ms, Some(50));
    assert!(s.timers("arn:x:1").await.expect("timers").is_empty());
    // An ended execution takes no more entries.
    assert!(matches!(
        s.append_journal(&entry(4)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.journal("arn:x:1").await.expect("journal").len(), 3);
    let running = s
        .list_executions(None, Some("RUNNING"))
        .await
        .expect("list");
    assert!(running.is_empty());
    let of_machine = s
        .list_executions(Some("arn:sm:m"), None)
        .await
        .expect("list");
    assert_eq!(of_machine.len(), 1);
    assert_eq!(
        s.audit_log(1).await.expect("audit")[0].action,
        "execution.complete"
    );
}

both_stores!(
    state_machines_create_update_list_delete,
    a_journal_sequence_number_is_written_once,
    a_batch_commits_its_good_entries_and_refuses_the_bad_ones,
    timers_tokens_and_completion_change_with_their_entry,
);
