//! Fault tests across hosts: `gantry server`s, agents and PostgreSQL as
//! Docker containers on a private network (see `support/cluster.rs`),
//! killed, restarted and cut off while they work.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use std::time::Duration;

use serde_json::json;

const KEY: (&str, &str) = ("GANTRYFAULTKEY", "fault/test+secret/0123456789abcdef");

fn admin_env() -> [(&'static str, &'static str); 2] {
    [
        ("GANTRY_ADMIN_ACCESS_KEY_ID", KEY.0),
        ("GANTRY_ADMIN_SECRET_ACCESS_KEY", KEY.1),
    ]
}

/// The smallest cross-host check: a server in a container serves the host,
/// dies by SIGKILL, and comes back on its own data.
#[test]
fn a_server_container_killed_and_restarted_keeps_its_data() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("smoke");
    let server = net.gantry(
        "server",
        &admin_env(),
        &[
            "server",
            "--listen",
            "0.0.0.0:8080",
            "--data-dir",
            "/data/gantry",
        ],
    );
    let addr = format!("{}:8080", server.ip());
    server.wait_until(Duration::from_secs(30), "the server answers", || {
        support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({})).is_some()
    });
    let project = json!({
        "name": "survivor",
        "source": { "type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n" },
        "artifacts": { "type": "NO_ARTIFACTS" },
        "environment": { "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL" },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    });
    let (status, created) =
        support::call(&addr, KEY, support::CODEBUILD, "CreateProject", &project)
            .expect("reachable");
    assert_eq!(status, 200, "{created}");

    server.kill();
    server.start();
    let addr = format!("{}:8080", server.ip());
    server.wait_until(
        Duration::from_secs(30),
        "the restarted server answers",
        || support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({})).is_some(),
    );
    let (_, listed) = support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({}))
        .expect("reachable");
    assert_eq!(listed["projects"], json!(["survivor"]), "{listed}");
}

/// PostgreSQL in its own container comes up from the host's binaries and
/// keeps its data across a kill: the ground the PostgreSQL fault scenarios
/// stand on.
#[test]
fn a_postgres_container_serves_the_network_and_survives_a_kill() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("pg");
    let pg = net.postgres("db");
    let pg_isready = "/usr/lib/postgresql/15/bin/pg_isready";
    pg.kill();
    pg.start();
    pg.wait_until(Duration::from_secs(60), "PostgreSQL is back", || {
        pg.exec(&[pg_isready, "-h", "127.0.0.1", "-U", "gantry", "-q"])
            .status
            .success()
    });
    assert!(
        pg.logs().contains("database system was interrupted")
            || pg.logs().contains("ready to accept connections"),
        "{}",
        pg.logs()
    );
}
