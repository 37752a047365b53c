//! CodeBuild's `buildspec.yml` (FORMATS-AWS.md §1).

mod model;

pub use model::*;

use crate::diagnostic::Diagnostic;

/// Parses and checks a buildspec. On failure, returns every problem found, in
/// file order; nothing partial is returned.
pub fn parse(source: &str) -> Result<Buildspec, Vec<Diagnostic>> {
    let _ = source;
    todo!("buildspec parser: being written")
}
