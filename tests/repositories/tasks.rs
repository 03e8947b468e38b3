use std::sync::Arc;

use serde_json::json;
use voidrunner_db::{
    Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, LeaseLostReason, NewExecution,
    NewTask, Outcome, PageRequest, PgTaskRepository, ScriptType, TaskId, TaskRepository,
    TaskStatus, TaskUpdate, UserId,
};

use crate::{LEASE, Repos, repos, repos_with_pool};

/// The statuses a task enters only through its execution, never by hand.
const SET_BY_THE_QUEUE: [TaskStatus; 4] = [
    TaskStatus::Running,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Timeout,
];

/// Queues `task` and claims its execution as `worker`: the task is running.
async fn start(r: &Repos, task: TaskId, worker: &str) -> voidrunner_db::TaskExecution {
    let queued = r.executions.create(NewExecution::new(task)).await.unwrap();
    let claimed = r.claim(worker, 1).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, queued.id);
    claimed.into_iter().next().unwrap()
}

#[tokio::test]
async fn create_get_round_trip_with_defaults() {
    let r = repos().await;
    let user = r.user("owner@example.com").await;
    let task = r
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
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task);

    let plain = r.task(&user, "plain").await;
    assert_eq!(plain.script_type, ScriptType::Python);
    assert_eq!((plain.priority, plain.timeout_seconds), (0, 10));
    assert_eq!(plain.metadata, json!({}));
    assert_eq!(plain.description, None);
    let row =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT script_type, status, metadata FROM tasks WHERE id = $1",
                &[&plain.id],
            )
            .await
            .unwrap();
    assert_eq!(row.get::<_, String>(0), "python");
    assert_eq!(row.get::<_, String>(1), "pending");
    assert_eq!(row.get::<_, serde_json::Value>(2), json!({}));
}

#[tokio::test]
async fn a_task_of_a_missing_user_is_a_foreign_key_error() {
    let r = repos().await;
    let err = r
        .tasks
        .create(NewTask::new(UserId::new(), "orphan", "x"))
        .await
        .unwrap_err();
    assert!(err.is_foreign_key(), "{err:?}");
    assert_eq!(err.constraint(), Some("tasks_user_id_fkey"));
    assert_eq!(r.count_rows("tasks").await, 0);
}

#[tokio::test]
async fn invalid_tasks_are_refused_and_nothing_is_written() {
    let r = repos().await;
    let user = r.user("v@example.com").await;
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
        let err = r.tasks.create(task).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err:?}");
    }
    // Validation happens before the foreign key could be checked.
    let err = r
        .tasks
        .create(NewTask::new(UserId::new(), "", "x"))
        .await
        .unwrap_err();
    assert!(err.is_validation());
    assert_eq!(r.count_rows("tasks").await, 0);

    let policy = voidrunner_db::validate::ValidationPolicy {
        script: voidrunner_db::validate::ScriptPolicy {
            deny_patterns: vec!["curl".into()],
        },
        ..Default::default()
    };
    let custom = PgTaskRepository::with_policy(r.db.db().clone(), policy);
    assert!(
        custom
            .create(NewTask::new(user.id, "n", "rm -rf /tmp/x"))
            .await
            .is_ok()
    );
    assert_eq!(
        custom
            .create(NewTask::new(user.id, "n", "CURL x"))
            .await
            .unwrap_err()
            .field(),
        Some("script_content")
    );
}

