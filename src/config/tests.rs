use std::collections::HashMap;

use super::*;

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

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
fn display_target_names_every_host() {
    let one = DbConfig::from_url("postgres://u:secret@db.internal:6432/app").unwrap();
    assert_eq!(one.display_target(), "db.internal:6432/app");
    let many = DbConfig::from_url(
        "host=a,b,c port=5432,5433,5434 dbname=app user=u password=secret \
         target_session_attrs=read-write",
    )
    .unwrap();
    assert_eq!(many.display_target(), "a:5432,b:5433,c:5434/app");
    let shared_port = DbConfig::from_url("host=a,b port=6000 user=u").unwrap();
    assert_eq!(shared_port.display_target(), "a:6000,b:6000/u");
    let url = DbConfig::from_url("postgres://u:secret@a:1,b:2/app").unwrap();
    assert_eq!(url.display_target(), "a:1,b:2/app");
    let text = format!("{:?}", many);
    assert!(text.contains("a:5432,b:5433,c:5434/app"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn an_unencoded_at_in_the_password_is_refused_without_echoing_it() {
    for url in [
        "postgres://u:p4@ss@host/db",
        "postgres://app:P@ssw0rd@db:5432/app",
        "host=ss@host user=u password=p4",
    ] {
        let err = DbConfig::from_url(url).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("%40"), "{text}");
        assert!(
            !text.contains("ss@host") && !text.contains("ssw0rd"),
            "{text}"
        );
    }
    let encoded = DbConfig::from_url("postgres://u:p4%40ss@host/db").unwrap();
    assert_eq!(encoded.display_target(), "host:5432/db");
    let mut forced = encoded.clone();
    forced.pg_config_mut().host("secret@host");
    assert!(!forced.display_target().contains("secret"));
}

#[test]
fn debug_never_shows_the_password() {
    for url in [
        "postgres://app:s3cr3t-pw@db.example:5433/vr",
        "host=db.example user=app password=s3cr3t-pw dbname=vr",
        "postgres://app@db.example/vr?password=s3cr3t-pw",
    ] {
        let c = DbConfig::from_url(url).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
    }
}

#[test]
fn bad_url_is_a_config_error_without_the_secret() {
    let err = DbConfig::from_url("postgres://app:s3cr3t@host:notaport/db").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

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
fn review_of_issue_9_conninfo_cases() {
    // A stray `=` is refused, not the rest of the string dropped.
    let err = DbConfig::from_url("host=h dbname=app = user=evil sslmode=verify-full").unwrap_err();
    assert!(err.to_string().contains("without a key"), "{err}");
    // VOIDRUNNER_DB_SSLROOTCERT=system does not replace an explicit
    // weaker sslmode of the URL: the pair is refused, as in a URL.
    for mode in ["disable", "prefer", "require", "verify-ca"] {
        let err = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", &format!("postgres://u@h/db?sslmode={mode}")),
            ("VOIDRUNNER_DB_SSLROOTCERT", "system"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{mode}: {err}");
    }
    // (With the default mode it makes verify-full the default: tested
    // with the other sslrootcert=system rules.)
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

#[test]
fn session_settings_join_url_options() {
    let c = DbConfig::from_url("postgres://u@h/db?options=-c%20search_path%3Dapp").unwrap();
    assert_eq!(
        c.pooled_pg_config().get_options(),
        Some(
            "-c search_path=app -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
        )
    );
    // Dedicated connections never get the statement timeout.
    assert_eq!(
        c.dedicated_pg_config().get_options(),
        Some("-c search_path=app")
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

#[test]
fn every_sslmode_parses_from_both_forms() {
    for mode in SslMode::ALL {
        let name = mode.as_str();
        for conninfo in [
            format!("postgres://u:pw@h/db?application_name=svc&sslmode={name}"),
            format!("postgresql://u@h/db?sslmode={name}"),
            format!("host=h user=u sslmode={name} application_name=svc"),
            format!("host=h user=u sslmode = '{name}'"),
        ] {
            let c = DbConfig::from_url(&conninfo).unwrap_or_else(|e| panic!("{conninfo}: {e}"));
            assert_eq!(c.ssl_mode, mode, "{conninfo}");
            assert_eq!(c.ssl_mode.to_string(), name);
            assert_eq!(name.parse::<SslMode>().unwrap(), mode);
            // The driver is told the nearest mode it knows.
            assert_eq!(
                c.dedicated_pg_config().get_ssl_mode(),
                mode.driver_mode(),
                "{conninfo}"
            );
            // The other keys are kept.
            assert_eq!(
                c.dbname().or(c.pg_config().get_user()),
                Some(if conninfo.contains("/db") { "db" } else { "u" })
            );
            if conninfo.contains("application_name") {
                assert_eq!(c.pg_config().get_application_name(), Some("svc"));
            }
        }
    }
    assert_eq!(
        SslMode::VerifyFull.driver_mode(),
        tokio_postgres::config::SslMode::Require
    );
    assert_eq!(
        DbConfig::from_url("postgres://u@h/db").unwrap().ssl_mode,
        SslMode::Prefer
    );
}

#[test]
fn unknown_and_unsupported_sslmodes_are_config_errors_without_the_password() {
    for conninfo in [
        "postgres://app:s3cr3t@h/db?sslmode=allow",
        "postgres://app:s3cr3t@h/db?sslmode=verify_full",
        "host=h password=s3cr3t sslmode=bogus",
        "postgres://app:s3cr3t@h/db?sslrootcert=%FF%FE",
        "postgres://app:s3cr3t@h/db?sslmode=require&sslnegotiation=sideways",
        "host=h password='s3cr3t sslmode=require",
    ] {
        let err = DbConfig::from_url(conninfo).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{conninfo}: {err:?}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
    }
    let allow = "allow".parse::<SslMode>().unwrap_err();
    assert!(allow.to_string().contains("prefer"), "{allow}");
}

#[test]
fn tls_paths_come_from_the_url_decoded() {
    let c = DbConfig::from_url(
        "postgres://u:p%40ss@db.internal:5433/app?sslmode=verify-full\
         &sslrootcert=%2Fetc%2Fssl%2Fmy%20ca.pem&sslcert=/c/client.crt\
         &sslkey=%2Fc%2Fclient%2Ekey&connect_timeout=5",
    )
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert_eq!(
        c.ssl_root_cert.as_deref(),
        Some(Path::new("/etc/ssl/my ca.pem"))
    );
    assert_eq!(c.ssl_cert.as_deref(), Some(Path::new("/c/client.crt")));
    assert_eq!(c.ssl_key.as_deref(), Some(Path::new("/c/client.key")));
    assert_eq!(c.pg_config().get_password(), Some(&b"p@ss"[..]));
    assert_eq!(c.pg_config().get_ports(), &[5433]);
    assert_eq!(
        c.pg_config().get_connect_timeout(),
        Some(&Duration::from_secs(5))
    );
    assert_eq!(c.validate().is_ok(), cfg!(feature = "tls-rustls"));

    // key=value: quoted values, escapes, spaces around `=`.
    let c = DbConfig::from_url(
        r"host=db.internal password='p w\'x' sslrootcert = '/etc/my ca.pem' sslmode=verify-ca sslcert=/c/a\ b.crt sslkey='/c/k.key' dbname=app",
    )
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(
        c.ssl_root_cert.as_deref(),
        Some(Path::new("/etc/my ca.pem"))
    );
    assert_eq!(c.ssl_cert.as_deref(), Some(Path::new("/c/a b.crt")));
    assert_eq!(c.ssl_key.as_deref(), Some(Path::new("/c/k.key")));
    assert_eq!(c.pg_config().get_password(), Some(&b"p w'x"[..]));
    assert_eq!(c.dbname(), Some("app"));

    // The last of a repeated key wins, as in libpq; an empty value is
    // no value.
    let c = DbConfig::from_url(
        "postgres://u@h/db?sslmode=require&sslrootcert=/a.pem&sslmode=disable&sslrootcert=",
    )
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::Disable);
    assert_eq!(c.ssl_root_cert, None);
    // An `@` in the parameters is where the driver ends the
    // credentials; `?` in the password does not start them.
    let c = DbConfig::from_url("postgres://u:a?b@h/db?sslmode=require").unwrap();
    assert_eq!(c.ssl_mode, SslMode::Require);
    assert_eq!(c.pg_config().get_password(), Some(&b"a?b"[..]));
}

// Validated settings: refused without TLS.
#[cfg(feature = "tls-rustls")]
#[test]
fn system_roots_mean_verify_full() {
    let c = DbConfig::from_url("postgres://u@h/db?sslrootcert=system").unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    c.validate().unwrap();
    let weaker = DbConfig::from_url("postgres://u@h/db?sslrootcert=system&sslmode=verify-ca")
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(weaker.to_string().contains("verify-full"), "{weaker}");
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_SSLROOTCERT", "system"),
    ]))
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
}

#[test]
fn client_certificate_and_key_go_together() {
    for conninfo in [
        "postgres://u@h/db?sslcert=/c.crt",
        "postgres://u@h/db?sslkey=/c.key",
    ] {
        let err = DbConfig::from_url(conninfo)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("ssl_key"), "{err}");
    }
    let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
    c.ssl_root_cert = Some(PathBuf::new());
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("ssl_root_cert")
    );
}

// Validated settings: refused without TLS.
#[cfg(feature = "tls-rustls")]
#[test]
fn tls_settings_from_the_environment_override_the_url() {
    let c = DbConfig::from_lookup(lookup(&[
        (
            "DATABASE_URL",
            "postgres://u@h/db?sslmode=disable&sslrootcert=/url.pem",
        ),
        ("VOIDRUNNER_DB_SSLMODE", " verify-full "),
        ("VOIDRUNNER_DB_SSLROOTCERT", "/env/ca.pem"),
        ("VOIDRUNNER_DB_SSLCERT", "/env/client.crt"),
        ("VOIDRUNNER_DB_SSLKEY", "/env/client.key"),
    ]))
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert_eq!(c.ssl_root_cert.as_deref(), Some(Path::new("/env/ca.pem")));
    assert_eq!(c.ssl_cert.as_deref(), Some(Path::new("/env/client.crt")));
    assert_eq!(c.ssl_key.as_deref(), Some(Path::new("/env/client.key")));
    // Unset or empty variables leave the URL's settings.
    let c = DbConfig::from_lookup(lookup(&[
        (
            "DATABASE_URL",
            "postgres://u@h/db?sslmode=require&sslrootcert=/url.pem",
        ),
        ("VOIDRUNNER_DB_SSLMODE", ""),
    ]))
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::Require);
    assert_eq!(c.ssl_root_cert.as_deref(), Some(Path::new("/url.pem")));
    let bad = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u:s3cr3t@h/db"),
        ("VOIDRUNNER_DB_SSLMODE", "strict"),
    ]))
    .unwrap_err();
    assert!(bad.to_string().contains("VOIDRUNNER_DB_SSLMODE"), "{bad}");
    assert!(!bad.to_string().contains("s3cr3t"), "{bad}");
}

