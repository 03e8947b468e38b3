//! Multi-host URLs and failover, on private clusters: a primary and its
//! `pg_basebackup -R` streaming replica, and a second primary.
//!
//! `cargo test --test foundation failover` runs them.

use std::time::Duration;

use tokio::time::timeout;
use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::tokio_postgres::NoTls;
use voidrunner_db::{
    Database, DbConfig, Error, NewUser, PasswordHash, PgUserRepository, User, UserRepository,
};

const NO_HANG: Duration = Duration::from_secs(60);

/// A pool over every host of `clusters`, in order, that only settles on a
/// server accepting writes.
fn multi_host(clusters: &[&PrivateCluster]) -> DbConfig {
    let hosts = vec!["127.0.0.1"; clusters.len()].join(",");
    let ports = clusters
        .iter()
        .map(|c| c.port().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut config = DbConfig::from_url(&format!(
        "host={hosts} port={ports} user=postgres dbname=postgres \
         target_session_attrs=read-write connect_timeout=2"
    ))
    .unwrap();
    config.max_connections = 4;
    config.min_connections = 2;
    config.connect_timeout = Duration::from_secs(2);
    config.wait_timeout = Duration::from_secs(5);
    config
}

async fn create(users: &PgUserRepository, email: &str) -> Result<User, Error> {
    timeout(
        NO_HANG,
        users.create(NewUser::new(email, PasswordHash::new("h"))),
    )
    .await
    .expect("no hang")
}

/// Whether `cluster` holds a user with `email`, asked outside the crate.
async fn holds(cluster: &PrivateCluster, email: &str) -> bool {
    let (client, connection) = cluster.config().pg_config().connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    let n: i64 = client
        .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
        .await
        .unwrap()
        .get(0);
    n == 1
}

async fn wait_for_replay(replica: &PrivateCluster, email: &str) {
    for _ in 0..200 {
        if holds(replica, email).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replica never replayed {email}");
}

/// A primary, its streaming replica and a multi-host pool over both:
/// messages name every host; a write on the standby is `Unavailable`
/// saying the server is read-only and closes the connection; when the
/// primary stops and the replica is promoted, the same pool serves writes
/// again, without a new `Database`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_follows_a_promoted_replica() {
    let primary = PrivateCluster::start().await.unwrap();
    Database::connect(primary.config())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let replica = primary.replica().await.unwrap();

    let config = multi_host(&[&primary, &replica]);
    let target = config.display_target();
    let expected = format!(
        "127.0.0.1:{},127.0.0.1:{}/postgres",
        primary.port(),
        replica.port()
    );
    assert_eq!(target, expected);
    assert!(format!("{config:?}").contains(&expected));
    let db = Database::connect(config).await.unwrap();
    let users = PgUserRepository::new(db.clone());
    create(&users, "before@example.com").await.unwrap();
    assert!(holds(&primary, "before@example.com").await);
    wait_for_replay(&replica, "before@example.com").await;

    // A pool that reached the standby (any session will do) cannot write:
    // Unavailable, saying why, and the connection is not pooled again.
    let mut on_standby = replica.config();
    on_standby.max_connections = 2;
    on_standby.min_connections = 1;
    let standby_db = Database::connect(on_standby).await.unwrap();
    let before = standby_db.pool_status().size;
    assert!(before >= 1);
    let err = create(
        &PgUserRepository::new(standby_db.clone()),
        "nope@example.com",
    )
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.is_read_only(), "{err:?}");
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("25006"));
    let message = err.to_string();
    assert!(message.contains("read-only"), "{message}");
    assert!(message.contains("cannot execute INSERT"), "{message}");
    // Closed, with the pool's idle ones, once the call ended.
    for _ in 0..100 {
        if standby_db.pool_status().size == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(standby_db.pool_status().size, 0);
    // In a transaction too; the caller's own READ ONLY transaction keeps
    // the error a statement error instead.
    let err = db_transaction_write(&standby_db, false).await;
    assert!(err.is_unavailable() && err.is_read_only(), "{err:?}");
    let err = db_transaction_write(&standby_db, true).await;
    assert!(!err.is_unavailable() && err.is_read_only(), "{err:?}");
    drop(standby_db);

    // Failover: the primary goes away, the replica takes over.
    primary.stop_server().await.unwrap();
    replica.promote().await.unwrap();
    let mut failures = Vec::new();
    let mut written = None;
    for i in 0..40 {
        let email = format!("after-{i}@example.com");
        match create(&users, &email).await {
            Ok(_) => {
                written = Some(email);
                break;
            }
            // Dead connections to the old primary, or the promoted server
            // still finishing recovery.
            Err(e) => failures.push(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let email = written.unwrap_or_else(|| panic!("no write after failover: {failures:?}"));
    assert!(
        failures.iter().all(Error::is_unavailable),
        "failures other than Unavailable: {failures:?}"
    );
    assert!(holds(&replica, &email).await);
    // Every connection of the pool now reaches the new primary.
    for i in 0..10 {
        create(&users, &format!("steady-{i}@example.com"))
            .await
            .unwrap();
    }
    assert_eq!(
        users.count().await.unwrap(),
        12,
        "before + after + 10 steady"
    );
}

/// `Unavailable` from a write in a transaction on the standby, or the
/// statement error of the caller's own `READ ONLY` transaction.
async fn db_transaction_write(db: &Database, read_only: bool) -> Error {
    let mut options = voidrunner_db::TransactionOptions::default();
    options.read_only = read_only;
    timeout(
        NO_HANG,
        db.transaction_with(options, |tx| async move {
            tx.users()
                .create(NewUser::new("tx@example.com", PasswordHash::new("h")))
                .await
        }),
    )
    .await
    .expect("no hang")
    .unwrap_err()
}

/// A primary that turns read-only under the pool (what a managed failover
/// does to the old writer while connections still point at it): the first
/// write that meets it is `Unavailable`, read-only; its connection and the
/// idle ones are closed, and the next checkout settles on the other host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_turned_read_only_hands_over_to_the_next_host() {
    let (first, second) =
        tokio::try_join!(PrivateCluster::start(), PrivateCluster::start()).unwrap();
    for cluster in [&first, &second] {
        Database::connect(cluster.config())
            .await
            .unwrap()
            .migrate()
            .await
            .unwrap();
    }
    let db = Database::connect(multi_host(&[&first, &second]))
        .await
        .unwrap();
    let users = PgUserRepository::new(db.clone());
    create(&users, "one@example.com").await.unwrap();
    assert!(holds(&first, "one@example.com").await);

    let (admin, connection) = first.config().pg_config().connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    // ALTER SYSTEM refuses to run in a (multi-statement) transaction.
    for sql in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    // The reload reaches every session before its next statement; give the
    // postmaster a moment to signal them.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let err = create(&users, "two@example.com").await.unwrap_err();
    assert!(err.is_unavailable() && err.is_read_only(), "{err:?}");
    // The next call finds the host that accepts writes.
    let two = create(&users, "two@example.com").await.unwrap();
    assert!(holds(&second, "two@example.com").await);
    assert!(!holds(&first, "two@example.com").await);
    assert_eq!(users.get(two.id).await.unwrap().email, "two@example.com");
}

/// A 25006 raised by a trigger of a second application ("archived rows are
/// read-only") is that statement's error: not a read-only server, and the
/// pool keeps its connections.
#[tokio::test]
async fn a_trigger_raising_25006_is_not_a_read_only_server() {
    let db = voidrunner_db::testing::TestDatabase::new().await.unwrap();
    let admin = db.client().await.unwrap();
    admin
        .batch_execute(
            "CREATE FUNCTION second_app_frozen() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'users are frozen' USING ERRCODE = '25006'; END $$; \
             CREATE TRIGGER second_app_frozen BEFORE INSERT ON users \
             FOR EACH ROW EXECUTE FUNCTION second_app_frozen()",
        )
        .await
        .unwrap();
    drop(admin);
    let users = PgUserRepository::new(db.db().clone());
    // Warm: the pool holds idle connections a read-only server would close.
    users.count().await.unwrap();
    let before = db.db().pool_status().size;
    assert!(before >= 1);
    let err = create(&users, "frozen@example.com").await.unwrap_err();
    assert!(!err.is_unavailable(), "{err:?}");
    assert!(err.is_read_only(), "{err:?}");
    assert!(err.to_string().contains("users are frozen"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(db.db().pool_status().size, before);
    let err = db
        .db()
        .transaction(|tx| async move {
            tx.users()
                .create(NewUser::new("frozen@example.com", PasswordHash::new("h")))
                .await
        })
        .await
        .unwrap_err();
    assert!(!err.is_unavailable() && err.is_read_only(), "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(db.db().pool_status().size, before);
}
