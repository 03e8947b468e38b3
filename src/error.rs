//! The crate's one error type.
//!
//! Every fallible function of the crate returns [`Error`]. Callers branch on
//! its predicates ([`Error::is_not_found`], [`Error::is_conflict`], …) and
//! accessors ([`Error::constraint`], [`Error::sqlstate`]) rather than on
//! message strings; the messages are for humans and may change.

use std::fmt;

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

/// A boxed error kept as the [`source`](std::error::Error::source) of an
/// [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What ran out of time, in an [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The server cancelled a statement that ran longer than
    /// `statement_timeout` (SQLSTATE 57014).
    Statement,
    /// A lock could not be taken within `lock_timeout` (SQLSTATE 55P03).
    Lock,
    /// The server ended a session left idle inside a transaction longer than
    /// `idle_in_transaction_session_timeout` (SQLSTATE 25P03).
    IdleInTransaction,
    /// Every pooled connection stayed in use for the whole wait timeout.
    PoolWait,
    /// Recycling a pooled connection took longer than the recycle timeout.
    PoolRecycle,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Statement => "statement timeout",
            TimeoutKind::Lock => "lock timeout",
            TimeoutKind::IdleInTransaction => "idle-in-transaction timeout",
            TimeoutKind::PoolWait => "timed out waiting for a pooled connection",
            TimeoutKind::PoolRecycle => "timed out recycling a pooled connection",
        })
    }
}

/// Why a worker no longer owns an execution, in an [`Error::LeaseLost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseLostReason {
    /// The execution was cancelled; the worker should stop running it.
    Cancelled,
    /// The lease expired and the rescuer timed the execution out.
    Expired,
    /// The execution already ended (completed, failed or timed out).
    Finished,
    /// Another worker owns it, or it is not running.
    NotOwner,
}

impl fmt::Display for LeaseLostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseLostReason::Cancelled => "the execution was cancelled",
            LeaseLostReason::Expired => "the lease expired and the execution was timed out",
            LeaseLostReason::Finished => "the execution already ended",
            LeaseLostReason::NotOwner => "the worker does not own the execution",
        })
    }
}

