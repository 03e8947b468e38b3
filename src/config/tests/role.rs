//! The `role` setting: its sources, what it accepts, and how each pooler
//! mode sends it.

use super::*;
use crate::error::SqlState;

#[test]
fn the_role_comes_from_every_source_and_blank_leaves_it_unset() {
    let c = DbConfig::from_url("postgres://u@h/db").unwrap();
    assert_eq!(c.role, None);
    assert_eq!(c.set_role_sql(), None);

    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_ROLE", "voidrunner_app"),
    ]))
    .unwrap();
    assert_eq!(c.role.as_deref(), Some("voidrunner_app"));
    assert!(format!("{c:?}").contains("voidrunner_app"));

    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_ROLE", "  "),
    ]))
    .unwrap();
    assert_eq!(c.role, None);

    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u@h/db",
        "role": "voidrunner_worker"
    }))
    .unwrap();
    assert_eq!(c.role.as_deref(), Some("voidrunner_worker"));
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u@h/db",
        "role": null
    }))
    .unwrap();
    assert_eq!(c.role, None);
}

#[test]
fn a_role_the_server_could_not_take_as_given_is_refused() {
    let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
    for (role, says) in [
        (String::new(), "empty"),
        ("r".repeat(ROLE_MAX_BYTES + 1), "at most 63"),
        ("app\0x".to_owned(), "NUL"),
        ("none".to_owned(), "SET ROLE NONE"),
    ] {
        c.role = Some(role);
        let err = c.validate().unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("role ") && message.contains(says),
            "{message}"
        );
    }
    c.role = Some("r".repeat(ROLE_MAX_BYTES));
    c.validate().unwrap();
    // Quotes, spaces, capitals: any name the server can hold.
    c.role = Some("Voidrunner \"App\"".to_owned());
    c.validate().unwrap();

    let err = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_ROLE", "a\0b"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("role"), "{err}");
}

#[test]
fn a_transaction_mode_pooler_cannot_hold_a_role() {
    let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db").unwrap();
    c.role = Some("voidrunner_app".to_owned());
    c.pooler = PoolerMode::Transaction;
    let err = c.validate().unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("transaction-mode pooler"), "{err}");
    assert!(err.to_string().contains("ALTER ROLE"), "{err}");
    c.set_direct_url("postgres://u@db:5432/db").unwrap();
    assert!(c.validate().is_err(), "a direct URL does not make it hold");
    c.pooler = PoolerMode::Session;
    c.validate().unwrap();
}

#[test]
fn each_mode_sends_the_role_quoted() {
    let mut c = DbConfig::from_url("postgres://u@h/db?options=-c%20search_path%3Dapp").unwrap();
    c.role = Some("Team \"A\"\\ops".to_owned());
    c.statement_timeout = None;
    c.idle_in_transaction_timeout = None;
    // Directly: a startup option, white space and backslashes escaped as
    // the server's option parser reads them, after the URL's own options.
    assert_eq!(
        c.pooled_pg_config().get_options(),
        Some("-c search_path=app -c role=Team\\ \"A\"\\\\ops")
    );
    assert_eq!(c.connect_sql(), None);
    // Dedicated sessions and a session-mode pooler: SET ROLE of the
    // quoted identifier.
    assert_eq!(
        c.set_role_sql().as_deref(),
        Some("SET ROLE \"Team \"\"A\"\"\\ops\"")
    );
    let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db").unwrap();
    c.role = Some("voidrunner_app".to_owned());
    c.pooler = PoolerMode::Session;
    assert_eq!(c.pooled_pg_config().get_options(), None);
    assert_eq!(
        c.connect_sql().as_deref(),
        Some(
            "SET ROLE \"voidrunner_app\"; SET statement_timeout = 30000; \
             SET idle_in_transaction_session_timeout = 60000; "
        )
    );
    c.statement_timeout = None;
    c.idle_in_transaction_timeout = None;
    assert_eq!(
        c.connect_sql().as_deref(),
        Some("SET ROLE \"voidrunner_app\"; ")
    );
}

#[test]
fn a_refused_role_is_a_configuration_error() {
    let mut c = DbConfig::from_url("postgres://login@h/db").unwrap();
    let denied = || {
        Error::database(
            SqlState::INSUFFICIENT_PRIVILEGE,
            "permission denied to set role \"voidrunner_app\"",
        )
    };
    // Without a role setting, nothing to explain.
    assert!(matches!(c.role_refused(denied()), Error::Database { .. }));
    c.role = Some("voidrunner_app".to_owned());
    let err = c.role_refused(denied());
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("permission denied to set role")
            && message.contains("GRANT \"voidrunner_app\" TO \"login\""),
        "{message}"
    );
    let missing = Error::database(
        SqlState::INVALID_PARAMETER_VALUE,
        "role \"voidrunner_app\" does not exist",
    );
    assert!(matches!(c.role_refused(missing), Error::Config { .. }));
    // The server quotes the name as it is, inner quotes and all.
    c.role = Some("Team \"A\"".to_owned());
    let quoted = Error::database(
        SqlState::INVALID_PARAMETER_VALUE,
        "role \"Team \"A\"\" does not exist",
    );
    let err = c.role_refused(quoted);
    assert!(
        err.to_string()
            .contains("GRANT \"Team \"\"A\"\"\" TO \"login\""),
        "{err}"
    );
    c.role = Some("voidrunner_app".to_owned());
    // Another refusal stays what it is.
    let other = Error::database(
        SqlState::INSUFFICIENT_PRIVILEGE,
        "permission denied for database \"db\"",
    );
    assert!(matches!(c.role_refused(other), Error::Database { .. }));
}
