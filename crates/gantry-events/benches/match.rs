//! Events matched per second against 1, 100, 1,000 and 10,000 rules, on one
//! core (this program runs on one thread): through the [`RuleSet`] index, by
//! looping over the compiled patterns one by one, and with LocalStack's
//! EventBridge engine as the peer on the same rules and events.
//!
//! Run with `cargo bench -p gantry-events --bench match`. The peer runs when
//! a Python with `localstack-core` is found: `$GANTRY_BENCH_PYTHON`, else
//! `$HOME/.cache/gantry-bench-venv/bin/python` (see docs/benchmarks.md for
//! how to make it); otherwise the program says why it was not measured.
//! Plain `std::time`; each Gantry figure is the best of three timed runs of
//! at least 0.3 s each.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gantry_events::{FlatEvent, Pattern, RuleSet};
use serde_json::{Value, json};

const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// Distinct events matched in turn, so no figure rests on one lucky event.
const EVENTS: usize = 256;
/// How long the peer runs per rule count, in seconds.
const PEER_SECONDS: f64 = 2.0;

/// A small deterministic generator, so every run benchmarks the same rules.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

const SOURCES: &[&str] = &[
    "gantry.codepipeline",
    "gantry.codebuild",
    "gantry.codedeploy",
    "gantry.states",
    "com.example.orders",
];
const STATES: &[&str] = &["STARTED", "SUCCEEDED", "FAILED", "STOPPED", "IN_PROGRESS"];

/// Rules shaped like real ones: a source, usually a detail-type, and one to
/// three detail conditions drawn from every kind of operator.
fn rule(rng: &mut Lcg, i: usize) -> Value {
    let source = SOURCES[rng.next(SOURCES.len())];
    let project = format!("project-{}", rng.next(200));
    let detail = match rng.next(8) {
        0 => json!({"project-name": [project], "build-status": [STATES[rng.next(5)]]}),
        1 => json!({"project-name": [{"prefix": format!("project-{}", rng.next(20))}]}),
        2 => json!({"build-status": [{"anything-but": ["SUCCEEDED", "IN_PROGRESS"]}],
                     "duration": [{"numeric": [">", rng.next(600), "<=", 3600]}]}),
        3 => json!({"pipeline": [{"wildcard": format!("team-{}-*", rng.next(50))}]}),
        4 => {
            json!({"state": [{"equals-ignore-case": STATES[rng.next(5)]}], "stage": [{"exists": true}]})
        }
        5 => json!({"ip": [{"cidr": format!("10.{}.0.0/16", rng.next(256))}]}),
        6 => {
            json!({"$or": [{"state": [STATES[rng.next(5)]]}, {"attempt": [{"numeric": [">=", 3]}]}],
                     "project-name": [project]})
        }
        _ => {
            json!({"artifact": [{"suffix": format!(".{}", ["zip", "tar", "jar", "whl"][rng.next(4)])}],
                     "project-name": [project]})
        }
    };
    let mut pattern = json!({"source": [source], "detail": detail});
    if !i.is_multiple_of(3) {
        pattern["detail-type"] = json!([format!("Type {}", rng.next(10))]);
    }
    pattern
}

/// Events over the rules' vocabulary, so that some rules match each.
fn event(rng: &mut Lcg) -> Value {
    let state = STATES[rng.next(5)];
    json!({
        "version": "0",
        "id": format!("6a7e8feb-b491-4cf7-a9f1-{:012}", rng.next(1_000_000)),
        "detail-type": format!("Type {}", rng.next(10)),
        "source": SOURCES[rng.next(SOURCES.len())],
        "account": "123456789012",
        "time": "2024-05-01T12:00:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:codebuild:eu-west-1:123456789012:build/project-7:1"],
        "detail": {
            "project-name": format!("project-{}", rng.next(200)),
            "build-status": state,
            "duration": rng.next(4000),
            "pipeline": format!("team-{}-release", rng.next(50)),
            "state": state.to_lowercase(),
            "stage": "Build",
            "ip": format!("10.{}.3.4", rng.next(256)),
            "attempt": rng.next(5),
            "artifact": format!("out/app.{}", ["zip", "tar", "jar", "whl", "txt"][rng.next(5)]),
            "additional-information": {"phases": [{"name": "BUILD", "status": state}, {"name": "POST_BUILD"}]}
        }
    })
}

/// Nanoseconds this thread has spent on a CPU, from Linux's schedstat: on a
/// shared machine, wall time would also count time spent descheduled.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Events per second for `f(i)` over events `i = 0, 1, 2, ...` (wrapping),
/// best of three runs of at least 0.3 s; per second of this thread's CPU
/// time where Linux tells it, else of wall time.
fn rate(mut f: impl FnMut(usize) -> usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let cpu_start = cpu_ns();
        let mut n = 0usize;
        while start.elapsed() < Duration::from_millis(300) {
            for _ in 0..256 {
                black_box(f(n % EVENTS));
                n += 1;
            }
        }
        let seconds = match (cpu_start, cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => start.elapsed().as_secs_f64(),
        };
        best = best.max(n as f64 / seconds);
    }
    best
}

