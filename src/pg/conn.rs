//! The repositories' executor: where a statement runs (a pooled
//! connection per call, or the transaction's), armed while in flight so a
//! dropped call never returns its connection in an unknown state, healing
//! stale cached statements, logging slow ones.

use super::routed::{Probe, RoutedConn};
use super::*;

/// Where a repository runs its statements: a connection checked out of the
/// pool per call, or the one connection of a transaction.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Pool(Database),
    Tx(Arc<TxInner>),
}

impl Source {
    /// How much of an execution's stdout and stderr is stored.
    pub(super) fn max_output_bytes(&self) -> usize {
        match self {
            Source::Pool(db) => db.config().max_output_bytes,
            Source::Tx(tx) => tx.config().max_output_bytes,
        }
    }

    /// Runs `work` inside a transaction: the source's own, or one this
    /// call opens through the engine of [`Database::transaction`], the
    /// crate's one transaction engine (its guard armed before `BEGIN`, the
    /// COMMIT probe, the rollback of a dropped call), for a repository call
    /// that needs several statements to be one.
    pub(super) async fn transaction<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: Fn(Source) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match self {
            Source::Tx(_) => work(self.clone()).await,
            Source::Pool(db) => {
                db.transaction_for_call(|tx| work(Source::Tx(tx.inner.clone())))
                    .await
            }
        }
    }

    pub(super) async fn conn(&self) -> Result<Conn<'_>> {
        self.conn_in(None).await
    }

    /// A connection whose every statement runs scoped to `user`: see
    /// [`Conn`]'s docs.
    pub(super) async fn scoped_conn(&self, user: UserId) -> Result<Conn<'_>> {
        self.conn_in(Some(user)).await
    }

    /// A connection for a call that only reads: over the pool, routed as
    /// the handle's [`Consistency`](crate::Consistency) says (see
    /// [`RoutedConn`]); in a transaction, the transaction's.
    pub(super) async fn read_conn(&self) -> Result<Conn<'_>> {
        self.read_conn_in(None).await
    }

    /// [`read_conn`](Self::read_conn), scoped to `user`.
    pub(super) async fn scoped_read_conn(&self, user: UserId) -> Result<Conn<'_>> {
        self.read_conn_in(Some(user)).await
    }

    async fn read_conn_in(&self, scope: Option<UserId>) -> Result<Conn<'_>> {
        if let Source::Pool(db) = self
            && let Some(routed) = RoutedConn::new(db, scope)
        {
            return Ok(Conn::Routed(routed));
        }
        self.conn_in(scope).await
    }

    async fn conn_in(&self, scope: Option<UserId>) -> Result<Conn<'_>> {
        match self {
            // A write: a read-your-writes handle learns its position.
            Source::Pool(db) => Ok(Conn::Pooled(
                PoolConn::checkout(db, scope, db.session().map_or(Probe::None, Probe::Track))
                    .await?,
            )),
            Source::Tx(tx) => {
                tx.client()?;
                Ok(Conn::Tx(TxConn {
                    tx,
                    busy: AtomicBool::new(false),
                    scope,
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
///
/// A scoped connection ([`Source::scoped_conn`]) runs each statement with
/// the transaction-local setting `voidrunner.user_id` set to its user, which
/// the statements (`voidrunner_in_scope`) and the row-level security of
/// migration V9 read. Pooled, the statement is its own transaction: `BEGIN`
/// with the setting, the statement and `COMMIT` go out together and come
/// back in one round trip, so the setting ends with the statement and never
/// reaches the next user of the connection. In a transaction, the setting
/// comes before the statement and is reset after it, also one round trip,
/// so the transaction's unscoped statements stay unscoped.
// Lives on the stack of one call; boxing the pooled variant would cost an
// allocation per call to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
pub(super) enum Conn<'a> {
    Pooled(PoolConn<'a>),
    Tx(TxConn<'a>),
    /// A read over the pool that may go to a replica.
    Routed(RoutedConn<'a>),
}

/// A repository call's use of a transaction's connection. Armed while a
/// statement is in flight: if the call's future is dropped then (a timeout
/// or `select!` inside the transaction's closure), the statement may still
/// take effect, so the transaction is marked abandoned and will roll back
/// rather than commit what the caller gave up on.
pub(super) struct TxConn<'a> {
    pub(super) tx: &'a TxInner,
    pub(super) busy: AtomicBool,
    /// The user every statement is scoped to, if any.
    pub(super) scope: Option<UserId>,
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
pub(super) struct PoolConn<'a> {
    pub(super) db: &'a Database,
    pub(super) primary: Option<PooledClient>,
    /// The fresh connection that replaced `primary` after its server
    /// session went stale.
    pub(super) replacement: OnceLock<PooledClient>,
    pub(super) busy: AtomicBool,
    /// The server refused a write as read-only: the connection, and the
    /// pool's idle ones, are closed when the call ends
    /// ([`crate::db::retire_read_only`]).
    pub(super) retire: AtomicBool,
    /// The user every statement is scoped to, if any.
    pub(super) scope: Option<UserId>,
    /// What is learnt about the server's WAL with each statement.
    pub(super) probe: Probe<'a>,
}

impl<'a> PoolConn<'a> {
    /// A connection of `db`'s pool (the primary's, or a replica's).
    pub(super) async fn checkout(
        db: &'a Database,
        scope: Option<UserId>,
        probe: Probe<'a>,
    ) -> Result<Self> {
        Ok(PoolConn {
            db,
            primary: Some(db.client().await?),
            replacement: OnceLock::new(),
            busy: AtomicBool::new(false),
            retire: AtomicBool::new(false),
            scope,
            probe,
        })
    }

    pub(super) fn client(&self) -> Result<&PooledClient> {
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
        let busy = *self.busy.get_mut();
        let retire = *self.retire.get_mut();
        if busy && let Probe::Track(session) = &self.probe {
            // A write dropped in flight may still commit, and its position
            // will never be known: the handle reads from the primary.
            session.lost();
        }
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
pub(super) fn values<'a>(params: Params<'a>) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_sql()).collect()
}

/// The values of `params` with their declared types, for an unnamed
/// statement.
pub(super) fn typed<'a>(params: Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|p| (p.as_sql(), p.param_type()))
        .collect()
}

impl Conn<'_> {
    pub(super) fn client(&self) -> Result<&PooledClient> {
        match self {
            Conn::Pooled(pooled) => pooled.client(),
            Conn::Tx(tx) => tx.client(),
            // Chosen per statement: nothing runs on it but statements.
            Conn::Routed(_) => Err(Error::unavailable(
                "a routed read has no connection of its own",
                None,
            )),
        }
    }

    /// The configuration of the pool the call's connection came from (the
    /// one place each setting is held), which the call follows.
    pub(super) fn config(&self) -> &crate::DbConfig {
        match self {
            Conn::Pooled(pooled) => pooled.db.config(),
            Conn::Tx(tx) => tx.config(),
            Conn::Routed(routed) => routed.config(),
        }
    }

    /// Whether statements go out unnamed (behind a transaction-mode
    /// pooler) rather than prepared through the statement cache.
    pub(super) fn unnamed(&self) -> bool {
        !self.config().pooler.named_statements()
    }

    /// A `WARN` event for a statement slower than
    /// [`DbConfig::slow_statement`](crate::DbConfig::slow_statement): its
    /// duration, the statement's name and SQL text, never its parameters.
    pub(super) fn note_if_slow(&self, query: &Query, took: Duration) {
        if self
            .config()
            .slow_statement
            .is_some_and(|limit| took > limit)
        {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                statement = query.name,
                sql = query.text,
                "slow statement"
            );
        }
    }

    /// What goes before and after each statement of a scoped connection
    /// (see the type's docs); `None` when it is not scoped.
    ///
    /// The user's id is written into the SQL because `SET` takes no
    /// parameters, and `BEGIN` is sent as a simple query, which takes none
    /// either: it is a [`UserId`], whose text is 36 hexadecimal digits and
    /// hyphens, never anything a caller wrote.
    fn scope_sql(&self) -> Option<(String, &'static str)> {
        let (scope, pooled) = match self {
            Conn::Pooled(pooled) => (pooled.scope?, true),
            Conn::Tx(tx) => (tx.scope?, false),
            Conn::Routed(_) => return None,
        };
        let set = format!(
            "SET LOCAL voidrunner.user_id = '{}'",
            scope.as_uuid().hyphenated()
        );
        Some(if pooled {
            (
                format!("{}; {set}", self.config().begin_sql("BEGIN")),
                "COMMIT",
            )
        } else {
            (set, "SET LOCAL voidrunner.user_id TO DEFAULT")
        })
    }

    pub(super) fn set_busy(&self, busy: bool) {
        match self {
            Conn::Pooled(pooled) => pooled.busy.store(busy, Ordering::Release),
            Conn::Tx(tx) => tx.busy.store(busy, Ordering::Release),
            // Each of its connections is armed by its own statements.
            Conn::Routed(_) => {}
        }
    }

    /// Runs `run` with the cached statement for `query` (`None` when
    /// statements go out unnamed), healing a stale cache or session once
    /// (see the type's docs), in a DEBUG span `voidrunner_db.statement`
    /// named by the statement's registered name (`queue.claim`): the one
    /// place a statement's span is opened.
    pub(super) async fn with_statement<'s, T, F, Fut>(&'s self, query: &Query, run: F) -> Result<T>
    where
        F: Fn(&'s PooledClient, Option<Statement>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 's,
    {
        let span = tracing::debug_span!("voidrunner_db.statement", statement = query.name);
        match self {
            // Boxed: a routed read's future (several nodes' checkouts and
            // statements) would otherwise size every statement's future,
            // and so every call's, routed or not.
            Conn::Routed(routed) => {
                Box::pin(tracing::Instrument::instrument(
                    routed.run(query, run),
                    span,
                ))
                .await
            }
            _ => tracing::Instrument::instrument(self.run_statement(query, run), span).await,
        }
    }

    /// Runs one statement on this connection (never a routed one: see
    /// [`RoutedConn::run`]), healing a stale cache or session once.
    pub(super) async fn run_statement<'s, T, F, Fut>(&'s self, query: &Query, run: F) -> Result<T>
    where
        F: Fn(&'s PooledClient, Option<Statement>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 's,
    {
        let unnamed = self.unnamed();
        let scope = self.scope_sql();
        let probe = match self {
            Conn::Pooled(pooled) => &pooled.probe,
            _ => &Probe::None,
        };
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
                let stmt = if unnamed {
                    None
                } else {
                    Some(client.prepare_cached(query.text).await?)
                };
                match (probe, &scope) {
                    (Probe::None, None) => run(client, stmt).await,
                    (Probe::None, Some((before, after))) => {
                        in_scope(client, before, run(client, stmt), after).await
                    }
                    // Boxed, the statement's future built inside: the
                    // probe's query and the join around the statement
                    // would otherwise size (and cost) every statement's
                    // future, the plain ones too.
                    (probe, scope) => {
                        let run = &run;
                        let statement = async move {
                            match scope {
                                None => run(client, stmt).await,
                                Some((before, after)) => {
                                    in_scope(client, before, run(client, stmt), after).await
                                }
                            }
                        };
                        Box::pin(probe.around(client, unnamed, statement)).await
                    }
                }
            });
            // Still armed when it gives up: the connection is closed (in a
            // transaction, the transaction abandoned), as for a dropped call.
            let result = self.within_deadline(work).await?;
            self.set_busy(false);
            self.note_if_slow(query, started.elapsed());
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

    pub(super) async fn query(&self, query: &Query, params: Params<'_>) -> Result<Vec<Row>> {
        self.with_statement(query, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.query(&stmt, &values(params)).await,
                None => client.query_typed(query.text, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    pub(super) async fn query_opt(&self, query: &Query, params: Params<'_>) -> Result<Option<Row>> {
        self.with_statement(query, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.query_opt(&stmt, &values(params)).await,
                None => client.query_typed_opt(query.text, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    pub(super) async fn query_one(&self, query: &Query, params: Params<'_>) -> Result<Row> {
        self.with_statement(query, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.query_one(&stmt, &values(params)).await,
                None => client.query_typed_one(query.text, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    pub(super) async fn execute(&self, query: &Query, params: Params<'_>) -> Result<u64> {
        self.with_statement(query, |client, stmt| async move {
            match stmt {
                Some(stmt) => client.execute(&stmt, &values(params)).await,
                None => client.execute_typed(query.text, &typed(params)).await,
            }
        })
        .await
        .inspect_err(note_failure)
    }

    /// Runs `work`, an exchange on the call's client that is not one
    /// prepared statement (the bulk load's COPY, `query`), as a statement
    /// is run: armed (dropped in the middle, the pooled connection is
    /// closed, the transaction abandoned), within the answer deadline, in
    /// the statement's span, noted when slow; in a transaction its failure
    /// is explained and noted like any statement's.
    pub(super) async fn exchange<'s, T, F, Fut>(&'s self, query: &Query, work: F) -> Result<T>
    where
        F: FnOnce(&'s PooledClient) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let span = tracing::debug_span!("voidrunner_db.statement", statement = query.name);
        let run = async {
            let client = self.client()?;
            self.set_busy(true);
            let started = Instant::now();
            // Still armed when it gives up, as for a dropped call.
            let result = self.within_deadline(work(client)).await?;
            // Set when the position's query got no answer: its connection
            // stays armed, to be closed rather than pooled.
            let mut unanswered = false;
            if let (Ok(_), Conn::Pooled(pooled)) = (&result, self)
                && let Probe::Track(session) = &pooled.probe
            {
                // No statement to pipeline the position with: one more
                // round trip on the same connection, still armed (dropped
                // here, the handle's session is lost, never stale).
                let sql = crate::queries::server::INSERT_POSITION.text;
                match self.within_deadline(client.query_typed_one(sql, &[])).await {
                    Ok(Ok(row)) => match row.try_get::<_, Option<postgres_types::PgLsn>>(0) {
                        Ok(Some(at)) => session.wrote(u64::from(at)),
                        _ => session.lost(),
                    },
                    // The write stands either way: the handle reads from
                    // the primary from now on.
                    Ok(Err(_)) => session.lost(),
                    Err(_) => {
                        session.lost();
                        unanswered = true;
                    }
                }
            }
            // A lost connection stays armed: it is closed, never pooled.
            if !client.is_closed() && !unanswered {
                self.set_busy(false);
            }
            self.note_if_slow(query, started.elapsed());
            match self {
                Conn::Tx(tx) => {
                    let result = result.map_err(|err| tx.explain(err));
                    tx.touch();
                    result
                }
                Conn::Pooled(pooled) => {
                    // A read-only server (a demoted primary): the
                    // connection and the pool's idle ones are closed, as
                    // after a statement's refusal.
                    if let Err(err) = &result
                        && err.is_read_only()
                        && err.is_unavailable()
                    {
                        pooled.retire.store(true, Ordering::Release);
                    }
                    result
                }
                Conn::Routed(_) => result,
            }
        };
        tracing::Instrument::instrument(run, span)
            .await
            .inspect_err(note_failure)
    }

    /// `work`'s answer, or [`TimeoutKind::NoAnswer`](crate::TimeoutKind::NoAnswer)
    /// when the server stops answering ([`crate::tx::within_deadline`]).
    pub(super) async fn within_deadline<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        crate::tx::within_deadline(self.config().answer_deadline(), work).await
    }
}

/// Runs `statement` between `before` and `after` (a scoped connection's
/// setting, see [`Conn`]), all three sent before any answer is awaited: one
/// round trip. The driver sends a request when its future is first polled,
/// and `biased` polls them in this order. All three answers are awaited, so
/// the connection is idle when this returns. It fails closed: a `before`
/// that failed after its `BEGIN` left the transaction aborted, so the
/// statement was refused too, never run unscoped. The first error counts:
/// `before`'s, then the statement's (after which `COMMIT` only rolls back),
/// then `after`'s (a failed `COMMIT` undid the statement).
async fn in_scope<T>(
    client: &PooledClient,
    before: &str,
    statement: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    after: &str,
) -> std::result::Result<T, tokio_postgres::Error> {
    let (before, statement, after) = tokio::join!(
        biased;
        client.batch_execute(before),
        statement,
        client.batch_execute(after)
    );
    before?;
    let value = statement?;
    after?;
    Ok(value)
}

/// A failed statement's error kind and SQLSTATE, as fields of an event in
/// the current span (the repository call's): a failed call's span carries
/// them in a form a log pipeline can filter on, not only in the error text.
pub(super) fn note_failure(err: &Error) {
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
pub(super) fn is_stale_session(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::DATATYPE_MISMATCH)
}

/// Runs one query on a pooled connection of `db` through the repositories'
/// executor ([`Conn`]: armed while in flight, healing stale statements), for
/// the crate's modules outside `pg` (the polling event stream).
pub(crate) async fn query_pooled(
    db: &Database,
    query: &Query,
    params: Params<'_>,
) -> Result<Vec<Row>> {
    let source = Source::Pool(db.clone());
    let conn = source.conn().await?;
    conn.query(query, params).await
}

/// Whether the server refused a cached statement because the schema changed
/// under it (see [`Conn`]).
pub(super) fn is_stale_statement(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|code| {
        *code == SqlState::FEATURE_NOT_SUPPORTED
            || *code == SqlState::INVALID_SQL_STATEMENT_NAME
            || *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::UNDEFINED_COLUMN
    })
}
