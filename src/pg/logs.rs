//! [`LogRepository`] and [`ScopedLogRepository`] on PostgreSQL, and the
//! log partitions' maintenance (migration V13; SQL in
//! `src/queries/logs.sql`).

use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

use super::pages::{CursorKind, ListScope, checksum, page_limit};
use super::queue::refusal;
use super::{Columns, Conn, RowReader, Source, counted, repo_span, traced};
use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{
    ExecutionId, ExecutionStatus, LogAppend, LogLine, LogMaintenanceReport, LogMatch,
    LogPartitionUnit, LogRead, LogRetention, LogScope, NewLogLine, Page, PageRequest, TaskId,
    Timestamp, UserId,
};
use crate::queries;
use crate::repo::{LogRepository, MAX_READ_LINES, ScopedLogRepository};
use crate::tx::TxInner;
use crate::validate;

/// A line's columns, to read lines with.
static LINE_COLUMNS: Columns = Columns {
    entity: "log line",
    names: &queries::columns::LOG_LINE,
};

fn read_line(r: &mut RowReader<'_>) -> Result<LogLine> {
    let execution_id: ExecutionId = r.next()?;
    let seq: i64 = r.next()?;
    let seq = u64::try_from(seq).map_err(|_| {
        Error::decode(
            "log line",
            "seq",
            Some(execution_id.to_string()),
            format!("{seq} is negative"),
        )
    })?;
    Ok(LogLine {
        execution_id,
        seq,
        stream: r.next()?,
        logged_at: r.next()?,
        text: r.next()?,
    })
}

/// The lines of `rows` (an `after` or `tail` statement's), and the
/// execution's status; `NotFound` when there is no row at all.
fn read_lines(id: ExecutionId, rows: &[Row]) -> Result<LogRead> {
    let Some(first) = rows.first() else {
        return Err(Error::not_found("execution", id));
    };
    let status: ExecutionStatus = first.try_get("execution_status")?;
    let start = LINE_COLUMNS.locate(first)?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        // The LEFT JOIN's one row of an execution without lines.
        if row.try_get::<_, Option<Uuid>>(start)?.is_none() {
            continue;
        }
        lines.push(read_line(&mut LINE_COLUMNS.reader(row, start))?);
    }
    Ok(LogRead::new(status, lines))
}

/// 1..=[`MAX_READ_LINES`], or `Validation` on `field`.
fn read_limit(field: &'static str, n: u32) -> Result<i64> {
    if n == 0 || n > MAX_READ_LINES {
        return Err(Error::validation(
            field,
            format!("must be 1..={MAX_READ_LINES}, not {n}"),
        ));
    }
    Ok(i64::from(n))
}

/// `voidrunner_log_chunk_query`'s refusal of a query with nothing to look
/// up (only negations) as the `Validation` it is; other errors as they are.
fn nothing_to_look_up(err: Error) -> Error {
    let refused = err.sqlstate() == Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE)
        && err.to_string().contains("a log search needs a word");
    if refused {
        Error::validation(
            "query",
            "needs a word that is not negated in each of its alternatives",
        )
    } else {
        err
    }
}

/// Where a page of lines ends: the execution's created_at, the execution
/// and the line's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogKey {
    created_at: Timestamp,
    execution: Uuid,
    seq: i64,
}

const LOG_CURSOR_VERSION: u8 = 1;
const LOG_CURSOR_BYTES: usize = 1 + 1 + 4 + 8 + 16 + 8 + 4;

