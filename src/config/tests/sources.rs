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

/// What a source made of its input: the configuration (validated), or the
/// error without the "invalid configuration: " prefix and with the setting
/// named by its field.
fn outcome(
    result: Result<DbConfig>,
    setting: &settings::Setting,
) -> std::result::Result<String, String> {
    match result.and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => Ok(format!("{config:?}")),
        Err(e) => Err(without_prefix(e).replace(setting.env, setting.name)),
    }
}

/// The same configuration through a serde source.
fn from_fields(fields: serde_json::Value) -> Result<DbConfig> {
    serde_json::from_value(fields).map_err(|e| Error::config(e.to_string()))
}

#[test]
fn the_environment_and_serde_sources_read_every_setting_alike() {
    let texts = [
        "",
        " ",
        "7",
        " 7 ",
        "0",
        "-1",
        "10001",
        "1.5",
        "90s",
        "1m30s",
        "0s",
        "5",
        "off",
        "none",
        "true",
        "NO",
        "maybe",
        "verify-full",
        " prefer ",
        "allow",
        "/ca.pem",
        "system",
        "transaction",
        "statement",
        "postgres://u@d:5432/db",
        "postgres://u@d/db?sslmode=require",
        "postgres://u:s3cr3t@d:notaport/db",
        "svc",
        "naïve",
    ];
    for setting in SETTINGS.iter().filter(|s| s.name != "url") {
        for text in texts {
            let env = DbConfig::from_lookup(lookup(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                (setting.env, text),
            ]));
            let serde = from_fields(serde_json::json!({
                "url": "postgres://u@h/db",
                setting.name: text,
            }));
            assert_eq!(
                outcome(env, setting),
                outcome(serde, setting),
                "{} = {text:?}",
                setting.name
            );
        }
        // A serde source may also give numbers and booleans, which read as
        // the text they are written as.
        for (text, value) in [
            ("7", serde_json::json!(7)),
            ("0", serde_json::json!(0)),
            ("true", serde_json::json!(true)),
            ("false", serde_json::json!(false)),
        ] {
            let env = DbConfig::from_lookup(lookup(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                (setting.env, text),
            ]));
            let serde = from_fields(serde_json::json!({
                "url": "postgres://u@h/db",
                setting.name: value,
            }));
            assert_eq!(
                outcome(env, setting),
                outcome(serde, setting),
                "{} = {value}",
                setting.name
            );
        }
    }
    // And null, which is `off` for a duration that can be off.
    for name in [
        "max_lifetime",
        "idle_timeout",
        "statement_timeout",
        "idle_in_transaction_timeout",
        "slow_statement",
    ] {
        let setting = SETTINGS.iter().find(|s| s.name == name).unwrap();
        let env = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            (setting.env, "off"),
        ]));
        let serde = from_fields(serde_json::json!({"url": "postgres://u@h/db", name: null}));
        let (env, serde) = (outcome(env, setting), outcome(serde, setting));
        assert!(
            env.as_ref()
                .is_ok_and(|c| c.contains(&format!("{name}: None"))),
            "{env:?}"
        );
        assert_eq!(env, serde, "{name}");
    }
}

#[test]
fn every_path_gives_one_answer_for_the_tls_settings() {
    // Issue 17: `sslmode=prefer` in the URL with VOIDRUNNER_DB_SSLROOTCERT=system
    // was accepted (as verify-full) by the environment and refused by every
    // other path. Every mode, given or not, with every kind of root, by
    // each path: the same answer.
    let mut modes: Vec<Option<&str>> = SslMode::ALL.iter().map(|m| Some(m.as_str())).collect();
    modes.push(None);
    for mode in modes {
        for root in [None, Some("system"), Some("/ca.pem")] {
            let mut query: Vec<String> = Vec::new();
            query.extend(mode.map(|m| format!("sslmode={m}")));
            query.extend(root.map(|r| format!("sslrootcert={r}")));
            let url_with_both = format!("postgres://u@h/db?{}", query.join("&"));
            let url_with_mode = format!(
                "postgres://u@h/db{}",
                mode.map(|m| format!("?sslmode={m}")).unwrap_or_default()
            );
            let mut vars = vec![("DATABASE_URL", "postgres://u@h/db")];
            vars.extend(mode.map(|m| ("VOIDRUNNER_DB_SSLMODE", m)));
            vars.extend(root.map(|r| ("VOIDRUNNER_DB_SSLROOTCERT", r)));
            let mut fields = serde_json::json!({"url": "postgres://u@h/db"});
            if let Some(m) = mode {
                fields["ssl_mode"] = m.into();
            }
            if let Some(r) = root {
                fields["ssl_root_cert"] = r.into();
            }
            let mut root_field = serde_json::json!({ "url": url_with_mode });
            if let Some(r) = root {
                root_field["ssl_root_cert"] = r.into();
            }
            let mut root_var = vec![("DATABASE_URL", url_with_mode.as_str())];
            root_var.extend(root.map(|r| ("VOIDRUNNER_DB_SSLROOTCERT", r)));

            let answers = [
                ("URL", DbConfig::from_url(&url_with_both)),
                (
                    "URL's mode, variable's root",
                    DbConfig::from_lookup(lookup(&root_var)),
                ),
                ("variables", DbConfig::from_lookup(lookup(&vars))),
                ("URL's mode, field's root", from_fields(root_field)),
                ("fields", from_fields(fields)),
            ]
            .map(|(path, result)| {
                let answer = result
                    .and_then(|c| c.validate().map(|()| c))
                    .map(|c| (c.ssl_mode, c.ssl_root_cert));
                (path, answer.map_err(without_prefix))
            });
            let (first, expected) = &answers[0];
            for (path, answer) in &answers[1..] {
                assert_eq!(
                    answer, expected,
                    "mode {mode:?}, root {root:?}: {path} against {first}"
                );
            }
            if root == Some("system") {
                let verify_full = expected
                    .as_ref()
                    .is_ok_and(|(m, _)| *m == SslMode::VerifyFull);
                let accepted =
                    matches!(mode, None | Some("verify-full")) && cfg!(feature = "tls-rustls");
                assert_eq!(verify_full, accepted, "mode {mode:?}: {expected:?}");
            }
        }
    }
}

