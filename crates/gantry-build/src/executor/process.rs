//! Process plumbing shared by the host and sandbox executors: switching user,
//! process groups, and finding every process a build left behind.

use std::ffi::{CStr, CString};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use super::ExecError;

/// A resolved Unix account.
#[derive(Debug, Clone)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub name: String,
}

/// Looks `name` up in the user database (numeric ids are accepted too).
pub fn lookup_account(name: &str) -> Result<Account, ExecError> {
    let err = |reason: &str| ExecError::User {
        user: name.to_string(),
        reason: reason.to_string(),
    };
    let cname = CString::new(name).map_err(|_| err("the name contains a NUL byte"))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live, correctly sized buffer.
    let rc = unsafe {
        match name.parse::<u32>() {
            Ok(uid) => libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            ),
            Err(_) => libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            ),
        }
    };
    if rc != 0 || result.is_null() {
        return Err(err("no such user on this machine"));
    }
    // SAFETY: getpw*_r filled `pwd` with pointers into `buf`, which is alive.
    let pw_name = unsafe { CStr::from_ptr(pwd.pw_name).to_owned() };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `groups` holds `count` entries.
    let rc = unsafe {
        libc::getgrouplist(
            pw_name.as_ptr(),
            pwd.pw_gid,
            groups.as_mut_ptr(),
            &mut count,
        )
    };
    groups.truncate(if rc < 0 { 1 } else { count.max(0) as usize });
    if rc < 0 {
        groups[0] = pwd.pw_gid;
    }
    Ok(Account {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        groups,
        name: pw_name.to_string_lossy().into_owned(),
    })
}

/// Makes `command` run as `account` (requires root), with its supplementary groups.
pub fn run_as(command: &mut std::process::Command, account: &Account) -> Result<(), ExecError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == account.uid {
        return Ok(());
    }
    if euid != 0 {
        return Err(ExecError::User {
            user: account.name.clone(),
            reason: "switching user needs gantry to run as root".into(),
        });
    }
    let (uid, gid, groups) = (account.uid, account.gid, account.groups.clone());
    // SAFETY: the closure only makes async-signal-safe system calls
    // (setgroups, setgid, setuid) on data prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Sends `signal` to the process group `pgid`; a group that is gone is fine.
pub fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Where the kernel's PID counter stood when a build's environment
/// started, so the sweep for the build's strays can skip the processes
/// that are older than the build (the agents, the server, everything else
/// on the machine), which cannot be the build's. Reading every process's
/// environment was a large part of the CPU a short build cost on a busy
/// machine (`gantry bench agents`: 50 agent processes, each sweeping all
/// the others after every build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidMark {
    /// The PID last handed out (`/proc/sys/kernel/ns_last_pid`).
    last_pid: i32,
    /// Tasks created since boot (`processes` in `/proc/stat`).
    forks: u64,
}

impl PidMark {
    /// The counter now; `None` when it cannot be read or `/proc` is not
    /// this process's PID namespace (then every sweep reads everything).
    pub fn now() -> Option<PidMark> {
        if !proc_is_our_pid_namespace() {
            return None;
        }
        Some(PidMark {
            last_pid: read_number("/proc/sys/kernel/ns_last_pid")?,
            forks: forks_since_boot()?,
        })
    }

    /// The lowest PID a process created since the mark can have, if the
    /// counter has surely not wrapped around since: `None` means any PID.
    ///
    /// PIDs are handed out upwards from the last one and wrap to 300 at
    /// `pid_max`. Every PID handed out is one task created, so fewer tasks
    /// than half the PID space since the mark, and a counter not below the
    /// mark, mean no wrap (a wrap that came all the way round would need
    /// the other half of the space to be occupied by live tasks). A task
    /// created with a chosen PID (`clone3` `set_tid`, which needs
    /// `CAP_CHECKPOINT_RESTORE`) is not covered; its process group still is.
    fn lowest_new_pid(&self, now: PidMark, pid_max: i32) -> Option<i32> {
        let created = now.forks.checked_sub(self.forks)?;
        let half = u64::try_from(pid_max.saturating_sub(300) / 2).ok()?;
        (now.last_pid >= self.last_pid && created < half).then_some(self.last_pid + 1)
    }
}

