//! Migrations behind a transaction pooler go through the direct URL, where
//! the advisory lock still makes instances take turns.

use std::collections::BTreeMap;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{Database, Error};

use crate::{bouncer, through};

#[tokio::test]
async fn eight_concurrent_migrations_through_the_direct_url_apply_each_version_once() {
    let bouncer = bouncer().await;
    let test_db = TestDatabase::empty().await.unwrap();
    let config = through(bouncer, &test_db.config().await.unwrap());
    assert!(config.direct_pg_config().is_some());
    let mut instances = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut config = config.clone();
        config.min_connections = 0;
        instances.spawn(async move {
            let db = Database::connect_lazy(config)?;
            let applied = db.migrate().await;
            db.close(std::time::Duration::from_secs(5)).await;
            applied
        });
    }
    let mut applied: BTreeMap<i32, usize> = BTreeMap::new();
    while let Some(joined) = instances.join_next().await {
        for version in joined.unwrap().unwrap() {
            *applied.entry(version).or_default() += 1;
        }
    }
    let embedded: Vec<i32> = voidrunner_db::migrate::embedded()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(
        applied.keys().copied().collect::<Vec<_>>(),
        embedded,
        "every version applied by some instance"
    );
    assert!(
        applied.values().all(|n| *n == 1),
        "a version applied twice: {applied:?}"
    );
    let rows = test_db
        .raw_client()
        .await
        .unwrap()
        .query(
            "SELECT version, count(*) FROM voidrunner_db_schema_history GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let history: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        history,
        embedded.iter().map(|v| (*v, 1)).collect::<Vec<_>>(),
        "the history table records each version once"
    );
}

#[tokio::test]
async fn without_a_direct_url_migrating_is_refused_before_any_sql() {
    let bouncer = bouncer().await;
    let test_db = TestDatabase::empty().await.unwrap();
    let mut config = through(bouncer, &test_db.config().await.unwrap());
    config.clear_direct_url();
    config.min_connections = 0;
    let db = Database::connect_lazy(config).unwrap();
    for err in [
        db.migrate().await.unwrap_err(),
        db.migration_status().await.map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(
            err.to_string().contains("VOIDRUNNER_DB_DIRECT_URL"),
            "says what to set: {err}"
        );
    }
    let exists: bool = test_db
        .raw_client()
        .await
        .unwrap()
        .query_one(
            "SELECT to_regclass('voidrunner_db_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "nothing ran");
}
