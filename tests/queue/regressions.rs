//! Regressions found by review: an error handled inside a transaction,
//! timestamps written by hand that wedged the queue, a task cancelled by
//! another application, and deadlocks between a caller's transaction and a
//! single repository call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use voidrunner_db::{
    Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, ExecutionUpdate, LeaseLostReason,
    NewTask, NewUser, Outcome, PasswordHash, RescuePolicy, TaskRepository, TaskStatus, Timestamp,
    UserRepository,
};

use crate::{Fixture, LEASE, fixture};

/// Generous bound so a hang (a deadlock the server does not detect, a lock
/// never released) fails the test instead of stalling CI.
const NO_HANG: Duration = Duration::from_secs(30);

/// A connection outside the pool, for locks held across calls.
async fn outside_connection(f: &Fixture) -> tokio_postgres::Client {
    let (client, connection) = f.session_pg_config().await.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Waits until `n` sessions of the test database wait on a lock.
async fn wait_for_lock_waiters(observer: &tokio_postgres::Client, n: i64) {
    let started = std::time::Instant::now();
    while started.elapsed() < NO_HANG {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} sessions never waited on a lock");
}

fn is_deadlock<T>(result: &voidrunner_db::Result<T>) -> bool {
    result
        .as_ref()
        .err()
        .and_then(Error::sqlstate)
        .is_some_and(|s| *s == SqlState::T_R_DEADLOCK_DETECTED)
}

/// `Ok`, or a refusal the API documents for a lost race; never a deadlock
/// (40P01) or any other error.
fn assert_contract<T: std::fmt::Debug>(label: &str, result: &voidrunner_db::Result<T>) {
    assert!(!is_deadlock(result), "{label}: deadlock: {result:?}");
    if let Err(err) = result {
        assert!(
            err.is_not_found() || err.is_invalid_transition() || err.is_lease_lost(),
            "{label}: not a contract error: {err:?}"
        );
    }
}

fn seconds_from_now(secs: i64) -> Timestamp {
    Timestamp::from_unix_micros(Timestamp::now().unix_micros() + secs * 1_000_000).unwrap()
}

/// A closure that handles a failed statement (a "create if missing" that
/// treats the duplicate as fine) and returns `Ok`: PostgreSQL aborted the
/// transaction at the failure and answers COMMIT with a silent ROLLBACK.
/// The caller must get `TransactionAborted`, not `Ok` for writes that were
/// rolled back.
#[tokio::test]
async fn a_handled_error_then_ok_is_transaction_aborted_and_writes_nothing() {
    let f = fixture().await;
    let owner_email = f.user.email.clone();
    let result =
        f.db.transaction(|tx| {
            let owner_email = owner_email.clone();
            async move {
                let user = tx
                    .users()
                    .create(NewUser::new("first@example.com", PasswordHash::new("h")))
                    .await?;
                match tx
                    .users()
                    .create(NewUser::new(owner_email, PasswordHash::new("h")))
                    .await
                {
                    Err(e) if e.is_conflict() => {}
                    other => {
                        other?;
                    }
                }
                Ok(user)
            }
        })
        .await;
    assert!(
        matches!(result, Err(Error::TransactionAborted)),
        "{result:?}"
    );
    let err = f.users.get_by_email("first@example.com").await.unwrap_err();
    assert!(err.is_not_found(), "the rolled-back user exists: {err:?}");
    assert_eq!(f.users.count().await.unwrap(), 1, "only the fixture's user");
    // The connection went back to the pool healthy.
    f.users
        .create(NewUser::new("after@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
}

/// `completed_at` written by hand on a pending execution used to make every
/// claim fail on the `completed_after_started` check; claim now clears it.
#[tokio::test]
async fn completed_at_on_a_pending_execution_does_not_wedge_claim() {
    let f = fixture().await;
    let touched = f.task("touched", 0).await;
    let unrelated = f.task("unrelated", 0).await;
    let e1 = f.queue.enqueue(touched.id, None).await.unwrap();
    let e2 = f.queue.enqueue(unrelated.id, None).await.unwrap();
    let updated = f
        .executions
        .update(
            e1.id,
            ExecutionUpdate {
                completed_at: Some(seconds_from_now(-3600)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.status, ExecutionStatus::Pending);
    assert!(updated.completed_at.is_some());

    let claimed = f.queue.claim("w", 10, LEASE).await.unwrap();
    let mut ids: Vec<_> = claimed.iter().map(|c| c.execution.id).collect();
    ids.sort();
    let mut expected = vec![e1.id, e2.id];
    expected.sort();
    assert_eq!(ids, expected, "both executions are claimed");
    for c in &claimed {
        assert_eq!(c.execution.status, ExecutionStatus::Running);
        assert_eq!(
            c.execution.completed_at, None,
            "claim clears completed_at of {}",
            c.execution.id
        );
    }
    // And the claimed one runs to the end normally.
    let done = f
        .queue
        .complete(e1.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert!(done.completed_at >= done.started_at);
}

/// `started_at` in the future written by hand on a running execution used to
/// make the rescuer (and complete) fail on the `completed_after_started`
/// check, so no expired execution was rescued any more.
#[tokio::test]
async fn future_started_at_on_a_running_execution_does_not_wedge_rescue() {
    let f = fixture().await;
    let touched = f.task("touched", 0).await;
    let unrelated = f.task("unrelated", 0).await;
    f.queue.enqueue(touched.id, None).await.unwrap();
    f.queue.enqueue(unrelated.id, None).await.unwrap();
    let claimed = f
        .queue
        .claim("w", 10, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let id_of = |task| {
        claimed
            .iter()
            .find(|c| c.execution.task_id == task)
            .unwrap()
            .execution
            .id
    };
    let (poison, other) = (id_of(touched.id), id_of(unrelated.id));
    let future = seconds_from_now(3600);
    f.executions
        .update(
            poison,
            ExecutionUpdate {
                started_at: Some(future),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Let the 1 ms leases expire.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let report = f
        .queue
        .rescue_expired(RescuePolicy::default())
        .await
        .unwrap();
    let mut timed_out = report.timed_out.clone();
    timed_out.sort();
    let mut expected = vec![poison, other];
    expected.sort();
    assert_eq!(timed_out, expected, "both are rescued: {report:?}");
    assert!(report.retried.is_empty(), "max_attempts 1: no retry");

    let rescued = f.executions.get(poison).await.unwrap();
    assert_eq!(rescued.status, ExecutionStatus::Timeout);
    assert!(rescued.completed_at.unwrap() >= future);
    assert_eq!(
        f.tasks.get(touched.id).await.unwrap().status,
        TaskStatus::Timeout
    );

    // The worker learns it lost the lease; nothing changes.
    let err = f
        .queue
        .complete(poison, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(
        err.lease_lost_reason(),
        Some(LeaseLostReason::Expired),
        "{err:?}"
    );
    assert_eq!(f.executions.get(poison).await.unwrap(), rescued);
}

/// Another application cancelled the task by raw SQL and left its execution
/// running; `update_status(Cancelled)` on the already-cancelled task used to
/// be a no-op, so the worker was never told. It now cancels the execution.
#[tokio::test]
async fn cancelling_a_task_cancelled_by_raw_sql_cancels_its_running_execution() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    f.queue.enqueue(task.id, None).await.unwrap();
    let claimed = f.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    let execution = claimed.execution.id;
    outside_connection(&f)
        .await
        .execute(
            "UPDATE tasks SET status = 'cancelled' WHERE id = $1",
            &[&task.id],
        )
        .await
        .unwrap();

    let cancelled = f
        .tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let e = f.executions.get(execution).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Cancelled);
    assert!(e.completed_at.is_some());
    assert_eq!(e.lease_expires_at, None);

    let err = f.queue.heartbeat(execution, "w", LEASE).await.unwrap_err();
    assert_eq!(
        err.lease_lost_reason(),
        Some(LeaseLostReason::Cancelled),
        "{err:?}"
    );
    let err = f
        .queue
        .complete(execution, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(
        err.lease_lost_reason(),
        Some(LeaseLostReason::Cancelled),
        "{err:?}"
    );
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
}

/// A worker's transaction records output (execution) and then ends the
/// execution, while the task is cancelled: the output update now locks the
/// task first, so the two never deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_output_then_finish_vs_task_cancel_never_deadlocks() {
    let f = fixture().await;
    let observer = outside_connection(&f).await;
    let task = f.task("t", 0).await;
    f.queue.enqueue(task.id, None).await.unwrap();
    let execution = f
        .queue
        .claim("w", 1, LEASE)
        .await
        .unwrap()
        .remove(0)
        .execution
        .id;
    let (ready, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let db = f.db.db().clone();
    let worker = {
        let (ready, go) = (ready.clone(), go.clone());
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (ready, go) = (ready.clone(), go.clone());
                async move {
                    tx.executions()
                        .update(
                            execution,
                            ExecutionUpdate {
                                stdout: Some("out".into()),
                                ..Default::default()
                            },
                        )
                        .await?;
                    ready.notify_one();
                    go.notified().await;
                    tx.executions()
                        .update_status(execution, ExecutionStatus::Completed)
                        .await
                }
            })
            .await
        })
    };
    tokio::time::timeout(NO_HANG, ready.notified())
        .await
        .expect("the worker's first statement ran");
    let tasks = f.tasks.clone();
    let cancel =
        tokio::spawn(async move { tasks.update_status(task.id, TaskStatus::Cancelled).await });
    wait_for_lock_waiters(&observer, 1).await;
    go.notify_one();
    let worker = tokio::time::timeout(NO_HANG, worker)
        .await
        .expect("no hang")
        .unwrap();
    let cancel = tokio::time::timeout(NO_HANG, cancel)
        .await
        .expect("no hang")
        .unwrap();
    assert_contract("worker transaction", &worker);
    assert_contract("tasks.update_status(Cancelled)", &cancel);
    // The worker held the task first, so it finished first.
    let finished = worker.unwrap();
    assert_eq!(finished.status, ExecutionStatus::Completed);
    assert_eq!(finished.stdout.as_deref(), Some("out"));
}

/// A transaction creates a task for user U (key-share lock on U) and then
/// cancels another of U's tasks, while U is deleted: the delete now locks
/// the user row first, in a statement of its own, so it waits for the
/// transaction instead of deadlocking with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_task_then_cancel_other_task_vs_user_delete_never_deadlocks() {
    let f = fixture().await;
    let observer = outside_connection(&f).await;
    let existing = f.task("existing", 0).await.id;
    let owner = f.user.id;
    let (ready, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let db = f.db.db().clone();
    let writer = {
        let (ready, go) = (ready.clone(), go.clone());
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (ready, go) = (ready.clone(), go.clone());
                async move {
                    let created = tx
                        .tasks()
                        .create(NewTask::new(owner, "new", "print(1)"))
                        .await?;
                    ready.notify_one();
                    go.notified().await;
                    tx.tasks()
                        .update_status(existing, TaskStatus::Cancelled)
                        .await?;
                    Ok(created)
                }
            })
            .await
        })
    };
    tokio::time::timeout(NO_HANG, ready.notified())
        .await
        .expect("the transaction's first statement ran");
    let users = f.users.clone();
    let delete = tokio::spawn(async move { users.delete(owner).await });
    wait_for_lock_waiters(&observer, 1).await;
    go.notify_one();
    let writer = tokio::time::timeout(NO_HANG, writer)
        .await
        .expect("no hang")
        .unwrap();
    let delete = tokio::time::timeout(NO_HANG, delete)
        .await
        .expect("no hang")
        .unwrap();
    assert_contract("transaction", &writer);
    assert_contract("users.delete", &delete);
    // The delete waited for the transaction, then removed everything.
    let created = writer.unwrap();
    delete.unwrap();
    assert!(f.users.get(owner).await.unwrap_err().is_not_found());
    assert!(f.tasks.get(created.id).await.unwrap_err().is_not_found());
    assert!(f.tasks.get(existing).await.unwrap_err().is_not_found());
}

/// users.delete locks the user row first, in its own statement, so a task
/// another application inserts for the user meanwhile waits for the delete
/// and then fails on the foreign key; it is never missed by the delete's
/// task locks (which used to deadlock with a batch enqueue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_delete_blocks_tasks_inserted_meanwhile_and_never_deadlocks() {
    let f = fixture().await;
    let observer = outside_connection(&f).await;
    let old = f.task("old", 0).await;
    let owner = f.user.id;

    // X holds the task, so the delete waits in its task-locking statement,
    // after it locked the user row.
    let holder = outside_connection(&f).await;
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM tasks WHERE id = $1 FOR NO KEY UPDATE",
            &[&old.id],
        )
        .await
        .unwrap();
    let users = f.users.clone();
    let delete = tokio::spawn(async move { users.delete(owner).await });
    wait_for_lock_waiters(&observer, 1).await;

    // Another application inserts a task for the user, with an id that
    // sorts before the old one.
    let inserter = outside_connection(&f).await;
    let inserter_pid: i32 = inserter
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let insert = tokio::spawn(async move {
        inserter
            .execute(
                "INSERT INTO tasks (id, user_id, name, script_content) \
                 VALUES ('00000000-0000-4000-8000-000000000001', $1, 'new', 'print(1)')",
                &[&owner],
            )
            .await
    });
    // And a batch enqueue of the old task waits on X too.
    let queue = f.queue.clone();
    let enqueue = tokio::spawn(async move { queue.enqueue_many(vec![old.id], None).await });
    wait_for_lock_waiters(&observer, 3).await;

    // The insert waits for the delete (the user row), not for X.
    let blockers: Vec<i32> = observer
        .query_one("SELECT pg_blocking_pids($1)", &[&inserter_pid])
        .await
        .unwrap()
        .get(0);
    assert!(!blockers.is_empty(), "the insert is not blocked");
    assert!(
        !blockers.contains(&holder_pid),
        "the insert waits for X: {blockers:?}"
    );
    assert!(!insert.is_finished() && !delete.is_finished());

    holder.batch_execute("COMMIT").await.unwrap();
    let delete = tokio::time::timeout(NO_HANG, delete)
        .await
        .expect("no hang")
        .unwrap();
    let insert = tokio::time::timeout(NO_HANG, insert)
        .await
        .expect("no hang")
        .unwrap();
    let enqueue = tokio::time::timeout(NO_HANG, enqueue)
        .await
        .expect("no hang")
        .unwrap();

    assert!(!is_deadlock(&delete), "users.delete: {delete:?}");
    delete.unwrap();
    let err = insert.expect_err("a task was inserted for a deleted user");
    assert_eq!(
        err.code(),
        Some(&SqlState::FOREIGN_KEY_VIOLATION),
        "the insert failed with something else than the foreign key: {err:?}"
    );
    assert_contract("enqueue_many", &enqueue);
    if let Err(err) = &enqueue {
        assert!(err.is_not_found(), "{err:?}");
    }
    let left: i64 = f
        .scalar("SELECT count(*) FROM tasks WHERE user_id = $1", &[&owner])
        .await;
    assert_eq!(left, 0, "the user's tasks are gone");
    assert!(f.users.get(owner).await.unwrap_err().is_not_found());
}

