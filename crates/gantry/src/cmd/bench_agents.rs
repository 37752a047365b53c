//! `gantry bench agents`: remote agents' figures, with the targets of
//! issue 4, for SQLite and (given a database) PostgreSQL side by side.
//!
//! Agents are real `gantry agent` processes (this binary) on loopback; the
//! server runs in this process on a runtime of its own; this thread plays
//! the client.
//!
//! - Dispatch: StartBuild of a one-command build to that command running
//!   (it writes `date +%s%N`), one build at a time, with one idle agent
//!   holding its long poll. The embedded local agent's figure for the same
//!   build is the baseline printed beside it.
//! - Throughput: `--runs` trivial builds started at once by 8 clients, run
//!   by 1, 10 and 50 agents; builds finished per second, end to end (each
//!   is recorded, leased, run, logged and finished in the database). Beside
//!   it, the StartBuild rate of one client alone, with no agent: one client
//!   starting the builds would cap the figure there.
//! - The RSS of an idle `gantry agent`.
//! - Beside the 50 agents' figure, the machine's CPU time per build (every
//!   process: server, agents, their shells, PostgreSQL, this client) and the
//!   share of CPU time the hypervisor gave to others meanwhile (`steal`):
//!   builds per second swing with a shared host, CPU time per build much
//!   less, so it is the figure to compare between runs on different days.
//!   Of it, this process's share (the server, and the clients' threads):
//!   the figure to compare for a change to the server alone, without the
//!   agents' and shells' noise.
//!
//! Clients keep their connection open from one call to the next, as the
//! AWS SDKs do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::bench_pipeline::{now_ns, percentile, rss_kib, wait_marker};
use super::bench_server::{AKID, Connection, InProcessServer, SECRET, aws};

fn codebuild(addr: SocketAddr, op: &str, input: Value) -> Result<Value, String> {
    aws(addr, "codebuild", "CodeBuild_20161006", op, &input)
}

/// Agent processes, killed when dropped.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn spawn_agents(addr: SocketAddr, token: &str, work: &Path, n: usize) -> Result<Agents, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut agents = Agents(Vec::with_capacity(n));
    for i in 0..n {
        let child = Command::new(&exe)
            .args([
                "agent",
                "--server",
                &format!("http://{addr}"),
                "--executor",
                "host",
            ])
            .arg("--work-dir")
            .arg(work.join(format!("agent-{i}")))
            .env("GANTRY_AGENT_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting gantry agent: {e}"))?;
        agents.0.push(child);
    }
    Ok(agents)
}

fn agent_token(addr: SocketAddr) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["agent-token", "create", "--name", "bench", "--json"])
        .env("GANTRY_SERVER", format!("http://{addr}"))
        .env("GANTRY_ACCESS_KEY_ID", AKID)
        .env("GANTRY_SECRET_ACCESS_KEY", SECRET)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "gantry agent-token create: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let created: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    created["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no token in the answer".into())
}

/// A project whose one command writes the time it runs to `$MARKERS/$RUN`
/// (or does nothing, for throughput).
fn project(name: &str, markers: Option<&Path>) -> Value {
    let (command, env) = match markers {
        Some(dir) => (
            "date +%s%N > \"$MARKERS/$RUN\"",
            json!([{ "name": "MARKERS", "value": dir.to_string_lossy(), "type": "PLAINTEXT" }]),
        ),
        None => ("true", json!([])),
    };
    json!({
        "name": name,
        "source": { "type": "NO_SOURCE", "buildspec": format!("version: 0.2\nphases:\n  build:\n    commands:\n      - {command}\n") },
        "artifacts": { "type": "NO_ARTIFACTS" },
        "environment": {
            "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": env
        },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    })
}

/// StartBuild on the client's connection (kept open from call to call, as
/// an SDK client keeps its own).
fn start_build(
    client: &mut Connection,
    project: &str,
    run: Option<usize>,
) -> Result<String, String> {
    let mut input = json!({ "projectName": project });
    if let Some(run) = run {
        input["environmentVariablesOverride"] =
            json!([{ "name": "RUN", "value": run.to_string(), "type": "PLAINTEXT" }]);
    }
    let out = client.aws("codebuild", "CodeBuild_20161006", "StartBuild", &input)?;
    out["build"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "StartBuild gave no id".into())
}

