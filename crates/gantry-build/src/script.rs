//! The shell script that runs one phase, and the files it leaves behind.
//!
//! A phase runs as ONE shell process executing a generated script, so 1,000
//! commands cost 1,000 `eval`s, not 1,000 process starts. The script:
//!
//! 1. exports the phase's environment (`export NAME='value'` lines at its
//!    top) — the process itself starts with an empty environment, so what
//!    the build sees is exactly what the runner composed;
//! 2. sends its output into the build's log FIFO (every executor, Docker
//!    included, can see the control directory at the same path);
//! 3. `eval`s each command in turn and appends `c <index> <status>` to the
//!    record file; after the first failure the remaining commands are
//!    skipped, then every `finally` command runs (`f <index> <status>`) until
//!    one fails;
//! 4. on exit — normal, `exit` in a command, or `set -e` — appends to the
//!    record a NUL, the working directory and a NUL, then the exported
//!    environment (`/proc/self/environ` of a `cat`, NUL-separated, so any
//!    value survives), which the next phase starts from — only when
//!    something reads them ([`ScriptPlan::dump`]): the `cat` is a process.
//!
//! Two files per phase (the script and its record), not five: on the file
//! systems these run on, creating an inode right after many were deleted
//! is most of what a file costs, and a trivial build is mostly its files
//! and processes (docs/benchmarks.md).
//!
//! Version 0.1 buildspecs run each command in a subshell instead, so a `cd`
//! or `export` does not reach the next command.

use std::path::{Path, PathBuf};

/// The log FIFO inside the control directory.
pub(crate) const LOG_FIFO: &str = "log.fifo";

/// Which list a command belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Commands,
    Finally,
}

/// One command's recorded exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandStatus {
    pub kind: ListKind,
    pub index: usize,
    pub code: i32,
}

/// The files of one phase attempt inside the control directory.
#[derive(Debug, Clone)]
pub(crate) struct PhaseFiles {
    /// The script, its environment's exports at the top (mode 0600: they
    /// may hold secrets).
    pub script: PathBuf,
    /// What the script leaves: status lines, then at exit the directory
    /// and the environment ([`parse_record`]).
    pub record: PathBuf,
}

impl PhaseFiles {
    /// The files for attempt `id` (unique within the build).
    pub fn new(control_dir: &Path, id: &str) -> PhaseFiles {
        PhaseFiles {
            script: control_dir.join(format!("{id}.sh")),
            record: control_dir.join(format!("{id}.out")),
        }
    }

    /// Every file, for creating and cleaning them up.
    pub fn all(&self) -> [&Path; 2] {
        [&self.script, &self.record]
    }
}

/// What a phase script runs.
pub(crate) struct ScriptPlan<'a> {
    pub files: &'a PhaseFiles,
    pub log_fifo: &'a Path,
    /// The directory to start in (the previous phase's last directory).
    pub cwd: &'a Path,
    /// Where to start when `cwd` is gone.
    pub fallback_cwd: &'a Path,
    pub commands: &'a [String],
    pub finally: &'a [String],
    /// Version 0.1: every command in a subshell of its own.
    pub isolate_commands: bool,
    /// Print `[Container] Running command ...` before each command.
    pub announce: bool,
    /// Record the directory and environment at exit (for whatever runs
    /// next); without it the script records statuses only.
    pub dump: bool,
}

/// Quotes `text` for a POSIX shell.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

/// Renders the phase script: `env` (from [`render_env`]) at its top.
pub(crate) fn render(plan: &ScriptPlan<'_>, env: &str) -> String {
    let record = quote_path(&plan.files.record);
    let mut s = String::with_capacity(
        256 + env.len()
            + plan
                .commands
                .iter()
                .map(|c| 2 * c.len() + 160)
                .sum::<usize>(),
    );
    s.push_str(env);
    s.push_str(&format!("exec >{} 2>&1\n", quote_path(plan.log_fifo)));
    if plan.dump {
        // The directory first (a builtin, always written), then the environment.
        s.push_str(&format!(
            "__gantry_dump() {{ printf '\\0%s\\0' \"$PWD\" >>{record}; command -p cat /proc/self/environ >>{record} 2>/dev/null; }}\n",
        ));
        s.push_str("trap __gantry_dump EXIT\n");
    }
    s.push_str(&format!(
        "cd {} 2>/dev/null || cd {}\n",
        quote_path(plan.cwd),
        quote_path(plan.fallback_cwd)
    ));
    for (kind, list) in [
        (ListKind::Commands, plan.commands),
        (ListKind::Finally, plan.finally),
    ] {
        let tag = match kind {
            ListKind::Commands => 'c',
            ListKind::Finally => 'f',
        };
        // `finally` runs whatever `commands` did, so the flag starts clean.
        s.push_str("__gantry_failed=0\n");
        for (index, command) in list.iter().enumerate() {
            let q = quote(command);
            let run = if plan.isolate_commands {
                format!("( eval {q} )")
            } else {
                format!("eval {q}")
            };
            let announce = if plan.announce {
                format!("printf '[Container] Running command %s\\n' {q}\n")
            } else {
                String::new()
            };
            s.push_str(&format!(
                "if [ $__gantry_failed = 0 ]; then {announce}{run}\n\
                 __gantry_rc=$?; printf '{tag} {index} %s\\n' $__gantry_rc >>{record}; \
                 [ $__gantry_rc = 0 ] || __gantry_failed=1; fi\n"
            ));
        }
    }
    s
}

