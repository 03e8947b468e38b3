//! Futures dropped at every await point (issue #7 §1): a connection whose
//! transaction state is unknown is closed, never pooled, so a later
//! acknowledged write can never be rolled back with somebody else's
//! transaction.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_postgres::NoTls;
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    ExecutionQueue, ExecutionRepository, NewTask, NewUser, PasswordHash, TaskRepository,
    UserRepository,
};

/// How many times the transaction future is polled before it is dropped
/// cycles through 1..=MAX_POLLS (past its last await point it completes);
/// every (MAX_POLLS + 1)th round uses `timeout(0)` instead.
const MAX_POLLS: usize = 12;
const ROUNDS: usize = 1000;

#[tokio::test]
async fn a_dropped_transaction_never_poisons_the_pool() {
    let app = format!("vr-cancel-{}", std::process::id());
    let db = TestDatabase::with_config(|c| {
        // Two connections, so the one a dropped transaction leaves behind is
        // the one the next write gets.
        c.max_connections = 2;
        c.min_connections = 1;
        c.application_name = app.clone();
    })
    .await
    .unwrap();
    let users = voidrunner_db::PgUserRepository::new(db.db().clone());

    // A connection outside the pool (and outside any pooler in front of
    // it), to see what is committed.
    let config = db.config().await.unwrap();
    let (observer, connection) = config
        .direct_pg_config()
        .unwrap_or(config.pg_config())
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    let mut completed = 0;
    for round in 0..ROUNDS {
        let polls = round % (MAX_POLLS + 1) + 1;
        let transaction = db.transaction(|tx| async move {
            let user = tx
                .users()
                .create(NewUser::new(
                    format!("in-tx-{round}@example.com"),
                    PasswordHash::new("h"),
                ))
                .await?;
            tx.tasks()
                .create(NewTask::new(user.id, "t", "print(1)"))
                .await?;
            Ok(())
        });
        if polls > MAX_POLLS {
            let _ = tokio::time::timeout(Duration::ZERO, transaction).await;
        } else {
            let mut transaction = pin!(transaction);
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if let Poll::Ready(result) = transaction.as_mut().poll(&mut cx) {
                    result.unwrap();
                    completed += 1;
                    break;
                }
                // Let the connection tasks move the exchange along, so the
                // next poll finds the future at its next await point.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }

        // A plain write through the same pool must be committed for real.
        let email = format!("after-{round}@example.com");
        users
            .create(NewUser::new(email.clone(), PasswordHash::new("h")))
            .await
            .unwrap_or_else(|e| panic!("round {round} ({polls} polls): {e}"));
        let seen: i64 = observer
            .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 1, "round {round} ({polls} polls): write not visible");
        assert_no_open_transaction(&observer, &app, round).await;
    }
    // The rounds reached every await point, including the end.
    assert!(completed > 0, "no transaction ever completed");
    // Each transaction committed whole or not at all.
    let row = observer
        .query_one(
            "SELECT (SELECT count(*) FROM users WHERE email LIKE 'in-tx-%'), \
                    (SELECT count(*) FROM tasks t JOIN users u ON u.id = t.user_id \
                     WHERE u.email LIKE 'in-tx-%')",
            &[],
        )
        .await
        .unwrap();
    let (tx_users, tx_tasks): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(tx_users, tx_tasks);
    assert!(tx_users >= completed, "{tx_users} < {completed}");
}

