//! Extreme settings and arguments (#8 §2): every size and duration a
//! `DbConfig` or a `Database` method takes has a documented range. Outside
//! it the answer is `Error::Config` (settings) or `Error::Validation`
//! (arguments), never a panic, a hang or a silently different behaviour;
//! at its ends, things work.

use std::time::Duration;

use voidrunner_db::config::{
    CONNECTION_AGE_RANGE, MAX_CONNECTIONS_RANGE, MAX_REPLICAS, POOL_TIMEOUT_RANGE,
    REAPER_INTERVAL_RANGE, REPLICA_LAG_RANGE, REPLICA_PROBE_INTERVAL_RANGE, REPLICA_WAIT_RANGE,
    SERVER_TIMEOUT_RANGE,
};
use voidrunner_db::testing::{TestDatabase, server_config};
use voidrunner_db::{Database, DbConfig, Error, TimeoutKind};

/// Generous bound so a hang fails the test instead of stalling CI.
const NO_HANG: Duration = Duration::from_secs(60);
const MICRO: Duration = Duration::from_micros(1);

/// A configuration for the test server, pool settings at their defaults
/// except no warm connections (a lazy pool then opens none).
async fn config() -> DbConfig {
    let mut config = server_config().await.unwrap();
    config.min_connections = 0;
    config
}

/// The error of `Database::connect` and of `Database::connect_lazy` for a
/// configuration: both must refuse it with `Error::Config` naming `field`,
/// before opening anything.
async fn refused(config: DbConfig, field: &str) {
    let lazy = Database::connect_lazy(config.clone()).unwrap_err();
    assert!(matches!(lazy, Error::Config { .. }), "{field}: {lazy:?}");
    assert!(lazy.to_string().contains(field), "{field}: {lazy}");
    let eager = tokio::time::timeout(NO_HANG, Database::connect(config))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(matches!(eager, Error::Config { .. }), "{field}: {eager:?}");
    assert!(eager.to_string().contains(field), "{field}: {eager}");
}

/// Zero, `Duration::MAX` and the values just outside `range` are refused.
async fn refuses_outside(
    field: &str,
    range: &std::ops::RangeInclusive<Duration>,
    set: impl Fn(&mut DbConfig, Duration),
) {
    let mut outside = vec![*range.end() + MICRO, Duration::MAX];
    if !range.start().is_zero() {
        outside.extend([Duration::ZERO, *range.start() - MICRO]);
    }
    for value in outside {
        let mut c = config().await;
        set(&mut c, value);
        refused(c, field).await;
    }
}

#[tokio::test]
async fn close_takes_any_timeout_without_panicking() {
    // Duration::MAX used to overflow `Instant + timeout`. Nothing checked
    // out: it returns at once.
    let db = TestDatabase::new().await.unwrap();
    let closed = tokio::time::timeout(NO_HANG, db.close(Duration::MAX))
        .await
        .expect("no hang");
    assert!(closed);
    assert!(db.client().await.unwrap_err().is_unavailable());

    // A connection still out: MAX waits for it (capped at
    // Database::MAX_CLOSE_WAIT, not forever) and sees it come back.
    let db = TestDatabase::new().await.unwrap();
    let held = db.client().await.unwrap();
    let giver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
    });
    let closed = tokio::time::timeout(NO_HANG, db.close(Duration::MAX))
        .await
        .expect("no hang");
    assert!(closed, "the connection came back within the wait");
    giver.await.unwrap();
    assert_eq!(Database::MAX_CLOSE_WAIT, Duration::from_secs(24 * 3600));

    // Zero does not wait: with a connection out, it answers false at once.
    let db = TestDatabase::new().await.unwrap();
    let held = db.client().await.unwrap();
    let closed = tokio::time::timeout(NO_HANG, db.close(Duration::ZERO))
        .await
        .expect("no hang");
    assert!(!closed);
    drop(held);
}

