/*!
EventBridge-compatible event matching for Gantry: event patterns compiled once
and matched many at a time, input transformers, and the event envelope.

A [`Pattern`] is validated with EventBridge's reasons
(`Event pattern is not valid. Reason: …`, plus the field path) and compiled
into conditions on dotted field paths; matching an event never re-reads the
pattern. A [`RuleSet`] holds many patterns behind an index over field paths
and values, so an event is matched against a thousand rules by looking its
fields up, not by trying each rule in turn. An [`InputTransformer`] turns a
matched event into a target's input (`InputPathsMap` + `InputTemplate`), and
[`Event`] / [`PutEventsEntry`] are the envelope and the PutEvents entry.
[`Schedule`] parses a rule's `rate(...)` or six-field `cron(...)`
expression and gives its next fire time after an instant.

Every operator EventBridge documents is supported: exact strings, numbers
(compared by value), booleans and `null`; `prefix`, `suffix` and their
`equals-ignore-case` forms; `equals-ignore-case`; `anything-but` with values,
lists, `prefix`, `suffix`, `equals-ignore-case` and `wildcard`; `numeric`
ranges; `exists`; `cidr` (IPv4 and IPv6); `wildcard`; and `$or`. The pattern
language, with examples and the few deliberate differences from AWS, is
described in `docs/events.md`.

# Example

```
use gantry_events::{Pattern, RuleSet};
use serde_json::json;

let pattern = Pattern::parse(r#"{
    "source": ["gantry.codebuild"],
    "detail": {
        "build-status": [{"anything-but": "SUCCEEDED"}],
        "duration": [{"numeric": [">", 60]}]
    }
}"#)?;

let event = json!({
    "source": "gantry.codebuild",
    "detail-type": "CodeBuild Build State Change",
    "detail": {"build-status": "FAILED", "duration": 95}
});
assert!(pattern.matches(&event));

// Invalid patterns say why, as EventBridge does.
let err = Pattern::parse(r#"{"detail": {"state": "FAILED"}}"#).unwrap_err();
assert_eq!(
    err.to_string(),
    r#"Event pattern is not valid. Reason: "state" must be an object or an array (at detail.state)"#
);

// Many rules at once.
let mut rules = RuleSet::builder();
rules.add("notify-failures", &pattern);
rules.add("all-builds", &Pattern::parse(r#"{"source": [{"prefix": "gantry."}]}"#)?);
assert_eq!(rules.build().matches(&event), [&"notify-failures", &"all-builds"]);
# Ok::<(), gantry_events::PatternError>(())
```
*/
#![deny(missing_docs)]

mod cidr;
mod envelope;
mod error;
mod eval;
mod flatten;
mod hash;
mod index;
mod matcher;
mod parse;
mod path_index;
mod path_tree;
mod pattern;
mod ranges;
mod schedule;
mod transform;
mod wildcard;

pub use envelope::{Event, PutEventsEntry};
pub use error::{EnvelopeError, PatternError, PatternIssue, PatternReason, TransformError};
pub use flatten::FlatEvent;
pub use index::{RuleSet, RuleSetBuilder};
pub use pattern::{MAX_PATTERN_LEN, Pattern};
pub use schedule::{
    Cron, SCHEDULE_INVALID, Schedule, ScheduleError, ms_from_rfc3339, rfc3339_from_ms,
};
pub use transform::{InputTransformer, RuleContext};

/// The examples in `docs/events.md` run as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/events.md")]
struct EventsDocs;