/// The peer's figures for one rule count.
struct Peer {
    rate: f64,
    /// Matches it found over the first `events` events.
    matched: usize,
    events: usize,
}

fn peer_python() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GANTRY_BENCH_PYTHON") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set and GANTRY_BENCH_PYTHON neither")?;
    let path = PathBuf::from(home).join(".cache/gantry-bench-venv/bin/python");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no {} and GANTRY_BENCH_PYTHON is not set",
            path.display()
        ))
    }
}

/// Runs LocalStack's engine on the same rules and events.
fn run_peer(rules: &[Value], events: &[Value]) -> Result<Vec<Peer>, String> {
    let python = peer_python()?;
    let workload = std::env::temp_dir().join(format!("gantry-bench-{}.json", std::process::id()));
    let body = json!({"rules": rules, "events": events, "sizes": SIZES});
    std::fs::write(&workload, body.to_string())
        .map_err(|e| format!("writing {}: {e}", workload.display()))?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/localstack_peer.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(&workload)
        .arg(PEER_SECONDS.to_string())
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()));
    let _ = std::fs::remove_file(&workload);
    let output = output?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!("{} failed: {last}", python.display()));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("peer said {line:?}: {e}"))?;
            let field = |k: &str| {
                v[k].as_f64()
                    .ok_or(format!("peer line without {k}: {line}"))
            };
            Ok(Peer {
                rate: field("rate")?,
                matched: field("matched")? as usize,
                events: field("events")? as usize,
            })
        })
        .collect()
}

fn main() {
    let mut rng = Lcg(0x5eed);
    let rules: Vec<Value> = (0..SIZES[SIZES.len() - 1])
        .map(|i| rule(&mut rng, i))
        .collect();
    let mut rng = Lcg(0xe7e7);
    let events: Vec<Value> = (0..EVENTS).map(|_| event(&mut rng)).collect();

    let clock = if cpu_ns().is_some() {
        "thread CPU time"
    } else {
        "wall time"
    };
    println!(
        "gantry-events match benchmark: {EVENTS} distinct events, one thread, rates per second of {clock}"
    );
    let peer = run_peer(&rules, &events);
    if let Err(why) = &peer {
        println!("peer: not measured ({why})");
    }
    println!(
        "{:>7}  {:>14}  {:>14}  {:>8}  {:>12}  {:>9}  {:>9}",
        "rules", "index ev/s", "one-by-one", "vs loop", "peer ev/s", "vs peer", "matched"
    );
    // GANTRY_BENCH_RULES=1000 measures one size only (for profiling).
    let only: Option<usize> = std::env::var("GANTRY_BENCH_RULES")
        .ok()
        .and_then(|v| v.parse().ok());
    for (row, &n) in SIZES.iter().enumerate() {
        if only.is_some_and(|only| only != n) {
            continue;
        }
        let patterns: Vec<Pattern> = rules[..n]
            .iter()
            .map(|p| Pattern::from_value(p).expect("benchmark rules are valid"))
            .collect();
        let mut builder = RuleSet::builder();
        for (i, p) in patterns.iter().enumerate() {
            builder.add(i, p);
        }
        let set = builder.build();
        let one_by_one = |e: &Value| {
            let flat = FlatEvent::new(e);
            patterns.iter().filter(|p| p.matches_flat(&flat)).count()
        };

        // Both ways must find the same matches, event by event.
        let per_event: Vec<usize> = events.iter().map(|e| set.matches(e).len()).collect();
        for (e, &count) in events.iter().zip(&per_event) {
            assert_eq!(count, one_by_one(e), "index and loop disagree on {e}");
        }
        let matched: usize = per_event.iter().sum();

        let indexed = rate(|i| set.matches(black_box(&events[i])).len());
        // GANTRY_BENCH_INDEX_ONLY=1 skips the loop (for profiling the index).
        let looped = if std::env::var_os("GANTRY_BENCH_INDEX_ONLY").is_some() {
            f64::NAN
        } else {
            rate(|i| one_by_one(black_box(&events[i])))
        };
        let (peer_rate, vs_peer, agreement) = match peer.as_ref().ok().and_then(|p| p.get(row)) {
            Some(p) => {
                let ours: usize = per_event[..p.events].iter().sum();
                assert_eq!(
                    ours, p.matched,
                    "LocalStack found {} matches over the first {} events, Gantry {ours}",
                    p.matched, p.events
                );
                (
                    format!("{:.0}", p.rate),
                    format!("{:.0}x", indexed / p.rate),
                    format!(" (peer agrees on {} events: {ours} matches)", p.events),
                )
            }
            None => ("-".into(), "-".into(), String::new()),
        };
        println!(
            "{n:>7}  {indexed:>14.0}  {looped:>14.0}  {:>7.0}x  {peer_rate:>12}  {vs_peer:>9}  {matched:>9}{agreement}",
            indexed / looped
        );
    }
}
