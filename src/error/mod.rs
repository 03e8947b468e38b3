//! The crate's one error type.
//!
//! Every fallible function of the crate returns [`Error`]. Callers branch on
//! its predicates ([`Error::is_not_found`], [`Error::is_conflict`], …) and
//! accessors ([`Error::constraint`], [`Error::sqlstate`]) rather than on
//! message strings; the messages are for humans and may change.

use std::fmt;

mod classify;
mod constructors;
mod message;
mod parse;
#[cfg(test)]
mod tests;

pub(crate) use classify::is_read_only_refusal;
use classify::server_error;
pub(crate) use message::describe;
use message::*;

/// The SQLSTATE codes of [`Error::sqlstate`] and [`Error::database`] (the
/// driver's type, re-exported).
pub use tokio_postgres::error::SqlState;

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
    /// The server (or a pooler in front of it) did not answer a statement
    /// within `statement_timeout` plus [`NO_ANSWER_MARGIN`]: it stopped
    /// answering without closing the connection (a frozen process, a lost
    /// network). The connection was closed, never pooled; inside a
    /// transaction, the transaction rolls back.
    NoAnswer,
}

/// How much longer than `statement_timeout` the crate waits for the server
/// to answer a statement before it gives up on the connection
/// ([`TimeoutKind::NoAnswer`]): the server cancels the statement itself at
/// `statement_timeout`, so only a server that stopped answering takes longer.
pub const NO_ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Statement => "statement timeout",
            TimeoutKind::Lock => "lock timeout",
            TimeoutKind::IdleInTransaction => "idle-in-transaction timeout",
            TimeoutKind::PoolWait => "timed out waiting for a pooled connection",
            TimeoutKind::PoolRecycle => "timed out recycling a pooled connection",
            TimeoutKind::NoAnswer => "the server did not answer within statement_timeout plus 5 s",
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

/// Why a TLS connection could not be made, in an [`Error::Tls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate does not chain to a trusted root: issued by
    /// a CA that is neither in `sslrootcert` nor (without it) among the
    /// system's roots, or self-signed, or its chain's signatures are wrong.
    UnknownCa,
    /// The server's certificate is valid but does not name the host
    /// connected to (`sslmode=verify-full`).
    HostnameMismatch,
    /// The server's certificate (or one of its chain) has expired or is
    /// not valid yet.
    Expired,
    /// The server declined TLS, and `sslmode` is `require`, `verify-ca` or
    /// `verify-full`.
    ServerNoTls,
    /// Any other TLS failure: a certificate the checks refuse for another
    /// reason, the server refusing the handshake (e.g. the client
    /// certificate), no protocol version or cipher in common.
    Other,
}