/// Every error the crate returns.
///
/// New variants may be added in minor releases, so a `match` needs a
/// wildcard arm; the predicates below are the stable way to branch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The row does not exist.
    #[error("{entity} not found: {key}")]
    NotFound {
        /// The kind of row looked for, e.g. `"user"`.
        entity: &'static str,
        /// The key it was looked for by (an id or an email).
        key: String,
    },

    /// A unique constraint refused the write (SQLSTATE 23505).
    #[error("conflict: {}: {}", describe_constraint(constraint.as_deref(), "unique constraint violated"), describe(source))]
    Conflict {
        /// The violated constraint, e.g. `users_email_key`.
        constraint: Option<String>,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A foreign key refused the write: the parent row does not exist
    /// (SQLSTATE 23503).
    #[error("foreign key violation: {}: {}", describe_constraint(constraint.as_deref(), "referenced row missing"), describe(source))]
    ForeignKey {
        /// The violated constraint, e.g. `tasks_user_id_fkey`.
        constraint: Option<String>,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A CHECK or NOT NULL constraint of the schema refused the row
    /// (SQLSTATE 23514, 23502). The crate validates inputs before sending
    /// them, so this is seen when rows come from elsewhere (raw SQL).
    #[error("check violation: {}: {}", describe_constraint(constraint.as_deref(), "row refused by the schema"), describe(source))]
    CheckViolation {
        /// The violated constraint, e.g. `tasks_priority_range`; for a NOT
        /// NULL violation, the column name.
        constraint: Option<String>,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// An input was refused before anything was sent to the server.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The input field, e.g. `"email"`.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },

    /// A status change the state machine forbids (SPEC §3). `from` is the
    /// state the row actually had when the change was attempted.
    #[error("invalid {entity} status transition from {from} to {to}")]
    InvalidTransition {
        /// `"task"` or `"execution"`.
        entity: &'static str,
        /// The current status.
        from: &'static str,
        /// The requested status.
        to: &'static str,
    },

    /// A worker's heartbeat or completion was refused because it no longer
    /// owns the execution; nothing was changed.
    #[error("lease on execution {execution} lost: {reason}")]
    LeaseLost {
        /// The execution.
        execution: crate::model::ExecutionId,
        /// Why.
        reason: LeaseLostReason,
    },

    /// The [`Transaction`](crate::Transaction) was already committed or
    /// rolled back: a clone of it was used after its closure returned.
    #[error("the transaction has already ended")]
    TransactionEnded,

    /// The transaction's closure returned `Ok`, but a statement inside it
    /// had failed (its error was handled in the closure), which aborted the
    /// transaction: PostgreSQL rolled everything back at COMMIT. Nothing of
    /// the transaction was written.
    #[error(
        "the transaction was rolled back: a statement in it failed, which aborts a PostgreSQL transaction, though the closure returned Ok"
    )]
    TransactionAborted,

    /// Something ran out of time; see [`TimeoutKind`].
    #[error("{kind}{}", server_said(source.as_deref()))]
    Timeout {
        /// What timed out.
        kind: TimeoutKind,
        /// The server's error, when the server reported it.
        #[source]
        source: Option<BoxError>,
    },

    /// The server cannot be reached or went away: connection refused or
    /// lost, server shutting down, too many connections, or the pool closed.
    /// Usually worth retrying later.
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// What happened, without secrets.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// Applying, reverting or reading migrations failed.
    ///
    /// When a migration gave up because it kept waiting longer than
    /// [`DbConfig::migration_lock_timeout`](crate::DbConfig::migration_lock_timeout)
    /// for a lock, on every one of its attempts, [`Error::is_lock_timeout`]
    /// is true, the message names the migration, the number of attempts and
    /// the lock it waited for (lock mode, relation, and the blocking
    /// sessions' pid, `application_name`, state and the modes they hold,
    /// never their query text), and the source is an [`Error::Timeout`] of
    /// kind [`TimeoutKind::Lock`]. That migration is not recorded as applied
    /// (or reverted): one run in a transaction left nothing behind, one run
    /// outside a transaction may have committed its first statements, which
    /// it repeats when run again. Migrations before it in the same call stay
    /// applied.
    #[error("migration failed: {message}")]
    Migration {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// A row read from the database holds a value the crate cannot
    /// represent (written by another application: e.g. metadata nested
    /// deeper than the JSON reader allows or a number out of `f64` range, an
    /// `infinity` or out-of-range timestamp). Nothing is defaulted: the call
    /// fails, naming the row and the column.
    #[error("cannot read {entity} {} column {column}: {source}", id.as_deref().unwrap_or("(unknown id)"))]
    Decode {
        /// `"user"`, `"task"` or `"execution"`.
        entity: &'static str,
        /// The column that could not be decoded.
        column: &'static str,
        /// The row's id, when it could be read.
        id: Option<String>,
        /// What the decoder said.
        #[source]
        source: BoxError,
    },

    /// The configuration is invalid (bad URL, bad duration, min > max…).
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },

    /// Any other error from the server or the driver. Its message carries
    /// the server's message, detail and hint and the SQLSTATE.
    #[error("database error: {}", describe(.0))]
    Database(#[source] tokio_postgres::Error),
}

fn describe_constraint<'a>(constraint: Option<&'a str>, fallback: &'a str) -> &'a str {
    constraint.unwrap_or(fallback)
}

/// `": <what the server said>"` when `source` is a driver error, else "".
fn server_said(source: Option<&(dyn std::error::Error + Send + Sync + 'static)>) -> String {
    source
        .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        .map(|e| format!(": {}", describe(e)))
        .unwrap_or_default()
}

/// What the server or the driver said, for messages: the server's message,
/// detail and hint and the SQLSTATE, or the driver's error with its causes
/// ("error connecting to server: Connection refused").
///
/// The detail of an integrity violation (class 23) is left out: the server
/// puts the offending row's values there ("Failing row contains (…)"), which
/// may include a password hash; the constraint name says what failed.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    use std::fmt::Write as _;

    let Some(db) = err.as_db_error() else {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                let _ = write!(text, ": {cause_text}");
            }
            source = cause.source();
        }
        return text;
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail()
        && !db.code().code().starts_with("23")
    {
        let _ = write!(text, "; detail: {detail}");
    }
    if let Some(hint) = db.hint() {
        let _ = write!(text, "; hint: {hint}");
    }
    text
}

