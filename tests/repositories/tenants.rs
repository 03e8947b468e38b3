//! Tenant isolation of the scoped repositories (`db.scoped(user)`,
//! `tx.scoped(user)`): another user's ids answer exactly as missing ones
//! and change nothing, byte for byte; the user's own rows work as through
//! the unscoped repositories; the scope's setting never outlives its call,
//! on the same backend, after an error and after a dropped call.
//!
//! Pooled and inside a transaction here; through PgBouncer in transaction
//! mode when the suite runs with `VOIDRUNNER_TEST_POOLER=pgbouncer`.

use std::time::Duration;

use serde_json::json;
use voidrunner_db::{
    Database, Error, ExecutionQueue, ExecutionStatus, NewTask, Outcome, PageRequest,
    ScopedRepositories, Task, TaskExecution, TaskId, TaskRepository, TaskStatus, TaskUpdate, User,
    UserId,
};

use crate::{Repos, repos, repos_with_pool};

/// A user's rows in every state: a task without executions, one pending,
/// one running, one completed, one failed, one timed out (by its worker)
/// and one cancelled, each with its execution.
pub(crate) struct Owned {
    pub(crate) user: User,
    pub(crate) tasks: Vec<Task>,
    pub(crate) executions: Vec<TaskExecution>,
}

pub(crate) async fn owned(r: &Repos, email: &str, worker: &str) -> Owned {
    let user = r.user(email).await;
    let mut tasks = Vec::new();
    for (i, name) in [
        "idle",
        "pending",
        "running",
        "completed",
        "failed",
        "timeout",
        "cancelled",
    ]
    .into_iter()
    .enumerate()
    {
        let new = NewTask::new(user.id, name, "print(1)")
            .priority(i32::try_from(i).unwrap())
            .metadata(json!({ "kind": name, "owner": email }));
        tasks.push(r.tasks.create(new).await.unwrap());
    }
    let mut executions = Vec::new();
    for task in &tasks[1..] {
        executions.push(r.queue.enqueue(task.id, None).await.unwrap());
    }
    // The five highest priorities are claimed: all but "pending".
    let running = r.claim(worker, 5).await;
    assert_eq!(running.len(), 5);
    let by_name = |name: &str| {
        let task = tasks.iter().find(|t| t.name == name).unwrap().id;
        running.iter().find(|e| e.task_id == task).unwrap().id
    };
    let outcomes = [
        ("completed", Outcome::completed(0)),
        ("failed", Outcome::failed(1)),
        ("timeout", Outcome::timed_out()),
    ];
    for (name, outcome) in outcomes {
        r.queue
            .complete(by_name(name), worker, outcome)
            .await
            .unwrap();
    }
    r.queue.cancel(by_name("cancelled")).await.unwrap();
    Owned {
        user,
        tasks,
        executions,
    }
}

/// Every row of both tables, as text, hashed: equal before and after means
/// nothing was written.
pub(crate) async fn fingerprint(r: &Repos) -> (String, String) {
    let client = r.db.raw_client().await.unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM tasks t), \
                    (SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM task_executions e)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[track_caller]
