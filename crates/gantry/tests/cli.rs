//! The `gantry` command line as a user drives it: exit codes, files written,
//! messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gantry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(buildspec: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("buildspec.yml"), buildspec).expect("write");
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn build(&self, args: &[&str]) -> Output {
        gantry()
            .arg("build")
            .arg("--source")
            .arg(self.path())
            .args(args)
            .output()
            .expect("gantry runs")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_successful_build_exits_0_and_a_failed_one_1() {
    let ok = Project::new("version: 0.2\nphases:\n  build:\n    commands: [echo fine]\n");
    let out = ok.build(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("fine"));

    let failed = Project::new("version: 0.2\nphases:\n  build:\n    commands: ['false']\n");
    assert_eq!(failed.build(&[]).status.code(), Some(1));
}

#[test]
fn an_invalid_buildspec_exits_2_with_file_line_column_and_runs_nothing() {
    let project = Project::new("version: 0.2\nphases:\n  build:\n    comands: [touch ran]\n");
    let out = project.build(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let file = project.path().join("buildspec.yml");
    assert!(
        stderr.contains(&format!("{}:4:5:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("comands"), "{stderr}");
    assert!(!project.path().join("ran").exists());
}

#[test]
fn a_bad_command_line_exits_2() {
    let project = Project::new("version: 0.2\nphases: {}\n");
    assert_eq!(
        project.build(&["--env", "NO_EQUALS_SIGN"]).status.code(),
        Some(2)
    );
    assert_eq!(
        project.build(&["--executor", "kubernetes"]).status.code(),
        Some(2)
    );
    assert_eq!(
        project.build(&["--env", "CODEBUILD_X=1"]).status.code(),
        Some(2)
    );
    assert_eq!(
        project.build(&["--executor", "docker"]).status.code(),
        Some(2),
        "docker needs --image"
    );
}

#[test]
fn a_timeout_exits_1_with_timed_out() {
    let project = Project::new("version: 0.2\nphases:\n  build:\n    commands: ['sleep 30']\n");
    let json = project.path().join("result.json");
    let out = project.build(&["--timeout", "0.02", "--report-json", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(result["buildStatus"], "TIMED_OUT");
}

#[test]
fn report_json_has_codebuilds_build_shape() {
    let project = Project::new(
        "version: 0.2\nenv:\n  exported-variables: [APP_VERSION]\nphases:\n  build:\n    commands:\n      - export APP_VERSION=2.0\n      - mkdir -p out reports\n      - echo bin > out/app\n      - printf '<testsuite name=\"s\" tests=\"2\"><testcase name=\"a\"/><testcase name=\"b\"><failure/></testcase></testsuite>' > reports/t.xml\nartifacts:\n  files: ['out/*']\nreports:\n  unit:\n    files: ['reports/*.xml']\n",
    );
    let json = project.path().join("result.json");
    let out = project.build(&["--report-json", json.to_str().unwrap(), "--project", "demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(r["buildStatus"], "SUCCEEDED");
    assert!(r["id"].as_str().unwrap().starts_with("demo:"));
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phaseType"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "SUBMITTED",
            "QUEUED",
            "PROVISIONING",
            "DOWNLOAD_SOURCE",
            "INSTALL",
            "PRE_BUILD",
            "BUILD",
            "POST_BUILD",
            "UPLOAD_ARTIFACTS",
            "FINALIZING",
            "COMPLETED"
        ]
    );
    let build = &r["phases"][6];
    assert_eq!(build["phaseStatus"], "SUCCEEDED");
    assert!(build["durationInSeconds"].is_u64());
    assert_eq!(
        r["exportedEnvironmentVariables"],
        serde_json::json!([{"name": "APP_VERSION", "value": "2.0"}])
    );
    assert_eq!(r["artifacts"]["files"], serde_json::json!(["out/app"]));
    let report = &r["reports"][0];
    assert_eq!(report["name"], "demo-unit");
    assert_eq!(report["fileFormat"], "JUNITXML");
    assert_eq!(report["testSummary"]["total"], 2);
    assert_eq!(
        report["testSummary"]["statusCounts"],
        serde_json::json!({"SUCCEEDED": 1, "FAILED": 1, "SKIPPED": 0, "ERROR": 0, "UNKNOWN": 0})
    );
}

#[test]
fn log_file_gets_the_masked_log() {
    let project = Project::new(
        "version: 0.2\nphases:\n  build:\n    commands: ['echo \"token is $API_TOKEN\"']\n",
    );
    let log = project.path().join("build.log");
    let out = project.build(&[
        "--secret-env",
        "API_TOKEN=tok-12345-secret",
        "--log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("token is ***"), "{logged}");
    assert!(
        !logged.contains("tok-12345-secret") && !text(&out.stdout).contains("tok-12345-secret")
    );
    assert!(logged.contains("==> BUILD"), "phases are marked: {logged}");
}

#[test]
fn artifacts_dir_receives_the_files() {
    let project = Project::new(
        "version: 0.2\nphases:\n  build:\n    commands: ['mkdir -p dist/sub', 'echo a > dist/a.txt', 'echo b > dist/sub/b.txt']\nartifacts:\n  files: ['**/*']\n  base-directory: dist\n",
    );
    let out_dir: PathBuf = project.path().join("out");
    let out = project.build(&["--artifacts-dir", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("a.txt")).unwrap(),
        "a\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("sub/b.txt")).unwrap(),
        "b\n"
    );
}

#[test]
fn ctrl_c_stops_the_build_and_leaves_nothing_running() {
    let marker = 700_000 + std::process::id() % 90_000;
    let project = Project::new(&format!(
        "version: 0.2\nphases:\n  build:\n    commands: ['sleep {marker} & echo started; sleep {marker}']\n"
    ));
    let mut child = gantry()
        .arg("build")
        .arg("--source")
        .arg(project.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gantry runs");
    // Wait for the build to print "started", then interrupt it as a terminal would.
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert!(
        lines.any(|l| l.map(|l| l == "started").unwrap_or(false)),
        "the build never started"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let needle = format!("sleep\0{marker}");
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| text(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect();
    assert!(left.is_empty(), "processes left after Ctrl-C: {left:?}");
}

#[test]
fn validate_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &good,
        "version: 0.2\nphases:\n  build:\n    commands: [make]\n",
    )
    .unwrap();
    std::fs::write(
        &bad,
        "phases:\n  build:\n    on-failure: STOP\n    commands: [make]\n",
    )
    .unwrap();
    let out = gantry()
        .arg("validate")
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{}: ok", good.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}:3:17:", bad.display())),
        "on-failure value position: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{}:", bad.display())) && l.contains("version")),
        "{stdout}"
    );

    let out = gantry().arg("validate").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0));

    let out = gantry()
        .args(["validate", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    let problems: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(problems[0]["line"].as_u64().is_some());
    assert!(problems.as_array().unwrap().len() >= 2);
}

#[test]
fn the_hello_example_builds() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    let work = tempfile::tempdir().unwrap();
    for file in ["buildspec.yml", "src/hello.sh.in", "tests/run.sh"] {
        let to = work.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example.join(file), to).unwrap();
    }
    let out_dir = work.path().join("out");
    let out = gantry()
        .args(["build", "--source"])
        .arg(work.path())
        .arg("--artifacts-dir")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("Hello from Gantry (version 1.0.1)"));
    assert!(out_dir.join("hello.sh").exists());
}

#[test]
fn a_terminal_gets_a_progress_line_and_a_pipe_gets_plain_lines() {
    let project = Project::new(
        "version: 0.2\nphases:\n  build:\n    commands: ['echo working; sleep 0.6; echo done']\n",
    );
    // Plain: no escape sequences at all.
    let plain = project.build(&[]);
    assert_eq!(plain.status.code(), Some(0));
    assert!(
        !text(&plain.stdout).contains('\x1b'),
        "escape codes on a pipe: {:?}",
        text(&plain.stdout)
    );
    // Under a pseudo-terminal (util-linux `script`), the progress line shows the phase.
    let Ok(out) = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} build --source {}",
            env!("CARGO_BIN_EXE_gantry"),
            project.path().display()
        ))
        .arg("/dev/null")
        .output()
    else {
        eprintln!("SKIP: util-linux `script` is not installed");
        return;
    };
    let shown = text(&out.stdout);
    assert!(
        shown.contains("\x1b[7m BUILD \x1b[0m"),
        "no progress line on a terminal: {shown:?}"
    );
    assert!(shown.contains("working") && shown.contains("done"));
}

