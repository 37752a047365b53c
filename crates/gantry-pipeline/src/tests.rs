//! The engine's rules, one test each, and properties over random schedules.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::*;

/// A harness: one runtime, a clock, and the jobs started and not finished.
struct Rig {
    rt: PipelineRuntime,
    plan: Plan,
    now: i64,
    running: Vec<ActionJob>,
    abandoned: Vec<String>,
    log: Vec<Effect>,
}

impl Rig {
    fn new(yaml: &str) -> Rig {
        let decl = match gantry_spec::pipeline::parse_yaml(yaml) {
            Ok(d) => d,
            Err(e) => panic!("test pipeline invalid: {e:?}"),
        };
        let plan = Plan::from_declaration(&decl, 1);
        Rig {
            rt: PipelineRuntime::new(plan.pipeline.clone()),
            plan,
            now: 0,
            running: Vec::new(),
            abandoned: Vec::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, input: Input) -> Result<Vec<Effect>, EngineError> {
        self.now += 1;
        let effects = self.rt.apply(input, self.now)?;
        for e in &effects {
            match e {
                Effect::StartAction(job) => {
                    assert!(
                        !self
                            .running
                            .iter()
                            .any(|j| j.action_execution_id == job.action_execution_id),
                        "an attempt started twice"
                    );
                    self.running.push((**job).clone());
                }
                Effect::AbandonAction {
                    action_execution_id,
                    ..
                } => {
                    self.running
                        .retain(|j| &j.action_execution_id != action_execution_id);
                    self.abandoned.push(action_execution_id.clone());
                }
                _ => {}
            }
        }
        self.log.extend(effects.iter().cloned());
        Ok(effects)
    }

    fn start(&mut self, id: &str) {
        self.apply(Input::Start {
            execution_id: id.into(),
            plan: self.plan.clone(),
            trigger: Trigger::default(),
            variables: vec![],
            source_revisions: BTreeMap::new(),
        })
        .expect("start");
    }

    fn job(&self, exec: &str, action: &str) -> ActionJob {
        self.running
            .iter()
            .find(|j| j.execution_id == exec && j.action == action)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "{exec}/{action} is not running; running: {:?}",
                    self.running_names()
                )
            })
    }

    fn running_names(&self) -> Vec<String> {
        self.running
            .iter()
            .map(|j| format!("{}/{}", j.execution_id, j.action))
            .collect()
    }

    fn is_running(&self, exec: &str, action: &str) -> bool {
        self.running
            .iter()
            .any(|j| j.execution_id == exec && j.action == action)
    }

    fn succeed_with(
        &mut self,
        exec: &str,
        action: &str,
        outputs: &[(&str, &str)],
        vars: &[(&str, &str)],
    ) {
        let job = self.job(exec, action);
        self.running
            .retain(|j| j.action_execution_id != job.action_execution_id);
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        self.apply(Input::ActionSucceeded {
            execution_id: exec.into(),
            action_execution_id: job.action_execution_id,
            outputs: map(outputs),
            variables: map(vars),
            summary: None,
            external_execution_id: None,
        })
        .expect("success accepted");
    }

    /// Succeeds with every declared output.
    fn succeed(&mut self, exec: &str, action: &str) {
        let job = self.job(exec, action);
        let outputs: Vec<(String, String)> = job
            .output_artifacts
            .iter()
            .map(|o| (o.clone(), format!("ref-{exec}-{o}")))
            .collect();
        let outputs: Vec<(&str, &str)> = outputs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.succeed_with(exec, action, &outputs, &[]);
    }

    fn fail(&mut self, exec: &str, action: &str) {
        let job = self.job(exec, action);
        self.running
            .retain(|j| j.action_execution_id != job.action_execution_id);
        self.apply(Input::ActionFailed {
            execution_id: exec.into(),
            action_execution_id: job.action_execution_id,
            error: ActionError {
                code: "JobFailed".into(),
                message: format!("{action} broke"),
            },
            external_execution_id: None,
        })
        .expect("failure accepted");
    }

    fn status(&self, exec: &str) -> ExecutionStatus {
        self.rt.execution(exec).expect("execution").status
    }

    fn stage_status(&self, exec: &str, stage: &str) -> Option<StageStatus> {
        let e = self.rt.execution(exec).expect("execution");
        e.stage(stage).and_then(|(_, s)| s.status)
    }
}

