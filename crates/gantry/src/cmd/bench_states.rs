//! `gantry bench states`: the Step Functions figures of issue 5, in one run.
//!
//! - In memory: the interpreter alone (`gantry_states::run_machine`, one
//!   thread), on a Pass/Choice loop and on a Map of 10,000 items.
//! - Durable: the same definitions as STANDARD state machines on a server
//!   in this process (SQLite, every transition journalled before it acts);
//!   several loop executions at once, and the Map.
//! - The peer: the same definitions run by moto's Step Functions interpreter
//!   (PyPI `moto`, `mock_aws(config={"stepfunctions": {"execute_state_machine":
//!   True}})`), when a Python with moto is found: `GANTRY_BENCH_MOTO_PYTHON`,
//!   or `~/.cache/gantry-moto-venv/bin/python3`.
//!
//! A transition is a state entered (`*StateEntered` in the history), counted
//! the same way for every engine; the outputs are compared, so the engines
//! are known to have done the same work.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::bench_server::{InProcessServer, aws_json};

/// A Pass/Choice loop that counts `$.i` up to `$.n`: 2 transitions a turn.
fn loop_definition() -> Value {
    json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Parameters": {"i": 0, "n.$": "$.n"}, "Next": "Step"},
        "Step": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)", "n.$": "$.n"}, "Next": "More?"},
        "More?": {"Type": "Choice",
                  "Choices": [{"Variable": "$.i", "NumericLessThanPath": "$.n", "Next": "Step"}],
                  "Default": "Done"},
        "Done": {"Type": "Succeed"}}})
}

/// A Map over `$.items`, one Pass per item.
fn map_definition() -> Value {
    json!({"StartAt": "Fan", "States": {
        "Fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Touch",
                                  "States": {"Touch": {"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}}},
                "ResultSelector": {"count.$": "States.ArrayLength($)"},
                "End": true}}})
}

fn loop_input(turns: u64) -> Value {
    json!({ "n": turns })
}

fn map_input(items: usize) -> Value {
    json!({ "items": (0..items).collect::<Vec<_>>() })
}

/// How an in-memory run is limited: Standard (25,000 history events) or
/// Express (none).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Standard,
    Express,
}

/// One in-memory run: (transitions, output, seconds).
fn in_memory(definition: &Value, input: &Value, kind: Kind) -> Result<(usize, Value, f64), String> {
    let machine = Arc::new(
        gantry_states::parse_definition(definition).map_err(|e| format!("definition: {e}"))?,
    );
    let mut execution = gantry_states::Execution::new(machine);
    if kind == Kind::Express {
        execution = execution.without_history_limit();
    }
    let begin = Instant::now();
    let run = gantry_states::run_execution(
        execution,
        input.clone(),
        &gantry_states::FixedClock(1_704_067_200_000),
        &mut gantry_states::SeededRandom(42),
        |resource, _| Err(gantry_states::TaskError::new("Bench.NoTasks", resource)),
    );
    let seconds = begin.elapsed().as_secs_f64();
    let gantry_states::Outcome::Succeeded { output } = run.outcome else {
        return Err(format!("the in-memory run ended {:?}", run.outcome));
    };
    let transitions = run
        .execution
        .history()
        .iter()
        .filter(|e| e.kind.ends_with("StateEntered"))
        .count();
    Ok((transitions, output, seconds))
}

/// The best of `runs` in-memory runs.
fn best_in_memory(
    definition: &Value,
    input: &Value,
    kind: Kind,
    runs: usize,
) -> Result<(usize, Value, f64), String> {
    let mut best: Option<(usize, Value, f64)> = None;
    for _ in 0..runs.max(1) {
        let run = in_memory(definition, input, kind)?;
        if best.as_ref().is_none_or(|b| run.2 < b.2) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| "no run".into())
}

