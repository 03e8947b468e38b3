//! TLS settings: `sslmode` and the certificate paths from the URL, the
//! environment and serde sources, and the rules between them.

use super::*;

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
        let config = DbConfig::from_url(&format!("postgres://u@h/db?{ok}")).unwrap();
        config.validate().unwrap();
        config.check_tls_files().unwrap();
    }
    for refused in [
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
        "sslrootcert=/ca.pem",
        "sslcert=/c.crt&sslkey=/c.key",
    ] {
        let config = DbConfig::from_url(&format!("postgres://u@h/db?{refused}")).unwrap();
        for err in [
            config.validate().unwrap_err(),
            config.check_tls_files().unwrap_err(),
        ] {
            assert!(err.to_string().contains("tls-rustls"), "{refused}: {err}");
        }
    }
}

/// The file checks themselves are in `tests/tls/files.rs`, with real
/// certificates; here, that a missing file is named without a server.
#[cfg(feature = "tls-rustls")]
#[test]
fn check_tls_files_names_a_missing_file_without_connecting() {
    let config =
        DbConfig::from_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap();
    config.validate().unwrap();
    let err = config.check_tls_files().unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("sslrootcert /nonexistent/ca.pem: cannot read it: no such file"),
        "{err}"
    );
}
