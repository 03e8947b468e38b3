//! Completer and Heartbeater with several batches in flight: pools smaller
//! than max_in_flight, completions of one execution racing, a server killed
//! under batches in flight; and every queue call dropped at every poll
//! count on a pool of one, and hostile arguments.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::{
    Completer, CompleterConfig, Database, ExecutionQueue, ExecutionRepository, ExecutionStatus,
    Heartbeater, HeartbeaterConfig, Outcome, PageRequest, PgExecutionRepository, RescuePolicy,
    TaskRepository,
};

use crate::{LEASE, fixture, fixture_with};

/// Completer and Heartbeater with max_in_flight 4 (and 64) over a pool of
/// 1 or 2 connections while workers also claim: no deadlock, no error,
/// every execution completed exactly once.
async fn small_pool_run(max_connections: usize, max_in_flight: usize, executions: usize) {
    let f = fixture_with(|c| {
        c.max_connections = max_connections;
        c.min_connections = max_connections;
        c.wait_timeout = Duration::from_secs(5);
    })
    .await;
    let n = executions;
    f.queued(n, |i| (i % 11) as i32).await;
    let queue: Arc<dyn ExecutionQueue> = Arc::new(f.queue.clone());
    let completer = Completer::with_config(
        queue.clone(),
        CompleterConfig {
            flush_interval: Duration::from_micros(200),
            max_batch: 3,
            max_in_flight,
        },
    )
    .unwrap();
    let heartbeater = Heartbeater::with_config(
        queue.clone(),
        HeartbeaterConfig {
            flush_interval: Duration::from_micros(200),
            max_batch: 3,
            max_in_flight,
        },
    )
    .unwrap();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let queue = f.queue.clone();
            let completer = completer.clone();
            let heartbeater = heartbeater.clone();
            tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut done = Vec::new();
                let mut errors = Vec::new();
                let mut idle = 0;
                while idle < 20 {
                    let jobs = match queue.claim(&worker, 4, LEASE).await {
                        Ok(jobs) => jobs,
                        Err(e) => {
                            errors.push(format!("claim: {e}"));
                            continue;
                        }
                    };
                    if jobs.is_empty() {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    idle = 0;
                    let beats: Vec<_> = jobs
                        .iter()
                        .map(|j| heartbeater.heartbeat(j.execution.id, &worker, LEASE))
                        .collect();
                    for b in beats {
                        if let Err(e) = b.await {
                            errors.push(format!("heartbeat: {e}"));
                        }
                    }
                    let calls: Vec<_> = jobs
                        .iter()
                        .map(|j| {
                            (
                                j.execution.id,
                                completer.complete(j.execution.id, &worker, Outcome::completed(0)),
                            )
                        })
                        .collect();
                    for (id, c) in calls {
                        match c.await {
                            Ok(e) => {
                                assert_eq!(e.status, ExecutionStatus::Completed);
                                done.push(id);
                            }
                            Err(e) => errors.push(format!("complete {id}: {e}")),
                        }
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for w in workers {
        let (d, e) = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("workers hung: deadlock or starvation")
            .unwrap();
        all.extend(d);
        errors.extend(e);
    }
    completer.shutdown().await;
    heartbeater.shutdown().await;
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an execution completed twice");
    assert!(
        errors.is_empty(),
        "pool {max_connections}, in flight {max_in_flight}: {} errors, first: {:?}",
        errors.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(all.len(), n, "every execution completed once");
    let left: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status <> 'completed'",
            &[],
        )
        .await;
    assert_eq!(left, 0);
    let tasks_left: i64 = f
        .scalar(
            "SELECT count(*) FROM tasks WHERE status <> 'completed'",
            &[],
        )
        .await;
    assert_eq!(tasks_left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batchers_on_a_pool_of_one() {
    small_pool_run(1, 4, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batchers_on_a_pool_of_two_max_in_flight_64() {
    small_pool_run(2, 64, 300).await;
}

/// Two completions of one execution racing: one through a Completer with
/// many batches in flight, one direct, one through a second Completer.
/// Exactly one succeeds, the others get LeaseLost(Finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_completions_of_one_execution() {
    let f = fixture().await;
    f.queued(200, |_| 0).await;
    let mut jobs = Vec::new();
    while jobs.len() < 200 {
        jobs.extend(f.queue.claim("w", 100, LEASE).await.unwrap());
    }
    let queue: Arc<dyn ExecutionQueue> = Arc::new(f.queue.clone());
    let config = CompleterConfig {
        flush_interval: Duration::from_micros(100),
        max_batch: 5,
        max_in_flight: 8,
    };
    let a = Completer::with_config(queue.clone(), config).unwrap();
    let b = Completer::with_config(queue.clone(), config).unwrap();
    let mut calls = Vec::new();
    for j in &jobs {
        let id = j.execution.id;
        calls.push(tokio::spawn(a.complete(id, "w", Outcome::completed(0))));
        calls.push(tokio::spawn(a.complete(id, "w", Outcome::failed(1))));
        calls.push(tokio::spawn(b.complete(id, "w", Outcome::completed(0))));
        let q = f.queue.clone();
        calls.push(tokio::spawn(async move {
            q.complete(id, "w", Outcome::completed(0)).await
        }));
    }
    let mut ok = std::collections::HashMap::new();
    for c in calls {
        match c.await.unwrap() {
            Ok(e) => *ok.entry(e.id).or_insert(0) += 1,
            Err(e) => assert!(
                matches!(e, voidrunner_db::Error::LeaseLost { .. }),
                "unexpected error {e:?}"
            ),
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(ok.len(), 200);
    assert!(ok.values().all(|n| *n == 1), "completed twice");
}

/// Every queue call and list dropped at every poll count, on a pool of one
/// connection: afterwards the same pool works, nothing is half claimed, and
/// every task agrees with its executions.
#[tokio::test]
async fn dropped_queue_calls_on_a_pool_of_one() {
    let f = fixture_with(|c| {
        c.max_connections = 1;
        c.min_connections = 1;
    })
    .await;
    f.queued(400, |i| (i % 11) as i32).await;
    async fn poll_then_drop<F: std::future::Future>(future: F, polls: usize) -> Option<F::Output> {
        use std::task::{Context, Poll, Waker};
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..polls {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return Some(v);
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        None
    }
    let queue = f.queue.clone();
    let mut claimed_ids = Vec::new();
    for polls in 1..60 {
        if let Some(r) = poll_then_drop(queue.claim("dropper", 3, LEASE), polls).await {
            claimed_ids.extend(r.unwrap().into_iter().map(|j| j.execution.id));
        }
        let _ = poll_then_drop(f.tasks.list(PageRequest::first(50)), polls).await;
        let _ = poll_then_drop(
            f.executions
                .list_by_status(ExecutionStatus::Pending, PageRequest::first(50)),
            polls,
        )
        .await;
        let _ = poll_then_drop(
            f.db.transaction(|tx| async move {
                let jobs = tx.queue().claim("tx-dropper", 2, LEASE).await?;
                for j in &jobs {
                    tx.queue()
                        .complete(j.execution.id, "tx-dropper", Outcome::completed(0))
                        .await?;
                }
                Ok(jobs.len())
            }),
            polls,
        )
        .await;
        let _ = poll_then_drop(
            tokio::time::timeout(
                Duration::from_micros(polls as u64 * 50),
                queue.rescue_expired(RescuePolicy::default()),
            ),
            polls,
        )
        .await;
        // The pool of one still works, and sees a consistent queue.
        let page = f
            .tasks
            .list(PageRequest::first(1))
            .await
            .unwrap_or_else(|e| panic!("after {polls} polls: {e}"));
        assert_eq!(page.items.len(), 1);
    }
    // Every claim that committed is visible as running, with a running task;
    // every pending execution has a pending task.
    let bad: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
             WHERE (e.status = 'running' AND (t.status <> 'running' OR e.lease_expires_at IS NULL)) \
                OR (e.status = 'pending' AND t.status <> 'pending')",
            &[],
        )
        .await;
    assert_eq!(bad, 0, "tasks disagree with their executions");
    let orphans: i64 = f
        .scalar(
            "SELECT count(*) FROM tasks t WHERE t.status = 'running' AND NOT EXISTS \
             (SELECT 1 FROM task_executions x WHERE x.task_id = t.id AND x.status = 'running')",
            &[],
        )
        .await;
    assert_eq!(orphans, 0, "running tasks without a running execution");
    let no_owner: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status = 'running' AND worker_id IS NULL",
            &[],
        )
        .await;
    assert_eq!(no_owner, 0);
    // Everything still claimable is claimed by one more call, once the
    // server sessions of the connections dropped mid-call have left their
    // transactions (a dropped call closes its connection; its session
    // rolls back when the server or a pooler in between notices, and until
    // then holds its row locks, which a claim passes over). A pooler keeps
    // its server connections open, idle: only sessions still in a
    // transaction count.
    {
        let c = f.db.raw_client().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let others: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND backend_type = 'client backend' AND xact_start IS NOT NULL",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if others == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sessions of dropped calls lingered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let rest = f.queue.claim("last", 1000, LEASE).await.unwrap();
    let pending: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status = 'pending'",
            &[],
        )
        .await;
    assert_eq!(pending, 0, "claimed {} but some stayed pending", rest.len());
}

/// Hostile arguments: extreme limits, leases, run_after, prune ages, page
/// sizes and forged cursors. Each is a typed answer (no panic), and the
/// queue is as it was (or changed exactly as asked).
#[tokio::test]
async fn hostile_arguments() {
    use voidrunner_db::{Error, Timestamp};
    let f = fixture().await;
    let before: i64 = f.scalar("SELECT count(*) FROM task_executions", &[]).await;
    let q = &f.queue;
    for (limit, lease) in [
        (0u32, LEASE),
        (1001, LEASE),
        (u32::MAX, LEASE),
        (1, Duration::ZERO),
        (1, Duration::from_nanos(999_999)),
        (1, Duration::from_secs(24 * 3600 + 1)),
        (1, Duration::MAX),
    ] {
        let err = q.claim("w", limit, lease).await.unwrap_err();
        assert!(
            matches!(err, Error::Validation { .. }),
            "{limit} {lease:?}: {err:?}"
        );
    }
    for worker in ["", " ", &"x".repeat(256), "a\0b"] {
        let r = q.claim(worker, 1, LEASE).await;
        assert!(
            matches!(r, Err(Error::Validation { .. })),
            "worker {worker:?}: {r:?}"
        );
    }
    // Extremes that are valid: a lease of 1 ms and of 24 h, a claim of 1000
    // on an empty queue.
    assert!(
        q.claim("w", 1000, Duration::from_millis(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        q.claim("w", 1000, Duration::from_secs(24 * 3600))
            .await
            .unwrap()
            .is_empty()
    );
    // run_after at the edges the crate accepts.
    let early = f.task("early", 0).await;
    let late = f.task("late", 10).await;
    let oldest =
        Timestamp::from_unix_micros(voidrunner_db::validate::POSTGRES_MIN_UNIX_MICROS).unwrap();
    let too_old =
        Timestamp::from_unix_micros(voidrunner_db::validate::POSTGRES_MIN_UNIX_MICROS - 1);
    if let Some(t) = too_old {
        let err = q.enqueue(early.id, Some(t)).await.unwrap_err();
        assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    }
    let newest = Timestamp::from_unix_micros(253_402_300_799_999_999).unwrap(); // 9999-12-31
    q.enqueue(early.id, Some(oldest)).await.unwrap();
    q.enqueue(late.id, Some(newest)).await.unwrap();
    // The delayed priority-10 row is passed over, the 4713 BC row taken.
    let jobs = q.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].execution.task_id, early.id);
    assert_eq!(jobs[0].execution.run_after, oldest);
    // Rescue and prune extremes.
    for batch in [0u32, 1001, u32::MAX] {
        let r = q
            .rescue_expired(RescuePolicy {
                batch_size: batch,
                ..RescuePolicy::default()
            })
            .await;
        assert!(matches!(r, Err(Error::Validation { .. })), "{batch}: {r:?}");
    }
    let r = q
        .rescue_expired(RescuePolicy {
            max_attempts: -1,
            ..RescuePolicy::default()
        })
        .await;
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");
    let r = q
        .rescue_expired(RescuePolicy {
            retry_delay: Duration::MAX,
            ..RescuePolicy::default()
        })
        .await;
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");
    assert!(matches!(
        q.prune(LEASE, 0).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        q.prune(Duration::MAX, 1).await,
        Err(Error::Validation { .. })
    ));
    assert_eq!(
        q.prune(voidrunner_db::validate::MAX_PRUNE_AGE, u32::MAX)
            .await
            .unwrap(),
        0
    );
    // Completing the claimed one, then pruning with age 0 and batch
    // u32::MAX deletes exactly it.
    q.complete(jobs[0].execution.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(q.prune(Duration::ZERO, u32::MAX).await.unwrap(), 1);
    // Pages: limit 0 refused, u32::MAX capped at 100; forged cursors.
    let err = f.tasks.list(PageRequest::first(0)).await.unwrap_err();
    assert!(matches!(err, Error::Validation { .. }));
    let page = f.tasks.list(PageRequest::first(u32::MAX)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    for cursor in [
        "",
        "00",
        &"f".repeat(76),
        &"0".repeat(76),
        "zz",
        &"é".repeat(38),
    ] {
        let r = f
            .tasks
            .list(PageRequest {
                limit: Some(1),
                cursor: Some(cursor.to_owned()),
            })
            .await;
        assert!(
            matches!(r, Err(Error::Validation { .. })),
            "{cursor:?}: {r:?}"
        );
    }
    let after: i64 = f.scalar("SELECT count(*) FROM task_executions", &[]).await;
    assert_eq!(after, before + 1, "only the delayed execution is left");
}

/// A server killed while several batches of a Completer (max_in_flight 4,
/// max_batch 2) are in flight, some blocked on a task lock, others done:
/// every caller gets Ok (applied) or an error; after the restart, a
/// completion answered with an error was applied at most once (a second
/// complete gets Ok or LeaseLost Finished), and none answered Ok is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_under_batches_in_flight() {
    use voidrunner_db::testing::PrivateCluster;
    use voidrunner_db::{
        NewTask, NewUser, PasswordHash, PgTaskRepository, PgUserRepository, TaskRepository,
        UserRepository,
    };
    let cluster = PrivateCluster::start().await.unwrap();
    let mut config = cluster.config();
    config.min_connections = 1;
    config.max_connections = 6;
    config.connect_timeout = Duration::from_secs(2);
    let db = Database::connect(config).await.unwrap();
    db.migrate().await.unwrap();
    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new("kill@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let tasks = PgTaskRepository::new(db.clone());
    let queue = voidrunner_db::PgExecutionQueue::new(db.clone());
    for i in 0..20 {
        let t = tasks
            .create(NewTask::new(user.id, format!("t{i}"), "x"))
            .await
            .unwrap();
        queue.enqueue(t.id, None).await.unwrap();
    }
    let jobs = queue.claim("w", 20, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 20);
    let (locker, connection) = cluster
        .config()
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Block the tasks of jobs 0 and 7.
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM tasks WHERE id IN ('{}', '{}') FOR UPDATE",
            jobs[0].execution.task_id, jobs[7].execution.task_id
        ))
        .await
        .unwrap();
    let completer = Completer::with_config(
        Arc::new(queue.clone()),
        CompleterConfig {
            flush_interval: Duration::from_micros(100),
            max_batch: 2,
            max_in_flight: 4,
        },
    )
    .unwrap();
    let calls: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.execution.id,
                tokio::spawn(completer.complete(j.execution.id, "w", Outcome::completed(0))),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.stop_server().await.unwrap();
    let mut answered_ok = Vec::new();
    let mut answered_err = Vec::new();
    for (id, call) in calls {
        match tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("a caller hung")
            .unwrap()
        {
            Ok(_) => answered_ok.push(id),
            Err(e) => answered_err.push((id, e)),
        }
    }
    cluster.start_server().await.unwrap();
    eprintln!(
        "{} ok, {} errors: {:?}",
        answered_ok.len(),
        answered_err.len(),
        answered_err
            .iter()
            .map(|(_, e)| e.to_string())
            .take(3)
            .collect::<Vec<_>>()
    );
    // Not every batch was stuck: the lock held two tasks of (at most) two
    // batches; but with 4 in flight, the 3rd+ waited for room.
    let executions = PgExecutionRepository::new(db.clone());
    for id in &answered_ok {
        let mut e = executions.get(*id).await;
        for _ in 0..50 {
            if e.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            e = executions.get(*id).await;
        }
        assert_eq!(
            e.unwrap().status,
            ExecutionStatus::Completed,
            "{id} answered Ok"
        );
    }
    for (id, _) in &answered_err {
        let mut r = queue.complete(*id, "w", Outcome::completed(0)).await;
        for _ in 0..50 {
            match &r {
                Err(e) if e.is_unavailable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    r = queue.complete(*id, "w", Outcome::completed(0)).await;
                }
                _ => break,
            }
        }
        match r {
            Ok(e) => assert_eq!(e.status, ExecutionStatus::Completed),
            Err(voidrunner_db::Error::LeaseLost { reason, .. }) => {
                assert_eq!(reason, voidrunner_db::LeaseLostReason::Finished)
            }
            Err(e) => panic!("{id}: {e:?}"),
        }
    }
    completer.shutdown().await;
    db.close(Duration::from_secs(5)).await;
    cluster.destroy().await.unwrap();
}
