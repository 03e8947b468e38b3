//! The executions repository's contracts.

use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionRepository, ExecutionStatus, ExecutionUpdate,
    LeaseLostReason, NewExecution, NewTask, Outcome, Page, PageRequest, Result, TaskExecution,
    TaskId, TaskRepository, TaskStatus, Timestamp,
};

use super::{Set, contracts};
use crate::ids_of;

contracts! {
    create_get_and_missing_task => Ending::Clean,
    create_returns_the_active_execution_of_its_task => Ending::Clean,
    missing_executions_are_not_found => Ending::Clean,
    lifecycle_sets_times_and_refuses_illegal_moves => Ending::Clean,
    update_validates_and_maps_contradicting_times => Ending::Clean,
    lists_latest_counts_and_delete => Ending::Clean,
}

async fn create_get_and_missing_task(s: &Set) -> Result<()> {
    let user = s.user("e@example.com").await;
    let task = s.task(&user, "t").await;
    let execution = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_eq!(execution.task_id, task.id);
    assert_eq!(execution.status, ExecutionStatus::Pending);
    assert_eq!(
        (
            execution.started_at,
            execution.completed_at,
            execution.return_code
        ),
        (None, None, None)
    );
    assert_eq!(s.executions.get(execution.id).await.unwrap(), execution);

    // Creating an execution queues its task, which is looked up (and
    // locked) first: a missing task is not found, and nothing is written.
    let missing = TaskId::new();
    let err = s
        .executions
        .create(NewExecution::new(missing))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "task", key } if *key == missing.to_string()),
        "{err:?}"
    );
    assert_eq!(s.count_rows("task_executions").await, 1);
    Ok(())
}

async fn create_returns_the_active_execution_of_its_task(s: &Set) -> Result<()> {
    let user = s.user("i@example.com").await;
    let task = s.task(&user, "t").await;
    let first = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();

    // A pending execution is returned as it is, not duplicated.
    let again = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_eq!(again, first);
    // So is a running one.
    let claimed = s.claim("w", 1).await;
    assert_eq!(claimed.len(), 1);
    let running = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_eq!(running.id, first.id);
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!(running, claimed[0]);
    assert_eq!(s.executions.count_by_task(task.id).await.unwrap(), 1);

    // Once it has ended, the task can be queued again: a new execution, and
    // the task back to pending.
    s.queue
        .complete(first.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Failed
    );
    let retry = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_ne!(retry.id, first.id);
    assert_eq!(retry.status, ExecutionStatus::Pending);
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(s.executions.count_by_task(task.id).await.unwrap(), 2);

    // A cancelled task is queued again too.
    s.tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(
        s.executions.get(retry.id).await.unwrap().status,
        ExecutionStatus::Cancelled
    );
    let after_cancel = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_ne!(after_cancel.id, retry.id);
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );

    // A completed task is not, and neither is a running task whose
    // execution is not active (here: set running by another client).
    let done = s.task(&user, "done").await;
    let e = s
        .executions
        .create(NewExecution::new(done.id))
        .await
        .unwrap();
    let claimed = s.claim("w", 10).await;
    assert!(claimed.iter().any(|c| c.id == e.id), "{claimed:?}");
    s.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let stuck = s.task(&user, "stuck").await;
    let changed = s
        .execute(
            "UPDATE tasks SET status = 'running' WHERE id = $1",
            &[&stuck.id],
        )
        .await;
    assert_eq!(changed, 1);
    for (task, from) in [(done.id, "completed"), (stuck.id, "running")] {
        let err = s
            .executions
            .create(NewExecution::new(task))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    entity: "task",
                    from: f,
                    to: "pending"
                } if f == from
            ),
            "{err:?}"
        );
    }
    assert_eq!(s.executions.count_by_task(done.id).await.unwrap(), 1);
    assert_eq!(s.executions.count_by_task(stuck.id).await.unwrap(), 0);
    Ok(())
}

