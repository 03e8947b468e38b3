//! The claim against a second application and against the crate's own
//! calls in transactions: lock order (no deadlock with calls that follow
//! it), rows committed while a claim walks, pending executions whose task
//! another application ended, foreign and held rows, claim order across
//! priorities, and updated_at stamped for another application's updates.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use voidrunner_db::{
    Error, Event, EventKind, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewTask,
    NewUser, PasswordHash, Result, TaskRepository, TaskStatus, TaskUpdate, UserId, UserRepository,
};

use crate::{Fixture, LEASE, fixture, fixture_with};

pub(crate) const NO_HANG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// A session of its own, as another application would have.
pub(crate) async fn outside(f: &Fixture) -> tokio_postgres::Client {
    let (client, connection) = f.session_pg_config().await.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

pub(crate) async fn wait_for_lock_waiters(observer: &tokio_postgres::Client, n: i64) {
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
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{n} sessions never waited on a lock");
}

pub(crate) fn is_deadlock<T>(result: &Result<T>) -> bool {
    result
        .as_ref()
        .err()
        .and_then(Error::sqlstate)
        .is_some_and(|s| *s == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Errors a call may return when it lost a race, by its contract.
pub(crate) fn contract(err: &Error) -> bool {
    err.is_not_found() || err.is_invalid_transition() || err.is_lease_lost()
}

/// The queue's invariants between calls (as tests/queue/invariants.rs).
pub(crate) const INVARIANTS_SQL: &str = "\
    SELECT 'task ' || task_id || ' has ' || count(*) || ' active executions' \
    FROM task_executions WHERE status IN ('pending', 'running') \
    GROUP BY task_id HAVING count(*) > 1 \
    UNION ALL \
    SELECT 'task ' || t.id || ' is ' || t.status || ' but its execution ' || e.id \
           || ' is ' || e.status \
    FROM tasks t JOIN task_executions e ON e.task_id = t.id \
    WHERE e.status IN ('pending', 'running') AND t.status::text <> e.status::text \
    UNION ALL \
    SELECT 'running task ' || t.id || ' has ' || r.n || ' running executions' \
    FROM tasks t CROSS JOIN LATERAL ( \
      SELECT count(*) AS n FROM task_executions e \
      WHERE e.task_id = t.id AND e.status = 'running') r \
    WHERE t.status = 'running' AND r.n <> 1 \
    UNION ALL \
    SELECT 'running execution ' || id || ' lacks a lease, a worker or a start time' \
    FROM task_executions WHERE status = 'running' \
      AND (lease_expires_at IS NULL OR worker_id IS NULL OR started_at IS NULL) \
    UNION ALL \
    SELECT 'ended execution ' || id || ' has no completed_at' FROM task_executions \
    WHERE status IN ('completed', 'failed', 'timeout', 'cancelled') AND completed_at IS NULL";

pub(crate) async fn violations(f: &Fixture) -> Vec<String> {
    f.db.raw_client()
        .await
        .unwrap()
        .query(INVARIANTS_SQL, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `n` pending executions at priority 10, eligible by run_after, whose tasks
/// another application left in `task_status` (not pending): work the claim
/// must never take.
pub(crate) async fn foreign_orphans(f: &Fixture, n: i32, task_status: &str) {
    f.db.raw_client()
        .await
        .unwrap()
        .execute(
            "WITH t AS ( \
               INSERT INTO tasks (user_id, name, script_content, status, priority) \
               SELECT $1, 'orphan-' || g, 'print(1)', $3, 10 FROM generate_series(1, $2::int) g \
               RETURNING id) \
             INSERT INTO task_executions (task_id, priority, run_after) \
             SELECT id, 10, now() - interval '1 hour' FROM t",
            &[&f.user.id, &n, &task_status],
        )
        .await
        .unwrap();
}

// ------------------------------------------------------ 1. lock order

/// A claim passes over an execution whose task someone holds without
/// locking the execution (it locks the task first, the crate's order), so a
/// claiming transaction cannot close a cycle with a crate call that follows
/// that order. A version that locked the execution first, and kept it
/// locked when it skipped the task, deadlocked here:
///
/// C: update(t1) [holds t1] ... cancel(e1) [e1 is free: done]
/// A: claim() -> [] (skipped t1, e1 untouched) ... update(t1) [waits for C]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_a_transaction_leaves_the_execution_of_a_held_task_alone() {
    let f = fixture().await;
    let observer = outside(&f).await;
    let t1 = f.task("t1", 5).await;
    let e1 = f.queue.enqueue(t1.id, None).await.unwrap();
    let db = f.db.db().clone();

    let (c_holds, c_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let c = {
        let (c_holds, c_go, db) = (c_holds.clone(), c_go.clone(), db.clone());
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (c_holds, c_go) = (c_holds.clone(), c_go.clone());
                async move {
                    tx.tasks()
                        .update(
                            t1.id,
                            TaskUpdate {
                                name: Some("renamed by C".into()),
                                ..Default::default()
                            },
                        )
                        .await?;
                    c_holds.notify_one();
                    c_go.notified().await;
                    tx.queue().cancel(e1.id).await
                }
            })
            .await
        })
    };
    tokio::time::timeout(NO_HANG, c_holds.notified())
        .await
        .expect("C holds t1");

    let (a_claimed, a_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = {
        let (a_claimed, a_go) = (a_claimed.clone(), a_go.clone());
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (a_claimed, a_go) = (a_claimed.clone(), a_go.clone());
                async move {
                    let got = tx.queue().claim("a", 10, LEASE).await?;
                    a_claimed.notify_one();
                    a_go.notified().await;
                    tx.tasks()
                        .update(
                            t1.id,
                            TaskUpdate {
                                name: Some("renamed by A".into()),
                                ..Default::default()
                            },
                        )
                        .await?;
                    Ok(got.len())
                }
            })
            .await
        })
    };
    tokio::time::timeout(NO_HANG, a_claimed.notified())
        .await
        .expect("A claimed");
    c_go.notify_one();
    // C's cancel finds e1 free: A's claim did not lock it.
    let c = tokio::time::timeout(NO_HANG, c)
        .await
        .expect("C's cancel waited for A's claim")
        .unwrap();
    a_go.notify_one();
    let a = tokio::time::timeout(NO_HANG, a)
        .await
        .expect("no hang")
        .unwrap();
    assert!(
        !is_deadlock(&a) && !is_deadlock(&c),
        "deadlock between a claiming transaction and a cancel in the documented lock order: \
         A (claim, then update t1) = {a:?}; C (update t1, then cancel e1) = {c:?}"
    );
    assert_eq!(a.unwrap(), 0, "the held task's execution was not claimed");
    assert_eq!(c.unwrap().status, ExecutionStatus::Cancelled);
    let _ = &observer;
}

