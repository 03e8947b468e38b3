//! Transactions that span repositories.
//!
//! [`Database::transaction`] runs a closure with a [`Transaction`] whose
//! repositories ([`Transaction::users`], [`Transaction::tasks`],
//! [`Transaction::executions`], [`Transaction::queue`]) all run on one
//! connection inside one PostgreSQL transaction: committed when the closure
//! returns `Ok`, rolled back when it returns `Err`. If the closure panics or
//! its future is dropped half-way, the connection is closed instead of being
//! returned to the pool, which makes the server roll back whatever was not
//! committed yet. A future dropped while COMMIT is in flight leaves the
//! outcome unknown (committed or not, all or nothing), as the answer is lost.
//!
//! With [`TransactionOptions::max_retries`], a transaction that fails with a
//! serialization failure or a deadlock (SQLSTATE 40001, 40P01) is run again,
//! closure included, after a jittered exponential backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tracing::Instrument as _;

use crate::config::DbConfig;
use crate::db::{Database, PooledClient};
use crate::error::{Error, Result};

/// The isolation level of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// PostgreSQL's default.
    #[default]
    ReadCommitted,
    /// One snapshot for the whole transaction.
    RepeatableRead,
    /// As if transactions ran one after the other; expect serialization
    /// failures and retry them ([`TransactionOptions::max_retries`]).
    Serializable,
}

impl IsolationLevel {
    fn sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        }
    }
}

/// How [`Database::transaction_with`] runs a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionOptions {
    /// Isolation level; default read committed.
    pub isolation: IsolationLevel,
    /// `READ ONLY`; default false.
    pub read_only: bool,
    /// How many times a transaction that failed with a serialization failure
    /// or deadlock is run again. Default 0: the error is returned.
    pub max_retries: u32,
    /// The first retry waits this long plus up to as much again at random;
    /// each further retry doubles it. Default 10 ms.
    pub retry_backoff: Duration,
}

impl Default for TransactionOptions {
    fn default() -> Self {
        TransactionOptions {
            isolation: IsolationLevel::default(),
            read_only: false,
            max_retries: 0,
            retry_backoff: Duration::from_millis(10),
        }
    }
}

impl TransactionOptions {
    /// Serializable, retried up to `max_retries` times.
    pub fn serializable(max_retries: u32) -> Self {
        TransactionOptions {
            isolation: IsolationLevel::Serializable,
            max_retries,
            ..Self::default()
        }
    }

    /// Sets the isolation level.
    pub fn isolation(mut self, isolation: IsolationLevel) -> Self {
        self.isolation = isolation;
        self
    }

    /// Sets the number of retries.
    pub fn retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    fn begin_sql(&self) -> String {
        // Not `READ WRITE` when writes are wanted: on a standby that BEGIN
        // is refused as an unsupported feature (0A000); left to the
        // session's default, the first write is refused as read-only
        // (25006), which the crate reports as a read-only server and answers
        // by reconnecting.
        format!(
            "BEGIN ISOLATION LEVEL {}{}",
            self.isolation.sql(),
            if self.read_only { " READ ONLY" } else { "" }
        )
    }

    /// Backoff before retry `attempt` (1-based): exponential, plus jitter so
    /// that transactions that collided do not collide again in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .retry_backoff
            .saturating_mul(1 << attempt.min(16).saturating_sub(1));
        let jitter_range = base.as_micros().max(1) as u64;
        let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % jitter_range;
        base + Duration::from_micros(jitter)
    }
}

/// The connection of an open transaction, shared by its repositories.
#[derive(Debug)]
pub(crate) struct TxInner {
    client: Option<PooledClient>,
    /// The configuration of the pool the transaction came from, which its
    /// statements follow (shared, not copied: one place for each setting;
    /// and not the pool itself, which a transaction kept after the last
    /// `Database` clone would keep open).
    config: Arc<DbConfig>,
    /// How the cancel request goes out when the transaction is dropped
    /// unfinished: the pool's TLS, the pooler's address.
    cancel_route: crate::db::CancelRoute,
    /// Opened by a repository call for statements that must be one (not by
    /// the caller): dropped unfinished, that call was cancelled, which is no
    /// warning.
    by_call: bool,
    /// When the last statement of the transaction ended, in microseconds
    /// since `opened`.
    last_active: AtomicU64,
    opened: Instant,
    /// Set once COMMIT or ROLLBACK went through; until then, dropping the
    /// transaction closes its connection rather than pooling it mid-way.
    ended: AtomicBool,
    /// Set when a statement of the transaction failed with a retryable
    /// error ([`Error::is_retryable`]): a serialization failure or deadlock
    /// aborts the whole transaction, so the attempt is worth retrying
    /// whatever the closure made of that error.
    met_retryable: AtomicBool,
    /// Set when a statement's future was dropped while the statement was in
    /// flight: it may still take effect, so the transaction must not commit.
    abandoned: AtomicBool,
    /// Opened `READ ONLY` by the caller: a write refused as read-only
    /// (25006) is then the caller's mistake, not a read-only server.
    read_only: bool,
    /// Set when the server refused a write as read-only: the connection is
    /// closed when the transaction ends, never pooled ([`crate::db::retire_read_only`]).
    retire: AtomicBool,
    /// The read-your-writes session of the handle that opened it, which
    /// learns the position of its commit.
    session: Option<Arc<crate::db::Session>>,
    /// The fair claim's rotation of the pool it came from.
    pub(crate) claim_rotation: Arc<crate::db::ClaimRotation>,
}