const TWO_STAGES: &str = "
name: app
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Checkout
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'file:///srv/app.git', BranchName: main}
        outputArtifacts: [{name: Src}]
        namespace: SourceVariables
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: app}
        inputArtifacts: [{name: Src}]
";

fn with_mode(mode: &str) -> String {
    TWO_STAGES.replace("roleArn: arn:aws:iam::123456789012:role/gantry", &format!("roleArn: arn:aws:iam::123456789012:role/gantry\nexecutionMode: {mode}\npipelineType: V2"))
}

const RUN_ORDERS: &str = "
name: orders
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Checkout
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'file:///srv/app.git', BranchName: main}
        outputArtifacts: [{name: Src}]
  - name: Verify
    actions:
      - name: Unit
        runOrder: 1
        actionTypeId: {category: Test, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: unit}
        inputArtifacts: [{name: Src}]
      - name: Lint
        runOrder: 1
        actionTypeId: {category: Test, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: lint}
        inputArtifacts: [{name: Src}]
      - name: Package
        runOrder: 2
        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: package}
        inputArtifacts: [{name: Src}]
";

#[test]
fn stages_run_in_order_and_the_execution_succeeds() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    assert_eq!(r.running_names(), ["e1/Checkout"]);
    r.succeed("e1", "Checkout");
    assert_eq!(r.running_names(), ["e1/Compile"]);
    assert_eq!(r.stage_status("e1", "Source"), Some(StageStatus::Succeeded));
    r.succeed("e1", "Compile");
    assert_eq!(r.status("e1"), ExecutionStatus::Succeeded);
    assert!(r.running.is_empty());
}

#[test]
fn equal_run_orders_run_together_and_a_higher_one_waits() {
    let mut r = Rig::new(RUN_ORDERS);
    r.start("e1");
    r.succeed("e1", "Checkout");
    assert_eq!(r.running_names(), ["e1/Unit", "e1/Lint"]);
    r.succeed("e1", "Unit");
    assert!(!r.is_running("e1", "Package"), "Package must wait for Lint");
    r.succeed("e1", "Lint");
    assert_eq!(r.running_names(), ["e1/Package"]);
    r.succeed("e1", "Package");
    assert_eq!(r.status("e1"), ExecutionStatus::Succeeded);
}

#[test]
fn a_failed_action_lets_its_siblings_finish_then_fails_the_stage() {
    let mut r = Rig::new(RUN_ORDERS);
    r.start("e1");
    r.succeed("e1", "Checkout");
    r.fail("e1", "Unit");
    assert_eq!(
        r.status("e1"),
        ExecutionStatus::InProgress,
        "Lint still runs"
    );
    assert!(r.is_running("e1", "Lint"));
    r.succeed("e1", "Lint");
    assert!(
        !r.is_running("e1", "Package"),
        "a later run order never starts"
    );
    assert_eq!(r.status("e1"), ExecutionStatus::Failed);
    assert_eq!(r.stage_status("e1", "Verify"), Some(StageStatus::Failed));
    let summary =
        r.rt.execution("e1")
            .unwrap()
            .status_summary
            .clone()
            .unwrap();
    assert!(summary.contains("Unit: Unit broke"), "{summary}");
}

#[test]
fn artifacts_and_namespaced_variables_reach_later_actions() {
    let yaml = TWO_STAGES.replace(
        "configuration: {ProjectName: app}",
        "configuration: {ProjectName: 'app-#{SourceVariables.CommitId}'}\n        environmentVariables: [{name: REV, value: '#{SourceVariables.CommitId}@#{codepipeline.PipelineExecutionId}'}]",
    );
    let mut r = Rig::new(&yaml);
    r.start("e1");
    r.succeed_with(
        "e1",
        "Checkout",
        &[("Src", "sha256:aa")],
        &[("CommitId", "c0ffee")],
    );
    let job = r.job("e1", "Compile");
    assert_eq!(job.configuration["ProjectName"], "app-c0ffee");
    assert_eq!(job.environment_variables[0].value, "c0ffee@e1");
    assert_eq!(job.input_artifacts["Src"], "sha256:aa");
}

