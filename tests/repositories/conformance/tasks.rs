//! The tasks repository's contracts.

use voidrunner_db::{
    NewTask, PageRequest, Result, TaskId, TaskRepository, TaskStatus, TaskUpdate, UserId,
};

use super::{Set, contracts};

contracts! {
    round_trip_then_an_orphan => Ending::OnARefusal,
}

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
    // Last: a task of nobody is a foreign-key error.
    let err = s
        .tasks
        .create(NewTask::new(UserId::new(), "orphan", "print(1)"))
        .await
        .expect_err("no such user");
    assert!(err.is_foreign_key(), "{err:?}");
    Ok(())
}