impl TxInner {
    /// The configuration of the pool the transaction came from.
    pub(crate) fn config(&self) -> &DbConfig {
        &self.config
    }

    /// Notes that a statement of the transaction just ended.
    pub(crate) fn touch(&self) {
        let micros = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_active.store(micros, Ordering::Release);
    }

    /// `err`, or a [`TimeoutKind::IdleInTransaction`](crate::TimeoutKind)
    /// timeout when the connection was lost after the transaction sat idle
    /// for longer than the server allows: the server ends such a session
    /// (25P03) with no request waiting for the answer, so the driver only
    /// sees the connection close.
    ///
    /// Every error of a statement run inside the transaction passes here,
    /// which is where a retryable one is noted.
    pub(crate) fn explain(&self, err: Error) -> Error {
        let since = Duration::from_micros(self.last_active.load(Ordering::Acquire));
        let idle = self.opened.elapsed().saturating_sub(since);
        let err = match (&err, self.config.idle_in_transaction_timeout) {
            (Error::Unavailable { .. }, Some(limit)) if idle >= limit => Error::Timeout {
                kind: crate::TimeoutKind::IdleInTransaction,
                source: Some(Box::new(err)),
            },
            _ => err,
        };
        let err = match err {
            err if err.is_read_only() && self.read_only => err.into_statement_error(),
            err if err.is_read_only() && err.is_unavailable() => {
                self.retire.store(true, Ordering::Release);
                err
            }
            err => err,
        };
        if err.is_retryable() {
            self.met_retryable.store(true, Ordering::Release);
        }
        err
    }

    /// Marks the transaction abandoned: a statement's future was dropped in
    /// flight, so COMMIT would commit what its caller gave up on.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Whether a statement's future was dropped in flight.
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Whether a statement of the transaction failed with a retryable error.
    fn met_retryable(&self) -> bool {
        self.met_retryable.load(Ordering::Acquire)
    }

    pub(crate) fn client(&self) -> Result<&PooledClient> {
        match &self.client {
            Some(client) if !self.ended.load(Ordering::Acquire) => Ok(client),
            _ => Err(Error::TransactionEnded),
        }
    }

