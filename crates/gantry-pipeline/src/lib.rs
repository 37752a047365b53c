/*!
Gantry's pipeline engine: CodePipeline executions as a pure state machine.

A pipeline declaration (gantry-spec's model, from `gantry.yml` or
CodePipeline's JSON) becomes a [`Plan`]. A [`PipelineRuntime`] holds the
executions of one pipeline and the stages they occupy; each [`Input`]
(start, an action's result, stop, stage retry, a transition switched)
returns the [`Effect`]s for the host: actions to start or abandon, and the
state changes to publish. Stages run in order; within a stage, actions with
the same `runOrder` run together and a higher `runOrder` waits for the lower
ones; a failed action lets its run-order siblings finish, then fails the
stage. Artifacts pass by name, output variables by namespace
(`#{SourceVariables.CommitId}`), pipeline variables as `#{variables.X}`.
Execution modes SUPERSEDED, QUEUED and PARALLEL decide who enters a stage.

The engine does no I/O and reads no clock, so the server (which persists
every change in a transaction before acting), `gantry pipeline run` (in
memory) and the tests drive the same code.

```
use std::collections::BTreeMap;
use gantry_pipeline::{Effect, ExecutionStatus, Input, PipelineRuntime, Plan, Trigger};

let decl = gantry_spec::pipeline::parse_yaml("\
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
        configuration: {ProjectName: 'app-#{SourceVariables.BranchName}'}
        inputArtifacts: [{name: Src}]
").unwrap();
let plan = Plan::from_declaration(&decl, 1);
let mut rt = PipelineRuntime::new("app");

let start = Input::Start {
    execution_id: "e1".into(), plan, trigger: Trigger::default(),
    variables: vec![], source_revisions: BTreeMap::new(),
};
let effects = rt.apply(start, 0).unwrap();
let Some(Effect::StartAction(checkout)) = effects.iter().find(|e| matches!(e, Effect::StartAction(_))) else { panic!() };
assert_eq!(checkout.action, "Checkout");

let done = Input::ActionSucceeded {
    execution_id: "e1".into(),
    action_execution_id: checkout.action_execution_id.clone(),
    outputs: BTreeMap::from([("Src".to_string(), "sha256:1234".to_string())]),
    variables: BTreeMap::from([("BranchName".to_string(), "main".to_string())]),
    summary: None, external_execution_id: None,
};
let effects = rt.apply(done, 1).unwrap();
let Some(Effect::StartAction(compile)) = effects.iter().find(|e| matches!(e, Effect::StartAction(_))) else { panic!() };
assert_eq!(compile.configuration["ProjectName"], "app-main");
assert_eq!(compile.input_artifacts["Src"], "sha256:1234");
assert_eq!(rt.execution("e1").unwrap().status, ExecutionStatus::InProgress);
```

The semantics, and where they follow or leave CodePipeline, are in
`docs/pipeline-engine.md`.
*/
#![deny(missing_docs)]

mod engine;
mod plan;
mod state;
mod vars;

pub use engine::{ActionJob, Effect, EngineError, Input, PipelineRuntime, RuntimeMeta};
pub use plan::{
    ActionPlan, EnvVarPlan, FailurePolicy, Mode, Plan, RetryMode, StagePlan, VariablePlan,
};
pub use state::{
    ActionError, ActionRun, ActionStatus, Execution, ExecutionStatus, Position, StageRun,
    StageStatus, Trigger,
};
pub use vars::{Scope, resolve as resolve_variables};

#[cfg(test)]
mod tests;