async fn missing_executions_are_not_found(s: &Set) -> Result<()> {
    let id = ExecutionId::new();
    assert!(s.executions.get(id).await.unwrap_err().is_not_found());
    assert!(
        s.executions
            .update(
                id,
                ExecutionUpdate {
                    return_code: Some(0),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        s.executions
            .update(id, ExecutionUpdate::default())
            .await
            .unwrap_err()
            .is_not_found()
    );
    for to in ExecutionStatus::ALL {
        let err = s.executions.update_status(id, to).await.unwrap_err();
        assert!(err.is_not_found(), "{to}: {err:?}");
    }
    assert!(s.executions.delete(id).await.unwrap_err().is_not_found());
    assert_eq!(
        s.executions.latest_for_task(TaskId::new()).await.unwrap(),
        None
    );
    Ok(())
}

async fn lifecycle_sets_times_and_refuses_illegal_moves(s: &Set) -> Result<()> {
    let user = s.user("l@example.com").await;
    let task = s.task(&user, "t").await;
    let e = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    // As the queue left it (queueing marks the task changed).
    let task = s.tasks.get(task.id).await.unwrap();

    for to in [ExecutionStatus::Completed, ExecutionStatus::Pending] {
        let err = s.executions.update_status(e.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    entity: "execution",
                    from: "pending",
                    to: wanted,
                } if wanted == to.as_str()
            ),
            "{err:?}"
        );
    }
    // Only a claim starts an execution (and gives it its lease).
    let err = s
        .executions
        .update_status(e.id, ExecutionStatus::Running)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "status",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.executions.get(e.id).await.unwrap(), e, "nothing changed");
    assert_eq!(s.tasks.get(task.id).await.unwrap(), task, "nothing changed");

    let claimed = s.claim("w", 1).await;
    assert_eq!(claimed.len(), 1);
    let running = s.executions.get(e.id).await.unwrap();
    assert_eq!(running, claimed[0]);
    assert_eq!(running.status, ExecutionStatus::Running);
    let started = running
        .started_at
        .expect("started_at set on entering running");
    assert_eq!(running.completed_at, None);
    assert_eq!(running.worker_id.as_deref(), Some("w"));
    assert!(running.lease_expires_at.unwrap() > started, "{running:?}");
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Running
    );
    for to in [ExecutionStatus::Running, ExecutionStatus::Pending] {
        let err = s.executions.update_status(e.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    entity: "execution",
                    from: "running",
                    to: wanted,
                } if wanted == to.as_str()
            ),
            "{err:?}"
        );
    }

    let done = s
        .executions
        .update(
            e.id,
            ExecutionUpdate {
                return_code: Some(0),
                stdout: Some("hello\n".into()),
                stderr: Some(String::new()),
                execution_time_ms: Some(1234),
                memory_usage_bytes: Some(42 << 20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.stdout.as_deref(), Some("hello\n"));
    assert_eq!(
        (done.status, done.lease_expires_at),
        (ExecutionStatus::Running, running.lease_expires_at),
        "update leaves the status and the lease alone"
    );

    let completed = s
        .executions
        .update_status(e.id, ExecutionStatus::Completed)
        .await
        .unwrap();
    assert_eq!(completed.status, ExecutionStatus::Completed);
    assert_eq!(completed.started_at, Some(started));
    assert!(completed.completed_at.unwrap() >= started);
    assert_eq!(completed.return_code, Some(0));
    assert_eq!(completed.lease_expires_at, None, "the lease is released");
    assert_eq!(s.executions.get(e.id).await.unwrap(), completed);
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Completed,
        "the running task follows its execution"
    );
    // The worker that held it finds it finished.
    let err = s
        .queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(
        err.lease_lost_reason(),
        Some(LeaseLostReason::Finished),
        "{err:?}"
    );

    for to in ExecutionStatus::ALL {
        let err = s.executions.update_status(e.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    entity: "execution",
                    from: "completed",
                    to: wanted,
                } if wanted == to.as_str()
            ),
            "end states are final: {err:?}"
        );
    }
    assert_eq!(s.executions.get(e.id).await.unwrap(), completed);

    // pending → cancelled ends it without a start, and cancels its task.
    let other_task = s.task(&user, "other").await;
    let other = s
        .executions
        .create(NewExecution::new(other_task.id))
        .await
        .unwrap();
    let cancelled = s
        .executions
        .update_status(other.id, ExecutionStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(cancelled.started_at, None);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(
        s.tasks.get(other_task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    assert!(s.claim("w", 10).await.is_empty(), "nothing left to run");
    Ok(())
}

async fn update_validates_and_maps_contradicting_times(s: &Set) -> Result<()> {
    let user = s.user("u@example.com").await;
    let task = s.task(&user, "t").await;
    let e = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    for (update, field) in [
        (
            ExecutionUpdate {
                return_code: Some(256),
                ..Default::default()
            },
            "return_code",
        ),
        (
            ExecutionUpdate {
                return_code: Some(-1),
                ..Default::default()
            },
            "return_code",
        ),
        (
            ExecutionUpdate {
                execution_time_ms: Some(-1),
                ..Default::default()
            },
            "execution_time_ms",
        ),
        (
            ExecutionUpdate {
                memory_usage_bytes: Some(-1),
                ..Default::default()
            },
            "memory_usage_bytes",
        ),
        (
            ExecutionUpdate {
                stdout: Some("a\0b".into()),
                ..Default::default()
            },
            "stdout",
        ),
    ] {
        assert_eq!(
            s.executions.update(e.id, update).await.unwrap_err().field(),
            Some(field)
        );
    }
    assert_eq!(s.executions.get(e.id).await.unwrap(), e, "nothing changed");

    let now = Timestamp::now();
    let before = Timestamp::from_unix_micros(now.unix_micros() - 1_000_000).unwrap();
    let set_start = s
        .executions
        .update(
            e.id,
            ExecutionUpdate {
                started_at: Some(now),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        set_start.started_at,
        Some(now),
        "microsecond timestamps round-trip exactly"
    );
    // Checked against the stored start in the UPDATE itself: a validation
    // error (issue #8), not the CHECK's 23514, and nothing changes.
    let err = s
        .executions
        .update(
            e.id,
            ExecutionUpdate {
                completed_at: Some(before),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("completed_at"), "{err:?}");
    assert_eq!(s.executions.get(e.id).await.unwrap(), set_start);
    Ok(())
}

async fn lists_latest_counts_and_delete(s: &Set) -> Result<()> {
    let user = s.user("x@example.com").await;
    // t1 outranks t2, so the claim below picks t1's execution.
    let t1 = s
        .tasks
        .create(NewTask::new(user.id, "t1", "x").priority(5))
        .await
        .unwrap();
    let t2 = s.task(&user, "t2").await;
    // a: t1's first run, failed; b: t2's, pending; c: t1's retry, running.
    let a = s.executions.create(NewExecution::new(t1.id)).await.unwrap();
    assert_eq!(ids_of(s.claim("w", 1).await), vec![a.id]);
    s.queue
        .complete(a.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    let b = s.executions.create(NewExecution::new(t2.id)).await.unwrap();
    let c = s.executions.create(NewExecution::new(t1.id)).await.unwrap();
    assert_eq!(ids_of(s.claim("w", 1).await), vec![c.id]);

    let ids = |page: Page<TaskExecution>| ids_of(page.items);
    assert_eq!(
        ids(s.executions.list(PageRequest::default()).await.unwrap()),
        vec![c.id, b.id, a.id]
    );
    assert_eq!(
        ids(s
            .executions
            .list_by_task(t1.id, PageRequest::default())
            .await
            .unwrap()),
        vec![c.id, a.id]
    );
    let first = s
        .executions
        .list_by_task(t1.id, PageRequest::first(1))
        .await
        .unwrap();
    let rest = s
        .executions
        .list_by_task(t1.id, PageRequest::first(1).next(&first).unwrap())
        .await
        .unwrap();
    assert_eq!((ids(first), ids(rest.clone())), (vec![c.id], vec![a.id]));
    assert_eq!(rest.next_cursor, None);
    assert_eq!(
        ids(s
            .executions
            .list_by_status(ExecutionStatus::Pending, PageRequest::default())
            .await
            .unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(s
            .executions
            .list_by_status(ExecutionStatus::Running, PageRequest::default())
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(s
            .executions
            .list_by_status(ExecutionStatus::Failed, PageRequest::default())
            .await
            .unwrap()),
        vec![a.id]
    );

    assert_eq!(
        s.executions
            .latest_for_task(t1.id)
            .await
            .unwrap()
            .map(|e| e.id),
        Some(c.id)
    );
    assert_eq!(s.executions.count().await.unwrap(), 3);
    assert_eq!(s.executions.count_by_task(t1.id).await.unwrap(), 2);
    for (status, n) in [
        (ExecutionStatus::Pending, 1),
        (ExecutionStatus::Running, 1),
        (ExecutionStatus::Failed, 1),
        (ExecutionStatus::Completed, 0),
    ] {
        assert_eq!(s.executions.count_by_status(status).await.unwrap(), n);
    }

    s.executions.delete(c.id).await.unwrap();
    assert_eq!(
        s.executions
            .latest_for_task(t1.id)
            .await
            .unwrap()
            .map(|e| e.id),
        Some(a.id)
    );
    assert!(s.executions.get(c.id).await.unwrap_err().is_not_found());
    assert_eq!(s.count_rows("task_executions").await, 2);

    // A task cursor is not an execution cursor.
    let task_page = s.tasks.list(PageRequest::first(1)).await.unwrap();
    let err = s
        .executions
        .list(PageRequest::after(task_page.next_cursor.unwrap(), 1))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("cursor"));
    Ok(())
}