fn sfn(addr: SocketAddr, op: &str, input: Value) -> Result<Value, String> {
    aws_json(
        addr,
        "states",
        "AWSStepFunctions",
        "application/x-amz-json-1.0",
        op,
        &input,
    )
}

/// Starts `inputs` executions of `machine` at once and waits for all;
/// returns (outputs, seconds from the first start to the last end).
fn durable(addr: SocketAddr, machine: &str, inputs: &[Value]) -> Result<(Vec<Value>, f64), String> {
    let begin = Instant::now();
    let mut arns = Vec::new();
    for input in inputs {
        let started = sfn(
            addr,
            "StartExecution",
            json!({"stateMachineArn": machine, "input": input.to_string()}),
        )?;
        arns.push(
            started["executionArn"]
                .as_str()
                .ok_or("no executionArn")?
                .to_owned(),
        );
    }
    let mut outputs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    for arn in &arns {
        loop {
            let d = sfn(addr, "DescribeExecution", json!({"executionArn": arn}))?;
            match d["status"].as_str() {
                Some("RUNNING") if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Some("SUCCEEDED") => {
                    let text = d["output"].as_str().unwrap_or("null");
                    outputs.push(serde_json::from_str(text).map_err(|e| e.to_string())?);
                    break;
                }
                other => return Err(format!("execution {arn} ended {other:?}: {d}")),
            }
        }
    }
    Ok((outputs, begin.elapsed().as_secs_f64()))
}

fn create(addr: SocketAddr, name: &str, definition: &Value, kind: Kind) -> Result<String, String> {
    let kind = if kind == Kind::Express {
        "EXPRESS"
    } else {
        "STANDARD"
    };
    let out = sfn(
        addr,
        "CreateStateMachine",
        json!({"name": name, "definition": definition.to_string(), "type": kind,
               "roleArn": "arn:aws:iam::000000000000:role/bench"}),
    )?;
    out["stateMachineArn"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no stateMachineArn".into())
}

fn rate(transitions: usize, seconds: f64) -> f64 {
    transitions as f64 / seconds.max(1e-9)
}

fn thousands(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

const PEER_SCRIPT: &str = r#"
import json, sys, time
import boto3
from moto import mock_aws

jobs = json.load(open(sys.argv[1]))
results = {}
with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
    client = boto3.client("stepfunctions", region_name="us-east-1")
    for job in jobs:
        arn = client.create_state_machine(name=job["name"], definition=json.dumps(job["definition"]),
                                          roleArn="arn:aws:iam::123456789012:role/bench")["stateMachineArn"]
        begin = time.perf_counter()
        ex = client.start_execution(stateMachineArn=arn, input=json.dumps(job["input"]))["executionArn"]
        status = "RUNNING"
        while status == "RUNNING" and time.perf_counter() - begin < job["timeout"]:
            d = client.describe_execution(executionArn=ex)
            status = d["status"]
            if status == "RUNNING":
                time.sleep(0.001)
        seconds = time.perf_counter() - begin
        entered, token = 0, None
        while True:
            kw = {"executionArn": ex, "maxResults": 1000}
            if token:
                kw["nextToken"] = token
            page = client.get_execution_history(**kw)
            entered += sum(1 for e in page["events"] if e["type"].endswith("StateEntered"))
            token = page.get("nextToken")
            if not token:
                break
        output = json.loads(d["output"]) if status == "SUCCEEDED" and d.get("output") else None
        results[job["name"]] = {"status": status, "seconds": seconds, "transitions": entered,
                                "output": output, "error": d.get("error"), "cause": d.get("cause")}
print(json.dumps(results))
"#;

fn peer_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GANTRY_BENCH_MOTO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cache/gantry-moto-venv/bin/python3");
    p.exists().then_some(p)
}

/// Runs the jobs in moto; the parsed results, or why there are none.
fn run_peer(dir: &Path, jobs: &Value) -> Result<Value, String> {
    let python = peer_python().ok_or(
        "no Python with moto (set GANTRY_BENCH_MOTO_PYTHON, or make ~/.cache/gantry-moto-venv with `pip install 'moto[stepfunctions]' boto3`)",
    )?;
    let script = dir.join("peer.py");
    let job_file = dir.join("jobs.json");
    std::fs::write(&script, PEER_SCRIPT).map_err(|e| e.to_string())?;
    std::fs::write(&job_file, jobs.to_string()).map_err(|e| e.to_string())?;
    let out = Command::new(&python)
        .arg(&script)
        .arg(&job_file)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_owned();
        return Err(format!("moto run failed: {last}"));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("moto's output: {e}"))
}

