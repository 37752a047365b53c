//! Batch builds (`batch.build-list`, `build-graph`, `build-matrix`,
//! `build-fanout`): the tasks are expanded into builds, run in parallel as
//! far as dependencies and `max_parallel` allow, each in its own copy of the
//! source, and summed up as CodeBuild's `BuildBatch` object.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_spec::buildspec::{BatchEnv, BatchKind, BatchTask, Buildspec};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::log::Observer;
use crate::model::{BuildPhase, BuildResult, PhaseStatus};
use crate::options::{BuildOptions, StopHandle, StopReason, StopSignal};
use crate::runner::{BuildError, PhaseClock, epoch_seconds, random_uuid, run_build};

/// One build of a batch, as CodeBuild's `BuildGroup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildGroup {
    /// The task's identifier (`CODEBUILD_BATCH_BUILD_IDENTIFIER`).
    pub identifier: String,
    /// The identifiers it waited for.
    pub depends_on: Vec<String>,
    /// Whether its failure leaves the batch's status alone.
    pub ignore_failure: bool,
    /// Its build, when it ran (absent when a dependency failed or fast-fail
    /// stopped the batch before it started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_build_summary: Option<BuildSummary>,
}

/// CodeBuild's `BuildSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSummary {
    /// The build's ARN.
    pub arn: String,
    /// The build's status.
    pub build_status: PhaseStatus,
}

/// A finished batch, serialised as CodeBuild's `BuildBatch`, plus every
/// task's full `Build` under `builds` (a Gantry addition).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    /// `project:uuid`.
    pub id: String,
    /// The batch's ARN.
    pub arn: String,
    /// Epoch seconds.
    pub start_time: f64,
    /// Epoch seconds.
    pub end_time: f64,
    /// The batch's status.
    pub build_batch_status: PhaseStatus,
    /// Always true.
    pub complete: bool,
    /// The batch's phases (`BuildBatchPhaseType`, serialised by name).
    pub phases: Vec<BatchPhase>,
    /// One entry per task.
    pub build_groups: Vec<BuildGroup>,
    /// The tasks' builds.
    pub builds: Vec<BuildResult>,
}

/// A batch phase (`BuildBatchPhase`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPhase {
    /// SUBMITTED, DOWNLOAD_BATCHSPEC, IN_PROGRESS, COMBINE_ARTIFACTS, SUCCEEDED, FAILED or STOPPED.
    pub phase_type: &'static str,
    /// How it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_status: Option<PhaseStatus>,
    /// Whole seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_in_seconds: Option<u64>,
}

/// A task ready to run.
#[derive(Debug, Clone)]
struct Planned {
    identifier: String,
    depends_on: Vec<String>,
    ignore_failure: bool,
    spec: Buildspec,
    variables: Vec<(String, String)>,
    image: Option<String>,
}

