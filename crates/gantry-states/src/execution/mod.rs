//! The deterministic execution core: `Execution::step(event) -> Vec<Action>`.
//!
//! An execution is derived from its journal of [`Event`]s. `step` applies one event and
//! returns the side effects the host must perform as plain [`Action`]s; it never reads a
//! clock, draws entropy, or performs I/O. [`Execution::replay`] rebuilds the same state
//! (and the same pending actions) from a stored journal.

mod io;
mod journal;
mod machine;

pub use journal::{Action, Event, ExecutionInfo, HistoryEvent, Outcome};
pub use machine::Execution;
