//! The constructors of [`Error`]: every variant a repository method can
//! return, built as the crate builds it, for mocks and for the crate itself.

use std::fmt;

use super::{BoxError, Error, LeaseLostReason, SqlState, TimeoutKind, TlsErrorKind, server_error};

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
}
