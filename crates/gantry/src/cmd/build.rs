//! `gantry build`: runs a buildspec locally, as CodeBuild would.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gantry_build::executor::ExecutorKind;
use gantry_build::{BuildOptions, Observer, PhaseStatus, StopHandle, StopReason};

use crate::output::{TerminalObserver, load_buildspec};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The source directory (CODEBUILD_SRC_DIR).
    #[arg(long, default_value = ".")]
    source: PathBuf,
    /// The buildspec, relative to the source directory unless absolute.
    #[arg(long, default_value = "buildspec.yml")]
    buildspec: PathBuf,
    /// Where commands run: host, sandbox (bubblewrap) or docker.
    #[arg(long, default_value = "host", value_parser = parse_executor)]
    executor: ExecutorKind,
    /// The image for the docker executor.
    #[arg(long)]
    image: Option<String>,
    /// `none` runs the build without network (sandbox and docker executors).
    #[arg(long, default_value = "default", value_parser = ["default", "none"])]
    network: String,
    /// Pull a docker image that is not present (`missing`) or fail (`never`).
    #[arg(long, default_value = "missing", value_parser = ["missing", "never"])]
    pull: String,
    /// An environment variable, overriding the buildspec's (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// A secret environment variable: masked as *** in every log line.
    /// Also supplies env.parameter-store and env.secrets-manager values.
    #[arg(long = "secret-env", value_name = "NAME=VALUE", value_parser = parse_pair)]
    secret_env: Vec<(String, String)>,
    /// Write the artifacts' files here (secondary ones under DIR/<artifactIdentifier>/).
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
    /// Write the result as CodeBuild's Build JSON object.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Also write the log to this file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The build timeout in minutes (CodeBuild allows 5 to 480; any positive value works here).
    #[arg(long, default_value = "60", value_name = "MINUTES", value_parser = parse_minutes)]
    timeout: Duration,
    /// The project name, used in CODEBUILD_BUILD_ID and report group names.
    #[arg(long, default_value = "local")]
    project: String,
    /// How many batch tasks run at once.
    #[arg(long, default_value = "4", value_parser = clap::value_parser!(u64).range(1..=256))]
    max_parallel: u64,
}

fn parse_executor(text: &str) -> Result<ExecutorKind, String> {
    text.parse()
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("`{text}`: the name is empty"));
    }
    Ok((name.to_string(), value.to_string()))
}

fn parse_minutes(text: &str) -> Result<Duration, String> {
    let minutes: f64 = text
        .parse()
        .map_err(|_| format!("`{text}`: expected a number of minutes"))?;
    if !(minutes > 0.0 && minutes <= 7.0 * 24.0 * 60.0) {
        return Err(format!(
            "`{text}`: the timeout must be more than 0 and at most a week"
        ));
    }
    Ok(Duration::from_secs_f64(minutes * 60.0))
}

pub fn run(args: BuildArgs) -> ExitCode {
    let buildspec_path = if args.buildspec.is_absolute() {
        args.buildspec.clone()
    } else {
        args.source.join(&args.buildspec)
    };
    let spec = match load_buildspec(&buildspec_path) {
        Ok(spec) => spec,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return ExitCode::from(2);
        }
    };
    if args.executor == ExecutorKind::Docker && args.image.is_none() {
        eprintln!("gantry build: --executor docker needs --image IMAGE");
        return ExitCode::from(2);
    }
    let log = match &args.log {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("gantry build: --log {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut options = BuildOptions::new(&args.source, args.executor);
    options.image = args.image.clone();
    options.network = args.network != "none";
    options.pull = args.pull != "never";
    options.env = args.env.clone();
    options.secret_env = args.secret_env.clone();
    options.artifacts_dir = args.artifacts_dir.clone();
    options.timeout = args.timeout;
    options.project_name = args.project.clone();
    options.max_parallel = args.max_parallel as usize;

    let runtime = match crate::output::runtime("gantry build") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let observer: Arc<dyn Observer> = TerminalObserver::new(log);
        let (stop, signal) = StopHandle::new();
        let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let interrupted = interrupted.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                    stop.stop(StopReason::Requested);
                }
            });
        }
        let outcome = if spec.batch.is_some() {
            gantry_build::run_batch(&spec, &options, observer.clone(), signal)
                .await
                .map(|b| {
                    let status = b.build_batch_status;
                    (serde_json::to_value(&b), status)
                })
        } else {
            gantry_build::run_build(&spec, &options, observer.clone(), signal)
                .await
                .map(|b| {
                    let status = b.build_status;
                    (serde_json::to_value(&b), status)
                })
        };
        drop(observer);
        let (json, status) = match outcome {
            Ok(result) => result,
            Err(gantry_build::BuildError::Invalid(message)) => {
                eprintln!("gantry build: {message}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("gantry build: {e}");
                return ExitCode::from(1);
            }
        };
        if let Some(path) = &args.report_json {
            let text = json
                .and_then(|j| serde_json::to_string_pretty(&j))
                .unwrap_or_default();
            if let Err(e) = std::fs::write(path, text + "\n") {
                eprintln!("gantry build: --report-json {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
        match status {
            PhaseStatus::Succeeded => ExitCode::SUCCESS,
            PhaseStatus::Stopped if interrupted.load(std::sync::atomic::Ordering::SeqCst) => {
                ExitCode::from(130)
            }
            _ => ExitCode::from(1),
        }
    })
}
