//! Batches run on the write connection's SQLite handle by the writer's own
//! thread, with no hop to sqlx's worker thread.
//!
//! Why: through sqlx, a batch is a command sent to the connection's worker
//! thread, and every statement's result and row a message back, each a
//! wake-up of the writer's thread (~25 context switches each way per
//! remote build). With 50 agents on two cores the machine is saturated,
//! and those switches were about a tenth of all its CPU (sqlx's worker
//! spent more time in the scheduler than in SQLite: docs/benchmarks.md,
//! "Session of 2026-12-03, 16:14 UTC"). Here the writer's thread takes the
//! handle from sqlx ([`sqlx::SqliteConnection::lock_handle`], which parks
//! sqlx's worker while it is held) and runs the statements itself.
//!
//! What it keeps of sqlx's behaviour, so callers see no difference:
//! - statements are prepared once and kept (by their batch's text, as
//!   sqlx keeps a query's), and reset after each use so that none holds a
//!   read transaction open;
//! - arguments bind in order across the statements of a batch, `?NNN`
//!   naming the NNN-th argument, a missing one left NULL (as sqlx does);
//! - a statement's change count is `sqlite3_changes` after it ran, as
//!   sqlx's `rows_affected`;
//! - errors are `sqlx::Error::Database` with SQLite's extended code as
//!   their `code()` and the same `kind()` (a unique violation is one).
//!
//! Every call here is made with the handle locked, from the writer's
//! thread alone: sqlx opens connections in SQLite's multi-thread mode, in
//! which one connection must not be used by two threads at once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int};
use std::ptr::NonNull;
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::Row as _;
use sqlx::Sqlite;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::sqlite::{SqliteArgumentValue, SqliteRow};

/// One value of a row a batch returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A row one statement of a batch returned.
#[derive(Debug, Clone)]
pub(crate) struct BatchRow {
    columns: Arc<[String]>,
    cells: Vec<Cell>,
}

impl BatchRow {
    /// The value of the column named `name`, as sqlx's `try_get` would
    /// give it.
    pub(crate) fn get<T: FromCell>(&self, name: &str) -> Result<T, sqlx::Error> {
        let index = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| sqlx::Error::ColumnNotFound(name.to_owned()))?;
        self.get_at(index)
    }

    /// The value of the `index`-th column (from 0).
    pub(crate) fn get_at<T: FromCell>(&self, index: usize) -> Result<T, sqlx::Error> {
        let cell = self
            .cells
            .get(index)
            .ok_or(sqlx::Error::ColumnIndexOutOfBounds {
                index,
                len: self.cells.len(),
            })?;
        T::from_cell(cell).map_err(|e| sqlx::Error::ColumnDecode {
            index: format!("{index:?}"),
            source: e.into(),
        })
    }
}

/// A Rust type a [`Cell`] decodes into, with the same strictness as
/// sqlx's decoding of a SQLite value: an integer is not text, NULL only an
/// `Option`'s `None`. (sqlx's decoding too, so that [`Columns`] reads a
/// row of either kind.)
pub(crate) trait FromCell:
    Sized + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>
{
    fn from_cell(cell: &Cell) -> Result<Self, String>;
}

/// A row read by column name, whether a batch returned it ([`BatchRow`])
/// or a query through sqlx ([`SqliteRow`]): what turns a row into a record
/// serves both.
pub(crate) trait Columns {
    fn column<T: FromCell>(&self, name: &str) -> Result<T, sqlx::Error>;
}

impl Columns for BatchRow {
    fn column<T: FromCell>(&self, name: &str) -> Result<T, sqlx::Error> {
        self.get(name)
    }
}

impl Columns for SqliteRow {
    fn column<T: FromCell>(&self, name: &str) -> Result<T, sqlx::Error> {
        self.try_get(name)
    }
}

fn mismatch(want: &str, cell: &Cell) -> String {
    let got = match cell {
        Cell::Null => "NULL",
        Cell::Integer(_) => "INTEGER",
        Cell::Real(_) => "REAL",
        Cell::Text(_) => "TEXT",
        Cell::Blob(_) => "BLOB",
    };
    format!("expected {want}, found {got}")
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Result<i64, String> {
        match cell {
            Cell::Integer(v) => Ok(*v),
            other => Err(mismatch("INTEGER", other)),
        }
    }
}

