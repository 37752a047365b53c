//! One module per subcommand.

pub mod agent;
pub mod agent_token;
pub mod approve;
pub mod bench;
mod bench_agents;
mod bench_pipeline;
mod bench_server;
mod bench_states;
mod bench_steps;
pub mod build;
pub mod client;
pub mod events;
pub mod logs;
pub mod pipeline;
pub mod pipeline_run;
pub mod run_show;
pub mod server;
pub mod states;
pub mod validate;
