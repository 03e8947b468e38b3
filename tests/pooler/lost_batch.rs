//! The batched queue through a PgBouncer that dies mid-batch (#11).

use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::testing::{PgBouncer, TestDatabase};
use voidrunner_db::{
    Completer, ExecutionQueue, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue,
    PgTaskRepository, PgUserRepository, TaskRepository, UserRepository,
};

/// A batch whose connection is lost while its statement is in flight
/// (here the pooler is killed while the statement waits for a lock on the
/// server) fails every caller with `Unavailable`, and, as `complete_many`
/// documents, its outcome is then unknown: the server may still commit it.
/// What holds is that the statement is atomic and that asking again tells
/// which way it went: the execution is either still running (and a retry
/// completes it) or completed with exactly that outcome (and a retry is
/// `LeaseLost` because it finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lost_in_flight_is_atomic_and_asking_again_tells_its_outcome() {
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
    let err = result.expect_err("the pooler died under the batch");
    assert!(err.is_unavailable(), "{err:?}");
    // The server finishes (or abandons) the statement on its own time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let row = locker
        .query_one(
            "SELECT status::text, return_code FROM task_executions WHERE id = $1",
            &[&job.execution.id],
        )
        .await
        .unwrap();
    let (status, code): (String, Option<i32>) = (row.get(0), row.get(1));
    // Asked again through the server itself (the pooler is dead).
    let direct_db = voidrunner_db::Database::connect(db.config().await.unwrap())
        .await
        .unwrap();
    let again = PgExecutionQueue::new(direct_db)
        .complete(job.execution.id, "w", Outcome::completed(0))
        .await;
    match status.as_str() {
        "running" => {
            assert_eq!(code, None, "a half-applied completion");
            let done = again.expect("not applied: completing again works");
            assert_eq!(done.return_code, Some(0));
        }
        "completed" => {
            assert_eq!(code, Some(0), "applied with another outcome");
            let err = again.expect_err("applied: completing again is refused");
            assert_eq!(
                err.lease_lost_reason(),
                Some(voidrunner_db::LeaseLostReason::Finished),
                "{err:?}"
            );
        }
        other => panic!("the execution ended up {other}"),
    }
}
