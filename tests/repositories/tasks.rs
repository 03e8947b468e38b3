use std::sync::Arc;

use serde_json::json;
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Error, NewTask, PageRequest, PgTaskRepository, ScriptType, TaskId, TaskRepository, TaskStatus,
    TaskUpdate, UserId,
};

use crate::repos;
#[allow(unused_imports)]
use voidrunner_db::{ExecutionRepository as _, TaskRepository as _};

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
        r.db.client()
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
    assert!(
        r.tasks
            .update_status(id, TaskStatus::Running)
            .await
            .unwrap_err()
            .is_not_found()
    );
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

    let running = r
        .tasks
        .update_status(task.id, TaskStatus::Running)
        .await
        .unwrap();
    assert_eq!(running.status, TaskStatus::Running);
    // Same → same is a no-op: no error, and the row is not even touched.
    let again = r
        .tasks
        .update_status(task.id, TaskStatus::Running)
        .await
        .unwrap();
    assert_eq!(again, running);

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
    let failed = r
        .tasks
        .update_status(task.id, TaskStatus::Failed)
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    let retried = r
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert_eq!(retried.status, TaskStatus::Pending);
    r.tasks
        .update_status(task.id, TaskStatus::Running)
        .await
        .unwrap();
    r.tasks
        .update_status(task.id, TaskStatus::Completed)
        .await
        .unwrap();
    for to in [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        let err = r.tasks.update_status(task.id, to).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    from: "completed",
                    ..
                }
            ),
            "completed is final: {err:?}"
        );
    }
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Completed
    );
}

#[tokio::test]
async fn an_illegal_transition_reports_the_status_changed_by_someone_else() {
    let r = repos().await;
    let user = r.user("race@example.com").await;
    let task = r.task(&user, "t").await;
    r.tasks
        .update_status(task.id, TaskStatus::Running)
        .await
        .unwrap();
    // Another client completes it behind the repository's back.
    r.db.client()
        .await
        .unwrap()
        .execute(
            "UPDATE tasks SET status = 'completed' WHERE id = $1",
            &[&task.id],
        )
        .await
        .unwrap();
    let err = r
        .tasks
        .update_status(task.id, TaskStatus::Failed)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: "completed",
                to: "failed",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn concurrent_status_updates_have_one_winner() {
    let db = TestDatabase::with_config(|c| c.max_connections = 10)
        .await
        .unwrap();
    let tasks = Arc::new(PgTaskRepository::new(db.db().clone()));
    let users = voidrunner_db::PgUserRepository::new(db.db().clone());
    let user = voidrunner_db::UserRepository::create(
        &users,
        voidrunner_db::NewUser::new("c@example.com", voidrunner_db::PasswordHash::new("h")),
    )
    .await
    .unwrap();
    for round in 0..5 {
        let task = tasks
            .create(NewTask::new(user.id, format!("t{round}"), "x"))
            .await
            .unwrap();
        tasks
            .update_status(task.id, TaskStatus::Running)
            .await
            .unwrap();
        let targets = [
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Timeout,
        ];
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let tasks = tasks.clone();
            let barrier = barrier.clone();
            let to = targets[i % targets.len()];
            racers.spawn(async move {
                barrier.wait().await;
                (to, tasks.update_status(task.id, to).await)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = racers.join_next().await {
            results.push(joined.unwrap());
        }
        // One racer moved the task out of running; the state it chose is
        // final for the others. Racers that asked for that same state got a
        // no-op success; every other one got InvalidTransition naming it.
        let final_status = tasks.get(task.id).await.unwrap().status;
        assert!(
            targets.contains(&final_status),
            "round {round}: {final_status}"
        );
        for (to, result) in results {
            match result {
                Ok(t) => {
                    assert_eq!(
                        to, final_status,
                        "round {round}: a second transition got through"
                    );
                    assert_eq!(t.status, final_status);
                }
                Err(Error::InvalidTransition {
                    from, to: wanted, ..
                }) => {
                    assert_ne!(to, final_status);
                    assert_eq!(wanted, to.as_str());
                    assert_eq!(
                        from,
                        final_status.as_str(),
                        "losers see the winner's status"
                    );
                }
                Err(other) => panic!("{other:?}"),
            }
        }
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
    r.tasks
        .update_status(other.id, TaskStatus::Running)
        .await
        .unwrap();

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
