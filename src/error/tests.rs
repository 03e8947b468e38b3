use deadpool_postgres::{PoolError, TimeoutType};

use super::classify::*;
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