#[test]
fn an_unresolvable_reference_fails_the_action_without_running_it() {
    // Validation refuses such a reference to a known action; a plan can
    // still hold one (a variable the source did not produce this time).
    let mut r = Rig::new(TWO_STAGES);
    r.plan.stages[1].actions[0]
        .configuration
        .insert("ProjectName".into(), "app-#{SourceVariables.Nope}".into());
    r.start("e1");
    r.succeed("e1", "Checkout");
    assert!(r.running.is_empty());
    assert_eq!(r.status("e1"), ExecutionStatus::Failed);
    let e = r.rt.execution("e1").unwrap();
    let err = e.stages[1].actions[0].error.clone().unwrap();
    assert_eq!(err.code, "ConfigurationError");
    assert!(
        err.message.contains("#{SourceVariables.Nope}"),
        "{}",
        err.message
    );
}

#[test]
fn a_missing_output_artifact_fails_the_action_and_undeclared_ones_are_dropped() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    r.succeed_with("e1", "Checkout", &[("Other", "x")], &[]);
    assert_eq!(r.status("e1"), ExecutionStatus::Failed);
    let e = r.rt.execution("e1").unwrap();
    assert!(
        e.artifacts.is_empty(),
        "undeclared output kept: {:?}",
        e.artifacts
    );
    assert!(
        e.stages[0].actions[0]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("Src")
    );
}

#[test]
fn pipeline_variables_take_defaults_and_values_given_at_start() {
    let yaml = TWO_STAGES.replace(
        "roleArn: arn:aws:iam::123456789012:role/gantry",
        "roleArn: arn:aws:iam::123456789012:role/gantry\npipelineType: V2\nvariables: [{name: Env, defaultValue: staging}, {name: Tag}]",
    )
    .replace("configuration: {ProjectName: app}", "configuration: {ProjectName: 'app-#{variables.Env}-#{variables.Tag}'}");
    let mut r = Rig::new(&yaml);
    let start = |vars: Vec<(&str, &str)>, id: &str| Input::Start {
        execution_id: id.into(),
        plan: r.plan.clone(),
        trigger: Trigger::default(),
        variables: vars
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect(),
        source_revisions: BTreeMap::new(),
    };
    let missing = start(vec![], "e0");
    let unknown = start(vec![("Tag", "1"), ("Nope", "x")], "e0");
    let good = start(vec![("Tag", "v1")], "e1");
    assert!(matches!(r.apply(missing), Err(EngineError::InvalidVariables(m)) if m.contains("Tag")));
    assert!(
        matches!(r.apply(unknown), Err(EngineError::InvalidVariables(m)) if m.contains("Nope"))
    );
    assert!(
        r.rt.execution("e0").is_none(),
        "a refused start changes nothing"
    );
    r.apply(good).unwrap();
    r.succeed("e1", "Checkout");
    assert_eq!(
        r.job("e1", "Compile").configuration["ProjectName"],
        "app-staging-v1"
    );
}

#[test]
fn superseded_mode_replaces_the_older_waiting_execution() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    r.succeed("e1", "Checkout"); // e1 in Build
    r.start("e2");
    r.succeed("e2", "Checkout"); // e2 waits for Build
    r.start("e3");
    r.succeed("e3", "Checkout"); // e3 arrives: e2 is superseded
    assert_eq!(r.status("e2"), ExecutionStatus::Superseded);
    assert!(
        r.rt.execution("e2")
            .unwrap()
            .status_summary
            .as_ref()
            .unwrap()
            .contains("e3")
    );
    assert_eq!(r.status("e3"), ExecutionStatus::InProgress);
    assert!(!r.is_running("e3", "Compile"));
    r.succeed("e1", "Compile");
    assert_eq!(r.status("e1"), ExecutionStatus::Succeeded);
    assert!(
        r.is_running("e3", "Compile"),
        "the newest waiting execution enters"
    );
    r.succeed("e3", "Compile");
    assert_eq!(r.status("e3"), ExecutionStatus::Succeeded);
}

