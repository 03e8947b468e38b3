//! A private primary with streaming replicas.

use std::time::Duration;

use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{Database, DbConfig, NodeState};

pub(crate) struct Cluster {
    pub(crate) primary: PrivateCluster,
    pub(crate) replicas: Vec<PrivateCluster>,
}

impl Cluster {
    /// A migrated primary and `n` replicas.
    pub(crate) async fn start(n: usize) -> Cluster {
        let primary = PrivateCluster::start_with(|data| {
            use std::io::Write;
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))?;
            // Asynchronous commits reach the replicas within this.
            writeln!(conf, "wal_writer_delay = 10ms")
        })
        .await
        .unwrap();
        Database::connect(primary.config())
            .await
            .unwrap()
            .migrate()
            .await
            .unwrap();
        let mut replicas = Vec::new();
        for _ in 0..n {
            replicas.push(primary.replica().await.unwrap());
        }
        Cluster { primary, replicas }
    }

    pub(crate) fn config(&self) -> DbConfig {
        let mut config = self.primary.config();
        config.max_connections = 8;
        config.min_connections = 1;
        config.connect_timeout = Duration::from_secs(2);
        config.replica_probe_interval = Duration::from_millis(100);
        for replica in &self.replicas {
            config.add_replica(&replica.url()).unwrap();
        }
        config
    }
}

/// Waits until every replica of `db` is in rotation.
pub(crate) async fn all_up(db: &Database) {
    for _ in 0..600 {
        if db.nodes().iter().all(|n| n.state == NodeState::Up) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replicas never came up: {:?}", db.nodes());
}

/// A session of its own on `server`, straight to it (not through a pool):
/// for pausing and resuming replay on a replica.
pub(crate) async fn raw(server: &PrivateCluster) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Pauses WAL replay on the replica `session` is connected to: from now
/// on it applies no record it has not applied yet.
pub(crate) async fn pause_replay(session: &tokio_postgres::Client) {
    session
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
}

/// Resumes WAL replay on the replica `session` is connected to.
pub(crate) async fn resume_replay(session: &tokio_postgres::Client) {
    session
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
}

/// Polls `condition` every 20 ms until it holds, for up to 60 s; panics
/// naming `what` (and `state()`, what the test knows then) if it never
/// does.
pub(crate) async fn eventually<F, Fut>(what: &str, mut condition: F, state: impl Fn() -> String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        if std::time::Instant::now() >= deadline {
            panic!("{what}: not within 60 s; {}", state());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes; whether it
/// held. For the tests that report a defect rather than panic.
pub(crate) async fn until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The routed reads node `index` of `db` answered (0: the primary).
pub(crate) fn reads_of(db: &Database, index: usize) -> u64 {
    db.nodes()[index].reads
}
