//! `gantry bench pipeline`: the control plane's figures, measured against
//! a real server started in this process (and, for start-up and memory, as
//! a child process of this binary), with the targets of issue 3.
//!
//! - Trigger to first command: a signed GitHub-style webhook delivery is
//!   sent; the build's first command writes the time it runs
//!   (`date +%s%N`); the difference is taken over `--runs` deliveries,
//!   one at a time. The same build started with StartBuild directly (no
//!   pipeline, no source fetch) is the baseline printed beside it.
//! - Throughput: `--runs` executions of a trivial PARALLEL pipeline
//!   started at once; executions finished per second.
//! - Start-up on an existing database and idle memory of `gantry server`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::bench_server::{AKID, InProcessServer, SECRET, aws, http};

const HOOK_SECRET: &str = "bench-hook-secret";

pub(crate) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn codepipeline(addr: SocketAddr, op: &str, input: Value) -> Result<Value, String> {
    aws(addr, "codepipeline", "CodePipeline_20150709", op, &input)
}

fn codebuild(addr: SocketAddr, op: &str, input: Value) -> Result<Value, String> {
    aws(addr, "codebuild", "CodeBuild_20161006", op, &input)
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("git: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or(format!("git {args:?} failed"))
}

/// CPU time (user + system) of this process and its waited-for children.
fn cpu_seconds() -> f64 {
    let usage = |who| {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The resident set of process `pid`, in KiB (0 when unreadable).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pipeline(name: &str, url: &str, project: &str, mode: &str) -> Value {
    json!({ "pipeline": {
        "name": name,
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": { "type": "S3", "location": "gantry" },
        "pipelineType": "V2",
        "executionMode": mode,
        "stages": [
            { "name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": { "category": "Source", "owner": "AWS", "provider": "Git", "version": "1" },
                "configuration": { "RepositoryUrl": url, "BranchName": "main" },
                "outputArtifacts": [{ "name": "Src" }]
            }]},
            { "name": "Build", "actions": [{
                "name": "Run",
                "actionTypeId": { "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                "configuration": {
                    "ProjectName": project,
                    "EnvironmentVariables": json!([{ "name": "RUN", "value": "#{codepipeline.PipelineExecutionId}", "type": "PLAINTEXT" }]).to_string()
                },
                "inputArtifacts": [{ "name": "Src" }]
            }]}
        ]
    }})
}

fn project(name: &str, source: &str, marker_dir: &Path) -> Value {
    json!({
        "name": name,
        "source": { "type": source, "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - date +%s%N > \"$MARKERS/$RUN\"\n" },
        "artifacts": { "type": if source == "CODEPIPELINE" { "CODEPIPELINE" } else { "NO_ARTIFACTS" } },
        "environment": {
            "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": [{ "name": "MARKERS", "value": marker_dir.to_string_lossy(), "type": "PLAINTEXT" }]
        },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    })
}

/// Waits for `path` to hold a timestamp; returns it (ns since the epoch).
pub(crate) fn wait_marker(path: &Path) -> Result<i128, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(ns) = text.trim().parse::<i128>()
        {
            return Ok(ns);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Err(format!("{} never appeared", path.display()))
}

fn wait_execution(addr: SocketAddr, pipeline: &str, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let e = codepipeline(
            addr,
            "GetPipelineExecution",
            json!({ "pipelineName": pipeline, "pipelineExecutionId": id }),
        )?;
        match e["pipelineExecution"]["status"].as_str() {
            Some("Succeeded") => return Ok(()),
            Some("InProgress") => std::thread::sleep(Duration::from_millis(2)),
            other => return Err(format!("execution {id} ended {other:?}")),
        }
    }
    Err(format!("execution {id} did not end"))
}

/// Runs every measurement; the server gets a runtime of its own, and this
/// thread plays the client with blocking sockets.
pub(crate) fn bench_pipeline(runs: usize, steps: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let steps = if steps {
        let installed = super::bench_steps::Steps::install();
        Some(installed.ok_or("a tracing subscriber is installed already")?)
    } else {
        None
    };
    measure(dir.path(), runs, steps)
}