/// Another application wrote a pending execution whose attempt count is at
/// the top of its type: the claim saturates instead of failing every claim.
#[tokio::test]
async fn an_execution_at_the_top_attempt_count_does_not_stop_the_queue() {
    let f = crate::fixture().await;
    let odd = f.task("odd", 10).await;
    let normal = f.task("normal", 1).await;
    f.scalar::<i64>(
        "WITH i AS (INSERT INTO task_executions (task_id, priority, attempt) \
                    VALUES ($1, 10, 2147483647) RETURNING 1) SELECT count(*) FROM i",
        &[&odd.id],
    )
    .await;
    let queued = f.queue.enqueue(normal.id, None).await.unwrap();
    let claimed = f.queue.claim("w", 5, crate::LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].execution.task_id, odd.id);
    assert_eq!(claimed[0].execution.attempt, i32::MAX);
    assert_eq!(claimed[1].execution.id, queued.id);
}

/// A statement the closure abandons in flight (a timeout inside the
/// transaction) may or may not run: the transaction then commits nothing.
#[tokio::test]
async fn a_statement_abandoned_inside_a_transaction_rolls_it_back() {
    let f = crate::fixture().await;
    let holder = f.db.raw_client().await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.batch_execute("COMMIT").await.unwrap();
    });
    let result =
        f.db.transaction(|tx| async move {
            let gave_up = tokio::time::timeout(
                Duration::from_millis(50),
                tx.users().create(NewUser::new(
                    "abandoned@example.com",
                    PasswordHash::new("h"),
                )),
            )
            .await;
            assert!(gave_up.is_err(), "the insert waits for the lock");
            Ok(())
        })
        .await;
    release.await.unwrap();
    assert!(
        matches!(result, Err(Error::TransactionAborted)),
        "{result:?}"
    );
    let users = voidrunner_db::PgUserRepository::new(f.db.db().clone());
    assert!(
        users
            .get_by_email("abandoned@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// A transaction whose closure gave up a statement still waiting on a lock
/// ends at once, while the lock is still held: it used to send ROLLBACK,
/// which queued behind that statement until the lock went or the deadline
/// (`statement_timeout` plus 5 s) passed. The statement is cancelled on the
/// server, and nothing of the transaction is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_gave_up_a_waiting_statement_ends_without_waiting_for_it() {
    let f = crate::fixture().await;
    let holder = f.db.raw_client().await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let observer = f.db.raw_client().await.unwrap();
    // Well inside the answer deadline a ROLLBACK would wait out.
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        f.db.transaction(|tx| {
            let observer = &observer;
            async move {
                let users = tx.users();
                tokio::select! {
                    result = users.create(NewUser::new(
                        "gave-up@example.com",
                        PasswordHash::new("h"),
                    )) => panic!("the insert ran past the lock: {result:?}"),
                    _ = wait_for_lock_waiters(observer, 1) => {}
                }
                Ok(())
            }
        }),
    )
    .await;
    let result = ended.expect("the transaction waited behind the statement it gave up");
    assert!(
        matches!(result, Err(Error::TransactionAborted)),
        "{result:?}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let users = voidrunner_db::PgUserRepository::new(f.db.db().clone());
    assert!(
        users
            .get_by_email("gave-up@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );
}