#[test]
fn superseded_mode_keeps_one_execution_per_stage_including_the_first() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    r.start("e2");
    assert_eq!(
        r.running_names(),
        ["e1/Checkout"],
        "Source holds one execution"
    );
    r.start("e3");
    assert_eq!(r.status("e2"), ExecutionStatus::Superseded);
}

#[test]
fn queued_mode_runs_waiting_executions_in_start_order() {
    let mut r = Rig::new(&with_mode("QUEUED"));
    r.start("e1");
    r.start("e2");
    r.start("e3");
    assert_eq!(r.running_names(), ["e1/Checkout"]);
    r.succeed("e1", "Checkout");
    assert_eq!(r.running_names(), ["e1/Compile", "e2/Checkout"]);
    r.succeed("e2", "Checkout");
    assert_eq!(r.running_names(), ["e1/Compile", "e3/Checkout"]);
    r.succeed("e3", "Checkout");
    r.succeed("e1", "Compile");
    assert_eq!(r.running_names(), ["e2/Compile"], "e2 before e3");
    r.succeed("e2", "Compile");
    r.succeed("e3", "Compile");
    for id in ["e1", "e2", "e3"] {
        assert_eq!(r.status(id), ExecutionStatus::Succeeded, "{id}");
    }
}

#[test]
fn parallel_mode_lets_executions_share_stages() {
    let mut r = Rig::new(&with_mode("PARALLEL"));
    r.start("e1");
    r.start("e2");
    assert_eq!(r.running_names(), ["e1/Checkout", "e2/Checkout"]);
    r.succeed("e2", "Checkout");
    r.succeed("e1", "Checkout");
    assert_eq!(r.running_names(), ["e2/Compile", "e1/Compile"]);
}

#[test]
fn stop_and_wait_lets_running_actions_finish_and_starts_nothing_more() {
    let mut r = Rig::new(RUN_ORDERS);
    r.start("e1");
    r.succeed("e1", "Checkout");
    r.apply(Input::Stop {
        execution_id: "e1".into(),
        abandon: false,
        reason: Some("enough".into()),
    })
    .unwrap();
    assert_eq!(r.status("e1"), ExecutionStatus::Stopping);
    assert_eq!(
        r.apply(Input::Stop {
            execution_id: "e1".into(),
            abandon: false,
            reason: None
        }),
        Err(EngineError::DuplicateStop("e1".into()))
    );
    r.succeed("e1", "Unit");
    assert_eq!(r.status("e1"), ExecutionStatus::Stopping);
    r.succeed("e1", "Lint");
    assert_eq!(r.status("e1"), ExecutionStatus::Stopped);
    assert!(!r.is_running("e1", "Package"));
    assert_eq!(r.stage_status("e1", "Verify"), Some(StageStatus::Stopped));
    assert_eq!(
        r.rt.execution("e1").unwrap().status_summary.as_deref(),
        Some("enough")
    );
}

#[test]
fn stop_and_abandon_gives_up_running_actions_and_ignores_their_results() {
    let mut r = Rig::new(RUN_ORDERS);
    r.start("e1");
    r.succeed("e1", "Checkout");
    let unit = r.job("e1", "Unit");
    r.apply(Input::Stop {
        execution_id: "e1".into(),
        abandon: true,
        reason: None,
    })
    .unwrap();
    assert_eq!(r.status("e1"), ExecutionStatus::Stopped);
    assert_eq!(r.abandoned.len(), 2);
    let late = r.apply(Input::ActionSucceeded {
        execution_id: "e1".into(),
        action_execution_id: unit.action_execution_id.clone(),
        outputs: BTreeMap::new(),
        variables: BTreeMap::new(),
        summary: None,
        external_execution_id: None,
    });
    assert_eq!(
        late,
        Err(EngineError::StaleResult(unit.action_execution_id))
    );
    let e = r.rt.execution("e1").unwrap();
    assert_eq!(e.stages[1].actions[0].status, Some(ActionStatus::Abandoned));
}

