//! Session settings behind a pooler: no startup options (and a clear error
//! when a pool sends them anyway), `SET LOCAL` in the crate's transactions
//! behind a transaction pooler, `SET` per connection behind a session
//! pooler.

use std::time::Duration;

use voidrunner_db::testing::{PgBouncer, PgBouncerSettings, TestDatabase};
use voidrunner_db::{Database, Error, PoolerMode};

use crate::{bouncer, pooled_database, server, through};

#[tokio::test]
async fn startup_options_refused_by_the_pooler_say_to_set_the_pooler_mode() {
    let bouncer = bouncer().await;
    let test_db = TestDatabase::new().await.unwrap();
    let mut config = through(bouncer, &test_db.config().await.unwrap());
    // The defaults: statement_timeout and idle_in_transaction_timeout go as
    // startup options, which PgBouncer refuses.
    config.pooler = PoolerMode::Direct;
    let err = Database::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("unsupported startup parameter")
            && message.contains("VOIDRUNNER_DB_POOLER"),
        "{message}"
    );
}

#[tokio::test]
async fn transactions_carry_the_session_settings_as_set_local() {
    let test_db = pooled_database(2).await;
    let mut config = test_db.db().config().clone();
    config.statement_timeout = Some(Duration::from_millis(1500));
    config.notify_events = false;
    let db = Database::connect(config).await.unwrap();
    let inside: (String, String, String) = db
        .transaction(|tx| async move {
            let row = tx
                .client()?
                .query_typed_one(
                    "SELECT current_setting('statement_timeout'), \
                            current_setting('idle_in_transaction_session_timeout'), \
                            coalesce(current_setting('voidrunner.notify_events', true), '')",
                    &[],
                )
                .await?;
            Ok((row.get(0), row.get(1), row.get(2)))
        })
        .await
        .unwrap();
    assert_eq!(
        inside,
        ("1500ms".to_owned(), "1min".to_owned(), "off".to_owned())
    );
    // A statement timeout inside the crate's transaction is the pool's.
    let err = db
        .transaction(|tx| async move {
            tx.client()?.batch_execute("SELECT pg_sleep(5)").await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.timeout_kind(),
        Some(voidrunner_db::TimeoutKind::Statement),
        "{err:?}"
    );
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn behind_a_session_pooler_each_connection_sets_the_settings_once() {
    let mut settings = PgBouncerSettings::default();
    settings.pool_mode = PoolerMode::Session;
    // A server connection per client connection: the pool's, the
    // migration session and its lock watcher.
    settings.default_pool_size = 8;
    let session = PgBouncer::start_with(&server().await, settings)
        .await
        .unwrap();
    let test_db = TestDatabase::empty().await.unwrap();
    let mut config = session.route(&test_db.config().await.unwrap());
    assert_eq!(config.pooler, PoolerMode::Session);
    // A session pooler keeps the session: migrations (their advisory lock)
    // work through it, without a direct URL.
    config.clear_direct_url();
    config.statement_timeout = Some(Duration::from_secs(7));
    config.max_connections = 2;
    config.min_connections = 1;
    let db = Database::connect(config).await.unwrap();
    assert!(!db.migrate().await.unwrap().is_empty());
    let timeout: String = db
        .client()
        .await
        .unwrap()
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "7s");
    db.health_check().await.unwrap();
    db.close(Duration::from_secs(5)).await;
}
