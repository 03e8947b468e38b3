//! The tasks repository's contracts.

use serde_json::json;
use voidrunner_db::{
    Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, LeaseLostReason, NewExecution,
    NewTask, Outcome, Page, PageRequest, Result, ScriptType, Task, TaskId, TaskRepository,
    TaskStatus, TaskUpdate, UserId,
};

use super::{Set, contracts};
use crate::LEASE;

contracts! {
    create_get_round_trip_with_defaults => Ending::Clean,
    a_task_of_a_missing_user_is_a_foreign_key_error => Ending::Clean,
    invalid_tasks_are_refused_and_nothing_is_written => Ending::Clean,
    missing_tasks_are_not_found => Ending::Clean,
    partial_update_changes_only_what_it_sets => Ending::Clean,
    status_follows_the_state_machine => Ending::Clean,
    cancelling_a_task_cancels_its_active_execution => Ending::Clean,
    an_illegal_transition_reports_the_status_changed_by_someone_else => Ending::Clean,
    delete_removes_the_task_and_its_executions => Ending::Clean,
    lists_and_counts_by_user_and_status => Ending::Clean,
    metadata_search_uses_containment => Ending::Clean,
    round_trip_then_an_orphan => Ending::OnARefusal,
}

/// The statuses a task enters only through its execution, never by hand.
const SET_BY_THE_QUEUE: [TaskStatus; 4] = [
    TaskStatus::Running,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Timeout,
];

async fn create_get_round_trip_with_defaults(s: &Set) -> Result<()> {
    let user = s.user("owner@example.com").await;
    let task = s
        .tasks
        .create(
            NewTask::new(user.id, "report", "echo hi")
                .script_type(ScriptType::Bash)
                .priority(7)
                .timeout_seconds(60)
                .description("nightly")
                .metadata(json!({"team": "data", "tags": ["a", "b"]})),
        )
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(task.script_type, ScriptType::Bash);
    assert_eq!((task.priority, task.timeout_seconds), (7, 60));
    assert_eq!(task.id.as_uuid().get_version_num(), 7, "UUIDv7 ids");
    assert_eq!(s.tasks.get(task.id).await.unwrap(), task);

    let plain = s.task(&user, "plain").await;
    assert_eq!(plain.script_type, ScriptType::Python);
    assert_eq!((plain.priority, plain.timeout_seconds), (0, 10));
    assert_eq!(plain.metadata, json!({}));
    assert_eq!(plain.description, None);
    let row = s
        .query_one(
            "SELECT script_type, status, metadata FROM tasks WHERE id = $1",
            &[&plain.id],
        )
        .await;
    assert_eq!(row.get::<_, String>(0), "python");
    assert_eq!(row.get::<_, String>(1), "pending");
    assert_eq!(row.get::<_, serde_json::Value>(2), json!({}));
    Ok(())
}

async fn a_task_of_a_missing_user_is_a_foreign_key_error(s: &Set) -> Result<()> {
    let err = s
        .refused(s.tasks.create(NewTask::new(UserId::new(), "orphan", "x")))
        .await;
    assert!(err.is_foreign_key(), "{err:?}");
    assert_eq!(err.constraint(), Some("tasks_user_id_fkey"));
    assert_eq!(s.count_rows("tasks").await, 0);
    Ok(())
}

async fn invalid_tasks_are_refused_and_nothing_is_written(s: &Set) -> Result<()> {
    let user = s.user("v@example.com").await;
    let cases = [
        (NewTask::new(user.id, "  ", "x"), "name"),
        (NewTask::new(user.id, "n".repeat(256), "x"), "name"),
        (NewTask::new(user.id, "n", ""), "script_content"),
        (NewTask::new(user.id, "n", "rm -rf /"), "script_content"),
        (
            NewTask::new(user.id, "n", "s".repeat(65536)),
            "script_content",
        ),
        (NewTask::new(user.id, "n", "x").priority(11), "priority"),
        (
            NewTask::new(user.id, "n", "x").timeout_seconds(3601),
            "timeout_seconds",
        ),
        (
            NewTask::new(user.id, "n", "x").description("d".repeat(1001)),
            "description",
        ),
        (
            NewTask::new(user.id, "n", "x").metadata(json!(["not", "an", "object"])),
            "metadata",
        ),
        (NewTask::new(user.id, "n\0", "x"), "name"),
    ];
    for (task, field) in cases {
        let err = s.tasks.create(task).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err:?}");
    }
    // Validation happens before the foreign key could be checked.
    let err = s
        .tasks
        .create(NewTask::new(UserId::new(), "", "x"))
        .await
        .unwrap_err();
    assert!(err.is_validation());
    assert_eq!(s.count_rows("tasks").await, 0);
    Ok(())
}

