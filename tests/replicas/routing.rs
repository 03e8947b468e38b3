//! Routing, verified on the server that answered: a replica whose replay
//! is paused does not have a row just written on the primary, so a read
//! that finds it was answered by the primary, and one that misses it by
//! the replica.

use std::time::{Duration, Instant};

use voidrunner_db::{
    Consistency, Database, NewTask, NewUser, PasswordHash, PgTaskRepository, PgUserRepository,
    TaskRepository, UserRepository,
};

use crate::harness::{Cluster, all_up, eventually, pause_replay, raw, reads_of, resume_replay};

const WAIT: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_where_their_handle_says_and_writes_to_the_primary() {
    let cluster = Cluster::start(1).await;
    let mut config = cluster.config();
    // Paused replay must not take the replica out of rotation here: the
    // point is that AnyReplica reads keep going to it and miss the rows.
    config.replica_max_lag = Duration::from_secs(3600);
    config.replica_wait = WAIT;
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let any = db.reads(Consistency::AnyReplica);

    // Where reads go, asked of the server that answers them.
    assert!(!db.read_in_recovery().await.unwrap(), "default: primary");
    for _ in 0..10 {
        assert!(any.read_in_recovery().await.unwrap(), "AnyReplica: replica");
    }

    // A write through an AnyReplica handle goes to the primary (a replica
    // would refuse it: read-only transaction).
    let owner = PgUserRepository::new(any.clone())
        .create(NewUser::new("owner@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let owner_id = owner.id;
    // So does a transaction, write and all, and every statement in it.
    let in_tx = any
        .transaction(|tx| async move {
            let task = tx
                .tasks()
                .create(NewTask::new(owner_id, "in-tx", "print(1)"))
                .await?;
            let row = tx
                .client()?
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?;
            Ok((task, row.get::<_, bool>(0)))
        })
        .await
        .unwrap();
    assert!(
        !in_tx.1,
        "a transaction of an AnyReplica handle ran on a replica"
    );
    let tx_task = in_tx.0;
    // Both reach the replica soon: AnyReplica reads then find them.
    let any_users = PgUserRepository::new(any.clone());
    let any_tasks = PgTaskRepository::new(any.clone());
    eventually(
        "the replica replays the owner and the task",
        || async {
            any_users.get(owner.id).await.is_ok() && any_tasks.get(tx_task.id).await.is_ok()
        },
        || format!("{:?}", db.nodes()),
    )
    .await;

    // Replay paused: from now on the replica misses every new write.
    let replica = raw(&cluster.replicas[0]).await;
    pause_replay(&replica).await;
    let fresh = PgUserRepository::new(db.clone())
        .create(NewUser::new("fresh@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let err = any_users.get(fresh.id).await.unwrap_err();
    assert!(
        err.is_not_found(),
        "AnyReplica read of a row the replica misses: {err:?}"
    );
    assert!(
        any_users
            .get_by_email("fresh@example.com")
            .await
            .unwrap_err()
            .is_not_found(),
        "AnyReplica get_by_email"
    );
    // The replica is still in rotation (lag bound of an hour), and it is
    // the replica that answered: it is in recovery.
    assert!(any.read_in_recovery().await.unwrap());
    // The default handle reads the primary.
    assert_eq!(
        PgUserRepository::new(db.clone())
            .get(fresh.id)
            .await
            .unwrap(),
        fresh
    );

    // A token taken after the write: the read waits for the replica up to
    // replica_wait, then goes to the primary, and sees the row.
    let token = db.current_token().await.unwrap();
    let at_least = db.reads(Consistency::AtLeast(token));
    assert_eq!(at_least.consistency(), Consistency::AtLeast(token));
    let primary_before = reads_of(&db, 0);
    let replica_before = reads_of(&db, 1);
    let started = Instant::now();
    let found = PgUserRepository::new(at_least.clone())
        .get(fresh.id)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(found, fresh);
    assert!(
        took >= WAIT,
        "fell back after {took:?}, before replica_wait"
    );
    assert_eq!(reads_of(&db, 0), primary_before + 1, "{:?}", db.nodes());
    assert_eq!(reads_of(&db, 1), replica_before, "{:?}", db.nodes());
    assert!(!at_least.read_in_recovery().await.unwrap());

    // Writes through an AnyReplica handle still work with replay paused:
    // they go to the primary, which the default handle reads back.
    let written = any_tasks
        .create(NewTask::new(owner_id, "via-any", "print(2)"))
        .await
        .unwrap();
    assert!(any_tasks.get(written.id).await.unwrap_err().is_not_found());
    assert_eq!(
        PgTaskRepository::new(db.clone())
            .get(written.id)
            .await
            .unwrap(),
        written
    );
    // A transaction of an AnyReplica handle writes and reads its own
    // write, which only the primary has.
    let seen = any
        .transaction(|tx| async move {
            let task = tx
                .tasks()
                .create(NewTask::new(owner_id, "tx-paused", "print(3)"))
                .await?;
            let again = tx.tasks().get(task.id).await?;
            Ok((task, again))
        })
        .await
        .unwrap();
    assert_eq!(seen.0, seen.1);
    assert!(any_tasks.get(seen.0.id).await.unwrap_err().is_not_found());

    // Scoped views route their reads too.
    let scoped_task = db
        .scoped(owner.id)
        .tasks
        .create(NewTask::new(owner_id, "scoped", "print(4)"))
        .await
        .unwrap();
    let any_scoped = any.scoped(owner.id);
    let err = any_scoped.tasks.get(scoped_task.id).await.unwrap_err();
    assert!(err.is_not_found(), "scoped AnyReplica get: {err:?}");
    // The replica's count misses the tasks written since the pause; the
    // primary's has them.
    let on_replica = any_scoped.tasks.count().await.unwrap();
    let on_primary = db.scoped(owner.id).tasks.count().await.unwrap();
    assert_eq!(on_replica + 3, on_primary, "scoped counts");
    assert_eq!(
        db.scoped(owner.id).tasks.get(scoped_task.id).await.unwrap(),
        scoped_task
    );
    // A scoped view of an AtLeast handle sees it (from the primary).
    let token = db.current_token().await.unwrap();
    assert_eq!(
        db.reads(Consistency::AtLeast(token))
            .scoped(owner.id)
            .tasks
            .get(scoped_task.id)
            .await
            .unwrap(),
        scoped_task
    );

    // Resumed: the replica catches up and AnyReplica reads find it all.
    resume_replay(&replica).await;
    eventually(
        "the replica replays what it missed",
        || async {
            any_scoped.tasks.get(scoped_task.id).await.is_ok()
                && any_users.get(fresh.id).await.is_ok()
        },
        || format!("{:?}", db.nodes()),
    )
    .await;
    assert_eq!(any_scoped.tasks.count().await.unwrap(), on_primary);
    // A token read now is answered by the replica, without waiting.
    let token = db.current_token().await.unwrap();
    let at_least = db.reads(Consistency::AtLeast(token));
    let replica_before = reads_of(&db, 1);
    eventually(
        "a token read answered by the replica",
        || async { at_least.read_in_recovery().await.unwrap() },
        || format!("{:?}", db.nodes()),
    )
    .await;
    assert!(reads_of(&db, 1) > replica_before);
}
