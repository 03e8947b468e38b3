use voidrunner_db::{
    Error, ExecutionQueue, NewTask, ScriptType, TaskId, TaskRepository, TaskStatus, UserId,
};

use crate::fixture;

fn batch(user: UserId, n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|i| {
            NewTask::new(user, format!("bulk {i}"), format!("print({i})"))
                .priority((i % 11) as i32)
                .script_type(if i % 2 == 0 {
                    ScriptType::Python
                } else {
                    ScriptType::Bash
                })
                .metadata(serde_json::json!({"i": i}))
        })
        .collect()
}

#[tokio::test]
async fn create_many_returns_rows_in_input_order() {
    let f = fixture().await;
    let input = batch(f.user.id, 250);
    let created = f.tasks.create_many(input.clone()).await.unwrap();
    assert_eq!(created.len(), 250);
    for (task, new) in created.iter().zip(&input) {
        assert_eq!(
            (&task.name, task.priority, task.script_type, &task.metadata),
            (&new.name, new.priority, new.script_type, &new.metadata)
        );
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(f.tasks.get(task.id).await.unwrap(), *task);
    }
    assert!(f.tasks.create_many(Vec::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn bulk_paths_are_all_or_nothing() {
    let f = fixture().await;
    let mut input = batch(f.user.id, 10);
    input[7].script_content = "rm -rf /".into();
    let err = f.tasks.create_many(input.clone()).await.unwrap_err();
    assert_eq!(err.field(), Some("script_content"));
    assert!(err.to_string().contains("task 7"), "{err}");
    assert_eq!(
        f.tasks.import(input).await.unwrap_err().field(),
        Some("script_content")
    );

    let mut input = batch(f.user.id, 10);
    input[3].user_id = UserId::new();
    let err = f.tasks.create_many(input.clone()).await.unwrap_err();
    assert!(err.is_foreign_key(), "{err:?}");
    let err = f.tasks.import(input).await.unwrap_err();
    assert!(err.is_foreign_key(), "{err:?}");
    assert_eq!(err.constraint(), Some("tasks_user_id_fkey"));
    assert_eq!(f.tasks.count().await.unwrap(), 0, "nothing was written");
}

#[tokio::test]
async fn import_copies_rows_in() {
    let f = fixture().await;
    let input = batch(f.user.id, 3000);
    assert_eq!(f.tasks.import(input.clone()).await.unwrap(), 3000);
    assert_eq!(f.tasks.count_by_user(f.user.id).await.unwrap(), 3000);
    let stored: Vec<(String, i32, String, serde_json::Value, String)> = f
        .db
        .raw_client()
        .await
        .unwrap()
        .query(
            "SELECT name, priority, script_type, metadata, status FROM tasks ORDER BY (metadata->>'i')::int",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    for (row, new) in stored.iter().zip(&input) {
        assert_eq!(
            row,
            &(
                new.name.clone(),
                new.priority,
                new.script_type.as_str().to_owned(),
                new.metadata.clone(),
                "pending".to_owned()
            )
        );
    }
    let ids: Vec<uuid::Uuid> =
        f.db.raw_client()
            .await
            .unwrap()
            .query("SELECT id FROM tasks", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "UUIDv7 ids");
    assert_eq!(f.tasks.import(Vec::new()).await.unwrap(), 0);
}

#[tokio::test]
async fn enqueue_many_is_all_or_nothing_and_keeps_order() {
    let f = fixture().await;
    let tasks = f.tasks.create_many(batch(f.user.id, 20)).await.unwrap();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();

    let mut with_missing = ids.clone();
    with_missing.insert(5, TaskId::new());
    let err = f
        .queue
        .enqueue_many(with_missing.clone(), None)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        err.to_string().contains(&with_missing[5].to_string()),
        "{err}"
    );

    // ids[2] runs to completion: a completed task cannot be queued again.
    let first = f.queue.enqueue(ids[2], None).await.unwrap();
    f.queue.claim("w", 1, crate::LEASE).await.unwrap();
    f.queue
        .complete(first.id, "w", voidrunner_db::Outcome::completed(0))
        .await
        .unwrap();
    let err = f.queue.enqueue_many(ids.clone(), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: "completed",
                ..
            }
        ),
        "{err:?}"
    );
    let queued: i64 = f.scalar("SELECT count(*) FROM task_executions", &[]).await;
    assert_eq!(queued, 1, "nothing queued by the refused batches");

    // ids[2] failed instead: a failed task is queued again.
    f.db.raw_client()
        .await
        .unwrap()
        .execute(
            "UPDATE tasks SET status = 'failed' WHERE id = $1",
            &[&ids[2]],
        )
        .await
        .unwrap();
    let executions = f.queue.enqueue_many(ids.clone(), None).await.unwrap();
    assert_eq!(
        executions.iter().map(|e| e.task_id).collect::<Vec<_>>(),
        ids
    );
    for (e, t) in executions.iter().zip(&tasks) {
        assert_eq!(e.priority, t.priority);
    }
    assert_eq!(
        f.tasks.get(ids[2]).await.unwrap().status,
        TaskStatus::Pending,
        "failed → pending"
    );
    assert!(
        f.queue
            .enqueue_many(Vec::new(), None)
            .await
            .unwrap()
            .is_empty()
    );
}