/// No session of the pool is left inside a transaction. A closed
/// connection's backend may take a moment to exit, so this waits briefly.
async fn assert_no_open_transaction(observer: &tokio_postgres::Client, app: &str, round: usize) {
    for _ in 0..200 {
        let open: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("round {round}: a session of the pool stays idle in transaction");
}

#[tokio::test]
async fn a_dropped_import_never_poisons_the_pool() {
    let db = TestDatabase::with_config(|c| {
        c.max_connections = 1;
        c.min_connections = 1;
    })
    .await
    .unwrap();
    let users = voidrunner_db::PgUserRepository::new(db.db().clone());
    let tasks = voidrunner_db::PgTaskRepository::new(db.db().clone());
    let owner = users
        .create(NewUser::new("importer@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let batch: Vec<NewTask> = (0..2000)
        .map(|i| NewTask::new(owner.id, format!("t{i}"), "print(1)"))
        .collect();
    for polls in 1..=8i64 {
        {
            let mut import = pin!(tasks.import(batch.clone()));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if import.as_mut().poll(&mut cx).is_ready() {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        } // the import future is dropped here
        // The pool's one connection (or its replacement) answers at once.
        let count = tokio::time::timeout(Duration::from_secs(10), tasks.count_by_user(owner.id))
            .await
            .unwrap_or_else(|_| panic!("{polls} polls: the next call hangs"))
            .unwrap();
        let imported = count - (polls - 1);
        assert_eq!(
            imported % 2000,
            0,
            "{polls} polls: {count} rows, a partial import"
        );
        tasks
            .create(NewTask::new(owner.id, "after", "print(1)"))
            .await
            .unwrap();
    }
}

/// Bound on waits that only a defect makes long, so a hang fails the test
/// instead of stalling CI.
const NO_HANG: Duration = Duration::from_secs(10);

/// A connection outside the pool, under an application name of its own so
/// it never counts as one of the pool's sessions.
async fn outside_connection(f: &crate::Fixture) -> tokio_postgres::Client {
    let mut config = f.session_pg_config().await;
    config.application_name("vr-cancel-observer");
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// An application name no other test's pool uses.
fn unique_application_name(test: &str) -> String {
    format!("vr-{test}-{}", uuid::Uuid::new_v4().simple())
}

/// Pids of the sessions of `app` that wait on a lock.
async fn lock_waiters(observer: &tokio_postgres::Client, app: &str) -> Vec<i32> {
    observer
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits until a session of `app` not in `seen` waits on a lock; returns
/// its pid.
async fn new_lock_waiter(observer: &tokio_postgres::Client, app: &str, seen: &[i32]) -> i32 {
    let started = std::time::Instant::now();
    while started.elapsed() < NO_HANG {
        if let Some(pid) = lock_waiters(observer, app)
            .await
            .into_iter()
            .find(|pid| !seen.contains(pid))
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no new session of the pool waited on the lock");
}

/// Holds a row lock on the task from a connection outside the pool.
async fn lock_task(f: &crate::Fixture, task: voidrunner_db::TaskId) -> tokio_postgres::Client {
    let holder = outside_connection(f).await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", &[&task])
        .await
        .unwrap();
    holder
}

/// A pooled call dropped while its statement waits on a lock: the
/// connection used to go back to the pool with the statement still running,
/// so the next unrelated caller waited behind it, and the statement went on
/// to write for a caller that was gone. Now its statement is cancelled on
/// the server and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_while_its_statement_waits_is_cancelled_not_pooled() {
    let app = unique_application_name("dropped-call");
    let f = crate::fixture_with(|c| {
        c.max_connections = 1;
        c.min_connections = 1;
        c.application_name = app.clone();
    })
    .await;
    let observer = outside_connection(&f).await;
    let task = f.task("locked", 0).await;
    let holder = lock_task(&f, task.id).await;

    // The enqueue is dropped once its statement waits on the lock.
    tokio::select! {
        result = f.queue.enqueue(task.id, None) => {
            panic!("enqueue finished while its task was locked: {result:?}")
        }
        _ = new_lock_waiter(&observer, &app, &[]) => {}
    }

    // The one pooled connection is not handed out busy: an unrelated call
    // answers while the lock is still held.
    let users = tokio::time::timeout(NO_HANG, f.users.count())
        .await
        .expect("an unrelated call waits behind the dropped call's statement")
        .unwrap();
    assert_eq!(users, 1);

    // The dropped statement was cancelled on the server: nobody of the pool
    // waits on the lock any more, though it is still held.
    let started = std::time::Instant::now();
    while !lock_waiters(&observer, &app).await.is_empty() {
        assert!(
            started.elapsed() < NO_HANG,
            "the dropped call's statement still waits on the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        f.executions.latest_for_task(task.id).await.unwrap(),
        None,
        "the dropped enqueue went on to queue the task"
    );
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        voidrunner_db::TaskStatus::Pending
    );
}

/// Transactions dropped while a statement of theirs waits on a lock: their
/// connections were closed but their server sessions lived on, waiting,
/// beyond the pool's size. Now each dropped session's statement is
/// cancelled, so the sessions end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_dropped_while_waiting_leave_no_session_behind() {
    const POOL: i64 = 2;
    let app = unique_application_name("dropped-tx");
    let f = crate::fixture_with(|c| {
        c.max_connections = POOL as usize;
        c.min_connections = 1;
        c.application_name = app.clone();
    })
    .await;
    let observer = outside_connection(&f).await;
    let task = f.task("locked", 0).await;
    let holder = lock_task(&f, task.id).await;

    let mut dropped = Vec::new();
    for _ in 0..8 {
        let transaction = f.db.transaction(|tx| async move {
            tx.tasks()
                .update_status(task.id, voidrunner_db::TaskStatus::Cancelled)
                .await
        });
        tokio::select! {
            result = transaction => {
                panic!("the transaction finished while its task was locked: {result:?}")
            }
            pid = new_lock_waiter(&observer, &app, &dropped) => dropped.push(pid),
        }
    }

    // Within a few seconds, the pool's sessions are back within its size,
    // and none of them waits on the lock, which is still held.
    let started = std::time::Instant::now();
    loop {
        let sessions: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        let waiting = lock_waiters(&observer, &app).await;
        if sessions <= POOL && waiting.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{sessions} sessions of a pool of {POOL}; waiting on the lock: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    // None of the dropped transactions took effect.
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        voidrunner_db::TaskStatus::Pending
    );
}

/// Polls `future` `polls` times, letting the connection tasks move the
/// exchange along in between, then drops it; `Some` if it finished first.
async fn poll_then_drop<F: std::future::Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    None
}

/// Waits until every session of `app` is idle: a dropped call's session
/// has been cancelled and closed, or has finished.
async fn wait_until_settled(observer: &tokio_postgres::Client, app: &str, label: &str) {
    let started = std::time::Instant::now();
    loop {
        let busy: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND state <> 'idle'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            return;
        }
        assert!(
            started.elapsed() < NO_HANG,
            "{label}: a session of the pool stays busy or in a transaction"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Single repository calls (not transactions) dropped at every await
/// point, including one that opens a transaction of its own
/// (`users.delete`: lock the user, lock its tasks, delete): each takes
/// effect whole or not at all, and the pool keeps committing writes.
#[tokio::test]
async fn a_dropped_pool_call_never_poisons_the_pool() {
    const MAX_POLLS: usize = 12;
    let app = unique_application_name("dropped-pool-call");
    let f = crate::fixture_with(|c| {
        c.max_connections = 2;
        c.min_connections = 1;
        c.application_name = app.clone();
    })
    .await;
    let observer = outside_connection(&f).await;
    let mut deleted = 0;
    // The last round polls to the end, so the path of a call that finishes
    // is checked however slow the server is under load (on a busy machine
    // no delete may finish within 12 polls).
    for round in 0..=2 * MAX_POLLS {
        let polls = if round == 2 * MAX_POLLS {
            100_000
        } else {
            round % MAX_POLLS + 1
        };
        let label = format!("round {round} ({polls} polls)");
        let user = f
            .users
            .create(NewUser::new(
                format!("doomed-{round}@example.com"),
                PasswordHash::new("h"),
            ))
            .await
            .unwrap();
        let first = f
            .tasks
            .create(NewTask::new(user.id, "first", "print(1)"))
            .await
            .unwrap();
        let second = f
            .tasks
            .create(NewTask::new(user.id, "second", "print(1)"))
            .await
            .unwrap();
        f.queue.enqueue(first.id, None).await.unwrap();

        // An enqueue dropped part-way queues the task once or not at all.
        if let Some(result) = poll_then_drop(f.queue.enqueue(second.id, None), polls).await {
            result.unwrap();
        }
        wait_until_settled(&observer, &app, &label).await;
        let queued: i64 = observer
            .query_one(
                "SELECT count(*) FROM task_executions WHERE task_id = $1",
                &[&second.id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(queued <= 1, "{label}: {queued} executions");

        // A delete dropped part-way removes everything or nothing.
        let finished = poll_then_drop(f.users.delete(user.id), polls).await;
        wait_until_settled(&observer, &app, &label).await;
        let row = observer
            .query_one(
                "SELECT (SELECT count(*) FROM users WHERE id = $1), \
                        (SELECT count(*) FROM tasks WHERE id IN ($2, $3)), \
                        (SELECT count(*) FROM task_executions WHERE task_id IN ($2, $3))",
                &[&user.id, &first.id, &second.id],
            )
            .await
            .unwrap();
        let left: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        match finished {
            Some(result) => {
                result.unwrap();
                assert_eq!(left, (0, 0, 0), "{label}");
            }
            None => assert!(
                left == (0, 0, 0) || left == (1, 2, 1 + queued),
                "{label}: a partial delete: {left:?}"
            ),
        }
        if left.0 == 0 {
            deleted += 1;
        }

        // A plain write through the same pool is committed for real.
        let email = format!("after-{round}@example.com");
        f.users
            .create(NewUser::new(email.clone(), PasswordHash::new("h")))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let seen: i64 = observer
            .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 1, "{label}: write not visible");
    }
    // The rounds reached the end of the delete as well as its middle.
    assert!(deleted > 0, "no delete ever took effect");
    assert!(
        deleted < 2 * MAX_POLLS + 1,
        "every delete finished: nothing was dropped"
    );
    // No task has two active executions.
    let doubled: i64 = observer
        .query_one(
            "SELECT count(*) FROM (SELECT task_id FROM task_executions \
             WHERE status IN ('pending', 'running') GROUP BY task_id HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubled, 0);
}

/// An import given up inside a transaction (a `timeout` around it, the
/// closure going on) rolls the transaction back like any statement given
/// up: the COPY may have gone out whole, so committing it would write rows
/// the caller was told did not arrive. Whatever the moment it is given up
/// at, the transaction either fails and writes no row (`TransactionAborted`,
/// or the error of the closure's next statement when the dropped COPY had
/// already aborted it on the server), or the import finished and its rows
/// are all there.
#[tokio::test]
async fn an_import_given_up_inside_a_transaction_is_never_committed() {
    let db = TestDatabase::with_config(|c| c.max_connections = 2)
        .await
        .unwrap();
    let users = voidrunner_db::PgUserRepository::new(db.db().clone());
    let tasks = voidrunner_db::PgTaskRepository::new(db.db().clone());
    let owner = users
        .create(NewUser::new("given-up@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let batch: Vec<NewTask> = (0..300)
        .map(|i| NewTask::new(owner.id, format!("t{i}"), "print(1)"))
        .collect();
    // How long one import takes here, now: the waits below go from a
    // small share of it (given up early) to well past it (finished), so
    // both outcomes are met however busy the machine is.
    let started = std::time::Instant::now();
    tasks.import(batch.clone()).await.unwrap();
    let whole = started.elapsed();
    let (mut aborted, mut finished) = (0, 0);
    for step in 1..=60u32 {
        let before = tasks.count_by_user(owner.id).await.unwrap();
        // From a fifteenth of the import's time to four times it.
        let wait = whole * step / 15;
        let batch = batch.clone();
        let result = db
            .db()
            .transaction(|tx| {
                let batch = batch.clone();
                async move {
                    let gave_up = tokio::time::timeout(wait, tx.tasks().import(batch))
                        .await
                        .is_err();
                    // The closure goes on, as a handler that logs and
                    // carries on would.
                    tx.tasks().count_by_user(owner.id).await?;
                    Ok(gave_up)
                }
            })
            .await;
        let after = tasks.count_by_user(owner.id).await.unwrap();
        match result {
            Err(err) => {
                assert_eq!(
                    after, before,
                    "step {step}: failed ({err}), yet rows came in"
                );
                aborted += 1;
            }
            Ok(false) => {
                assert_eq!(after, before + 300, "step {step}: a partial import");
                finished += 1;
            }
            Ok(true) => {
                panic!("step {step}: the import was given up, yet the transaction committed")
            }
        }
    }
    // Both outcomes were met (the waits span the import's whole length).
    assert!(
        aborted > 0 && finished > 0,
        "{aborted} aborted, {finished} finished"
    );
}
