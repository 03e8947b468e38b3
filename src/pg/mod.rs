//! The PostgreSQL implementation of the repository traits.
//!
//! One file per repository. Each holds its SQL next to the code that runs
//! it; every statement is prepared through the connection's statement cache
//! (or, behind a transaction-mode pooler, sent unnamed with declared
//! parameter types), names its columns, takes parameters only, and does its
//! work in one round trip (`RETURNING` instead of a read-back). Status
//! changes check the state machine inside the UPDATE, on the locked row.

mod execution;
mod jsonb;
mod param;
mod queue;
mod task;
mod transaction;
mod user;

pub use execution::PgExecutionRepository;
pub use queue::{__queue_sql, PgExecutionQueue};
pub use task::PgTaskRepository;
pub use user::PgUserRepository;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::db::{Database, PooledClient};
use crate::error::{Error, Result};
use crate::model::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest, Timestamp};
use crate::tx::TxInner;
pub(crate) use param::Param;

/// Where a repository runs its statements: a connection checked out of the
/// pool per call, or the one connection of a transaction.
#[derive(Debug, Clone)]
enum Source {
    Pool(Database),
    Tx(Arc<TxInner>),
}

impl Source {
    /// How much of an execution's stdout and stderr is stored.
    fn max_output_bytes(&self) -> usize {
        match self {
            Source::Pool(db) => db.config().max_output_bytes,
            Source::Tx(tx) => tx.max_output_bytes,
        }
    }

    async fn conn(&self) -> Result<Conn<'_>> {
        match self {
            Source::Pool(db) => Ok(Conn::Pooled(PoolConn {
                db,
                primary: Some(db.client().await?),
                replacement: OnceLock::new(),
                busy: AtomicBool::new(false),
                in_transaction: AtomicBool::new(false),
                retire: AtomicBool::new(false),
            })),
            Source::Tx(tx) => {
                tx.client()?;
                Ok(Conn::Tx(TxConn {
                    tx,
                    busy: AtomicBool::new(false),
                }))
            }
        }
    }
}

/// A connection for one repository call, and the one place statements are
/// run: every query of the repositories goes through [`Conn::query`] and its
/// siblings, which prepare through the connection's statement cache, or,
/// behind a transaction-mode pooler
/// ([`PoolerMode::Transaction`](crate::PoolerMode::Transaction)), send the
/// statement unnamed with its parameters' declared types ([`Param`]) in one
/// round trip, leaving nothing on the server connection for the next
/// client of the pooler to meet. Nothing is cached then, so nothing goes
/// stale.
///
/// A cached statement can go stale when another instance migrates the
/// schema underneath it: the server answers 0A000 ("cached plan must not
/// change result type"), 26000, 42P01 or 42703 at execution, before the
/// statement had any effect. Then the connection's cache is cleared and,
/// outside a transaction, the statement is prepared and run once more.
/// Inside a transaction the error has already aborted it, so the error is
/// returned (and is retryable: [`Error::is_retryable`]); the cleared cache
/// makes the next attempt succeed. A server session whose own cached plans
/// went stale (42804 from a trigger's plan after a column changed type) is
/// closed, and outside a transaction the statement runs again on a fresh
/// connection.
// Lives on the stack of one call; boxing the pooled variant would cost an
// allocation per call to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
enum Conn<'a> {
    Pooled(PoolConn<'a>),
    Tx(TxConn<'a>),
}

/// A repository call's use of a transaction's connection. Armed while a
/// statement is in flight: if the call's future is dropped then (a timeout
/// or `select!` inside the transaction's closure), the statement may still
/// take effect, so the transaction is marked abandoned and will roll back
/// rather than commit what the caller gave up on.
struct TxConn<'a> {
    tx: &'a TxInner,
    busy: AtomicBool,
}

impl std::ops::Deref for TxConn<'_> {
    type Target = TxInner;

    fn deref(&self) -> &TxInner {
        self.tx
    }
}

impl Drop for TxConn<'_> {
    fn drop(&mut self) {
        if *self.busy.get_mut() {
            self.tx.abandon();
        }
    }
}

