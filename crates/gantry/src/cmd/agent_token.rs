//! `gantry agent-token create|list|revoke`: agent tokens on a server,
//! over the signed REST API (`/api/v1/agent-tokens`). The token is printed
//! once, at creation; the server keeps only its hash.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Failure, ServerArgs, block_on, print_json, segment};

#[derive(Debug, Args)]
pub struct AgentTokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// A name for people (e.g. the host it is for).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List tokens: id, name, created, last used, revoked.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a token: its agents are refused from their next request.
    Revoke {
        /// The token's id (atok-...).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: AgentTokenArgs) -> ExitCode {
    block_on("agent-token", async move {
        match args.command {
            TokenCommand::Create { name, server } => {
                let client = Client::from_env(&server)?;
                let body = json!({ "name": name });
                let out = client.post("/agent-tokens", &body).await?;
                if server.json {
                    print_json(&json!({ "token": out["token"], "id": out["id"] }));
                } else {
                    let token = out["token"].as_str().ok_or_else(|| {
                        Failure::Request("the server's answer has no token".into())
                    })?;
                    println!("{token}");
                    eprintln!(
                        "Created agent token {} (shown once; the server keeps only its hash).",
                        out["id"].as_str().unwrap_or("?")
                    );
                }
                Ok(())
            }
            TokenCommand::List { server } => {
                let client = Client::from_env(&server)?;
                let out = client.get("/agent-tokens").await?;
                if server.json {
                    print_json(&out);
                    return Ok(());
                }
                println!("{:<22} {:<20} {:<8} LAST USED", "ID", "NAME", "REVOKED");
                for t in out["agentTokens"].as_array().into_iter().flatten() {
                    println!(
                        "{:<22} {:<20} {:<8} {}",
                        t["id"].as_str().unwrap_or("-"),
                        t["name"].as_str().unwrap_or("-"),
                        t["revoked"].as_bool().unwrap_or(false),
                        t.get("lastUsed")
                            .map(Value::to_string)
                            .unwrap_or_else(|| "-".into()),
                    );
                }
                Ok(())
            }
            TokenCommand::Revoke { id, server } => {
                let client = Client::from_env(&server)?;
                let path = format!("/agent-tokens/{}", segment(&id));
                let out = client.json(reqwest::Method::DELETE, &path, None).await?;
                if server.json {
                    print_json(&out);
                } else {
                    println!("Revoked agent token {id}.");
                }
                Ok(())
            }
        }
    })
}
