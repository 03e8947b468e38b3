use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use voidrunner_db::TimeoutKind;
use voidrunner_db::testing::TestDatabase;

use crate::raw;

/// Connections the server sees on this test's database.
async fn server_side_connections(db: &TestDatabase, observer: &tokio_postgres::Client) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'voidrunner-db'",
            &[&db.name()],
        )
        .await
        .unwrap()
        .get(0)
}

async fn observer() -> tokio_postgres::Client {
    let config = voidrunner_db::testing::server_config().await.unwrap();
    let mut pg = config.pg_config().clone();
    pg.application_name("observer");
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn connect_warms_the_pool_to_the_minimum() {
    let db = TestDatabase::with_config(|c| {
        c.min_connections = 3;
        c.max_connections = 6;
    })
    .await
    .unwrap();
    let status = db.pool_status();
    assert_eq!(
        (status.size, status.idle, status.in_use, status.max),
        (3, 3, 0, 6)
    );
    assert_eq!(server_side_connections(&db, &observer().await).await, 3);
}

#[tokio::test]
async fn hundred_concurrent_checkouts_never_exceed_max() {
    let db = Arc::new(
        TestDatabase::with_config(|c| {
            c.min_connections = 1;
            c.max_connections = 5;
            c.wait_timeout = Duration::from_secs(30);
        })
        .await
        .unwrap(),
    );
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let db = db.clone();
        let peak = peak.clone();
        tasks.spawn(async move {
            let client = db.client().await?;
            peak.fetch_max(db.pool_status().size, Ordering::Relaxed);
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid() FROM pg_sleep(0.01)", &[])
                .await?
                .get(0);
            Ok::<i32, voidrunner_db::Error>(pid)
        });
    }
    let observer = observer().await;
    let mut server_peak = 0;
    let mut pids = HashSet::new();
    let mut done = 0;
    while done < 100 {
        server_peak = server_peak.max(server_side_connections(&db, &observer).await);
        if let Some(result) = tasks.try_join_next() {
            pids.insert(result.unwrap().expect("every checkout succeeds"));
            done += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(
        peak.load(Ordering::Relaxed) <= 5,
        "pool grew to {}",
        peak.load(Ordering::Relaxed)
    );
    assert!(server_peak <= 5, "server saw {server_peak} connections");
    assert!(pids.len() <= 5, "{} distinct backends", pids.len());
    assert!(
        pids.len() > 1,
        "the load was spread over several connections"
    );
}

#[tokio::test]
async fn an_exhausted_pool_times_out_with_a_typed_error() {
    let db = TestDatabase::with_config(|c| {
        c.min_connections = 1;
        c.max_connections = 1;
        c.wait_timeout = Duration::from_millis(200);
    })
    .await
    .unwrap();
    let held = raw(&db).await;
    let err = db.client().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::PoolWait));
    assert_eq!(db.pool_status().in_use, 1);
    drop(held);
    let _again = db.client().await.expect("free again once returned");
}

#[tokio::test]
async fn a_connection_past_max_lifetime_is_replaced() {
    let db = TestDatabase::with_config(|c| {
        c.min_connections = 1;
        c.max_connections = 1;
        c.max_lifetime = Some(Duration::from_millis(300));
        // Only the checkout path retires it in this test.
        c.reaper_interval = Duration::from_secs(3600);
    })
    .await
    .unwrap();
    let pid = |client: voidrunner_db::PooledClient| async move {
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
    };
    let first = pid(raw(&db).await).await;
    assert_eq!(pid(raw(&db).await).await, first, "reused while young");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = pid(raw(&db).await).await;
    assert_ne!(first, second, "an old connection was reused");
}

#[tokio::test]
async fn the_reaper_closes_idle_connections_but_keeps_the_minimum() {
    let db = TestDatabase::with_config(|c| {
        c.min_connections = 2;
        c.max_connections = 6;
        c.idle_timeout = Some(Duration::from_millis(200));
        c.reaper_interval = Duration::from_millis(50);
    })
    .await
    .unwrap();
    let burst: Vec<_> = futures_join(&db, 6).await;
    assert_eq!(db.pool_status().size, 6);
    drop(burst);
    let mut sizes = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sizes.push(db.pool_status().size);
        if db.pool_status().size == 2 {
            break;
        }
    }
    assert_eq!(db.pool_status().size, 2, "sizes seen: {sizes:?}");
    assert!(
        sizes.iter().all(|s| *s >= 2),
        "went below the minimum: {sizes:?}"
    );
    // Stays at the minimum.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(db.pool_status().size, 2);
}

