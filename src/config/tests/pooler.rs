//! Behind a connection pooler: the pooler mode, the direct URL, and the
//! session settings sent without startup options.

use super::*;

#[test]
fn pooler_settings_come_from_the_environment() {
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://app:pool-pw@pgbouncer:6432/vr"),
        ("VOIDRUNNER_DB_POOLER", "transaction"),
        (
            "VOIDRUNNER_DB_DIRECT_URL",
            "postgres://app:direct-pw@db.internal:5432/vr",
        ),
    ]))
    .unwrap();
    assert_eq!(c.pooler, PoolerMode::Transaction);
    assert_eq!(c.display_target(), "pgbouncer:6432/vr");
    assert_eq!(
        c.display_direct_target().as_deref(),
        Some("db.internal:5432/vr")
    );
    // Dedicated connections (migrations, LISTEN) use the direct URL.
    assert_eq!(c.dedicated_pg_config().get_ports(), &[5432]);
    assert_eq!(c.pooled_pg_config().get_ports(), &[6432]);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("pool-pw") && !shown.contains("direct-pw"),
        "{shown}"
    );
    assert!(shown.contains("db.internal:5432/vr"), "{shown}");
    // Another database of the same servers: both URLs follow.
    let other = c.with_dbname("other");
    assert_eq!(
        other.display_direct_target().as_deref(),
        Some("db.internal:5432/other")
    );
    let direct = other.direct_config().unwrap();
    assert_eq!(direct.pooler, PoolerMode::Direct);
    assert_eq!(direct.display_target(), "db.internal:5432/other");
    assert!(direct.direct_pg_config().is_none());

    for (var, value) in [
        ("VOIDRUNNER_DB_POOLER", "statement"),
        (
            "VOIDRUNNER_DB_DIRECT_URL",
            "postgres://app:s3cr3t@host:notaport/vr",
        ),
    ] {
        let err = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            (var, value),
        ]))
        .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains(var), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
    // Empty means unset.
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_DIRECT_URL", " "),
    ]))
    .unwrap();
    assert!(c.direct_pg_config().is_none());
    assert_eq!(c.pooler, PoolerMode::Direct);
    assert_eq!(
        "session".parse::<PoolerMode>().unwrap(),
        PoolerMode::Session
    );
    assert!("bogus".parse::<PoolerMode>().is_err());
}

#[test]
fn behind_a_pooler_no_startup_options_are_sent() {
    let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db").unwrap();
    c.notify_events = false;
    assert!(c.pooled_pg_config().get_options().is_some());
    assert_eq!(c.connect_sql(), None);
    assert_eq!(c.begin_sql("BEGIN"), "BEGIN");

    c.pooler = PoolerMode::Session;
    assert_eq!(c.pooled_pg_config().get_options(), None);
    assert_eq!(
        c.connect_sql().as_deref(),
        Some(
            "SET statement_timeout = 30000; SET idle_in_transaction_session_timeout = 60000; \
             SET voidrunner.notify_events = off; "
        )
    );
    assert_eq!(c.begin_sql("BEGIN"), "BEGIN");

    c.pooler = PoolerMode::Transaction;
    assert_eq!(c.pooled_pg_config().get_options(), None);
    assert_eq!(c.connect_sql(), None);
    assert_eq!(
        c.begin_sql("BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE"),
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE; SET LOCAL statement_timeout = 30000; \
         SET LOCAL idle_in_transaction_session_timeout = 60000; \
         SET LOCAL voidrunner.notify_events = off"
    );
    c.statement_timeout = None;
    c.idle_in_transaction_timeout = None;
    c.notify_events = true;
    assert_eq!(c.begin_sql("BEGIN"), "BEGIN");
}

#[test]
fn pooler_modes_need_what_they_need() {
    let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db?options=-c%20search_path%3Dapp")
        .unwrap();
    c.validate().unwrap();
    for mode in [PoolerMode::Session, PoolerMode::Transaction] {
        c.pooler = mode;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("ALTER ROLE"), "{err}");
    }
    let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db").unwrap();
    c.pooler = PoolerMode::Transaction;
    let err = c.require_session("migrating").unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert!(
        err.to_string().contains("VOIDRUNNER_DB_DIRECT_URL"),
        "{err}"
    );
    c.set_direct_url("postgres://u@db:5432/db").unwrap();
    c.require_session("migrating").unwrap();
    c.clear_direct_url();
    c.pooler = PoolerMode::Session;
    c.require_session("migrating").unwrap();
    assert!(
        c.set_direct_url("postgres://u:s3cr3t@db:notaport/db")
            .is_err()
    );
}

#[test]
fn pooler_settings_deserialise() {
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u@pgbouncer:6432/db",
        "pooler": "transaction",
        "direct_url": "postgres://u@db:5432/db"
    }))
    .unwrap();
    assert_eq!(c.pooler, PoolerMode::Transaction);
    assert_eq!(c.display_direct_target().as_deref(), Some("db:5432/db"));
    let c: DbConfig =
        serde_json::from_value(serde_json::json!({"url": "postgres://u@h/db"})).unwrap();
    assert_eq!((c.pooler, c.direct_pg_config()), (PoolerMode::Direct, None));
    assert!(
        serde_json::from_value::<DbConfig>(serde_json::json!({
            "url": "postgres://u@h/db",
            "pooler": "statement"
        }))
        .is_err()
    );
}
