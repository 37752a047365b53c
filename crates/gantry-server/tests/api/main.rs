//! The real server, in-process on 127.0.0.1:0, driven over HTTP: by a
//! small Rust client that signs with `gantry-aws` (always), and by boto3
//! and the AWS CLI (when `GANTRY_TEST_PYTHON` names a python3 with them).

mod agent_commands;
mod agents;
mod aws_clients;
mod chat_approvals;
mod codepipeline;
mod codepipeline_clients;
mod custom_actions;
mod custom_actions_clients;
mod events;
mod harness;
mod ownership;
mod pipeline_runs;
mod rest;
mod rest_logs;
mod rust_client;
mod s3_artifacts;
mod s3_logs;
mod shared_artifacts;
mod stepfunctions;
mod store_faults;