/// The pooled connection of one repository call.
///
/// Armed from before a statement's first byte is sent until its whole
/// answer has arrived: if the call's future is dropped in between (a
/// timeout, a `select!`, a cancelled request handler), the connection is
/// closed and its statement cancelled on the server, never returned to the
/// pool with a statement still running.
struct PoolConn<'a> {
    db: &'a Database,
    primary: Option<PooledClient>,
    /// The fresh connection that replaced `primary` after its server
    /// session went stale.
    replacement: OnceLock<PooledClient>,
    busy: AtomicBool,
    /// Inside a transaction the call opened ([`Conn::begin`]): armed until
    /// it ends.
    in_transaction: AtomicBool,
    /// The server refused a write as read-only: the connection, and the
    /// pool's idle ones, are closed when the call ends
    /// ([`crate::db::retire_read_only`]).
    retire: AtomicBool,
}

impl PoolConn<'_> {
    fn client(&self) -> Result<&PooledClient> {
        // `primary` is taken only by `drop`, so this never fails; answered
        // as an error rather than trusted.
        self.replacement
            .get()
            .or(self.primary.as_ref())
            .ok_or_else(|| Error::unavailable("the call's connection was already released", None))
    }
}

impl Drop for PoolConn<'_> {
    fn drop(&mut self) {
        let busy = *self.busy.get_mut() || *self.in_transaction.get_mut();
        let retire = *self.retire.get_mut();
        let route = || self.db.cancel_route();
        match (self.replacement.take(), self.primary.take()) {
            (Some(replacement), stale) => {
                if let Some(stale) = stale {
                    crate::db::discard(stale, route());
                }
                if retire {
                    crate::db::retire_read_only(replacement, route());
                } else if busy {
                    crate::db::discard(replacement, route());
                }
            }
            (None, Some(primary)) if retire => crate::db::retire_read_only(primary, route()),
            (None, Some(primary)) if busy => crate::db::discard(primary, route()),
            _ => {}
        }
    }
}

pub(crate) type Params<'a> = &'a [&'a dyn Param];

/// The values of `params`, as the driver takes them for a named statement.
fn values<'a>(params: Params<'a>) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_sql()).collect()
}

/// The values of `params` with their declared types, for an unnamed
/// statement.
fn typed<'a>(params: Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|p| (p.as_sql(), p.param_type()))
        .collect()
}

