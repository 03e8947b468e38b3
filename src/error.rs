//! The crate's one error type.
//!
//! Every fallible function of the crate returns [`Error`]. Callers branch on
//! its predicates ([`Error::is_not_found`], [`Error::is_conflict`], …) and
//! accessors ([`Error::constraint`], [`Error::sqlstate`]) rather than on
//! message strings; the messages are for humans and may change.

use std::fmt;

use deadpool_postgres::{PoolError, TimeoutType};
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

// The codes `sqlstate()` reports for errors built without a server error.
static UNIQUE_VIOLATION: SqlState = SqlState::UNIQUE_VIOLATION;
static FOREIGN_KEY_VIOLATION: SqlState = SqlState::FOREIGN_KEY_VIOLATION;
static CHECK_VIOLATION: SqlState = SqlState::CHECK_VIOLATION;
static NOT_NULL_VIOLATION: SqlState = SqlState::NOT_NULL_VIOLATION;
static QUERY_CANCELED: SqlState = SqlState::QUERY_CANCELED;
static LOCK_NOT_AVAILABLE: SqlState = SqlState::LOCK_NOT_AVAILABLE;
static IDLE_IN_TRANSACTION_SESSION_TIMEOUT: SqlState =
    SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT;

/// The SQLSTATE of a [`Error::CheckViolation`].
fn check_state(not_null: bool) -> &'static SqlState {
    if not_null {
        &NOT_NULL_VIOLATION
    } else {
        &CHECK_VIOLATION
    }
}

impl TimeoutKind {
    /// The SQLSTATE the server ends a statement or session with for this
    /// kind of timeout; `None` for the pool's own timeouts.
    fn server_state(self) -> Option<&'static SqlState> {
        match self {
            TimeoutKind::Statement => Some(&QUERY_CANCELED),
            TimeoutKind::Lock => Some(&LOCK_NOT_AVAILABLE),
            TimeoutKind::IdleInTransaction => Some(&IDLE_IN_TRANSACTION_SESSION_TIMEOUT),
            TimeoutKind::PoolWait | TimeoutKind::PoolRecycle | TimeoutKind::NoAnswer => None,
        }
    }
}

/// The message of an integrity violation: the constraint, then what the
/// server said, or `fallback` and the SQLSTATE for one built without a
/// server error.
fn violation(
    constraint: Option<&str>,
    fallback: &str,
    state: &SqlState,
    message: Option<&str>,
    source: Option<&tokio_postgres::Error>,
) -> String {
    let said = match (source, message) {
        (Some(err), _) => describe(err),
        (None, Some(message)) => format!("{message} (SQLSTATE {})", state.code()),
        (None, None) => format!("{fallback} (SQLSTATE {})", state.code()),
    };
    match (constraint, source.is_some() || message.is_some()) {
        (Some(constraint), _) => format!("{constraint}: {said}"),
        (None, true) => format!("{fallback}: {said}"),
        (None, false) => said,
    }
}

/// What the server or driver said: [`describe`] of the driver's error when
/// there is one, else `message` and the SQLSTATE.
fn said(
    sqlstate: Option<&SqlState>,
    message: &str,
    source: Option<&tokio_postgres::Error>,
) -> String {
    match (source, sqlstate) {
        (Some(err), _) => describe(err),
        (None, Some(state)) => format!("{message} (SQLSTATE {})", state.code()),
        (None, None) => message.to_owned(),
    }
}

