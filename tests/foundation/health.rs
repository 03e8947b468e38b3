use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use voidrunner_db::testing::{PrivateCluster, TestDatabase};
use voidrunner_db::{
    Database, DbConfig, ExecutionQueue, NewTask, NewUser, PasswordHash, PgTaskRepository,
    PgUserRepository, TaskRepository, UserRepository,
};

/// Generous bound so a hang fails the test instead of stalling CI.
const NO_HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn health_check_against_a_live_server() {
    let db = TestDatabase::with_config(|c| c.max_connections = 7)
        .await
        .unwrap();
    let report = db.health_check().await.unwrap();
    let version: String = db
        .client()
        .await
        .unwrap()
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(report.server_version, version);
    assert_eq!(report.pool.max, 7);
    assert!(report.pool.size >= 1);
    assert_eq!(report.pool.in_use, 0, "the check returned its connection");
}

fn unreachable_config() -> DbConfig {
    // A port nobody listens on: bind, read, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config =
        DbConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).unwrap();
    config.connect_timeout = Duration::from_secs(2);
    config
}

#[tokio::test]
async fn health_check_against_an_unreachable_server() {
    let db = Database::connect_lazy(unreachable_config()).unwrap();
    let err = tokio::time::timeout(NO_HANG, db.health_check())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let err = tokio::time::timeout(NO_HANG, Database::connect(unreachable_config()))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.to_string().contains("password"));
}

#[tokio::test]
async fn health_check_follows_a_server_that_stops_and_comes_back() {
    let cluster = PrivateCluster::start().await.unwrap();
    let mut config = cluster.config();
    config.min_connections = 2;
    config.connect_timeout = Duration::from_secs(2);
    let db = Database::connect(config).await.unwrap();
    db.health_check().await.unwrap();

    cluster.stop_server().await.unwrap();
    let err = tokio::time::timeout(NO_HANG, db.health_check())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    cluster.start_server().await.unwrap();
    // The broken connections are discarded; new ones are opened.
    let mut last = None;
    for _ in 0..20 {
        match db.health_check().await {
            Ok(report) => {
                last = Some(report);
                break;
            }
            Err(e) => {
                assert!(e.is_unavailable(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        last.is_some(),
        "the pool recovered once the server was back"
    );
    db.close(Duration::from_secs(5)).await;
    cluster.destroy().await.unwrap();
}

/// A transaction whose server stops half-way fails (never `Ok`) and writes
/// nothing; once the server is back the pool drops its dead connections
/// (each may fail one call, with `Unavailable`), every acknowledged write is
/// durable and no session is left inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_across_a_server_restart_fails_and_the_pool_recovers() {
    const POOL: usize = 4;
    let cluster = PrivateCluster::start().await.unwrap();
    let mut config = cluster.config();
    config.max_connections = POOL;
    config.min_connections = 2;
    config.connect_timeout = Duration::from_secs(2);
    config.wait_timeout = Duration::from_secs(2);
    let db = Database::connect(config.clone()).await.unwrap();
    db.migrate().await.unwrap();
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let owner = users
        .create(NewUser::new("owner@example.com", PasswordHash::new("h")))
        .await
        .unwrap();

    let (ready, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let transaction = {
        let (db, ready, go) = (db.clone(), ready.clone(), go.clone());
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (ready, go) = (ready.clone(), go.clone());
                async move {
                    let task = tx
                        .tasks()
                        .create(NewTask::new(owner.id, "t", "print(1)"))
                        .await?;
                    ready.notify_one();
                    go.notified().await;
                    tx.queue().enqueue(task.id, None).await?;
                    Ok(task.id)
                }
            })
            .await
        })
    };
    tokio::time::timeout(NO_HANG, ready.notified())
        .await
        .expect("the transaction's first statement ran");
    cluster.stop_server().await.unwrap();
    go.notify_one();
    let err = tokio::time::timeout(NO_HANG, transaction)
        .await
        .expect("no hang")
        .unwrap()
        .expect_err("a transaction whose server stopped returned Ok");
    assert!(err.is_unavailable(), "{err:?}");
    let err = tokio::time::timeout(NO_HANG, users.count())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    cluster.start_server().await.unwrap();
    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    for i in 0..30 {
        match users
            .create(NewUser::new(
                format!("after-{i}@example.com"),
                PasswordHash::new("h"),
            ))
            .await
        {
            Ok(user) => acknowledged.push(user.id),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.len() <= POOL && failures.iter().all(|e| e.is_unavailable()),
        "more failures than dead connections, or not Unavailable: {failures:?}"
    );
    // Transactions work again.
    for _ in 0..10 {
        db.transaction(|tx| async move { tx.users().count().await })
            .await
            .unwrap();
    }
    // The interrupted transaction left nothing; acknowledged writes stayed.
    assert_eq!(tasks.count().await.unwrap(), 0);
    let (observer, connection) = config
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for id in &acknowledged {
        let n: i64 = observer
            .query_one("SELECT count(*) FROM users WHERE id = $1", &[id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "acknowledged user {id:?} lost");
    }
    let in_transaction: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_transaction, 0);
    drop(observer);
    db.close(Duration::from_secs(5)).await;
    cluster.destroy().await.unwrap();
}
