//! One owner of each status change (issue #7 §2): at most one active
//! execution per task, cancelled work never runs, running always leased.

use std::sync::Arc;

use voidrunner_db::{
    Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewExecution, Outcome,
    RescuePolicy, TaskRepository, TaskStatus,
};

use crate::{LEASE, fixture};

#[tokio::test]
async fn a_retried_enqueue_returns_the_active_execution() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let first = f.queue.enqueue(task.id, None).await.unwrap();
    let again = f.queue.enqueue(task.id, None).await.unwrap();
    assert_eq!(again.id, first.id);
    let many = f
        .queue
        .enqueue_many(vec![task.id, task.id], None)
        .await
        .unwrap();
    assert_eq!(many.iter().map(|e| e.id).collect::<Vec<_>>(), [first.id; 2]);
    let via_create = f
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_eq!(via_create.id, first.id);

    let claimed = f.queue.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // Still the same one while it runs.
    assert_eq!(f.queue.enqueue(task.id, None).await.unwrap().id, first.id);
    f.queue
        .complete(first.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    assert!(f.queue.claim("w", 10, LEASE).await.unwrap().is_empty());
    let completed: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE task_id = $1 AND status = 'completed'",
            &[&task.id],
        )
        .await;
    assert_eq!(completed, 1, "the task ran once");
}

#[tokio::test]
async fn concurrent_enqueues_of_one_task_queue_it_once() {
    let f = fixture().await;
    for round in 0..20 {
        let task = f.task(&format!("t{round}"), 0).await;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let queue = f.queue.clone();
            calls.spawn(async move { queue.enqueue(task.id, None).await.map(|e| e.id) });
        }
        let ids: Vec<_> = calls
            .join_all()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        assert_eq!(f.executions.count_by_task(task.id).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_pending_execution() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    let cancelled = f
        .tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let execution = f.executions.get(execution.id).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Cancelled);
    assert!(execution.completed_at.is_some());
    assert!(f.queue.claim("w", 10, LEASE).await.unwrap().is_empty());

    // A retry queues it again, with a new execution.
    let retry = f.queue.enqueue(task.id, None).await.unwrap();
    assert_ne!(retry.id, execution.id);
    assert_eq!(f.queue.claim("w", 10, LEASE).await.unwrap().len(), 1);
}

#[tokio::test]
async fn cancelling_a_task_tells_its_running_worker() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    let err = f
        .queue
        .heartbeat(execution.id, "w", LEASE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LeaseLost {
                reason: voidrunner_db::LeaseLostReason::Cancelled,
                ..
            }
        ),
        "{err:?}"
    );
    let err = f
        .queue
        .complete(execution.id, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn work_of_a_task_that_is_not_pending_is_never_claimed() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    // Another application cancels the task behind the crate's back.
    f.scalar::<i64>(
        "WITH u AS (UPDATE tasks SET status = 'cancelled' WHERE id = $1 RETURNING 1) \
         SELECT count(*) FROM u",
        &[&task.id],
    )
    .await;
    assert!(f.queue.claim("w", 10, LEASE).await.unwrap().is_empty());
    assert_eq!(
        f.executions.get(execution.id).await.unwrap().status,
        ExecutionStatus::Pending
    );
}

#[tokio::test]
async fn the_rescuer_never_retries_a_cancelled_task() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    // The worker died, and another application cancelled the task.
    f.scalar::<i64>(
        "WITH e AS (UPDATE task_executions SET lease_expires_at = now() - interval '1 second' \
                    WHERE id = $1 RETURNING 1), \
              t AS (UPDATE tasks SET status = 'cancelled' WHERE id = $2 RETURNING 1) \
         SELECT (SELECT count(*) FROM e) + (SELECT count(*) FROM t)",
        &[&execution.id, &task.id],
    )
    .await;
    let report = f
        .queue
        .rescue_expired(RescuePolicy::default())
        .await
        .unwrap();
    assert_eq!(report.timed_out, vec![execution.id]);
    assert!(report.retried.is_empty(), "{report:?}");
    assert_eq!(f.executions.count_by_task(task.id).await.unwrap(), 1);
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn creating_an_execution_follows_the_task_state_machine() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.queue
        .complete(execution.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let err = f
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                entity: "task",
                from: "completed",
                to: "pending"
            }
        ),
        "{err:?}"
    );
    assert_eq!(f.executions.count_by_task(task.id).await.unwrap(), 1);
    assert!(f.queue.claim("w", 10, LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_running_execution_always_has_a_lease() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    let err = f
        .executions
        .update_status(execution.id, ExecutionStatus::Running)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("status"), "{err:?}");
    assert_eq!(
        f.executions.get(execution.id).await.unwrap().status,
        ExecutionStatus::Pending
    );
    // Nor through the back door.
    let raw = f.db.raw_client().await.unwrap();
    let err = raw
        .execute(
            "UPDATE task_executions SET status = 'running' WHERE id = $1",
            &[&execution.id],
        )
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(
        err.constraint(),
        Some("task_executions_running_has_lease"),
        "{err:?}"
    );
    // The error arrives before the server has ended the failed statement's
    // transaction, which still locks the row: the claim below, on another
    // session (always so behind a transaction pooler), would skip it. A
    // round trip on the same session waits for the end.
    raw.batch_execute("").await.unwrap();
    drop(raw);

    let claimed = f.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert!(claimed.execution.lease_expires_at.is_some());
}