/// Runs the buildspec's batch.
pub async fn run_batch(
    spec: &Buildspec,
    options: &BuildOptions,
    observer: Arc<dyn Observer>,
    mut stop: StopSignal,
) -> Result<BatchResult, BuildError> {
    let batch = spec
        .batch
        .as_ref()
        .ok_or_else(|| BuildError::Invalid("the buildspec has no `batch` section".into()))?;
    let start_time = epoch_seconds();
    let id = options
        .build_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", options.project_name, random_uuid()));
    let download = PhaseClock::start();
    let plan = plan(spec, &batch.kind, &options.source_dir)?;
    let downloaded = download.finish(
        crate::model::PhaseType::DownloadSource,
        PhaseStatus::Succeeded,
        None,
    );

    // The batch's own stop: fired by the caller's stop or by fast-fail.
    let (batch_stop, _) = StopHandle::new();
    let external = batch_stop.clone();
    let watcher = tokio::spawn(async move {
        let reason = stop.stopped().await;
        external.stop(reason);
    });

    let in_progress = PhaseClock::start();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.max_parallel.max(1)));
    let mut outcomes: HashMap<String, Option<BuildResult>> = HashMap::new();
    let mut running: JoinSet<(String, Result<BuildResult, BuildError>)> = JoinSet::new();
    let mut pending: Vec<Planned> = plan.clone();
    let workspace = tempfile::Builder::new()
        .prefix("gantry-batch-")
        .tempdir()
        .map_err(|e| BuildError::Io {
            context: "creating the batch's work directory".into(),
            source: e,
        })?;
    let mut fast_failed = false;
    let mut first_error = None;
    loop {
        // Start every task whose dependencies are done; skip the ones whose
        // dependencies failed.
        let mut still_pending = Vec::new();
        for task in pending.drain(..) {
            let deps: Vec<_> = task.depends_on.iter().map(|d| outcomes.get(d)).collect();
            if deps.iter().any(|d| d.is_none()) {
                still_pending.push(task);
                continue;
            }
            let blocked = task
                .depends_on
                .iter()
                .any(|d| !succeeded_or_ignored(&plan, d, outcomes.get(d)));
            if blocked || fast_failed || batch_stop.signal().is_stopped() {
                let why = if blocked {
                    "a task it depends on did not succeed"
                } else {
                    "the batch was stopped"
                };
                observer.on_event(
                    Some(&task.identifier),
                    &crate::log::BuildEvent::Line(format!("[Batch] not started: {why}")),
                );
                outcomes.insert(task.identifier.clone(), None);
                continue;
            }
            let source = workspace.path().join(&task.identifier);
            copy_tree(&options.source_dir, &source).map_err(|e| BuildError::Io {
                context: format!("copying the source for task {}", task.identifier),
                source: e,
            })?;
            let mut task_options = options.clone();
            task_options.source_dir = source;
            task_options.batch_identifier = Some(task.identifier.clone());
            // Each task is a build of its own, with its own id.
            task_options.build_id = None;
            task_options.build_arn = None;
            task_options.env = task
                .variables
                .iter()
                .cloned()
                .chain(options.env.iter().cloned())
                .collect();
            if task.image.is_some() {
                task_options.image = task.image.clone();
            }
            task_options.artifacts_dir = options
                .artifacts_dir
                .as_ref()
                .map(|d| d.join(&task.identifier));
            let observer = observer.clone();
            let signal = batch_stop.signal();
            let semaphore = semaphore.clone();
            running.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let result = run_build(&task.spec, &task_options, observer, signal).await;
                (task.identifier, result)
            });
        }
        pending = still_pending;
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (identifier, result) = match joined {
            Ok(done) => done,
            Err(e) => return Err(BuildError::Invalid(format!("a batch task panicked: {e}"))),
        };
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                first_error.get_or_insert(error);
                batch_stop.stop(StopReason::Requested);
                outcomes.insert(identifier, None);
                continue;
            }
        };
        let ignored = plan
            .iter()
            .any(|t| t.identifier == identifier && t.ignore_failure);
        if result.build_status != PhaseStatus::Succeeded
            && !ignored
            && batch.fast_fail
            && !fast_failed
        {
            fast_failed = true;
            observer.on_event(
                None,
                &crate::log::BuildEvent::Line(format!(
                    "[Batch] {identifier} failed: fast-fail stops the batch"
                )),
            );
            batch_stop.stop(StopReason::Requested);
        }
        outcomes.insert(identifier, Some(result));
    }
    watcher.abort();
    if let Some(error) = first_error {
        return Err(error);
    }
    let externally_stopped = !fast_failed && batch_stop.signal().is_stopped();
    let failed = plan.iter().any(|t| {
        !t.ignore_failure
            && !succeeded_or_ignored(&plan, &t.identifier, outcomes.get(&t.identifier))
    });
    let status = if externally_stopped {
        PhaseStatus::Stopped
    } else if failed {
        PhaseStatus::Failed
    } else {
        PhaseStatus::Succeeded
    };
    let progress = in_progress.finish(crate::model::PhaseType::Build, status, None);
    let mut builds = Vec::new();
    let build_groups = plan
        .iter()
        .map(|task| {
            let build = outcomes.get(&task.identifier).cloned().flatten();
            let summary = build.as_ref().map(|b| BuildSummary {
                arn: b.arn.clone(),
                build_status: b.build_status,
            });
            builds.extend(build);
            BuildGroup {
                identifier: task.identifier.clone(),
                depends_on: task.depends_on.clone(),
                ignore_failure: task.ignore_failure,
                current_build_summary: summary,
            }
        })
        .collect();
    let phases = vec![
        batch_phase("SUBMITTED", Some(PhaseStatus::Succeeded), Some(0)),
        batch_phase(
            "DOWNLOAD_BATCHSPEC",
            Some(PhaseStatus::Succeeded),
            duration(&downloaded),
        ),
        batch_phase("IN_PROGRESS", Some(status), duration(&progress)),
        batch_phase("COMBINE_ARTIFACTS", Some(PhaseStatus::Succeeded), Some(0)),
        batch_phase(status.as_str(), None, None),
    ];
    Ok(BatchResult {
        arn: format!("arn:aws:codebuild:local:000000000000:build-batch/{id}"),
        id,
        start_time,
        end_time: epoch_seconds(),
        build_batch_status: status,
        complete: true,
        phases,
        build_groups,
        builds,
    })
}

fn duration(phase: &BuildPhase) -> Option<u64> {
    phase.duration_in_seconds
}

fn batch_phase(
    phase_type: &'static str,
    status: Option<PhaseStatus>,
    duration_in_seconds: Option<u64>,
) -> BatchPhase {
    BatchPhase {
        phase_type,
        phase_status: status,
        duration_in_seconds,
    }
}

fn succeeded_or_ignored(
    plan: &[Planned],
    identifier: &str,
    outcome: Option<&Option<BuildResult>>,
) -> bool {
    let ignored = plan
        .iter()
        .any(|t| t.identifier == identifier && t.ignore_failure);
    match outcome {
        Some(Some(build)) => build.build_status == PhaseStatus::Succeeded || ignored,
        _ => ignored,
    }
}

