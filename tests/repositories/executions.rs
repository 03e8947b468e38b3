use std::sync::Arc;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Error, ExecutionId, ExecutionRepository, ExecutionStatus, ExecutionUpdate, NewExecution,
    PageRequest, PgExecutionRepository, TaskId, Timestamp,
};

use crate::repos;
#[allow(unused_imports)]
use voidrunner_db::{ExecutionRepository as _, TaskRepository as _};

#[tokio::test]
async fn create_get_and_foreign_key() {
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

    let err = r
        .executions
        .create(NewExecution::new(TaskId::new()))
        .await
        .unwrap_err();
    assert!(err.is_foreign_key(), "{err:?}");
    assert_eq!(err.constraint(), Some("task_executions_task_id_fkey"));
    assert_eq!(r.count_rows("task_executions").await, 1);
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
    assert!(
        r.executions
            .update_status(id, ExecutionStatus::Running)
            .await
            .unwrap_err()
            .is_not_found()
    );
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

    let err = r
        .executions
        .update_status(e.id, ExecutionStatus::Completed)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                entity: "execution",
                from: "pending",
                to: "completed"
            }
        ),
        "{err:?}"
    );

    let running = r
        .executions
        .update_status(e.id, ExecutionStatus::Running)
        .await
        .unwrap();
    let started = running
        .started_at
        .expect("started_at set on entering running");
    assert_eq!(running.completed_at, None);
    let err = r
        .executions
        .update_status(e.id, ExecutionStatus::Running)
        .await
        .unwrap_err();
    assert!(
        err.is_invalid_transition(),
        "running → running is not a transition: {err:?}"
    );

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
        done.status,
        ExecutionStatus::Running,
        "update leaves the status alone"
    );

    let completed = r
        .executions
        .update_status(e.id, ExecutionStatus::Completed)
        .await
        .unwrap();
    assert_eq!(completed.started_at, Some(started));
    assert!(completed.completed_at.unwrap() >= started);
    assert_eq!(completed.return_code, Some(0));
    assert_eq!(r.executions.get(e.id).await.unwrap(), completed);

    for to in ExecutionStatus::ALL {
        let err = r.executions.update_status(e.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    from: "completed",
                    ..
                }
            ),
            "end states are final: {err:?}"
        );
    }

    // pending → cancelled ends it without a start.
    let other = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    let cancelled = r
        .executions
        .update_status(other.id, ExecutionStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.started_at, None);
    assert!(cancelled.completed_at.is_some());
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
    // Only the database knows the stored start: its constraint answers.
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
    assert!(err.is_check_violation(), "{err:?}");
    assert_eq!(
        err.constraint(),
        Some("task_executions_completed_after_started")
    );
}

#[tokio::test]
async fn lists_latest_counts_and_delete() {
    let r = repos().await;
    let user = r.user("x@example.com").await;
    let t1 = r.task(&user, "t1").await;
    let t2 = r.task(&user, "t2").await;
    let a = r.executions.create(NewExecution::new(t1.id)).await.unwrap();
    let b = r.executions.create(NewExecution::new(t2.id)).await.unwrap();
    let c = r.executions.create(NewExecution::new(t1.id)).await.unwrap();
    r.executions
        .update_status(c.id, ExecutionStatus::Running)
        .await
        .unwrap();

    let ids = |page: voidrunner_db::Page<voidrunner_db::TaskExecution>| {
        page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
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
        vec![b.id, a.id]
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
    assert_eq!(
        r.executions
            .count_by_status(ExecutionStatus::Running)
            .await
            .unwrap(),
        1
    );

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

#[tokio::test]
async fn concurrent_starts_of_one_execution_have_one_winner() {
    let db = TestDatabase::with_config(|c| c.max_connections = 10)
        .await
        .unwrap();
    let r = crate::Repos {
        users: voidrunner_db::PgUserRepository::new(db.db().clone()),
        tasks: voidrunner_db::PgTaskRepository::new(db.db().clone()),
        executions: PgExecutionRepository::new(db.db().clone()),
        db,
    };
    let user = r.user("w@example.com").await;
    let task = r.task(&user, "t").await;
    let executions = Arc::new(r.executions.clone());
    for _ in 0..5 {
        let e = executions.create(NewExecution::new(task.id)).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let executions = executions.clone();
            let barrier = barrier.clone();
            racers.spawn(async move {
                barrier.wait().await;
                executions
                    .update_status(e.id, ExecutionStatus::Running)
                    .await
            });
        }
        let mut won = 0;
        while let Some(result) = racers.join_next().await {
            match result.unwrap() {
                Ok(_) => won += 1,
                Err(Error::InvalidTransition {
                    from: "running", ..
                }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(won, 1, "exactly one worker starts it");
    }
}