async fn missing_tasks_are_not_found(s: &Set) -> Result<()> {
    let id = TaskId::new();
    assert!(s.tasks.get(id).await.unwrap_err().is_not_found());
    assert!(
        s.tasks
            .update(
                id,
                TaskUpdate {
                    priority: Some(1),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        s.tasks
            .update(id, TaskUpdate::default())
            .await
            .unwrap_err()
            .is_not_found()
    );
    for to in [TaskStatus::Pending, TaskStatus::Cancelled] {
        let err = s.tasks.update_status(id, to).await.unwrap_err();
        assert!(err.is_not_found(), "{to}: {err:?}");
    }
    // The statuses set only by the queue are refused before any lookup.
    for to in SET_BY_THE_QUEUE {
        let err = s.tasks.update_status(id, to).await.unwrap_err();
        assert_eq!(err.field(), Some("status"), "{to}: {err:?}");
    }
    assert!(s.tasks.delete(id).await.unwrap_err().is_not_found());
    Ok(())
}

async fn partial_update_changes_only_what_it_sets(s: &Set) -> Result<()> {
    let user = s.user("p@example.com").await;
    let task = s
        .tasks
        .create(
            NewTask::new(user.id, "t", "print(1)")
                .description("first")
                .metadata(json!({"k": 1})),
        )
        .await
        .unwrap();

    let renamed = s
        .tasks
        .update(
            task.id,
            TaskUpdate {
                name: Some("renamed".into()),
                priority: Some(9),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.priority), ("renamed", 9));
    assert_eq!(renamed.description.as_deref(), Some("first"));
    assert_eq!(renamed.metadata, json!({"k": 1}));
    assert_eq!(renamed.script_content, task.script_content);
    s.assert_written_later(
        renamed.updated_at,
        task.updated_at,
        "update bumps updated_at",
    );
    assert_eq!(renamed.created_at, task.created_at);

    let cleared = s
        .tasks
        .update(
            task.id,
            TaskUpdate {
                description: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.description, None);
    assert_eq!(cleared.name, "renamed");

    let everything = s
        .tasks
        .update(
            task.id,
            TaskUpdate {
                name: Some("n2".into()),
                description: Some(Some("d2".into())),
                script_content: Some("console.log(1)".into()),
                script_type: Some(ScriptType::Javascript),
                priority: Some(0),
                timeout_seconds: Some(3600),
                metadata: Some(json!({"new": true})),
            },
        )
        .await
        .unwrap();
    assert_eq!(everything.script_type, ScriptType::Javascript);
    assert_eq!(everything.timeout_seconds, 3600);
    assert_eq!(everything.metadata, json!({"new": true}));
    assert_eq!(s.tasks.get(task.id).await.unwrap(), everything);

    let bad = s
        .tasks
        .update(
            task.id,
            TaskUpdate {
                script_content: Some("rm -rf /".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.field(), Some("script_content"));
    assert_eq!(
        s.tasks.get(task.id).await.unwrap(),
        everything,
        "nothing changed"
    );
    assert_eq!(
        s.tasks
            .update(task.id, TaskUpdate::default())
            .await
            .unwrap(),
        everything
    );
    Ok(())
}

async fn status_follows_the_state_machine(s: &Set) -> Result<()> {
    let user = s.user("s@example.com").await;
    let task = s.task(&user, "t").await;

    // Same → same is a no-op: no error, and the row is not even touched.
    let again = s
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert_eq!(again, task);
    assert_eq!(s.tasks.get(task.id).await.unwrap(), task);

    // Running and the end states belong to the queue: refused, nothing
    // written.
    for to in SET_BY_THE_QUEUE {
        let err = s.tasks.update_status(task.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Validation {
                    field: "status",
                    ..
                }
            ),
            "{to}: {err:?}"
        );
    }
    assert_eq!(s.tasks.get(task.id).await.unwrap(), task, "nothing changed");

    // Claimed: running. A running task is not retried.
    let e = s.start(task.id, "w").await;
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Running
    );
    let err = s
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                entity: "task",
                from: "running",
                to: "pending"
            }
        ),
        "{err:?}"
    );

    // Failed by its worker, then retried by hand.
    s.queue
        .complete(e.id, "w", Outcome::failed(2))
        .await
        .unwrap();
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Failed
    );
    let retried = s
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert_eq!(retried.status, TaskStatus::Pending);
    assert_eq!(s.tasks.get(task.id).await.unwrap(), retried);

    // Completed by its worker: final.
    let e = s.start(task.id, "w").await;
    s.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let completed = s.tasks.get(task.id).await.unwrap();
    assert_eq!(completed.status, TaskStatus::Completed);
    for to in [TaskStatus::Pending, TaskStatus::Cancelled] {
        let err = s.tasks.update_status(task.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    entity: "task",
                    from: "completed",
                    to: wanted,
                } if wanted == to.as_str()
            ),
            "completed is final: {err:?}"
        );
    }
    assert_eq!(s.tasks.get(task.id).await.unwrap(), completed);
    assert_eq!(
        s.executions.get(e.id).await.unwrap().status,
        ExecutionStatus::Completed
    );
    Ok(())
}