/// Expands the batch into tasks.
fn plan(spec: &Buildspec, kind: &BatchKind, source_dir: &Path) -> Result<Vec<Planned>, BuildError> {
    // Tasks run the buildspec's phases unless they name another buildspec;
    // a task's own batch section would be meaningless, so it is dropped.
    let base = Buildspec {
        batch: None,
        ..spec.clone()
    };
    let load = |path: Option<&str>| -> Result<Buildspec, BuildError> {
        match path {
            None => Ok(base.clone()),
            Some(path) => load_buildspec(&source_dir.join(path)),
        }
    };
    let from_env = |env: &BatchEnv| -> Vec<(String, String)> {
        env.variables
            .iter()
            .map(|v| (v.name.value.clone(), v.value.value.clone()))
            .collect()
    };
    let task = |t: &BatchTask, with_deps: bool| -> Result<Planned, BuildError> {
        Ok(Planned {
            identifier: t.identifier.value.clone(),
            depends_on: if with_deps {
                t.depend_on.iter().map(|d| d.value.clone()).collect()
            } else {
                Vec::new()
            },
            ignore_failure: t.ignore_failure,
            spec: load(t.buildspec.as_ref().map(|b| b.value.as_str()))?,
            variables: from_env(&t.env),
            image: t.env.image.as_ref().map(|i| i.value.clone()),
        })
    };
    match kind {
        BatchKind::List(tasks) => tasks.iter().map(|t| task(t, false)).collect(),
        BatchKind::Graph(tasks) => tasks.iter().map(|t| task(t, true)).collect(),
        BatchKind::Fanout(fanout) => Ok((1..=fanout.parallelism.value)
            .map(|n| Planned {
                identifier: format!("fanout_{n}"),
                depends_on: Vec::new(),
                ignore_failure: fanout.ignore_failure,
                spec: base.clone(),
                variables: Vec::new(),
                image: None,
            })
            .collect()),
        BatchKind::Matrix(matrix) => {
            // One axis per dynamic key; a missing axis has one "no change" value.
            let mut cells: Vec<Cell> = vec![(Vec::new(), None, None, from_env(&matrix.static_env))];
            let static_image = matrix.static_env.image.as_ref().map(|i| i.value.clone());
            if !matrix.buildspecs.is_empty() {
                cells = cross(cells, &matrix.buildspecs, |cell, value| {
                    cell.0.push(format!("buildspec_{}", sanitize(value)));
                    cell.1 = Some(value.to_string());
                });
            }
            if !matrix.images.is_empty() {
                cells = cross(cells, &matrix.images, |cell, value| {
                    cell.0.push(format!("image_{}", sanitize(value)));
                    cell.2 = Some(value.to_string());
                });
            }
            if !matrix.compute_types.is_empty() {
                cells = cross(cells, &matrix.compute_types, |cell, value| {
                    cell.0.push(format!("compute_{}", sanitize(value)));
                });
            }
            for variable in &matrix.variables {
                let name = variable.name.value.clone();
                cells = cross(cells, &variable.values, |cell, value| {
                    cell.0
                        .push(format!("{}_{}", sanitize(&name), sanitize(value)));
                    cell.3.push((name.clone(), value.to_string()));
                });
            }
            cells
                .into_iter()
                .enumerate()
                .map(|(n, (parts, buildspec, image, variables))| {
                    let identifier = if parts.is_empty() {
                        format!("matrix_{}", n + 1)
                    } else {
                        parts.join("__")
                    };
                    Ok(Planned {
                        identifier,
                        depends_on: Vec::new(),
                        ignore_failure: matrix.ignore_failure,
                        spec: load(buildspec.as_deref())?,
                        variables,
                        image: image.or_else(|| static_image.clone()),
                    })
                })
                .collect()
        }
    }
}

type Cell = (
    Vec<String>,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
);

fn cross(
    cells: Vec<Cell>,
    values: &[gantry_spec::Spanned<String>],
    apply: impl Fn(&mut Cell, &str),
) -> Vec<Cell> {
    let mut out = Vec::with_capacity(cells.len() * values.len());
    for cell in cells {
        for value in values {
            let mut cell = cell.clone();
            apply(&mut cell, &value.value);
            out.push(cell);
        }
    }
    out
}

/// Keeps letters, digits and `_` (CodeBuild's identifier alphabet).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn load_buildspec(path: &Path) -> Result<Buildspec, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        BuildError::Invalid(format!("batch task buildspec {}: {e}", path.display()))
    })?;
    gantry_spec::buildspec::parse(&text).map_err(|diagnostics| {
        let lines: Vec<String> = diagnostics
            .iter()
            .map(|d| d.render(&path.display().to_string()))
            .collect();
        BuildError::Invalid(lines.join("\n"))
    })
}

/// Copies a source tree (files, directories, symlinks as symlinks, modes).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    for entry in walkdir::WalkDir::new(from).min_depth(1).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        let relative = entry
            .path()
            .strip_prefix(from)
            .map_err(std::io::Error::other)?;
        let target: PathBuf = to.join(relative);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            let mode = entry
                .metadata()
                .map_err(std::io::Error::other)?
                .permissions()
                .mode();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}