fn measure(
    root: &Path,
    runs: usize,
    steps: Option<super::bench_steps::Steps>,
) -> Result<(), String> {
    println!("gantry bench pipeline — {runs} runs per figure");
    println!();
    let work = root.join("work");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    git(&work, &["init", "-q", "-b", "main"])?;
    std::fs::write(work.join("README"), "bench\n").map_err(|e| e.to_string())?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "bench"])?;
    git(root, &["clone", "-q", "--bare", "work", "origin.git"])?;
    let url = format!("file://{}", root.join("origin.git").display());
    let markers = root.join("markers");
    std::fs::create_dir_all(&markers).map_err(|e| e.to_string())?;

    // The server, in this process, on its own runtime.
    let data = root.join("data");
    let server = InProcessServer::start(&data, |config| config.max_concurrent_builds = 8)?;
    let addr = server.addr;

    codebuild(
        addr,
        "CreateProject",
        project("bench-run", "CODEPIPELINE", &markers),
    )?;
    codebuild(
        addr,
        "CreateProject",
        project("bench-direct", "NO_SOURCE", &markers),
    )?;
    codepipeline(
        addr,
        "CreatePipeline",
        pipeline("bench", &url, "bench-run", "SUPERSEDED"),
    )?;
    codepipeline(
        addr,
        "CreatePipeline",
        pipeline("bench-parallel", &url, "bench-run", "PARALLEL"),
    )?;
    let hook = codepipeline(
        addr,
        "PutWebhook",
        json!({ "webhook": {
            "name": "bench-hook", "targetPipeline": "bench", "targetAction": "Checkout",
            "filters": [{ "jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}" }],
            "authentication": "GITHUB_HMAC", "authenticationConfiguration": { "SecretToken": HOOK_SECRET }
        }}),
    )?;
    let hook_url = hook["webhook"]["url"].as_str().ok_or("no webhook url")?;
    let hook_path = hook_url
        .split_once("/webhooks/")
        .map(|(_, p)| format!("/webhooks/{p}"))
        .ok_or("bad webhook url")?;
    // Each delivery announces a commit pushed just before it (outside the
    // timed window), as a real push does: the server fetches it, checks
    // it out and stores its tree every time.
    let push = |n: usize| -> Result<(String, Vec<(String, String)>), String> {
        std::fs::write(work.join("README"), format!("bench {n}\n")).map_err(|e| e.to_string())?;
        git(&work, &["commit", "-q", "-a", "-m", &format!("bench {n}")])?;
        git(
            &work,
            &[
                "push",
                "-q",
                root.join("origin.git").to_str().unwrap_or_default(),
                "main",
            ],
        )?;
        // A git host keeps its repositories packed; a bare repository that
        // only receives pushes collects loose objects, and serving a fetch
        // from 600 of them takes 60 ms instead of 13 (measured).
        if n % 20 == 19 {
            git(&root.join("origin.git"), &["gc", "-q"])?;
        }
        let head = String::from_utf8_lossy(
            &Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&work)
                .output()
                .map_err(|e| e.to_string())?
                .stdout,
        )
        .trim()
        .to_owned();
        let payload = json!({
            "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": head,
            "repository": { "full_name": "bench/app", "clone_url": url },
            "commits": [{ "id": head, "message": "bench", "author": { "name": "bench" }, "added": [], "removed": [], "modified": ["README"] }]
        })
        .to_string();
        let signature = gantry_triggers::signature::sign_sha256(HOOK_SECRET, payload.as_bytes());
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-GitHub-Event".to_owned(), "push".to_owned()),
            ("X-Hub-Signature-256".to_owned(), signature),
        ];
        Ok((payload, headers))
    };

    // 1. Webhook → first command, against StartBuild → first command.
    let mut hook_ms = Vec::new();
    for n in 0..runs {
        let (payload, headers) = push(n)?;
        let sent = now_ns();
        let (status, body) = http(addr, &hook_path, &headers, payload.as_bytes())?;
        let out: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = out["pipelineExecutionId"]
            .as_str()
            .ok_or(format!("webhook answered {status}: {out}"))?;
        let ran = wait_marker(&markers.join(id))?;
        hook_ms.push((ran - sent) as f64 / 1e6);
        wait_execution(addr, "bench", id)?;
    }
    // Only the webhooks' steps: StartBuild and the throughput runs report
    // steps of their own.
    let hook_steps = steps.as_ref().map(|s| s.take());
    let mut direct_ms = Vec::new();
    for i in 0..runs {
        let run = format!("direct-{i}");
        let sent = now_ns();
        codebuild(
            addr,
            "StartBuild",
            json!({ "projectName": "bench-direct",
            "environmentVariablesOverride": [{ "name": "RUN", "value": run, "type": "PLAINTEXT" }] }),
        )?;
        let ran = wait_marker(&markers.join(&run))?;
        direct_ms.push((ran - sent) as f64 / 1e6);
    }
    // In run order: does a pipeline's growing history slow its runs?
    let quarter = (hook_ms.len() / 4).max(1);
    let median_of = |part: &[f64]| {
        let mut part = part.to_vec();
        part.sort_by(f64::total_cmp);
        percentile(&part, 0.5)
    };
    let (early, late) = (
        median_of(&hook_ms[..quarter]),
        median_of(&hook_ms[hook_ms.len() - quarter..]),
    );
    hook_ms.sort_by(f64::total_cmp);
    direct_ms.sort_by(f64::total_cmp);
    let (hook_median, direct_median) = (percentile(&hook_ms, 0.5), percentile(&direct_ms, 0.5));
    println!("trigger to first buildspec command (embedded agent, host executor)");
    println!(
        "  webhook → pipeline → build   median {:.1} ms   p99 {:.1} ms",
        hook_median,
        percentile(&hook_ms, 0.99)
    );
    println!(
        "  StartBuild → build (baseline) median {:.1} ms   p99 {:.1} ms   pipeline overhead {:.1}x",
        direct_median,
        percentile(&direct_ms, 0.99),
        hook_median / direct_median.max(0.001)
    );
    println!("  first {quarter} webhooks median {early:.1} ms, last {quarter} median {late:.1} ms");
    if let Some(steps) = hook_steps {
        super::bench_steps::print(steps);
    }
    println!(
        "  target: median under 20 ms   {}",
        if hook_median < 20.0 { "met" } else { "NOT met" }
    );
    println!();

    // 2. Throughput of trivial pipelines started at once.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..runs {
        let out = codepipeline(
            addr,
            "StartPipelineExecution",
            json!({ "name": "bench-parallel" }),
        )?;
        ids.push(
            out["pipelineExecutionId"]
                .as_str()
                .ok_or("no id")?
                .to_owned(),
        );
    }
    for id in &ids {
        wait_execution(addr, "bench-parallel", id)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "throughput: {runs} trivial pipelines (git source + one build) started at once, 8 builds at a time"
    );
    println!(
        "  {:.1} runs/s ({:.2} s; CPU of this process and its children {:.2} s, {:.0}% of 2 cores)   target 100 runs/s   {}",
        runs as f64 / elapsed,
        elapsed,
        cpu,
        cpu / elapsed / 2.0 * 100.0,
        if runs as f64 / elapsed >= 100.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!();
    server.stop()?;

    // 3. `gantry server` as a process on the database just used.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut startups = Vec::new();
    let mut rss_kib = 0u64;
    for i in 0..5 {
        let begin = Instant::now();
        let mut child = Command::new(&exe)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("GANTRY_ADMIN_ACCESS_KEY_ID", AKID)
            .env("GANTRY_ADMIN_SECRET_ACCESS_KEY", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("listening on"));
        startups.push(begin.elapsed().as_secs_f64() * 1000.0);
        if listening.is_none() {
            let _ = child.kill();
            return Err("gantry server printed no address".into());
        }
        if i == 0 {
            std::thread::sleep(Duration::from_secs(2));
            rss_kib = self::rss_kib(child.id());
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    startups.sort_by(f64::total_cmp);
    println!("gantry server process, existing database");
    println!(
        "  start-up (spawn → listening)  median {:.1} ms   target under 200 ms   {}",
        percentile(&startups, 0.5),
        if percentile(&startups, 0.5) < 200.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  idle RSS after 2 s            {:.1} MB   target under 30 MB   {}",
        rss_kib as f64 / 1024.0,
        if rss_kib > 0 && rss_kib < 30 * 1024 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
