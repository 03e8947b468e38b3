//! Statement caches of other instances after the schema changed (issue #7
//! §5): a stale cached statement is prepared again and the call succeeds.

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Database, DownTarget, ExecutionQueue, ExecutionRepository, NewTask, NewUser, PageRequest,
    PasswordHash, PgExecutionQueue, PgExecutionRepository, PgTaskRepository, PgUserRepository,
    TaskRepository, UserRepository,
};

/// Every read and write kind the repositories have, once; returns the
/// first error with the call that failed.
async fn exercise(db: &Database, round: &str) -> Result<(), String> {
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let executions = PgExecutionRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let fail = |call: &str, e: voidrunner_db::Error| format!("{round}: {call}: {e}");
    let user = users
        .create(NewUser::new(
            format!("{round}@example.com"),
            PasswordHash::new("h"),
        ))
        .await
        .map_err(|e| fail("users.create", e))?;
    users.get(user.id).await.map_err(|e| fail("users.get", e))?;
    users
        .list(PageRequest::first(5))
        .await
        .map_err(|e| fail("users.list", e))?;
    let task = tasks
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .map_err(|e| fail("tasks.create", e))?;
    tasks.get(task.id).await.map_err(|e| fail("tasks.get", e))?;
    tasks
        .list_by_user(user.id, PageRequest::first(5))
        .await
        .map_err(|e| fail("tasks.list_by_user", e))?;
    tasks.count().await.map_err(|e| fail("tasks.count", e))?;
    let execution = queue
        .enqueue(task.id, None)
        .await
        .map_err(|e| fail("queue.enqueue", e))?;
    executions
        .get(execution.id)
        .await
        .map_err(|e| fail("executions.get", e))?;
    executions
        .list_by_task(task.id, PageRequest::first(5))
        .await
        .map_err(|e| fail("executions.list_by_task", e))?;
    queue
        .cancel(execution.id)
        .await
        .map_err(|e| fail("queue.cancel", e))?;
    Ok(())
}

/// A second instance whose every pooled connection has warm caches.
async fn second_instance(test_db: &TestDatabase) -> Database {
    let config = test_db.config().await.unwrap();
    let mut config = config;
    config.max_connections = 2;
    config.min_connections = 2;
    let second = Database::connect(config).await.unwrap();
    // Warm both connections: two rounds at once hold one each.
    let (a, b) = tokio::join!(exercise(&second, "warm-a"), exercise(&second, "warm-b"));
    a.unwrap();
    b.unwrap();
    second
}

#[tokio::test]
async fn another_instance_migrating_down_and_up_leaves_every_call_working() {
    let first = TestDatabase::new().await.unwrap();
    let second = second_instance(&first).await;
    let latest = voidrunner_db::migrate::latest_version();
    first.migrate_down(DownTarget::Steps(1)).await.unwrap();
    assert_eq!(first.migrate().await.unwrap(), vec![latest]);
    for round in 0..4 {
        exercise(&second, &format!("after-{round}")).await.unwrap();
    }
}

#[tokio::test]
async fn a_cached_plan_whose_result_type_changed_is_prepared_again() {
    let first = TestDatabase::new().await.unwrap();
    let second = second_instance(&first).await;
    // What a migration changing a column's type does to every statement
    // cached on it: the server answers 0A000 "cached plan must not change
    // result type".
    first
        .client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE tasks ALTER COLUMN name TYPE text; \
             ALTER TABLE users ALTER COLUMN email TYPE text;",
        )
        .await
        .unwrap();
    for round in 0..4 {
        exercise(&second, &format!("after-{round}")).await.unwrap();
    }
}

#[tokio::test]
async fn inside_a_transaction_a_stale_statement_is_retryable() {
    let first = TestDatabase::new().await.unwrap();
    let mut config = first.config().await.unwrap();
    config.max_connections = 1;
    config.min_connections = 1;
    let second = Database::connect(config).await.unwrap();
    exercise(&second, "warm").await.unwrap();
    first
        .client()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE users ALTER COLUMN email TYPE text")
        .await
        .unwrap();
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let user = second
        .transaction_with(
            voidrunner_db::TransactionOptions::default().retries(1),
            |tx| {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    tx.users()
                        .create(NewUser::new("in-tx@example.com", PasswordHash::new("h")))
                        .await
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(user.email, "in-tx@example.com");
    assert_eq!(
        attempts.into_inner(),
        2,
        "the first attempt met the stale plan"
    );
}