/// The same with single crate calls on the other side: a worker's
/// transaction claims (passing over e1, whose task the user delete holds)
/// and then queues a follow-up task for the same user, while
/// `users.delete` of that user runs. The delete's cascade must not wait for
/// the worker (a claim that kept e1 locked made it wait, while the
/// worker's insert waited for the user row: a deadlock). A second
/// transaction X holding t2 makes the interleaving deterministic (the
/// delete locks t1, then waits for t2 while the worker claims).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claiming_transaction_does_not_hold_up_a_user_delete() {
    let f = fixture().await;
    let observer = outside(&f).await;
    let owner = f
        .users
        .create(NewUser::new("owner@example.com", PasswordHash::new("h")))
        .await
        .unwrap()
        .id;
    let t1 = f
        .tasks
        .create(NewTask::new(owner, "t1", "print(1)").priority(5))
        .await
        .unwrap();
    let t2 = f
        .tasks
        .create(NewTask::new(owner, "t2", "print(1)"))
        .await
        .unwrap();
    assert!(t1.id < t2.id, "UUIDv7: t1 sorts first");
    f.queue.enqueue(t1.id, None).await.unwrap();

    // X holds t2.
    let x = outside(&f).await;
    x.batch_execute("BEGIN").await.unwrap();
    x.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", &[&t2.id])
        .await
        .unwrap();
    // The delete locks the user and t1, then waits for t2.
    let users = f.users.clone();
    let delete = tokio::spawn(async move { users.delete(owner).await });
    wait_for_lock_waiters(&observer, 1).await;

    let db = f.db.db().clone();
    let (claimed, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let worker = {
        let (claimed, go) = (claimed.clone(), go.clone());
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (claimed, go) = (claimed.clone(), go.clone());
                async move {
                    let got = tx.queue().claim("w", 10, LEASE).await?;
                    claimed.notify_one();
                    go.notified().await;
                    tx.tasks()
                        .create(NewTask::new(owner, "follow-up", "print(2)"))
                        .await?;
                    Ok(got.len())
                }
            })
            .await
        })
    };
    tokio::time::timeout(NO_HANG, claimed.notified())
        .await
        .expect("claimed");
    // X lets go: the delete cascades to e1, which the worker left alone.
    x.batch_execute("COMMIT").await.unwrap();
    let delete = tokio::time::timeout(NO_HANG, delete)
        .await
        .expect("the delete waited for the claiming transaction")
        .unwrap();
    go.notify_one();
    let worker = tokio::time::timeout(NO_HANG, worker)
        .await
        .expect("no hang")
        .unwrap();
    assert!(
        !is_deadlock(&worker) && !is_deadlock(&delete),
        "deadlock: worker transaction (claim, then create a task for the user) = {worker:?}; \
         users.delete = {delete:?}"
    );
    // Expected: the delete waits for nothing of the worker's, removes the
    // user, and the worker's insert fails on the foreign key.
    delete.unwrap();
    assert!(worker.unwrap_err().is_foreign_key());
}