/// Whether `/proc` shows this process's PID namespace: `ns_last_pid` is
/// the reader's namespace, the PIDs under `/proc` are the mount's, and they
/// agree when `/proc/self` is our PID. Looked at once per process (neither
/// changes under a running process): two `readlink`s fewer per build.
fn proc_is_our_pid_namespace() -> bool {
    static OURS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| {
        std::fs::read_link("/proc/self")
            .ok()
            .and_then(|me| me.to_str()?.parse::<u32>().ok())
            == Some(std::process::id())
    })
}

fn read_number<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn forks_since_boot() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("processes "))?
        .trim()
        .parse()
        .ok()
}

/// The PIDs handed out since `mark`, as (lowest, highest so far), when
/// the counter surely has not wrapped round since; `None`: any PID.
fn pids_since(mark: Option<PidMark>) -> Option<(i32, i32)> {
    let mark = mark?;
    let now = PidMark::now()?;
    let pid_max = read_number::<i32>("/proc/sys/kernel/pid_max")?;
    let lowest = mark.lowest_new_pid(now, pid_max)?;
    Some((lowest, now.last_pid))
}

/// Up to this many PIDs handed out since the mark are looked up one by
/// one; more, and `/proc` is listed instead. Listing `/proc` reads every
/// process on the machine (with 50 agents and their builds, several
/// hundred entries, a tenth of an agent's CPU per short build), while a
/// short build on a busy machine sees a few dozen new PIDs, most of them
/// gone again (a failed lookup is cheap).
const LOOK_UP_AT_MOST: i32 = 512;

/// Every process whose environment holds `GANTRY_BUILD_RUN=<run_id>`,
/// which every process of a build inherits unless it rewrote its
/// environment. This finds processes that escaped the phase's process group
/// (`setsid`, double forks) and were reparented away from us. With a
/// `mark` taken before the build started anything, only processes created
/// since are read. (A thread's id may be among them: killing it kills its
/// process, as its process's id would.)
pub fn processes_of_build(run_id: &str, mark: Option<PidMark>) -> Vec<i32> {
    sweep(run_id, pids_since(mark), LOOK_UP_AT_MOST)
}

fn sweep(run_id: &str, since: Option<(i32, i32)>, look_up_at_most: i32) -> Vec<i32> {
    let needle = format!("{}={run_id}", super::RUN_ID_VAR);
    let me = std::process::id() as i32;
    let carries_the_run = |pid: &i32| {
        *pid != me
            && std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
                .unwrap_or(false)
    };
    match since {
        Some((from, to)) if to.saturating_sub(from) < look_up_at_most => {
            (from..=to).filter(carries_the_run).collect()
        }
        since => {
            let from = since.map_or(0, |(from, _)| from);
            let Ok(entries) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid >= from)
                .filter(carries_the_run)
                .collect()
        }
    }
}

/// Kills every process of the build: the known process groups first, then
/// whatever still carries the run's id (created since `mark`, when
/// given), until none is left (bounded, so a process that keeps forking
/// cannot hold us forever).
pub async fn kill_build(groups: &[i32], run_id: &str, grace: Duration, mark: Option<PidMark>) {
    for &pgid in groups {
        signal_group(pgid, libc::SIGTERM);
    }
    if !groups.is_empty() && !grace.is_zero() {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for &pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
    for _ in 0..50 {
        let strays = processes_of_build(run_id, mark);
        if strays.is_empty() {
            return;
        }
        for pid in strays {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// Converts a std exit status into a shell-style code (128+N for signal N).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Finds `program` on the `PATH` of this process.
///
/// Every phase of every build looks its shell up, and walking `PATH` is a
/// `stat` per directory: what was found is remembered (per program and
/// `PATH`) and only checked again, one `stat`, on the next lookup; a
/// program that is gone from there is looked for afresh, as a shell's
/// command hash does.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    which_on(program, std::env::var_os("PATH")?)
}

fn which_on(program: &str, path: std::ffi::OsString) -> Option<std::path::PathBuf> {
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};
    static FOUND: OnceLock<Mutex<HashMap<(String, OsString), PathBuf>>> = OnceLock::new();
    let key = (program.to_owned(), path);
    let found = FOUND.get_or_init(Default::default);
    let remembered = found
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(known) = remembered.filter(|p| is_executable_file(p)) {
        return Some(known);
    }
    let hit = std::env::split_paths(&key.1)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))?;
    found
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, hit.clone());
    Some(hit)
}

