//! Defaults and ranges: every size and duration has one, checked by
//! `validate`.

use super::*;

#[test]
fn defaults_follow_the_spec() {
    let c = DbConfig::from_url("postgres://u@h/db").unwrap();
    assert_eq!(c.max_connections, 25);
    assert_eq!(c.min_connections, 5);
    assert_eq!(c.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(c.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.statement_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.idle_in_transaction_timeout, Some(Duration::from_secs(60)));
    assert_eq!(c.migration_lock_timeout, Duration::from_secs(2));
    assert_eq!(c.migration_retries, 5);
    assert_eq!(c.dbname(), Some("db"));
    c.validate().unwrap();
}

#[test]
fn migration_lock_settings_are_bounded() {
    let base = || DbConfig::from_url("postgres://u@h/db").unwrap();
    for (timeout, ok) in [
        (Duration::ZERO, false),
        (Duration::from_millis(9), false),
        (Duration::from_millis(10), true),
        (Duration::from_secs(600), true),
        (Duration::from_secs(601), false),
        (Duration::from_secs(u64::MAX / 2), false),
    ] {
        let mut c = base();
        c.migration_lock_timeout = timeout;
        let result = c.validate();
        assert_eq!(result.is_ok(), ok, "{timeout:?}: {result:?}");
        if let Err(e) = result {
            assert!(matches!(e, Error::Config { .. }), "{e:?}");
            assert!(e.to_string().contains("migration_lock_timeout"), "{e}");
        }
    }
    let mut c = base();
    c.migration_retries = 0;
    c.validate().unwrap();
    c.migration_retries = 101;
    let err = c.validate().unwrap_err();
    assert!(err.to_string().contains("migration_retries"), "{err}");
    let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
    c.application_name = "a".repeat(APPLICATION_NAME_MAX_BYTES);
    c.validate().unwrap();
    c.application_name.push('a');
    assert!(matches!(c.validate(), Err(Error::Config { .. })));
    c.application_name = "naïve".into();
    assert!(matches!(c.validate(), Err(Error::Config { .. })));
    let long = format!("postgres://u@h/db?application_name={}", "b".repeat(64));
    assert!(matches!(
        DbConfig::from_url(&long).and_then(|c| c.validate()),
        Err(Error::Config { .. })
    ));
    let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
    c.max_output_bytes = 1023;
    assert!(matches!(c.validate(), Err(Error::Config { .. })));
    c.max_output_bytes = usize::MAX;
    assert!(matches!(c.validate(), Err(Error::Config { .. })));

    for (var, value) in [
        ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "0s"),
        ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "2"),
        ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "11m"),
        ("VOIDRUNNER_DB_MIGRATION_RETRIES", "-1"),
        ("VOIDRUNNER_DB_MIGRATION_RETRIES", "1000"),
    ] {
        let err = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            (var, value),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, Error::Config { .. }),
            "{var}={value}: {err:?}"
        );
    }
}

#[test]
fn every_size_and_duration_has_a_range() {
    let base = || DbConfig::from_url("postgres://u@h/db").unwrap();
    let ms = Duration::from_millis;
    let day = Duration::from_secs(24 * 3600);
    type Set = fn(&mut DbConfig, Duration);
    let cases: [(&str, Set, Duration, Duration); 8] = [
        ("connect_timeout", |c, d| c.connect_timeout = d, ms(1), day),
        ("wait_timeout", |c, d| c.wait_timeout = d, ms(1), day),
        ("recycle_timeout", |c, d| c.recycle_timeout = d, ms(1), day),
        ("reaper_interval", |c, d| c.reaper_interval = d, ms(10), day),
        (
            "max_lifetime",
            |c, d| c.max_lifetime = Some(d),
            ms(1),
            day * 30,
        ),
        (
            "idle_timeout",
            |c, d| c.idle_timeout = Some(d),
            ms(1),
            day * 30,
        ),
        (
            "statement_timeout",
            |c, d| c.statement_timeout = Some(d),
            ms(1),
            ms(i32::MAX as u64),
        ),
        (
            "idle_in_transaction_timeout",
            |c, d| c.idle_in_transaction_timeout = Some(d),
            ms(1),
            ms(i32::MAX as u64),
        ),
    ];
    for (name, set, min, max) in cases {
        for (value, ok) in [
            (Duration::ZERO, false),
            (min - Duration::from_micros(1), false),
            (min, true),
            (max, true),
            (max + Duration::from_micros(1), false),
            (Duration::MAX, false),
        ] {
            let mut c = base();
            set(&mut c, value);
            match c.validate() {
                Ok(()) => assert!(ok, "{name} = {value:?} was accepted"),
                Err(e) => {
                    assert!(!ok, "{name} = {value:?}: {e}");
                    assert!(matches!(e, Error::Config { .. }), "{e:?}");
                    assert!(e.to_string().contains(name), "{e}");
                }
            }
        }
    }
    for (max, ok) in [
        (0, false),
        (1, true),
        (10_000, true),
        (10_001, false),
        (usize::MAX, false),
    ] {
        let mut c = base();
        c.min_connections = 0;
        c.max_connections = max;
        assert_eq!(c.validate().is_ok(), ok, "max_connections = {max}");
    }
}

#[test]
fn server_timeouts_are_sent_rounded_up_to_whole_milliseconds() {
    let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
    c.statement_timeout = Some(Duration::from_micros(1_500));
    c.idle_in_transaction_timeout = Some(Duration::from_millis(i32::MAX as u64));
    c.validate().unwrap();
    assert_eq!(
        c.pooled_pg_config().get_options(),
        Some("-c statement_timeout=2 -c idle_in_transaction_session_timeout=2147483647")
    );
    assert_eq!(whole_millis_up(Duration::from_nanos(1)), 1);
    assert_eq!(whole_millis_up(Duration::from_millis(7)), 7);
    assert_eq!(whole_millis_up(Duration::ZERO), 0);
}