impl Conn<'_> {
    fn client(&self) -> Result<&PooledClient> {
        match self {
            Conn::Pooled(pooled) => pooled.client(),
            Conn::Tx(tx) => tx.client(),
        }
    }

    /// Whether statements go out unnamed (behind a transaction-mode
    /// pooler) rather than prepared through the statement cache.
    fn unnamed(&self) -> bool {
        match self {
            Conn::Pooled(pooled) => !pooled.db.config().pooler.named_statements(),
            Conn::Tx(tx) => tx.unnamed,
        }
    }

    /// A `WARN` event for a statement slower than
    /// [`DbConfig::slow_statement`](crate::DbConfig::slow_statement): its
    /// duration and SQL text, never its parameters.
    fn note_if_slow(&self, sql: &str, took: Duration) {
        let threshold = match self {
            Conn::Pooled(pooled) => pooled.db.config().slow_statement,
            Conn::Tx(tx) => tx.slow_statement,
        };
        if threshold.is_some_and(|limit| took > limit) {
            tracing::warn!(took_ms = took.as_millis() as u64, sql, "slow statement");
        }
    }

    fn set_busy(&self, busy: bool) {
        match self {
            Conn::Pooled(pooled) => pooled.busy.store(busy, Ordering::Release),
            Conn::Tx(tx) => tx.busy.store(busy, Ordering::Release),
        }
    }

    /// Runs `run` with the cached statement for `sql` (`None` when
    /// statements go out unnamed), healing a stale cache or session once
    /// (see the type's docs).
    async fn with_statement<'s, T, F, Fut>(&'s self, sql: &str, run: F) -> Result<T>
    where
        F: Fn(&'s PooledClient, Option<Statement>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 's,
    {
        let unnamed = self.unnamed();
        // A call may meet both in turn: its cached statement, then the
        // session's trigger plans.
        let (mut healed_cache, mut healed_session) = (false, false);
        loop {
            let client = self.client()?;
            self.set_busy(true);
            let started = Instant::now();
            // Boxed: the driver's futures (prepare, then the statement)
            // are large, and inline they would size every call's future and
            // be copied into each enclosing one.
            let work = Box::pin(async {
                if unnamed {
                    run(client, None).await
                } else {
                    match client.prepare_cached(sql).await {
                        Ok(stmt) => run(client, Some(stmt)).await,
                        Err(err) => Err(err),
                    }
                }
            });
            // Still armed when it gives up: the connection is closed (in a
            // transaction, the transaction abandoned), as for a dropped call.
            let result = self.within_deadline(work).await?;
            self.set_busy(false);
            self.note_if_slow(sql, started.elapsed());
            if let (Conn::Tx(tx), Ok(_)) = (self, &result) {
                tx.touch();
            }
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if let Conn::Pooled(pooled) = self
                && crate::error::is_read_only_refusal(&err)
            {
                pooled.retire.store(true, Ordering::Release);
            }
            // An unnamed statement is parsed afresh each time: no cache to
            // go stale.
            let stale_cache = !unnamed && is_stale_statement(&err);
            let stale_session = is_stale_session(&err);
            if stale_cache {
                tracing::debug!(error = %err, "stale cached statement; clearing the connection's cache");
                client.statement_cache.clear();
            }
            match self {
                // Inside a transaction the call opened (`begin`), the failed
                // statement aborted it: nothing to rerun.
                Conn::Pooled(pooled) if pooled.in_transaction.load(Ordering::Acquire) => {
                    return Err(err.into());
                }
                Conn::Pooled(_) if !healed_cache && stale_cache => healed_cache = true,
                Conn::Pooled(pooled) if !healed_session && stale_session => {
                    // The schema change that made this session stale made
                    // every session of the pool stale: close the idle ones,
                    // so the checkout below opens a fresh session (those in
                    // use are replaced when they meet it, as this one is).
                    tracing::debug!(error = %err, "stale server session; replacing the pool's connections");
                    pooled.db.pool().retain(|_, _| false);
                    // Boxed: a checkout's future is large (the pool's, with
                    // connecting and TLS inside), and inline it would size
                    // every statement's future, and so every call's, for
                    // this rare path.
                    let fresh = Box::pin(pooled.db.client()).await?;
                    // The stale one is closed when the call ends.
                    let _ = pooled.replacement.set(fresh);
                    healed_session = true;
                }
                Conn::Pooled(pooled) if stale_session => {
                    // The replacement met a stale session too (another
                    // caller returned one to the pool meanwhile): it is
                    // closed when the call ends, and the caller may retry.
                    pooled.busy.store(true, Ordering::Release);
                    return Err(err.into());
                }
                Conn::Tx(tx) => {
                    // Explained before the transaction counts as active again.
                    let err = tx.explain(err.into());
                    tx.touch();
                    return Err(err);
                }
                _ => return Err(err.into()),
            }
        }
    }

    async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.with_statement(sql, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.query(&stmt, &values(params)).await,
                None => client.query_typed(sql, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        self.with_statement(sql, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.query_opt(&stmt, &values(params)).await,
                None => client.query_typed_opt(sql, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.with_statement(sql, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.query_one(&stmt, &values(params)).await,
                None => client.query_typed_one(sql, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.with_statement(sql, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.execute(&stmt, &values(params)).await,
                None => client.execute_typed(sql, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    /// Runs a simple-protocol statement (transaction control), armed like
    /// the others.
    async fn batch(&self, sql: &str) -> Result<()> {
        self.set_busy(true);
        let result = self
            .within_deadline(self.client()?.batch_execute(sql))
            .await?;
        self.set_busy(false);
        Ok(result?)
    }

    /// `work`'s answer, or [`TimeoutKind::NoAnswer`](crate::TimeoutKind::NoAnswer)
    /// when the server stops answering ([`crate::tx::within_deadline`]).
    async fn within_deadline<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        let deadline = match self {
            Conn::Pooled(pooled) => pooled.db.config().answer_deadline(),
            Conn::Tx(tx) => tx.answer_deadline,
        };
        crate::tx::within_deadline(deadline, work).await
    }

    /// Opens a transaction for a repository call that needs several
    /// statements, unless the call already runs in one. The connection
    /// stays armed until [`end`](Self::end): dropped in between, it is
    /// closed, never pooled mid-transaction.
    async fn begin(&self) -> Result<()> {
        if let Conn::Pooled(pooled) = self {
            pooled.in_transaction.store(true, Ordering::Release);
            self.batch(&pooled.db.config().begin_sql("BEGIN")).await?;
        }
        Ok(())
    }

    /// Ends what [`begin`](Self::begin) opened: commits if `result` is `Ok`,
    /// else rolls back; returns `result`, or the failure to commit.
    async fn end<T>(&self, result: Result<T>) -> Result<T> {
        let Conn::Pooled(pooled) = self else {
            return result;
        };
        if pooled.busy.load(Ordering::Acquire) {
            // A statement gave up waiting for its answer and is still in
            // flight: a ROLLBACK would wait behind it as long again. The
            // connection is closed on drop, which rolls back.
            return result;
        }
        let finish = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.batch(finish).await;
        // A failed COMMIT ends the transaction too, as long as the
        // connection itself is alive; a dead one is discarded on drop.
        if ended.is_ok() || !self.client()?.is_closed() {
            pooled.in_transaction.store(false, Ordering::Release);
        }
        match (result, ended) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(err)) => Err(err),
            (Err(err), _) => Err(err),
        }
    }
}

/// A failed statement's error kind and SQLSTATE, as fields of an event in
/// the current span (the repository call's): a failed call's span carries
/// them in a form a log pipeline can filter on, not only in the error text.
fn note_failure(err: &Error) {
    tracing::debug!(
        error.kind = err.kind(),
        error.sqlstate = err.sqlstate().map(SqlState::code),
        "statement failed"
    );
}

/// Whether a server session's own cached plans went stale: PL/pgSQL (the
/// crate's triggers) refuses a plan whose parameter types changed (42804).
/// The crate's statements fix their parameter types when prepared, so they
/// never raise it otherwise.
fn is_stale_session(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::DATATYPE_MISMATCH)
}

/// Runs one query on a pooled connection of `db` through the repositories'
/// executor ([`Conn`]: armed while in flight, healing stale statements), for
/// the crate's modules outside `pg` (the polling event stream).
pub(crate) async fn query_pooled(db: &Database, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let source = Source::Pool(db.clone());
    let conn = source.conn().await?;
    conn.query(sql, params).await
}

/// An entity's columns, as the crate's statements return them: one after
/// another in this order, possibly after or before columns of the
/// statement's own. Rows are read by position, found once per statement
/// (the rows of one statement share their columns) rather than by a name
/// lookup per column and row.
pub(super) struct Columns {
    /// `"user"`, `"task"` or `"execution"`, for errors.
    pub(super) entity: &'static str,
    /// In the order of the entity's `columns!()` (a unit test holds them
    /// to it) and of the fields its reader reads.
    pub(super) names: &'static [&'static str],
}

impl Columns {
    /// Where these columns start in the rows of `row`'s statement: a
    /// statement that does not return them all, in order, is an
    /// [`Error::Decode`] naming the first one missing, not a misread.
    fn locate(&'static self, row: &Row) -> Result<usize> {
        let have = row.columns();
        let starts_here = |start: usize| {
            have.len() >= start + self.names.len()
                && have[start..]
                    .iter()
                    .zip(self.names)
                    .all(|(column, name)| column.name() == *name)
        };
        (0..have.len())
            .find(|&start| starts_here(start))
            .ok_or_else(|| Error::Decode {
                entity: self.entity,
                column: self.names.first().copied().unwrap_or_default(),
                id: None,
                source: "the statement did not return the entity's columns in order".into(),
            })
    }

    /// A reader of one row, found at `start` by [`locate`](Self::locate)
    /// on a row of the same statement.
    fn reader<'r>(&'static self, row: &'r Row, start: usize) -> RowReader<'r> {
        RowReader {
            row,
            columns: self,
            start,
            next: 0,
        }
    }

    /// Reads one row with `read`.
    fn read_one<T>(&'static self, row: &Row, read: Read<T>) -> Result<T> {
        read(&mut self.reader(row, self.locate(row)?))
    }

    /// Reads every row of one statement with `read`, locating the columns
    /// once.
    fn read_all<T>(&'static self, rows: &[Row], read: Read<T>) -> Result<Vec<T>> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let start = self.locate(first)?;
        rows.iter()
            .map(|row| read(&mut self.reader(row, start)))
            .collect()
    }
}

/// `a` then `b`, at compile time (`N` must be `A + B`), for a statement
/// whose rows carry an entity's columns and more.
const fn joined<const A: usize, const B: usize, const N: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; N] {
    assert!(A + B == N, "N must be A + B");
    let mut out = [""; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Reads one entity from a [`RowReader`], its fields in the order of its
/// [`Columns`].
pub(super) type Read<T> = fn(&mut RowReader<'_>) -> Result<T>;

/// Reads the columns of one row of an entity, in order and fallibly: a
/// value the crate cannot represent (written by someone else) becomes
/// [`Error::Decode`] naming the row's id and the column, never a panic or
/// a default.
pub(super) struct RowReader<'r> {
    row: &'r Row,
    columns: &'static Columns,
    start: usize,
    next: usize,
}

impl<'r> RowReader<'r> {
    /// The next column's value.
    fn next<T: tokio_postgres::types::FromSql<'r>>(&mut self) -> Result<T> {
        let index = self.next;
        self.next += 1;
        self.row
            .try_get(self.start + index)
            .map_err(|source| Error::Decode {
                entity: self.columns.entity,
                column: self.columns.names.get(index).copied().unwrap_or_default(),
                id: self
                    .row
                    .try_get::<_, Uuid>(self.start)
                    .ok()
                    .map(|id| id.to_string()),
                source: Box::new(source),
            })
    }
}

/// Whether the server refused a cached statement because the schema changed
/// under it (see [`Conn`]).
fn is_stale_statement(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|code| {
        *code == SqlState::FEATURE_NOT_SUPPORTED
            || *code == SqlState::INVALID_SQL_STATEMENT_NAME
            || *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::UNDEFINED_COLUMN
    })
}

/// The page size a request asks for, with the default and the cap applied.
fn page_limit(request: &PageRequest) -> Result<i64> {
    match request.limit {
        Some(0) => Err(Error::validation("limit", "must be at least 1")),
        Some(n) => Ok(i64::from(n.min(MAX_PAGE_LIMIT))),
        None => Ok(i64::from(DEFAULT_PAGE_LIMIT)),
    }
}

/// Which list a cursor belongs to; a cursor of one entity is refused by the
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorKind {
    User = 1,
    Task = 2,
    Execution = 3,
}

/// The sort key of the last row of a page. Tasks sort by priority first;
/// users and executions leave it 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keyset {
    priority: i32,
    created_at: Timestamp,
    id: Uuid,
}

/// The list a cursor belongs to: the entity and a hash of the list's name
/// and filter. A cursor of `list_by_user(a)` is refused by
/// `list_by_user(b)`, by `list` and by `search_by_metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListScope {
    kind: CursorKind,
    list: u32,
}