#[test]
fn a_serde_source_reads_values_as_the_environment_does() {
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": "postgres://u@h/db",
        "max_connections": "12",
        "migration_retries": " 3 ",
        "notify_events": "off",
        "pooler": " session ",
        "ssl_mode": "",
        "ssl_root_cert": " ",
        "direct_url": null,
    }))
    .unwrap();
    assert_eq!(c.max_connections, 12);
    assert_eq!(c.migration_retries, 3);
    assert!(!c.notify_events);
    assert_eq!(c.pooler, PoolerMode::Session);
    // Blank TLS settings leave them unset, as blank variables do.
    assert_eq!((c.ssl_mode, c.ssl_root_cert), (SslMode::Prefer, None));
    // Errors name the field.
    for (field, value, says) in [
        ("max_connections", serde_json::json!(-1), "invalid digit"),
        ("max_connections", serde_json::json!(25.0), "invalid digit"),
        (
            "wait_timeout",
            serde_json::json!(5),
            "`5` is not a duration",
        ),
        ("wait_timeout", serde_json::json!("5"), "is not a duration"),
        (
            "notify_events",
            serde_json::json!("maybe"),
            "is not true or false",
        ),
        (
            "application_name",
            serde_json::json!(null),
            "expected text, not null",
        ),
        ("url", serde_json::json!(" "), "url is not set"),
    ] {
        let mut fields = serde_json::json!({"url": "postgres://u@h/db"});
        fields[field] = value;
        let err = serde_json::from_value::<DbConfig>(fields)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field) && err.contains(says), "{field}: {err}");
    }
    let err = serde_json::from_value::<DbConfig>(serde_json::json!({
        "url": "postgres://u@h/db",
        "max_conections": 3
    }))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("max_conections") && err.contains("max_connections"),
        "{err}"
    );
    // A URL that does not parse is not quoted.
    let err = serde_json::from_value::<DbConfig>(serde_json::json!({
        "url": "postgres://app:s3cr3t@host:notaport/db",
    }))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("url: invalid database URL") && !err.contains("s3cr3t"),
        "{err}"
    );
}

/// A connection string's application name is the setting's value, which
/// the variable or a serde field overrides: the configuration and its
/// sessions carry one name.
#[test]
fn the_application_name_is_one_setting_whatever_names_it() {
    let url = "postgres://u@h/db?application_name=fromurl";
    let from_url = DbConfig::from_url(url).unwrap();
    assert_eq!(from_url.application_name, "fromurl");
    assert_eq!(
        from_url.pooled_pg_config().get_application_name(),
        Some("fromurl")
    );
    let from_env = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", url),
        ("VOIDRUNNER_DB_APPLICATION_NAME", "fromenv"),
    ]))
    .unwrap();
    let from_serde: DbConfig = serde_json::from_value(serde_json::json!({
        "url": url,
        "application_name": "fromenv",
    }))
    .unwrap();
    for c in [from_env, from_serde] {
        assert_eq!(c.application_name, "fromenv");
        assert_eq!(c.pooled_pg_config().get_application_name(), Some("fromenv"));
        assert_eq!(
            c.dedicated_pg_config().get_application_name(),
            Some("fromenv")
        );
    }
    // Set on the configuration after reading, the field names the sessions.
    let mut set = DbConfig::from_url(url).unwrap();
    set.application_name = "byhand".into();
    assert_eq!(
        set.pooled_pg_config().get_application_name(),
        Some("byhand")
    );
    // A name the URL gave and the variable replaced is not sent, so not
    // checked either.
    let long = format!("postgres://u@h/db?application_name={}", "b".repeat(70));
    let replaced = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", &long),
        ("VOIDRUNNER_DB_APPLICATION_NAME", "short"),
    ]))
    .unwrap();
    replaced.validate().unwrap();
    // A direct URL that names its sessions keeps its name, for the pool of
    // `direct_config` as for the dedicated sessions.
    let with_direct = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", url),
        (
            "VOIDRUNNER_DB_DIRECT_URL",
            "postgres://u@h2/db?application_name=directname",
        ),
    ]))
    .unwrap();
    assert_eq!(
        with_direct.dedicated_pg_config().get_application_name(),
        Some("directname")
    );
    let direct = with_direct.direct_config().unwrap();
    assert_eq!(direct.application_name, "directname");
    assert_eq!(
        direct.pooled_pg_config().get_application_name(),
        Some("directname")
    );
}

/// In a serde source, `null` is `off` for a setting that can be off, leaves
/// the optional paths and the direct URL unset, and is refused, naming the
/// field, for a setting that must have a value (the documented rule).
#[test]
fn null_in_a_serde_source_means_off_or_unset_or_is_refused() {
    let read = |field: &str| {
        serde_json::from_value::<DbConfig>(serde_json::json!({
            "url": "postgres://u@h/db",
            field: null,
        }))
    };
    assert_eq!(read("statement_timeout").unwrap().statement_timeout, None);
    assert_eq!(read("max_lifetime").unwrap().max_lifetime, None);
    assert_eq!(read("ssl_root_cert").unwrap().ssl_root_cert, None);
    assert!(read("direct_url").unwrap().direct_config().is_none());
    for field in ["connect_timeout", "max_connections", "application_name"] {
        let err = read(field).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}
