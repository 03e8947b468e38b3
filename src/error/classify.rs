//! Recognising what went wrong: the driver's and the pool's errors mapped
//! to the crate's [`Error`] variants, by SQLSTATE, by the driver's error
//! kinds and, for TLS, by the rustls error underneath. The type itself, its
//! predicates and accessors are in the parent module.

use deadpool_postgres::{PoolError, TimeoutType};

use super::{BoxError, Error, SqlState, TimeoutKind, TlsErrorKind, describe, said};

/// SQLSTATEs that mean the session or server is gone rather than the
/// statement being wrong.
pub(super) fn is_unavailable_state(state: &SqlState) -> bool {
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
pub(super) fn tls_failure(err: &tokio_postgres::Error) -> Option<(TlsErrorKind, String)> {
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
pub(super) fn rustls_cause(err: &rustls::Error) -> String {
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
pub(super) fn rustls_kind(err: &rustls::Error) -> TlsErrorKind {
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
pub(super) fn server_error(
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
