//! The test harness over TLS: `discover` with a TLS `DATABASE_URL`, and a
//! whole `TestDatabase` (admin session, template migrations, the test's
//! pool) in a child process whose `DATABASE_URL` is the TLS cluster's.

use voidrunner_db::TlsErrorKind;
use voidrunner_db::testing::{self, Server, TestDatabase};

use crate::{session_tls, tls_cluster};

/// Set for the child process only, so that the child test does nothing
/// when a plain `cargo test -- --ignored` runs it against another server.
const CHILD: &str = "VOIDRUNNER_DB_TLS_HARNESS_CHILD";

#[tokio::test]
async fn discover_uses_the_tls_settings_of_database_url() {
    let tls = tls_cluster().await;
    let url = tls.url("postgres", "sslmode=verify-full");
    match testing::discover(Some(&url), "postgres://nobody@127.0.0.1:1/none")
        .await
        .unwrap()
    {
        Server::Url(found) => assert_eq!(found.pg_config().get_ports(), &[tls.port]),
        other => panic!("{other:?}"),
    }
    // A certificate problem is said as such, not as "does not answer".
    let wrong_ca = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        tls.bare_url("localhost"),
        tls.pki.crt("other_ca").display()
    );
    let err = testing::discover(Some(&wrong_ca), &url).await.unwrap_err();
    assert_eq!(err.tls_kind(), Some(TlsErrorKind::UnknownCa), "{err:?}");
}

#[tokio::test]
async fn test_databases_are_made_over_tls() {
    let tls = tls_cluster().await;
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "harness::child_test_database_over_tls",
            "--ignored",
            "--nocapture",
        ])
        .env(
            "DATABASE_URL",
            tls.url(
                "postgres",
                "sslmode=verify-full&application_name=vr-tls-harness",
            ),
        )
        .env(CHILD, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
#[ignore = "run by test_databases_are_made_over_tls, with DATABASE_URL set to the TLS cluster"]
async fn child_test_database_over_tls() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let db = TestDatabase::new().await.unwrap();
    // The pool of the test database speaks TLS, and so did the harness
    // (its admin session is still open, under the URL's application name).
    assert!(session_tls(&db).await.0);
    let admin_ssl: bool = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT bool_and(s.ssl) AND count(*) > 0 FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'vr-tls-harness'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(admin_ssl);
    let status = db.migration_status().await.unwrap();
    assert!(status.pending.is_empty());
    assert!(status.current_version() > 0);
}
