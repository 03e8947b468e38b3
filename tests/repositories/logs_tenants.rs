//! Whose log lines are whose (issue #21 §5, §6): an execution's lines go
//! with it however it goes (prune, its task's or user's delete, TRUNCATE),
//! follow its task to another user, and a user's scoped view and the
//! application role's raw SQL see only the scope's lines.

use std::time::Duration;

use voidrunner_db::{
    ExecutionQueue, LogRepository, LogScope, Outcome, PageRequest, ScopedLogRepository,
    TaskExecution, TaskRepository, UserRepository,
};

use crate::app_role::AppRole;
use crate::logs::{lines, running_task, stored};
use crate::{Repos, repos};

async fn logged(r: &Repos, user: &voidrunner_db::User, name: &str) -> TaskExecution {
    let e = running_task(r, user, name, "w").await;
    r.db.db()
        .logs()
        .append(e.id, "w", lines(0..4, name))
        .await
        .unwrap();
    e
}

#[tokio::test]
async fn an_executions_lines_go_with_it() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let kept = logged(&r, &b, "kept").await;

    // Pruned.
    let pruned = logged(&r, &a, "pruned").await;
    r.queue
        .complete(pruned.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    r.db.raw_client()
        .await
        .unwrap()
        .execute(
            "UPDATE task_executions SET started_at = now() - interval '3 days', \
             completed_at = now() - interval '2 days' WHERE id = $1",
            &[&pruned.id],
        )
        .await
        .unwrap();
    assert_eq!(
        r.queue
            .prune(Duration::from_secs(86_400), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(stored(&r, pruned.id).await, (0, 0));

    // Its task deleted.
    let task_gone = logged(&r, &a, "task gone").await;
    r.tasks.delete(task_gone.task_id).await.unwrap();
    assert_eq!(stored(&r, task_gone.id).await, (0, 0));

    // Its user deleted.
    let c = r.user("c@example.com").await;
    let user_gone = logged(&r, &c, "user gone").await;
    let also_gone = logged(&r, &c, "also gone").await;
    r.users.delete(c.id).await.unwrap();
    assert_eq!(stored(&r, user_gone.id).await, (0, 0));
    assert_eq!(stored(&r, also_gone.id).await, (0, 0));

    assert_eq!(stored(&r, kept.id).await, (4, 1));
    assert_eq!(r.count_rows("task_execution_logs").await, 4);

    // TRUNCATE of the executions truncates the logs, also when the same
    // statement names one of them (the trigger then leaves it be).
    let raw = r.db.raw_client().await.unwrap();
    raw.batch_execute("TRUNCATE task_executions").await.unwrap();
    assert_eq!(r.count_rows("task_execution_logs").await, 0);
    assert_eq!(r.count_rows("task_execution_log_chunks").await, 0);
    for sql in [
        "TRUNCATE task_executions, task_execution_logs",
        "TRUNCATE task_execution_log_chunks, task_executions",
        "TRUNCATE tasks, task_executions, task_execution_logs, task_execution_log_chunks CASCADE",
    ] {
        let e = logged(&r, &b, "again").await;
        assert_eq!(stored(&r, e.id).await, (4, 1));
        raw.batch_execute(sql).await.unwrap();
        assert_eq!(r.count_rows("task_execution_logs").await, 0, "{sql}");
        assert_eq!(r.count_rows("task_execution_log_chunks").await, 0, "{sql}");
    }
}

#[tokio::test]
async fn a_task_moved_to_another_user_takes_its_lines_along() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let moved = logged(&r, &a, "moved").await;
    let stays = logged(&r, &a, "stays").await;
    let raw = r.db.raw_client().await.unwrap();
    raw.execute(
        "UPDATE tasks SET user_id = $2 WHERE id = $1",
        &[&moved.task_id, &b.id],
    )
    .await
    .unwrap();
    let owners: Vec<(uuid::Uuid, i64)> = raw
        .query(
            "SELECT user_id, count(*) FROM (SELECT user_id FROM task_execution_logs \
               WHERE execution_id = $1 UNION ALL SELECT user_id FROM task_execution_log_chunks \
               WHERE execution_id = $1) x GROUP BY user_id",
            &[&moved.id.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(owners, [(b.id.as_uuid(), 5)]);
    let (as_a, as_b) = (r.db.db().scoped_logs(a.id), r.db.db().scoped_logs(b.id));
    assert_eq!(as_b.tail(moved.id, 10).await.unwrap().len(), 4);
    assert!(as_a.tail(moved.id, 10).await.unwrap_err().is_not_found());
    assert_eq!(as_a.tail(stays.id, 10).await.unwrap().len(), 4);
    let found = as_b.search("moved", PageRequest::first(10)).await.unwrap();
    assert_eq!(found.items.len(), 4);
    assert!(
        as_a.search("moved", PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_users_scoped_view_never_shows_another_users_lines() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let mine = logged(&r, &a, "shared").await;
    let theirs = logged(&r, &b, "shared").await;
    let as_a = r.db.db().scoped_logs(a.id);
    let page = PageRequest::first(10);

    assert_eq!(as_a.tail(mine.id, 10).await.unwrap().len(), 4);
    assert_eq!(
        as_a.page(mine.id, page.clone()).await.unwrap().items.len(),
        4
    );
    assert_eq!(
        as_a.read_after(mine.id, Some(1), 10)
            .await
            .unwrap()
            .lines
            .len(),
        2
    );
    assert!(as_a.tail(theirs.id, 10).await.unwrap_err().is_not_found());
    assert!(
        as_a.page(theirs.id, page.clone())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        as_a.read_after(theirs.id, None, 10)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let found = as_a.search("shared", page.clone()).await.unwrap();
    assert_eq!(found.items.len(), 4);
    assert!(found.items.iter().all(|m| m.line.execution_id == mine.id));
    assert!(
        as_a.search_task(theirs.task_id, "shared", page.clone())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // The unscoped repository's search of B is B's; A's scope never is.
    let theirs_found =
        r.db.db()
            .logs()
            .search(LogScope::User(b.id), "shared", page.clone())
            .await
            .unwrap();
    assert!(
        theirs_found
            .items
            .iter()
            .all(|m| m.line.execution_id == theirs.id)
    );
    // A cursor of B's page does not open A's view of it.
    let cursor =
        r.db.db()
            .logs()
            .page(theirs.id, PageRequest::first(1))
            .await
            .unwrap()
            .next_cursor
            .unwrap();
    assert!(
        as_a.page(theirs.id, PageRequest::after(cursor, 10))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// The lines and chunks `client` sees, and the lines of `theirs` it sees.
async fn visible(client: &tokio_postgres::Client, theirs: &TaskExecution) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM task_execution_logs), \
                    (SELECT count(*) FROM task_execution_log_chunks), \
                    (SELECT count(*) FROM task_execution_logs WHERE execution_id = $1)",
            &[&theirs.id.as_uuid()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The application role with SELECT on the log tables (as `roles.sql`
/// grants) and row-level security on for them.
async fn app_role_with_logs(r: &Repos) -> AppRole {
    let role = AppRole::create(&r.db).await;
    r.db.raw_client()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER TABLE task_execution_logs ENABLE ROW LEVEL SECURITY; \
             ALTER TABLE task_execution_log_chunks ENABLE ROW LEVEL SECURITY; \
             GRANT SELECT ON task_execution_logs, task_execution_log_chunks TO {};",
            role.name
        ))
        .await
        .unwrap();
    role
}

#[tokio::test]
async fn raw_sql_as_the_application_role_sees_only_the_scopes_lines() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let mine = logged(&r, &a, "mine").await;
    let theirs = logged(&r, &b, "theirs").await;
    let role = app_role_with_logs(&r).await;
    let app = role.database().await;
    let client = app.client().await.unwrap();
    // Scoped to nobody: nothing.
    assert_eq!(visible(&client, &theirs).await, (0, 0, 0));
    // Scoped to A: A's lines and chunks only, even asked for B's by id.
    client
        .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{}'", a.id))
        .await
        .unwrap();
    assert_eq!(visible(&client, &theirs).await, (4, 1, 0));
    // Reading a partition directly is refused: no grants on partitions.
    let err = client
        .query("SELECT count(*) FROM task_execution_logs_default", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    // Nor may it write or delete lines.
    for sql in [
        "DELETE FROM task_execution_logs",
        "UPDATE task_execution_logs SET line = 'x'",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
    drop(client);

    // The scoped view through the role's pool.
    let as_a = app.scoped_logs(a.id);
    assert_eq!(as_a.tail(mine.id, 10).await.unwrap().len(), 4);
    assert!(as_a.tail(theirs.id, 10).await.unwrap_err().is_not_found());
    let found = as_a
        .search("mine or theirs", PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 4);
    assert!(found.items.iter().all(|m| m.line.execution_id == mine.id));
    // The unscoped repository as the role sees no execution at all.
    let unscoped = app.logs();
    assert!(unscoped.tail(mine.id, 10).await.unwrap_err().is_not_found());
    assert!(
        unscoped
            .search(LogScope::User(a.id), "mine", PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(stored(&r, theirs.id).await, (4, 1));
}

#[tokio::test]
async fn the_application_roles_delete_of_its_task_takes_the_lines_along() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let mine = logged(&r, &a, "mine").await;
    let theirs = logged(&r, &b, "theirs").await;
    let role = app_role_with_logs(&r).await;
    let app = role.database().await;
    app.scoped(a.id).tasks.delete(mine.task_id).await.unwrap();
    assert_eq!(stored(&r, mine.id).await, (0, 0));
    assert_eq!(stored(&r, theirs.id).await, (4, 1));
    assert!(r.tasks.get(theirs.task_id).await.is_ok());
}