impl Error {
    /// An [`Error::Validation`] for `field`.
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Error::Validation {
            field,
            message: message.into(),
        }
    }

    /// An [`Error::NotFound`] for `entity` looked up by `key`.
    pub fn not_found(entity: &'static str, key: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            key: key.to_string(),
        }
    }

    pub(crate) fn unavailable(reason: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Unavailable {
            reason: reason.into(),
            source,
        }
    }

    pub(crate) fn migration(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Migration {
            message: message.into(),
            source,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    /// A stored value could not be decoded ([`Error::Decode`]).
    pub fn is_decode(&self) -> bool {
        matches!(self, Error::Decode { .. })
    }

    /// The row does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// A unique constraint refused the write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// A foreign key refused the write.
    pub fn is_foreign_key(&self) -> bool {
        matches!(self, Error::ForeignKey { .. })
    }

    /// A CHECK or NOT NULL constraint refused the row.
    pub fn is_check_violation(&self) -> bool {
        matches!(self, Error::CheckViolation { .. })
    }

    /// An input was refused before reaching the server.
    pub fn is_validation(&self) -> bool {
        matches!(self, Error::Validation { .. })
    }

    /// A forbidden status transition.
    pub fn is_invalid_transition(&self) -> bool {
        matches!(self, Error::InvalidTransition { .. })
    }

    /// A worker lost its lease on an execution.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Error::LeaseLost { .. })
    }

    /// Why a lease was lost, for an [`Error::LeaseLost`].
    pub fn lease_lost_reason(&self) -> Option<LeaseLostReason> {
        match self {
            Error::LeaseLost { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// Whether the caller may run the same call (or transaction) again
    /// unchanged: nothing of it took effect, and a later attempt may
    /// succeed.
    ///
    /// | error | why it is safe and may pass next time |
    /// |---|---|
    /// | SQLSTATE 40001, 40P01 | serialization failure, deadlock: rolled back, the competitor has moved on |
    /// | `Timeout` of kind `Lock` (55P03) | the lock was not granted: nothing was done |
    /// | `Timeout` of kind `PoolWait` | every connection was busy: nothing was sent |
    /// | SQLSTATE 0A000, 26000 | a statement cached before a schema change, inside a transaction: rolled back, and the connection's cache was cleared |
    ///
    /// Not retryable: a statement timeout (it would most likely time out
    /// again), `Unavailable` (a connection lost while a statement was in
    /// flight leaves its outcome unknown), constraint violations, validation
    /// and state-machine refusals.
    /// [`Database::transaction_with`](crate::Database::transaction_with)
    /// retries exactly these when asked to.
    pub fn is_retryable(&self) -> bool {
        if let Error::Timeout {
            kind: TimeoutKind::Lock | TimeoutKind::PoolWait,
            ..
        } = self
        {
            return true;
        }
        self.sqlstate().is_some_and(|s| {
            *s == SqlState::T_R_SERIALIZATION_FAILURE
                || *s == SqlState::T_R_DEADLOCK_DETECTED
                || *s == SqlState::FEATURE_NOT_SUPPORTED
                || *s == SqlState::INVALID_SQL_STATEMENT_NAME
        })
    }

    /// Something timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// A lock could not be taken within `lock_timeout`: an
    /// [`Error::Timeout`] of kind [`TimeoutKind::Lock`] (SQLSTATE 55P03), or
    /// an [`Error::Migration`] that gave up after every attempt hit
    /// [`DbConfig::migration_lock_timeout`](crate::DbConfig::migration_lock_timeout).
    /// For the latter, [`is_timeout`](Self::is_timeout) is false (it is a
    /// migration error) and the message names the blocking lock; running
    /// the migration again once the blocking session is gone succeeds.
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            Error::Timeout {
                kind: TimeoutKind::Lock,
                ..
            } => true,
            Error::Migration {
                source: Some(source),
                ..
            } => source
                .downcast_ref::<Error>()
                .is_some_and(Error::is_lock_timeout),
            _ => false,
        }
    }

    /// The server is unreachable, went away, or the pool is closed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// The constraint a write violated, for [`Error::Conflict`],
    /// [`Error::ForeignKey`] and [`Error::CheckViolation`].
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Error::Conflict { constraint, .. }
            | Error::ForeignKey { constraint, .. }
            | Error::CheckViolation { constraint, .. } => constraint.as_deref(),
            _ => None,
        }
    }

    /// The input field an [`Error::Validation`] is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::Validation { field, .. } => Some(field),
            _ => None,
        }
    }

    /// What timed out, for an [`Error::Timeout`].
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        match self {
            Error::Timeout { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The SQLSTATE the server reported, if this error came from the server.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            Error::Conflict { source, .. }
            | Error::ForeignKey { source, .. }
            | Error::CheckViolation { source, .. }
            | Error::Database(source) => source.code(),
            Error::Timeout { source, .. } | Error::Unavailable { source, .. } => source
                .as_deref()
                .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
                .and_then(tokio_postgres::Error::code),
            _ => None,
        }
    }
}

