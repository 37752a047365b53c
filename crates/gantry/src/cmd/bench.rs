//! `gantry bench build`: the build runner's figures, each printed next to a
//! baseline measured in the same run, with the ratio and the target.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use gantry_build::executor::ExecutorKind;
use gantry_build::mask::SecretMasker;
use gantry_build::{BuildEvent, BuildOptions, NullObserver, Observer, PhaseStatus, StopSignal};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure: `build` (the build runner), `pipeline` (the
    /// server: webhook to first command, runs per second, start-up, memory)
    /// `states` (state transitions in memory and durable, Map fan-out,
    /// moto as the peer) or `agents` (remote dispatch, builds per second
    /// with 1, 10 and 50 agents, idle agent memory; SQLite and PostgreSQL).
    #[arg(default_value = "build", value_parser = ["build", "pipeline", "states", "agents"])]
    what: String,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value = "7")]
    runs: usize,
    /// `agents`: a PostgreSQL database to measure beside SQLite
    /// (default `GANTRY_BENCH_POSTGRES_URL`).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// `pipeline`: also print the median time of each step between a
    /// webhook and the build's start (the server's timing events).
    #[arg(long)]
    steps: bool,
}

pub fn run(args: BenchArgs) -> ExitCode {
    if args.what == "states" {
        return match super::bench_states::bench_states(args.runs.max(1)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gantry bench: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.what == "agents" {
        return match super::bench_agents::bench_agents(args.runs.max(2), args.postgres) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gantry bench: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.what == "pipeline" {
        return match super::bench_pipeline::bench_pipeline(args.runs.max(2), args.steps) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gantry bench: {e}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match crate::output::runtime("gantry bench") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(bench_build(args.runs.max(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gantry bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn bench_build(runs: usize) -> Result<(), String> {
    println!("gantry bench build — {runs} runs per figure, medians");
    println!();
    let source = tempfile::tempdir().map_err(|e| e.to_string())?;

    // 1. 1,000 trivial commands in one phase against the same commands in a bare sh script.
    let commands: Vec<String> = (0..1000).map(|i| format!("X={i}")).collect();
    let script = source.path().join("bare.sh");
    std::fs::write(&script, commands.join("\n") + "\n").map_err(|e| e.to_string())?;
    let mut bare = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = std::process::Command::new("sh")
            .arg(&script)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("the bare sh script failed".into());
        }
        bare.push(start.elapsed());
    }
    let yaml = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n{}",
        commands
            .iter()
            .map(|c| format!("      - {c}\n"))
            .collect::<String>()
    );
    let spec = gantry_spec::buildspec::parse(&yaml).map_err(|d| format!("{d:?}"))?;
    let empty = gantry_spec::buildspec::parse("version: 0.2\nphases: {}\n")
        .map_err(|d| format!("{d:?}"))?;
    let options = BuildOptions::new(source.path(), ExecutorKind::Host);
    let one_phase = |spec: gantry_spec::buildspec::Buildspec, options: BuildOptions| async move {
        let start = Instant::now();
        let result =
            gantry_build::run_build(&spec, &options, Arc::new(NullObserver), StopSignal::never())
                .await
                .map_err(|e| e.to_string())?;
        if result.build_status != PhaseStatus::Succeeded {
            return Err(format!("benchmark build {}", result.build_status.as_str()));
        }
        Ok::<Duration, String>(start.elapsed())
    };
    let mut gantry_1000 = Vec::new();
    let mut gantry_empty = Vec::new();
    for _ in 0..runs {
        gantry_1000.push(one_phase(spec.clone(), options.clone()).await?);
        gantry_empty.push(one_phase(empty.clone(), options.clone()).await?);
    }
    let (bare, g1000, gempty) = (median(bare), median(gantry_1000), median(gantry_empty));
    let limit = bare * 2 + Duration::from_millis(50);
    println!("1,000 trivial commands, one phase (host executor)");
    println!("  bare sh script           {}", ms(bare));
    println!(
        "  gantry build (whole)     {}   ratio {:.2}x",
        ms(g1000),
        g1000.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  gantry, less empty build {}   per command {:.1} µs",
        ms(g1000.saturating_sub(gempty)),
        g1000.saturating_sub(gempty).as_secs_f64() * 1e6 / 1000.0
    );
    println!(
        "  target: within 2x sh + 50 ms = {}   {}",
        ms(limit),
        verdict(g1000 <= limit)
    );
    println!();

    // 2. Sandbox and docker start cost against the host's: an empty buildspec.
    println!("empty buildspec, in-process (start + teardown cost per executor)");
    println!("  host                     {}", ms(gempty));
    for kind in [ExecutorKind::Sandbox, ExecutorKind::Docker] {
        let mut options = BuildOptions::new(source.path(), kind);
        options.image = std::env::var("GANTRY_BENCH_IMAGE").ok();
        if kind == ExecutorKind::Docker && options.image.is_none() {
            println!(
                "  docker                   skipped (set GANTRY_BENCH_IMAGE to an image present locally)"
            );
            continue;
        }
        let mut samples = Vec::new();
        for _ in 0..runs {
            match one_phase(empty.clone(), options.clone()).await {
                Ok(d) => samples.push(d),
                Err(e) => {
                    println!("  {:<24} unavailable: {e}", kind.as_str());
                    break;
                }
            }
        }
        if !samples.is_empty() {
            let d = median(samples);
            println!(
                "  {:<24} {}   ratio {:.1}x host",
                kind.as_str(),
                ms(d),
                d.as_secs_f64() / gempty.as_secs_f64()
            );
        }
    }
    println!();

    // 3. `gantry build` as a process on an empty buildspec.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::write(
        source.path().join("buildspec.yml"),
        "version: 0.2\nphases: {}\n",
    )
    .map_err(|e| e.to_string())?;
    let mut cli = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["build", "--source"])
            .arg(source.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "gantry build failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cli.push(start.elapsed());
    }
    let mut true_runs = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let _ = std::process::Command::new("true").status();
        true_runs.push(start.elapsed());
    }
    let (cli, baseline) = (median(cli), median(true_runs));
    println!("`gantry build` process, empty buildspec, host executor");
    println!("  /bin/true (process start) {}", ms(baseline));
    println!(
        "  gantry build              {}   target < 50 ms   {}",
        ms(cli),
        verdict(cli < Duration::from_millis(50))
    );
    println!();

    // 4. Masking throughput.
    let secrets: Vec<String> = (0..10)
        .map(|i| format!("secret-value-{i:02}-{}", "x".repeat(i * 3)))
        .collect();
    let masker = SecretMasker::new(secrets.iter().map(|s| s.as_bytes()));
    let line = b"2026-11-22T10:00:00Z INFO compiling crate foo v1.2.3 (/src/foo) with features [a, b, c]\n";
    let mut text = Vec::with_capacity(64 << 20);
    let mut i = 0;
    while text.len() < 64 << 20 {
        text.extend_from_slice(line);
        if i % 97 == 0 {
            text.extend_from_slice(secrets[i % secrets.len()].as_bytes());
            text.push(b'\n');
        }
        i += 1;
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut stream = masker.stream();
        let mut out = Vec::with_capacity(text.len());
        for chunk in text.chunks(64 * 1024) {
            stream.push(chunk, &mut out);
        }
        stream.finish(&mut out);
        best = best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(&out);
    }
    let mb = text.len() as f64 / 1e6;
    let mut copy_best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let copy: Vec<u8> = std::hint::black_box(text.clone());
        copy_best = copy_best.min(start.elapsed().as_secs_f64());
        drop(copy);
    }
    println!("secret masking, 10 secrets, 64 KiB chunks, {mb:.0} MB of log");
    println!("  memcpy baseline          {:.0} MB/s", mb / copy_best);
    println!(
        "  masking                  {:.0} MB/s   target >= 200 MB/s   {}",
        mb / best,
        verdict(mb / best >= 200.0)
    );
    println!();

    // 5. Log latency: lines carry the time they were written; the observer
    // compares with the time it receives them.
    let latency = Arc::new(LatencyObserver::default());
    let yaml = "version: 0.2\nphases:\n  build:\n    commands:\n      - for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo \"t=$(date +%s%N)\"; sleep 0.05; done\n      - for i in 1 2 3 4 5; do printf \"p=$(date +%s%N)\"; sleep 0.3; echo; done\n";
    let spec = gantry_spec::buildspec::parse(yaml).map_err(|d| format!("{d:?}"))?;
    let observer: Arc<dyn Observer> = latency.clone();
    gantry_build::run_build(&spec, &options, observer, StopSignal::never())
        .await
        .map_err(|e| e.to_string())?;
    let samples = latency.samples.lock().map_err(|e| e.to_string())?.clone();
    let pick = |kind: char| {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        (
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN),
            v.len(),
        )
    };
    let (line_median, line_max, n) = pick('t');
    let (partial_median, partial_max, m) = pick('p');
    println!("log latency, written to received");
    println!(
        "  full lines ({n})          median {line_median:.1} ms, max {line_max:.1} ms   target < 50 ms   {}",
        verdict(line_max < 50.0)
    );
    println!(
        "  partial lines ({m})       median {partial_median:.1} ms, max {partial_max:.1} ms   target < 50 ms   {}",
        verdict(partial_max < 50.0)
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "MISSED" }
}

#[derive(Default)]
struct LatencyObserver {
    samples: Mutex<Vec<(char, f64)>>,
}

impl Observer for LatencyObserver {
    fn on_event(&self, _task: Option<&str>, event: &BuildEvent) {
        let BuildEvent::Line(line) = event else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for kind in ['t', 'p'] {
            if let Some(written) = line
                .strip_prefix(&format!("{kind}="))
                .and_then(|t| t.trim().parse::<u128>().ok())
            {
                let delay = now.saturating_sub(written) as f64 / 1e6;
                if let Ok(mut samples) = self.samples.lock() {
                    samples.push((kind, delay));
                }
            }
        }
    }
}