/// Hex of version, kind, list, created_at (µs), execution, seq and a
/// checksum of those: the lists' cursors (`pages.rs`) with a line's key.
fn encode_log_cursor(scope: ListScope, key: &LogKey) -> String {
    let mut bytes = Vec::with_capacity(LOG_CURSOR_BYTES);
    bytes.push(LOG_CURSOR_VERSION);
    bytes.push(scope.kind as u8);
    bytes.extend_from_slice(&scope.list.to_be_bytes());
    bytes.extend_from_slice(&key.created_at.unix_micros().to_be_bytes());
    bytes.extend_from_slice(key.execution.as_bytes());
    bytes.extend_from_slice(&key.seq.to_be_bytes());
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_be_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_log_cursor(scope: ListScope, cursor: &str) -> Result<LogKey> {
    let invalid = || Error::validation("cursor", "is not a cursor returned by this list");
    if cursor.len() != LOG_CURSOR_BYTES * 2 || !cursor.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..LOG_CURSOR_BYTES)
        .map(|i| u8::from_str_radix(&cursor[2 * i..2 * i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let (body, sum) = bytes.split_at(LOG_CURSOR_BYTES - 4);
    if checksum(body).to_be_bytes() != sum
        || body[0] != LOG_CURSOR_VERSION
        || body[1] != scope.kind as u8
        || body[2..6] != scope.list.to_be_bytes()
    {
        return Err(invalid());
    }
    let array = |range: std::ops::Range<usize>| -> Result<[u8; 8]> {
        body[range].try_into().map_err(|_| invalid())
    };
    let micros = i64::from_be_bytes(array(6..14)?);
    let execution = Uuid::from_slice(&body[14..30]).map_err(|_| invalid())?;
    let seq = i64::from_be_bytes(array(30..38)?);
    if micros < validate::POSTGRES_MIN_UNIX_MICROS || seq < 0 {
        return Err(invalid());
    }
    let created_at = Timestamp::from_unix_micros(micros).ok_or_else(invalid)?;
    Ok(LogKey {
        created_at,
        execution,
        seq,
    })
}

/// A checked page request of a log list.
struct LogPage {
    limit: i64,
    after: Option<LogKey>,
    scope: ListScope,
}

impl LogPage {
    fn parse(name: &str, filter: &[u8], request: &PageRequest) -> Result<Self> {
        let scope = ListScope::new(CursorKind::LogLine, name, filter);
        let limit = page_limit(request)?;
        let after = request
            .cursor
            .as_deref()
            .map(|c| decode_log_cursor(scope, c))
            .transpose()?;
        Ok(LogPage {
            limit,
            after,
            scope,
        })
    }

    /// `items` (one more than the limit when there is a next page) as a
    /// page, its cursor from the last item kept.
    fn page<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> LogKey) -> Page<T> {
        let more = items.len() as i64 > self.limit;
        items.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let next_cursor = if more {
            items
                .last()
                .map(|last| encode_log_cursor(self.scope, &key(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// The statements, over a pooled connection or a transaction.
pub(crate) mod sql {
    use super::*;

    pub(crate) async fn append_many(
        c: &Conn<'_>,
        appends: &[LogAppend],
    ) -> Result<Vec<Result<u64>>> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ExecutionId> = appends.iter().map(|a| a.execution_id).collect();
        let workers: Vec<&str> = appends.iter().map(|a| a.worker_id.as_str()).collect();
        let total: usize = appends.iter().map(|a| a.lines.len()).sum();
        let mut line_ids = Vec::with_capacity(total);
        let mut seqs = Vec::with_capacity(total);
        let mut streams = Vec::with_capacity(total);
        let mut times = Vec::with_capacity(total);
        let mut texts = Vec::with_capacity(total);
        for append in appends {
            for line in &append.lines {
                line_ids.push(append.execution_id);
                // Validated: at most i64::MAX.
                seqs.push(i64::try_from(line.seq).unwrap_or(i64::MAX));
                streams.push(line.stream.as_str());
                times.push(line.logged_at);
                texts.push(line.text.as_str());
            }
        }
        let rows = c
            .query(
                &queries::logs::APPEND,
                &[&ids, &workers, &line_ids, &seqs, &streams, &times, &texts],
            )
            .await?;
        if rows.len() != appends.len() {
            return Err(Error::unavailable(
                format!(
                    "append sent {} executions and got {} rows back",
                    appends.len(),
                    rows.len()
                ),
                None,
            ));
        }
        let mut results = Vec::with_capacity(rows.len());
        for (append, row) in appends.iter().zip(&rows) {
            let id = append.execution_id;
            let result = if row.try_get::<_, bool>("held")? {
                let n: i64 = row.try_get("appended")?;
                Ok(u64::try_from(n).unwrap_or(0))
            } else {
                Err(refusal(row, id, &append.worker_id)?)
            };
            results.push(result);
        }
        Ok(results)
    }

    pub(crate) async fn read_after(
        c: &Conn<'_>,
        id: ExecutionId,
        after: Option<i64>,
        limit: i64,
    ) -> Result<LogRead> {
        let after = after.unwrap_or(-1);
        let rows = c
            .query(&queries::logs::AFTER, &[&id, &after, &limit])
            .await?;
        read_lines(id, &rows)
    }

    pub(crate) async fn tail(c: &Conn<'_>, id: ExecutionId, limit: i64) -> Result<Vec<LogLine>> {
        let rows = c.query(&queries::logs::TAIL, &[&id, &limit]).await?;
        let mut lines = read_lines(id, &rows)?.lines;
        lines.reverse();
        Ok(lines)
    }

    pub(crate) async fn page(
        c: &Conn<'_>,
        id: ExecutionId,
        request: &PageRequest,
    ) -> Result<Page<LogLine>> {
        let page = LogPage::parse("logs.page", id.as_uuid().as_bytes(), request)?;
        let after = page.after.map(|k| k.seq);
        let read = read_after(c, id, after, page.limit + 1).await?;
        // One execution's page: its cursor is bound to the execution (the
        // list's scope) and needs only the seq; the time is a placeholder.
        Ok(page.page(read.lines, |line| LogKey {
            created_at: Timestamp::from(time::OffsetDateTime::UNIX_EPOCH),
            execution: line.execution_id.as_uuid(),
            seq: i64::try_from(line.seq).unwrap_or(i64::MAX),
        }))
    }

    pub(crate) async fn search(
        c: &Conn<'_>,
        scope: LogScope,
        query: &str,
        request: &PageRequest,
    ) -> Result<Page<LogMatch>> {
        let (statement, name, owner) = match scope {
            LogScope::Task(task) => (
                &queries::logs::SEARCH_TASK,
                "logs.search_task",
                task.as_uuid(),
            ),
            LogScope::User(user) => (
                &queries::logs::SEARCH_USER,
                "logs.search_user",
                user.as_uuid(),
            ),
        };
        let mut filter = owner.as_bytes().to_vec();
        filter.extend_from_slice(query.as_bytes());
        let page = LogPage::parse(name, &filter, request)?;
        let (at, execution, seq) = match page.after {
            Some(k) => (Some(k.created_at), Some(k.execution), Some(k.seq)),
            None => (None, None, None),
        };
        let fetch = page.limit + 1;
        let rows = c
            .query(statement, &[&owner, &query, &at, &execution, &seq, &fetch])
            .await
            .map_err(nothing_to_look_up)?;
        let start = match rows.first() {
            Some(first) => LINE_COLUMNS.locate(first)?,
            None => 0,
        };
        let mut matches = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let task_id: TaskId = row.try_get("task_id")?;
            let created_at: Timestamp = row.try_get("execution_created_at")?;
            let line = read_line(&mut LINE_COLUMNS.reader(row, start))?;
            keys.push(LogKey {
                created_at,
                execution: line.execution_id.as_uuid(),
                seq: i64::try_from(line.seq).unwrap_or(i64::MAX),
            });
            matches.push((LogMatch::new(task_id, line), keys.len() - 1));
        }
        let page_of = page.page(matches, |(_, i)| keys[*i]);
        Ok(Page {
            items: page_of.items.into_iter().map(|(m, _)| m).collect(),
            next_cursor: page_of.next_cursor,
        })
    }
}

/// [`LogRepository`] over the pool of a [`Database`], or inside a
/// [`Transaction`](crate::Transaction).
#[derive(Debug, Clone)]
pub struct PgLogRepository {
    source: Source,
}

impl PgLogRepository {
    /// A repository over `db`'s pool.
    pub fn new(db: Database) -> Self {
        PgLogRepository {
            source: Source::Pool(db),
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>) -> Self {
        PgLogRepository {
            source: Source::Tx(tx),
        }
    }
}

/// `at` moved `by` forward or back; `None` past what `time` holds.
fn shift(at: Timestamp, by: std::time::Duration, forward: bool) -> Option<Timestamp> {
    let by = time::Duration::try_from(by).ok()?;
    let at = at.as_offset_date_time();
    let moved = if forward {
        at.checked_add(by)
    } else {
        at.checked_sub(by)
    };
    moved.map(Timestamp::from)
}

/// A time in the `k`th range of width `unit` after the one holding `now`
/// (`None` past what `time` holds). Hours, days and weeks are fixed spans
/// in UTC; a month is not, so `now` plus `k` nominal months can skip a
/// short month (January 31st plus 31 days is in March): months are counted
/// from the first of `now`'s month.
fn ahead_of(now: Timestamp, unit: LogPartitionUnit, k: u32) -> Option<Timestamp> {
    if unit != LogPartitionUnit::Month {
        return shift(now, unit.nominal().checked_mul(k)?, true);
    }
    let now = now.as_offset_date_time().to_offset(time::UtcOffset::UTC);
    let months = i64::from(now.year()) * 12 + i64::from(u8::from(now.month())) - 1 + i64::from(k);
    let year = i32::try_from(months.div_euclid(12)).ok()?;
    let month = time::Month::try_from(u8::try_from(months.rem_euclid(12) + 1).ok()?).ok()?;
    let first = time::Date::from_calendar_date(year, month, 1).ok()?;
    Some(Timestamp::from(first.midnight().assume_utc()))
}

fn checked_seq(after: Option<u64>) -> Result<Option<i64>> {
    after
        .map(|seq| {
            i64::try_from(seq)
                .map_err(|_| Error::validation("after", format!("{seq} is more than {}", i64::MAX)))
        })
        .transpose()
}

/// How often an append over the pool is sent when its lines were routed
/// to a DEFAULT partition that got their partition meanwhile.
const ROUTED_ATTEMPTS: usize = 3;

/// Whether `err` is the refusal of a row routed to a DEFAULT log partition
/// while the maintenance attached the row's own partition: the statement
/// waited for the move's lock with the partitions it saw when it started,
/// and PostgreSQL checks the DEFAULT partition's new bound when it inserts.
/// Nothing of the statement was written; sent again, it sees the new
/// partition.
fn routed_to_stale_default(err: &Error) -> bool {
    // The server's error is not kept (its detail lists the row): its
    // message names the relation and the kind of constraint (the crate's
    // sessions read the server's default messages, English on every
    // packaged server, as for the statement timeout).
    let Error::CheckViolation {
        constraint: None,
        message: Some(message),
        not_null: false,
        ..
    } = err
    else {
        return false;
    };
    message.ends_with("violates partition constraint")
        && [
            "\"task_execution_logs_default\"",
            "\"task_execution_log_chunks_default\"",
        ]
        .iter()
        .any(|name| message.contains(name))
}

/// [`sql::append_many`], sent again (up to [`ROUTED_ATTEMPTS`]) when it
/// met a partition made meanwhile. Inside a transaction the statement's
/// failure ended the transaction's work, so it is not sent again there.
async fn append_routed(source: &Source, appends: &[LogAppend]) -> Result<Vec<Result<u64>>> {
    let conn = source.conn().await?;
    let mut attempt = 1;
    loop {
        match sql::append_many(&conn, appends).await {
            Err(err)
                if attempt < ROUTED_ATTEMPTS
                    && matches!(source, Source::Pool(_))
                    && routed_to_stale_default(&err) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[async_trait]
impl LogRepository for PgLogRepository {
    async fn append(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lines: Vec<NewLogLine>,
    ) -> Result<u64> {
        let append = LogAppend::new(execution_id, worker_id, lines);
        traced(
            counted(repo_span("log", "append"), append.lines.len()),
            async move {
                validate::log_append(&append)?;
                let mut results =
                    append_routed(&self.source, std::slice::from_ref(&append)).await?;
                results
                    .pop()
                    .unwrap_or_else(|| Err(Error::not_found("execution", execution_id)))
            },
        )
        .await
    }

    async fn append_many(&self, appends: Vec<LogAppend>) -> Result<Vec<Result<u64>>> {
        traced(
            counted(repo_span("log", "append_many"), appends.len()),
            async move {
                validate::log_appends(&appends)?;
                append_routed(&self.source, &appends).await
            },
        )
        .await
    }

    async fn page(&self, execution_id: ExecutionId, page: PageRequest) -> Result<Page<LogLine>> {
        traced(repo_span("log", "page"), async move {
            sql::page(&self.source.read_conn().await?, execution_id, &page).await
        })
        .await
    }

    async fn read_after(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<LogRead> {
        traced(repo_span("log", "read_after"), async move {
            let after = checked_seq(after)?;
            let limit = read_limit("limit", limit)?;
            sql::read_after(&self.source.read_conn().await?, execution_id, after, limit).await
        })
        .await
    }

    async fn tail(&self, execution_id: ExecutionId, lines: u32) -> Result<Vec<LogLine>> {
        traced(repo_span("log", "tail"), async move {
            let limit = read_limit("lines", lines)?;
            sql::tail(&self.source.read_conn().await?, execution_id, limit).await
        })
        .await
    }

    async fn search(
        &self,
        scope: LogScope,
        query: &str,
        page: PageRequest,
    ) -> Result<Page<LogMatch>> {
        traced(repo_span("log", "search"), async move {
            validate::log_query(query)?;
            sql::search(&self.source.read_conn().await?, scope, query, &page).await
        })
        .await
    }
}

/// [`ScopedLogRepository`] on PostgreSQL: [`PgLogRepository`]'s reads on a
/// scoped connection, so another user's execution is missing to the
/// statements and, for the application role, to row-level security.
#[derive(Debug, Clone)]
pub struct PgScopedLogRepository {
    source: Source,
    user: UserId,
}

impl PgScopedLogRepository {
    /// `user`'s logs over the pool.
    pub fn new(db: Database, user: UserId) -> Self {
        PgScopedLogRepository {
            source: Source::Pool(db),
            user,
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>, user: UserId) -> Self {
        Self::on(Source::Tx(tx), user)
    }

    pub(super) fn on(source: Source, user: UserId) -> Self {
        PgScopedLogRepository { source, user }
    }
}

#[async_trait]
impl ScopedLogRepository for PgScopedLogRepository {
    async fn page(&self, execution_id: ExecutionId, page: PageRequest) -> Result<Page<LogLine>> {
        traced(repo_span("log", "page"), async move {
            let conn = self.source.scoped_read_conn(self.user).await?;
            sql::page(&conn, execution_id, &page).await
        })
        .await
    }

    async fn read_after(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<LogRead> {
        traced(repo_span("log", "read_after"), async move {
            let after = checked_seq(after)?;
            let limit = read_limit("limit", limit)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            sql::read_after(&conn, execution_id, after, limit).await
        })
        .await
    }

    async fn tail(&self, execution_id: ExecutionId, lines: u32) -> Result<Vec<LogLine>> {
        traced(repo_span("log", "tail"), async move {
            let limit = read_limit("lines", lines)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            sql::tail(&conn, execution_id, limit).await
        })
        .await
    }

    async fn search(&self, query: &str, page: PageRequest) -> Result<Page<LogMatch>> {
        traced(repo_span("log", "search"), async move {
            validate::log_query(query)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            sql::search(&conn, LogScope::User(self.user), query, &page).await
        })
        .await
    }

    async fn search_task(
        &self,
        task_id: TaskId,
        query: &str,
        page: PageRequest,
    ) -> Result<Page<LogMatch>> {
        traced(repo_span("log", "search"), async move {
            validate::log_query(query)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            sql::search(&conn, LogScope::Task(task_id), query, &page).await
        })
        .await
    }
}

impl Database {
    /// The execution logs, over this database's pool.
    pub fn logs(&self) -> PgLogRepository {
        PgLogRepository::new(self.clone())
    }

    /// `user`'s execution logs, over this database's pool: what a request
    /// handler acting for one user reads logs through.
    pub fn scoped_logs(&self, user: UserId) -> PgScopedLogRepository {
        PgScopedLogRepository::new(self.clone(), user)
    }

    /// Keeps the log tables' partitions (migration V13) as `retention`
    /// says: makes the partitions of the current range and of
    /// `retention.ahead` ranges after it, moves lines appended before their
    /// partition existed out of the DEFAULT partitions (making theirs),
    /// and drops the partitions that ended `retention.keep` ago or more,
    /// whole. Run it from a periodic job (hourly is plenty for daily
    /// partitions); appends never fail for want of it, they wait in the
    /// DEFAULT partitions. An append that meets the move of its lines out
    /// of DEFAULT waits for it and is sent again over the pool; inside a
    /// [`Transaction`](crate::Transaction) it fails with
    /// `Error::CheckViolation` (the partition constraint of the DEFAULT
    /// partition), nothing written, and the transaction may be run again.
    ///
    /// Each partition is made or dropped in a statement of its own, giving
    /// up on a lock after 2 s (`Error::Timeout` with SQLSTATE 55P03, the
    /// partitions done so far kept): a long transaction on the log tables
    /// delays a drop, and a drop holds the appends for a moment. Needs the
    /// tables' owner (the role that migrates). `Validation` for a bad
    /// `retention`.
    pub async fn maintain_log_partitions(
        &self,
        retention: &LogRetention,
    ) -> Result<LogMaintenanceReport> {
        self.maintain_log_partitions_at(retention, None).await
    }

    /// [`maintain_log_partitions`](Self::maintain_log_partitions) as if the
    /// time were `at` (`None`: the server's): the partitions of `at`'s range
    /// and `retention.ahead` after it are made. For tests that cross a day
    /// without waiting for one, and for an operator who makes the
    /// partitions of a coming period by hand. Retention counts from `at`
    /// only when it is earlier than the server's time: a later `at` drops
    /// nothing the server's time would keep.
    pub async fn maintain_log_partitions_at(
        &self,
        retention: &LogRetention,
        at: Option<Timestamp>,
    ) -> Result<LogMaintenanceReport> {
        validate::log_retention(retention)?;
        if let Some(at) = at {
            validate::timestamp("at", at)?;
        }
        let source = Source::Pool(self.clone());
        let conn = source.conn().await?;
        let server_now: Timestamp = conn.query_one(&queries::logs::NOW, &[]).await?.try_get(0)?;
        let now = at.unwrap_or(server_now);
        let unit = retention.partition.as_str();
        let mut report = LogMaintenanceReport::default();
        let mut starts: Vec<Timestamp> = conn
            .query(&queries::logs::PARTITIONS_WAITING, &[&unit])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        for k in 0..=retention.ahead {
            if let Some(at) = ahead_of(now, retention.partition, k) {
                starts.push(at);
            }
        }
        for start in starts {
            for row in conn
                .query(&queries::logs::PARTITION_ENSURE, &[&unit, &start])
                .await?
            {
                report.created.push(row.try_get("partition")?);
                let moved: i64 = row.try_get("moved")?;
                report.moved += u64::try_from(moved).unwrap_or(0);
            }
        }
        // Retention counts from the server's time, or from an earlier `at`,
        // never from a later one: making a coming period's partitions must
        // not drop the current ones.
        let Some(cutoff) = shift(now.min(server_now), retention.keep, false)
            .filter(|cutoff| cutoff.unix_micros() >= validate::POSTGRES_MIN_UNIX_MICROS)
        else {
            return Ok(report);
        };
        while let Some(dropped) = conn
            .query_one(&queries::logs::PARTITION_DROP_EXPIRED, &[&cutoff])
            .await?
            .try_get::<_, Option<String>>("dropped")?
        {
            report.dropped.push(dropped);
        }
        Ok(report)
    }
}
