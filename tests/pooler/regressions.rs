//! Found by the review of issue 9: a cancel request behind a pooler under
//! `sslmode=require`, and a pooler that stops answering.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use voidrunner_db::testing::{PgBouncer, TestDatabase};
use voidrunner_db::{
    Database, DbConfig, Error, NewUser, PasswordHash, PgUserRepository, PoolerMode, TaskRepository,
    TimeoutKind, UserRepository,
};

const CANCEL_REQUEST: u32 = 80_877_102;

/// Host and port of the server under `db` (its direct URL, if it has one),
/// for a proxy to stand in front of.
fn server_address(db: &TestDatabase) -> (String, u16) {
    let config = db.db().config();
    let server = config.direct_config().unwrap_or_else(|| config.clone());
    let host = match server.pg_config().get_hosts().first() {
        Some(voidrunner_db::tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = server
        .pg_config()
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432);
    (host, port)
}

/// A TCP proxy in front of `server` that records the code of the first
/// message of every connection (SSLRequest, CancelRequest, a startup).
async fn recording_proxy(server: (String, u16)) -> (u16, Arc<Mutex<Vec<u32>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (log, server) = (log.clone(), server.clone());
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                if client.read_exact(&mut head).await.is_err() {
                    return;
                }
                log.lock()
                    .unwrap()
                    .push(u32::from_be_bytes([head[4], head[5], head[6], head[7]]));
                let Ok(mut upstream) = TcpStream::connect(server).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (port, seen)
}

/// Under `sslmode=require` behind a pooler, the cancel request of a
/// dropped call reaches the server over TLS and cancels its statement (it
/// went out in plaintext, which a TLS-only server or pooler ignores). A
/// proxy stands in for the pooler, in front of the harness's server, which
/// accepts TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_is_cancelled_over_tls_behind_a_pooler() {
    let db = TestDatabase::new().await.unwrap();
    let (proxy, seen) = recording_proxy(server_address(&db)).await;
    let mut config = DbConfig::from_url(&format!(
        "postgres://postgres@127.0.0.1:{proxy}/{}?sslmode=require",
        db.name()
    ))
    .unwrap();
    config.pooler = PoolerMode::Transaction;
    config.min_connections = 1;
    config.max_connections = 2;
    config.application_name = "pooler-tls-cancel".into();
    let pooled = Database::connect(config).await.unwrap();
    let dropped = timeout(
        Duration::from_millis(500),
        pooled.transaction(|tx| async move {
            tx.client()?
                .batch_execute("SELECT pg_sleep(30)")
                .await
                .map_err(Error::from)
        }),
    )
    .await;
    assert!(dropped.is_err(), "the call was not dropped");
    let observer = db.raw_client().await.unwrap();
    let mut running = i64::MAX;
    for _ in 0..100 {
        running = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'pooler-tls-cancel' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let codes = seen.lock().unwrap().clone();
    assert_eq!(running, 0, "the abandoned statement still runs ({codes:?})");
    assert!(
        !codes.contains(&CANCEL_REQUEST),
        "a cancel request went out in plaintext: {codes:?}"
    );
}

/// A pooler that stops answering (a frozen process: the kernel still
/// acknowledges, so only a deadline of the crate's notices) fails a call
/// with `TimeoutKind::NoAnswer` after `statement_timeout` plus the margin,
/// instead of hanging; once it answers again, the pool works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_pooler_fails_calls_instead_of_hanging() {
    let server = crate::server().await;
    let bouncer = PgBouncer::start(&server).await.unwrap();
    let db = TestDatabase::with_config(|c| {
        *c = bouncer.route(&c.direct_config().unwrap_or_else(|| c.clone()));
        c.min_connections = 1;
        c.max_connections = 2;
        c.statement_timeout = Some(Duration::from_secs(1));
        c.wait_timeout = Duration::from_secs(2);
        c.connect_timeout = Duration::from_secs(2);
    })
    .await
    .unwrap();
    let users = PgUserRepository::new(db.db().clone());
    users
        .create(NewUser::new("a@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let pid = bouncer.pid().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let frozen = timeout(
        Duration::from_secs(30),
        users.create(NewUser::new("b@example.com", PasswordHash::new("h"))),
    )
    .await;
    let in_tx = timeout(
        Duration::from_secs(30),
        db.db()
            .transaction(|tx| async move { tx.users().count().await }),
    )
    .await;
    signal("-CONT");
    let err = frozen.expect("the call hung").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::NoAnswer,
                ..
            }
        ),
        "{err:?}"
    );
    let err = in_tx.expect("the transaction hung").unwrap_err();
    assert!(err.is_timeout() || err.is_unavailable(), "{err:?}");
    // The frozen connections were closed, not pooled: the pool serves again.
    let mut recovered = false;
    for _ in 0..20 {
        if users.count().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the pool did not recover after the pooler thawed"
    );
}

/// A proxy to `server` that forwards both ways until `frozen` is set, then
/// holds what it reads: a network path (or a server) gone silent with the
/// connection still open. Returns its port.
async fn freezable_proxy(server: (String, u16), frozen: Arc<std::sync::atomic::AtomicBool>) -> u16 {
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        frozen: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                return;
            }
            // Frozen: what was read is held, never delivered.
            while frozen.load(std::sync::atomic::Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(server.clone()).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            tokio::spawn(pipe(client_read, upstream_write, frozen.clone()));
            tokio::spawn(pipe(upstream_read, client_write, frozen.clone()));
        }
    });
    port
}

/// The bulk load runs through the executor like any statement: on a
/// connection gone silent it fails with `TimeoutKind::NoAnswer` after
/// `statement_timeout` plus the margin instead of hanging (its COPY ran
/// beside the executor, with no deadline), and the pool works again once
/// the path answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_on_a_silent_connection_fails_instead_of_hanging() {
    let db = TestDatabase::new().await.unwrap();
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = freezable_proxy(server_address(&db), frozen.clone()).await;
    let mut config = DbConfig::from_url(&format!(
        "postgres://postgres@127.0.0.1:{proxy}/{}?sslmode=disable",
        db.name()
    ))
    .unwrap();
    config.min_connections = 1;
    config.max_connections = 1;
    config.statement_timeout = Some(Duration::from_secs(1));
    let pooled = Database::connect(config).await.unwrap();
    let users = PgUserRepository::new(pooled.clone());
    let tasks = voidrunner_db::PgTaskRepository::new(pooled.clone());
    let owner = users
        .create(NewUser::new("silent@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let batch: Vec<voidrunner_db::NewTask> = (0..100)
        .map(|i| voidrunner_db::NewTask::new(owner.id, format!("t{i}"), "print(1)"))
        .collect();
    frozen.store(true, std::sync::atomic::Ordering::Release);
    let silent = timeout(Duration::from_secs(60), tasks.import(batch.clone())).await;
    frozen.store(false, std::sync::atomic::Ordering::Release);
    let err = silent.expect("the import hung").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::NoAnswer,
                ..
            }
        ),
        "{err:?}"
    );
    // The silent connection was closed, not pooled: the next import works.
    assert_eq!(tasks.import(batch).await.unwrap(), 100);
}