#[tokio::test]
async fn the_reaper_refills_to_the_minimum_after_lifetime_retirement() {
    let db = TestDatabase::with_config(|c| {
        c.min_connections = 2;
        c.max_connections = 4;
        c.max_lifetime = Some(Duration::from_millis(200));
        c.reaper_interval = Duration::from_millis(50);
    })
    .await
    .unwrap();
    let observer = observer().await;
    let pids = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<HashSet<_>>()
    };
    let sql = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'voidrunner-db'";
    let before = pids(observer.query(sql, &[&db.name()]).await.unwrap());
    assert_eq!(before.len(), 2);
    let mut after = before.clone();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = pids(observer.query(sql, &[&db.name()]).await.unwrap());
        if after.len() == 2 && after.is_disjoint(&before) {
            break;
        }
    }
    assert!(
        after.is_disjoint(&before),
        "old connections still open: {before:?} / {after:?}"
    );
    assert_eq!(after.len(), 2);
}

#[tokio::test]
async fn close_waits_for_checked_out_connections_then_refuses_checkouts() {
    let db = TestDatabase::new().await.unwrap();
    let held = raw(&db).await;
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
    });
    assert!(
        db.close(Duration::from_secs(10)).await,
        "all connections closed"
    );
    releaser.await.unwrap();
    assert_eq!(db.pool_status().size, 0);
    let err = db.client().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let db = TestDatabase::new().await.unwrap();
    let _held = raw(&db).await;
    assert!(
        !db.close(Duration::from_millis(50)).await,
        "reports the connection still out"
    );
}

async fn futures_join(db: &TestDatabase, n: usize) -> Vec<voidrunner_db::PooledClient> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(raw(db).await);
    }
    clients
}

#[tokio::test]
async fn dropping_the_database_closes_its_connections_and_stops_the_reaper() {
    let test_db = TestDatabase::new().await.unwrap();
    let mut config = test_db.config().await.unwrap();
    config.min_connections = 3;
    config.application_name = "voidrunner-db-dropped".into();
    // A reaper running often: if it kept the pool alive, the connections
    // would stay open (and be refilled).
    config.reaper_interval = Duration::from_millis(20);
    let db = voidrunner_db::Database::connect(config).await.unwrap();
    let observer = observer().await;
    let count = || async {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'voidrunner-db-dropped'",
                &[&test_db.name()],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count().await, 3);
    drop(db);
    let mut open = 3;
    for _ in 0..100 {
        open = count().await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "connections outlived their Database");
}

/// A transaction (or a repository of it) kept after the last `Database`
/// clone was dropped holds its own connection, not the pool: the pool's
/// other connections close and its reaper stops, as when no transaction
/// was ever opened.
#[tokio::test]
async fn a_kept_transaction_does_not_keep_the_pool_alive() {
    let test_db = TestDatabase::new().await.unwrap();
    let mut config = test_db.config().await.unwrap();
    let app = format!("vr-kept-{}", uuid::Uuid::new_v4().simple());
    config.application_name = app.clone();
    config.min_connections = 3;
    config.reaper_interval = Duration::from_millis(50);
    let db = voidrunner_db::Database::connect(config).await.unwrap();
    let observer = observer().await;
    let sessions = || async {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(sessions().await, 3);
    let kept = db
        .transaction(|tx| async move { Ok(tx.users()) })
        .await
        .unwrap();
    drop(db);
    // Only the kept repository's connection may stay; the reaper would
    // keep three open.
    let started = std::time::Instant::now();
    loop {
        let open = sessions().await;
        if open <= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{open} connections of a dropped pool stay open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The kept repository answers that its transaction ended.
    use voidrunner_db::UserRepository;
    assert!(matches!(
        kept.count().await,
        Err(voidrunner_db::Error::TransactionEnded)
    ));
}