#[test]
fn stopping_an_execution_that_waits_ends_it_without_entering_the_stage() {
    let mut r = Rig::new(&with_mode("QUEUED"));
    r.start("e1");
    r.start("e2");
    r.apply(Input::Stop {
        execution_id: "e2".into(),
        abandon: false,
        reason: None,
    })
    .unwrap();
    assert_eq!(r.status("e2"), ExecutionStatus::Stopped);
    r.succeed("e1", "Checkout");
    assert_eq!(
        r.running_names(),
        ["e1/Compile"],
        "the stopped execution never enters"
    );
    assert!(matches!(
        r.apply(Input::Stop {
            execution_id: "e2".into(),
            abandon: true,
            reason: None
        }),
        Err(EngineError::NotStoppable(_))
    ));
}

#[test]
fn retrying_failed_actions_reruns_only_those() {
    let mut r = Rig::new(RUN_ORDERS);
    r.start("e1");
    r.succeed("e1", "Checkout");
    r.fail("e1", "Unit");
    r.succeed("e1", "Lint");
    assert_eq!(r.status("e1"), ExecutionStatus::Failed);
    let retry = Input::RetryStage {
        execution_id: "e1".into(),
        stage: "Verify".into(),
        mode: RetryMode::FailedActions,
    };
    r.apply(retry).unwrap();
    assert_eq!(r.status("e1"), ExecutionStatus::InProgress);
    assert_eq!(r.running_names(), ["e1/Unit"], "Lint succeeded and is kept");
    assert_eq!(r.job("e1", "Unit").attempt, 2);
    r.succeed("e1", "Unit");
    r.succeed("e1", "Package");
    assert_eq!(r.status("e1"), ExecutionStatus::Succeeded);
    assert_eq!(r.rt.execution("e1").unwrap().stages[1].attempt, 2);
}

#[test]
fn retrying_all_actions_reruns_the_whole_stage() {
    let mut r = Rig::new(RUN_ORDERS);
    r.start("e1");
    r.succeed("e1", "Checkout");
    r.fail("e1", "Unit");
    r.succeed("e1", "Lint");
    r.apply(Input::RetryStage {
        execution_id: "e1".into(),
        stage: "Verify".into(),
        mode: RetryMode::AllActions,
    })
    .unwrap();
    assert_eq!(r.running_names(), ["e1/Unit", "e1/Lint"]);
}

#[test]
fn retry_is_refused_while_running_for_other_stages_and_when_not_latest() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    let in_progress = Input::RetryStage {
        execution_id: "e1".into(),
        stage: "Source".into(),
        mode: RetryMode::FailedActions,
    };
    assert!(matches!(
        r.apply(in_progress),
        Err(EngineError::StageNotRetryable(_))
    ));
    r.succeed("e1", "Checkout");
    r.fail("e1", "Compile");
    let wrong_stage = Input::RetryStage {
        execution_id: "e1".into(),
        stage: "Source".into(),
        mode: RetryMode::FailedActions,
    };
    assert!(matches!(
        r.apply(wrong_stage),
        Err(EngineError::StageNotRetryable(_))
    ));
    let unknown = Input::RetryStage {
        execution_id: "e1".into(),
        stage: "Nope".into(),
        mode: RetryMode::FailedActions,
    };
    assert_eq!(
        r.apply(unknown),
        Err(EngineError::StageNotFound("Nope".into()))
    );
    // A newer execution passes through Build: e1 is no longer the latest there.
    r.start("e2");
    r.succeed("e2", "Checkout");
    r.succeed("e2", "Compile");
    let stale = Input::RetryStage {
        execution_id: "e1".into(),
        stage: "Build".into(),
        mode: RetryMode::FailedActions,
    };
    assert!(matches!(r.apply(stale), Err(EngineError::NotLatest(_))));
}