pub(crate) fn missing<T: std::fmt::Debug>(what: &str, result: voidrunner_db::Result<T>) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Every scoped operation, called by `a` with `b`'s ids, answers as for a
/// missing row; `a`'s lists and counts hold `a`'s rows only.
pub(crate) async fn foreign_ids_are_missing(scoped: &ScopedRepositories, a: &Owned, b: &Owned) {
    let (tasks, executions) = (&scoped.tasks, &scoped.executions);
    assert_eq!(tasks.user_id(), a.user.id);
    for task in &b.tasks {
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
            "empty update",
            tasks.update(task.id, TaskUpdate::default()).await,
        );
        for status in [TaskStatus::Cancelled, TaskStatus::Pending] {
            missing("update_status", tasks.update_status(task.id, status).await);
        }
        missing("delete", tasks.delete(task.id).await);
        missing("enqueue", executions.enqueue(task.id, None).await);
        // All or nothing: a's own task is not queued either.
        missing(
            "enqueue_many",
            executions
                .enqueue_many(vec![a.tasks[0].id, task.id], None)
                .await,
        );
        assert_eq!(executions.latest_for_task(task.id).await.unwrap(), None);
        let page = executions
            .list_by_task(task.id, PageRequest::default())
            .await
            .unwrap();
        assert!(page.items.is_empty() && page.next_cursor.is_none());
        assert_eq!(executions.count_by_task(task.id).await.unwrap(), 0);
    }
    for execution in &b.executions {
        missing("execution get", executions.get(execution.id).await);
        missing("cancel", executions.cancel(execution.id).await);
    }
    // Creating under the scope for someone else is refused before any SQL.
    let foreign = NewTask::new(b.user.id, "planted", "print(1)");
    assert!(
        tasks
            .create(foreign.clone())
            .await
            .unwrap_err()
            .is_validation()
    );
    let mixed = vec![NewTask::new(a.user.id, "mine", "print(1)"), foreign];
    assert!(tasks.create_many(mixed).await.unwrap_err().is_validation());

    // Lists and counts: a's rows, all of them, and nothing else.
    let page = PageRequest::default();
    let listed = tasks.list(page.clone()).await.unwrap().items;
    assert_eq!(listed.len(), a.tasks.len());
    assert!(listed.iter().all(|t| t.user_id == a.user.id));
    assert_eq!(tasks.count().await.unwrap(), a.tasks.len() as i64);
    for status in TaskStatus::ALL {
        let items = tasks
            .list_by_status(status, page.clone())
            .await
            .unwrap()
            .items;
        let expected = listed.iter().filter(|t| t.status == status).count();
        assert_eq!(items.len(), expected, "{status:?}");
        assert!(items.iter().all(|t| t.user_id == a.user.id));
        assert_eq!(
            tasks.count_by_status(status).await.unwrap(),
            expected as i64
        );
    }
    // The metadata both users' tasks hold matches a's only.
    let shared = json!({ "kind": "failed" });
    let found = tasks
        .search_by_metadata(shared, page.clone())
        .await
        .unwrap()
        .items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user_id, a.user.id);
    let b_owner = json!({ "owner": b.user.email });
    let none = tasks
        .search_by_metadata(b_owner, page.clone())
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let mine = executions.list(page.clone()).await.unwrap().items;
    let a_tasks: Vec<TaskId> = a.tasks.iter().map(|t| t.id).collect();
    assert_eq!(mine.len(), a.executions.len());
    assert!(mine.iter().all(|e| a_tasks.contains(&e.task_id)));
    assert_eq!(executions.count().await.unwrap(), a.executions.len() as i64);
}

#[tokio::test]
async fn another_users_ids_answer_as_missing_and_change_nothing_pooled() {
    let r = repos().await;
    let a = owned(&r, "a@example.com", "wa").await;
    let b = owned(&r, "b@example.com", "wb").await;
    let before = fingerprint(&r).await;
    foreign_ids_are_missing(&r.db.db().scoped(a.user.id), &a, &b).await;
    foreign_ids_are_missing(&r.db.db().scoped(b.user.id), &b, &a).await;
    assert_eq!(fingerprint(&r).await, before);
}