impl FromCell for f64 {
    fn from_cell(cell: &Cell) -> Result<f64, String> {
        match cell {
            Cell::Real(v) => Ok(*v),
            Cell::Integer(v) => Ok(*v as f64),
            other => Err(mismatch("REAL", other)),
        }
    }
}

impl FromCell for bool {
    fn from_cell(cell: &Cell) -> Result<bool, String> {
        match cell {
            Cell::Integer(v) => Ok(*v != 0),
            other => Err(mismatch("INTEGER", other)),
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> Result<String, String> {
        match cell {
            Cell::Text(v) => Ok(v.clone()),
            other => Err(mismatch("TEXT", other)),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Result<Vec<u8>, String> {
        match cell {
            Cell::Blob(v) => Ok(v.clone()),
            Cell::Text(v) => Ok(v.clone().into_bytes()),
            other => Err(mismatch("BLOB", other)),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Result<Option<T>, String> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// What one statement of a batch did.
#[derive(Debug)]
pub(crate) struct Step {
    /// Rows it inserted, changed or deleted.
    pub(crate) changes: u64,
    /// Rows it returned (a `SELECT`, or `RETURNING`).
    pub(crate) rows: Vec<BatchRow>,
}

/// An error SQLite reported, as sqlx reports one of its own.
#[derive(Debug)]
pub(crate) struct SqliteFailure {
    /// The extended result code.
    code: c_int,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As sqlx's `SqliteError` shows itself: the message alone.
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// The connection's last error, for a call that returned `code`.
fn failure(db: NonNull<ffi::sqlite3>, code: c_int) -> sqlx::Error {
    // SAFETY: `db` is an open connection this thread holds; the message
    // is copied before any other call on it.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db.as_ptr());
        if text.is_null() {
            format!("SQLite error {code}")
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    };
    // The extended code, when the connection has one for this error
    // (`sqlite3_step` returns the primary code only in some builds).
    // SAFETY: as above.
    let extended = unsafe { ffi::sqlite3_extended_errcode(db.as_ptr()) };
    let code = if extended & 0xff == code & 0xff {
        extended
    } else {
        code
    };
    sqlx::Error::Database(Box::new(SqliteFailure { code, message }))
}

/// One prepared statement, finalized when dropped.
struct Statement(NonNull<ffi::sqlite3_stmt>);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: prepared by `prepare` and finalized only here; dropped
        // only by the thread that holds the handle (see `Statements`).
        unsafe {
            ffi::sqlite3_finalize(self.0.as_ptr());
        }
    }
}

/// How many batch texts stay prepared: the store's hot batches are a few
/// dozen texts (their statements do not change with the data they carry);
/// past this, the cache starts again rather than grow without bound.
const CACHED_TEXTS: usize = 256;

/// The write connection's prepared statements, by batch text. Owned by
/// the writer's thread and used only while it holds the handle; emptied
/// (with the handle held) before the connection closes.
#[derive(Default)]
pub(crate) struct Statements {
    by_text: HashMap<String, Vec<Statement>>,
}

impl Statements {
    /// Finalizes every statement. `db` must be held by this thread.
    pub(crate) fn clear(&mut self, _db: NonNull<ffi::sqlite3>) {
        self.by_text.clear();
    }

    /// Forgets every statement without finalizing it: for a connection
    /// whose handle could not be taken (its worker is gone), where no
    /// SQLite call may be made.
    pub(crate) fn abandon(&mut self) {
        for (_, statements) in self.by_text.drain() {
            std::mem::forget(statements);
        }
    }

    /// The statements of `sql`, prepared now unless they were before.
    fn prepared(
        &mut self,
        db: NonNull<ffi::sqlite3>,
        sql: &str,
    ) -> Result<&[Statement], sqlx::Error> {
        if !self.by_text.contains_key(sql) {
            let statements = prepare(db, sql)?;
            if self.by_text.len() >= CACHED_TEXTS {
                self.by_text.clear();
            }
            self.by_text.insert(sql.to_owned(), statements);
        }
        Ok(self.by_text.get(sql).map(Vec::as_slice).unwrap_or_default())
    }

    /// Runs every statement of `sql` in order, binding `args` across them;
    /// what each did. Stops at the first that fails. `db` must be held by
    /// this thread.
    pub(crate) fn run(
        &mut self,
        db: NonNull<ffi::sqlite3>,
        sql: &str,
        args: &[SqliteArgumentValue<'_>],
    ) -> Result<Vec<Step>, sqlx::Error> {
        let statements = self.prepared(db, sql)?;
        let mut steps = Vec::with_capacity(statements.len());
        let mut next_arg = 0;
        for statement in statements {
            let in_use = InUse(statement.0);
            next_arg = bind(db, &in_use, args, next_arg)?;
            steps.push(step_all(db, &in_use)?);
        }
        Ok(steps)
    }

    /// Runs one statement that takes no arguments and returns no rows
    /// (`BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`).
    pub(crate) fn execute(
        &mut self,
        db: NonNull<ffi::sqlite3>,
        sql: &str,
    ) -> Result<(), sqlx::Error> {
        self.run(db, sql, &[]).map(drop)
    }
}

/// Whether the connection is outside any transaction. `db` must be held
/// by this thread.
pub(crate) fn in_autocommit(db: NonNull<ffi::sqlite3>) -> bool {
    // SAFETY: `db` is an open connection this thread holds.
    unsafe { ffi::sqlite3_get_autocommit(db.as_ptr()) != 0 }
}

/// Prepares every statement of `sql` (empty ones, such as a trailing
/// comment, are skipped).
fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> Result<Vec<Statement>, sqlx::Error> {
    let mut statements = Vec::new();
    let bytes = sql.as_bytes();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = c_int::try_from(rest.len())
            .map_err(|_| sqlx::Error::Protocol("a batch's text is over 2 GiB".into()))?;
        let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        let mut tail: *const c_char = std::ptr::null();
        // SAFETY: `rest` is valid for `len` bytes; SQLite reads no further
        // and sets `tail` inside it (or to its end).
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                rest.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut raw,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(failure(db, rc));
        }
        let consumed = if tail.is_null() {
            rest.len()
        } else {
            // SAFETY: `tail` points into `rest`, or one past its end.
            let offset = unsafe { tail.offset_from(rest.as_ptr().cast::<c_char>()) };
            usize::try_from(offset).unwrap_or(rest.len())
        };
        if let Some(raw) = NonNull::new(raw) {
            statements.push(Statement(raw));
        }
        if consumed == 0 {
            break; // nothing SQLite could read: done
        }
        at += consumed;
    }
    Ok(statements)
}

/// A statement while it runs: reset and unbound when dropped, so that a
/// cached statement holds no read transaction or argument between uses.
struct InUse(NonNull<ffi::sqlite3_stmt>);

impl Drop for InUse {
    fn drop(&mut self) {
        // SAFETY: a prepared, not finalized statement of the held handle.
        unsafe {
            ffi::sqlite3_reset(self.0.as_ptr());
            ffi::sqlite3_clear_bindings(self.0.as_ptr());
        }
    }
}

/// Binds `statement`'s parameters from `args`, the anonymous ones from
/// `next` on; returns where the next statement's start.
fn bind(
    db: NonNull<ffi::sqlite3>,
    statement: &InUse,
    args: &[SqliteArgumentValue<'_>],
    mut next: usize,
) -> Result<usize, sqlx::Error> {
    let stmt = statement.0.as_ptr();
    // SAFETY: a prepared statement of the held handle.
    let count = unsafe { ffi::sqlite3_bind_parameter_count(stmt) };
    for param in 1..=count {
        // SAFETY: as above; the name, when there is one, lives as long as
        // the statement and is read at once.
        let name = unsafe {
            let name = ffi::sqlite3_bind_parameter_name(stmt, param);
            (!name.is_null()).then(|| CStr::from_ptr(name).to_bytes().to_vec())
        };
        let index = match name {
            None => {
                next += 1;
                next
            }
            Some(name) => name
                .strip_prefix(b"?")
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<usize>().ok())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!(
                        "unsupported SQL parameter {:?} in a batch (only ? and ?NNN)",
                        String::from_utf8_lossy(&name)
                    ))
                })?,
        };
        // Like sqlx: a parameter past the arguments stays NULL.
        let Some(value) = index.checked_sub(1).and_then(|i| args.get(i)) else {
            break;
        };
        // SAFETY: as above; text and blobs are copied by SQLite
        // (`SQLITE_TRANSIENT`) before the call returns.
        let rc = unsafe {
            match value {
                SqliteArgumentValue::Null => ffi::sqlite3_bind_null(stmt, param),
                SqliteArgumentValue::Int(v) => ffi::sqlite3_bind_int(stmt, param, *v),
                SqliteArgumentValue::Int64(v) => ffi::sqlite3_bind_int64(stmt, param, *v),
                SqliteArgumentValue::Double(v) => ffi::sqlite3_bind_double(stmt, param, *v),
                SqliteArgumentValue::Text(v) => ffi::sqlite3_bind_text64(
                    stmt,
                    param,
                    v.as_ptr().cast::<c_char>(),
                    v.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                SqliteArgumentValue::Blob(v) => ffi::sqlite3_bind_blob64(
                    stmt,
                    param,
                    v.as_ptr().cast(),
                    v.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(failure(db, rc));
        }
    }
    Ok(next)
}

/// Steps `statement` to its end, keeping the rows it returns.
fn step_all(db: NonNull<ffi::sqlite3>, statement: &InUse) -> Result<Step, sqlx::Error> {
    let stmt = statement.0.as_ptr();
    let mut rows = Vec::new();
    let mut columns: Option<Arc<[String]>> = None;
    loop {
        // SAFETY: a prepared statement of the held handle, its arguments
        // bound.
        let rc = unsafe { ffi::sqlite3_step(stmt) };
        match rc {
            ffi::SQLITE_ROW => {
                let names = columns.get_or_insert_with(|| column_names(stmt)).clone();
                let cells = (0..names.len()).map(|i| cell(stmt, i)).collect();
                rows.push(BatchRow {
                    columns: names,
                    cells,
                });
            }
            ffi::SQLITE_DONE => break,
            code => return Err(failure(db, code)),
        }
    }
    // SAFETY: the held handle.
    let changes = unsafe { ffi::sqlite3_changes64(db.as_ptr()) };
    Ok(Step {
        changes: u64::try_from(changes).unwrap_or(0),
        rows,
    })
}

fn column_names(stmt: *mut ffi::sqlite3_stmt) -> Arc<[String]> {
    // SAFETY: a statement of the held handle that has just returned a
    // row; each name is copied at once.
    unsafe {
        let count = ffi::sqlite3_column_count(stmt).max(0);
        (0..count)
            .map(|i| {
                let name = ffi::sqlite3_column_name(stmt, i);
                if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

/// The `index`-th column of the row `stmt` has just returned.
fn cell(stmt: *mut ffi::sqlite3_stmt, index: usize) -> Cell {
    let i = c_int::try_from(index).unwrap_or(c_int::MAX);
    // SAFETY: a statement of the held handle on a row; the column's bytes
    // are valid until the next step or reset and are copied at once
    // (`sqlite3_column_bytes` after `_text`/`_blob`, as SQLite asks).
    unsafe {
        match ffi::sqlite3_column_type(stmt, i) {
            ffi::SQLITE_INTEGER => Cell::Integer(ffi::sqlite3_column_int64(stmt, i)),
            ffi::SQLITE_FLOAT => Cell::Real(ffi::sqlite3_column_double(stmt, i)),
            ffi::SQLITE_TEXT => {
                let text = ffi::sqlite3_column_text(stmt, i);
                let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                let bytes = if text.is_null() || len == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(text, len)
                };
                match std::str::from_utf8(bytes) {
                    Ok(text) => Cell::Text(text.to_owned()),
                    Err(_) => Cell::Blob(bytes.to_vec()),
                }
            }
            ffi::SQLITE_BLOB => {
                let blob = ffi::sqlite3_column_blob(stmt, i).cast::<u8>();
                let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                if blob.is_null() || len == 0 {
                    Cell::Blob(Vec::new())
                } else {
                    Cell::Blob(std::slice::from_raw_parts(blob, len).to_vec())
                }
            }
            _ => Cell::Null,
        }
    }
}
