//! Places in a source file, so every diagnostic can say `FILE:LINE:COL`.

/// A place in a source text: 1-based line and column, plus the byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (0 when only a position is known).
    pub len: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps `value` with `span`.
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
