//! Getting a build's source: an empty directory, or a fresh `git clone`.

use std::path::Path;
use std::process::Stdio;

use crate::codebuild::SourceKind;

/// Fills `dir` (which must not exist) with the build's source. Progress and
/// failures go to `log`; the error is the reason to show in the phase.
pub(crate) async fn prepare(
    kind: &SourceKind,
    version: Option<&str>,
    dir: &Path,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(), String> {
    match kind {
        SourceKind::None => {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
        }
        SourceKind::Pipeline => Err(
            "a CODEPIPELINE source is provided by a pipeline action; this build has none".into(),
        ),
        SourceKind::Git { url } => {
            log(format!("[Container] Cloning {url}"));
            let dir_text = dir.to_string_lossy().into_owned();
            git(&["clone", "--quiet", "--", url, &dir_text], None).await?;
            if let Some(version) = version {
                log(format!("[Container] Checking out {version}"));
                if git(&["checkout", "--quiet", "--detach", version], Some(dir))
                    .await
                    .is_err()
                {
                    // Not a branch, tag or commit of the clone: try it as a ref
                    // to fetch (e.g. refs/pull/1/head).
                    git(&["fetch", "--quiet", "origin", version], Some(dir)).await?;
                    git(
                        &["checkout", "--quiet", "--detach", "FETCH_HEAD"],
                        Some(dir),
                    )
                    .await?;
                }
            }
            Ok(())
        }
    }
}

async fn git(args: &[&str], cwd: Option<&Path>) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("running git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            stderr.trim()
        ))
    }
}