#[tokio::test]
async fn missing_tasks_are_not_found() {
    let r = repos().await;
    let id = TaskId::new();
    assert!(r.tasks.get(id).await.unwrap_err().is_not_found());
    assert!(
        r.tasks
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
        r.tasks
            .update(id, TaskUpdate::default())
            .await
            .unwrap_err()
            .is_not_found()
    );
    for to in [TaskStatus::Pending, TaskStatus::Cancelled] {
        let err = r.tasks.update_status(id, to).await.unwrap_err();
        assert!(err.is_not_found(), "{to}: {err:?}");
    }
    // The statuses set only by the queue are refused before any lookup.
    for to in SET_BY_THE_QUEUE {
        let err = r.tasks.update_status(id, to).await.unwrap_err();
        assert_eq!(err.field(), Some("status"), "{to}: {err:?}");
    }
    assert!(r.tasks.delete(id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn partial_update_changes_only_what_it_sets() {
    let r = repos().await;
    let user = r.user("p@example.com").await;
    let task = r
        .tasks
        .create(
            NewTask::new(user.id, "t", "print(1)")
                .description("first")
                .metadata(json!({"k": 1})),
        )
        .await
        .unwrap();

    let renamed = r
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
    assert!(
        renamed.updated_at > task.updated_at,
        "update bumps updated_at"
    );
    assert_eq!(renamed.created_at, task.created_at);

    let cleared = r
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

    let everything = r
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
    assert_eq!(r.tasks.get(task.id).await.unwrap(), everything);

    let bad = r
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
        r.tasks.get(task.id).await.unwrap(),
        everything,
        "nothing changed"
    );
    assert_eq!(
        r.tasks
            .update(task.id, TaskUpdate::default())
            .await
            .unwrap(),
        everything
    );
}

#[tokio::test]
async fn status_follows_the_state_machine() {
    let r = repos().await;
    let user = r.user("s@example.com").await;
    let task = r.task(&user, "t").await;

    // Same → same is a no-op: no error, and the row is not even touched.
    let again = r
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert_eq!(again, task);
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task);

    // Running and the end states belong to the queue: refused, nothing
    // written.
    for to in SET_BY_THE_QUEUE {
        let err = r.tasks.update_status(task.id, to).await.unwrap_err();
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
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task, "nothing changed");

    // Claimed: running. A running task is not retried.
    let e = start(&r, task.id, "w").await;
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Running
    );
    let err = r
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
    r.queue
        .complete(e.id, "w", Outcome::failed(2))
        .await
        .unwrap();
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Failed
    );
    let retried = r
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert_eq!(retried.status, TaskStatus::Pending);
    assert_eq!(r.tasks.get(task.id).await.unwrap(), retried);

    // Completed by its worker: final.
    let e = start(&r, task.id, "w").await;
    r.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let completed = r.tasks.get(task.id).await.unwrap();
    assert_eq!(completed.status, TaskStatus::Completed);
    for to in [TaskStatus::Pending, TaskStatus::Cancelled] {
        let err = r.tasks.update_status(task.id, to).await.unwrap_err();
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
    assert_eq!(r.tasks.get(task.id).await.unwrap(), completed);
    assert_eq!(
        r.executions.get(e.id).await.unwrap().status,
        ExecutionStatus::Completed
    );
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_active_execution() {
    let r = repos().await;
    let user = r.user("x@example.com").await;
    let task = r.task(&user, "t").await;
    let other = r.task(&user, "other").await;
    let pending = r
        .executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    let others = r
        .executions
        .create(NewExecution::new(other.id))
        .await
        .unwrap();

    // Pending: the task and its pending execution are cancelled together,
    // and no worker gets the execution.
    let cancelled = r
        .tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let e = r.executions.get(pending.id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Cancelled);
    assert_eq!(e.started_at, None);
    assert!(e.completed_at.is_some());
    let claimed = r.claim("w", 10).await;
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![others.id],
        "only the other task's execution is claimed"
    );
    assert_eq!(
        r.tasks.get(other.id).await.unwrap().status,
        TaskStatus::Running
    );
    // Cancelled → cancelled is a no-op.
    assert_eq!(
        r.tasks
            .update_status(task.id, TaskStatus::Cancelled)
            .await
            .unwrap(),
        cancelled
    );

    // A retry by hand makes the task pending but queues nothing.
    r.tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert!(r.claim("w", 10).await.is_empty());

    // Running: the running execution is cancelled and its lease released;
    // its worker learns it was cancelled.
    let running = start(&r, task.id, "w").await;
    assert_ne!(running.id, pending.id);
    r.tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap();
    let e = r.executions.get(running.id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Cancelled);
    assert_eq!(e.lease_expires_at, None);
    assert!(e.completed_at.unwrap() >= e.started_at.unwrap());
    let err = r.queue.heartbeat(running.id, "w", LEASE).await.unwrap_err();
    assert_eq!(err.lease_lost_reason(), Some(LeaseLostReason::Cancelled));
    let err = r
        .queue
        .complete(running.id, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(err.lease_lost_reason(), Some(LeaseLostReason::Cancelled));
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );

    // The other task was left alone throughout.
    let e = r.executions.get(others.id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Running);
    assert_eq!(
        r.tasks.get(other.id).await.unwrap().status,
        TaskStatus::Running
    );
}

#[tokio::test]
async fn an_illegal_transition_reports_the_status_changed_by_someone_else() {
    let r = repos().await;
    let user = r.user("race@example.com").await;
    let task = r.task(&user, "t").await;
    let e = start(&r, task.id, "w").await;
    // The caller last saw the task running, from which cancelling is legal.
    let seen = r.tasks.get(task.id).await.unwrap();
    assert_eq!(seen.status, TaskStatus::Running);
    // Meanwhile its worker completes it.
    r.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let err = r
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
        r.executions.get(e.id).await.unwrap().status,
        ExecutionStatus::Completed,
        "the refused cancel touched nothing"
    );
}

