use std::sync::Arc;

use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionRepository, ExecutionStatus, ExecutionUpdate,
    LeaseLostReason, NewExecution, NewTask, Outcome, PageRequest, TaskId, TaskRepository,
    TaskStatus, Timestamp,
};

use crate::{repos, repos_with_pool};

#[tokio::test]
async fn create_get_and_missing_task() {
    let r = repos().await;
    let user = r.user("e@example.com").await;
    let task = r.task(&user, "t").await;
    let execution = r
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
    assert_eq!(r.executions.get(execution.id).await.unwrap(), execution);

    // Creating an execution queues its task, which is looked up (and
    // locked) first: a missing task is not found, and nothing is written.
    let missing = TaskId::new();
    let err = r
        .executions
        .create(NewExecution::new(missing))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "task", key } if *key == missing.to_string()),
        "{err:?}"
    );
    assert_eq!(r.count_rows("task_executions").await, 1);
}

#[tokio::test]
async fn create_returns_the_active_execution_of_its_task() {
    let r = repos().await;
    let user = r.user("i@example.com").await;
    let task = r.task(&user, "t").await;
    let first = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();

    // A pending execution is returned as it is, not duplicated.
    let again = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_eq!(again, first);
    // So is a running one.
    let claimed = r.claim("w", 1).await;
    assert_eq!(claimed.len(), 1);
    let running = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_eq!(running.id, first.id);
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!(running, claimed[0]);
    assert_eq!(r.executions.count_by_task(task.id).await.unwrap(), 1);

    // Once it has ended, the task can be queued again: a new execution, and
    // the task back to pending.
    r.queue
        .complete(first.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Failed
    );
    let retry = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_ne!(retry.id, first.id);
    assert_eq!(retry.status, ExecutionStatus::Pending);
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(r.executions.count_by_task(task.id).await.unwrap(), 2);

    // A cancelled task is queued again too.
    r.tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(
        r.executions.get(retry.id).await.unwrap().status,
        ExecutionStatus::Cancelled
    );
    let after_cancel = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    assert_ne!(after_cancel.id, retry.id);
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );

    // A completed task is not, and neither is a running task whose
    // execution is not active (here: set running by another client).
    let done = r.task(&user, "done").await;
    let e = r
        .executions
        .create(NewExecution::new(done.id))
        .await
        .unwrap();
    let claimed = r.claim("w", 10).await;
    assert!(claimed.iter().any(|c| c.id == e.id), "{claimed:?}");
    r.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let stuck = r.task(&user, "stuck").await;
    r.db.raw_client()
        .await
        .unwrap()
        .execute(
            "UPDATE tasks SET status = 'running' WHERE id = $1",
            &[&stuck.id],
        )
        .await
        .unwrap();
    for (task, from) in [(done.id, "completed"), (stuck.id, "running")] {
        let err = r
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
    assert_eq!(r.executions.count_by_task(done.id).await.unwrap(), 1);
    assert_eq!(r.executions.count_by_task(stuck.id).await.unwrap(), 0);
}