#[tokio::test]
async fn another_users_ids_answer_as_missing_and_change_nothing_in_a_transaction() {
    let r = repos().await;
    let a = owned(&r, "a@example.com", "wa").await;
    let b = owned(&r, "b@example.com", "wb").await;
    let before = fingerprint(&r).await;
    let (a, b) = (&a, &b);
    r.db.db()
        .transaction(|tx| async move {
            foreign_ids_are_missing(&tx.scoped(a.user.id), a, b).await;
            foreign_ids_are_missing(&tx.scoped(b.user.id), b, a).await;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(fingerprint(&r).await, before);
}

/// The user's own rows, through the scoped view, as through the unscoped
/// repositories: create, read, change, queue, cancel, delete.
#[tokio::test]
async fn the_scoped_view_works_on_the_users_own_rows() {
    let r = repos().await;
    own_rows_work(&r, r.db.db()).await;
}

/// The user's own rows through `db`'s scoped view (a pool of `r`'s
/// database, connecting as any role), checked against `r`'s unscoped
/// repositories: create, read, change, queue, cancel, delete.
pub(crate) async fn own_rows_work(r: &Repos, db: &Database) {
    let user = r.user("own@example.com").await;
    let scoped = db.scoped(user.id);
    let task = scoped
        .tasks
        .create(NewTask::new(user.id, "mine", "print(1)").metadata(json!({ "team": "x" })))
        .await
        .unwrap();
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task);
    assert_eq!(scoped.tasks.get(task.id).await.unwrap(), task);
    let renamed = scoped
        .tasks
        .update(
            task.id,
            TaskUpdate {
                name: Some("renamed".into()),
                ..TaskUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    let many = scoped
        .tasks
        .create_many(vec![
            NewTask::new(user.id, "two", "print(2)"),
            NewTask::new(user.id, "three", "print(3)"),
        ])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    let queued = scoped.executions.enqueue(task.id, None).await.unwrap();
    assert_eq!(queued.status, ExecutionStatus::Pending);
    assert_eq!(
        scoped.executions.enqueue(task.id, None).await.unwrap().id,
        queued.id,
        "enqueue stays idempotent"
    );
    let both = scoped
        .executions
        .enqueue_many(many.iter().map(|t| t.id).collect(), None)
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(scoped.executions.get(queued.id).await.unwrap(), queued);
    assert_eq!(
        scoped.executions.latest_for_task(task.id).await.unwrap(),
        Some(queued.clone())
    );
    assert_eq!(scoped.executions.count_by_task(task.id).await.unwrap(), 1);
    assert_eq!(scoped.executions.count().await.unwrap(), 3);
    let found = scoped
        .tasks
        .search_by_metadata(json!({ "team": "x" }), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let cancelled = scoped.executions.cancel(queued.id).await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(
        scoped.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    let retried = scoped
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap();
    assert_eq!(retried.status, TaskStatus::Pending);
    assert_eq!(
        scoped
            .tasks
            .count_by_status(TaskStatus::Pending)
            .await
            .unwrap(),
        3
    );
    scoped.tasks.delete(task.id).await.unwrap();
    missing("deleted", r.tasks.get(task.id).await);
    assert_eq!(scoped.tasks.count().await.unwrap(), 2);
}

/// Pages of a scoped list walk all of the user's rows, and a cursor of one
/// user's list is refused by another user's.
#[tokio::test]
async fn scoped_pages_walk_the_users_rows_and_keep_their_cursors() {
    let r = repos().await;
    let a = r.user("pa@example.com").await;
    let b = r.user("pb@example.com").await;
    for user in [&a, &b] {
        let tasks = (0..7)
            .map(|i| NewTask::new(user.id, format!("t{i}"), "print(1)"))
            .collect();
        let created = r.tasks.create_many(tasks).await.unwrap();
        r.queue
            .enqueue_many(created.iter().map(|t| t.id).collect(), None)
            .await
            .unwrap();
    }
    let scoped = r.db.db().scoped(a.id);
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = scoped
            .tasks
            .list_by_status(TaskStatus::Pending, page.clone())
            .await
            .unwrap();
        seen.extend(got.items.iter().map(|t| (t.user_id, t.id)));
        match got.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 3),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.iter().all(|(user, _)| *user == a.id));
    let first = scoped.executions.list(PageRequest::first(2)).await.unwrap();
    let cursor = first.next_cursor.unwrap();
    let other = r.db.db().scoped(b.id);
    let refused = other
        .executions
        .list(PageRequest::after(cursor, 2))
        .await
        .unwrap_err();
    assert!(refused.is_validation(), "{refused:?}");
}

/// A connection of its own to the test database, outside the pool (the
/// pool of these tests holds one).
pub(crate) async fn session(r: &Repos) -> tokio_postgres::Client {
    let config = r.db.config().await.unwrap();
    let pg = config
        .direct_pg_config()
        .unwrap_or(config.pg_config())
        .clone();
    let (client, connection) = pg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The value of the scope's setting on a connection, and its backend.
async fn setting_and_pid(client: &tokio_postgres::Client) -> (Option<String>, i32) {
    let row = client
        .query_one(
            "SELECT NULLIF(current_setting('voidrunner.user_id', true), ''), pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// After a scoped call, ended well, with an error, or dropped half-way,
/// the pool's connection holds no scope: on the same backend when the
/// call ended, on a fresh one when it was dropped (the busy connection is
/// closed, never pooled).
#[tokio::test]
async fn the_scope_never_outlives_its_call() {
    let r = repos_with_pool(1).await;
    let db = r.db.db();
    let user = r.user("s@example.com").await;
    let task = r.task(&user, "t").await;
    let backend = {
        let client = db.client().await.unwrap();
        setting_and_pid(&client).await.1
    };

    // A call that succeeded.
    db.scoped(user.id).tasks.get(task.id).await.unwrap();
    let client = db.client().await.unwrap();
    let (setting, pid) = setting_and_pid(&client).await;
    drop(client);
    assert_eq!(setting, None);
    // Behind a transaction pooler the backend may be another one.
    if std::env::var_os(voidrunner_db::testing::TEST_POOLER_ENV).is_none() {
        assert_eq!(pid, backend);
    }

    // A call the server refused: a task for a user that does not exist.
    let ghost = UserId::new();
    let refused = db
        .scoped(ghost)
        .tasks
        .create(NewTask::new(ghost, "x", "print(1)"))
        .await
        .unwrap_err();
    assert!(refused.is_foreign_key(), "{refused:?}");
    let client = db.client().await.unwrap();
    assert_eq!(setting_and_pid(&client).await.0, None);
    drop(client);

    // A call dropped while it waits for a lock another session holds.
    let holder = session(&r).await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
            task.id
        ))
        .await
        .unwrap();
    let scoped = db.scoped(user.id);
    let call = scoped.tasks.update_status(task.id, TaskStatus::Cancelled);
    let observer = session(&r).await;
    let lock_waiters = || async {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let waited = async {
        while lock_waiters().await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        result = call => panic!("the call ended under the lock: {result:?}"),
        () = waited => {}
    }
    // Dropped: its connection is closed and its statement cancelled. Its
    // COMMIT had gone out with it, so only the cancel keeps it from taking
    // effect once the lock is free: wait until the server has let go.
    while lock_waiters().await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
    let client = db.client().await.unwrap();
    assert_eq!(setting_and_pid(&client).await.0, None);
    drop(client);
    // Nothing was cancelled: the dropped call's statement never ran.
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );
}

/// Inside a transaction, a scoped call's setting is reset after it, so the
/// transaction's own statements are unscoped again.
#[tokio::test]
async fn in_a_transaction_the_scope_is_reset_after_each_call() {
    let r = repos().await;
    let user = r.user("t@example.com").await;
    let task = r.task(&user, "t").await;
    let other = r.user("u@example.com").await;
    let theirs = r.task(&other, "theirs").await;
    let (task, theirs) = (&task, &theirs);
    r.db.db()
        .transaction(|tx| async move {
            tx.scoped(user.id).tasks.get(task.id).await?;
            let (setting, _) = setting_and_pid(tx.client()?).await;
            assert_eq!(setting, None);
            // An unscoped call after it reaches every user's rows.
            assert_eq!(tx.tasks().get(theirs.id).await?.id, theirs.id);
            // A refused scoped call leaves the transaction usable.
            assert!(
                tx.scoped(user.id)
                    .tasks
                    .get(theirs.id)
                    .await
                    .unwrap_err()
                    .is_not_found()
            );
            assert_eq!(tx.tasks().get(theirs.id).await?.id, theirs.id);
            Ok(())
        })
        .await
        .unwrap();
}

/// A service handler written against the unit of work, acting for one
/// user through the bundle's scoped view.
async fn rename_for(
    uow: &dyn voidrunner_db::UnitOfWork,
    user: UserId,
    task: TaskId,
) -> voidrunner_db::Result<Task> {
    use voidrunner_db::UnitOfWorkExt;
    uow.run(move |repos| async move {
        let mine = repos.scoped(user)?;
        let update = TaskUpdate {
            name: Some("renamed".into()),
            ..TaskUpdate::default()
        };
        mine.tasks.update(task, update).await
    })
    .await
}

/// The unit of work's bundle has the scoped view of its transaction: the
/// user's task is renamed, another user's is missing and unchanged.
#[tokio::test]
async fn a_unit_of_work_hands_out_the_scoped_view() {
    let r = repos().await;
    let a = r.user("ua@example.com").await;
    let b = r.user("ub@example.com").await;
    let (mine, theirs) = (r.task(&a, "mine").await, r.task(&b, "theirs").await);
    let uow =
        r.db.db()
            .unit_of_work(voidrunner_db::RepositoryOptions::new());
    assert_eq!(
        rename_for(&uow, a.id, mine.id).await.unwrap().name,
        "renamed"
    );
    missing("foreign", rename_for(&uow, a.id, theirs.id).await);
    assert_eq!(r.tasks.get(theirs.id).await.unwrap(), theirs);
    // A bundle built by hand has no scoped view until given one.
    let bare = voidrunner_db::Repositories::new(
        std::sync::Arc::new(r.users.clone()),
        std::sync::Arc::new(r.tasks.clone()),
        std::sync::Arc::new(r.executions.clone()),
        std::sync::Arc::new(r.queue.clone()),
    );
    assert!(matches!(bare.scoped(a.id), Err(Error::Config { .. })));
}

/// A unit test of that handler over mocks: the scoped view of the one
/// user it acts for is all it is given, so it shows that it used nothing
/// else (any call to the unscoped mocks fails the test).
#[tokio::test]
async fn a_handler_over_mocks_uses_only_the_scoped_view() {
    use voidrunner_db::{MockScopedTaskRepository, PassThroughUnitOfWork, Repositories};
    let (alice, task) = (UserId::new(), TaskId::new());
    let repos = Repositories::mocked().with_scoped(move |user| {
        assert_eq!(user, alice, "acted for another user");
        let mut tasks = MockScopedTaskRepository::new();
        tasks
            .expect_update()
            .withf(move |id, update| *id == task && update.name.as_deref() == Some("renamed"))
            .returning(move |id, _| {
                Ok(voidrunner_db::fixtures::task()
                    .id(id)
                    .user_id(alice)
                    .name("renamed")
                    .build())
            });
        ScopedRepositories::mocked(user).with_tasks(tasks)
    });
    let uow = PassThroughUnitOfWork::new(repos);
    let renamed = rename_for(&uow, alice, task).await.unwrap();
    assert_eq!((renamed.id, renamed.user_id), (task, alice));
}