#[test]
fn tls_settings_deserialise_over_the_url() {
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u@h/db?sslmode=verify-full&sslrootcert=/url.pem",
    }))
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert_eq!(c.ssl_root_cert.as_deref(), Some(Path::new("/url.pem")));
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u@h/db?sslmode=disable",
        "ssl_mode": "verify-ca",
        "ssl_root_cert": "/ca.pem",
        "ssl_cert": "/client.crt",
        "ssl_key": "/client.key",
    }))
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(c.ssl_root_cert.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!(c.ssl_cert.as_deref(), Some(Path::new("/client.crt")));
    assert_eq!(c.ssl_key.as_deref(), Some(Path::new("/client.key")));
    let bad = serde_json::from_value::<DbConfig>(serde_json::json!({
        "url": "postgres://u@h/db",
        "ssl_mode": "verify_full",
    }))
    .unwrap_err();
    assert!(bad.to_string().contains("verify-full"), "{bad}");
    let shown = format!("{c:?}");
    assert!(
        shown.contains("VerifyCa") && shown.contains("/client.key"),
        "{shown}"
    );
}

#[cfg(not(feature = "tls-rustls"))]
#[test]
fn without_tls_only_plaintext_modes_are_accepted() {
    for ok in ["sslmode=disable", "sslmode=prefer", "application_name=x"] {
        DbConfig::from_url(&format!("postgres://u@h/db?{ok}"))
            .unwrap()
            .validate()
            .unwrap();
    }
    for refused in [
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
        "sslrootcert=/ca.pem",
        "sslcert=/c.crt&sslkey=/c.key",
    ] {
        let err = DbConfig::from_url(&format!("postgres://u@h/db?{refused}"))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("tls-rustls"), "{refused}: {err}");
    }
}

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
