//! Servers, agents and PostgreSQL as separate hosts: Docker containers on a
//! private network of their own, which a test can kill, restart, or cut off
//! and reconnect — the failures a real deployment meets.
//!
//! No registry is reachable, so the images are made here with `docker
//! import` from a root filesystem assembled from the host: a static busybox
//! for the shell, the C libraries the `gantry` binary links against, and
//! PostgreSQL's own binaries and libraries. The `gantry` binary under test is
//! bind-mounted read-only, so a rebuild needs no new image.
//!
//! Everything a test creates carries a random suffix and is removed when
//! its [`Network`] drops, even after a failed assertion.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The image gantry containers run: busybox and the host's glibc.
pub const NODE_IMAGE: &str = "gantry-test-node:1";
/// The image PostgreSQL containers run: the host's PostgreSQL 15.
pub const POSTGRES_IMAGE: &str = "gantry-test-postgres:15-2";
/// Where PostgreSQL lives on the host and in its image.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_LIB: &str = "/usr/lib/postgresql/15/lib";
const PG_SHARE: &str = "/usr/share/postgresql/15";

/// `docker ARGS`, its output; panics when docker cannot be run at all.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?}: {e}"))
}

/// `docker ARGS`, which must succeed; its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether the cross-host tests can run: a Docker Engine answers. Without
/// one they print SKIPPED, unless `GANTRY_REQUIRE_EXECUTORS=1` (CI), when
/// they fail instead.
pub fn available() -> bool {
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !answers {
        assert!(
            std::env::var("GANTRY_REQUIRE_EXECUTORS").as_deref() != Ok("1"),
            "GANTRY_REQUIRE_EXECUTORS=1 but no Docker Engine answers"
        );
        eprintln!("SKIPPED: no Docker Engine answers; the cross-host fault tests need one");
    }
    answers
}

/// Serializes image builds across test processes (nextest runs each test
/// in its own process).
fn image_lock() -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("gantry-cluster-images.lock"))
        .expect("image lock file");
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; released when it closes.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    lock
}

fn image_exists(name: &str) -> bool {
    docker(&["image", "inspect", name]).status.success()
}

/// The shared libraries `binaries` load, from `ldd`, with the loader.
fn libraries_of(binaries: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut libs = BTreeSet::new();
    for binary in binaries {
        let out = Command::new("ldd").arg(binary).output().expect("ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)".
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
        }
    }
    libs
}

/// Copies `path` to the same place under `root`, following symlinks.
fn copy_into(root: &Path, path: &Path) {
    let dest = root.join(path.strip_prefix("/").expect("absolute path"));
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::copy(path, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
}

/// A root filesystem with busybox as `/bin/sh` and its applets, and
/// `/etc/passwd` naming root, postgres (999) and nobody.
fn base_root() -> tempfile::TempDir {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (apt-get install busybox-static)");
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    for dir in [
        "bin",
        "etc",
        "tmp",
        "root",
        "usr/bin",
        "usr/local/bin",
        "data",
    ] {
        std::fs::create_dir_all(r.join(dir)).expect("mkdir");
    }
    std::fs::copy(busybox, r.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(applet));
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:postgres:/data:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\npostgres:x:999:\nnogroup:x:65534:\n",
    )
    .expect("group");
    std::fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n").expect("hosts");
    root
}

/// `tar` of `root` into `docker import` as `image`.
fn import(root: &Path, image: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chmod 1777 '{0}/tmp' && chown 999:999 '{0}/data' && tar -C '{0}' -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - {image} >/dev/null",
            root.display()
        ))
        .status()
        .expect("sh");
    assert!(status.success(), "docker import of {image} failed");
}

/// Builds [`NODE_IMAGE`] once per machine.
pub fn ensure_node_image(gantry: &Path) {
    let _lock = image_lock();
    if image_exists(NODE_IMAGE) {
        return;
    }
    let root = base_root();
    for lib in libraries_of(&[gantry.to_path_buf()]) {
        copy_into(root.path(), &lib);
    }
    import(root.path(), NODE_IMAGE);
}

/// Builds [`POSTGRES_IMAGE`] once per machine from the host's PostgreSQL 15
/// (Debian's `postgresql-15`).
pub fn ensure_postgres_image() {
    let _lock = image_lock();
    if image_exists(POSTGRES_IMAGE) {
        return;
    }
    assert!(
        Path::new(PG_BIN).join("postgres").exists(),
        "PostgreSQL 15 is installed (apt-get install postgresql-15)"
    );
    let root = base_root();
    let r = root.path();
    let mut binaries = Vec::new();
    for name in ["postgres", "initdb", "pg_ctl", "pg_isready"] {
        let path = Path::new(PG_BIN).join(name);
        copy_into(r, &path);
        binaries.push(path);
    }
    // plpgsql and the encoding conversions initdb loads.
    for entry in std::fs::read_dir(PG_LIB).expect("PostgreSQL's lib directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "so") {
            copy_into(r, &path);
            binaries.push(path);
        }
    }
    for lib in libraries_of(&binaries) {
        copy_into(r, &lib);
    }
    // Debian's PostgreSQL reads time zones from the system's tzdata;
    // without it a client asking for TimeZone=UTC is refused.
    let zoneinfo = r.join("usr/share");
    std::fs::create_dir_all(&zoneinfo).expect("mkdir usr/share");
    let status = Command::new("cp")
        .args(["-a", "/usr/share/zoneinfo"])
        .arg(&zoneinfo)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "copying /usr/share/zoneinfo (apt-get install tzdata)"
    );
    let share_parent = r.join("usr/share/postgresql");
    std::fs::create_dir_all(&share_parent).expect("mkdir share");
    let status = Command::new("cp")
        .args(["-a", PG_SHARE])
        .arg(&share_parent)
        .status()
        .expect("cp");
    assert!(status.success(), "copying {PG_SHARE}");
    import(r, POSTGRES_IMAGE);
}

