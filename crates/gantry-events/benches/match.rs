//! Events matched per second: one event against N rules, through the
//! [`RuleSet`] index and by looping over the N compiled patterns.
//!
//! Run with `cargo bench -p gantry-events --bench match`. Plain `std::time`;
//! each figure is the best of three timed runs of at least 0.3 s each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gantry_events::{FlatEvent, Pattern, RuleSet};
use serde_json::{Value, json};

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
    if i % 3 != 0 {
        pattern["detail-type"] = json!([format!("Type {}", rng.next(10))]);
    }
    pattern
}

fn event() -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Type 3",
        "source": "gantry.codebuild",
        "account": "123456789012",
        "time": "2024-05-01T12:00:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:codebuild:eu-west-1:123456789012:build/project-7:1"],
        "detail": {
            "project-name": "project-7",
            "build-status": "FAILED",
            "duration": 742,
            "pipeline": "team-12-release",
            "state": "failed",
            "stage": "Build",
            "ip": "10.12.3.4",
            "attempt": 3,
            "artifact": "out/app.jar",
            "additional-information": {"phases": [{"name": "BUILD", "status": "FAILED"}, {"name": "POST_BUILD"}]}
        }
    })
}

/// Events per second for `f`, best of three runs of at least 0.3 s.
fn rate(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut best = 0.0f64;
    let mut matched = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            for _ in 0..64 {
                matched = black_box(f());
            }
            n += 64;
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    (best, matched)
}

fn main() {
    let event = event();
    println!("gantry-events match benchmark (1 event, flattened per match, one core)");
    println!(
        "{:>7}  {:>16}  {:>16}  {:>8}  {:>7}",
        "rules", "index ev/s", "one-by-one ev/s", "ratio", "matched"
    );
    for &n in &[1usize, 100, 1_000, 10_000] {
        let mut rng = Lcg(0x5eed);
        let patterns: Vec<Pattern> = (0..n)
            .map(|i| Pattern::from_value(&rule(&mut rng, i)).expect("benchmark rules are valid"))
            .collect();
        let mut builder = RuleSet::builder();
        for (i, p) in patterns.iter().enumerate() {
            builder.add(i, p);
        }
        let rules = builder.build();

        let (indexed, matched_index) = rate(|| {
            let flat = FlatEvent::new(black_box(&event));
            rules.matches_flat(&flat).len()
        });
        let (looped, matched_loop) = rate(|| {
            let flat = FlatEvent::new(black_box(&event));
            patterns.iter().filter(|p| p.matches_flat(&flat)).count()
        });
        assert_eq!(matched_index, matched_loop, "index and loop disagree");
        println!(
            "{n:>7}  {indexed:>16.0}  {looped:>16.0}  {:>7.1}x  {matched_index:>7}",
            indexed / looped
        );
    }
}
