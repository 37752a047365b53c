//! The environment variables a build starts with, in CodeBuild's precedence:
//! StartBuild overrides (`--env`, `--secret-env`) over the buildspec's
//! `env`, over the `CODEBUILD_*` variables, over the executor's base.

use std::path::Path;

use gantry_spec::buildspec::Buildspec;

use super::{BuildContext, BuildError};
use crate::executor::ExecutorKind;
use crate::options::BuildOptions;

/// The git revision of the source, when it is a checkout.
#[derive(Debug, Clone, Default)]
pub(crate) struct GitInfo {
    pub commit: Option<String>,
    pub remote_url: Option<String>,
}

impl GitInfo {
    /// Reads the checkout at `dir`; anything missing (no git, not a
    /// repository, no remote) is simply absent.
    pub async fn read(dir: &Path) -> GitInfo {
        // No `.git` here or above (a pipeline's input artifact, a plain
        // directory): no repository, and no `git` process to start.
        if !dir.ancestors().any(|d| d.join(".git").exists()) {
            return GitInfo::default();
        }
        let (commit, remote_url) = tokio::join!(
            git(dir, &["rev-parse", "--verify", "-q", "HEAD"]),
            git(dir, &["config", "--get", "remote.origin.url"]),
        );
        GitInfo { commit, remote_url }
    }
}

async fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        // The source may belong to another user than the one running gantry.
        .args(["-c", "safe.directory=*"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// The values to mask, after checking that every `parameter-store` and
/// `secrets-manager` variable has one (a local build has no store to read
/// them from: they come from `--secret-env NAME=VALUE`).
pub(crate) fn secret_values(
    spec: &Buildspec,
    options: &BuildOptions,
) -> Result<Vec<String>, BuildError> {
    for (name, _) in options.env.iter().chain(&options.secret_env) {
        if name.starts_with("CODEBUILD_") {
            return Err(BuildError::Invalid(format!(
                "--env {name}: names starting with CODEBUILD_ are reserved for the build's own variables"
            )));
        }
    }
    let provided = |name: &str| options.secret_env.iter().any(|(n, _)| n == name);
    let store_vars = spec
        .env
        .parameter_store
        .iter()
        .map(|v| (&v.name, "parameter-store"))
        .chain(
            spec.env
                .secrets_manager
                .iter()
                .map(|v| (&v.name, "secrets-manager")),
        );
    for (name, section) in store_vars {
        if !provided(&name.value) {
            return Err(BuildError::Invalid(format!(
                "env.{section}.{}: a local build has no {section} to read; pass the value with --secret-env {}=VALUE",
                name.value, name.value
            )));
        }
    }
    Ok(options
        .secret_env
        .iter()
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .collect())
}

/// The environment of the first phase.
pub(crate) fn compose(
    ctx: &BuildContext<'_>,
    base: &[(String, String)],
    source_dir: &Path,
    build_id: &str,
    run_id: &str,
    start_time: f64,
    git: &GitInfo,
) -> Vec<(String, String)> {
    let options = ctx.options;
    let mut env = Vars(
        base.iter()
            .filter(|(n, _)| !n.starts_with("CODEBUILD_"))
            .cloned()
            .collect(),
    );
    let image = match (options.executor, &options.image) {
        (ExecutorKind::Docker, Some(image)) => image.clone(),
        (kind, _) => format!("gantry:{}", kind.as_str()),
    };
    let codebuild = [
        ("CODEBUILD_BUILD_ID", Some(build_id.to_string())),
        (
            "CODEBUILD_BUILD_ARN",
            Some(super::build_arn(options, build_id)),
        ),
        (
            "CODEBUILD_BUILD_NUMBER",
            Some(options.build_number.to_string()),
        ),
        ("CODEBUILD_BUILD_IMAGE", Some(image)),
        ("CODEBUILD_BUILD_SUCCEEDING", Some("1".to_string())),
        ("CODEBUILD_INITIATOR", Some(options.initiator.clone())),
        (
            "CODEBUILD_SRC_DIR",
            Some(source_dir.to_string_lossy().into_owned()),
        ),
        (
            "CODEBUILD_START_TIME",
            Some(((start_time * 1000.0) as u64).to_string()),
        ),
        ("CODEBUILD_RESOLVED_SOURCE_VERSION", git.commit.clone()),
        ("CODEBUILD_SOURCE_VERSION", git.commit.clone()),
        ("CODEBUILD_SOURCE_REPO_URL", git.remote_url.clone()),
        (
            "CODEBUILD_BATCH_BUILD_IDENTIFIER",
            options.batch_identifier.clone(),
        ),
    ];
    for (name, value) in codebuild {
        if let Some(value) = value {
            env.set(name, value);
        }
    }
    if options.executor == ExecutorKind::Docker && env.get("HOME").is_none() {
        env.set("HOME", "/root".to_string());
    }
    for var in &ctx.spec.env.variables {
        env.set(&var.name.value, var.value.value.clone());
    }
    let secret = |name: &str| {
        options
            .secret_env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    for name in ctx
        .spec
        .env
        .parameter_store
        .iter()
        .map(|v| &v.name)
        .chain(ctx.spec.env.secrets_manager.iter().map(|v| &v.name))
    {
        if let Some(value) = secret(&name.value) {
            env.set(&name.value, value);
        }
    }
    for (name, value) in options.env.iter().chain(&options.secret_env) {
        env.set(name, value.clone());
    }
    env.set(crate::executor::RUN_ID_VAR, run_id.to_string());
    env.0
}

/// An ordered set of variables.
pub(crate) struct Vars(pub Vec<(String, String)>);

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}
