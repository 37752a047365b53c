//! Problems found in a user's file, each pinned to a place.

use crate::span::Span;

/// One problem in a file: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {message}", span.line, span.col)]
pub struct Diagnostic {
    /// Where the problem is.
    pub span: Span,
    /// What is wrong and what was expected, e.g. "unknown key `comands` in `phases.build`; expected one of ...".
    pub message: String,
}

impl Diagnostic {
    /// A problem at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            message: message.into(),
        }
    }

    /// Renders as `FILE:LINE:COL: message`, the form editors and CI logs link.
    pub fn render(&self, file: &str) -> String {
        format!(
            "{file}:{}:{}: {}",
            self.span.line, self.span.col, self.message
        )
    }
}