    /// Commits. PostgreSQL answers COMMIT in a transaction that an error
    /// aborted (a failed statement whose error the closure handled) with a
    /// silent ROLLBACK, so a probe is pipelined ahead of it, in the same
    /// round trip: it fails with 25P02 exactly when the transaction was
    /// aborted, and then the caller gets that error instead of `Ok` for
    /// writes that were rolled back.
    async fn commit(&self) -> Result<()> {
        if self.abandoned() {
            // A statement the closure gave up on (its future dropped in
            // flight) may or may not have run: commit nothing rather than
            // something the caller cannot know. No ROLLBACK either: it would
            // wait behind that statement, which may still be waiting on a
            // lock or a silent server; the connection is closed when the
            // transaction is dropped, its statement cancelled, and the
            // server rolls back.
            return Err(Error::TransactionAborted);
        }
        let client = self.client()?;
        // A read-your-writes handle's transaction learns its position in
        // the same round trip, right after COMMIT.
        let position = async {
            match &self.session {
                Some(_) => Some(
                    client
                        .query_typed_one(crate::queries::server::INSERT_POSITION.text, &[])
                        .await,
                ),
                None => None,
            }
        };
        let (probe, commit, position) = self
            .within_deadline(async {
                tokio::join!(
                    biased;
                    client.batch_execute(crate::queries::server::PROBE.text),
                    self.finish("COMMIT"),
                    position
                )
            })
            .await?;
        if let (Err(err), Some(session)) = (&commit, &self.session)
            && err.is_unavailable()
        {
            // The connection was lost with COMMIT in flight: whether it
            // committed is unknown, so the handle reads from the primary.
            // A COMMIT the server refused (a serialization failure, a
            // deferred constraint) rolled back: nothing to see.
            session.lost();
        }
        commit?;
        if let Some(session) = &self.session {
            // Committed: a position that cannot be read makes the handle
            // read from the primary, never lose the write.
            match position
                .map(|p| p.and_then(|row| row.try_get::<_, Option<postgres_types::PgLsn>>(0)))
            {
                Some(Ok(Some(at))) => session.wrote(u64::from(at)),
                _ => session.lost(),
            }
        }
        match probe {
            Err(err) if err.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
                Err(Error::TransactionAborted)
            }
            other => Ok(other?),
        }
    }

    /// [`within_deadline`] with this transaction's deadline: on
    /// [`TimeoutKind::NoAnswer`](crate::TimeoutKind::NoAnswer) the
    /// transaction is left unended, so its connection is closed, never
    /// pooled.
    pub(crate) async fn within_deadline<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        within_deadline(self.config.answer_deadline(), work).await
    }

    async fn finish(&self, sql: &str) -> Result<()> {
        let result = self
            .within_deadline(self.client()?.batch_execute(sql))
            .await?;
        let result = result.map_err(|e| self.explain(e.into()));
        self.touch();
        // A failed COMMIT ends the transaction too (the server rolled it
        // back), as long as the connection itself is still alive.
        let alive = self.client.as_ref().is_some_and(|c| !c.is_closed());
        if result.is_ok() || alive {
            self.ended.store(true, Ordering::Release);
        }
        result
    }
}

impl Drop for TxInner {
    fn drop(&mut self) {
        if *self.retire.get_mut()
            && let Some(client) = self.client.take()
        {
            crate::db::retire_read_only(client, self.cancel_route.clone());
            return;
        }
        if !*self.ended.get_mut()
            && let Some(session) = &self.session
        {
            // Dropped before COMMIT or ROLLBACK completed (perhaps while
            // COMMIT was in flight): whether it committed is unknown.
            session.lost();
        }
        if !*self.ended.get_mut()
            && let Some(client) = self.client.take()
        {
            if self.by_call {
                tracing::debug!("call cancelled inside its transaction; closing its connection");
            } else if *self.abandoned.get_mut() {
                tracing::debug!(
                    "a statement given up in flight; closing the transaction's connection"
                );
            } else {
                tracing::warn!(
                    "transaction dropped before commit or rollback; closing its connection"
                );
            }
            // Its statement is cancelled and the connection closed: the
            // server rolls the transaction back.
            crate::db::discard(client, self.cancel_route.clone());
        }
    }
}

/// `work`'s answer, or [`TimeoutKind::NoAnswer`](crate::TimeoutKind::NoAnswer)
/// once the server has been silent for `deadline` (`statement_timeout` plus
/// a margin, [`DbConfig::answer_deadline`](crate::DbConfig)): the server
/// cancels a long statement itself at `statement_timeout`, so a longer
/// silence means it, a pooler or the network stopped answering. The caller
/// stays armed, so the connection is closed rather than pooled.
pub(crate) async fn within_deadline<T>(
    deadline: Option<Duration>,
    work: impl Future<Output = T>,
) -> Result<T> {
    let Some(deadline) = deadline else {
        return Ok(work.await);
    };
    tokio::time::timeout(deadline, work).await.map_err(|_| {
        tracing::warn!(
            waited_ms = deadline.as_millis() as u64,
            "no answer from the server; closing the connection"
        );
        Error::timeout(crate::TimeoutKind::NoAnswer)
    })
}

/// An open transaction, handed to the closure of
/// [`Database::transaction`]. Cheap to clone; every repository it gives out
/// runs on the transaction's connection.
///
/// Its repositories are handed out by the repositories' own module
/// (`src/pg/transaction.rs`), which builds on this one.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub(crate) inner: Arc<TxInner>,
}

impl Transaction {
    /// The transaction's connection, for SQL of your own in the same
    /// transaction. Fails with [`Error::TransactionEnded`] once the
    /// transaction has been committed or rolled back.
    ///
    /// Behind a transaction-mode pooler
    /// ([`PoolerMode::Transaction`](crate::PoolerMode::Transaction)), send
    /// statements unnamed (`query_typed`, `execute_typed`, `batch_execute`)
    /// or drop every statement you prepare before the closure returns: a
    /// named statement left behind stays on the pooler's server connection
    /// after COMMIT, where another client may meet it.
    pub fn client(&self) -> Result<&PooledClient> {
        self.inner.client()
    }
}