/// A private network and everything started on it; removed on drop.
pub struct Network {
    pub name: String,
    containers: std::sync::Mutex<Vec<String>>,
}

impl Network {
    /// A new internal network (no route out of it; the host still reaches
    /// every container's address through the bridge).
    pub fn create(label: &str) -> Network {
        let name = format!("gantry-{label}-{:08x}", rand_u32());
        docker_ok(&["network", "create", "--internal", &name]);
        Network {
            name,
            containers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts a detached container `name` (suffixed with this network's
    /// id) from `image` running `command`.
    pub fn run(&self, name: &str, image: &str, extra: &[&str], command: &[&str]) -> Container {
        let full = format!("{}-{name}", self.name);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &full,
            "--hostname",
            name,
            "--network",
            &self.name,
            "--network-alias",
            name,
        ];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(command);
        docker_ok(&args);
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(full.clone());
        let container = Container {
            name: full,
            network: self.name.clone(),
        };
        container.wait_for_address();
        container
    }

    /// A PostgreSQL 15 server named `name` on port 5432, trusting every
    /// host of the network, superuser `gantry`, database `postgres`
    /// ([`postgres_url`]); its data survives restarts of the container.
    pub fn postgres(&self, name: &str) -> Container {
        ensure_postgres_image();
        let script = format!(
            "[ -f /data/pg/PG_VERSION ] || {{ {PG_BIN}/initdb -D /data/pg -A trust -U gantry -E UTF8 --no-locale >/data/initdb.log 2>&1 && echo 'host all all 0.0.0.0/0 trust' >> /data/pg/pg_hba.conf; }}; exec {PG_BIN}/postgres -D /data/pg -c listen_addresses='*' -k /tmp -c fsync=on"
        );
        let container = self.run(
            name,
            POSTGRES_IMAGE,
            &["--user", "999:999"],
            &["sh", "-c", &script],
        );
        container.wait_until(
            Duration::from_secs(60),
            "PostgreSQL accepts connections",
            || {
                container
                    .exec(&[
                        &format!("{PG_BIN}/pg_isready"),
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "gantry",
                        "-q",
                    ])
                    .status
                    .success()
            },
        );
        container
    }

    /// A `gantry ARGS...` container named `name` running the binary under
    /// test, with `env` set.
    pub fn gantry(&self, name: &str, env: &[(&str, &str)], args: &[&str]) -> Container {
        self.gantry_with(name, env, &[], args)
    }

    /// Like [`Network::gantry`], with more `docker run` options (`-v`...).
    pub fn gantry_with(
        &self,
        name: &str,
        env: &[(&str, &str)],
        options: &[&str],
        args: &[&str],
    ) -> Container {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_gantry"));
        ensure_node_image(&binary);
        let mount = format!("{}:/usr/local/bin/gantry:ro", binary.display());
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut extra = vec!["-v", mount.as_str()];
        extra.extend_from_slice(options);
        for e in &env {
            extra.push("-e");
            extra.push(e);
        }
        let mut command = vec!["gantry"];
        command.extend_from_slice(args);
        self.run(name, NODE_IMAGE, &extra, &command)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let containers =
            std::mem::take(&mut *self.containers.lock().unwrap_or_else(|e| e.into_inner()));
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// The URL of the database a [`Network::postgres`] container serves, as
/// the other containers of its network reach it.
pub fn postgres_url(name: &str) -> String {
    format!("postgres://gantry@{name}:5432/postgres")
}

/// One container on a [`Network`].
pub struct Container {
    pub name: String,
    network: String,
}

impl Container {
    /// Its address on the network (the host reaches it there too).
    pub fn ip(&self) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.network
        );
        docker_ok(&["inspect", "-f", &format, &self.name])
    }

    fn wait_for_address(&self) {
        self.wait_until(
            Duration::from_secs(30),
            "the container has an address",
            || {
                let format = format!(
                    "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                    self.network
                );
                let out = docker(&["inspect", "-f", &format, &self.name]);
                out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
            },
        );
    }

    /// Polls `ready` until it holds; panics with the container's logs
    /// after `limit`.
    pub fn wait_until(&self, limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ready() {
            if Instant::now() > deadline {
                panic!(
                    "{}: {what}: not within {limit:?}; logs:\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker exec` in it.
    pub fn exec(&self, command: &[&str]) -> Output {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(command);
        docker(&args)
    }

    /// Its stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// SIGKILL: the process dies at once, as in a host crash.
    pub fn kill(&self) {
        docker_ok(&["kill", "-s", "KILL", &self.name]);
    }

    /// SIGTERM to its main process.
    pub fn terminate(&self) {
        docker_ok(&["kill", "-s", "TERM", &self.name]);
    }

    /// Starts it again after a kill or an exit (same filesystem, same name).
    pub fn start(&self) {
        docker_ok(&["start", &self.name]);
        self.wait_for_address();
    }

    /// Waits for it to exit; its exit code.
    pub fn wait_exit(&self) -> i32 {
        docker_ok(&["wait", &self.name]).parse().unwrap_or(-1)
    }

    /// Cuts it off the network: its connections stall, as when a cable is
    /// pulled (packets are dropped, not refused).
    pub fn disconnect(&self) {
        docker_ok(&["network", "disconnect", &self.network, &self.name]);
    }

    /// Reconnects it after [`Container::disconnect`].
    pub fn connect(&self) {
        docker_ok(&["network", "connect", &self.network, &self.name]);
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}
