//! What can go wrong reading a report.

use std::io;
use std::path::PathBuf;

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Something went wrong in the file at `path` (from the `*_file` readers).
    #[error("{}: {source}", .path.display())]
    File {
        /// The report file.
        path: PathBuf,
        /// What went wrong in it.
        #[source]
        source: Box<ReportError>,
    },
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not well-formed XML.
    #[error("malformed XML at byte {position}: {message}")]
    Xml {
        /// Byte offset where the problem was found.
        position: u64,
        /// What the XML reader said.
        message: String,
    },
    /// Elements nest deeper than the reader allows (a guard against hostile files).
    #[error("XML elements nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The bytes are not valid JSON, or not the shape the format has.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the JSON reader said.
        message: String,
    },
    /// Well-formed, but not this format (for example a JUnit file read as TestNG).
    #[error("not a {format} report: expected {expected}, found {found}")]
    WrongFormat {
        /// The format that was asked for.
        format: &'static str,
        /// What that format starts with.
        expected: &'static str,
        /// What the file starts with.
        found: String,
    },
    /// A coverage format was given to [`parse_report`](crate::parse_report).
    #[error("{0} is a code coverage format; read it with parse_coverage")]
    NotTestFormat(&'static str),
    /// A test format was given to [`parse_coverage`](crate::parse_coverage).
    #[error("{0} is a test report format; read it with parse_report")]
    NotCoverageFormat(&'static str),
}

impl ReportError {
    /// Wraps this error with the file it came from.
    pub fn in_file(self, path: impl Into<PathBuf>) -> ReportError {
        ReportError::File {
            path: path.into(),
            source: Box::new(self),
        }
    }

    pub(crate) fn json(e: serde_json::Error) -> ReportError {
        ReportError::Json {
            line: e.line(),
            column: e.column(),
            // serde_json appends the position, which is already in the fields.
            message: {
                let text = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                text.strip_suffix(&suffix).unwrap_or(&text).to_string()
            },
        }
    }
}