/// Waits until every build in `ids` has ended, asking every `every`;
/// fails on one that did not succeed. Returns the latest `endTime` among
/// them (ms since the epoch), so a figure's end is the server's record of
/// the last build's end, not the moment this client happened to ask.
///
/// It asks about the oldest hundred still pending only, and asks again at
/// once when they have all ended: builds end roughly in the order they
/// started. Asking about every pending build each time cost the server
/// more than running them (a thousand pending builds read every 5 ms),
/// and even the oldest hundred every 5 ms was about five reads of a
/// hundred builds for each build run (ninth session of 2026-11-30): the
/// measuring client competed with what it measured.
fn wait_builds(
    addr: SocketAddr,
    ids: &[String],
    every: Duration,
    limit: Duration,
) -> Result<i64, String> {
    let deadline = Instant::now() + limit;
    let mut pending: std::collections::VecDeque<String> = ids.iter().cloned().collect();
    let mut last_end_ms = 0i64;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "{} builds did not end within {limit:?}",
                pending.len()
            ));
        }
        let oldest: Vec<String> = pending.drain(..pending.len().min(100)).collect();
        let out = codebuild(addr, "BatchGetBuilds", json!({ "ids": oldest }))?;
        let mut still = Vec::new();
        for b in out["builds"].as_array().into_iter().flatten() {
            match b["buildStatus"].as_str() {
                Some("IN_PROGRESS") => still.push(b["id"].as_str().unwrap_or_default().to_owned()),
                Some("SUCCEEDED") => {
                    let end = b["endTime"]
                        .as_f64()
                        .ok_or_else(|| format!("build {} ended with no endTime", b["id"]))?;
                    last_end_ms = last_end_ms.max((end * 1000.0).round() as i64);
                }
                other => return Err(format!("build {} ended {other:?}", b["id"])),
            }
        }
        let waiting = !still.is_empty();
        for id in still.into_iter().rev() {
            pending.push_front(id);
        }
        if waiting {
            std::thread::sleep(every);
        }
    }
    Ok(last_end_ms)
}

/// A project name no earlier run used: a PostgreSQL database outlives the
/// bench, and both of its servers share it.
fn unique(name: &str) -> String {
    format!("{name}-{}", now_ns())
}