// ------------------------------------ 2. the function's fresh snapshots

/// voidrunner_claim is VOLATILE PL/pgSQL: each query in it takes a new
/// snapshot. A row committed while the claim walks (an enqueue whose
/// transaction began before the claim, so its run_after has come) is
/// locked by the walk; the function's own update sees it and claims it. (A
/// version that left the update to the calling statement, whose snapshot
/// predates the row, locked it, counted it and claimed nothing: an empty
/// claim while work waited.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_rows_committed_while_it_walks() {
    let mut f = fixture_with(|c| c.max_connections = 8).await;
    // The race is the FIFO walk's (V8's `voidrunner_claim`, across all
    // users, priority 10 first): the observer waits for that function, so
    // the fair pass (`VOIDRUNNER_TEST_CLAIM_ORDER=fair`) keeps this test on
    // the FIFO claim.
    f.queue = voidrunner_db::PgExecutionQueue::new(f.db.db().clone());
    let observer = outside(&f).await;
    // Makes the walk of priority 10 take a while (a foreign app's rows);
    // any slow walk, or plain bad luck, opens the same window.
    foreign_orphans(&f, 40_000, "cancelled").await;
    let db = f.db.db().clone();
    let user = f.user.id;
    let mut hits = Vec::new();
    // Attempts whose claim took the row committed while it walked: the
    // race happened (the walk of priority 10 outlasted the commit).
    let mut raced = 0;
    for attempt in 0..6 {
        let old = f.task(&format!("old-{attempt}"), 0).await;
        let old_e = f.queue.enqueue(old.id, None).await.unwrap();

        // Another producer's transaction: begun now, committed mid-claim.
        let (queued, commit) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let producer = {
            let (queued, commit, db) = (queued.clone(), commit.clone(), db.clone());
            tokio::spawn(async move {
                db.transaction(|tx| {
                    let (queued, commit) = (queued.clone(), commit.clone());
                    async move {
                        let t = tx
                            .tasks()
                            .create(NewTask::new(user, "new", "print(1)").priority(5))
                            .await?;
                        let e = tx.queue().enqueue(t.id, None).await?;
                        queued.notify_one();
                        commit.notified().await;
                        Ok(e)
                    }
                })
                .await
            })
        };
        tokio::time::timeout(NO_HANG, queued.notified())
            .await
            .expect("queued");
        let queue = f.queue.clone();
        let claim = tokio::spawn(async move { queue.claim("w", 1, LEASE).await });
        // The claim is running (walking priority 10): commit the producer.
        let started = std::time::Instant::now();
        loop {
            let active: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state = 'active' AND pid <> pg_backend_pid() \
                     AND query LIKE '%voidrunner_claim(%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if active > 0 || claim.is_finished() {
                break;
            }
            assert!(started.elapsed() < NO_HANG, "the claim never ran");
        }
        commit.notify_one();
        let new_e = producer.await.unwrap().unwrap();
        let claimed = claim.await.unwrap().unwrap();
        if claimed.iter().any(|job| job.execution.id == new_e.id) {
            raced += 1;
        }
        if claimed.is_empty() {
            let old_now = f.executions.get(old_e.id).await.unwrap();
            let new_now = f.executions.get(new_e.id).await.unwrap();
            hits.push(format!(
                "attempt {attempt}: claim(1) returned nothing; {} (priority 0, pending since \
                 before the claim) is {:?}; {} (priority 5, run_after before the claim, \
                 committed during it) is {:?}",
                old_e.id, old_now.status, new_e.id, new_now.status
            ));
        }
        // Leave nothing pending for the next attempt.
        for t in [old.id, new_e.task_id] {
            let _ = f.tasks.update_status(t, TaskStatus::Cancelled).await;
        }
        if !hits.is_empty() {
            break;
        }
    }
    // Nothing is lost for good: the next claim takes the work.
    assert!(
        hits.is_empty(),
        "a claim returned nothing while eligible work waited:\n{}",
        hits.join("\n")
    );
    assert!(raced > 0, "no claim ran while the producer committed");
}