impl fmt::Display for TlsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsErrorKind::UnknownCa => {
                "the server's certificate is not signed by a trusted certificate authority"
            }
            TlsErrorKind::HostnameMismatch => {
                "the server's certificate does not name the host connected to"
            }
            TlsErrorKind::Expired => "the server's certificate has expired or is not yet valid",
            TlsErrorKind::ServerNoTls => "the server does not support TLS, which sslmode requires",
            TlsErrorKind::Other => "the TLS handshake failed",
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
    ///
    /// Built by the crate from the server's error, or by
    /// [`Error::conflict`] (a mock's answer) without one.
    #[error("conflict: {}", violation(constraint.as_deref(), "unique constraint violated", &UNIQUE_VIOLATION, message.as_deref(), source.as_ref()))]
    Conflict {
        /// The server's message, without its detail (which lists the
        /// offending row's values); `None` when built by a constructor.
        message: Option<String>,
        /// The violated constraint, e.g. `users_email_key`.
        constraint: Option<String>,
        /// The server's error; `None` when built by [`Error::conflict`].
        #[source]
        source: Option<tokio_postgres::Error>,
    },

    /// A foreign key refused the write: the parent row does not exist
    /// (SQLSTATE 23503).
    ///
    /// Built by the crate from the server's error, or by
    /// [`Error::foreign_key`] without one.
    #[error("foreign key violation: {}", violation(constraint.as_deref(), "referenced row missing", &FOREIGN_KEY_VIOLATION, message.as_deref(), source.as_ref()))]
    ForeignKey {
        /// The server's message, without its detail (which lists the
        /// offending row's values); `None` when built by a constructor.
        message: Option<String>,
        /// The violated constraint, e.g. `tasks_user_id_fkey`.
        constraint: Option<String>,
        /// The server's error; `None` when built by [`Error::foreign_key`].
        #[source]
        source: Option<tokio_postgres::Error>,
    },

    /// A CHECK or NOT NULL constraint of the schema refused the row
    /// (SQLSTATE 23514, 23502). The crate validates inputs before sending
    /// them, so this is seen when rows come from elsewhere (raw SQL).
    ///
    /// Built by the crate from the server's error, or by
    /// [`Error::check_violation`] and [`Error::not_null_violation`] without
    /// one.
    #[error("check violation: {}", violation(constraint.as_deref(), "row refused by the schema", check_state(*not_null), message.as_deref(), source.as_ref()))]
    CheckViolation {
        /// The server's message, without its detail (which lists the
        /// offending row's values); `None` when built by a constructor.
        message: Option<String>,
        /// The violated constraint, e.g. `tasks_priority_range`; for a NOT
        /// NULL violation, the column name.
        constraint: Option<String>,
        /// `true` for a NOT NULL violation (23502), `false` for a CHECK
        /// constraint (23514).
        not_null: bool,
        /// The server's error; `None` when built by a constructor.
        #[source]
        source: Option<tokio_postgres::Error>,
    },

    /// An input was refused before anything was sent to the server.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The input field, e.g. `"email"`.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },

    /// A status change the state machine forbids (see the
    /// [domain reference](crate::domain#state-machines)). `from` is the
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
    /// transaction, or was abandoned in flight (its future dropped by a
    /// timeout or `select!` inside the closure), so nobody knows whether it
    /// ran. Everything was rolled back: nothing of the transaction was
    /// written.
    #[error(
        "the transaction was rolled back: a statement in it failed or was abandoned in flight, though the closure returned Ok"
    )]
    TransactionAborted,

    /// Something ran out of time; see [`TimeoutKind`].
    #[error("{kind}{}", timeout_said(*kind, source.as_ref()))]
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

    /// A connection could not be made because of TLS; [`TlsErrorKind`] says
    /// why (an unknown CA, a host name the certificate does not name, an
    /// expired certificate, a server without TLS). Not retryable: the same
    /// settings fail the same way until the server's certificate or the
    /// settings change.
    #[error("TLS failure: {message}")]
    Tls {
        /// Why.
        kind: TlsErrorKind,
        /// The cause, in words, and the server connected to (never a
        /// password).
        message: String,
        /// The driver's error, with the TLS library's error among its
        /// sources.
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
    ///
    /// Built by the crate from the driver's error, or by [`Error::database`]
    /// without one.
    #[error("database error: {}", said(sqlstate.as_ref(), message, source.as_ref()))]
    Database {
        /// The SQLSTATE the server reported; `None` when the driver itself
        /// failed (no server answer to report).
        sqlstate: Option<SqlState>,
        /// The server's message (without detail and hint, which the source
        /// carries), or, for a driver error, the driver's error and its
        /// causes.
        message: String,
        /// The driver's error; `None` when built by [`Error::database`].
        #[source]
        source: Option<tokio_postgres::Error>,
    },
}

/// The predicates and accessors callers branch on.
impl Error {
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

    /// SQLSTATE 25006, "read-only SQL transaction". When the server itself
    /// refused a write because the session is read-only (a standby, or a
    /// primary after a failover demoted it) this is an
    /// [`Error::Unavailable`] saying so, whose connection the crate closed
    /// rather than pooled. It is an [`Error::Database`] instead inside a
    /// transaction the caller opened with
    /// [`TransactionOptions::read_only`](crate::TransactionOptions::read_only),
    /// and when a trigger or function raised the code. A transaction made
    /// read-only by hand (`SET TRANSACTION READ ONLY` through
    /// [`Transaction::client`](crate::Transaction::client)) is taken for a
    /// read-only server. [`Error::database`] with this code builds the
    /// read-only-server form.
    pub fn is_read_only(&self) -> bool {
        self.sqlstate() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
    }

