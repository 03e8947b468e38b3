use std::time::Duration;

use voidrunner_db::testing::{PrivateCluster, TestDatabase};
use voidrunner_db::{Database, DbConfig};

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