fn is_executable_file(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(last_pid: i32, forks: u64) -> PidMark {
        PidMark { last_pid, forks }
    }

    #[test]
    fn a_program_found_on_the_path_is_remembered_until_it_is_gone() {
        use std::os::unix::fs::PermissionsExt;
        let (first, second) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let path = std::env::join_paths([first.path(), second.path()]).expect("PATH");
        let program = "gantry-which-test";
        let put = |dir: &std::path::Path, mode: u32| {
            let file = dir.join(program);
            std::fs::write(&file, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            file
        };
        assert_eq!(which_on(program, path.clone()), None);
        // Not executable: not a hit.
        put(first.path(), 0o644);
        let in_second = put(second.path(), 0o755);
        assert_eq!(which_on(program, path.clone()), Some(in_second.clone()));
        // Remembered: an executable earlier on the PATH is not looked for
        // while the remembered one is still there.
        let in_first = put(first.path(), 0o755);
        assert_eq!(which_on(program, path.clone()), Some(in_second.clone()));
        // Gone: looked for afresh.
        std::fs::remove_file(&in_second).expect("rm");
        assert_eq!(which_on(program, path.clone()), Some(in_first.clone()));
        std::fs::remove_file(&in_first).expect("rm");
        assert_eq!(which_on(program, path), None);
    }

    #[test]
    fn a_sweep_skips_older_pids_only_while_the_counter_cannot_have_wrapped() {
        let start = mark(1000, 50_000);
        // Counted up, few tasks created: anything new is above the mark.
        assert_eq!(start.lowest_new_pid(mark(1200, 50_150), 32768), Some(1001));
        // The counter is below the mark: it wrapped, so read everything.
        assert_eq!(start.lowest_new_pid(mark(400, 50_150), 32768), None);
        // Above the mark again, but enough tasks were created to have gone
        // all the way round.
        assert_eq!(start.lowest_new_pid(mark(1200, 70_000), 32768), None);
        // A fork counter that went backwards is not believed.
        assert_eq!(start.lowest_new_pid(mark(1200, 10), 32768), None);
    }

    fn child_with_id(id: &str) -> std::process::Child {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .env(crate::executor::RUN_ID_VAR, id)
            .spawn()
            .expect("sleep");
        // spawn returns once exec closed the close-on-exec pipe, which is
        // before the new image's environment is laid out: until then
        // /proc/PID/environ reads empty.
        let needle = format!("{}={id}", crate::executor::RUN_ID_VAR);
        for _ in 0..200 {
            let env = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap_or_default();
            if env.split(|&b| b == 0).any(|var| var == needle.as_bytes()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    #[test]
    fn the_sweep_finds_a_process_created_after_the_mark_and_skips_older_ones() {
        let id = format!("sweep-test:{}", std::process::id());
        let older = child_with_id(&id);
        let Some(started) = PidMark::now() else {
            // /proc is another PID namespace's: sweeps read everything.
            let mut older = older;
            let _ = older.kill();
            let _ = older.wait();
            return;
        };
        let newer = child_with_id(&id);
        let (older_pid, newer_pid) = (older.id() as i32, newer.id() as i32);
        let marked = processes_of_build(&id, Some(started));
        // The same window read from a listing of /proc rather than one
        // lookup per PID.
        let listed = sweep(&id, pids_since(Some(started)), 0);
        let mut all = processes_of_build(&id, None);
        for mut child in [older, newer] {
            let _ = child.kill();
            let _ = child.wait();
        }
        all.sort();
        let mut both = vec![older_pid, newer_pid];
        both.sort();
        assert_eq!(all, both);
        assert_eq!(marked, vec![newer_pid]);
        assert_eq!(listed, vec![newer_pid]);
    }
}