#[tokio::test]
async fn missing_executions_are_not_found() {
    let r = repos().await;
    let id = ExecutionId::new();
    assert!(r.executions.get(id).await.unwrap_err().is_not_found());
    assert!(
        r.executions
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
        r.executions
            .update(id, ExecutionUpdate::default())
            .await
            .unwrap_err()
            .is_not_found()
    );
    for to in ExecutionStatus::ALL {
        let err = r.executions.update_status(id, to).await.unwrap_err();
        assert!(err.is_not_found(), "{to}: {err:?}");
    }
    assert!(r.executions.delete(id).await.unwrap_err().is_not_found());
    assert_eq!(
        r.executions.latest_for_task(TaskId::new()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn lifecycle_sets_times_and_refuses_illegal_moves() {
    let r = repos().await;
    let user = r.user("l@example.com").await;
    let task = r.task(&user, "t").await;
    let e = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    // As the queue left it (queueing marks the task changed).
    let task = r.tasks.get(task.id).await.unwrap();

    for to in [ExecutionStatus::Completed, ExecutionStatus::Pending] {
        let err = r.executions.update_status(e.id, to).await.unwrap_err();
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
    let err = r
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
    assert_eq!(r.executions.get(e.id).await.unwrap(), e, "nothing changed");
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task, "nothing changed");

    let claimed = r.claim("w", 1).await;
    assert_eq!(claimed.len(), 1);
    let running = r.executions.get(e.id).await.unwrap();
    assert_eq!(running, claimed[0]);
    assert_eq!(running.status, ExecutionStatus::Running);
    let started = running
        .started_at
        .expect("started_at set on entering running");
    assert_eq!(running.completed_at, None);
    assert_eq!(running.worker_id.as_deref(), Some("w"));
    assert!(running.lease_expires_at.unwrap() > started, "{running:?}");
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Running
    );
    for to in [ExecutionStatus::Running, ExecutionStatus::Pending] {
        let err = r.executions.update_status(e.id, to).await.unwrap_err();
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

    let done = r
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

    let completed = r
        .executions
        .update_status(e.id, ExecutionStatus::Completed)
        .await
        .unwrap();
    assert_eq!(completed.status, ExecutionStatus::Completed);
    assert_eq!(completed.started_at, Some(started));
    assert!(completed.completed_at.unwrap() >= started);
    assert_eq!(completed.return_code, Some(0));
    assert_eq!(completed.lease_expires_at, None, "the lease is released");
    assert_eq!(r.executions.get(e.id).await.unwrap(), completed);
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Completed,
        "the running task follows its execution"
    );
    // The worker that held it finds it finished.
    let err = r
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
        let err = r.executions.update_status(e.id, to).await.unwrap_err();
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
    assert_eq!(r.executions.get(e.id).await.unwrap(), completed);

    // pending → cancelled ends it without a start, and cancels its task.
    let other_task = r.task(&user, "other").await;
    let other = r
        .executions
        .create(NewExecution::new(other_task.id))
        .await
        .unwrap();
    let cancelled = r
        .executions
        .update_status(other.id, ExecutionStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(cancelled.started_at, None);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(
        r.tasks.get(other_task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    assert!(r.claim("w", 10).await.is_empty(), "nothing left to run");
}

#[tokio::test]
async fn update_validates_and_maps_contradicting_times() {
    let r = repos().await;
    let user = r.user("u@example.com").await;
    let task = r.task(&user, "t").await;
    let e = r
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
            r.executions.update(e.id, update).await.unwrap_err().field(),
            Some(field)
        );
    }
    assert_eq!(r.executions.get(e.id).await.unwrap(), e, "nothing changed");

    let now = Timestamp::now();
    let before = Timestamp::from_unix_micros(now.unix_micros() - 1_000_000).unwrap();
    let set_start = r
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
    let err = r
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
    assert_eq!(r.executions.get(e.id).await.unwrap(), set_start);
}

#[tokio::test]
async fn lists_latest_counts_and_delete() {
    let r = repos().await;
    let user = r.user("x@example.com").await;
    // t1 outranks t2, so the claim below picks t1's execution.
    let t1 = r
        .tasks
        .create(NewTask::new(user.id, "t1", "x").priority(5))
        .await
        .unwrap();
    let t2 = r.task(&user, "t2").await;
    // a: t1's first run, failed; b: t2's, pending; c: t1's retry, running.
    let a = r.executions.create(NewExecution::new(t1.id)).await.unwrap();
    assert_eq!(ids_of(r.claim("w", 1).await), vec![a.id]);
    r.queue
        .complete(a.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    let b = r.executions.create(NewExecution::new(t2.id)).await.unwrap();
    let c = r.executions.create(NewExecution::new(t1.id)).await.unwrap();
    assert_eq!(ids_of(r.claim("w", 1).await), vec![c.id]);

    let ids = |page: voidrunner_db::Page<voidrunner_db::TaskExecution>| ids_of(page.items);
    assert_eq!(
        ids(r.executions.list(PageRequest::default()).await.unwrap()),
        vec![c.id, b.id, a.id]
    );
    assert_eq!(
        ids(r
            .executions
            .list_by_task(t1.id, PageRequest::default())
            .await
            .unwrap()),
        vec![c.id, a.id]
    );
    let first = r
        .executions
        .list_by_task(t1.id, PageRequest::first(1))
        .await
        .unwrap();
    let rest = r
        .executions
        .list_by_task(t1.id, PageRequest::first(1).next(&first).unwrap())
        .await
        .unwrap();
    assert_eq!((ids(first), ids(rest.clone())), (vec![c.id], vec![a.id]));
    assert_eq!(rest.next_cursor, None);
    assert_eq!(
        ids(r
            .executions
            .list_by_status(ExecutionStatus::Pending, PageRequest::default())
            .await
            .unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(r
            .executions
            .list_by_status(ExecutionStatus::Running, PageRequest::default())
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(r
            .executions
            .list_by_status(ExecutionStatus::Failed, PageRequest::default())
            .await
            .unwrap()),
        vec![a.id]
    );

    assert_eq!(
        r.executions
            .latest_for_task(t1.id)
            .await
            .unwrap()
            .map(|e| e.id),
        Some(c.id)
    );
    assert_eq!(r.executions.count().await.unwrap(), 3);
    assert_eq!(r.executions.count_by_task(t1.id).await.unwrap(), 2);
    for (status, n) in [
        (ExecutionStatus::Pending, 1),
        (ExecutionStatus::Running, 1),
        (ExecutionStatus::Failed, 1),
        (ExecutionStatus::Completed, 0),
    ] {
        assert_eq!(r.executions.count_by_status(status).await.unwrap(), n);
    }

    r.executions.delete(c.id).await.unwrap();
    assert_eq!(
        r.executions
            .latest_for_task(t1.id)
            .await
            .unwrap()
            .map(|e| e.id),
        Some(a.id)
    );
    assert!(r.executions.get(c.id).await.unwrap_err().is_not_found());
    assert_eq!(r.count_rows("task_executions").await, 2);

    // A task cursor is not an execution cursor.
    let task_page = r.tasks.list(PageRequest::first(1)).await.unwrap();
    let err = r
        .executions
        .list(PageRequest::after(task_page.next_cursor.unwrap(), 1))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("cursor"));
}

fn ids_of(executions: Vec<voidrunner_db::TaskExecution>) -> Vec<ExecutionId> {
    executions.into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn concurrent_starts_and_ends_of_one_execution_have_one_winner() {
    let r = Arc::new(repos_with_pool(10).await);
    let user = r.user("w@example.com").await;
    let ends = [
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
    ];
    for round in 0..5 {
        let task = r.task(&user, &format!("t{round}")).await;
        let e = r
            .executions
            .create(NewExecution::new(task.id))
            .await
            .unwrap();

        // Ten workers claim at once: one gets the execution, the others
        // nothing.
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let r = r.clone();
            let barrier = barrier.clone();
            racers.spawn(async move {
                let worker = format!("w{i}");
                barrier.wait().await;
                let claimed = r.claim(&worker, 1).await;
                (worker, claimed)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = racers.join_next().await {
            let (worker, claimed) = joined.unwrap();
            if !claimed.is_empty() {
                assert_eq!(ids_of(claimed), vec![e.id], "round {round}");
                winners.push(worker);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one worker starts it"
        );
        let running = r.executions.get(e.id).await.unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert_eq!(running.worker_id.as_ref(), Some(&winners[0]));
        assert_eq!(running.attempt, 1, "round {round}: claimed once");

        // Ten callers end it at once, in different ways: one wins, the
        // others are refused naming the winner's status, and the task
        // follows the winner.
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let r = r.clone();
            let barrier = barrier.clone();
            let to = ends[i % ends.len()];
            racers.spawn(async move {
                barrier.wait().await;
                (to, r.executions.update_status(e.id, to).await)
            });
        }
        let final_status = {
            let mut results = Vec::new();
            while let Some(joined) = racers.join_next().await {
                results.push(joined.unwrap());
            }
            let ended = r.executions.get(e.id).await.unwrap();
            let mut won = 0;
            for (to, result) in results {
                match result {
                    Ok(x) => {
                        won += 1;
                        assert_eq!((x.status, &x), (to, &ended), "round {round}");
                    }
                    Err(Error::InvalidTransition {
                        entity: "execution",
                        from,
                        to: wanted,
                    }) => {
                        assert_eq!(wanted, to.as_str());
                        assert_eq!(
                            from,
                            ended.status.as_str(),
                            "round {round}: losers see the winner's status"
                        );
                    }
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }
            assert_eq!(won, 1, "round {round}: exactly one end got through");
            ended.status
        };
        assert_eq!(
            r.tasks.get(task.id).await.unwrap().status.as_str(),
            final_status.as_str(),
            "round {round}: the task follows the execution"
        );
    }
}
