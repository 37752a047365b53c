/*!
Gantry's format layer: the files users already have, parsed into typed models
whose every value remembers where it was written.

Nothing here runs anything or touches the outside world; engines
(`gantry-build`, ...) take these models and act on them. Parsing never stops
at the first problem: a bad file gives back every [`Diagnostic`], each with
the line and column of the offending key or value.

# Example

```
use gantry_spec::buildspec::{self, OnFailure};

let spec = buildspec::parse(
    "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2\n    commands: [make]\n",
)
.expect("a valid buildspec");
let build = spec.phases.build.expect("a build phase");
assert_eq!(build.commands[0].value, "make");
assert_eq!(build.on_failure.map(|f| f.value), Some(OnFailure::Retry { count: 2, pattern: None }));

let errors = buildspec::parse("version: 0.2\nphases:\n  build:\n    comands: [make]\n").unwrap_err();
assert_eq!(errors[0].to_string(), "3:3: missing required key `commands` in `phases.build`");
assert_eq!(
    errors[1].to_string(),
    "4:5: unknown key `comands` in `phases.build`; expected one of `run-as`, \
     `on-failure`, `commands`, `finally`; did you mean `commands`?"
);
```
*/
#![deny(missing_docs)]

pub mod buildspec;
pub mod detect;
mod diagnostic;
pub mod pipeline;
mod span;
mod yaml;

pub use detect::{FileKind, detect};
pub use diagnostic::Diagnostic;
pub use span::{Span, Spanned};

/// Runs the examples in docs/buildspec.md as doctests, so the page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/buildspec.md")]
struct BuildspecDocs;

/// Runs the examples in docs/pipelines.md as doctests, so the page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/pipelines.md")]
struct PipelinesDocs;
