//! `gantry pipeline run FILE` as a process, over a real git repository
//! (file://) and the host executor: a pipeline of source → build and test
//! in parallel → manual approval → deploy build. Each test checks one rule:
//! artifacts and variables reach the deploy, a rejected approval stops the
//! pipeline before the deploy, a failing build names its action, a bad file
//! exits 2 with FILE:LINE:COL, `--json`'s shape, `--project` files, and
//! Ctrl-C stopping the run.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The command under test: `gantry pipeline run`.
fn pipeline_run_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.args(["pipeline", "run"]);
    cmd
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The build's buildspec (the repository's `buildspec.yml`, read by the
/// made-up project): exports VERSION, writes app.txt, and hands the deploy
/// its buildspec inside the artifact.
const BUILD: &str = "version: 0.2\nenv:\n  exported-variables: [VERSION]\nphases:\n  build:\n    commands:\n      - export VERSION=$(cat version.txt)\n      - echo \"app $VERSION\" > app.txt\n      - cp deploy.yml buildspec.yml\nartifacts:\n  files: [app.txt, buildspec.yml]\n";
/// The deploy's buildspec: checks the artifact and prints the variables.
const DEPLOY: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - grep -q \"app $EXPECTED\" app.txt\n      - echo \"deploying $(cat app.txt) at $COMMIT to $TARGET\"\n";

struct Fixture {
    dir: tempfile::TempDir,
    pipeline: PathBuf,
    commit: String,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a `--project` file for the test action's project.
    fn test_project(&self, buildspec: &str) -> PathBuf {
        let project = json!({
            "source": { "type": "CODEPIPELINE", "buildspec": buildspec },
            "artifacts": { "type": "CODEPIPELINE" },
            "environment": {
                "type": "LINUX_CONTAINER",
                "image": "gantry:host",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [
                    { "name": "GREETING", "value": "hello from the project file", "type": "PLAINTEXT" }
                ]
            },
            "serviceRole": "arn:aws:iam::000000000000:role/gantry"
        });
        let path = self.path("test-project.json");
        std::fs::write(&path, project.to_string()).expect("project file");
        path
    }
}

/// A bare repository holding the build's sources, and a gantry.yml for it.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work");
    git(&work, &["init", "-q", "-b", "main"]);
    for (name, text) in [
        ("version.txt", "1.0.0"),
        ("buildspec.yml", BUILD),
        ("deploy.yml", DEPLOY),
    ] {
        std::fs::write(work.join(name), text).expect("file");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "release 1.0.0"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    git(dir.path(), &["clone", "-q", "--bare", "work", "origin.git"]);
    let url = format!("file://{}", dir.path().join("origin.git").display());
    let yaml = format!(
        r##"name: shop
roleArn: arn:aws:iam::000000000000:role/gantry
pipelineType: V2
variables:
  - name: Target
    defaultValue: staging
stages:
  - name: Source
    actions:
      - name: Checkout
        actionTypeId: {{category: Source, owner: AWS, provider: Git, version: 1}}
        configuration: {{RepositoryUrl: '{url}', BranchName: main}}
        outputArtifacts: [{{name: Src}}]
        namespace: SourceVariables
  - name: Verify
    actions:
      - name: Build
        actionTypeId: {{category: Build, owner: AWS, provider: CodeBuild, version: 1}}
        configuration: {{ProjectName: shop-build}}
        inputArtifacts: [{{name: Src}}]
        outputArtifacts: [{{name: App}}]
        namespace: BuildVariables
      - name: Test
        actionTypeId: {{category: Test, owner: AWS, provider: CodeBuild, version: 1}}
        configuration: {{ProjectName: shop-test}}
        inputArtifacts: [{{name: Src}}]
  - name: Approve
    actions:
      - name: Release
        actionTypeId: {{category: Approval, owner: AWS, provider: Manual, version: 1}}
        configuration: {{CustomData: ship it?}}
  - name: Deploy
    actions:
      - name: Ship
        actionTypeId: {{category: Build, owner: AWS, provider: CodeBuild, version: 1}}
        configuration:
          ProjectName: shop-deploy
          EnvironmentVariables: '[{{"name":"EXPECTED","value":"#{{BuildVariables.VERSION}}","type":"PLAINTEXT"}},{{"name":"COMMIT","value":"#{{SourceVariables.CommitId}}","type":"PLAINTEXT"}},{{"name":"TARGET","value":"#{{variables.Target}}","type":"PLAINTEXT"}}]'
        inputArtifacts: [{{name: App}}]
"##
    );
    let pipeline = dir.path().join("gantry.yml");
    std::fs::write(&pipeline, yaml).expect("gantry.yml");
    Fixture {
        dir,
        pipeline,
        commit,
    }
}

