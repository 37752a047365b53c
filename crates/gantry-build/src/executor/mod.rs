//! Where build commands run: the `host`, a bubblewrap `sandbox`, or `docker`.
//!
//! Every executor does the same small job, so the runner never knows which
//! one it drives: start an environment in which the source directory and the
//! build's control directory appear at the same paths as on the host, run a
//! generated phase script there with a given shell and user, and kill
//! everything the build started when asked. The script itself loads the
//! environment variables, redirects its output into the control directory's
//! log FIFO and records each command's exit status (see `script.rs`), which is
//! why the executors stay this thin.

mod docker;
mod host;
mod process;
mod sandbox;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use async_trait::async_trait;

pub use docker::DockerExecutor;
pub use host::HostExecutor;
pub use sandbox::SandboxExecutor;

/// The executors Gantry knows, by the name users give on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Plain processes on this machine, each phase in a process group of its own.
    Host,
    /// bubblewrap: the host read-only, only the source and a private `/tmp` writable.
    Sandbox,
    /// A container from an image, through the Docker Engine API.
    Docker,
}

impl ExecutorKind {
    /// Every kind, for help texts.
    pub const ALL: [ExecutorKind; 3] = [
        ExecutorKind::Host,
        ExecutorKind::Sandbox,
        ExecutorKind::Docker,
    ];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Host => "host",
            ExecutorKind::Sandbox => "sandbox",
            ExecutorKind::Docker => "docker",
        }
    }

    /// Builds the executor of this kind. This is the one registry line a new executor adds.
    pub fn build(self) -> Box<dyn Executor> {
        match self {
            ExecutorKind::Host => Box::new(HostExecutor),
            ExecutorKind::Sandbox => Box::new(SandboxExecutor),
            ExecutorKind::Docker => Box::new(DockerExecutor),
        }
    }
}

impl FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ExecutorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown executor `{s}`; expected host, sandbox or docker"))
    }
}

/// What an environment needs to know when it is started.
#[derive(Debug, Clone)]
pub struct EnvironmentConfig {
    /// The build's source directory; visible at the same path, writable.
    pub source_dir: PathBuf,
    /// The build's control directory (scripts, status files, log FIFO);
    /// visible at the same path, writable.
    pub control_dir: PathBuf,
    /// The image for the docker executor (ignored by the others).
    pub image: Option<String>,
    /// Whether the build may use the network.
    pub network: bool,
    /// Whether the docker executor may pull an image it does not have.
    pub pull: bool,
    /// A fresh id of this run of the build: every process of the build
    /// carries it in its environment as [`RUN_ID_VAR`], which is how the
    /// executors find strays to kill.
    pub run_id: String,
}

/// The variable every process of a build carries its run's id in (set
/// after the buildspec's and the caller's variables, so neither can hide
/// a process from the stop).
pub const RUN_ID_VAR: &str = "GANTRY_BUILD_RUN";

/// The shell a phase script runs with (`env.shell`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellKind {
    /// `/bin/sh`, CodeBuild's default on Linux.
    Sh,
    /// `bash`.
    Bash,
}

impl ShellKind {
    /// The program name, resolved through the environment's `PATH`.
    pub fn program(self) -> &'static str {
        match self {
            ShellKind::Sh => "sh",
            ShellKind::Bash => "bash",
        }
    }
}

/// One phase script to run.
#[derive(Debug, Clone)]
pub struct ShellInvocation {
    /// The shell.
    pub shell: ShellKind,
    /// The script, inside the control directory.
    pub script: PathBuf,
    /// The user to run as (`run-as`); `None` runs as the executor's default user.
    pub user: Option<String>,
}

/// Errors starting or driving an environment. Command failures are not
/// errors: they are exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor cannot work on this machine (no bwrap, no Docker, ...).
    #[error("{executor} executor unavailable: {reason}")]
    Unavailable {
        /// Which executor.
        executor: &'static str,
        /// Why, and what to do about it.
        reason: String,
    },
    /// A `run-as` user that does not exist or cannot be switched to.
    #[error("run-as `{user}`: {reason}")]
    User {
        /// The user name.
        user: String,
        /// Why it failed.
        reason: String,
    },
    /// An I/O error with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The Docker Engine refused a request.
    #[error("docker: {0}")]
    Docker(String),
}

