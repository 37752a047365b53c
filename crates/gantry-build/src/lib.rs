/*!
Gantry's build runner: takes a parsed buildspec and runs it exactly as
CodeBuild does, in one of several executors.
*/
#![deny(missing_docs)]

pub mod artifacts;
pub mod mask;
pub mod reports;
