//! A test harness: a private source directory, a buildspec, one build on a
//! chosen executor, and everything it logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gantry_build::executor::ExecutorKind;
use gantry_build::{
    BuildEvent, BuildOptions, BuildResult, Observer, PhaseStatus, PhaseType, StopSignal,
};

/// The image the docker tests run in, built by [`ensure_test_image`].
pub const TEST_IMAGE: &str = "gantry-test/busybox:2";

/// Runs `body` on `kind` when this machine has it; a missing executor is a
/// failure when GANTRY_REQUIRE_EXECUTORS=1 (CI sets it), else a skip.
pub async fn run_on<F>(kind: ExecutorKind, body: F)
where
    F: AsyncFnOnce(Harness),
{
    if let Err(why) = available(kind) {
        if std::env::var("GANTRY_REQUIRE_EXECUTORS").as_deref() == Ok("1") {
            panic!(
                "executor {} is required but unavailable: {why}",
                kind.as_str()
            );
        }
        eprintln!("SKIP: executor {} unavailable here: {why}", kind.as_str());
        return;
    }
    body(Harness::new(kind)).await;
}

/// Declares a test that runs once per executor.
#[macro_export]
macro_rules! on_every_executor {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn host() {
                $crate::harness::run_on(gantry_build::executor::ExecutorKind::Host, $body).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sandbox() {
                $crate::harness::run_on(gantry_build::executor::ExecutorKind::Sandbox, $body).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn docker() {
                $crate::harness::run_on(gantry_build::executor::ExecutorKind::Docker, $body).await
            }
        }
    };
}

fn available(kind: ExecutorKind) -> Result<(), String> {
    match kind {
        ExecutorKind::Host => Ok(()),
        ExecutorKind::Sandbox => {
            // bwrap can lose a race with Docker's mounts (see
            // executor/sandbox.rs); a few tries tell that from "cannot".
            let ok = (0..5).any(|_| {
                std::process::Command::new("bwrap")
                    .args([
                        "--ro-bind",
                        "/",
                        "/",
                        "--unshare-pid",
                        "--dev",
                        "/dev",
                        "true",
                    ])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            });
            if ok {
                Ok(())
            } else {
                Err("bwrap is missing or cannot create namespaces".into())
            }
        }
        ExecutorKind::Docker => ensure_test_image(),
    }
}

/// Builds the test image from the host's static busybox with `docker
/// import` (no registry is reachable), once per machine.
pub fn ensure_test_image() -> Result<(), String> {
    let docker = |args: &[&str]| std::process::Command::new("docker").args(args).output();
    match docker(&["version", "--format", "{{.Server.Version}}"]) {
        Ok(out) if out.status.success() => {}
        _ => return Err("no Docker Engine answers".into()),
    }
    // Several test processes may get here at once: one builds, the others wait.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("gantry-test-image.lock"))
        .map_err(|e| e.to_string())?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file we own.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if docker(&["image", "inspect", TEST_IMAGE])
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox-static is not installed (apt-get install busybox-static)")?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let r = root.path();
    for dir in ["bin", "etc", "tmp", "root", "usr/bin", "home/builder"] {
        std::fs::create_dir_all(r.join(dir)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(busybox, r.join("bin/busybox")).map_err(|e| e.to_string())?;
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| e.to_string())?;
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(applet));
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\nbuilder:x:1000:\nnogroup:x:65534:\n",
    )
    .map_err(|e| e.to_string())?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chmod 1777 '{0}/tmp' && chown 1000:1000 '{0}/home/builder' && tar -C '{0}' -c . | docker import -c 'ENV PATH=/usr/bin:/bin' - {TEST_IMAGE} >/dev/null",
            r.display()
        ))
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err("docker import failed".into())
    }
}

/// One test's world.
pub struct Harness {
    pub kind: ExecutorKind,
    pub source: tempfile::TempDir,
}

/// What a build did.
pub struct Run {
    pub result: BuildResult,
    pub events: Vec<(Instant, Option<String>, BuildEvent)>,
}

/// Called with every log line as it arrives.
pub type LineHook = Box<dyn Fn(&str) + Send>;

/// Collects events with the time they arrived.
#[derive(Default)]
pub struct Collector(
    pub Mutex<Vec<(Instant, Option<String>, BuildEvent)>>,
    pub Mutex<Option<LineHook>>,
);

impl Observer for Collector {
    fn on_event(&self, task: Option<&str>, event: &BuildEvent) {
        if let (BuildEvent::Line(line), Some(hook)) = (event, self.1.lock().unwrap().as_ref()) {
            hook(line);
        }
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), task.map(str::to_string), event.clone()));
    }
}

impl Harness {
    pub fn new(kind: ExecutorKind) -> Harness {
        // Sources under /tmp would be hidden by the sandbox's private /tmp
        // if not bound explicitly; the runner binds them, and this checks it.
        let source = tempfile::Builder::new()
            .prefix("gantry-src-")
            .tempdir()
            .expect("temp dir");
        // run-as tests switch to other users, who must reach the source.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(source.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        Harness { kind, source }
    }

    pub fn path(&self) -> &Path {
        self.source.path()
    }

    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
        path
    }

    pub fn options(&self) -> BuildOptions {
        let mut options = BuildOptions::new(self.path(), self.kind);
        options.image = Some(TEST_IMAGE.to_string());
        // Tests never reach for a registry: only locally built images exist.
        options.pull = false;
        options
    }

    pub async fn run(&self, yaml: &str) -> Run {
        self.run_with(yaml, self.options()).await
    }

    pub async fn run_with(&self, yaml: &str, options: BuildOptions) -> Run {
        self.run_observed(
            yaml,
            options,
            Arc::new(Collector::default()),
            StopSignal::never(),
        )
        .await
    }

    pub async fn run_observed(
        &self,
        yaml: &str,
        options: BuildOptions,
        collector: Arc<Collector>,
        stop: StopSignal,
    ) -> Run {
        let spec = gantry_spec::buildspec::parse(yaml)
            .unwrap_or_else(|d| panic!("test buildspec invalid: {d:?}"));
        let result = gantry_build::run_build(&spec, &options, collector.clone(), stop)
            .await
            .expect("build runs");
        let events = std::mem::take(&mut *collector.0.lock().unwrap());
        Run { result, events }
    }
}

impl Run {
    pub fn status(&self) -> PhaseStatus {
        self.result.build_status
    }

    pub fn phase(&self, phase: PhaseType) -> Option<PhaseStatus> {
        self.result.phase(phase).and_then(|p| p.phase_status)
    }

    /// The phases that ran, in order, as CodeBuild names them.
    pub fn phase_names(&self) -> Vec<&'static str> {
        self.result
            .phases
            .iter()
            .map(|p| p.phase_type.as_str())
            .collect()
    }

    pub fn lines(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, _, e)| match e {
                BuildEvent::Line(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    /// The lines the build's commands printed (not the runner's own).
    pub fn output(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| !l.starts_with("[Container]"))
            .collect()
    }

    pub fn exported(&self, name: &str) -> Option<String> {
        self.result
            .exported_environment_variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.clone())
    }

    pub fn log(&self) -> String {
        self.lines().join("\n")
    }
}