#[tokio::test]
async fn cancelling_a_claimed_execution_by_hand_cancels_its_task() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    let cancelled = f
        .executions
        .update_status(execution.id, ExecutionStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(cancelled.lease_expires_at, None);
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    // So the task can be queued again.
    let retry = f.queue.enqueue(task.id, None).await.unwrap();
    assert_ne!(retry.id, execution.id);

    // Ending a running execution by hand ends its task the same way.
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.executions
        .update_status(retry.id, ExecutionStatus::Failed)
        .await
        .unwrap();
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Failed
    );
}

#[tokio::test]
async fn task_statuses_owned_by_the_queue_are_refused_by_hand() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    for status in [
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Timeout,
    ] {
        let err = f.tasks.update_status(task.id, status).await.unwrap_err();
        assert_eq!(err.field(), Some("status"), "{status:?}: {err:?}");
    }
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );
}

/// Cancel and enqueue of one task raced: whatever order they take, a
/// cancelled task is left with no active execution, and an enqueued one
/// with exactly one.
#[tokio::test]
async fn cancel_and_enqueue_raced_keep_the_task_consistent() {
    let f = fixture().await;
    let f = Arc::new(f);
    for round in 0..100 {
        let task = f.task(&format!("t{round}"), 0).await;
        let (a, b) = (f.clone(), f.clone());
        let enqueue = tokio::spawn(async move { a.queue.enqueue(task.id, None).await });
        let cancel =
            tokio::spawn(
                async move { b.tasks.update_status(task.id, TaskStatus::Cancelled).await },
            );
        let enqueued = enqueue.await.unwrap();
        let cancelled = cancel.await.unwrap();
        let status = f.tasks.get(task.id).await.unwrap().status;
        let active: i64 = f
            .scalar(
                "SELECT count(*) FROM task_executions \
                 WHERE task_id = $1 AND status IN ('pending', 'running')",
                &[&task.id],
            )
            .await;
        match status {
            TaskStatus::Cancelled => assert_eq!(active, 0, "round {round}"),
            TaskStatus::Pending => {
                assert_eq!(active, 1, "round {round}");
                assert!(enqueued.is_ok(), "round {round}: {enqueued:?}");
            }
            other => panic!("round {round}: {other:?}"),
        }
        // Enqueue after the cancel is a retry; both orders are legal, and
        // neither call fails for another reason.
        if let Err(e) = &cancelled {
            panic!("round {round}: cancel failed: {e:?}");
        }
    }
}

#[tokio::test]
async fn deleting_an_active_execution_cancels_its_task() {
    let f = fixture().await;
    let pending_task = f.task("pending", 0).await;
    let pending = f.queue.enqueue(pending_task.id, None).await.unwrap();
    f.executions.delete(pending.id).await.unwrap();
    assert_eq!(
        f.tasks.get(pending_task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );

    let running_task = f.task("running", 0).await;
    let running = f.queue.enqueue(running_task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.executions.delete(running.id).await.unwrap();
    assert_eq!(
        f.tasks.get(running_task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );

    // Deleting an ended execution leaves its task alone.
    let done_task = f.task("done", 0).await;
    let done = f.queue.enqueue(done_task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.queue
        .complete(done.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    f.executions.delete(done.id).await.unwrap();
    assert_eq!(
        f.tasks.get(done_task.id).await.unwrap().status,
        TaskStatus::Failed
    );
    assert!(
        f.executions
            .delete(done.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // The cancelled tasks can be queued again.
    f.queue.enqueue(pending_task.id, None).await.unwrap();
    f.queue.enqueue(running_task.id, None).await.unwrap();
}
