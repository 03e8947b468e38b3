//! Health and failure of replicas, on real servers: a replica stopped
//! under load leaves rotation without a failed read and comes back when
//! started; one whose replay is paused leaves rotation by the lag bound
//! and comes back when resumed; a promoted one gets no more reads; with
//! every replica down, reads are the primary's. One cluster of a primary
//! and two replicas for all of it, in that order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voidrunner_db::{
    Consistency, Database, NewTask, NewUser, NodeRole, NodeState, PasswordHash, PgTaskRepository,
    PgUserRepository, Task, TaskRepository, UserId, UserRepository,
};

use crate::harness::{Cluster, all_up, eventually, pause_replay, raw, reads_of, resume_replay};

fn state_of(db: &Database, index: usize) -> NodeState {
    db.nodes()[index].state
}

/// `n` readers getting `task` through an AnyReplica handle in a loop
/// until `stop`: the failures they met, the first one's error, and the
/// reads they made.
struct Readers {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    fn start(db: &Database, task: &Task, n: usize) -> Readers {
        let readers = Readers {
            stop: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicU64::new(0)),
            done: Arc::new(AtomicU64::new(0)),
            first_error: Arc::new(Mutex::new(None)),
            handles: Vec::new(),
        };
        let handles = (0..n)
            .map(|_| {
                let tasks = PgTaskRepository::new(db.reads(Consistency::AnyReplica));
                let (stop, failed, done) = (
                    readers.stop.clone(),
                    readers.failed.clone(),
                    readers.done.clone(),
                );
                let first_error = readers.first_error.clone();
                let task = task.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match tasks.get(task.id).await {
                            Ok(found) => assert_eq!(found, task),
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap()
                                    .get_or_insert_with(|| format!("{e:?}"));
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Readers { handles, ..readers }
    }

    /// Stops the readers: (reads made, failures).
    async fn stop(self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await.unwrap();
        }
        (
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.first_error.lock().unwrap().clone(),
        )
    }
}

/// Inserts tasks through `db` until `stop`, one every 10 ms, so that the
/// primary's WAL keeps moving (paced: the replica still replaying must stay
/// within the lag bound on a busy machine).
fn hammer(db: &Database, owner: UserId, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let tasks = PgTaskRepository::new(db.clone());
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            tasks
                .create(NewTask::new(owner, format!("load-{i}"), "print(0)"))
                .await
                .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// `count` AnyReplica reads of `task` on `db`, each asserted to find it
/// on a server in recovery.
async fn reads_on_a_replica(db: &Database, task: &Task, count: usize) {
    let any = db.reads(Consistency::AnyReplica);
    let tasks = PgTaskRepository::new(any.clone());
    for _ in 0..count {
        assert_eq!(&tasks.get(task.id).await.unwrap(), task);
        assert!(any.read_in_recovery().await.unwrap(), "{:?}", db.nodes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_leave_rotation_and_come_back() {
    let cluster = Cluster::start(2).await;
    let db = Database::connect(cluster.config()).await.unwrap();
    all_up(&db).await;
    let owner = PgUserRepository::new(db.clone())
        .create(NewUser::new("owner@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let task = PgTaskRepository::new(db.clone())
        .create(NewTask::new(owner.id, "watched", "print(1)"))
        .await
        .unwrap();
    // Both replicas have it once a token read is answered without the
    // primary on each.
    let token = db.current_token().await.unwrap();
    eventually(
        "both replicas replay the task",
        || async {
            db.nodes()[1..]
                .iter()
                .all(|n| n.replayed.is_some_and(|r| r >= token))
        },
        || format!("{:?}", db.nodes()),
    )
    .await;
    reads_on_a_replica(&db, &task, 4).await;

    // (d) The health report names every node, its role, state and pool.
    let report = db.health_check().await.unwrap();
    let roles: Vec<NodeRole> = report.nodes.iter().map(|n| n.role).collect();
    assert_eq!(
        roles,
        [NodeRole::Primary, NodeRole::Replica, NodeRole::Replica]
    );
    assert!(report.nodes.iter().all(|n| n.state == NodeState::Up));
    assert_eq!(report.pool.max, 8);
    for (node, port) in report.nodes[1..].iter().zip(&cluster.replicas) {
        assert!(
            node.target.contains(&port.port().to_string()),
            "{}",
            node.target
        );
        assert!(node.lag.is_some() && node.replayed.is_some(), "{node:?}");
        assert!(
            node.since_probe.is_some() && node.error.is_none(),
            "{node:?}"
        );
        assert_eq!(node.pool.max, 8, "{node:?}");
        assert!(
            node.pool.size >= 1,
            "its reads opened a connection: {node:?}"
        );
    }
    assert!(report.nodes[0].lag.is_none() && report.nodes[0].replayed.is_none());
    assert_eq!(report.nodes[0].pool.max, db.pool_status().max);
    assert!(
        report.nodes[0]
            .target
            .contains(&cluster.primary.port().to_string())
    );

    // (a) Replica 1 stopped under a read load: not one read fails.
    let readers = Readers::start(&db, &task, 4);
    eventually(
        "the readers read",
        || async { readers.done.load(Ordering::Relaxed) > 50 },
        String::new,
    )
    .await;
    cluster.replicas[0].stop_server().await.unwrap();
    eventually(
        "replica 1 is down",
        || async { state_of(&db, 1) == NodeState::Down },
        || format!("{:?}", db.nodes()),
    )
    .await;
    assert!(db.nodes()[1].error.is_some(), "{:?}", db.nodes()[1]);
    // Reads go on, on replica 2.
    let (on_2, on_1) = (reads_of(&db, 2), reads_of(&db, 1));
    eventually(
        "replica 2 answers the readers",
        || async { reads_of(&db, 2) > on_2 + 100 },
        || format!("{:?}", db.nodes()),
    )
    .await;
    assert_eq!(reads_of(&db, 1), on_1, "reads on a stopped replica");
    reads_on_a_replica(&db, &task, 4).await;
    // Started again: back in rotation, and answering reads.
    cluster.replicas[0].start_server().await.unwrap();
    eventually(
        "replica 1 is back up",
        || async { state_of(&db, 1) == NodeState::Up },
        || format!("{:?}", db.nodes()),
    )
    .await;
    let on_1 = reads_of(&db, 1);
    eventually(
        "replica 1 answers reads again",
        || async { reads_of(&db, 1) > on_1 + 100 },
        || format!("{:?}", db.nodes()),
    )
    .await;
    let (reads, failed, first) = readers.stop().await;
    println!(
        "stop and start of a replica: {reads} reads, {failed} failed; {:#?}",
        db.nodes()
    );
    assert_eq!(failed, 0, "reads failed while a replica stopped: {first:?}");

    // (e) Every replica stopped: reads of every kind are the primary's.
    for replica in &cluster.replicas {
        replica.stop_server().await.unwrap();
    }
    eventually(
        "both replicas are down",
        || async { state_of(&db, 1) == NodeState::Down && state_of(&db, 2) == NodeState::Down },
        || format!("{:?}", db.nodes()),
    )
    .await;
    let primary_before = reads_of(&db, 0);
    let any = db.reads(Consistency::AnyReplica);
    assert!(!any.read_in_recovery().await.unwrap());
    assert_eq!(PgTaskRepository::new(any).get(task.id).await.unwrap(), task);
    let token = db.current_token().await.unwrap();
    let at_least = db.reads(Consistency::AtLeast(token));
    assert!(!at_least.read_in_recovery().await.unwrap());
    assert_eq!(
        PgTaskRepository::new(at_least).get(task.id).await.unwrap(),
        task
    );
    let request = db.read_your_writes(None);
    let tasks = PgTaskRepository::new(request.clone());
    let written = tasks
        .create(NewTask::new(owner.id, "while-down", "print(2)"))
        .await
        .unwrap();
    assert_eq!(tasks.get(written.id).await.unwrap(), written);
    assert_eq!(reads_of(&db, 0), primary_before + 5, "{:?}", db.nodes());
    for replica in &cluster.replicas {
        replica.start_server().await.unwrap();
    }
    all_up(&db).await;

    // (b) Replay paused on replica 2 while the primary keeps writing: the
    // lag bound of a handle whose bound is 300 ms takes it out of rotation.
    let mut config = cluster.config();
    config.replica_max_lag = Duration::from_millis(300);
    let bounded = Database::connect(config).await.unwrap();
    all_up(&bounded).await;
    let session = raw(&cluster.replicas[1]).await;
    pause_replay(&session).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = hammer(&db, owner.id, stop.clone());
    eventually(
        "replica 2 is lagging",
        || async { state_of(&bounded, 2) == NodeState::Lagging },
        || format!("{:?}", bounded.nodes()),
    )
    .await;
    let lag = bounded.nodes()[2].lag.expect("a lagging replica's lag");
    assert!(lag > Duration::from_millis(300), "{lag:?}");
    let on_2 = reads_of(&bounded, 2);
    reads_on_a_replica(&bounded, &task, 50).await;
    assert_eq!(reads_of(&bounded, 2), on_2, "{:?}", bounded.nodes());
    assert!(reads_of(&bounded, 1) >= 100, "{:?}", bounded.nodes());
    resume_replay(&session).await;
    eventually(
        "replica 2 is back in rotation",
        || async { state_of(&bounded, 2) == NodeState::Up },
        || format!("{:?}", bounded.nodes()),
    )
    .await;
    let on_2 = reads_of(&bounded, 2);
    reads_on_a_replica(&bounded, &task, 10).await;
    assert!(reads_of(&bounded, 2) > on_2, "{:?}", bounded.nodes());
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(bounded.close(Duration::from_secs(10)).await);

    // (c) Replica 2 promoted: no more reads of any kind.
    drop(session);
    cluster.replicas[1].promote().await.unwrap();
    eventually(
        "replica 2 is promoted",
        || async { state_of(&db, 2) == NodeState::Promoted },
        || format!("{:?}", db.nodes()),
    )
    .await;
    let on_2 = reads_of(&db, 2);
    reads_on_a_replica(&db, &task, 20).await;
    let token = db.current_token().await.unwrap();
    let at_least = PgTaskRepository::new(db.reads(Consistency::AtLeast(token)));
    for _ in 0..20 {
        assert_eq!(at_least.get(task.id).await.unwrap(), task);
    }
    assert_eq!(reads_of(&db, 2), on_2, "reads on a promoted replica");
    let report = db.health_check().await.unwrap();
    let states: Vec<NodeState> = report.nodes.iter().map(|n| n.state).collect();
    assert_eq!(states, [NodeState::Up, NodeState::Up, NodeState::Promoted]);
}