// --------------------------------- 3. foreign orphans are not locked

/// Pending executions whose task another application ended are never
/// claimed, and a claim passes over them without locking them or their
/// tasks: it checks the task's status before it locks. (A version that
/// locked first wrote a row lock, xmax, WAL and a dirty page, on each of
/// them and its task, every claim: 226 kB of WAL for a claim of one.)
#[tokio::test]
async fn a_claim_passes_over_orphans_without_locking_them() {
    let f = fixture().await;
    for status in ["cancelled", "completed", "failed", "timeout"] {
        foreign_orphans(&f, 500, status).await;
    }
    let task = f.task("eligible", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let raw = outside(&f).await;
    // Their xmax before the claim (inserting the executions share-locked
    // the tasks for the foreign key): a row the claim locks gets a new one.
    raw.batch_execute(
        "CREATE TEMP TABLE before AS \
           SELECT 'e' AS kind, id, xmax::text AS x FROM task_executions WHERE status = 'pending' \
           UNION ALL SELECT 't', id, xmax::text FROM tasks WHERE name LIKE 'orphan-%'",
    )
    .await
    .unwrap();
    let before: String = raw
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let got = f.queue.claim("w", 1, LEASE).await.unwrap();
    let wal: i64 = raw
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)::bigint",
            &[&before],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].execution.id, e.id, "the one eligible execution");
    let locked: (i64, i64) = {
        let row = raw
            .query_one(
                "SELECT (SELECT count(*) FROM task_executions x JOIN before b \
                           ON b.kind = 'e' AND b.id = x.id \
                         WHERE x.status = 'pending' AND x.xmax::text <> b.x), \
                        (SELECT count(*) FROM tasks x JOIN before b \
                           ON b.kind = 't' AND b.id = x.id \
                         WHERE x.xmax::text <> b.x)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    // Released at the claim's commit: another session locks them at once.
    raw.batch_execute(
        "BEGIN; SELECT 1 FROM task_executions WHERE status = 'pending' FOR UPDATE NOWAIT; \
         SELECT 1 FROM tasks WHERE name LIKE 'orphan-%' FOR UPDATE NOWAIT; ROLLBACK",
    )
    .await
    .expect("the claim's locks were released at its commit");
    assert_eq!(
        locked,
        (0, 0),
        "a claim of one locked {} executions and {} tasks it did not take \
         (~{wal} bytes of WAL for one claim)",
        locked.0,
        locked.1
    );
}

// ------------------------------------------------ 4. foreign rows, edges

/// Rows written by another application at the edges, and rows another
/// session holds: the claim takes exactly the eligible, unheld ones, in
/// claim order, without waiting; after the other session commits, the next
/// claim takes the ones it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_rows_and_held_rows_are_claimed_exactly_as_the_contract_says() {
    let f = fixture().await;
    let raw = f.db.raw_client().await.unwrap();
    // One helper inserting a task and its execution as another app would.
    #[allow(clippy::too_many_arguments)]
    async fn insert(
        raw: &tokio_postgres::Client,
        user: UserId,
        name: &str,
        task_status: &str,
        priority: i32,
        run_after: &str,
        attempt: i32,
        worker: Option<&str>,
    ) -> (uuid::Uuid, uuid::Uuid) {
        let row = raw
            .query_one(
                "WITH t AS ( \
                   INSERT INTO tasks (user_id, name, script_content, status, priority) \
                   VALUES ($1, $2, 'print(1)', $3, $4) RETURNING id) \
                 INSERT INTO task_executions (task_id, priority, run_after, attempt, worker_id) \
                 SELECT id, $4, $5::text::timestamptz, $6, $7 FROM t RETURNING task_id, id",
                &[
                    &user,
                    &name,
                    &task_status,
                    &priority,
                    &run_after,
                    &attempt,
                    &worker,
                ],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }
    let u = f.user.id;
    let (_, far_past) = insert(
        &raw,
        u,
        "far past",
        "pending",
        10,
        "1900-01-01",
        0,
        Some(" odd worker "),
    )
    .await;
    let (_, top_attempt) = insert(
        &raw,
        u,
        "i32 max",
        "pending",
        10,
        "2000-01-01",
        i32::MAX,
        None,
    )
    .await;
    let (_, low) = insert(&raw, u, "priority 0", "pending", 0, "2000-01-01", 0, None).await;
    let (_, _delayed_top) =
        insert(&raw, u, "delayed 10", "pending", 10, "9999-01-01", 0, None).await;
    let (_, _delayed_low) = insert(&raw, u, "delayed 0", "pending", 0, "3000-01-01", 0, None).await;
    for status in ["cancelled", "completed", "running", "failed"] {
        insert(&raw, u, status, status, 10, "1950-01-01", 0, None).await;
    }
    let (held_task, of_held_task) =
        insert(&raw, u, "task held", "pending", 10, "1960-01-01", 0, None).await;
    let (_, held_execution) = insert(
        &raw,
        u,
        "execution held",
        "pending",
        10,
        "1970-01-01",
        0,
        None,
    )
    .await;
    let (_, shared_task_e) =
        insert(&raw, u, "task shared", "pending", 5, "1970-01-01", 0, None).await;

    // Another application holds a task (FOR UPDATE), an execution (FOR
    // UPDATE) and a task FOR KEY SHARE (as its own inserts of executions
    // would): the first two are passed over, the third does not conflict.
    let other = outside(&f).await;
    other.batch_execute("BEGIN").await.unwrap();
    other
        .execute(
            "SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE",
            &[&held_task],
        )
        .await
        .unwrap();
    other
        .execute(
            "SELECT 1 FROM task_executions WHERE id = $1 FOR UPDATE",
            &[&held_execution],
        )
        .await
        .unwrap();
    other
        .execute(
            "SELECT 1 FROM tasks t JOIN task_executions e ON e.task_id = t.id \
             WHERE e.id = $1 FOR KEY SHARE OF t",
            &[&shared_task_e],
        )
        .await
        .unwrap();

    for limit in [1u32, 2, 1000] {
        let mut order = Vec::new();
        // Claim one batch, read what it took, and put it back (as another
        // app would) so every batch size sees the same queue.
        let got = tokio::time::timeout(Duration::from_secs(10), f.queue.claim("w", limit, LEASE))
            .await
            .expect("a claim never waits for rows another session holds")
            .unwrap();
        for c in &got {
            order.push(c.execution.id.as_uuid());
            assert_eq!(c.execution.worker_id.as_deref(), Some("w"));
            assert_eq!(c.execution.status, ExecutionStatus::Running);
            if c.execution.id.as_uuid() == top_attempt {
                assert_eq!(c.execution.attempt, i32::MAX, "attempt saturates");
            } else {
                assert_eq!(c.execution.attempt, 1);
            }
            assert_eq!(
                f.tasks.get(c.execution.task_id).await.unwrap().status,
                TaskStatus::Running
            );
        }
        let all = [far_past, top_attempt, shared_task_e, low];
        assert_eq!(
            order,
            all[..(limit as usize).min(4)].to_vec(),
            "limit {limit}"
        );
        raw.batch_execute(
            "WITH r AS ( \
               UPDATE task_executions SET status = 'pending', worker_id = NULL, started_at = NULL, \
                 lease_expires_at = NULL, heartbeat_at = NULL, \
                 attempt = CASE WHEN attempt = 2147483647 THEN attempt ELSE 0 END \
               WHERE status = 'running' AND worker_id = 'w' RETURNING task_id) \
             UPDATE tasks SET status = 'pending' WHERE id IN (SELECT task_id FROM r)",
        )
        .await
        .unwrap();
    }
    // The held execution and the execution of the held task were not left
    // locked by those claims: a third session can lock the execution of the
    // held task right away.
    let third = outside(&f).await;
    third.batch_execute("BEGIN").await.unwrap();
    third
        .execute(
            "SELECT 1 FROM task_executions WHERE id = $1 FOR UPDATE NOWAIT",
            &[&of_held_task],
        )
        .await
        .expect("the claim left the execution of a held task unlocked after its commit");
    third.batch_execute("ROLLBACK").await.unwrap();

    other.batch_execute("COMMIT").await.unwrap();
    let got: HashSet<uuid::Uuid> = f
        .queue
        .claim("w", 1000, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|c| c.execution.id.as_uuid())
        .collect();
    let expected: HashSet<uuid::Uuid> = [
        far_past,
        top_attempt,
        shared_task_e,
        low,
        of_held_task,
        held_execution,
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected, "released rows are claimed by the next claim");
    // The orphans stay pending, never claimed.
    let orphans: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
             WHERE e.status = 'pending' AND t.status <> 'pending' AND e.run_after < now()",
            &[],
        )
        .await;
    assert_eq!(orphans, 4);
}