#[tokio::test]
async fn concurrent_status_updates_have_one_winner() {
    let r = Arc::new(repos_with_pool(10).await);
    let user = r.user("c@example.com").await;
    for round in 0..5 {
        let task = r.task(&user, &format!("t{round}")).await;
        let e = start(&r, task.id, "w").await;
        // Cancels of the task race ends of its running execution.
        let ends = [
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
            ExecutionStatus::Timeout,
        ];
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let r = r.clone();
            let barrier = barrier.clone();
            racers.spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    let result = r.tasks.update_status(task.id, TaskStatus::Cancelled).await;
                    ("cancelled", result.map(|t| t.status.as_str()))
                } else {
                    let to = ends[i / 2 % ends.len()];
                    let result = r.executions.update_status(e.id, to).await;
                    (to.as_str(), result.map(|x| x.status.as_str()))
                }
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = racers.join_next().await {
            results.push(joined.unwrap());
        }
        // One racer ended the run; the task and its execution agree on how,
        // and that end is final for the others: every loser got
        // InvalidTransition naming the winner's status.
        let final_status = r.tasks.get(task.id).await.unwrap().status.as_str();
        assert_eq!(
            r.executions.get(e.id).await.unwrap().status.as_str(),
            final_status,
            "round {round}"
        );
        assert_ne!(final_status, "running", "round {round}");
        let mut succeeded = 0;
        for (to, result) in results {
            match result {
                Ok(status) => {
                    assert_eq!(
                        (to, status),
                        (final_status, final_status),
                        "round {round}: a second transition got through"
                    );
                    succeeded += 1;
                }
                Err(Error::InvalidTransition {
                    from, to: wanted, ..
                }) => {
                    assert_eq!(wanted, to);
                    assert_eq!(
                        from, final_status,
                        "round {round}: losers see the winner's status"
                    );
                }
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        // A winning cancel makes the other four cancels no-ops; a winning
        // end leaves no other racer a success.
        let expected = if final_status == "cancelled" { 5 } else { 1 };
        assert_eq!(succeeded, expected, "round {round}: {final_status}");
    }
}

#[tokio::test]
async fn delete_removes_the_task_and_its_executions() {
    let r = repos().await;
    let user = r.user("d@example.com").await;
    let task = r.task(&user, "t").await;
    let kept = r.task(&user, "kept").await;
    r.executions
        .create(voidrunner_db::NewExecution::new(task.id))
        .await
        .unwrap();
    r.executions
        .create(voidrunner_db::NewExecution::new(kept.id))
        .await
        .unwrap();
    r.tasks.delete(task.id).await.unwrap();
    assert!(r.tasks.get(task.id).await.unwrap_err().is_not_found());
    assert_eq!(r.count_rows("task_executions").await, 1);
    assert!(r.tasks.delete(task.id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn lists_and_counts_by_user_and_status() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let low = r
        .tasks
        .create(NewTask::new(a.id, "low", "x").priority(1))
        .await
        .unwrap();
    let high = r
        .tasks
        .create(NewTask::new(a.id, "high", "x").priority(9))
        .await
        .unwrap();
    let newer_low = r
        .tasks
        .create(NewTask::new(a.id, "newer low", "x").priority(1))
        .await
        .unwrap();
    let other = r
        .tasks
        .create(NewTask::new(b.id, "b's", "x").priority(5))
        .await
        .unwrap();
    // The only queued task, so the claim starts it.
    start(&r, other.id, "w").await;

    let ids = |page: voidrunner_db::Page<voidrunner_db::Task>| {
        page.items.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    // Priority first, then newest first.
    assert_eq!(
        ids(r.tasks.list(PageRequest::default()).await.unwrap()),
        vec![high.id, other.id, newer_low.id, low.id]
    );
    assert_eq!(
        ids(r
            .tasks
            .list_by_user(a.id, PageRequest::default())
            .await
            .unwrap()),
        vec![high.id, newer_low.id, low.id]
    );
    assert_eq!(
        ids(r
            .tasks
            .list_by_user(UserId::new(), PageRequest::default())
            .await
            .unwrap()),
        vec![]
    );
    assert_eq!(
        ids(r
            .tasks
            .list_by_status(TaskStatus::Running, PageRequest::default())
            .await
            .unwrap()),
        vec![other.id]
    );
    assert_eq!(
        ids(r
            .tasks
            .list_by_status(TaskStatus::Pending, PageRequest::first(2))
            .await
            .unwrap()),
        vec![high.id, newer_low.id]
    );

    assert_eq!(r.tasks.count().await.unwrap(), 4);
    assert_eq!(r.tasks.count_by_user(a.id).await.unwrap(), 3);
    assert_eq!(r.tasks.count_by_user(UserId::new()).await.unwrap(), 0);
    assert_eq!(
        r.tasks.count_by_status(TaskStatus::Pending).await.unwrap(),
        3
    );
    assert_eq!(
        r.tasks
            .count_by_status(TaskStatus::Completed)
            .await
            .unwrap(),
        0
    );

    let err = r
        .tasks
        .list_by_user(a.id, PageRequest::after("00", 5))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("cursor"));
}

#[tokio::test]
async fn metadata_search_uses_containment() {
    let r = repos().await;
    let user = r.user("m@example.com").await;
    let make = |name: &'static str, metadata: serde_json::Value| {
        r.tasks
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
        let tasks = &r.tasks;
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

    let err = r
        .tasks
        .search_by_metadata(json!(["etl"]), PageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("filter"));
}
