//! Whole-file tests: shapes, spellings, ordering of diagnostics.

use super::*;
