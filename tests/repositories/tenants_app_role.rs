//! Tenant isolation as the application role: a LOGIN member of
//! `voidrunner_app` (see `app_role.rs`), which V9's row-level security
//! binds. The scoped checks of `tenants.rs` hold with the pool connecting
//! as that role; raw SQL through its connections sees and changes only the
//! rows of the user its transaction is scoped to, and nothing when it is
//! scoped to nobody; the unscoped repositories, as that role, see nothing
//! (they fail closed).
//!
//! The rows are made as the harness's superuser, which no policy binds.
//! Behind PgBouncer (`VOIDRUNNER_TEST_POOLER=pgbouncer`) the role's pool goes
//! through a PgBouncer in transaction mode of its own.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use voidrunner_db::{
    ExecutionQueue, ExecutionRepository, NewTask, PageRequest, PgExecutionQueue,
    PgExecutionRepository, PgTaskRepository, TaskId, TaskRepository, TaskStatus, TaskUpdate,
    UserId,
};

use crate::app_role::AppRole;
use crate::tenants::{Owned, fingerprint, foreign_ids_are_missing, missing, own_rows_work, owned};
use crate::{LEASE, Repos, repos};

type Params<'a> = &'a [(&'a (dyn ToSql + Sync), Type)];

async fn count(client: &Client, sql: &str, params: Params<'_>) -> i64 {
    client
        .query_typed_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn rows(client: &Client, sql: &str, params: Params<'_>) -> u64 {
    client
        .execute_typed(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The rows of tasks and of task_executions that `client` sees.
async fn visible(client: &Client) -> (i64, i64) {
    (
        count(client, "SELECT count(*) FROM tasks", &[]).await,
        count(client, "SELECT count(*) FROM task_executions", &[]).await,
    )
}

/// Two users' rows in every state, the role, and the superuser's count of
/// them (so a role that saw nothing because there was nothing to see would
/// not pass).
async fn two_users(r: &Repos) -> (Owned, Owned) {
    let a = owned(r, "a@example.com", "wa").await;
    let b = owned(r, "b@example.com", "wb").await;
    assert_eq!(r.count_rows("tasks").await, 14);
    assert_eq!(r.count_rows("task_executions").await, 12);
    (a, b)
}

/// `sql` run in a transaction scoped to `user` is refused with `state`;
/// the transaction is rolled back.
async fn refused_as(client: &Client, user: UserId, sql: &str, params: Params<'_>, state: SqlState) {
    client
        .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{user}'"))
        .await
        .unwrap();
    let result = client.execute_typed(sql, params).await;
    client.batch_execute("ROLLBACK").await.unwrap();
    match result {
        Err(e) if e.code() == Some(&state) => {}
        other => panic!("{sql} as {user}: expected {state:?}, got {other:?}"),
    }
}

/// Raw SQL through a pooled connection of the application role: scoped to
/// nobody it sees no task and no execution and changes none; scoped to A
/// (`SET LOCAL` in a transaction) it sees A's rows only, and no SELECT,
/// UPDATE or DELETE reaches B's, not even one without a WHERE clause; a
/// row written for B (an INSERT, or A's task handed to B) is refused with
/// 42501, an execution of B's task without an owner as the foreign key
/// refuses a missing task (the owner trigger cannot see B's task). Nothing
/// of B's changed, byte for byte.
#[tokio::test]
async fn raw_sql_as_the_application_role_sees_only_the_scopes_rows() {
    let r = repos().await;
    let (a, b) = two_users(&r).await;
    let role = AppRole::create(&r.db).await;
    let app = role.database().await;
    let before = fingerprint(&r).await;
    let client = app.client().await.unwrap();
    let b_tasks: Vec<TaskId> = b.tasks.iter().map(|t| t.id).collect();
    let (a_id, b_id) = (a.user.id, b.user.id);
    let by_b: Params = &[(&b_id, Type::UUID)];
    let b_task_ids: Params = &[(&b_tasks, Type::UUID_ARRAY)];

    // Scoped to nobody: nothing, read or written; an empty setting is
    // nobody too.
    assert_eq!(visible(&client).await, (0, 0));
    assert_eq!(rows(&client, "UPDATE tasks SET name = 'x'", &[]).await, 0);
    assert_eq!(rows(&client, "DELETE FROM tasks", &[]).await, 0);
    assert_eq!(
        rows(&client, "UPDATE task_executions SET stdout = 'x'", &[]).await,
        0
    );
    client
        .batch_execute("BEGIN; SET LOCAL voidrunner.user_id = ''")
        .await
        .unwrap();
    assert_eq!(visible(&client).await, (0, 0));
    client.batch_execute("ROLLBACK").await.unwrap();
    // A scope that is not a user id fails the statement, matching nothing.
    client
        .batch_execute("BEGIN; SET LOCAL voidrunner.user_id = 'everyone'")
        .await
        .unwrap();
    let bad = client
        .query_typed("SELECT count(*) FROM tasks", &[])
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    client.batch_execute("ROLLBACK").await.unwrap();

    // Scoped to A.
    client
        .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{a_id}'"))
        .await
        .unwrap();
    assert_eq!(
        visible(&client).await,
        (a.tasks.len() as i64, a.executions.len() as i64)
    );
    let b_rows = [
        "SELECT count(*) FROM tasks WHERE user_id = $1",
        "SELECT count(*) FROM task_executions WHERE user_id = $1",
        "SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
         WHERE t.user_id = $1",
    ];
    for sql in b_rows {
        assert_eq!(count(&client, sql, by_b).await, 0, "{sql}");
    }
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM tasks WHERE id = ANY($1)",
            b_task_ids
        )
        .await,
        0
    );
    let b_writes = [
        "UPDATE tasks SET name = 'taken' WHERE user_id = $1",
        "UPDATE task_executions SET stdout = 'taken' WHERE user_id = $1",
        "DELETE FROM tasks WHERE user_id = $1",
    ];
    for sql in b_writes {
        assert_eq!(rows(&client, sql, by_b).await, 0, "{sql}");
    }
    assert_eq!(
        rows(
            &client,
            "UPDATE tasks SET name = 'taken' WHERE id = ANY($1)",
            b_task_ids
        )
        .await,
        0
    );
    // Without a WHERE clause: A's rows, and only those.
    let mine = (a.tasks.len() as u64, a.executions.len() as u64);
    assert_eq!(
        rows(&client, "UPDATE task_executions SET stdout = 'mine'", &[]).await,
        mine.1
    );
    assert_eq!(
        rows(&client, "UPDATE tasks SET description = 'mine'", &[]).await,
        mine.0
    );
    assert_eq!(rows(&client, "DELETE FROM tasks", &[]).await, mine.0);
    client.batch_execute("ROLLBACK").await.unwrap();

    // Writes for B, each in a transaction scoped to A.
    let a_task = a.tasks[0].id;
    let b_task = b.tasks[0].id;
    refused_as(
        &client,
        a_id,
        "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'planted', 'x')",
        by_b,
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    refused_as(
        &client,
        a_id,
        "UPDATE tasks SET user_id = $1 WHERE id = $2",
        &[(&b_id, Type::UUID), (&a_task, Type::UUID)],
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    refused_as(
        &client,
        a_id,
        "INSERT INTO task_executions (task_id, user_id) VALUES ($1, $2)",
        &[(&b_task, Type::UUID), (&b_id, Type::UUID)],
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    refused_as(
        &client,
        a_id,
        "INSERT INTO task_executions (task_id) VALUES ($1)",
        &[(&b_task, Type::UUID)],
        SqlState::FOREIGN_KEY_VIOLATION,
    )
    .await;
    // Scoped to nobody, not even a task of A's may be written.
    let result = client
        .execute_typed(
            "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'planted', 'x')",
            &[(&a_id, Type::UUID)],
        )
        .await;
    assert_eq!(
        result.unwrap_err().code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    );

    // The same connection, back to the pool and out again: scoped to
    // nobody.
    drop(client);
    assert_eq!(visible(&app.client().await.unwrap()).await, (0, 0));
    assert_eq!(fingerprint(&r).await, before);
}

/// `tenants.rs`'s check that another user's ids answer as missing ids and
/// change nothing, with the pool connecting as the application role:
/// pooled, and inside a transaction. The role is bound: scoped to nobody,
/// its connection sees no row.
#[tokio::test]
async fn another_users_ids_answer_as_missing_as_the_application_role() {
    let r = repos().await;
    let (a, b) = two_users(&r).await;
    let role = AppRole::create(&r.db).await;
    let app = role.database().await;
    assert_eq!(visible(&app.client().await.unwrap()).await, (0, 0));
    let before = fingerprint(&r).await;
    foreign_ids_are_missing(&app.scoped(a.user.id), &a, &b).await;
    foreign_ids_are_missing(&app.scoped(b.user.id), &b, &a).await;
    assert_eq!(fingerprint(&r).await, before);
    let (a, b) = (&a, &b);
    app.transaction(|tx| async move {
        foreign_ids_are_missing(&tx.scoped(a.user.id), a, b).await;
        foreign_ids_are_missing(&tx.scoped(b.user.id), b, a).await;
        // Between the scoped calls the transaction is scoped to nobody.
        assert_eq!(visible(tx.client()?).await, (0, 0));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(fingerprint(&r).await, before);
}

/// `tenants.rs`'s own-rows check with the pool connecting as the
/// application role: create, read, change, queue, cancel and delete the
/// user's own rows through the scoped view, checked against the
/// superuser's unscoped repositories.
#[tokio::test]
async fn the_scoped_view_works_on_the_users_own_rows_as_the_application_role() {
    let r = repos().await;
    let role = AppRole::create(&r.db).await;
    let app = role.database().await;
    own_rows_work(&r, &app).await;
    // Bound all along: scoped to nobody, the role sees none of those rows.
    assert!(r.count_rows("tasks").await > 0);
    assert_eq!(visible(&app.client().await.unwrap()).await, (0, 0));
}

/// The unscoped repositories and the queue, as the application role, see
/// nothing and change nothing: counts of 0, empty pages, `NotFound` for
/// rows that exist, a claim that finds no work where there is some, a
/// task's INSERT refused (42501). The superuser's view afterwards shows
/// everything as it was, and the work the claim did not find.
#[tokio::test]
async fn the_unscoped_repositories_fail_closed_as_the_application_role() {
    let r = repos().await;
    let (a, b) = two_users(&r).await;
    let role = AppRole::create(&r.db).await;
    let app = role.database().await;
    let before = fingerprint(&r).await;
    let tasks = PgTaskRepository::new(app.db().clone());
    let executions = PgExecutionRepository::new(app.db().clone());
    let queue = PgExecutionQueue::new(app.db().clone());
    let page = PageRequest::default();

    assert_eq!(tasks.count().await.unwrap(), 0);
    assert_eq!(tasks.count_by_user(a.user.id).await.unwrap(), 0);
    assert_eq!(
        tasks.count_by_status(TaskStatus::Completed).await.unwrap(),
        0
    );
    assert!(tasks.list(page.clone()).await.unwrap().items.is_empty());
    assert!(
        tasks
            .list_by_user(b.user.id, page.clone())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(executions.count().await.unwrap(), 0);
    assert!(
        executions
            .list(page.clone())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    for owner in [&a, &b] {
        for task in &owner.tasks {
            missing("get", tasks.get(task.id).await);
            missing(
                "update",
                tasks
                    .update(
                        task.id,
                        TaskUpdate {
                            name: Some("taken".into()),
                            ..TaskUpdate::default()
                        },
                    )
                    .await,
            );
            missing(
                "update_status",
                tasks.update_status(task.id, TaskStatus::Cancelled).await,
            );
            missing("delete", tasks.delete(task.id).await);
            missing("enqueue", queue.enqueue(task.id, None).await);
            assert_eq!(executions.latest_for_task(task.id).await.unwrap(), None);
            assert_eq!(executions.count_by_task(task.id).await.unwrap(), 0);
        }
        for execution in &owner.executions {
            missing("execution get", executions.get(execution.id).await);
            missing("cancel", queue.cancel(execution.id).await);
        }
    }
    assert!(
        queue.claim("app", 10, LEASE).await.unwrap().is_empty(),
        "the application role claimed work"
    );
    let refused = tasks
        .create(NewTask::new(a.user.id, "planted", "print(1)"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.sqlstate(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{refused:?}"
    );

    assert_eq!(fingerprint(&r).await, before);
    // The superuser's queue finds each user's pending execution.
    assert_eq!(r.claim("w", 10).await.len(), 2);
}