/// Runs the command with `stdin` piped in; returns its output.
fn run(fixture: &Fixture, args: &[&str], stdin: &str) -> Output {
    let mut child = pipeline_run_cmd()
        .arg(&fixture.pipeline)
        .args(args)
        .current_dir(fixture.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gantry");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("gantry output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `--project shop-test=FILE` with a test that passes.
fn passing_test(fixture: &Fixture) -> String {
    let file = fixture.test_project(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - test -f version.txt\n      - echo \"$GREETING\"\n",
    );
    format!("shop-test={}", file.display())
}

#[test]
fn auto_approve_runs_every_stage_and_the_deploy_sees_the_artifact_and_the_commit() {
    let f = fixture();
    let project = passing_test(&f);
    let out = run(&f, &["--auto-approve", "--project", &project], "");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let deployed = format!("[Ship] deploying app 1.0.0 at {} to staging", f.commit);
    assert!(stderr.contains(&deployed), "{stderr}");
    assert!(
        stderr.contains(
            "--> Approve/Release succeeded (Approved by gantry pipeline run --auto-approve)"
        ),
        "{stderr}"
    );
    // Live progress names stages and actions, in order.
    let order = [
        "==> stage Source started",
        "--> Source/Checkout succeeded (release 1.0.0)",
        "==> stage Verify started",
        "--> Verify/Build succeeded",
        "==> stage Deploy started",
        "--> Deploy/Ship succeeded",
    ];
    let mut at = 0;
    for step in order {
        let found = stderr[at..]
            .find(step)
            .unwrap_or_else(|| panic!("`{step}` after byte {at} in:\n{stderr}"));
        at += found + step.len();
    }
    assert!(stdout.starts_with("Pipeline shop execution "), "{stdout}");
    assert!(stdout.contains(": Succeeded"), "{stdout}");
}

#[test]
fn a_rejection_on_stdin_fails_the_run_before_the_deploy() {
    let f = fixture();
    let project = passing_test(&f);
    let out = run(&f, &["--project", &project, "--json"], "n\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ship it?"),
        "the CustomData is shown: {stderr}"
    );
    assert!(
        stderr.contains("--> Approve/Release FAILED: Rejected on stdin"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Deploy/Ship"),
        "the deploy never ran: {stderr}"
    );
    assert!(!stderr.contains("[Ship]"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["status"], "Failed");
    assert_eq!(summary["stages"][3]["actions"][0]["status"], "NotRun");
}

#[test]
fn yes_on_stdin_approves() {
    let f = fixture();
    let project = passing_test(&f);
    let out = run(&f, &["--project", &project], "yes\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("--> Approve/Release succeeded (Approved on stdin"),
        "{stderr}"
    );
    assert!(stderr.contains("[Ship] deploying"), "{stderr}");
}

#[test]
fn a_failing_build_exits_1_and_names_the_action() {
    let f = fixture();
    let file = f.test_project(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo checking\n      - exit 3\n",
    );
    let project = format!("shop-test={}", file.display());
    let out = run(&f, &["--auto-approve", "--project", &project], "");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("[Test] checking"), "{stderr}");
    assert!(
        stderr.contains("--> Verify/Test FAILED: Build shop-test:"),
        "{stderr}"
    );
    assert!(
        stdout.contains("    Test Failed: Build shop-test:"),
        "{stdout}"
    );
    assert!(!stderr.contains("Approve/Release"), "{stderr}");
}

#[test]
fn an_invalid_file_exits_2_with_file_line_and_column() {
    let f = fixture();
    let text_of = std::fs::read_to_string(&f.pipeline).expect("read");
    std::fs::write(
        &f.pipeline,
        text_of.replace(
            "inputArtifacts: [{name: App}]",
            "inputArtifacts: [{name: Ap}]",
        ),
    )
    .expect("write");
    let out = run(&f, &["--auto-approve"], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = format!(
        "{}:39:33: input artifact `Ap` of action `Ship`",
        f.pipeline.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_usage_exits_2_before_anything_runs() {
    let f = fixture();
    for (args, expected) in [
        (
            vec!["--project", "nope=x.json"],
            "no CodeBuild action of the pipeline names project `nope`",
        ),
        (vec!["--project", "shop-test"], "expected NAME=FILE.json"),
        (vec!["--variable", "novalue"], "expected NAME=VALUE"),
        (vec!["--executor", "docker"], "needs --image"),
    ] {
        let out = run(&f, &args, "");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    std::fs::write(f.path("bad.json"), "{\"name\": ").expect("write");
    let project = format!("shop-test={}", f.path("bad.json").display());
    let out = run(&f, &["--project", &project], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.json:1:"), "{stderr}");
    // A project CreateProject refuses: its message, exit 2, nothing ran.
    std::fs::write(
        f.path("noimage.json"),
        json!({
            "source": { "type": "CODEPIPELINE" },
            "artifacts": { "type": "CODEPIPELINE" },
            "environment": { "type": "LINUX_CONTAINER", "computeType": "BUILD_GENERAL1_SMALL" },
            "serviceRole": "gantry"
        })
        .to_string(),
    )
    .expect("write");
    let project = format!("shop-test={}", f.path("noimage.json").display());
    let out = run(&f, &["--project", &project], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("project shop-test: CreateProject: InvalidInputException: environment.image"),
        "{stderr}"
    );
    assert!(!stderr.contains("Running pipeline"), "{stderr}");
}

#[test]
fn json_prints_status_execution_id_and_each_action_with_its_variables() {
    let f = fixture();
    let project = passing_test(&f);
    let out = run(&f, &["--auto-approve", "--json", "--project", &project], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(summary["status"], "Succeeded");
    assert_eq!(summary["pipeline"], "shop");
    let id = summary["executionId"].as_str().expect("executionId");
    assert!(text(&out.stderr).contains(id));
    let stages: Vec<&str> = summary["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(stages, ["Source", "Verify", "Approve", "Deploy"]);
    let checkout = &summary["stages"][0]["actions"][0];
    assert_eq!(checkout["name"], "Checkout");
    assert_eq!(checkout["status"], "Succeeded");
    assert_eq!(checkout["outputVariables"]["CommitId"], f.commit.as_str());
    let build = &summary["stages"][1]["actions"][0];
    assert_eq!(
        (
            build["name"].clone(),
            build["outputVariables"]["VERSION"].clone()
        ),
        (json!("Build"), json!("1.0.0"))
    );
    assert!(
        build["externalExecutionId"]
            .as_str()
            .is_some_and(|id| id.starts_with("shop-build:")),
        "{build}"
    );
    for stage in summary["stages"].as_array().expect("stages") {
        assert_eq!(stage["status"], "Succeeded", "{stage}");
    }
}

#[test]
fn a_project_file_sets_the_environment_the_build_prints() {
    let f = fixture();
    let project = passing_test(&f);
    let data = f.path("data");
    let out = run(
        &f,
        &[
            "--auto-approve",
            "--project",
            &project,
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("[Test] hello from the project file"),
        "{stderr}"
    );
    // --data-dir keeps the run's database.
    assert!(data.join("gantry.db").is_file());
    // A second run over the same data directory updates what it created.
    let again = run(
        &f,
        &[
            "--auto-approve",
            "--project",
            &project,
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ],
        "",
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
}

#[test]
fn ctrl_c_stops_the_execution_and_its_builds_and_exits_130() {
    let f = fixture();
    let file = f.test_project(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo waiting\n      - sleep 60\n",
    );
    let project = format!("shop-test={}", file.display());
    let mut child = pipeline_run_cmd()
        .arg(&f.pipeline)
        .args(["--auto-approve", "--project", &project])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gantry");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l: &String| l == "[Test] waiting") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the test build never started: {seen:#?}"),
        }
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.wait().expect("wait");
    seen.extend(rx.try_iter());
    assert_eq!(status.code(), Some(130), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("Execution ") && l.ends_with(" Stopped")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l == "--> Verify/Test abandoned"),
        "{seen:#?}"
    );
    // The abandoned build was stopped, and recorded so, before the exit.
    assert!(
        seen.iter()
            .any(|l| l.starts_with("    Verify/Test: build shop-test:") && l.ends_with(" STOPPED")),
        "{seen:#?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("Approve/Release")),
        "{seen:#?}"
    );
}

#[test]
fn a_run_killed_mid_build_leaves_nothing_that_holds_the_next_run_back() {
    let f = fixture();
    let data = f.path("data");
    let data_arg = data.to_str().expect("utf-8 path").to_owned();
    let file = f.test_project(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo waiting\n      - sleep 10\n",
    );
    let project = format!("shop-test={}", file.display());
    let mut child = pipeline_run_cmd()
        .arg(&f.pipeline)
        .args([
            "--auto-approve",
            "--project",
            &project,
            "--data-dir",
            &data_arg,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gantry");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    for line in stderr.lines().map_while(Result::ok) {
        if line == "[Test] waiting" {
            break;
        }
    }
    // SIGKILL: the execution stays InProgress in the data directory.
    child.kill().expect("kill");
    child.wait().expect("wait");

    let project = passing_test(&f);
    let out = run(
        &f,
        &[
            "--auto-approve",
            "--project",
            &project,
            "--data-dir",
            &data_arg,
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Stopped 1 execution(s) of shop left running by an earlier run"),
        "{stderr}"
    );
    assert!(stderr.contains("[Ship] deploying"), "{stderr}");
}

#[test]
fn variables_given_on_the_command_line_reach_the_actions() {
    let f = fixture();
    let project = passing_test(&f);
    let out = run(
        &f,
        &[
            "--auto-approve",
            "--project",
            &project,
            "--variable",
            "Target=production",
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("[Ship] deploying app 1.0.0 at "),
        "{stderr}"
    );
    assert!(stderr.contains(" to production"), "{stderr}");
    // A variable the pipeline does not declare is refused before it starts.
    let out = run(&f, &["--auto-approve", "--variable", "Nope=1"], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Nope"), "{stderr}");
    assert!(!stderr.contains("Running pipeline"), "{stderr}");
}

#[test]
fn a_kept_data_dir_opens_in_gantry_server_which_makes_the_first_admin_key() {
    let f = fixture();
    let project = passing_test(&f);
    let data = f.path("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let out = run(
        &f,
        &[
            "--auto-approve",
            "--json",
            "--project",
            &project,
            "--data-dir",
            data_arg,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let id = summary["executionId"].as_str().expect("executionId");
    // The local run made no admin key, so the server's first start takes
    // this one; the run is there to read.
    let key = ("GANTRYRUNKEY", "gantry/run+Secret/Key=0123456789abcdef");
    let server = support::start(&data, key);
    let answer = support::call(
        &server.addr,
        key,
        support::CODEPIPELINE,
        "GetPipelineExecution",
        &json!({ "pipelineName": "shop", "pipelineExecutionId": id }),
    );
    server.kill();
    let (status, body) = answer.expect("server reachable");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pipelineExecution"]["status"], "Succeeded", "{body}");
}

/// A pseudo-terminal: (master, the slave's path).
fn open_pty() -> (std::fs::File, PathBuf) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor this function owns; the
    // master fd is handed to a File that closes it.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(master), PathBuf::from(path))
    }
}

#[test]
fn at_a_terminal_the_approval_is_a_prompt() {
    let f = fixture();
    let project = passing_test(&f);
    let (mut master, slave_path) = open_pty();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .expect("open the pty's slave");
    // The answer waits in the terminal's input until the prompt reads it.
    master.write_all(b"y\n").expect("type y");
    let out = pipeline_run_cmd()
        .arg(&f.pipeline)
        .args(["--project", &project])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run gantry");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("    ship it?\nApprove Approve/Release? [y/N] "),
        "{stderr}"
    );
    assert!(
        stderr.contains("--> Approve/Release succeeded (Approved at the terminal"),
        "{stderr}"
    );
    drop(master);
}