#[tokio::test]
async fn connect_and_wait_timeouts_are_bounded_and_health_check_never_overflows() {
    // connect_timeout = MAX used to panic in health_check (connect_timeout
    // + wait_timeout overflowed); now it never gets that far.
    refuses_outside("connect_timeout", &POOL_TIMEOUT_RANGE, |c, d| {
        c.connect_timeout = d
    })
    .await;
    refuses_outside("wait_timeout", &POOL_TIMEOUT_RANGE, |c, d| {
        c.wait_timeout = d
    })
    .await;
    refuses_outside("recycle_timeout", &POOL_TIMEOUT_RANGE, |c, d| {
        c.recycle_timeout = d
    })
    .await;
    assert_eq!(*POOL_TIMEOUT_RANGE.start(), Duration::from_millis(1));
    assert_eq!(*POOL_TIMEOUT_RANGE.end(), Duration::from_secs(24 * 3600));

    // Both at their largest: the health check's bound (their sum) is fine.
    let db = TestDatabase::with_config(|c| {
        c.connect_timeout = *POOL_TIMEOUT_RANGE.end();
        c.wait_timeout = *POOL_TIMEOUT_RANGE.end();
        c.recycle_timeout = *POOL_TIMEOUT_RANGE.end();
    })
    .await
    .unwrap();
    let report = tokio::time::timeout(NO_HANG, db.health_check())
        .await
        .expect("no hang")
        .unwrap();
    assert!(!report.server_version.is_empty());

    // At their smallest they are accepted (opening a connection within
    // 1 ms is not something a test can promise, so only a lazy pool).
    let mut c = config().await;
    c.connect_timeout = *POOL_TIMEOUT_RANGE.start();
    c.wait_timeout = *POOL_TIMEOUT_RANGE.start();
    c.recycle_timeout = *POOL_TIMEOUT_RANGE.start();
    let lazy = Database::connect_lazy(c).unwrap();
    lazy.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn max_connections_is_bounded() {
    // usize::MAX used to panic in the pool's semaphore.
    for max in [0, *MAX_CONNECTIONS_RANGE.end() + 1, usize::MAX] {
        let mut c = config().await;
        c.max_connections = max;
        refused(c, "max_connections").await;
    }
    // min above max stays an error of its own.
    let mut c = config().await;
    c.min_connections = 6;
    c.max_connections = 5;
    refused(c, "min_connections").await;

    // The largest: built (lazily, nothing opened) and reported as the max.
    let mut c = config().await;
    c.max_connections = *MAX_CONNECTIONS_RANGE.end();
    let big = Database::connect_lazy(c).unwrap();
    assert_eq!(big.pool_status().max, 10_000);
    big.close(Duration::from_secs(5)).await;

    // The smallest: one connection that works.
    let one = TestDatabase::with_config(|c| c.max_connections = *MAX_CONNECTIONS_RANGE.start())
        .await
        .unwrap();
    assert_eq!(one.health_check().await.unwrap().pool.max, 1);
}

#[tokio::test]
async fn replica_settings_are_bounded_before_anything_opens() {
    refuses_outside("replica_max_lag", &REPLICA_LAG_RANGE, |c, d| {
        c.replica_max_lag = d
    })
    .await;
    refuses_outside(
        "replica_probe_interval",
        &REPLICA_PROBE_INTERVAL_RANGE,
        |c, d| c.replica_probe_interval = d,
    )
    .await;
    refuses_outside("replica_wait", &REPLICA_WAIT_RANGE, |c, d| {
        c.replica_wait = d
    })
    .await;
    // Zero is a wait like any other: straight to the primary.
    let mut c = config().await;
    c.replica_wait = Duration::ZERO;
    drop(Database::connect_lazy(c).unwrap());

    let nodes = |n: usize| {
        (0..n)
            .map(|i| format!("postgres://u:pw@replica{i}:5432/db"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut c = config().await;
    c.set_replicas(&nodes(MAX_REPLICAS + 1)).unwrap();
    refused(c, "replicas").await;
    // At the bound the configuration is accepted (the replicas are not
    // connected to: that is the runtime's part, #19).
    let mut c = config().await;
    c.set_replicas(&nodes(MAX_REPLICAS)).unwrap();
    c.validate().unwrap();
    assert_eq!(c.replica_configs().len(), MAX_REPLICAS);
}

#[tokio::test]
async fn reaper_interval_is_bounded_and_the_reaper_runs_at_both_ends() {
    // MAX used to panic in the reaper task (Instant + interval), zero in
    // tokio's interval; neither gets past validation now.
    refuses_outside("reaper_interval", &REAPER_INTERVAL_RANGE, |c, d| {
        c.reaper_interval = d
    })
    .await;
    assert_eq!(*REAPER_INTERVAL_RANGE.start(), Duration::from_millis(10));
    assert_eq!(*REAPER_INTERVAL_RANGE.end(), Duration::from_secs(24 * 3600));

    // A lazy pool is warmed by the reaper's first run: seeing the pool
    // reach its minimum proves the task is alive at either end.
    for interval in [*REAPER_INTERVAL_RANGE.start(), *REAPER_INTERVAL_RANGE.end()] {
        let db = TestDatabase::new().await.unwrap();
        let mut c = db.config().await.unwrap();
        c.max_connections = 3;
        c.min_connections = 2;
        c.reaper_interval = interval;
        let lazy = Database::connect_lazy(c).unwrap();
        tokio::time::timeout(NO_HANG, async {
            while lazy.pool_status().size < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the reaper ({interval:?}) warmed the pool"));
        let one: i32 = lazy
            .client()
            .await
            .unwrap()
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(one, 1);
        lazy.close(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn connection_ages_are_bounded() {
    refuses_outside("max_lifetime", &CONNECTION_AGE_RANGE, |c, d| {
        c.max_lifetime = Some(d)
    })
    .await;
    refuses_outside("idle_timeout", &CONNECTION_AGE_RANGE, |c, d| {
        c.idle_timeout = Some(d)
    })
    .await;
    // Off, and the largest, keep connections; the pool works.
    let db = TestDatabase::with_config(|c| {
        c.max_lifetime = Some(*CONNECTION_AGE_RANGE.end());
        c.idle_timeout = None;
    })
    .await
    .unwrap();
    db.health_check().await.unwrap();
}

/// `statement_timeout` and `idle_in_transaction_session_timeout` as the
/// server sees them on a pooled connection.
async fn server_timeouts(db: &Database) -> (String, String) {
    let row = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT current_setting('statement_timeout'), \
                    current_setting('idle_in_transaction_session_timeout')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn server_timeouts_are_never_sent_as_zero() {
    // 500 µs used to be sent as 0 ms, which the server reads as "off".
    for (field, set) in [
        (
            "statement_timeout",
            (|c: &mut DbConfig, d| c.statement_timeout = Some(d)) as fn(&mut DbConfig, Duration),
        ),
        ("idle_in_transaction_timeout", |c, d| {
            c.idle_in_transaction_timeout = Some(d)
        }),
    ] {
        refuses_outside(field, &SERVER_TIMEOUT_RANGE, set).await;
        let mut c = config().await;
        set(&mut c, Duration::from_micros(500));
        refused(c, field).await;
    }
    assert_eq!(*SERVER_TIMEOUT_RANGE.start(), Duration::from_millis(1));
    assert_eq!(
        *SERVER_TIMEOUT_RANGE.end(),
        Duration::from_millis(i32::MAX as u64)
    );

    // The smallest is in force: 1 ms cancels a 200 ms sleep.
    let db = TestDatabase::with_config(|c| {
        c.statement_timeout = Some(Duration::from_millis(1));
        c.idle_in_transaction_timeout = Some(Duration::from_millis(1));
    })
    .await
    .unwrap();
    assert_eq!(server_timeouts(&db).await, ("1ms".into(), "1ms".into()));
    let err = db
        .client()
        .await
        .unwrap()
        .batch_execute("SELECT pg_sleep(0.2)")
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Statement), "{err:?}");

    // A fraction of a millisecond is rounded up, never down.
    let db = TestDatabase::with_config(|c| {
        c.statement_timeout = Some(Duration::from_micros(1_500));
        c.idle_in_transaction_timeout = Some(Duration::from_micros(2_001));
    })
    .await
    .unwrap();
    assert_eq!(server_timeouts(&db).await, ("2ms".into(), "3ms".into()));

    // The largest the server takes.
    let db = TestDatabase::with_config(|c| {
        c.statement_timeout = Some(*SERVER_TIMEOUT_RANGE.end());
        c.idle_in_transaction_timeout = Some(*SERVER_TIMEOUT_RANGE.end());
    })
    .await
    .unwrap();
    assert_eq!(
        server_timeouts(&db).await,
        ("2147483647ms".into(), "2147483647ms".into())
    );
}
