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
