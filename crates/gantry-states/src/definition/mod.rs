//! The state machine definition: a typed model, parsed and validated from JSON.

mod model;
mod parse;
mod validate;

pub use model::*;
pub use parse::parse_definition;
