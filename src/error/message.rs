//! How an error reads: the messages of the variants (what the server said,
//! with its SQLSTATE, never a failing row's values) and the SQLSTATEs the
//! crate reports for errors built without a server error.

use super::{BoxError, Error, SqlState, TimeoutKind};

// The codes `sqlstate()` reports for errors built without a server error.
pub(super) static UNIQUE_VIOLATION: SqlState = SqlState::UNIQUE_VIOLATION;
pub(super) static FOREIGN_KEY_VIOLATION: SqlState = SqlState::FOREIGN_KEY_VIOLATION;
pub(super) static CHECK_VIOLATION: SqlState = SqlState::CHECK_VIOLATION;
pub(super) static NOT_NULL_VIOLATION: SqlState = SqlState::NOT_NULL_VIOLATION;
pub(super) static QUERY_CANCELED: SqlState = SqlState::QUERY_CANCELED;
pub(super) static LOCK_NOT_AVAILABLE: SqlState = SqlState::LOCK_NOT_AVAILABLE;
pub(super) static IDLE_IN_TRANSACTION_SESSION_TIMEOUT: SqlState =
    SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT;

/// The SQLSTATE of a [`Error::CheckViolation`].
pub(super) fn check_state(not_null: bool) -> &'static SqlState {
    if not_null {
        &NOT_NULL_VIOLATION
    } else {
        &CHECK_VIOLATION
    }
}

impl TimeoutKind {
    /// The SQLSTATE the server ends a statement or session with for this
    /// kind of timeout; `None` for the pool's own timeouts.
    pub(super) fn server_state(self) -> Option<&'static SqlState> {
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
pub(super) fn violation(
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
pub(super) fn said(
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
pub(super) fn timeout_said(kind: TimeoutKind, source: Option<&BoxError>) -> String {
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
pub(super) fn source_state(source: Option<&BoxError>) -> Option<&SqlState> {
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