/// StartBuild → first command, `runs` times, one at a time; (median, p99) in ms.
fn dispatch(addr: SocketAddr, markers: &Path, runs: usize) -> Result<(f64, f64), String> {
    std::fs::create_dir_all(markers).map_err(|e| e.to_string())?;
    let name = unique("dispatch");
    codebuild(addr, "CreateProject", project(&name, Some(markers)))?;
    let mut samples = Vec::with_capacity(runs);
    let mut client = Connection::new(addr);
    for run in 0..runs + 3 {
        let t0 = now_ns();
        let id = start_build(&mut client, &name, Some(run))?;
        let ran = wait_marker(&markers.join(run.to_string()))?;
        wait_builds(
            addr,
            &[id],
            Duration::from_millis(5),
            Duration::from_secs(60),
        )?;
        // The first few warm the connections and caches.
        if run >= 3 {
            samples.push((ran - t0) as f64 / 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

/// How many clients start the throughput builds at once. One client
/// starting builds one after another measures that client's round trip
/// (each StartBuild waits for its commit), not how fast the server and its
/// agents get builds done; many pipelines and webhooks at once look like
/// several clients.
const CLIENTS: usize = 8;

/// `runs` trivial builds started at once by [`CLIENTS`] clients; builds per
/// second end to end (the first start to the last build's end, as the
/// server recorded it).
fn throughput(addr: SocketAddr, project_name: &str, runs: usize) -> Result<f64, String> {
    let t0_ms = (now_ns() / 1_000_000) as i64;
    let ids = std::thread::scope(|scope| {
        let starters: Vec<_> = (0..CLIENTS)
            .map(|client| {
                scope.spawn(move || {
                    let mine = (client..runs).step_by(CLIENTS).count();
                    let mut connection = Connection::new(addr);
                    (0..mine)
                        .map(|_| start_build(&mut connection, project_name, None))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut ids = Vec::with_capacity(runs);
        for starter in starters {
            ids.extend(starter.join().map_err(|_| "a client thread panicked")??);
        }
        Ok::<_, String>(ids)
    })?;
    let last_end_ms = wait_builds(
        addr,
        &ids,
        Duration::from_millis(100),
        Duration::from_secs(600),
    )?;
    Ok(runs as f64 / ((last_end_ms - t0_ms).max(1) as f64 / 1000.0))
}

/// StartBuild calls per second from one client, one after another, on a
/// server with no agent (the builds stay queued): the ceiling of a
/// throughput figure measured with a single client.
fn start_rate(addr: SocketAddr, project_name: &str, runs: usize) -> Result<f64, String> {
    let t0 = Instant::now();
    let mut client = Connection::new(addr);
    for _ in 0..runs {
        start_build(&mut client, project_name, None)?;
    }
    Ok(runs as f64 / t0.elapsed().as_secs_f64())
}

/// The machine's CPU time so far, in clock ticks, from `/proc/stat`:
/// busy (user, nice, system, irq, softirq), stolen by the hypervisor, and
/// all of it (idle and iowait included). Zeros when unreadable.
#[derive(Clone, Copy, Default)]
struct CpuTicks {
    busy: u64,
    steal: u64,
    total: u64,
    /// This process's own (the server's, and the bench's clients').
    this_process: u64,
}

/// This process's user and system time, in clock ticks (0 when unreadable).
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count from after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after `)`.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn cpu_ticks() -> CpuTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return CpuTicks::default();
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is in user).
    CpuTicks {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        steal: at(7),
        total: (0..8).map(at).sum(),
        this_process: own_ticks(),
    }
}

/// CPU use over a figure: busy milliseconds per build and the share stolen.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    ms_per_build: f64,
    /// Of which this process's: the server (and the bench's clients).
    server_ms_per_build: f64,
    steal_percent: f64,
}

impl CpuUse {
    fn between(before: CpuTicks, after: CpuTicks, builds: usize) -> CpuUse {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let busy = after.busy.saturating_sub(before.busy) as f64;
        let steal = after.steal.saturating_sub(before.steal) as f64;
        let total = after.total.saturating_sub(before.total).max(1) as f64;
        let server = after.this_process.saturating_sub(before.this_process) as f64;
        CpuUse {
            ms_per_build: busy * 1000.0 / hz / builds.max(1) as f64,
            server_ms_per_build: server * 1000.0 / hz / builds.max(1) as f64,
            steal_percent: steal * 100.0 / total,
        }
    }
}

/// One backend's figures.
struct Figures {
    local_dispatch: (f64, f64),
    remote_dispatch: (f64, f64),
    jobs_per_second: Vec<(usize, f64)>,
    /// The machine's CPU use during the 50 agents' figure.
    cpu_50: CpuUse,
    /// StartBuild calls per second from one client with no agent.
    one_client_starts: f64,
    idle_rss_mib: f64,
    /// Proportional set size: shared pages (the executable's) divided by
    /// the processes mapping them, the fairer per-process figure.
    idle_pss_mib: f64,
}

/// A process's PSS in KiB (0 when unreadable).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn measure(database: Option<&str>, root: &Path, runs: usize) -> Result<Figures, String> {
    let database = database.map(gantry_server::Database::parse).transpose()?;
    // Both servers, one after the other, use one data directory: on
    // PostgreSQL they share the database, and so must share its key file.
    // The baseline: the same build on the embedded local agent.
    let local = {
        let db = database.clone();
        let server = InProcessServer::start(&root.join("data"), move |c| {
            c.database = db;
            c.max_concurrent_builds = 8;
        })?;
        let figure = dispatch(server.addr, &root.join("local-markers"), runs);
        server.stop()?;
        figure?
    };
    let db = database.clone();
    let server = InProcessServer::start(&root.join("data"), move |c| {
        c.database = db;
        c.local_agent = false;
    })?;
    let addr = server.addr;
    let result = (|| {
        let token = agent_token(addr)?;
        let one = spawn_agents(addr, &token, &root.join("work-1"), 1)?;
        let remote = dispatch(addr, &root.join("remote-markers"), runs)?;
        // Idle: registered, holding its long poll, nothing running.
        std::thread::sleep(Duration::from_secs(1));
        let idle_rss_mib = rss_kib(one.0[0].id()) as f64 / 1024.0;
        let idle_pss_mib = pss_kib(one.0[0].id()) as f64 / 1024.0;
        let trivial = unique("trivial");
        codebuild(addr, "CreateProject", project(&trivial, None))?;
        let mut jobs_per_second = vec![(1, throughput(addr, &trivial, runs)?)];
        drop(one);
        let mut cpu_50 = CpuUse::default();
        for n in [10usize, 50] {
            let agents = spawn_agents(addr, &token, &root.join(format!("work-{n}")), n)?;
            // Let every agent register and hold its poll.
            std::thread::sleep(Duration::from_millis(500 + 20 * n as u64));
            let before = cpu_ticks();
            jobs_per_second.push((n, throughput(addr, &trivial, runs)?));
            cpu_50 = CpuUse::between(before, cpu_ticks(), runs);
            drop(agents);
        }
        // Last, with no agent left: these builds stay queued.
        let one_client_starts = start_rate(addr, &trivial, runs)?;
        Ok::<_, String>(Figures {
            local_dispatch: local,
            remote_dispatch: remote,
            jobs_per_second,
            cpu_50,
            one_client_starts,
            idle_rss_mib,
            idle_pss_mib,
        })
    })();
    server.stop()?;
    result
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Runs every measurement for SQLite, and for PostgreSQL when `postgres`
/// names a server's database (or `GANTRY_BENCH_POSTGRES_URL` does; the
/// bench makes a database of its own there); prints a table.
pub(crate) fn bench_agents(runs: usize, postgres: Option<String>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let postgres = postgres.or_else(|| std::env::var("GANTRY_BENCH_POSTGRES_URL").ok());
    let mut backends: Vec<(&str, Option<String>)> = vec![("SQLite", None)];
    if let Some(url) = postgres {
        backends.push(("PostgreSQL", Some(url)));
    } else {
        eprintln!("(PostgreSQL skipped: pass --postgres URL or set GANTRY_BENCH_POSTGRES_URL)");
    }
    let mut results = Vec::new();
    for (name, url) in &backends {
        eprintln!("measuring {name} ...");
        let root: PathBuf = dir.path().join(name);
        let Some(server_url) = url else {
            results.push((*name, measure(None, &root, runs)?));
            continue;
        };
        // A database of its own on that server, dropped afterwards: a
        // database holds its first admin key encrypted with the key file
        // of the data directory that made it, and each run has a new one.
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let database = runtime
            .block_on(gantry_store::testing::TestDatabase::create(server_url))
            .map_err(|e| format!("creating a database on {server_url}: {e}"))?;
        let figures = measure(Some(&database.url), &root, runs);
        if let Err(e) = runtime.block_on(database.drop_database()) {
            eprintln!("(dropping the bench database {}: {e})", database.name);
        }
        results.push((*name, figures?));
    }
    println!(
        "gantry bench agents: {runs} builds per figure, {} build on {} cores",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        cores()
    );
    print!("{:<44}", "figure");
    for (name, _) in &results {
        print!("{name:>18}");
    }
    println!("   target");
    let row = |label: &str, values: Vec<String>, target: &str| {
        print!("{label:<44}");
        for v in values {
            print!("{v:>18}");
        }
        println!("   {target}");
    };
    row(
        "dispatch, remote agent: median / p99 (ms)",
        results
            .iter()
            .map(|(_, f)| format!("{:.1} / {:.1}", f.remote_dispatch.0, f.remote_dispatch.1))
            .collect(),
        "median < 20 ms",
    );
    row(
        "  baseline, embedded agent (ms)",
        results
            .iter()
            .map(|(_, f)| format!("{:.1} / {:.1}", f.local_dispatch.0, f.local_dispatch.1))
            .collect(),
        "",
    );
    for (i, n) in [1usize, 10, 50].iter().enumerate() {
        row(
            &format!(
                "builds per second, {n} agent{}",
                if *n == 1 { "" } else { "s" }
            ),
            results
                .iter()
                .map(|(_, f)| format!("{:.1}", f.jobs_per_second[i].1))
                .collect(),
            if *n == 50 { ">= 500/s" } else { "" },
        );
    }
    row(
        "  CPU per build, 50 agents (ms, all processes)",
        results
            .iter()
            .map(|(_, f)| format!("{:.2}", f.cpu_50.ms_per_build))
            .collect(),
        "",
    );
    row(
        "    of which the server's process (ms)",
        results
            .iter()
            .map(|(_, f)| format!("{:.2}", f.cpu_50.server_ms_per_build))
            .collect(),
        "",
    );
    row(
        "  CPU stolen by the host meanwhile (%)",
        results
            .iter()
            .map(|(_, f)| format!("{:.1}", f.cpu_50.steal_percent))
            .collect(),
        "",
    );
    row(
        "  StartBuild alone, one client (calls/s)",
        results
            .iter()
            .map(|(_, f)| format!("{:.1}", f.one_client_starts))
            .collect(),
        "",
    );
    row(
        "idle agent RSS (MiB)",
        results
            .iter()
            .map(|(_, f)| format!("{:.1}", f.idle_rss_mib))
            .collect(),
        "< 15 MiB",
    );
    row(
        "idle agent PSS (MiB)",
        results
            .iter()
            .map(|(_, f)| format!("{:.1}", f.idle_pss_mib))
            .collect(),
        "",
    );
    for (name, f) in &results {
        println!(
            "{name}: dispatch {}; 50 agents {}; idle RSS {}",
            verdict(f.remote_dispatch.0 < 20.0),
            verdict(f.jobs_per_second[2].1 >= 500.0),
            verdict(f.idle_rss_mib < 15.0)
        );
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