    /// The same failure as a statement error rather than an unavailable
    /// server: for a 25006 met inside the caller's own `READ ONLY`
    /// transaction, where the write, not the server, is at fault.
    pub(crate) fn into_statement_error(self) -> Error {
        match self {
            Error::Unavailable {
                source: Some(source),
                reason,
            } => match source.downcast::<tokio_postgres::Error>() {
                Ok(pg) => match pg.as_db_error() {
                    Some(db) => Error::Database {
                        sqlstate: Some(db.code().clone()),
                        message: db.message().to_owned(),
                        source: Some(*pg),
                    },
                    None => Error::Unavailable {
                        reason,
                        source: Some(pg),
                    },
                },
                Err(source) => match source.downcast::<Error>() {
                    Ok(inner) => *inner,
                    Err(source) => Error::Unavailable {
                        reason,
                        source: Some(source),
                    },
                },
            },
            other => other,
        }
    }

    /// A connection failed because of TLS ([`Error::Tls`]); see
    /// [`tls_kind`](Self::tls_kind) for why.
    pub fn is_tls(&self) -> bool {
        matches!(self, Error::Tls { .. })
    }

    /// Why a TLS connection failed, for an [`Error::Tls`].
    ///
    /// ```
    /// use voidrunner_db::{Error, TlsErrorKind};
    ///
    /// let err = Error::tls(TlsErrorKind::UnknownCa, "connecting to db:5432/app: unknown issuer");
    /// assert!(err.is_tls());
    /// assert_eq!(err.tls_kind(), Some(TlsErrorKind::UnknownCa));
    /// assert!(!err.is_unavailable());
    /// ```
    pub fn tls_kind(&self) -> Option<TlsErrorKind> {
        match self {
            Error::Tls { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A TLS error's message prefixed with the server it was connecting to;
    /// any other error as it is. The driver's error does not say where it
    /// was connecting, the call sites know.
    pub(crate) fn connecting_to(self, target: &str) -> Self {
        match self {
            Error::Tls {
                kind,
                message,
                source,
            } => Error::Tls {
                kind,
                message: format!("connecting to {target}: {message}"),
                source,
            },
            other => other,
        }
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

    /// The variant's name in snake case (`"not_found"`, `"conflict"`,
    /// `"unavailable"`, …): a stable, low-cardinality label for logs and
    /// metrics. Failed repository calls record it, with the SQLSTATE, as
    /// the `error.kind` and `error.sqlstate` fields of an event in their
    /// span.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::ForeignKey { .. } => "foreign_key",
            Error::CheckViolation { .. } => "check_violation",
            Error::Validation { .. } => "validation",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::LeaseLost { .. } => "lease_lost",
            Error::TransactionEnded => "transaction_ended",
            Error::TransactionAborted => "transaction_aborted",
            Error::Timeout { .. } => "timeout",
            Error::Unavailable { .. } => "unavailable",
            Error::Migration { .. } => "migration",
            Error::Decode { .. } => "decode",
            Error::Config { .. } => "config",
            Error::Tls { .. } => "tls",
            Error::Database { .. } => "database",
        }
    }

    /// The SQLSTATE the server reported, if this error came from the server.
    ///
    /// For an error built by a constructor, the code the server would have
    /// reported: 23505, 23503, 23514 or 23502 for the constraint variants,
    /// the given code for [`Error::database`], and 57014, 55P03 or 25P03 for
    /// a [`Error::Timeout`] of the server (a timeout is given its kind's
    /// code even when the session was lost before the server's answer
    /// arrived). `None` for the pool's timeouts and for every error the
    /// server did not report.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            Error::Conflict { .. } => Some(&UNIQUE_VIOLATION),
            Error::ForeignKey { .. } => Some(&FOREIGN_KEY_VIOLATION),
            Error::CheckViolation { not_null, .. } => Some(check_state(*not_null)),
            Error::Database { sqlstate, .. } => sqlstate.as_ref(),
            Error::Timeout { kind, source } => {
                source_state(source.as_ref()).or_else(|| kind.server_state())
            }
            Error::Unavailable { source, .. } => source_state(source.as_ref()),
            _ => None,
        }
    }
}
