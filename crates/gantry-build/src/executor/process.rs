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

/// Every process whose environment holds `GANTRY_BUILD_RUN=<run_id>`,
/// which every process of a build inherits unless it rewrote its
/// environment. This finds processes that escaped the phase's process group
/// (`setsid`, double forks) and were reparented away from us.
pub fn processes_of_build(run_id: &str) -> Vec<i32> {
    let needle = format!("{}={run_id}", super::RUN_ID_VAR);
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Kills every process of the build: the known process groups first, then
/// whatever still carries the build's id, until none is left (bounded, so a
/// process that keeps forking cannot hold us forever).
pub async fn kill_build(groups: &[i32], run_id: &str, grace: Duration) {
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
        let strays = processes_of_build(run_id);
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
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