/// SQLSTATEs that mean the session or server is gone rather than the
/// statement being wrong.
fn is_unavailable_state(state: &SqlState) -> bool {
    let code = state.code();
    // Class 08: connection exception; 57P01..57P03: admin/crash shutdown,
    // cannot connect now; 53300: too many connections.
    // 08P01 is a protocol violation: a bug or a proxy in the way, not an
    // unreachable server.
    (code.starts_with("08") && *state != SqlState::PROTOCOL_VIOLATION)
        || *state == SqlState::ADMIN_SHUTDOWN
        || *state == SqlState::CRASH_SHUTDOWN
        || *state == SqlState::CANNOT_CONNECT_NOW
        || *state == SqlState::TOO_MANY_CONNECTIONS
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(state) = err.code() else {
            // No SQLSTATE: the driver itself failed. A closed connection or
            // an I/O error (refused, reset, timed out connecting) means the
            // server is unreachable.
            let io = std::error::Error::source(&err)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
            if err.is_closed() || io {
                return Error::unavailable(describe(&err), Some(Box::new(err)));
            }
            return Error::Database(err);
        };
        let constraint = err
            .as_db_error()
            .and_then(|db| db.constraint().or(db.column()))
            .map(str::to_owned);
        match state {
            s if *s == SqlState::UNIQUE_VIOLATION => Error::Conflict {
                constraint,
                source: err,
            },
            s if *s == SqlState::FOREIGN_KEY_VIOLATION => Error::ForeignKey {
                constraint,
                source: err,
            },
            s if *s == SqlState::CHECK_VIOLATION || *s == SqlState::NOT_NULL_VIOLATION => {
                Error::CheckViolation {
                    constraint,
                    source: err,
                }
            }
            // 57014 is also what a cancel request (pg_cancel_backend, a
            // client's cancel) gives; only the server's own statement
            // timeout is a timeout. Its message is the way to tell them
            // apart (the crate's sessions use the server's default
            // lc_messages, English on every packaged server).
            s if *s == SqlState::QUERY_CANCELED
                && err
                    .as_db_error()
                    .is_some_and(|db| db.message().contains("statement timeout")) =>
            {
                Error::Timeout {
                    kind: TimeoutKind::Statement,
                    source: Some(Box::new(err)),
                }
            }
            s if *s == SqlState::LOCK_NOT_AVAILABLE => Error::Timeout {
                kind: TimeoutKind::Lock,
                source: Some(Box::new(err)),
            },
            s if *s == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => Error::Timeout {
                kind: TimeoutKind::IdleInTransaction,
                source: Some(Box::new(err)),
            },
            s if is_unavailable_state(s) => Error::unavailable(describe(&err), Some(Box::new(err))),
            _ => Error::Database(err),
        }
    }
}

