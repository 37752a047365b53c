//! Errors carry JSONata's error code (`T2001`, `D3030`, `S0202`...), the offset in the
//! expression where known, and a message saying what was expected.

/// A parse or evaluation error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// JSONata's error code, e.g. `T1006`.
    pub code: &'static str,
    /// Byte offset in the expression, when known.
    pub position: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl Error {
    /// An error with a code and message but no position.
    pub fn new(code: &'static str, message: impl Into<String>) -> Error {
        Error {
            code,
            position: None,
            message: message.into(),
        }
    }

    /// An error at a position.
    pub fn at(code: &'static str, position: usize, message: impl Into<String>) -> Error {
        Error {
            code,
            position: Some(position),
            message: message.into(),
        }
    }

    /// Adds a position if the error has none yet.
    pub fn or_at(mut self, position: usize) -> Error {
        if self.position.is_none() {
            self.position = Some(position);
        }
        self
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
