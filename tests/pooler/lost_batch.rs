//! Review (#11): the batched queue through a PgBouncer that dies mid-batch.

use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::testing::{PgBouncer, TestDatabase};
use voidrunner_db::{
    Completer, ExecutionQueue, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue,
    PgTaskRepository, PgUserRepository, TaskRepository, UserRepository,
};

/// `complete_many` (and so every `Completer` caller) documents: "The call
/// as a whole fails only with `Validation` ... or with an error of the
/// statement itself (`Timeout`, `Unavailable`, ...), when nothing was
/// changed"; `heartbeat_batch` says the same. A connection lost while the
/// statement is in flight (here the pooler is killed while the statement
/// waits for a lock on the server) fails the batch with `Unavailable`,
/// yet the server goes on, commits it, and the execution is completed: a
/// caller that trusts the docs and retries gets `LeaseLost`, or treats the
/// work as not done. The outcome of such a call is unknown, and the docs
/// should say so (as `Error::is_retryable` already does for statements
/// in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_unavailable_changed_nothing() {
    let server = crate::server().await;
    let bouncer = PgBouncer::start(&server).await.unwrap();
    let db = TestDatabase::with_config(|c| {
        *c = bouncer.route(&c.direct_config().unwrap_or_else(|| c.clone()));
        c.min_connections = 1;
        c.max_connections = 2;
    })
    .await
    .unwrap();
    let user = PgUserRepository::new(db.db().clone())
        .create(NewUser::new("a@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let task = PgTaskRepository::new(db.db().clone())
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .unwrap();
    let queue = PgExecutionQueue::new(db.db().clone());
    queue.enqueue(task.id, None).await.unwrap();
    let job = queue
        .claim("w", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);

    let mut direct = server.pg_config().clone();
    direct.dbname(db.name());
    let (locker, connection) = direct.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
            task.id
        ))
        .await
        .unwrap();

    let completer = Completer::new(Arc::new(queue.clone())).unwrap();
    let call = tokio::spawn(completer.complete(job.execution.id, "w", Outcome::completed(0)));
    // Until the batch's statement waits for the lock on the server.
    let mut waiting = false;
    for _ in 0..200 {
        let n: i64 = locker
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "the batch never reached the server");
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &bouncer.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let result = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the caller hung")
        .unwrap();
    locker.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status: String = locker
        .query_one(
            "SELECT status FROM task_executions WHERE id = $1",
            &[&job.execution.id],
        )
        .await
        .unwrap()
        .get(0);
    let err = result.expect_err("the pooler died under the batch");
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(
        status, "running",
        "the batch failed with {err} (documented: nothing was changed), \
         yet the completion was applied"
    );
}
