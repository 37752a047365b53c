//! The build runner's behaviour, one test per CodeBuild rule, each run on
//! every executor this machine has (host, sandbox, docker).

#[macro_use]
mod harness;

mod batch;
mod environment;
mod logs;
mod phases;
mod processes;
mod sandboxing;
mod uploads;
