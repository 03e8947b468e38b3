//! The environment and serde sources: every setting read, and errors
//! that name the variable or field.

use super::*;

#[test]
fn env_knobs_are_read() {
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_MAX_CONNECTIONS", "7"),
        ("VOIDRUNNER_DB_MIN_CONNECTIONS", "2"),
        ("VOIDRUNNER_DB_MAX_LIFETIME", "90s"),
        ("VOIDRUNNER_DB_IDLE_TIMEOUT", "off"),
        ("VOIDRUNNER_DB_CONNECT_TIMEOUT", "1500ms"),
        ("VOIDRUNNER_DB_WAIT_TIMEOUT", "2s"),
        ("VOIDRUNNER_DB_RECYCLE_TIMEOUT", "3s"),
        ("VOIDRUNNER_DB_STATEMENT_TIMEOUT", "off"),
        ("VOIDRUNNER_DB_IDLE_IN_TRANSACTION_TIMEOUT", "2m"),
        ("VOIDRUNNER_DB_REAPER_INTERVAL", "1h"),
        ("VOIDRUNNER_DB_APPLICATION_NAME", "svc"),
        ("VOIDRUNNER_DB_NOTIFY_EVENTS", "off"),
        ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "750ms"),
        ("VOIDRUNNER_DB_MIGRATION_RETRIES", "2"),
    ]))
    .unwrap();
    assert_eq!(c.migration_lock_timeout, Duration::from_millis(750));
    assert_eq!(c.migration_retries, 2);
    assert_eq!(c.max_connections, 7);
    assert_eq!(c.min_connections, 2);
    assert_eq!(c.max_lifetime, Some(Duration::from_secs(90)));
    assert_eq!(c.idle_timeout, None);
    assert_eq!(c.connect_timeout, Duration::from_millis(1500));
    assert_eq!(c.wait_timeout, Duration::from_secs(2));
    assert_eq!(c.recycle_timeout, Duration::from_secs(3));
    assert_eq!(c.statement_timeout, None);
    assert_eq!(
        c.idle_in_transaction_timeout,
        Some(Duration::from_secs(120))
    );
    assert_eq!(c.reaper_interval, Duration::from_secs(3600));
    assert_eq!(c.application_name, "svc");
    let pg = c.pooled_pg_config();
    assert!(!c.notify_events);
    assert_eq!(
        pg.get_options(),
        Some("-c idle_in_transaction_session_timeout=120000 -c voidrunner.notify_events=off")
    );
}

#[test]
fn boolean_variables_ignore_case() {
    for (text, on) in [
        ("OFF", false),
        ("False", false),
        ("no", false),
        ("ON", true),
        ("Yes", true),
    ] {
        let c = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("VOIDRUNNER_DB_NOTIFY_EVENTS", text),
        ]))
        .unwrap();
        assert_eq!(c.notify_events, on, "{text}");
    }
    let err = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_NOTIFY_EVENTS", "maybe"),
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains("VOIDRUNNER_DB_NOTIFY_EVENTS"),
        "{err}"
    );
}

#[test]
fn env_errors_name_the_variable() {
    let missing = DbConfig::from_lookup(lookup(&[])).unwrap_err();
    assert!(missing.to_string().contains("DATABASE_URL"), "{missing}");
    let bad = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_WAIT_TIMEOUT", "5"),
    ]))
    .unwrap_err();
    assert!(
        bad.to_string().contains("VOIDRUNNER_DB_WAIT_TIMEOUT"),
        "{bad}"
    );
    let inverted = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_MIN_CONNECTIONS", "30"),
    ]))
    .unwrap_err();
    assert!(
        inverted.to_string().contains("min_connections"),
        "{inverted}"
    );
}

#[test]
fn durations_parse_with_units_only() {
    assert_eq!(duration::parse("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(duration::parse(" 30s "), Ok(Duration::from_secs(30)));
    assert_eq!(duration::parse("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(duration::parse("1h"), Ok(Duration::from_secs(3600)));
    assert!(duration::parse("30").is_err());
    assert!(duration::parse("s").is_err());
    assert!(duration::parse("-1s").is_err());
    assert!(duration::parse("3 parsecs").is_err());
    // Compound and fractional values, which the hand-written parser
    // refused (humantime's syntax).
    assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(duration::parse("3d"), Ok(Duration::from_secs(3 * 86400)));
    assert!(duration::parse("99999999999999999999h").is_err());
    assert_eq!(duration::parse_optional("off"), Ok(None));
}

#[test]
fn deserialises_from_serde_sources() {
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u:pw@h/db",
        "max_connections": 3,
        "min_connections": 1,
        "statement_timeout": "off",
        "wait_timeout": "100ms",
        "migration_lock_timeout": "5s",
        "migration_retries": 3
    }))
    .unwrap();
    assert_eq!(c.migration_lock_timeout, Duration::from_secs(5));
    assert_eq!(c.migration_retries, 3);
    assert_eq!(c.max_connections, 3);
    assert_eq!(c.statement_timeout, None);
    assert_eq!(c.wait_timeout, Duration::from_millis(100));
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(1800)));
    let unknown = serde_json::from_value::<DbConfig>(serde_json::json!({
        "url": "postgres://u@h/db",
        "max_conections": 3
    }));
    assert!(unknown.is_err());
    let no_url = serde_json::from_value::<DbConfig>(serde_json::json!({}));
    assert!(no_url.is_err());
}