#[test]
fn a_disabled_transition_holds_executions_until_enabled() {
    let mut r = Rig::new(TWO_STAGES);
    r.apply(Input::SetTransition {
        stage: "Build".into(),
        enabled: false,
    })
    .unwrap();
    assert!(r.rt.meta().disabled.contains("Build"));
    r.start("e1");
    r.succeed("e1", "Checkout");
    assert!(r.running.is_empty(), "e1 waits at the disabled transition");
    assert_eq!(r.rt.execution("e1").unwrap().position, Position::Waiting(1));
    r.start("e2");
    r.succeed("e2", "Checkout");
    assert_eq!(
        r.status("e1"),
        ExecutionStatus::Superseded,
        "the newer one replaces it"
    );
    r.apply(Input::SetTransition {
        stage: "Build".into(),
        enabled: true,
    })
    .unwrap();
    assert_eq!(r.running_names(), ["e2/Compile"]);
}

#[test]
fn a_stage_with_on_failure_retry_retries_once_by_itself() {
    let yaml = TWO_STAGES.replace(
        "        inputArtifacts: [{name: Src}]\n",
        "        inputArtifacts: [{name: Src}]\n    onFailure: {result: RETRY, retryConfiguration: {retryMode: FAILED_ACTIONS}}\n",
    )
    .replace("roleArn: arn:aws:iam::123456789012:role/gantry", "roleArn: arn:aws:iam::123456789012:role/gantry\npipelineType: V2");
    let mut r = Rig::new(&yaml);
    r.start("e1");
    r.succeed("e1", "Checkout");
    r.fail("e1", "Compile");
    assert_eq!(r.status("e1"), ExecutionStatus::InProgress);
    assert_eq!(r.job("e1", "Compile").attempt, 2);
    r.fail("e1", "Compile");
    assert_eq!(
        r.status("e1"),
        ExecutionStatus::Failed,
        "only one automatic retry"
    );
}

#[test]
fn a_duplicate_result_is_refused_and_changes_nothing() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    let job = r.job("e1", "Checkout");
    r.succeed("e1", "Checkout");
    let before = r.rt.execution("e1").unwrap().clone();
    let again = r.apply(Input::ActionFailed {
        execution_id: "e1".into(),
        action_execution_id: job.action_execution_id.clone(),
        error: ActionError {
            code: "x".into(),
            message: "x".into(),
        },
        external_execution_id: None,
    });
    assert_eq!(
        again,
        Err(EngineError::StaleResult(job.action_execution_id))
    );
    assert_eq!(r.rt.execution("e1").unwrap(), &before);
}

#[test]
fn a_restored_runtime_carries_on_where_the_stored_one_was() {
    let mut r = Rig::new(&with_mode("QUEUED"));
    r.start("e1");
    r.start("e2");
    r.succeed("e1", "Checkout");
    // Store everything as JSON, as the host does, and rebuild.
    let stored: Vec<String> =
        r.rt.executions()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
    let meta = serde_json::to_string(r.rt.meta()).unwrap();
    let executions = stored
        .iter()
        .map(|s| serde_json::from_str::<Execution>(s).unwrap())
        .collect();
    let mut restored =
        PipelineRuntime::restore("app", serde_json::from_str(&meta).unwrap(), executions);
    let mut jobs: Vec<String> = restored
        .in_progress_actions()
        .iter()
        .map(|j| j.action_execution_id.clone())
        .collect();
    let mut expected: Vec<String> = r
        .running
        .iter()
        .map(|j| j.action_execution_id.clone())
        .collect();
    jobs.sort();
    expected.sort();
    assert_eq!(jobs, expected, "the same attempts, under the same ids");
    // e3 queues behind e2, which holds Source: the queue was rebuilt.
    let plan = r.plan.clone();
    let effects = restored
        .apply(
            Input::Start {
                execution_id: "e3".into(),
                plan,
                trigger: Trigger::default(),
                variables: vec![],
                source_revisions: BTreeMap::new(),
            },
            100,
        )
        .unwrap();
    assert!(!effects.iter().any(|e| matches!(e, Effect::StartAction(_))));
    assert_eq!(restored.execution("e3").unwrap().seq, 3);
}

#[test]
fn take_dirty_names_the_changed_executions_once() {
    let mut r = Rig::new(TWO_STAGES);
    r.start("e1");
    let (execs, meta) = r.rt.take_dirty();
    assert_eq!(
        execs.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e1"]
    );
    assert!(meta.is_some());
    let (execs, meta) = r.rt.take_dirty();
    assert!(execs.is_empty() && meta.is_none());
}