impl ExecError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ExecError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A kind of place where builds run.
#[async_trait]
pub trait Executor: Send + Sync {
    /// The executor's name (`host`, `sandbox`, `docker`).
    fn name(&self) -> &'static str;

    /// Starts an environment for one build.
    async fn start(&self, config: &EnvironmentConfig) -> Result<Box<dyn Environment>, ExecError>;

    /// Where the build's control directory is made: the temporary
    /// directory unless the executor knows a better place.
    fn control_dir_parent(&self) -> PathBuf {
        std::env::temp_dir()
    }
}

/// The control directory's parent for executors that see the host's file
/// system (host, sandbox): `/dev/shm` when it is a writable tmpfs and
/// `TMPDIR` does not say otherwise, else the temporary directory.
///
/// A build's control directory is a directory, a FIFO and two small files
/// per phase, made and removed for every build. On a disk file system that
/// is an inode allocation each, which after many deletions is slow (ext4
/// without a journal looks past every inode deleted in the last minutes:
/// half the CPU of a run of trivial builds, docs/benchmarks.md); on tmpfs
/// it is memory. Docker keeps the temporary directory: its container has
/// its own `/dev/shm`.
pub(crate) fn runtime_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if std::env::var_os("TMPDIR").is_some() {
            return std::env::temp_dir();
        }
        let shm = Path::new("/dev/shm");
        if is_writable_tmpfs(shm) {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

fn is_writable_tmpfs(dir: &Path) -> bool {
    /// `TMPFS_MAGIC` of `statfs(2)`.
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `stat` is plain data that statfs fills; `path` is a valid
    // NUL-terminated string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let tmpfs = stat.f_type as i64 == TMPFS_MAGIC;
    // SAFETY: as above.
    tmpfs && unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

/// A started build environment.
#[async_trait]
pub trait Environment: Send + Sync {
    /// The variables a build starts from before CodeBuild's and the
    /// buildspec's are added: the host's for `host` and `sandbox`, the
    /// image's for `docker`.
    fn base_env(&self) -> Vec<(String, String)>;

    /// The user id files must belong to for `user` to write them (`None`
    /// when no change of owner is needed).
    async fn resolve_owner(&self, user: Option<&str>) -> Result<Option<(u32, u32)>, ExecError>;

    /// Runs a phase script and returns its exit code (128+N when killed by
    /// signal N). Dropping the future does not stop the script: call
    /// [`Environment::kill_all`].
    async fn run(&self, invocation: &ShellInvocation) -> Result<i32, ExecError>;

    /// Kills every process the build started, including ones that left
    /// their process group. Safe to call more than once.
    async fn kill_all(&self);

    /// Ends the environment (after [`Environment::kill_all`]).
    async fn close(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file system type `/proc/mounts` gives for the mount at `dir`.
    fn mount_type(dir: &str) -> Option<String> {
        let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
        mounts.lines().rev().find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, at, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (at == dir).then(|| kind.to_owned())
        })
    }

    #[test]
    fn control_directories_go_to_a_writable_tmpfs_when_there_is_one() {
        let shm_is_tmpfs = mount_type("/dev/shm").as_deref() == Some("tmpfs");
        assert_eq!(is_writable_tmpfs(Path::new("/dev/shm")), shm_is_tmpfs);
        // The crate's own directory is on a disk, not in memory.
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(!is_writable_tmpfs(here) || mount_type("/").as_deref() == Some("tmpfs"));
        assert!(!is_writable_tmpfs(Path::new("/no/such/dir")));
        let expected = if std::env::var_os("TMPDIR").is_none() && shm_is_tmpfs {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        assert_eq!(runtime_dir(), expected);
        assert_eq!(ExecutorKind::Host.build().control_dir_parent(), expected);
        assert_eq!(
            ExecutorKind::Docker.build().control_dir_parent(),
            std::env::temp_dir()
        );
    }
}
