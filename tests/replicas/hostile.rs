//! Hostile inputs: malformed tokens from a client, a forged token far in
//! the future, a replica URL where nothing listens.

use std::time::{Duration, Instant};

use voidrunner_db::{
    Consistency, Database, NewTask, NewUser, NodeState, PasswordHash, PgTaskRepository,
    PgUserRepository, ReadToken, TaskRepository, UserRepository,
};

use crate::harness::{Cluster, all_up, eventually, reads_of};

#[test]
fn malformed_tokens_are_validation_errors_of_the_field_token() {
    let huge = "9".repeat(1 << 20);
    for text in [
        "zz",
        "",
        "1/2/3",
        "G/0",
        "00000000/000000001",
        huge.as_str(),
    ] {
        let err = text.parse::<ReadToken>().unwrap_err();
        assert!(err.is_validation(), "{err:?}");
        assert_eq!(err.field(), Some("token"), "{err:?}");
        assert!(err.to_string().len() < 300, "quotes the input whole");
    }
    let err = serde_json::from_str::<ReadToken>(&format!("\"{huge}\"")).unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
}

/// A port on loopback where nothing listens (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_and_dead_replicas_only_cost_time() {
    let cluster = Cluster::start(1).await;
    let wait = Duration::from_millis(50);
    let mut config = cluster.config();
    config.replica_wait = wait;
    let db = Database::connect(config.clone()).await.unwrap();
    all_up(&db).await;
    let owner = PgUserRepository::new(db.clone())
        .create(NewUser::new("owner@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let task = PgTaskRepository::new(db.clone())
        .create(NewTask::new(owner.id, "t", "print(1)"))
        .await
        .unwrap();

    // The highest token, which no server reaches (a forged one, or the one
    // a handle hands out once a write's position was lost): the primary
    // answers at once, with the right data, not after replica_wait.
    let forged = ReadToken::from_lsn(u64::MAX);
    for handle in [
        db.reads(Consistency::AtLeast(forged)),
        db.read_your_writes(Some(forged)),
    ] {
        let before = reads_of(&db, 0);
        let started = Instant::now();
        let found = PgTaskRepository::new(handle.clone())
            .get(task.id)
            .await
            .unwrap();
        assert_eq!(found, task);
        assert!(started.elapsed() < wait * 20, "{:?}", started.elapsed());
        // Not a routed read that fell back: it never left the primary.
        assert_eq!(reads_of(&db, 0), before, "{:?}", db.nodes());
        assert!(!handle.read_in_recovery().await.unwrap());
        assert_eq!(
            PgUserRepository::new(handle).get(owner.id).await.unwrap(),
            owner
        );
    }
    // The replica stays in rotation: a forged token says nothing of it.
    assert_eq!(db.nodes()[1].state, NodeState::Up);

    // A replica URL where nothing listens: connect succeeds, the node is
    // down, reads go to the other replica.
    let port = dead_port();
    let mut with_dead = config.clone();
    with_dead
        .add_replica(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .unwrap();
    let db2 = Database::connect(with_dead).await.unwrap();
    eventually(
        "the dead replica is down, the live one up",
        || async {
            db2.nodes()[1].state == NodeState::Up && db2.nodes()[2].state == NodeState::Down
        },
        || format!("{:?}", db2.nodes()),
    )
    .await;
    let dead = &db2.nodes()[2];
    assert!(dead.target.contains(&port.to_string()), "{dead:?}");
    assert!(dead.error.is_some(), "{dead:?}");
    let any = db2.reads(Consistency::AnyReplica);
    for _ in 0..20 {
        assert_eq!(
            PgTaskRepository::new(any.clone())
                .get(task.id)
                .await
                .unwrap(),
            task
        );
        assert!(any.read_in_recovery().await.unwrap());
    }
    assert_eq!(db2.nodes()[2].reads, 0);
    assert_eq!(db2.nodes()[1].reads, 40);

    // Only a dead replica: every read is the primary's, none fails.
    let mut only_dead = cluster.primary.config();
    only_dead.replica_probe_interval = Duration::from_millis(100);
    only_dead.connect_timeout = Duration::from_secs(2);
    only_dead
        .add_replica(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .unwrap();
    let db3 = Database::connect(only_dead).await.unwrap();
    assert_eq!(
        db3.nodes()[1].state,
        NodeState::Down,
        "probed during connect"
    );
    let request = db3.read_your_writes(None);
    let any = db3.reads(Consistency::AnyReplica);
    assert!(!any.read_in_recovery().await.unwrap());
    assert_eq!(PgTaskRepository::new(any).get(task.id).await.unwrap(), task);
    let tasks = PgTaskRepository::new(request.clone());
    let written = tasks
        .create(NewTask::new(owner.id, "w", "print(2)"))
        .await
        .unwrap();
    assert_eq!(tasks.get(written.id).await.unwrap(), written);
    assert_eq!(db3.nodes()[0].reads, 3, "{:?}", db3.nodes());
}

/// A standby of another cluster, listed as a replica by mistake: a probe
/// finds its system identifier is not the primary's and keeps it out of
/// rotation, so reads never see that other cluster's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_of_another_cluster_is_kept_out_of_rotation() {
    let cluster = Cluster::start(0).await;
    let other = Cluster::start(1).await;
    let mut config = cluster.config();
    config.add_replica(&other.replicas[0].url()).unwrap();
    let db = Database::connect(config).await.unwrap();
    eventually(
        "the foreign standby is refused",
        || async {
            let node = &db.nodes()[1];
            node.state == NodeState::Down
                && node
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("not a copy of the primary"))
        },
        || format!("{:?}", db.nodes()),
    )
    .await;
    let owner = PgUserRepository::new(db.clone())
        .create(NewUser::new("foreign@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let any = db.reads(Consistency::AnyReplica);
    for _ in 0..10 {
        assert!(!any.read_in_recovery().await.unwrap());
        assert_eq!(
            PgUserRepository::new(any.clone())
                .get(owner.id)
                .await
                .unwrap(),
            owner
        );
    }
    assert_eq!(db.nodes()[1].reads, 0, "{:?}", db.nodes());
}