/// Renders the environment file a script sources. Names a shell cannot
/// export are skipped (and returned, so the runner can warn).
pub(crate) fn render_env(env: &[(String, String)]) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut skipped = Vec::new();
    for (name, value) in env {
        if is_shell_name(name) {
            out.push_str(&format!("export {name}={}\n", quote(value)));
        } else {
            skipped.push(name.clone());
        }
    }
    (out, skipped)
}

/// True for a name a POSIX shell can `export`.
pub(crate) fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Variables the shell itself sets, which must not be carried to the next phase.
const SHELL_OWNED: [&str; 4] = ["PWD", "OLDPWD", "SHLVL", "_"];

/// Parses a NUL-separated `environ` dump into ordered pairs.
pub(crate) fn parse_environ(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=')?;
            (!name.is_empty() && !SHELL_OWNED.contains(&name))
                .then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// What a phase's record file held.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub statuses: Vec<CommandStatus>,
    /// The directory at exit; `None` when the shell never got to its exit
    /// trap (killed) or wrote an empty one.
    pub cwd: Option<String>,
    /// The exported environment at exit; empty as for `cwd`, or when its
    /// `cat` failed.
    pub environ: Vec<(String, String)>,
}

/// Parses a record: status lines, then (from the exit trap) NUL, the
/// directory, NUL, and the NUL-separated environment.
pub(crate) fn parse_record(bytes: &[u8]) -> Record {
    let (statuses, dump) = match bytes.iter().position(|&b| b == 0) {
        Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
        None => (bytes, None),
    };
    let mut record = Record {
        statuses: parse_status(&String::from_utf8_lossy(statuses)),
        ..Record::default()
    };
    if let Some(dump) = dump {
        let (cwd, environ) = match dump.iter().position(|&b| b == 0) {
            Some(at) => (&dump[..at], &dump[at + 1..]),
            None => (dump, &[][..]),
        };
        record.cwd = (!cwd.is_empty()).then(|| String::from_utf8_lossy(cwd).into_owned());
        record.environ = parse_environ(environ);
    }
    record
}

/// Parses status lines: one `c|f <index> <code>` line per command that finished.
fn parse_status(text: &str) -> Vec<CommandStatus> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let kind = match parts.next()? {
                "c" => ListKind::Commands,
                "f" => ListKind::Finally,
                _ => return None,
            };
            Some(CommandStatus {
                kind,
                index: parts.next()?.parse().ok()?,
                code: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_survives_single_quotes() {
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn environ_drops_shell_owned_names() {
        let env = parse_environ(b"A=1\0PWD=/x\0B=x=y\0\0");
        assert_eq!(
            env,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
    }

    #[test]
    fn status_lines_parse_and_garbage_is_ignored() {
        let s = parse_status("c 0 0\nc 1 2\nf 0 0\nbogus\nc x 1\n");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1],
            CommandStatus {
                kind: ListKind::Commands,
                index: 1,
                code: 2
            }
        );
    }

    #[test]
    fn only_a_script_whose_state_is_wanted_dumps_it() {
        let files = PhaseFiles::new(Path::new("/c"), "p0");
        let commands = ["true".to_string()];
        let plan = |dump| ScriptPlan {
            files: &files,
            log_fifo: Path::new("/c/log.fifo"),
            cwd: Path::new("/src"),
            fallback_cwd: Path::new("/src"),
            commands: &commands,
            finally: &[],
            isolate_commands: false,
            announce: false,
            dump,
        };
        let with = render(&plan(true), "export A='1'\n");
        assert!(with.starts_with("export A='1'\n"));
        assert!(with.contains("trap __gantry_dump EXIT") && with.contains("/proc/self/environ"));
        let without = render(&plan(false), "");
        assert!(!without.contains("trap") && !without.contains("environ"));
        assert!(without.contains("printf 'c 0 %s\\n' $__gantry_rc >>'/c/p0.out'"));
    }

    #[test]
    fn a_record_splits_into_statuses_directory_and_environment() {
        let r = parse_record(b"c 0 0\nc 1 3\n\0/src/sub dir\0A=1\0PWD=/x\0B=x=y\0");
        assert_eq!(r.statuses.len(), 2);
        assert_eq!(r.statuses[1].code, 3);
        assert_eq!(r.cwd.as_deref(), Some("/src/sub dir"));
        assert_eq!(
            r.environ,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        // Killed before its exit trap: statuses only, nothing to carry on.
        let r = parse_record(b"c 0 0\n");
        assert_eq!((r.statuses.len(), r.cwd, r.environ.len()), (1, None, 0));
        // The trap ran but `cat` could not: the directory still carries.
        let r = parse_record(b"\0/w\0");
        assert_eq!(
            (r.statuses.len(), r.cwd.as_deref(), r.environ.len()),
            (0, Some("/w"), 0)
        );
        assert_eq!(parse_record(b""), Record::default());
    }

    #[test]
    fn env_file_skips_names_a_shell_cannot_export() {
        let (text, skipped) =
            render_env(&[("OK_1".into(), "a'b".into()), ("a-b".into(), "x".into())]);
        assert_eq!(text, "export OK_1='a'\\''b'\n");
        assert_eq!(skipped, vec!["a-b".to_string()]);
    }
}