/// The whole benchmark: `runs` in-memory repetitions (best kept).
pub(crate) fn bench_states(runs: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    println!("gantry bench states — in-memory figures are the best of {runs} runs");
    println!();

    // 1. In memory, one thread. A Standard execution stops at 25,000
    // history events (about 6,000 loop turns), so the loop is measured as
    // many executions of 5,000 turns; the Map of 10,000 items runs with
    // Express semantics (no history limit), as it must on AWS too.
    let (turns, repeats, items) = (5_000u64, 20usize, 10_000usize);
    let (loop_t, loop_out, _) = in_memory(&loop_definition(), &loop_input(turns), Kind::Standard)?;
    if loop_out != json!({"i": turns, "n": turns}) {
        return Err(format!("the in-memory loop ended with {loop_out}"));
    }
    let mut loop_s = f64::MAX;
    for _ in 0..runs.max(1) {
        let begin = Instant::now();
        for _ in 0..repeats {
            in_memory(&loop_definition(), &loop_input(turns), Kind::Standard)?;
        }
        loop_s = loop_s.min(begin.elapsed().as_secs_f64());
    }
    let (map_t, map_out, map_s) =
        best_in_memory(&map_definition(), &map_input(items), Kind::Express, runs)?;
    let memory_rate = rate(loop_t * repeats, loop_s);
    println!("in memory (the interpreter alone, one thread)");
    println!(
        "  Pass/Choice loop: {repeats} executions × {loop_t} transitions   {:.1} ms   {}/s   target 500k/s   {}",
        loop_s * 1000.0,
        thousands(memory_rate),
        verdict(memory_rate >= 500_000.0)
    );
    println!(
        "  Map of {items} items (Express), {map_t} transitions   {:.1} ms   {}/s",
        map_s * 1000.0,
        thousands(rate(map_t, map_s))
    );
    println!();

    // 2. Durable, on SQLite, through the API.
    let server = InProcessServer::start(&dir.path().join("data"), |_| {})?;
    let addr = server.addr;
    let loop_arn = create(addr, "bench-loop", &loop_definition(), Kind::Standard)?;
    let map_arn = create(addr, "bench-map", &map_definition(), Kind::Standard)?;
    let express_map_arn = create(addr, "bench-map-express", &map_definition(), Kind::Express)?;
    let (concurrent, durable_turns, durable_items) = (20usize, 1_000u64, 2_000usize);
    let (one_t, _, _) = in_memory(
        &loop_definition(),
        &loop_input(durable_turns),
        Kind::Standard,
    )?;
    let inputs = vec![loop_input(durable_turns); concurrent];
    let (outputs, loop_durable_s) = durable(addr, &loop_arn, &inputs)?;
    if outputs
        .iter()
        .any(|o| o != &json!({"i": durable_turns, "n": durable_turns}))
    {
        return Err(format!(
            "a durable loop ended with another output: {outputs:?}"
        ));
    }
    let durable_rate = rate(one_t * concurrent, loop_durable_s);
    let (dmap_t, dmap_out, _) =
        in_memory(&map_definition(), &map_input(durable_items), Kind::Standard)?;
    let (map_outputs, map_durable_s) = durable(addr, &map_arn, &[map_input(durable_items)])?;
    if map_outputs.first() != Some(&dmap_out) {
        return Err(format!(
            "the durable Map's output {map_outputs:?} differs from the in-memory one {dmap_out}"
        ));
    }
    let begin = Instant::now();
    let express = sfn(
        addr,
        "StartSyncExecution",
        json!({"stateMachineArn": express_map_arn, "input": map_input(items).to_string()}),
    )?;
    let express_s = begin.elapsed().as_secs_f64();
    let express_out: Value = serde_json::from_str(express["output"].as_str().unwrap_or("null"))
        .map_err(|e| e.to_string())?;
    if express["status"] != "SUCCEEDED" || express_out != map_out {
        return Err(format!("the Express Map through the API ended {express}"));
    }
    server.stop()?;
    println!("server (SQLite; Standard executions journalled before acting; through the API)");
    println!(
        "  {concurrent} Standard loops of {one_t} transitions at once   {:.2} s   {}/s   target 10k/s   {}",
        loop_durable_s,
        thousands(durable_rate),
        verdict(durable_rate >= 10_000.0)
    );
    println!(
        "  Standard Map of {durable_items} items, {dmap_t} transitions   {:.2} s   {}/s",
        map_durable_s,
        thousands(rate(dmap_t, map_durable_s))
    );
    println!(
        "  Express Map of {items} items (StartSyncExecution), {map_t} transitions   {:.2} s   {}/s",
        express_s,
        thousands(rate(map_t, express_s))
    );
    println!();

    // 3. The peer.
    let (peer_turns, peer_items) = (500u64, 1_000usize);
    let jobs = json!([
        {"name": "loop", "definition": loop_definition(), "input": loop_input(peer_turns), "timeout": 300},
        {"name": "map", "definition": map_definition(), "input": map_input(peer_items), "timeout": 300},
    ]);
    println!("peer: moto's Step Functions interpreter, same definitions");
    match run_peer(dir.path(), &jobs) {
        Err(why) => println!("  not measured: {why}"),
        Ok(results) => {
            let (mine_loop, _, _) =
                in_memory(&loop_definition(), &loop_input(peer_turns), Kind::Standard)?;
            let (mine_map, mine_map_out, _) =
                in_memory(&map_definition(), &map_input(peer_items), Kind::Standard)?;
            for (name, mine_t, mine_out, gantry_memory, gantry_durable) in [
                (
                    "loop",
                    mine_loop,
                    json!({"i": peer_turns, "n": peer_turns}),
                    memory_rate,
                    durable_rate,
                ),
                (
                    "map",
                    mine_map,
                    mine_map_out,
                    rate(map_t, map_s),
                    rate(dmap_t, map_durable_s),
                ),
            ] {
                let r = &results[name];
                if r["status"] != "SUCCEEDED" {
                    println!(
                        "  {name}: moto ended {} ({} {}) after {:.1} s",
                        r["status"],
                        r["error"],
                        r["cause"],
                        r["seconds"].as_f64().unwrap_or(0.0)
                    );
                    continue;
                }
                let peer_t = r["transitions"].as_u64().unwrap_or(0) as usize;
                let same = peer_t == mine_t && r["output"] == mine_out;
                let peer_rate = rate(peer_t, r["seconds"].as_f64().unwrap_or(0.0));
                println!(
                    "  {name}: {peer_t} transitions in {:.2} s   {}/s   same transitions and output as Gantry: {}",
                    r["seconds"].as_f64().unwrap_or(0.0),
                    thousands(peer_rate),
                    if same { "yes" } else { "NO" }
                );
                println!(
                    "    Gantry in memory {:.0}× moto   durable {:.0}× moto   target 100×   {}",
                    gantry_memory / peer_rate.max(1e-9),
                    gantry_durable / peer_rate.max(1e-9),
                    verdict(gantry_memory / peer_rate.max(1e-9) >= 100.0)
                );
            }
        }
    }
    Ok(())
}
