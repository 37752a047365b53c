//! One module per subcommand.

pub mod bench;
pub mod build;
pub mod events;
pub mod server;
pub mod states;
pub mod validate;
