//! Each `sslmode` against the TLS cluster, client certificates, and the
//! settings from the URL, the environment and serde.

use std::collections::HashMap;
use std::path::Path;

use voidrunner_db::error::SqlState;
use voidrunner_db::{Database, DbConfig, Error, SslMode, TlsErrorKind};

use crate::{session_tls, small, tls_cluster};

/// The error of connecting with `config`, which must fail.
async fn refused(config: DbConfig) -> Error {
    match Database::connect(config).await {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

/// `err` is a TLS error of `kind` whose message names `target`.
fn assert_tls(err: &Error, kind: TlsErrorKind, target: &str) {
    assert_eq!(err.tls_kind(), Some(kind), "{err:?}");
    assert!(err.is_tls() && !err.is_unavailable(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(target), "{text}");
    assert!(text.contains(&kind.to_string()), "{text}");
}

#[tokio::test]
async fn verify_full_with_the_right_ca_and_host_uses_tls() {
    let tls = tls_cluster().await;
    let config = tls.config("postgres", "sslmode=verify-full");
    assert_eq!(config.ssl_mode, SslMode::VerifyFull);
    let db = Database::connect(config).await.unwrap();
    let (ssl, version) = session_tls(&db).await;
    assert!(ssl);
    assert_eq!(version.as_deref(), Some("TLSv1.3"));
    db.health_check().await.unwrap();
}

#[tokio::test]
async fn an_unknown_ca_is_refused() {
    let tls = tls_cluster().await;
    let other = tls.pki.crt("other_ca");
    for mode in ["verify-full", "verify-ca", "require"] {
        // `require` with a root checks the chain, as in libpq.
        let err = refused(tls.config(
            "postgres",
            &format!("sslmode={mode}&sslrootcert={}", other.display()),
        ))
        .await;
        assert_tls(
            &err,
            TlsErrorKind::UnknownCa,
            &format!("localhost:{}/postgres", tls.port),
        );
    }
}

#[tokio::test]
async fn a_host_the_certificate_does_not_name_is_refused_by_verify_full_only() {
    let tls = tls_cluster().await;
    let ca = tls.pki.crt("ca");
    // The certificate names `localhost`, not its address nor another name.
    for host in ["127.0.0.1", "db.wrong.invalid"] {
        let url = format!(
            "{}&sslmode=verify-full&sslrootcert={}",
            tls.bare_url(host),
            ca.display()
        );
        let err = refused(small(DbConfig::from_url(&url).unwrap())).await;
        assert_tls(
            &err,
            TlsErrorKind::HostnameMismatch,
            &format!("{host}:{}/postgres", tls.port),
        );
        assert!(err.to_string().contains(host), "{err}");

        // verify-ca checks the chain only; `require` with a root too.
        for mode in ["verify-ca", "require"] {
            let url = format!(
                "{}&sslmode={mode}&sslrootcert={}",
                tls.bare_url(host),
                ca.display()
            );
            let db = Database::connect(small(DbConfig::from_url(&url).unwrap()))
                .await
                .unwrap_or_else(|e| panic!("{mode} to {host}: {e}"));
            assert!(session_tls(&db).await.0);
        }
    }
}

#[tokio::test]
async fn require_and_prefer_check_nothing_without_a_root() {
    let tls = tls_cluster().await;
    for (params, mode) in [
        ("&sslmode=require", SslMode::Require),
        ("&sslmode=prefer", SslMode::Prefer),
        ("", SslMode::Prefer),
    ] {
        let url = format!("{}{params}", tls.bare_url("127.0.0.1"));
        let config = small(DbConfig::from_url(&url).unwrap());
        assert_eq!(config.ssl_mode, mode);
        let db = Database::connect(config).await.unwrap();
        assert!(session_tls(&db).await.0, "{params}: not over TLS");
    }
}

#[tokio::test]
async fn disable_is_refused_by_a_server_that_accepts_only_tls() {
    let tls = tls_cluster().await;
    let url = format!("{}&sslmode=disable", tls.bare_url("localhost"));
    let err = refused(small(DbConfig::from_url(&url).unwrap())).await;
    assert!(!err.is_tls(), "{err:?}");
    assert_eq!(
        err.sqlstate(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:?}"
    );
    assert!(err.to_string().contains("no encryption"), "{err}");
}

#[tokio::test]
async fn system_roots_do_not_vouch_for_a_private_ca() {
    let tls = tls_cluster().await;
    // Without sslrootcert, verify-full uses the system's roots; so does
    // `system`. Neither has the test CA.
    for params in ["&sslmode=verify-full", "&sslrootcert=system"] {
        let url = format!("{}{params}", tls.bare_url("localhost"));
        let config = small(DbConfig::from_url(&url).unwrap());
        assert_eq!(config.ssl_mode, SslMode::VerifyFull);
        let err = refused(config).await;
        assert_tls(&err, TlsErrorKind::UnknownCa, "localhost");
    }
}

#[tokio::test]
async fn a_client_certificate_logs_in_with_cert_authentication() {
    let tls = tls_cluster().await;
    let (crt, key) = (tls.pki.crt("client"), tls.pki.key("client"));
    let config = tls.config(
        "certuser",
        &format!(
            "sslmode=verify-full&sslcert={}&sslkey={}",
            crt.display(),
            key.display()
        ),
    );
    let db = Database::connect(config).await.unwrap();
    let row = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT current_user::text, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "certuser");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("/CN=certuser")
    );

    // Without a certificate, `cert` authentication refuses the login.
    let err = refused(tls.config("certuser", "sslmode=verify-full")).await;
    assert_eq!(
        err.sqlstate(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");

    // A certificate of a CA the server does not trust: the server ends
    // the handshake.
    let err = refused(tls.config(
        "certuser",
        &format!(
            "sslmode=verify-full&sslcert={}&sslkey={}",
            tls.pki.crt("rogue_client").display(),
            tls.pki.key("rogue_client").display()
        ),
    ))
    .await;
    assert_tls(
        &err,
        TlsErrorKind::Other,
        &format!("localhost:{}/postgres", tls.port),
    );
    assert!(err.to_string().contains("client certificate"), "{err}");
}

#[tokio::test]
async fn scram_with_channel_binding_works_over_tls() {
    let tls = tls_cluster().await;
    let url = format!(
        "postgres://scramuser:scram-secret-pw@localhost:{}/postgres?hostaddr=127.0.0.1\
         &sslmode=verify-full&sslrootcert={}&channel_binding=require",
        tls.port,
        tls.pki.crt("ca").display()
    );
    let db = Database::connect(small(DbConfig::from_url(&url).unwrap()))
        .await
        .unwrap();
    assert!(session_tls(&db).await.0);
}

#[tokio::test]
async fn settings_from_the_environment_and_serde_are_used() {
    let tls = tls_cluster().await;
    let ca = tls.pki.crt("ca");
    let (crt, key) = (tls.pki.crt("client"), tls.pki.key("client"));
    let vars: HashMap<&str, String> = HashMap::from([
        // The URL says disable; the variables win.
        (
            "DATABASE_URL",
            format!(
                "postgres://certuser@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode=disable",
                tls.port
            ),
        ),
        ("VOIDRUNNER_DB_SSLMODE", "verify-full".to_owned()),
        ("VOIDRUNNER_DB_SSLROOTCERT", ca.display().to_string()),
        ("VOIDRUNNER_DB_SSLCERT", crt.display().to_string()),
        ("VOIDRUNNER_DB_SSLKEY", key.display().to_string()),
        ("VOIDRUNNER_DB_MIN_CONNECTIONS", "1".to_owned()),
    ]);
    let config = DbConfig::from_lookup(|name| vars.get(name).cloned()).unwrap();
    assert_eq!(config.ssl_mode, SslMode::VerifyFull);
    let db = Database::connect(config).await.unwrap();
    assert!(session_tls(&db).await.0);

    let config: DbConfig = serde_json::from_value(serde_json::json!({
        "url": tls.bare_url("localhost"),
        "min_connections": 1,
        "ssl_mode": "verify-full",
        "ssl_root_cert": ca,
    }))
    .unwrap();
    let db = Database::connect(config).await.unwrap();
    assert!(session_tls(&db).await.0);

    let config: DbConfig = serde_json::from_value(serde_json::json!({
        "url": tls.url("postgres", "sslmode=verify-full"),
        "min_connections": 1,
        "ssl_root_cert": tls.pki.crt("other_ca"),
    }))
    .unwrap();
    assert_tls(&refused(config).await, TlsErrorKind::UnknownCa, "localhost");
}

#[tokio::test]
async fn every_connection_path_reports_the_tls_kind() {
    let tls = tls_cluster().await;
    let config = tls.config(
        "postgres",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            tls.pki.crt("other_ca").display()
        ),
    );
    let target = config.display_target();
    let db = Database::connect_lazy(config).unwrap();
    let check = |what: &str, err: Error| {
        assert_eq!(
            err.tls_kind(),
            Some(TlsErrorKind::UnknownCa),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains(&target), "{what}: {err}");
    };
    check("client", db.client().await.unwrap_err());
    check("health_check", db.health_check().await.unwrap_err());
    check("migrate", db.migrate().await.unwrap_err());
    check("migration_status", db.migration_status().await.unwrap_err());
    match db.subscribe().await {
        Ok(_) => panic!("subscribed"),
        Err(e) => check("subscribe", e),
    }
}

#[tokio::test]
async fn unusable_certificate_files_are_config_errors_naming_them() {
    let tls = tls_cluster().await;
    let dir = tempdir(tls.pki.crt("ca").parent().unwrap(), "files");
    let key_text = std::fs::read_to_string(tls.pki.key("client")).unwrap();
    // A line of the key's base64, which no message may quote.
    let secret_line = key_text.lines().nth(1).unwrap().to_owned();

    let missing = dir.join("missing-ca.pem");
    let not_certs = dir.join("a-key-not-a-cert.pem");
    std::fs::write(&not_certs, &key_text).unwrap();
    let garbage_key = dir.join("garbage.key");
    std::fs::write(&garbage_key, "not a key\n").unwrap();
    crate::pki::private(&garbage_key).unwrap();
    let open_key = dir.join("world-readable.key");
    std::fs::write(&open_key, &key_text).unwrap();
    std::fs::set_permissions(
        &open_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let crt = tls.pki.crt("client");
    let wrong_key = tls.pki.key("server");

    for (params, names, says) in [
        (
            format!("sslrootcert={}", missing.display()),
            missing.clone(),
            "cannot read",
        ),
        (
            format!("sslrootcert={}", not_certs.display()),
            not_certs.clone(),
            "no PEM certificate",
        ),
        (
            format!("sslcert={}&sslkey={}", crt.display(), garbage_key.display()),
            garbage_key.clone(),
            "no PEM private key",
        ),
        (
            format!("sslcert={}&sslkey={}", crt.display(), open_key.display()),
            open_key.clone(),
            "group or world access",
        ),
        (
            format!(
                "sslcert={}&sslkey={}",
                not_certs.display(),
                garbage_key.display()
            ),
            not_certs.clone(),
            "no PEM certificate",
        ),
        (
            format!("sslcert={}&sslkey={}", crt.display(), wrong_key.display()),
            wrong_key.clone(),
            "cannot be used together",
        ),
    ] {
        let config = tls.config("postgres", &format!("sslmode=verify-full&{params}"));
        for err in [
            config.check_tls_files().unwrap_err(),
            Database::connect_lazy(config.clone()).unwrap_err(),
            refused(config).await,
        ] {
            assert!(matches!(err, Error::Config { .. }), "{params}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(&names.display().to_string()), "{text}");
            assert!(text.contains(says), "{text}");
            assert!(!text.contains(&secret_line), "{text}");
            assert!(!format!("{err:?}").contains(&secret_line), "{err:?}");
        }
    }
    // Under `disable` no file is read.
    let url = format!(
        "{}&sslmode=disable&sslrootcert={}",
        tls.bare_url("localhost"),
        missing.display()
    );
    Database::connect_lazy(small(DbConfig::from_url(&url).unwrap())).unwrap();
}

/// A new directory under `parent`.
fn tempdir(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
