//! Webhook triggers: whether a request from a git host is authentic, what it
//! reports, and which pipeline source actions it starts.
//!
//! Gantry's server receives webhooks from GitHub, GitLab, Gitea and Forgejo,
//! from its own generic signed webhook, and at CodePipeline-style webhook URLs.
//! This crate holds every decision about such a request and does no I/O: the
//! server hands it headers, the raw body and the caller's address, and acts on
//! what comes back.
//!
//! - [`signature`]: which host sent the request ([`Provider::detect`]) and
//!   whether it carries the webhook's secret (HMAC signatures, GitLab's token),
//!   compared in constant time.
//! - [`event`]: the push and pull-request payloads of the four hosts read into
//!   one [`GitEvent`], with the changed files and whether that list is complete.
//! - [`filter`]: a pipeline's `triggers` (CodePipeline V2 push and pull-request
//!   filters) evaluated against an event, one [`Decision`] per source action.
//! - [`chat`]: the interactive message an approval posts to a chat, and
//!   the button callback that answers it (Slack's shapes; its signature is
//!   [`signature::verify_slack`]).
//! - [`codepipeline`]: CodePipeline's `WebhookDefinition` (PutWebhook):
//!   validation, authentication and JSONPath filter rules.
//!
//! # Example
//!
//! ```
//! use gantry_triggers::{Headers, Provider, event, filter, signature};
//!
//! let body = br#"{"ref": "refs/heads/main", "before": "a1", "after": "b2",
//!   "commits": [{"id": "b2", "message": "Fix the build", "author": {"name": "Ada"},
//!                "added": [], "removed": [], "modified": ["src/main.rs"]}],
//!   "repository": {"full_name": "acme/app",
//!                  "clone_url": "https://git.example.com/acme/app.git"}}"#;
//! let headers = Headers::new([
//!     ("X-GitHub-Event", "push".to_string()),
//!     ("X-Hub-Signature-256", signature::sign_sha256("s3cret", body)),
//! ]);
//!
//! let provider = Provider::detect(&headers).expect("a GitHub request");
//! provider.verify(&headers, body, "s3cret")?;
//! let push = event::parse_request(&headers, body)?;
//!
//! let pipeline = gantry_spec::pipeline::parse_yaml(
//!     "name: app
//! roleArn: arn:aws:iam::123456789012:role/gantry
//! stages:
//!   - name: Source
//!     actions:
//!       - name: Repo
//!         actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
//!         configuration: {RepositoryUrl: 'https://git.example.com/acme/app.git', BranchName: main}
//!         outputArtifacts: [{name: Src}]
//!   - name: Build
//!     actions:
//!       - name: Compile
//!         actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
//!         configuration: {ProjectName: app}
//!         inputArtifacts: [{name: Src}]
//! triggers:
//!   - providerType: CodeStarSourceConnection
//!     gitConfiguration:
//!       sourceActionName: Repo
//!       push:
//!         - branches: {includes: [main, 'release/**']}
//!           filePaths: {includes: ['src/**'], excludes: ['**/*.md']}
//! ",
//! )
//! .expect("a valid pipeline");
//! let decisions = filter::decide(&pipeline, &push);
//! assert_eq!(decisions.len(), 1);
//! assert!(decisions[0].start, "{}", decisions[0].reason);
//! assert_eq!(decisions[0].source_action, "Repo");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod chat;
pub mod codepipeline;
pub mod event;
pub mod filter;
mod headers;
mod repository;
pub mod signature;

pub use event::{EventError, GitEvent};
pub use filter::{Decision, decide};
pub use headers::Headers;
pub use signature::{Provider, SignatureError};

/// Runs the examples in docs/triggers.md as doctests, so the page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/triggers.md")]
struct TriggersDocs;