// ------------------------------------------------- 5. claim order, walk

/// 440 executions over priorities 0..=10, a third delayed, run_after
/// spread with ties (so id breaks them): drained with every batch size, the
/// claims come in exactly `ORDER BY priority DESC, run_after, id` of the
/// eligible rows, batch after batch.
#[tokio::test]
async fn claim_order_holds_across_priorities_and_batch_sizes() {
    let f = fixture().await;
    let queued = f.queued(440, |i| (i % 11) as i32).await;
    assert_eq!(queued.len(), 440);
    let raw = f.db.raw_client().await.unwrap();
    // Another app reschedules: every third row delayed by an hour, the
    // rest in the past with ties in groups of four.
    raw.batch_execute(
        "WITH n AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM task_executions) \
         UPDATE task_executions e SET run_after = CASE \
             WHEN n.k % 3 = 0 THEN now() + interval '1 hour' \
             ELSE now() - make_interval(secs => (n.k / 4) % 37) END \
         FROM n WHERE n.id = e.id",
    )
    .await
    .unwrap();
    let expected: Vec<uuid::Uuid> = raw
        .query(
            "SELECT id FROM task_executions WHERE status = 'pending' AND run_after <= now() \
             ORDER BY priority DESC, run_after, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(expected.len() > 250);
    for limit in [1u32, 2, 3, 7, 10, 64, 333, 1000] {
        let mut order = Vec::new();
        loop {
            let got = f.queue.claim("w", limit, LEASE).await.unwrap();
            assert!(got.len() <= limit as usize);
            if got.is_empty() {
                break;
            }
            order.extend(got.iter().map(|c| c.execution.id.as_uuid()));
        }
        assert_eq!(order.len(), expected.len(), "limit {limit}: how many");
        assert!(order == expected, "limit {limit}: claim order differs");
        raw.batch_execute(
            "UPDATE task_executions SET status = 'pending', worker_id = NULL, started_at = NULL, \
               lease_expires_at = NULL, heartbeat_at = NULL, attempt = 0 WHERE status = 'running'; \
             UPDATE tasks SET status = 'pending' WHERE status = 'running'",
        )
        .await
        .unwrap();
    }
}

// ------------------------------------------- 8. updated_at and polling

/// Another application updates executions with notify_events off, setting
/// updated_at itself (to the past, to the future, to its own now()) or not
/// at all: every row ends with its transaction's now(), and the polling
/// stream reports each status change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_updates_with_odd_updated_at_are_stamped_and_polled() {
    let f = fixture().await;
    let queued = f.queued(4, |_| 0).await;
    let mut events =
        f.db.subscribe_polling(Duration::from_millis(10), Duration::ZERO)
            .await
            .unwrap();
    let other = outside(&f).await;
    other
        .batch_execute("SET voidrunner.notify_events = off")
        .await
        .unwrap();
    let mut expected = HashSet::new();
    for (e, set) in queued.iter().zip([
        ", updated_at = '2000-01-01'",
        ", updated_at = '9999-01-01'",
        ", updated_at = now()",
        "",
    ]) {
        other.batch_execute("BEGIN").await.unwrap();
        let now: std::time::SystemTime = other.query_one("SELECT now()", &[]).await.unwrap().get(0);
        let sql = format!(
            "UPDATE task_executions SET status = 'cancelled', completed_at = now(){set} \
             WHERE id = $1 RETURNING updated_at"
        );
        let stamped: std::time::SystemTime = other.query_one(&sql, &[&e.id]).await.unwrap().get(0);
        other
            .execute(
                "UPDATE tasks SET status = 'cancelled', updated_at = '2001-01-01' WHERE id = $1",
                &[&e.task_id],
            )
            .await
            .unwrap();
        let task_stamp: std::time::SystemTime = other
            .query_one("SELECT updated_at FROM tasks WHERE id = $1", &[&e.task_id])
            .await
            .unwrap()
            .get(0);
        other.batch_execute("COMMIT").await.unwrap();
        assert_eq!(stamped, now, "execution updated_at {set:?}");
        assert_eq!(task_stamp, now, "task updated_at");
        expected.insert(e.id);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !expected.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the polling stream missed {expected:?}"
        );
        match tokio::time::timeout(Duration::from_secs(20), events.next()).await {
            Ok(Some(Event::Execution(ev))) => {
                if ev.kind == EventKind::Cancelled {
                    expected.remove(&ev.execution_id);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("no event; missing {expected:?}"),
        }
    }
}