async fn cancelling_a_task_cancels_its_active_execution(s: &Set) -> Result<()> {
    let user = s.user("x@example.com").await;
    let task = s.task(&user, "t").await;
    let other = s.task(&user, "other").await;
    let pending = s
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    let others = s
        .executions
        .create(NewExecution::new(other.id))
        .await
        .unwrap();

    // Pending: the task and its pending execution are cancelled together,
    // and no worker gets the execution.
    let cancelled = s
        .tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let e = s.executions.get(pending.id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Cancelled);
    assert_eq!(e.started_at, None);
    assert!(e.completed_at.is_some());
    let claimed = s.claim("w", 10).await;
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![others.id],
        "only the other task's execution is claimed"
    );
    assert_eq!(
        s.tasks.get(other.id).await.unwrap().status,
        TaskStatus::Running
    );
    // Cancelled → cancelled is a no-op.
    assert_eq!(
        s.tasks
            .update_status(task.id, TaskStatus::Cancelled)
            .await
            .unwrap(),
        cancelled
    );

    // A retry by hand makes the task pending but queues nothing.
    s.tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert!(s.claim("w", 10).await.is_empty());

    // Running: the running execution is cancelled and its lease released;
    // its worker learns it was cancelled.
    let running = s.start(task.id, "w").await;
    assert_ne!(running.id, pending.id);
    s.tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    let e = s.executions.get(running.id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Cancelled);
    assert_eq!(e.lease_expires_at, None);
    assert!(e.completed_at.unwrap() >= e.started_at.unwrap());
    let err = s.queue.heartbeat(running.id, "w", LEASE).await.unwrap_err();
    assert_eq!(err.lease_lost_reason(), Some(LeaseLostReason::Cancelled));
    let err = s
        .queue
        .complete(running.id, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(err.lease_lost_reason(), Some(LeaseLostReason::Cancelled));
    assert_eq!(
        s.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );

    // The other task was left alone throughout.
    let e = s.executions.get(others.id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Running);
    assert_eq!(
        s.tasks.get(other.id).await.unwrap().status,
        TaskStatus::Running
    );
    Ok(())
}