/// The crate's error in a closure's error, when the closure's error is the
/// crate's own (`Database::transaction`, a repository call's transaction).
fn itself(err: &Error) -> Option<&Error> {
    Some(err)
}

/// The crate's error in a closure's error of any type: itself when `E` is
/// [`Error`], else none (a statement that failed inside the transaction is
/// noted by the transaction itself, whatever the closure made of it).
fn crate_error<E: 'static>(err: &E) -> Option<&Error> {
    (err as &dyn std::any::Any).downcast_ref::<Error>()
}

impl Database {
    /// Runs `f` in a read-committed transaction: commits if it returns `Ok`,
    /// rolls back if it returns `Err` (and returns that error), and closes
    /// the connection if it panics or is cancelled. No retries; see
    /// [`transaction_with`](Self::transaction_with). A service written
    /// against the repository traits rather than [`Transaction`] uses the
    /// [`UnitOfWork`](crate::UnitOfWork) seam instead, which runs on this
    /// same machinery.
    ///
    /// ```no_run
    /// # async fn run(db: voidrunner_db::Database, user: voidrunner_db::UserId) -> voidrunner_db::Result<()> {
    /// use voidrunner_db::{NewTask, TaskRepository, ExecutionQueue};
    ///
    /// let execution = db
    ///     .transaction(|tx| async move {
    ///         let task = tx.tasks().create(NewTask::new(user, "report", "print(1)")).await?;
    ///         tx.queue().enqueue(task.id, None).await
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.transaction_with(TransactionOptions::default(), f)
            .await
    }

    /// Like [`transaction`](Self::transaction), with an isolation level,
    /// read-only mode and retries of serialization failures and deadlocks:
    /// `f` is called again for each attempt, so it must not have effects
    /// outside the database that cannot be repeated.
    ///
    /// An attempt is retried when it fails with a retryable error
    /// ([`Error::is_retryable`]), or when a statement inside it failed with
    /// one, whatever error the closure then returned: such a failure aborts
    /// the whole transaction.
    ///
    /// The closure's error is the crate's [`Error`]; for an error type of
    /// your own, see [`transaction_with_error`](Self::transaction_with_error).
    pub async fn transaction_with<T, F, Fut>(&self, options: TransactionOptions, f: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_transaction(options, f, itself, false).await
    }

    /// [`transaction_with`](Self::transaction_with) with the closure's error
    /// type the caller's own, any `E: From<voidrunner_db::Error>`, as in
    /// [`UnitOfWorkExt::run_with`](crate::UnitOfWorkExt::run_with): `?`
    /// works on the repositories' calls inside the closure, the closure's
    /// error comes back unchanged (after the rollback), and the
    /// transaction's own failures (checkout, `BEGIN`, `COMMIT`) arrive
    /// through that `From`.
    ///
    /// Retries are decided as in `transaction_with`: an attempt is run again
    /// when a statement inside it failed with a retryable error, whatever
    /// the closure made of that error, or when the closure's error is the
    /// crate's own [`Error`] and [retryable](Error::is_retryable). A
    /// retryable [`Error`] built inside an error of your own type without
    /// a statement failing (a hand-made one) is not seen, and not retried.
    ///
    /// A sibling rather than a generic `transaction_with`: with `E` generic,
    /// a closure that ends in `Ok(value)` after a `?` leaves `E` unknown,
    /// and every such caller would have to name it.
    ///
    /// ```no_run
    /// use voidrunner_db::{Database, NewTask, TaskRepository, TransactionOptions, UserId};
    ///
    /// #[derive(Debug)]
    /// enum SubmitError {
    ///     Quota,
    ///     Db(voidrunner_db::Error),
    /// }
    ///
    /// impl From<voidrunner_db::Error> for SubmitError {
    ///     fn from(err: voidrunner_db::Error) -> Self {
    ///         SubmitError::Db(err)
    ///     }
    /// }
    ///
    /// async fn submit(db: &Database, user: UserId) -> Result<(), SubmitError> {
    ///     db.transaction_with_error(TransactionOptions::serializable(3), |tx| async move {
    ///         tx.tasks().create(NewTask::new(user, "report", "print(1)")).await?;
    ///         if tx.tasks().count_by_user(user).await? > 10 {
    ///             return Err(SubmitError::Quota); // rolls the task back
    ///         }
    ///         Ok(())
    ///     })
    ///     .await
    /// }
    /// ```
    pub async fn transaction_with_error<T, E, F, Fut>(
        &self,
        options: TransactionOptions,
        f: F,
    ) -> std::result::Result<T, E>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: From<Error> + 'static,
    {
        self.run_transaction(options, f, crate_error::<E>, false)
            .await
    }

    /// [`transaction`](Self::transaction) for a repository call whose
    /// statements must be one: the same engine, but a cancelled call is
    /// not reported as a transaction the caller forgot to end.
    pub(crate) async fn transaction_for_call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_transaction(TransactionOptions::default(), f, itself, true)
            .await
    }

    /// The one transaction loop, behind [`transaction_with`](Self::transaction_with)
    /// and the [`UnitOfWork`](crate::UnitOfWork) of a `Database`: `f`'s
    /// error type is the caller's, and `db_error` finds the crate's error in
    /// it (if any) to decide on a retry. `by_call`: opened by a repository
    /// call, not by the caller.
    pub(crate) async fn run_transaction<T, E, F, Fut, D>(
        &self,
        options: TransactionOptions,
        mut f: F,
        db_error: D,
        by_call: bool,
    ) -> std::result::Result<T, E>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: From<Error>,
        D: Fn(&E) -> Option<&Error>,
    {
        // Behind a transaction-mode pooler the session settings come with
        // BEGIN, as SET LOCAL, in the same round trip.
        let begin = self.config().begin_sql(&options.begin_sql());
        let mut attempt = 0;
        loop {
            let span = tracing::debug_span!("voidrunner_db.transaction", attempt);
            // The attempt's transaction, kept to learn afterwards whether a
            // statement in it failed with a retryable error.
            let mut opened: Option<Arc<TxInner>> = None;
            let outcome = async {
                // The guard is armed before BEGIN is sent: if this future is
                // dropped while BEGIN is in flight (or anywhere later before
                // COMMIT or ROLLBACK completed), the connection is closed, never
                // pooled in an unknown transaction state.
                let inner = Arc::new(TxInner {
                    client: Some(self.client().await?),
                    config: self.shared_config(),
                    cancel_route: self.cancel_route(),
                    by_call,
                    last_active: AtomicU64::new(0),
                    opened: Instant::now(),
                    ended: AtomicBool::new(false),
                    met_retryable: AtomicBool::new(false),
                    abandoned: AtomicBool::new(false),
                    read_only: options.read_only,
                    retire: AtomicBool::new(false),
                    session: self.shared_session(),
                    claim_rotation: self.claim_rotation(),
                });
                opened = Some(inner.clone());
                // Through `explain`, like every statement of the
                // transaction: an error there decides whether the
                // connection is retired.
                inner
                    .within_deadline(inner.client()?.batch_execute(&begin))
                    .await?
                    .map_err(|e| inner.explain(Error::from(e)))?;
                inner.touch();
                match f(Transaction {
                    inner: inner.clone(),
                })
                .await
                {
                    Ok(value) => inner.commit().await.map(|()| value).map_err(E::from),
                    // A statement given up in flight: closed on drop, as in
                    // `commit`, rather than a ROLLBACK queued behind it.
                    Err(err) if inner.abandoned() => Err(err),
                    Err(err) => {
                        if let Err(rollback) = inner.finish("ROLLBACK").await {
                            tracing::debug!(error = %rollback, "rollback failed; the connection is discarded");
                        }
                        Err(err)
                    }
                }
            }
            .instrument(span)
            .await;
            // Taken and dropped here: the connection goes back to the pool
            // (or is closed) before any backoff.
            let doomed = opened.take().is_some_and(|inner| inner.met_retryable());
            match outcome {
                Err(err)
                    if attempt < options.max_retries
                        && (doomed || db_error(&err).is_some_and(Error::is_retryable)) =>
                {
                    attempt += 1;
                    let wait = options.backoff(attempt);
                    tracing::debug!(
                        error = db_error(&err).map(tracing::field::display),
                        attempt,
                        ?wait,
                        "retrying transaction"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_statements() {
        assert_eq!(
            TransactionOptions::default().begin_sql(),
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        );
        let ro = TransactionOptions {
            read_only: true,
            ..TransactionOptions::serializable(3)
        };
        assert_eq!(
            ro.begin_sql(),
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let options = TransactionOptions::default();
        for attempt in 1..6 {
            let base = Duration::from_millis(10) * (1 << (attempt - 1));
            let wait = options.backoff(attempt);
            assert!(wait >= base && wait < base * 2, "{attempt}: {wait:?}");
        }
        // Huge attempt numbers saturate instead of overflowing.
        let _ = options.backoff(u32::MAX);
    }
}