#[test]
fn events_test_pattern_answers_true_false_or_exits_2() {
    let run = |pattern: &str, event: &str| {
        gantry()
            .args([
                "events",
                "test-pattern",
                "--pattern",
                pattern,
                "--event",
                event,
            ])
            .output()
            .unwrap()
    };
    let event = r#"{"source":"gantry.codebuild","detail-type":"CodeBuild Build State Change","detail":{"build-status":"FAILED"}}"#;
    let yes = run(
        r#"{"source":["gantry.codebuild"],"detail":{"build-status":["FAILED","STOPPED"]}}"#,
        event,
    );
    assert_eq!(
        (yes.status.code(), text(&yes.stdout).trim()),
        (Some(0), "true")
    );
    let no = run(
        r#"{"detail":{"build-status":[{"anything-but":"FAILED"}]}}"#,
        event,
    );
    assert_eq!(
        (no.status.code(), text(&no.stdout).trim()),
        (Some(0), "false")
    );
    let bad = run(r#"{"source":"not-an-array"}"#, event);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("source"),
        "{}",
        text(&bad.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let pattern_file = dir.path().join("p.json");
    std::fs::write(&pattern_file, r#"{"source":[{"prefix":"gantry."}]}"#).unwrap();
    let from_file = run(&format!("@{}", pattern_file.display()), event);
    assert_eq!(text(&from_file.stdout).trim(), "true");

    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        format!(
            "{{\"pattern\": {{\"source\": [\"a\"]}}, \"event\": {{\"source\": \"a\"}}}}\n{{\"pattern\": {{\"source\": [\"a\"]}}, \"event\": {{\"source\": \"b\"}}}}\n{{\"pattern\": {{\"source\": \"a\"}}, \"event\": {event}}}\nnot json\n"
        ),
    )
    .unwrap();
    let out = gantry()
        .args(["events", "test-pattern", "--cases"])
        .arg(&cases)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(&lines[..2], ["true", "false"]);
    assert!(
        lines[2].starts_with("error: ") && lines[3].starts_with("error: "),
        "{lines:?}"
    );
}

#[test]
fn validate_knows_state_machines_and_event_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let machine = dir.path().join("deploy.asl.json");
    std::fs::write(
        &machine,
        r#"{"StartAt":"Build","States":{"Build":{"Type":"Pass","Next":"Deploy"}}}"#,
    )
    .unwrap();
    let pattern = dir.path().join("rule.pattern.json");
    std::fs::write(&pattern, r#"{"detail":{"status":[{"numeric":[">"]}]}}"#).unwrap();
    let good = dir.path().join("ok.asl.json");
    std::fs::write(
        &good,
        r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#,
    )
    .unwrap();
    let out = gantry()
        .arg("validate")
        .arg(&machine)
        .arg(&pattern)
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{}: States.Build.Next", machine.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}: Event pattern is not valid",
            pattern.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: ok (state machine)", good.display())),
        "{stdout}"
    );
}

#[test]
fn validate_checks_pipeline_declarations_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("demo.pipeline.json");
    std::fs::write(
        &pipeline,
        r#"{
  "pipeline": {
    "name": "demo",
    "roleArn": "arn:aws:iam::123456789012:role/gantry",
    "artifactStore": {"type": "S3", "location": "artifact-bucket"},
    "stages": [
      {"name": "Source", "actions": [{"name": "Src",
        "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"},
        "configuration": {"BranchName": "main"},
        "outputArtifacts": [{"name": "src"}]}]}
    ]
  }
}
"#,
    )
    .unwrap();
    let out = gantry()
        .args(["validate", "--kind", "pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let file = pipeline.display().to_string();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{file}:")) && l.contains("RepositoryUrl")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{file}:6:")) && l.contains("2 stages")),
        "{stdout}"
    );
}
