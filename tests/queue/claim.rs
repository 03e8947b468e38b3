use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use voidrunner_db::{
    ExecutionId, ExecutionQueue, ExecutionStatus, NewTask, ScriptType, TaskRepository, TaskStatus,
    Timestamp,
};

use crate::{LEASE, fixture, fixture_with};

#[tokio::test]
async fn sixteen_claimers_take_5000_executions_exactly_once() {
    let f = fixture_with(|c| c.max_connections = 20).await;
    let queued = f.queued(5000, |i| (i % 11) as i32).await;
    assert_eq!(queued.len(), 5000);

    let queue = Arc::new(f.queue.clone());
    let claimed_total = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let queue = queue.clone();
        let claimed_total = claimed_total.clone();
        workers.spawn(async move {
            let worker = format!("worker-{w}");
            let mut mine = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while claimed_total.load(Ordering::SeqCst) < 5000 {
                assert!(tokio::time::Instant::now() < deadline, "claiming stalled");
                let batch = queue.claim(&worker, 10, LEASE).await.unwrap();
                if batch.is_empty() {
                    // Rows other claimers hold are skipped, not waited for.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                claimed_total.fetch_add(batch.len(), Ordering::SeqCst);
                for c in batch {
                    assert_eq!(c.execution.worker_id.as_deref(), Some(worker.as_str()));
                    mine.push(c.execution.id);
                }
            }
            (worker, mine)
        });
    }
    let mut all: Vec<ExecutionId> = Vec::new();
    let mut busy_workers = 0;
    while let Some(joined) = workers.join_next().await {
        let (_, mine) = joined.unwrap();
        busy_workers += usize::from(!mine.is_empty());
        all.extend(mine);
    }
    let unique: HashSet<ExecutionId> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        5000,
        "claimed {} rows for 5000 executions",
        all.len()
    );
    assert_eq!(unique.len(), 5000, "an execution was claimed twice");
    let expected: HashSet<ExecutionId> = queued.iter().map(|e| e.id).collect();
    assert_eq!(unique, expected, "an execution was lost");
    assert!(busy_workers > 1, "the work was shared");

    // The database agrees: every row running once, every task running.
    let running: i64 = f
        .scalar("SELECT count(*) FROM task_executions WHERE status = 'running' AND attempt = 1 AND worker_id IS NOT NULL", &[])
        .await;
    assert_eq!(running, 5000);
    let tasks_running: i64 = f
        .scalar("SELECT count(*) FROM tasks WHERE status = 'running'", &[])
        .await;
    assert_eq!(tasks_running, 5000);
    assert!(queue.claim("late", 10, LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn claims_take_highest_priority_then_oldest_and_respect_run_after() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for (name, priority) in [
        ("p3", 3),
        ("p10-old", 10),
        ("p0", 0),
        ("p10-new", 10),
        ("p5", 5),
    ] {
        let task = f.task(name, priority).await;
        ids.push((name, f.queue.enqueue(task.id, None).await.unwrap().id));
    }
    let later = f.task("later", 10).await;
    let in_an_hour =
        Timestamp::from_unix_micros(Timestamp::now().unix_micros() + 3_600_000_000).unwrap();
    let delayed = f.queue.enqueue(later.id, Some(in_an_hour)).await.unwrap();
    assert_eq!(delayed.run_after, in_an_hour);
    assert_eq!(delayed.priority, 10, "priority copied from the task");

    let mut order = Vec::new();
    loop {
        let batch = f.queue.claim("w", 1, LEASE).await.unwrap();
        let Some(c) = batch.into_iter().next() else {
            break;
        };
        let name = ids
            .iter()
            .find(|(_, id)| *id == c.execution.id)
            .map(|(n, _)| *n)
            .expect("not the delayed one");
        order.push(name);
    }
    assert_eq!(order, vec!["p10-old", "p10-new", "p5", "p3", "p0"]);

    // One claim of several returns them in claim order too.
    let f = fixture().await;
    for p in [1, 9, 4] {
        let t = f.task("t", p).await;
        f.queue.enqueue(t.id, None).await.unwrap();
    }
    let batch = f.queue.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(
        batch
            .iter()
            .map(|c| c.execution.priority)
            .collect::<Vec<_>>(),
        vec![9, 4, 1]
    );
}

#[tokio::test]
async fn a_claim_carries_what_the_worker_needs_and_moves_the_task() {
    let f = fixture().await;
    let task = f
        .tasks
        .create(
            NewTask::new(f.user.id, "js", "console.log(1)")
                .script_type(ScriptType::Javascript)
                .timeout_seconds(42)
                .priority(2),
        )
        .await
        .unwrap();
    let queued = f.queue.enqueue(task.id, None).await.unwrap();
    assert_eq!(
        (queued.status, queued.attempt, queued.worker_id.as_deref()),
        (ExecutionStatus::Pending, 0, None)
    );

    let before = Timestamp::now();
    let claimed = f
        .queue
        .claim("worker-a", 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(
        (c.script_content.as_str(), c.script_type, c.timeout_seconds),
        ("console.log(1)", ScriptType::Javascript, 42)
    );
    let e = &c.execution;
    assert_eq!(e.id, queued.id);
    assert_eq!(
        (e.status, e.attempt, e.worker_id.as_deref()),
        (ExecutionStatus::Running, 1, Some("worker-a"))
    );
    let started = e.started_at.expect("started_at");
    let lease = e.lease_expires_at.expect("lease").unix_micros() - started.unix_micros();
    assert_eq!(lease, 60_000_000, "lease = claim time + 60 s");
    assert!(started.unix_micros() >= before.unix_micros() - 1_000_000);
    assert_eq!(e.heartbeat_at, Some(started));
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Running
    );
    assert_eq!(
        voidrunner_db::ExecutionRepository::get(&f.executions, e.id)
            .await
            .unwrap(),
        *e
    );
}

#[tokio::test]
async fn bad_claims_are_refused_before_any_sql() {
    let f = fixture().await;
    for (worker, limit, lease, field) in [
        ("", 1, LEASE, "worker_id"),
        ("w\0", 1, LEASE, "worker_id"),
        ("w", 0, LEASE, "limit"),
        ("w", 1001, LEASE, "limit"),
        ("w", 1, Duration::ZERO, "lease"),
        ("w", 1, Duration::from_secs(25 * 3600), "lease"),
    ] {
        let err = f.queue.claim(worker, limit, lease).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err:?}");
    }
}
