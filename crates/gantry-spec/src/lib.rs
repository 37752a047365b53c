/*!
Gantry's format layer: the files users already have, parsed into typed models
whose every value remembers where it was written.

Nothing here runs anything or touches the outside world; engines
(`gantry-build`, ...) take these models and act on them.

# Example

```ignore
let spec = gantry_spec::buildspec::parse("version: 0.2\nphases:\n  build:\n    commands: [make]\n")?;
assert_eq!(spec.phases.build.unwrap().commands[0].value, "make");
```
*/
#![deny(missing_docs)]

pub mod buildspec;
mod diagnostic;
mod span;

pub use diagnostic::Diagnostic;
pub use span::{Span, Spanned};