impl From<PoolError> for Error {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(TimeoutType::Wait) => Error::Timeout {
                kind: TimeoutKind::PoolWait,
                source: None,
            },
            PoolError::Timeout(TimeoutType::Recycle) => Error::Timeout {
                kind: TimeoutKind::PoolRecycle,
                source: None,
            },
            // Creating a connection timed out: the server does not answer.
            PoolError::Timeout(TimeoutType::Create) => {
                Error::unavailable("timed out connecting to the server", None)
            }
            PoolError::Closed => Error::unavailable("the connection pool is closed", None),
            PoolError::NoRuntimeSpecified => {
                Error::config("the connection pool has no async runtime")
            }
            PoolError::PostCreateHook(hook) => {
                Error::unavailable(format!("setting up a new connection failed: {hook}"), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_errors_map_to_variants() {
        let wait: Error = PoolError::Timeout(TimeoutType::Wait).into();
        assert_eq!(wait.timeout_kind(), Some(TimeoutKind::PoolWait));
        let create: Error = PoolError::Timeout(TimeoutType::Create).into();
        assert!(create.is_unavailable());
        let closed: Error = PoolError::Closed.into();
        assert!(closed.is_unavailable());
        assert!(closed.to_string().contains("closed"));
    }

    #[test]
    fn unavailable_states() {
        for state in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
        ] {
            assert!(is_unavailable_state(&state), "{state:?}");
        }
        for state in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::QUERY_CANCELED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ] {
            assert!(!is_unavailable_state(&state), "{state:?}");
        }
    }

    #[test]
    fn predicates_and_accessors() {
        let v = Error::validation("email", "too long");
        assert!(v.is_validation());
        assert_eq!(v.field(), Some("email"));
        assert_eq!(v.constraint(), None);
        assert_eq!(v.to_string(), "invalid email: too long");
        let nf = Error::not_found("user", "a@b.co");
        assert!(nf.is_not_found());
        assert_eq!(nf.to_string(), "user not found: a@b.co");
        let t = Error::InvalidTransition {
            entity: "task",
            from: "completed",
            to: "running",
        };
        assert!(t.is_invalid_transition());
        assert_eq!(
            t.to_string(),
            "invalid task status transition from completed to running"
        );
    }

    #[test]
    fn lock_timeouts_of_migrations_are_recognised() {
        let lock = || Error::Timeout {
            kind: TimeoutKind::Lock,
            source: None,
        };
        assert!(lock().is_lock_timeout());
        let gave_up = Error::migration("V4 gave up", Some(Box::new(lock())));
        assert!(gave_up.is_lock_timeout());
        assert!(!gave_up.is_timeout());
        let statement = Error::Timeout {
            kind: TimeoutKind::Statement,
            source: None,
        };
        assert!(!statement.is_lock_timeout());
        assert!(!Error::migration("V4 failed", Some(Box::new(statement))).is_lock_timeout());
        assert!(!Error::migration("V4 failed", None).is_lock_timeout());
    }
}