async fn an_illegal_transition_reports_the_status_changed_by_someone_else(s: &Set) -> Result<()> {
    let user = s.user("race@example.com").await;
    let task = s.task(&user, "t").await;
    let e = s.start(task.id, "w").await;
    // The caller last saw the task running, from which cancelling is legal.
    let seen = s.tasks.get(task.id).await.unwrap();
    assert_eq!(seen.status, TaskStatus::Running);
    // Meanwhile its worker completes it.
    s.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let err = s
        .tasks
        .update_status(seen.id, TaskStatus::Cancelled)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                entity: "task",
                from: "completed",
                to: "cancelled"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        s.executions.get(e.id).await.unwrap().status,
        ExecutionStatus::Completed,
        "the refused cancel touched nothing"
    );
    Ok(())
}

async fn delete_removes_the_task_and_its_executions(s: &Set) -> Result<()> {
    let user = s.user("d@example.com").await;
    let task = s.task(&user, "t").await;
    let kept = s.task(&user, "kept").await;
    s.executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    s.executions
        .create(NewExecution::new(kept.id))
        .await
        .unwrap();
    s.tasks.delete(task.id).await.unwrap();
    assert!(s.tasks.get(task.id).await.unwrap_err().is_not_found());
    assert_eq!(s.count_rows("task_executions").await, 1);
    assert!(s.tasks.delete(task.id).await.unwrap_err().is_not_found());
    Ok(())
}

async fn lists_and_counts_by_user_and_status(s: &Set) -> Result<()> {
    let a = s.user("a@example.com").await;
    let b = s.user("b@example.com").await;
    let low = s
        .tasks
        .create(NewTask::new(a.id, "low", "x").priority(1))
        .await
        .unwrap();
    let high = s
        .tasks
        .create(NewTask::new(a.id, "high", "x").priority(9))
        .await
        .unwrap();
    let newer_low = s
        .tasks
        .create(NewTask::new(a.id, "newer low", "x").priority(1))
        .await
        .unwrap();
    let other = s
        .tasks
        .create(NewTask::new(b.id, "b's", "x").priority(5))
        .await
        .unwrap();
    // The only queued task, so the claim starts it.
    s.start(other.id, "w").await;

    let ids = |page: Page<Task>| page.items.into_iter().map(|t| t.id).collect::<Vec<_>>();
    // Priority first, then newest first.
    assert_eq!(
        ids(s.tasks.list(PageRequest::default()).await.unwrap()),
        vec![high.id, other.id, newer_low.id, low.id]
    );
    assert_eq!(
        ids(s
            .tasks
            .list_by_user(a.id, PageRequest::default())
            .await
            .unwrap()),
        vec![high.id, newer_low.id, low.id]
    );
    assert_eq!(
        ids(s
            .tasks
            .list_by_user(UserId::new(), PageRequest::default())
            .await
            .unwrap()),
        vec![]
    );
    assert_eq!(
        ids(s
            .tasks
            .list_by_status(TaskStatus::Running, PageRequest::default())
            .await
            .unwrap()),
        vec![other.id]
    );
    assert_eq!(
        ids(s
            .tasks
            .list_by_status(TaskStatus::Pending, PageRequest::first(2))
            .await
            .unwrap()),
        vec![high.id, newer_low.id]
    );

    assert_eq!(s.tasks.count().await.unwrap(), 4);
    assert_eq!(s.tasks.count_by_user(a.id).await.unwrap(), 3);
    assert_eq!(s.tasks.count_by_user(UserId::new()).await.unwrap(), 0);
    assert_eq!(
        s.tasks.count_by_status(TaskStatus::Pending).await.unwrap(),
        3
    );
    assert_eq!(
        s.tasks
            .count_by_status(TaskStatus::Completed)
            .await
            .unwrap(),
        0
    );
    let all = s.tasks.status_counts().await.unwrap();
    assert_eq!((all.total(), all.pending), (4, 3), "{all:?}");
    let of_a = s.tasks.status_counts_by_user(a.id).await.unwrap();
    assert_eq!(of_a.total(), 3, "{of_a:?}");
    assert_eq!(
        s.tasks.status_counts_by_user(UserId::new()).await.unwrap(),
        voidrunner_db::TaskStatusCounts::default()
    );

    let err = s
        .tasks
        .list_by_user(a.id, PageRequest::after("00", 5))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("cursor"));
    Ok(())
}

