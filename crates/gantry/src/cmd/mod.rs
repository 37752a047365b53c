//! One module per subcommand.

pub mod bench;
mod bench_pipeline;
mod bench_server;
mod bench_states;
pub mod build;
pub mod events;
pub mod pipeline_run;
pub mod server;
pub mod states;
pub mod validate;