impl ListScope {
    /// `name` names the list (`"tasks.by_user"`); `filter` is its filter
    /// value's bytes (empty for an unfiltered list).
    fn new(kind: CursorKind, name: &str, filter: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + 1 + filter.len());
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(filter);
        ListScope {
            kind,
            list: checksum(&bytes),
        }
    }
}

const CURSOR_VERSION: u8 = 2;
const CURSOR_BYTES: usize = 1 + 1 + 4 + 4 + 8 + 16 + 4;

/// Hex of version, kind, list, priority, created_at (µs), id and a
/// checksum of those. The checksum catches edits and truncation, so a
/// mangled cursor is a validation error rather than a silently wrong page;
/// it is not a signature (a cursor only ever selects rows the caller may
/// list anyway).
fn encode_cursor(scope: ListScope, key: &Keyset) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = Vec::with_capacity(CURSOR_BYTES);
    bytes.push(CURSOR_VERSION);
    bytes.push(scope.kind as u8);
    bytes.extend_from_slice(&scope.list.to_be_bytes());
    bytes.extend_from_slice(&key.priority.to_be_bytes());
    bytes.extend_from_slice(&key.created_at.unix_micros().to_be_bytes());
    bytes.extend_from_slice(key.id.as_bytes());
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_be_bytes());
    let mut text = String::with_capacity(CURSOR_BYTES * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

fn decode_cursor(scope: ListScope, cursor: &str) -> Result<Keyset> {
    let invalid = || Error::validation("cursor", "is not a cursor returned by this list");
    if cursor.len() != CURSOR_BYTES * 2 || !cursor.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..CURSOR_BYTES)
        .map(|i| u8::from_str_radix(&cursor[2 * i..2 * i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let (body, sum) = bytes.split_at(CURSOR_BYTES - 4);
    let field = |range: std::ops::Range<usize>| body.get(range).ok_or_else(invalid);
    if checksum(body).to_be_bytes() != sum
        || body[0] != CURSOR_VERSION
        || body[1] != scope.kind as u8
        || field(2..6)? != scope.list.to_be_bytes()
    {
        return Err(invalid());
    }
    let priority = i32::from_be_bytes(field(6..10)?.try_into().map_err(|_| invalid())?);
    let micros = i64::from_be_bytes(field(10..18)?.try_into().map_err(|_| invalid())?);
    let id = Uuid::from_slice(field(18..34)?).map_err(|_| invalid())?;
    // A cursor forged with a valid checksum may name any instant: one the
    // server cannot store is refused here, not by the server's 22008.
    if micros < crate::validate::POSTGRES_MIN_UNIX_MICROS {
        return Err(invalid());
    }
    let created_at = Timestamp::from_unix_micros(micros).ok_or_else(invalid)?;
    Ok(Keyset {
        priority,
        created_at,
        id,
    })
}

/// FNV-1a, 32 bits.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// A checked [`PageRequest`]: rows to return, where to start, and the list
/// its cursors belong to.
#[derive(Debug, Clone, Copy)]
struct PageSpec {
    limit: i64,
    after: Option<Keyset>,
    scope: ListScope,
}

impl PageSpec {
    /// Checks the limit and decodes the cursor, before any I/O.
    fn parse(scope: ListScope, request: &PageRequest) -> Result<Self> {
        Ok(PageSpec {
            limit: page_limit(request)?,
            after: request
                .cursor
                .as_deref()
                .map(|c| decode_cursor(scope, c))
                .transpose()?,
            scope,
        })
    }

    /// `LIMIT` for the query: one extra row tells whether a next page exists.
    fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// What the three repositories share about their table: its name and
/// columns, the entity name errors use, its keyset order, and the
/// statements every table has, written out once in the entity's file.
struct Table {
    table: &'static str,
    /// The entity's columns, by name and in order, to read its rows.
    read: &'static Columns,
    /// The same columns as SQL text.
    columns: &'static str,
    cursor: CursorKind,
    /// Whether the order starts with `priority DESC` (tasks) before
    /// `created_at DESC, id DESC`.
    by_priority: bool,
    /// `SELECT` of the columns `WHERE id = $1`.
    get_sql: &'static str,
    /// `DELETE … WHERE id = $1`.
    delete_sql: &'static str,
}

/// The statements of one filtered list: built once per filter (a
/// `LazyLock` in the entity's file) rather than formatted on every call.
struct ListSql {
    /// The condition on `$1`, or `TRUE`; whether it takes a parameter.
    filtered: bool,
    /// The first page.
    first: String,
    /// A page after a cursor.
    after: String,
    /// `count(*)` of the rows matching.
    count: String,
}

impl Table {
    /// The scope of this table's list `name` filtered by `filter`.
    fn scope(&self, name: &str, filter: &[u8]) -> ListScope {
        ListScope::new(self.cursor, name, filter)
    }

    /// The row with primary key `id`; `NotFound` when there is none.
    async fn get_row<I>(&self, c: &Conn<'_>, id: I) -> Result<Row>
    where
        I: Param + std::fmt::Display,
    {
        c.query_opt(self.get_sql, &[&id])
            .await?
            .ok_or_else(|| Error::not_found(self.read.entity, id))
    }

    /// Deletes the row with primary key `id`; `NotFound` when there is none.
    async fn delete<I>(&self, c: &Conn<'_>, id: I) -> Result<()>
    where
        I: Param + std::fmt::Display,
    {
        match c.execute(self.delete_sql, &[&id]).await? {
            0 => Err(Error::not_found(self.read.entity, id)),
            _ => Ok(()),
        }
    }

    /// One page of the rows matching `list`'s filter, as `T`s.
    async fn page<T>(
        &self,
        c: &Conn<'_>,
        list: &ListSql,
        filter: Option<&dyn Param>,
        page: &PageSpec,
        read: Read<T>,
        key_of: fn(&T) -> Keyset,
    ) -> Result<Page<T>> {
        let rows = self.page_rows(c, list, filter, page).await?;
        // One undecodable row fails the page with its Decode error: a page
        // that silently skipped rows would hide them from every walk.
        Ok(into_page(self.read.read_all(&rows, read)?, page, key_of))
    }

    fn sort_columns(&self) -> &'static str {
        if self.by_priority {
            "priority, created_at, id"
        } else {
            "created_at, id"
        }
    }

    fn order_by(&self) -> &'static str {
        if self.by_priority {
            "ORDER BY priority DESC, created_at DESC, id DESC"
        } else {
            "ORDER BY created_at DESC, id DESC"
        }
    }

    /// The SELECT of one page: rows matching `filter_sql` (a condition on
    /// `$1`, or `TRUE`), strictly after the cursor's row when `after`, in
    /// list order, with `LIMIT` as the last parameter.
    fn page_sql(&self, filter_sql: &str, filter_params: usize, after: bool) -> String {
        let mut next = filter_params + 1;
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {filter_sql}",
            self.columns, self.table
        );
        if after {
            let keys = if self.by_priority { 3 } else { 2 };
            let placeholders: Vec<String> = (next..next + keys).map(|i| format!("${i}")).collect();
            next += keys;
            sql.push_str(&format!(
                " AND ({}) < ({})",
                self.sort_columns(),
                placeholders.join(", ")
            ));
        }
        sql.push_str(&format!(" {} LIMIT ${next}", self.order_by()));
        sql
    }

    /// The SELECT of one page through `function` (migrations V7, V8), which
    /// takes the filter value (when `filtered`), the cursor's keys (NULL
    /// for the first page) and the row count, in that order, and walks the
    /// list's index under planner settings that leave no other plan. The
    /// function returns the rows in list order; the ORDER BY here says so
    /// rather than relying on it (a sort of one page).
    fn page_call_sql(&self, function: &str, filtered: bool, after: bool) -> String {
        let keys = if self.by_priority { 3 } else { 2 };
        let mut args: Vec<String> = Vec::with_capacity(keys + 2);
        if filtered {
            args.push("$1".to_owned());
        }
        let mut next = args.len() + 1;
        for _ in 0..keys {
            if after {
                args.push(format!("${next}"));
                next += 1;
            } else {
                args.push("NULL".to_owned());
            }
        }
        args.push(format!("${next}"));
        format!(
            "SELECT {} FROM {function}({}) {}",
            self.columns,
            args.join(", "),
            self.order_by()
        )
    }

    /// The statements of the list filtered by `filter_sql` (a condition on
    /// `$1`, or `TRUE`), for its entity's `LazyLock`: the page as one
    /// SELECT, which leaves its plan to the planner (metadata search, whose
    /// best plan depends on how many rows match).
    fn list_sql(&self, filter_sql: &str) -> ListSql {
        let filter_params = usize::from(filter_sql.contains("$1"));
        ListSql {
            filtered: filter_params > 0,
            first: self.page_sql(filter_sql, filter_params, false),
            after: self.page_sql(filter_sql, filter_params, true),
            count: self.count_sql(filter_sql),
        }
    }

    /// The statements of the list filtered by `filter_sql`, its pages read
    /// through the page function `function` (see
    /// [`page_call_sql`](Self::page_call_sql)), so that a page reads its
    /// rows and no more whatever the statistics say.
    fn list_sql_via(&self, filter_sql: &str, function: &str) -> ListSql {
        let filtered = filter_sql.contains("$1");
        ListSql {
            filtered,
            first: self.page_call_sql(function, filtered, false),
            after: self.page_call_sql(function, filtered, true),
            count: self.count_sql(filter_sql),
        }
    }

    fn count_sql(&self, filter_sql: &str) -> String {
        format!("SELECT count(*) FROM {} WHERE {filter_sql}", self.table)
    }

    /// The rows of one page (see [`page_sql`](Self::page_sql)). Strictly
    /// after the cursor's row, so rows inserted meanwhile neither repeat nor
    /// shift rows already seen.
    async fn page_rows(
        &self,
        c: &Conn<'_>,
        list: &ListSql,
        filter: Option<&dyn Param>,
        page: &PageSpec,
    ) -> Result<Vec<Row>> {
        debug_assert_eq!(list.filtered, filter.is_some());
        let mut params: Vec<&dyn Param> = Vec::with_capacity(5);
        params.extend(filter);
        let sql = match &page.after {
            Some(key) => {
                if self.by_priority {
                    params.push(&key.priority);
                }
                params.extend([&key.created_at as &dyn Param, &key.id]);
                &list.after
            }
            None => &list.first,
        };
        let fetch = page.fetch();
        params.push(&fetch);
        c.query(sql, &params).await
    }

    /// `count(*)` of the rows matching `list`'s filter.
    async fn count(&self, c: &Conn<'_>, list: &ListSql, filter: Option<&dyn Param>) -> Result<i64> {
        let params: Vec<&dyn Param> = filter.into_iter().collect();
        let row = c.query_one(&list.count, &params).await?;
        Ok(row.try_get(0)?)
    }
}

/// The SQL a list method of the repositories runs, for the plan tests that
/// prove each list is an index range scan. `table` is `users`, `tasks` or
/// `task_executions`; `filter_sql` one the repositories use (`TRUE`,
/// `user_id = $1`, `status = $1`, `task_id = $1`, `metadata @> $1`).
/// Not part of the API.
#[doc(hidden)]
pub fn __list_sql(table: &str, filter_sql: &str, after_cursor: bool) -> Option<String> {
    let list: &ListSql = match (table, filter_sql) {
        ("users", "TRUE") => &user::LIST,
        ("tasks", "TRUE") => &task::LIST,
        ("tasks", "user_id = $1") => &task::LIST_BY_USER,
        ("tasks", "status = $1") => &task::LIST_BY_STATUS,
        ("tasks", "metadata @> $1") => &task::SEARCH_BY_METADATA,
        ("task_executions", "TRUE") => &execution::LIST,
        ("task_executions", "task_id = $1") => &execution::LIST_BY_TASK,
        ("task_executions", "status = $1") => &execution::LIST_BY_STATUS,
        _ => return None,
    };
    Some(
        if after_cursor {
            &list.after
        } else {
            &list.first
        }
        .clone(),
    )
}

/// `a, b` → `t.a, t.b`, for `RETURNING` in an UPDATE … FROM where column
/// names are ambiguous.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds a page from up to `limit + 1` rows: the extra row only says that
/// another page exists.
fn into_page<T>(mut items: Vec<T>, page: &PageSpec, key_of: impl Fn(&T) -> Keyset) -> Page<T> {
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|last| encode_cursor(page.scope, &key_of(last)))
    } else {
        None
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Keyset {
        Keyset {
            priority: 7,
            created_at: Timestamp::now(),
            id: Uuid::now_v7(),
        }
    }

    fn tasks(filter: &[u8]) -> ListScope {
        ListScope::new(CursorKind::Task, "list_by_user", filter)
    }

    /// Rows are read by position: each entity's names must be its SQL
    /// column list, in order.
    #[test]
    fn column_names_are_the_sql_column_lists() {
        for table in [&user::TABLE, &task::TABLE, &execution::TABLE] {
            let sql: Vec<&str> = table.columns.split(',').map(str::trim).collect();
            assert_eq!(sql, table.read.names, "{}", table.table);
        }
    }

    #[test]
    fn cursors_round_trip() {
        let k = key();
        let c = encode_cursor(tasks(b"a"), &k);
        assert_eq!(decode_cursor(tasks(b"a"), &c).unwrap(), k);
    }

    #[test]
    fn tampered_cursors_are_validation_errors() {
        let c = encode_cursor(tasks(b"a"), &key());
        let mut flipped = c.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            String::new(),
            "zz".repeat(CURSOR_BYTES),
            c[..c.len() - 2].to_owned(),
            format!("{c}00"),
            flipped,
            "é".repeat(CURSOR_BYTES),
        ] {
            let err = decode_cursor(tasks(b"a"), &bad).unwrap_err();
            assert_eq!(err.field(), Some("cursor"), "{bad:?}");
        }
        // A cursor of another list, or of the same list with another
        // filter, or of another entity, is refused.
        for other in [
            tasks(b"b"),
            ListScope::new(CursorKind::Task, "list", b""),
            ListScope::new(CursorKind::User, "list_by_user", b"a"),
        ] {
            let foreign = encode_cursor(other, &key());
            assert!(decode_cursor(tasks(b"a"), &foreign).is_err());
        }
    }

    #[test]
    fn forged_cursors_out_of_the_servers_range_are_refused() {
        let mut k = key();
        k.created_at = Timestamp::from_unix_micros(crate::validate::POSTGRES_MIN_UNIX_MICROS - 1)
            .expect("representable");
        let forged = encode_cursor(tasks(b"a"), &k);
        let err = decode_cursor(tasks(b"a"), &forged).unwrap_err();
        assert_eq!(err.field(), Some("cursor"));
    }

    #[test]
    fn limits() {
        assert_eq!(page_limit(&PageRequest::default()).unwrap(), 20);
        assert_eq!(page_limit(&PageRequest::first(1)).unwrap(), 1);
        assert_eq!(page_limit(&PageRequest::first(100)).unwrap(), 100);
        assert_eq!(page_limit(&PageRequest::first(101)).unwrap(), 100);
        assert_eq!(
            page_limit(&PageRequest::first(0)).unwrap_err().field(),
            Some("limit")
        );
    }

    #[test]
    fn pages_know_whether_more_follow() {
        let keys: Vec<Keyset> = (0..3).map(|_| key()).collect();
        let scope = ListScope::new(CursorKind::User, "list", b"");
        let spec = |limit| PageSpec {
            limit,
            after: None,
            scope,
        };
        let page = into_page(keys.clone(), &spec(2), |k| *k);
        assert_eq!(page.items.len(), 2);
        let next = decode_cursor(scope, page.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(next, keys[1]);
        let last = into_page(keys, &spec(3), |k| *k);
        assert_eq!(last.next_cursor, None);
    }
}