async fn metadata_search_uses_containment(s: &Set) -> Result<()> {
    let user = s.user("m@example.com").await;
    let make = |name: &'static str, metadata: serde_json::Value| {
        s.tasks
            .create(NewTask::new(user.id, name, "x").metadata(metadata))
    };
    let etl = make(
        "etl",
        json!({"team": "data", "env": {"region": "eu", "tier": 1}, "tags": ["nightly", "etl"]}),
    )
    .await
    .unwrap();
    let web = make(
        "web",
        json!({"team": "web", "env": {"region": "us"}, "tags": ["hourly"]}),
    )
    .await
    .unwrap();
    let etl_us = make(
        "etl-us",
        json!({"team": "data", "env": {"region": "us"}, "tags": ["etl"]}),
    )
    .await
    .unwrap();

    let search = |filter: serde_json::Value| {
        let tasks = &s.tasks;
        async move {
            let mut ids: Vec<TaskId> = tasks
                .search_by_metadata(filter, PageRequest::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|t| t.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<TaskId>| {
        v.sort();
        v
    };
    assert_eq!(
        search(json!({"team": "data"})).await,
        sorted(vec![etl.id, etl_us.id])
    );
    assert_eq!(
        search(json!({"env": {"region": "us"}})).await,
        sorted(vec![web.id, etl_us.id]),
        "nested objects"
    );
    assert_eq!(
        search(json!({"tags": ["etl"]})).await,
        sorted(vec![etl.id, etl_us.id]),
        "array elements"
    );
    assert_eq!(
        search(json!({"tags": ["etl", "nightly"]})).await,
        vec![etl.id]
    );
    assert_eq!(
        search(json!({"team": "data", "env": {"tier": 1}})).await,
        vec![etl.id]
    );
    assert_eq!(search(json!({"team": "nobody"})).await, vec![]);
    assert_eq!(
        search(json!({})).await.len(),
        3,
        "the empty object matches everything"
    );

    let err = s
        .tasks
        .search_by_metadata(json!(["etl"]), PageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("filter"));
    Ok(())
}

/// Update, list by user, count, cancel, import, delete; last, a task of
/// nobody, refused bare: in a transaction, the commit answers
/// `TransactionAborted`.
async fn round_trip_then_an_orphan(s: &Set) -> Result<()> {
    let user = s.user("owner@example.com").await;
    let id = s.task(&user, "first").await.id;
    let second = s.task(&user, "second").await.id;
    let renamed = s
        .tasks
        .update(
            id,
            TaskUpdate {
                name: Some("renamed".into()),
                priority: Some(7),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!((renamed.name.as_str(), renamed.priority), ("renamed", 7));
    let page = s
        .tasks
        .list_by_user(user.id, PageRequest::first(10))
        .await?;
    let order: Vec<TaskId> = page.items.iter().map(|t| t.id).collect();
    assert_eq!(order, vec![id, second], "priority first");
    assert_eq!(s.tasks.count_by_user(user.id).await?, 2);
    let cancelled = s.tasks.update_status(second, TaskStatus::Cancelled).await?;
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let imported = s
        .tasks
        .import(vec![NewTask::new(user.id, "copied", "print(2)")])
        .await?;
    assert_eq!(imported, 1);
    assert_eq!(s.tasks.count_by_user(user.id).await?, 3);
    s.tasks.delete(id).await?;
    assert!(s.tasks.get(id).await.unwrap_err().is_not_found());
    // The counts follow an import, a cancel and a delete.
    let counts = s.tasks.status_counts_by_user(user.id).await?;
    assert_eq!((counts.pending, counts.cancelled), (1, 1), "{counts:?}");
    // Last: a task of nobody is a foreign-key error.
    let err = s
        .tasks
        .create(NewTask::new(UserId::new(), "orphan", "print(1)"))
        .await
        .expect_err("no such user");
    assert!(err.is_foreign_key(), "{err:?}");
    Ok(())
}