#[test]
fn the_source_revision_given_at_start_reaches_the_source_action() {
    let mut r = Rig::new(TWO_STAGES);
    r.apply(Input::Start {
        execution_id: "e1".into(),
        plan: r.plan.clone(),
        trigger: Trigger {
            trigger_type: "Webhook".into(),
            trigger_detail: "gh".into(),
        },
        variables: vec![],
        source_revisions: BTreeMap::from([("Checkout".to_string(), "abc".to_string())]),
    })
    .unwrap();
    assert_eq!(
        r.job("e1", "Checkout").source_revision.as_deref(),
        Some("abc")
    );
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Step {
    Start,
    Finish { pick: usize, ok: bool },
    Stop { pick: usize, abandon: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Start),
        6 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(pick, ok)| Step::Finish { pick, ok }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, abandon)| Step::Stop { pick, abandon }),
    ]
}

fn check_schedule(mode: &str, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut r = Rig::new(&RUN_ORDERS.replace("roleArn: arn:aws:iam::123456789012:role/gantry", &format!("roleArn: arn:aws:iam::123456789012:role/gantry\npipelineType: V2\nexecutionMode: {mode}")));
    let mut started = 0;
    for s in steps {
        match s {
            Step::Start => {
                started += 1;
                r.start(&format!("e{started}"));
            }
            Step::Finish { pick, ok } if !r.running.is_empty() => {
                let job = r.running[pick % r.running.len()].clone();
                if ok {
                    r.succeed(&job.execution_id, &job.action)
                } else {
                    r.fail(&job.execution_id, &job.action)
                }
            }
            Step::Stop { pick, abandon } if started > 0 => {
                let id = format!("e{}", pick % started + 1);
                let _ = r.apply(Input::Stop {
                    execution_id: id,
                    abandon,
                    reason: None,
                });
            }
            _ => {}
        }
        // At most one execution inside each stage, unless PARALLEL.
        if mode != "PARALLEL" {
            for stage in ["Source", "Verify"] {
                let inside = r.rt.executions().filter(|e| {
                    !e.status.is_terminal()
                        && matches!(e.position, Position::InStage(i) if e.plan.stages[i].name == stage)
                }).count();
                prop_assert!(inside <= 1, "{inside} executions in {stage}");
            }
        }
        // Running jobs are exactly the in-progress actions.
        let mut a: Vec<String> =
            r.rt.in_progress_actions()
                .into_iter()
                .map(|j| j.action_execution_id)
                .collect();
        let mut b: Vec<String> = r
            .running
            .iter()
            .map(|j| j.action_execution_id.clone())
            .collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
    // Drain: finish everything; every execution must end.
    let mut guard = 0;
    while let Some(job) = r.running.first().cloned() {
        r.succeed(&job.execution_id, &job.action);
        guard += 1;
        prop_assert!(guard < 1000);
    }
    for e in r.rt.executions() {
        prop_assert!(
            e.status.is_terminal(),
            "{} is {:?} at {:?}",
            e.id,
            e.status,
            e.position
        );
    }
    if mode == "QUEUED" {
        // Executions that succeeded entered Verify in start order.
        let order: Vec<u64> = r
            .log
            .iter()
            .filter_map(|e| match e {
                Effect::StageChanged {
                    execution_id,
                    stage,
                    status: StageStatus::InProgress,
                } if stage == "Verify" => r.rt.execution(execution_id).map(|x| x.seq),
                _ => None,
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        prop_assert_eq!(order, sorted);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_schedules_keep_the_invariants_superseded(steps in prop::collection::vec(step(), 1..60)) {
        check_schedule("SUPERSEDED", steps)?;
    }
    #[test]
    fn random_schedules_keep_the_invariants_queued(steps in prop::collection::vec(step(), 1..60)) {
        check_schedule("QUEUED", steps)?;
    }
    #[test]
    fn random_schedules_keep_the_invariants_parallel(steps in prop::collection::vec(step(), 1..60)) {
        check_schedule("PARALLEL", steps)?;
    }
}
