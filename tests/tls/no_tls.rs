//! A cluster without TLS (`ssl = off`), which is then switched to serve
//! an expired certificate: one cluster for both, so this binary starts
//! two in all.

use std::time::Duration;

use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{Database, DbConfig, SslMode, TlsErrorKind};

use crate::{install_server_certificate, session_tls, small, tls_cluster};

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_expired_certificates_are_refused() {
    let pki = tls_cluster().await.pki.clone();
    let for_hook = pki.clone();
    let cluster = PrivateCluster::start_with(move |data| {
        // In place for later; the server starts with TLS off.
        install_server_certificate(&for_hook, data, "expired")?;
        crate::append(&data.join("postgresql.conf"), "ssl = off\n")
    })
    .await
    .unwrap();
    let port = cluster.port();
    let target = format!("localhost:{port}/postgres");
    let url = |params: &str| {
        small(
            DbConfig::from_url(&format!(
                "postgres://postgres@localhost:{port}/postgres?hostaddr=127.0.0.1&sslrootcert={}&{params}",
                pki.crt("ca").display()
            ))
            .unwrap(),
        )
    };

    // The server answers `N` to the TLS request: every mode that demands
    // TLS fails with ServerNoTls, naming the server.
    for mode in ["require", "verify-ca", "verify-full"] {
        let err = Database::connect(url(&format!("sslmode={mode}")))
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode} connected in plaintext"));
        assert_eq!(
            err.tls_kind(),
            Some(TlsErrorKind::ServerNoTls),
            "{mode}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&target), "{text}");
        assert!(text.contains("does not support TLS"), "{text}");
    }
    // prefer and disable go on in plaintext.
    for mode in ["prefer", "disable"] {
        let config = url(&format!("sslmode={mode}"));
        assert!(!config.ssl_mode.requires_tls());
        let db = Database::connect(config).await.unwrap();
        assert!(!session_tls(&db).await.0, "{mode}");
        db.close(Duration::from_secs(5)).await;
    }

    // Now TLS with a certificate that expired in 2020.
    let admin = Database::connect(url("sslmode=disable")).await.unwrap();
    let client = admin.client().await.unwrap();
    // One by one: ALTER SYSTEM refuses to run in a multi-statement query.
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'expired.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'expired.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    drop(client);
    admin.close(Duration::from_secs(5)).await;
    // The reload is asynchronous: wait until a new session sees TLS.
    let started = std::time::Instant::now();
    loop {
        let db = Database::connect(url("sslmode=prefer")).await.unwrap();
        let on = session_tls(&db).await.0;
        db.close(Duration::from_secs(5)).await;
        if on {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ssl = on never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mode in ["verify-full", "verify-ca"] {
        let config = url(&format!("sslmode={mode}"));
        assert!(matches!(
            config.ssl_mode,
            SslMode::VerifyFull | SslMode::VerifyCa
        ));
        let err = Database::connect(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode} accepted an expired certificate"));
        assert_eq!(
            err.tls_kind(),
            Some(TlsErrorKind::Expired),
            "{mode}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&target), "{text}");
        assert!(text.contains("expired"), "{text}");
    }
    // `require` without a root checks no date, as libpq.
    let url_no_root =
        format!("postgres://postgres@localhost:{port}/postgres?hostaddr=127.0.0.1&sslmode=require");
    let db = Database::connect(small(DbConfig::from_url(&url_no_root).unwrap()))
        .await
        .unwrap();
    assert!(session_tls(&db).await.0);
    db.close(Duration::from_secs(5)).await;

    cluster.destroy().await.unwrap();
}