/// What a [`Error::Timeout`] adds to its kind: `": <what the server
/// said>"` when the server reported it, else the SQLSTATE the server uses
/// for that kind (none for the pool's timeouts).
fn timeout_said(kind: TimeoutKind, source: Option<&BoxError>) -> String {
    let source = source.map(|s| &**s as &(dyn std::error::Error + 'static));
    if let Some(err) = source.and_then(|s| s.downcast_ref::<tokio_postgres::Error>()) {
        return format!(": {}", describe(err));
    }
    if let Some(Error::Database {
        sqlstate,
        message,
        source,
    }) = source.and_then(|s| s.downcast_ref::<Error>())
    {
        return format!(": {}", said(sqlstate.as_ref(), message, source.as_ref()));
    }
    kind.server_state()
        .map(|state| format!(" (SQLSTATE {})", state.code()))
        .unwrap_or_default()
}

/// The SQLSTATE of a boxed source: a driver error's, or a crate error's.
fn source_state(source: Option<&BoxError>) -> Option<&SqlState> {
    let source = source?;
    if let Some(err) = source.downcast_ref::<tokio_postgres::Error>() {
        return err.code();
    }
    if let Some(err) = source.downcast_ref::<Error>() {
        return err.sqlstate();
    }
    // One error shared by the callers of a failed batch (`Completer`,
    // `Heartbeater`): each caller's copy has it as its source.
    source
        .downcast_ref::<std::sync::Arc<Error>>()
        .and_then(|err| err.sqlstate())
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

/// Constructors of every variant a repository method can return, for mocks
/// and for the crate itself.
///
/// An error built here answers the predicates and accessors exactly as the
/// one the crate returns for the same failure ([`is_conflict`],
/// [`constraint`], [`sqlstate`], [`is_retryable`], …); its message says the
/// same thing, without the server's own wording, which only a real server
/// error carries (its [`source`](std::error::Error::source) is then `None`).
///
/// ```
/// use voidrunner_db::Error;
/// use voidrunner_db::error::SqlState;
///
/// let taken = Error::conflict("users_email_key");
/// assert!(taken.is_conflict());
/// assert_eq!(taken.constraint(), Some("users_email_key"));
/// assert_eq!(taken.sqlstate(), Some(&SqlState::UNIQUE_VIOLATION));
/// assert!(!taken.is_retryable());
/// assert_eq!(
///     taken.to_string(),
///     "conflict: users_email_key: unique constraint violated (SQLSTATE 23505)"
/// );
///
/// let deadlock = Error::database(SqlState::T_R_DEADLOCK_DETECTED, "deadlock detected");
/// assert!(deadlock.is_retryable());
/// ```
///
/// [`is_conflict`]: Error::is_conflict
/// [`constraint`]: Error::constraint
/// [`sqlstate`]: Error::sqlstate
/// [`is_retryable`]: Error::is_retryable
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

    /// An [`Error::Conflict`] on the unique constraint `constraint` (e.g.
    /// `users_email_key`: the email is taken), SQLSTATE 23505.
    pub fn conflict(constraint: impl Into<String>) -> Self {
        Error::Conflict {
            constraint: Some(constraint.into()),
            message: None,
            source: None,
        }
    }

    /// An [`Error::ForeignKey`] on `constraint` (e.g. `tasks_user_id_fkey`:
    /// the user does not exist), SQLSTATE 23503.
    pub fn foreign_key(constraint: impl Into<String>) -> Self {
        Error::ForeignKey {
            constraint: Some(constraint.into()),
            message: None,
            source: None,
        }
    }

    /// An [`Error::CheckViolation`] of the CHECK constraint `constraint`
    /// (e.g. `tasks_priority_range`), SQLSTATE 23514.
    pub fn check_violation(constraint: impl Into<String>) -> Self {
        Error::CheckViolation {
            constraint: Some(constraint.into()),
            message: None,
            not_null: false,
            source: None,
        }
    }

    /// An [`Error::CheckViolation`] of the NOT NULL constraint of `column`,
    /// SQLSTATE 23502; [`constraint`](Self::constraint) names the column,
    /// as for the server's error.
    pub fn not_null_violation(column: impl Into<String>) -> Self {
        Error::CheckViolation {
            constraint: Some(column.into()),
            not_null: true,
            message: None,
            source: None,
        }
    }

    /// The error the crate returns when the server refuses a statement
    /// with `sqlstate` and `message` (its primary message, e.g. `"deadlock
    /// detected"`).
    ///
    /// It is classified as a server error is: an [`Error::Database`] for
    /// most codes, but 23505, 23503, 23514 and 23502 give the constraint
    /// variants (with no constraint named: use [`conflict`](Self::conflict)
    /// and its siblings to name one), 55P03 and 25P03 a [`Error::Timeout`],
    /// 57014 a statement timeout when `message` says "statement timeout"
    /// (else a cancelled statement, a `Database` error), and the codes of a
    /// server that went away (class 08 but 08P01, 57P01 to 57P03, 53300) an
    /// [`Error::Unavailable`]. [`sqlstate`](Self::sqlstate) is `sqlstate`
    /// in every case.
    pub fn database(sqlstate: SqlState, message: impl Into<String>) -> Self {
        server_error(sqlstate, message.into(), None, None)
    }

    /// An [`Error::Timeout`] of `kind`, as the server or the pool reports
    /// it: [`sqlstate`](Self::sqlstate) is 57014, 55P03 or 25P03 for the
    /// server's timeouts, `None` for the pool's.
    pub fn timeout(kind: TimeoutKind) -> Self {
        Error::Timeout { kind, source: None }
    }

    /// An [`Error::Unavailable`]: the server cannot be reached or went
    /// away. `reason` says what happened (without secrets); `source` is the
    /// underlying error, if any.
    pub fn unavailable(reason: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Unavailable {
            reason: reason.into(),
            source,
        }
    }

    /// An [`Error::InvalidTransition`]: `entity` (`"task"` or
    /// `"execution"`) may not go from status `from` (the one it has) to
    /// `to`, e.g. `Error::invalid_transition("task",
    /// TaskStatus::Completed.as_str(), TaskStatus::Running.as_str())`.
    pub fn invalid_transition(entity: &'static str, from: &'static str, to: &'static str) -> Self {
        Error::InvalidTransition { entity, from, to }
    }

    /// An [`Error::LeaseLost`]: the worker no longer owns `execution`,
    /// for `reason`.
    pub fn lease_lost(execution: crate::model::ExecutionId, reason: LeaseLostReason) -> Self {
        Error::LeaseLost { execution, reason }
    }

    /// An [`Error::Decode`]: the `column` of the `entity` row `id` (when it
    /// could be read) holds a value the crate cannot represent; `source`
    /// is what the decoder said (an error, or a message).
    pub fn decode(
        entity: &'static str,
        column: &'static str,
        id: Option<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Decode {
            entity,
            column,
            id,
            source: source.into(),
        }
    }

    /// An [`Error::Migration`]: applying, reverting or reading migrations
    /// failed, as `message` says; `source` is the underlying error, if
    /// any.
    pub fn migration(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Migration {
            message: message.into(),
            source,
        }
    }

    /// An [`Error::Tls`] of `kind`: a connection failed because of TLS, as
    /// `message` says (it should name the server, never a password).
    pub fn tls(kind: TlsErrorKind, message: impl Into<String>) -> Self {
        Error::Tls {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Config`]: the configuration is invalid, as `message`
    /// says.
    pub fn config(message: impl Into<String>) -> Self {
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

/// Whether `err` is the server's own refusal of a write in a read-only
/// session (25006 from a hot standby or `default_transaction_read_only`),
/// rather than a 25006 raised by a trigger or function: those carry the
/// context they were raised in, the server's refusal carries none.
pub(crate) fn is_read_only_refusal(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION && db.where_().is_none()
    })
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        // Before the I/O test below: a failed handshake reaches the driver
        // as an I/O error of the TLS stream.
        if let Some((kind, cause)) = tls_failure(&err) {
            let message = if cause.is_empty() {
                kind.to_string()
            } else {
                format!("{kind} ({cause})")
            };
            return Error::Tls {
                kind,
                message,
                source: Some(Box::new(err)),
            };
        }
        let Some(db) = err.as_db_error() else {
            // No SQLSTATE: the driver itself failed. A closed connection or
            // an I/O error (refused, reset, timed out connecting) means the
            // server is unreachable.
            let io = std::error::Error::source(&err)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
            if err.is_closed() || io {
                return Error::unavailable(describe(&err), Some(Box::new(err)));
            }
            return Error::Database {
                sqlstate: None,
                message: describe(&err),
                source: Some(err),
            };
        };
        let state = db.code().clone();
        let message = db.message().to_owned();
        if state == SqlState::READ_ONLY_SQL_TRANSACTION && !is_read_only_refusal(&err) {
            // Raised by a trigger or function of someone's (RAISE … USING
            // ERRCODE = '25006'): that statement's business, not a
            // read-only server.
            return Error::Database {
                sqlstate: Some(state),
                message,
                source: Some(err),
            };
        }
        let constraint = db.constraint().or(db.column()).map(str::to_owned);
        // An integrity violation's detail lists the offending row's values
        // ("Failing row contains (…)"), a password hash among them: the
        // driver's error is not kept as its source, so neither `Debug` nor a
        // reporter walking the source chain can print it. The message,
        // SQLSTATE and constraint say what failed.
        let source = (!state.code().starts_with("23")).then_some(err);
        server_error(state, message, constraint, source)
    }
}

/// The driver's message when the server answers `N` to the TLS request and
/// `sslmode` demands TLS (tokio-postgres' `connect_tls`, pinned by the
/// `tls` test binary): the driver has no error kind of its own for it.
const SERVER_NO_TLS: &str = "server does not support TLS";

/// Whether the driver's `err` is a TLS failure, of which kind, and its
/// cause in words (the TLS library's error, which names no secret).
fn tls_failure(err: &tokio_postgres::Error) -> Option<(TlsErrorKind, String)> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut under_tls = false;
    while let Some(e) = current {
        let text = e.to_string();
        if text == SERVER_NO_TLS {
            return Some((TlsErrorKind::ServerNoTls, String::new()));
        }
        // tokio-rustls hands the handshake's error over wrapped in an I/O
        // error, whose `source` skips it: look inside.
        #[cfg(feature = "tls-rustls")]
        {
            let inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static))
                .unwrap_or(e);
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some((rustls_kind(tls), rustls_cause(tls)));
            }
        }
        under_tls |= text == "error performing TLS handshake";
        current = e.source();
    }
    // The driver's own TLS failures ("no hostname provided for TLS
    // handshake", "no TLS implementation configured").
    under_tls.then(|| {
        let mut cause = describe(err);
        if let Some(rest) = cause.strip_prefix("error performing TLS handshake: ") {
            cause = rest.to_owned();
        }
        (TlsErrorKind::Other, cause)
    })
}

/// What rustls said, and what a refusal by the server most likely means.
#[cfg(feature = "tls-rustls")]
fn rustls_cause(err: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::AlertReceived(
            A::UnknownCA | A::BadCertificate | A::CertificateRequired | A::AccessDenied,
        ) => format!(
            "{err}: the server refused the client certificate (sslcert and sslkey), or wanted one"
        ),
        rustls::Error::AlertReceived(_) => format!("{err}: the server ended the handshake"),
        _ => err.to_string(),
    }
}

/// The kind of a rustls failure.
#[cfg(feature = "tls-rustls")]
fn rustls_kind(err: &rustls::Error) -> TlsErrorKind {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => TlsErrorKind::UnknownCa,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsErrorKind::HostnameMismatch,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => TlsErrorKind::Expired,
            _ => TlsErrorKind::Other,
        },
        _ => TlsErrorKind::Other,
    }
}

/// The variant for a server error of `state` with the primary message
/// `message`: from the driver's error `source`, or built by
/// [`Error::database`] without one.
fn server_error(
    state: SqlState,
    message: String,
    constraint: Option<String>,
    source: Option<tokio_postgres::Error>,
) -> Error {
    // The source of a timeout or of an unavailable server: the driver's
    // error, or the server error it stands for.
    let boxed = |state: SqlState, message: String, source: Option<tokio_postgres::Error>| {
        let boxed: BoxError = match source {
            Some(err) => Box::new(err),
            None => Box::new(Error::Database {
                sqlstate: Some(state),
                message,
                source: None,
            }),
        };
        Some(boxed)
    };
    let timeout = |kind: TimeoutKind, state, message, source| Error::Timeout {
        kind,
        source: boxed(state, message, source),
    };
    match state {
        s if s == SqlState::UNIQUE_VIOLATION => Error::Conflict {
            constraint,
            message: Some(message),
            source,
        },
        s if s == SqlState::FOREIGN_KEY_VIOLATION => Error::ForeignKey {
            constraint,
            message: Some(message),
            source,
        },
        s if s == SqlState::CHECK_VIOLATION || s == SqlState::NOT_NULL_VIOLATION => {
            Error::CheckViolation {
                constraint,
                not_null: s == SqlState::NOT_NULL_VIOLATION,
                message: Some(message),
                source,
            }
        }
        // 57014 is also what a cancel request (pg_cancel_backend, a
        // client's cancel) gives; only the server's own statement timeout
        // is a timeout. Its message is the way to tell them apart (the
        // crate's sessions use the server's default lc_messages, English on
        // every packaged server).
        s if s == SqlState::QUERY_CANCELED && message.contains("statement timeout") => {
            timeout(TimeoutKind::Statement, s, message, source)
        }
        s if s == SqlState::LOCK_NOT_AVAILABLE => timeout(TimeoutKind::Lock, s, message, source),
        s if s == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => {
            timeout(TimeoutKind::IdleInTransaction, s, message, source)
        }
        // A standby, or a primary demoted or switched to read-only (after a
        // failover the pool's old connections may still point at it): no
        // write can succeed on this session, so it is the server that is
        // unavailable for this work, not the statement that is wrong. The
        // executor closes such a connection and the pool's idle ones, so the
        // next checkout connects afresh (finding the new primary through a
        // multi-host URL with `target_session_attrs=read-write`).
        s if s == SqlState::READ_ONLY_SQL_TRANSACTION => Error::Unavailable {
            reason: format!(
                "the server is read-only (a standby, or writes are switched off): {}",
                said(Some(&s), &message, source.as_ref())
            ),
            source: boxed(s, message, source),
        },
        // A pooler (PgBouncer) refusing a startup parameter, typically the
        // `options` that carry the session settings: the fix is a setting,
        // so the error says which instead of a bare protocol violation.
        s if s == SqlState::PROTOCOL_VIOLATION
            && message.starts_with("unsupported startup parameter") =>
        {
            Error::config(format!(
                "the server refused the connection ({message}): a connection pooler such as \
                 PgBouncer is in front, which refuses startup options; set the pooler mode \
                 (VOIDRUNNER_DB_POOLER=transaction or session, DbConfig::pooler) to match the \
                 pooler's pool_mode"
            ))
        }
        s if is_unavailable_state(&s) => Error::Unavailable {
            reason: said(Some(&s), &message, source.as_ref()),
            source: boxed(s, message, source),
        },
        s => Error::Database {
            sqlstate: Some(s),
            message,
            source,
        },
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
            // The session settings sent to a new connection were refused.
            PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)) => e.into(),
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
        let t = Error::invalid_transition("task", "completed", "running");
        assert!(t.is_invalid_transition());
        assert_eq!(
            t.to_string(),
            "invalid task status transition from completed to running"
        );
    }

    #[test]
    fn lock_timeouts_of_migrations_are_recognised() {
        let lock = || Error::timeout(TimeoutKind::Lock);
        assert!(lock().is_lock_timeout());
        let gave_up = Error::migration("V4 gave up", Some(Box::new(lock())));
        assert!(gave_up.is_lock_timeout());
        assert!(!gave_up.is_timeout());
        let statement = Error::timeout(TimeoutKind::Statement);
        assert!(!statement.is_lock_timeout());
        assert!(!Error::migration("V4 failed", Some(Box::new(statement))).is_lock_timeout());
        assert!(!Error::migration("V4 failed", None).is_lock_timeout());
    }

    /// Everything a caller can branch on, to compare an error built by a
    /// constructor with what the crate returns for the real failure.
    #[derive(Debug, PartialEq)]
    struct Answers {
        not_found: bool,
        conflict: bool,
        foreign_key: bool,
        check_violation: bool,
        validation: bool,
        invalid_transition: bool,
        lease_lost: bool,
        retryable: bool,
        timeout: bool,
        lock_timeout: bool,
        unavailable: bool,
        decode: bool,
        tls: bool,
        constraint: Option<String>,
        field: Option<&'static str>,
        sqlstate: Option<SqlState>,
        timeout_kind: Option<TimeoutKind>,
        lease_lost_reason: Option<LeaseLostReason>,
        tls_kind: Option<TlsErrorKind>,
    }

    /// What `err` answers.
    fn answers(err: &Error) -> Answers {
        Answers {
            not_found: err.is_not_found(),
            conflict: err.is_conflict(),
            foreign_key: err.is_foreign_key(),
            check_violation: err.is_check_violation(),
            validation: err.is_validation(),
            invalid_transition: err.is_invalid_transition(),
            lease_lost: err.is_lease_lost(),
            retryable: err.is_retryable(),
            timeout: err.is_timeout(),
            lock_timeout: err.is_lock_timeout(),
            unavailable: err.is_unavailable(),
            decode: err.is_decode(),
            tls: err.is_tls(),
            constraint: err.constraint().map(str::to_owned),
            field: err.field(),
            sqlstate: err.sqlstate().cloned(),
            timeout_kind: err.timeout_kind(),
            lease_lost_reason: err.lease_lost_reason(),
            tls_kind: err.tls_kind(),
        }
    }

    /// Answers with every predicate false and every accessor `None`.
    fn none() -> Answers {
        Answers {
            not_found: false,
            conflict: false,
            foreign_key: false,
            check_violation: false,
            validation: false,
            invalid_transition: false,
            lease_lost: false,
            retryable: false,
            timeout: false,
            lock_timeout: false,
            unavailable: false,
            decode: false,
            tls: false,
            constraint: None,
            field: None,
            sqlstate: None,
            timeout_kind: None,
            lease_lost_reason: None,
            tls_kind: None,
        }
    }

    #[test]
    fn conflict_answers_as_a_unique_violation() {
        let err = Error::conflict("users_email_key");
        assert_eq!(
            answers(&err),
            Answers {
                conflict: true,
                constraint: Some("users_email_key".into()),
                sqlstate: Some(SqlState::UNIQUE_VIOLATION),
                ..none()
            }
        );
        assert_eq!(err.sqlstate(), Some(&SqlState::UNIQUE_VIOLATION));
        assert_eq!(
            err.to_string(),
            "conflict: users_email_key: unique constraint violated (SQLSTATE 23505)"
        );
        assert!(std::error::Error::source(&err).is_none());
        assert!(matches!(
            err,
            Error::Conflict { constraint: Some(ref c), source: None, .. } if c == "users_email_key"
        ));
    }

    #[test]
    fn foreign_key_answers_as_a_foreign_key_violation() {
        let err = Error::foreign_key("tasks_user_id_fkey");
        assert_eq!(
            answers(&err),
            Answers {
                foreign_key: true,
                constraint: Some("tasks_user_id_fkey".into()),
                sqlstate: Some(SqlState::FOREIGN_KEY_VIOLATION),
                ..none()
            }
        );
        assert_eq!(
            err.to_string(),
            "foreign key violation: tasks_user_id_fkey: referenced row missing (SQLSTATE 23503)"
        );
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn check_violation_answers_as_a_check_violation() {
        let err = Error::check_violation("tasks_priority_range");
        assert_eq!(
            answers(&err),
            Answers {
                check_violation: true,
                constraint: Some("tasks_priority_range".into()),
                sqlstate: Some(SqlState::CHECK_VIOLATION),
                ..none()
            }
        );
        assert_eq!(
            err.to_string(),
            "check violation: tasks_priority_range: row refused by the schema (SQLSTATE 23514)"
        );
    }

    #[test]
    fn not_null_violation_answers_as_a_not_null_violation() {
        let err = Error::not_null_violation("script_content");
        assert_eq!(
            answers(&err),
            Answers {
                check_violation: true,
                constraint: Some("script_content".into()),
                sqlstate: Some(SqlState::NOT_NULL_VIOLATION),
                ..none()
            }
        );
        assert!(err.to_string().contains("script_content"), "{err}");
        assert!(err.to_string().contains("23502"), "{err}");
    }

    #[test]
    fn violations_without_a_constraint_say_what_failed_once() {
        let err = Error::Conflict {
            constraint: None,
            message: None,
            source: None,
        };
        assert_eq!(
            err.to_string(),
            "conflict: unique constraint violated (SQLSTATE 23505)"
        );
        assert_eq!(err.constraint(), None);
    }

    #[test]
    fn database_answers_as_a_server_error() {
        let err = Error::database(SqlState::DIVISION_BY_ZERO, "division by zero");
        assert_eq!(
            answers(&err),
            Answers {
                sqlstate: Some(SqlState::DIVISION_BY_ZERO),
                ..none()
            }
        );
        assert_eq!(
            err.to_string(),
            "database error: division by zero (SQLSTATE 22012)"
        );
        assert!(std::error::Error::source(&err).is_none());

        for state in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::FEATURE_NOT_SUPPORTED,
            SqlState::INVALID_SQL_STATEMENT_NAME,
        ] {
            let err = Error::database(state.clone(), "retry me");
            assert!(err.is_retryable(), "{err:?}");
            assert_eq!(err.sqlstate(), Some(&state));
        }
        // A cancelled statement is not a timeout.
        let cancelled = Error::database(
            SqlState::QUERY_CANCELED,
            "canceling statement due to user request",
        );
        assert!(!cancelled.is_timeout() && !cancelled.is_retryable());
        assert_eq!(cancelled.sqlstate(), Some(&SqlState::QUERY_CANCELED));
    }

    #[test]
    fn database_classifies_its_code_as_the_crate_does() {
        let conflict = Error::database(SqlState::UNIQUE_VIOLATION, "duplicate key value");
        assert!(conflict.is_conflict());
        assert_eq!(conflict.constraint(), None);
        assert_eq!(conflict.sqlstate(), Some(&SqlState::UNIQUE_VIOLATION));
        assert!(Error::database(SqlState::FOREIGN_KEY_VIOLATION, "fk").is_foreign_key());
        let not_null = Error::database(SqlState::NOT_NULL_VIOLATION, "null value");
        assert!(not_null.is_check_violation());
        assert_eq!(not_null.sqlstate(), Some(&SqlState::NOT_NULL_VIOLATION));

        let statement = Error::database(
            SqlState::QUERY_CANCELED,
            "canceling statement due to statement timeout",
        );
        assert_eq!(statement.timeout_kind(), Some(TimeoutKind::Statement));
        assert_eq!(statement.sqlstate(), Some(&SqlState::QUERY_CANCELED));
        assert_eq!(
            statement.to_string(),
            "statement timeout: canceling statement due to statement timeout (SQLSTATE 57014)"
        );
        let lock = Error::database(
            SqlState::LOCK_NOT_AVAILABLE,
            "canceling statement due to lock timeout",
        );
        assert_eq!(answers(&lock), answers(&Error::timeout(TimeoutKind::Lock)));
        let idle = Error::database(
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            "terminating connection due to idle-in-transaction timeout",
        );
        assert_eq!(
            answers(&idle),
            answers(&Error::timeout(TimeoutKind::IdleInTransaction))
        );

        let shutdown = Error::database(
            SqlState::ADMIN_SHUTDOWN,
            "terminating connection due to administrator command",
        );
        assert_eq!(
            answers(&shutdown),
            Answers {
                unavailable: true,
                sqlstate: Some(SqlState::ADMIN_SHUTDOWN),
                ..none()
            }
        );
        assert_eq!(
            shutdown.to_string(),
            "database unavailable: terminating connection due to administrator command (SQLSTATE 57P01)"
        );
        // A protocol violation is not an unreachable server.
        let protocol = Error::database(SqlState::PROTOCOL_VIOLATION, "bad message");
        assert!(!protocol.is_unavailable());
        assert!(matches!(protocol, Error::Database { .. }));
    }

    #[test]
    fn timeout_answers_as_the_servers_or_the_pools() {
        let cases = [
            (
                TimeoutKind::Statement,
                Some(SqlState::QUERY_CANCELED),
                false,
            ),
            (TimeoutKind::Lock, Some(SqlState::LOCK_NOT_AVAILABLE), true),
            (
                TimeoutKind::IdleInTransaction,
                Some(SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT),
                false,
            ),
            (TimeoutKind::PoolWait, None, true),
            (TimeoutKind::PoolRecycle, None, false),
            (TimeoutKind::NoAnswer, None, false),
        ];
        for (kind, sqlstate, retryable) in cases {
            let err = Error::timeout(kind);
            assert_eq!(
                answers(&err),
                Answers {
                    timeout: true,
                    lock_timeout: kind == TimeoutKind::Lock,
                    retryable,
                    sqlstate: sqlstate.clone(),
                    timeout_kind: Some(kind),
                    ..none()
                },
                "{kind:?}"
            );
            let text = err.to_string();
            assert!(text.starts_with(&kind.to_string()), "{text}");
            if let Some(state) = sqlstate {
                assert!(
                    text.ends_with(&format!("(SQLSTATE {})", state.code())),
                    "{text}"
                );
            }
        }
        // The pool's own timeouts are the same as the constructed ones.
        let wait: Error = PoolError::Timeout(TimeoutType::Wait).into();
        assert_eq!(
            answers(&wait),
            answers(&Error::timeout(TimeoutKind::PoolWait))
        );
        assert_eq!(
            wait.to_string(),
            Error::timeout(TimeoutKind::PoolWait).to_string()
        );
    }

    #[test]
    fn unavailable_answers_as_an_unreachable_server() {
        let err = Error::unavailable("connection refused", None);
        assert_eq!(
            answers(&err),
            Answers {
                unavailable: true,
                ..none()
            }
        );
        assert_eq!(err.to_string(), "database unavailable: connection refused");
        let closed: Error = PoolError::Closed.into();
        assert_eq!(answers(&closed), answers(&err));
        let with_source = Error::unavailable(
            "lost",
            Some(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
        );
        assert!(std::error::Error::source(&with_source).is_some());
    }

    #[test]
    fn invalid_transition_answers_as_the_state_machines() {
        let err = Error::invalid_transition("execution", "completed", "running");
        assert_eq!(
            answers(&err),
            Answers {
                invalid_transition: true,
                ..none()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid execution status transition from completed to running"
        );
        assert!(matches!(
            err,
            Error::InvalidTransition {
                entity: "execution",
                from: "completed",
                to: "running"
            }
        ));
    }

    #[test]
    fn lease_lost_answers_as_a_refused_worker() {
        let execution = crate::model::ExecutionId::new();
        for reason in [
            LeaseLostReason::Cancelled,
            LeaseLostReason::Expired,
            LeaseLostReason::Finished,
            LeaseLostReason::NotOwner,
        ] {
            let err = Error::lease_lost(execution, reason);
            assert_eq!(
                answers(&err),
                Answers {
                    lease_lost: true,
                    lease_lost_reason: Some(reason),
                    ..none()
                }
            );
            assert_eq!(
                err.to_string(),
                format!("lease on execution {execution} lost: {reason}")
            );
        }
    }

    #[test]
    fn decode_answers_as_an_unreadable_row() {
        let err = Error::decode(
            "task",
            "metadata",
            Some("0190c0de-0000-7000-8000-000000000000".into()),
            "recursion limit exceeded",
        );
        assert_eq!(
            answers(&err),
            Answers {
                decode: true,
                ..none()
            }
        );
        assert_eq!(
            err.to_string(),
            "cannot read task 0190c0de-0000-7000-8000-000000000000 column metadata: recursion limit exceeded"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "recursion limit exceeded");
        let unknown = Error::decode("user", "created_at", None, std::fmt::Error);
        assert!(unknown.to_string().contains("(unknown id)"), "{unknown}");
    }

    #[test]
    fn tls_answers_as_a_tls_failure() {
        for kind in [
            TlsErrorKind::UnknownCa,
            TlsErrorKind::HostnameMismatch,
            TlsErrorKind::Expired,
            TlsErrorKind::ServerNoTls,
            TlsErrorKind::Other,
        ] {
            let err = Error::tls(kind, "connecting to db:5432/app: refused");
            assert_eq!(
                answers(&err),
                Answers {
                    tls: true,
                    tls_kind: Some(kind),
                    ..none()
                }
            );
            assert_eq!(
                err.to_string(),
                "TLS failure: connecting to db:5432/app: refused"
            );
            assert!(!kind.to_string().is_empty());
        }
        // The target is added where it is known, to TLS errors only.
        let err = Error::tls(TlsErrorKind::Expired, "expired").connecting_to("db:5432/app");
        assert_eq!(
            err.to_string(),
            "TLS failure: connecting to db:5432/app: expired"
        );
        let other = Error::unavailable("refused", None).connecting_to("db:5432/app");
        assert_eq!(other.to_string(), "database unavailable: refused");
    }

    #[cfg(feature = "tls-rustls")]
    #[test]
    fn rustls_failures_have_their_kinds() {
        use rustls::CertificateError as C;
        let kind = |c: C| rustls_kind(&rustls::Error::InvalidCertificate(c));
        assert_eq!(kind(C::UnknownIssuer), TlsErrorKind::UnknownCa);
        assert_eq!(kind(C::BadSignature), TlsErrorKind::UnknownCa);
        assert_eq!(kind(C::NotValidForName), TlsErrorKind::HostnameMismatch);
        assert_eq!(kind(C::Expired), TlsErrorKind::Expired);
        assert_eq!(kind(C::NotValidYet), TlsErrorKind::Expired);
        assert_eq!(kind(C::BadEncoding), TlsErrorKind::Other);
        assert_eq!(
            rustls_kind(&rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            )),
            TlsErrorKind::Other
        );
    }

    #[test]
    fn migration_answers_as_a_failed_migration() {
        let err = Error::migration("V4 failed", None);
        assert_eq!(answers(&err), none());
        assert!(matches!(err, Error::Migration { .. }));
        assert_eq!(err.to_string(), "migration failed: V4 failed");
        let gave_up = Error::migration(
            "V4 gave up",
            Some(Box::new(Error::timeout(TimeoutKind::Lock))),
        );
        assert_eq!(
            answers(&gave_up),
            Answers {
                lock_timeout: true,
                ..none()
            }
        );
    }

    #[test]
    fn config_answers_as_an_invalid_configuration() {
        let err = Error::config("max_connections must be at least 1");
        assert_eq!(answers(&err), none());
        assert!(matches!(err, Error::Config { .. }));
        assert_eq!(
            err.to_string(),
            "invalid configuration: max_connections must be at least 1"
        );
        let runtime: Error = PoolError::NoRuntimeSpecified.into();
        assert!(matches!(runtime, Error::Config { .. }));
    }

    #[test]
    fn validation_and_not_found_answer_as_the_crates() {
        assert_eq!(
            answers(&Error::validation("email", "too long")),
            Answers {
                validation: true,
                field: Some("email"),
                ..none()
            }
        );
        assert_eq!(
            answers(&Error::not_found("user", "a@b.co")),
            Answers {
                not_found: true,
                ..none()
            }
        );
    }

    #[test]
    fn an_idle_timeout_inferred_from_a_lost_connection_has_its_code() {
        // What the transaction reports when the connection closed after it
        // sat idle too long (tx.rs): a timeout whose source is the
        // unavailable error.
        let err = Error::Timeout {
            kind: TimeoutKind::IdleInTransaction,
            source: Some(Box::new(Error::unavailable("connection closed", None))),
        };
        assert_eq!(
            answers(&err),
            answers(&Error::timeout(TimeoutKind::IdleInTransaction))
        );
    }

    #[test]
    fn a_pooler_refusing_startup_options_is_a_config_error_saying_what_to_set() {
        let err = Error::database(
            SqlState::PROTOCOL_VIOLATION,
            "unsupported startup parameter: options",
        );
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("unsupported startup parameter: options"),
            "{message}"
        );
        assert!(message.contains("VOIDRUNNER_DB_POOLER"), "{message}");
    }
}
