//! CodePipeline pipeline declarations (FORMATS-AWS.md §3): the JSON that
//! `aws codepipeline get-pipeline` prints and the native `gantry.yml`, both
//! read into one typed, spanned [`PipelineDeclaration`] and checked the way
//! CreatePipeline checks them. See docs/pipelines.md.
//!
//! The two spellings share the key names (the API's camelCase members) and
//! every rule. They differ only where the languages do: JSON is typed, so
//! `"runOrder": "1"` is an error there, while YAML keeps scalars as written,
//! so `PollForSourceChanges: false` is the string `"false"`.
//!
//! ```
//! use gantry_spec::pipeline;
//!
//! let yaml = "\
//! name: app
//! roleArn: arn:aws:iam::123456789012:role/gantry
//! stages:
//!   - name: Source
//!     actions:
//!       - name: Checkout
//!         actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
//!         configuration: {RepositoryUrl: 'file:///srv/git/app.git', BranchName: main}
//!         outputArtifacts: [{name: Src}]
//!   - name: Build
//!     actions:
//!       - name: Compile
//!         actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
//!         configuration: {ProjectName: app}
//!         inputArtifacts: [{name: Sources}]
//! ";
//! let errors = pipeline::parse_yaml(yaml).unwrap_err();
//! assert_eq!(
//!     errors[0].to_string(),
//!     "15:33: input artifact `Sources` of action `Compile` (stage `Build`) is not \
//!      produced by an earlier action; earlier outputs: `Src`"
//! );
//! ```

mod convert;
mod inner;
mod json;
mod model;
mod providers;
mod read;
mod rules;
mod triggers;

pub use model::*;
pub use providers::SUPPORTED_PROVIDERS;

use crate::diagnostic::Diagnostic;
use crate::span::Span;
use crate::yaml;
use read::Reader;

/// Problems returned at most; a generated or hostile file can have thousands.
const MAX_DIAGNOSTICS: usize = 100;

/// How a pipeline file is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CodePipeline's JSON (`get-pipeline` output, `create-pipeline --cli-input-json`).
    Json,
    /// The native YAML (`gantry.yml`).
    Yaml,
}

impl Format {
    /// JSON when the text starts (after whitespace and a byte-order mark)
    /// with `{`, YAML otherwise.
    pub fn guess(source: &str) -> Format {
        let text = source.trim_start_matches('\u{feff}').trim_start();
        if text.starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// Parses and checks a pipeline in either spelling ([`Format::guess`]).
pub fn parse(source: &str) -> Result<PipelineDeclaration, Vec<Diagnostic>> {
    parse_document(source, Format::guess(source)).map(|d| d.pipeline)
}

/// Parses and checks CodePipeline JSON: a bare declaration or the
/// `{"pipeline": ..., "metadata": ...}` that `get-pipeline` prints.
pub fn parse_json(source: &str) -> Result<PipelineDeclaration, Vec<Diagnostic>> {
    parse_document(source, Format::Json).map(|d| d.pipeline)
}

/// Parses and checks a `gantry.yml`: a bare declaration or one under `pipeline:`.
pub fn parse_yaml(source: &str) -> Result<PipelineDeclaration, Vec<Diagnostic>> {
    parse_document(source, Format::Yaml).map(|d| d.pipeline)
}

/// Parses and checks a pipeline file, keeping `get-pipeline`'s `metadata`.
///
/// On failure, returns every problem found, sorted by position; nothing
/// partial is returned. Hostile input ends in a diagnostic too (the budgets
/// are those of docs/buildspec.md).
pub fn parse_document(source: &str, format: Format) -> Result<PipelineDocument, Vec<Diagnostic>> {
    let loaded = match format {
        Format::Json => json::load(source),
        Format::Yaml => yaml::load(source, yaml::LIMITS),
    };
    let root = match loaded {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(vec![Diagnostic::new(
                start(),
                "the pipeline file is empty; expected at least `name`, `roleArn` and `stages`",
            )]);
        }
        Err(diagnostic) => return Err(vec![diagnostic]),
    };
    let mut r = Reader::new(format == Format::Json);
    let document = convert::root(&mut r, &root).and_then(|root| {
        let metadata = root.metadata.and_then(|f| convert::metadata(&mut r, f));
        let tags = root.tags.and_then(|f| convert::tags(&mut r, f));
        let pipeline = convert::declaration(&mut r, &root)?;
        rules::check(&mut r, &pipeline, root.prefix, source);
        Some(PipelineDocument {
            pipeline,
            metadata,
            tags,
        })
    });
    match document {
        Some(document) if r.cx.diags.is_empty() => Ok(document),
        _ => Err(finish(r.cx.diags)),
    }
}

/// Sorts, dedupes and caps diagnostics; never returns an empty list.
fn finish(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    if diags.is_empty() {
        // Unreachable by construction (every `None` reports why).
        diags.push(Diagnostic::new(start(), "the pipeline is invalid"));
    }
    diags.sort_by_key(|d| (d.span.line, d.span.col));
    diags.dedup();
    if diags.len() > MAX_DIAGNOSTICS {
        let more = diags.len() - MAX_DIAGNOSTICS;
        diags.truncate(MAX_DIAGNOSTICS);
        let at = diags.last().map(|d| d.span).unwrap_or_default();
        diags.push(Diagnostic::new(at, format!("... and {more} more problems")));
    }
    diags
}

/// Prints `value` (a [`PipelineDocument`] or a [`PipelineDeclaration`]) as
/// the AWS CLI prints JSON: four-space indents, members in the API's order,
/// absent members left out.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing plain data into a Vec cannot fail.
    if value.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

fn start() -> Span {
    Span {
        line: 1,
        col: 1,
        offset: 0,
        len: 0,
    }
}

#[cfg(test)]
mod tests;
