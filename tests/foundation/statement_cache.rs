//! Statement caches of other instances after the schema changed (issue #7
//! §5): a stale cached statement is prepared again and the call succeeds.

use std::time::Duration;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Database, DownTarget, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewTask, NewUser,
    Outcome, PageRequest, PasswordHash, PgExecutionQueue, PgExecutionRepository, PgTaskRepository,
    PgUserRepository, TaskRepository, UserRepository,
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

/// A worker's whole round: queue, claim, heartbeat, complete; returns the
/// first error with the call that failed.
async fn work(db: &Database, round: &str) -> Result<(), String> {
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let executions = PgExecutionRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let fail = |call: &str, e: voidrunner_db::Error| format!("{round}: {call}: {e}");
    let user = users
        .create(NewUser::new(
            format!("worker-{round}@example.com"),
            PasswordHash::new("h"),
        ))
        .await
        .map_err(|e| fail("users.create", e))?;
    let task = tasks
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .map_err(|e| fail("tasks.create", e))?;
    let execution = queue
        .enqueue(task.id, None)
        .await
        .map_err(|e| fail("queue.enqueue", e))?;
    let claimed = queue
        .claim(round, 1000, Duration::from_secs(30))
        .await
        .map_err(|e| fail("queue.claim", e))?;
    if !claimed.iter().any(|c| c.execution.id == execution.id) {
        return Err(format!("{round}: queue.claim missed {}", execution.id));
    }
    for c in claimed {
        queue
            .heartbeat(c.execution.id, round, Duration::from_secs(30))
            .await
            .map_err(|e| fail("queue.heartbeat", e))?;
        queue
            .complete(c.execution.id, round, Outcome::completed(0))
            .await
            .map_err(|e| fail("queue.complete", e))?;
    }
    let latest = executions
        .latest_for_task(task.id)
        .await
        .map_err(|e| fail("executions.latest_for_task", e))?;
    match latest {
        Some(e) if e.status == ExecutionStatus::Completed => Ok(()),
        other => Err(format!(
            "{round}: the execution did not complete: {other:?}"
        )),
    }
}

/// A migration changes the type of a column the crate's PL/pgSQL trigger
/// reads (simulated with ALTER): every session that ran the trigger keeps a
/// plan of its own that the server now refuses (42804, not the 0A000 of a
/// statement the crate cached). The other instance's warm pool used to fail
/// every call that fires the trigger; the stale sessions are now replaced
/// and each call, made one after the other, succeeds.
#[tokio::test]
async fn a_column_type_change_under_a_trigger_heals_every_call() {
    let first = TestDatabase::new().await.unwrap();
    // Both connections ran the trigger (enqueue and cancel fire it).
    let second = second_instance(&first).await;
    work(&second, "warm").await.unwrap();
    first
        .client()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE task_executions ALTER COLUMN worker_id TYPE text")
        .await
        .unwrap();
    for round in 0..4 {
        exercise(&second, &format!("after-{round}")).await.unwrap();
        work(&second, &format!("after-{round}")).await.unwrap();
    }
    // Transactions on the healed pool fire the trigger too.
    for round in 0..3 {
        let status = second
            .transaction(|tx| async move {
                let user = tx
                    .users()
                    .create(NewUser::new(
                        format!("in-tx-{round}@example.com"),
                        PasswordHash::new("h"),
                    ))
                    .await?;
                let task = tx
                    .tasks()
                    .create(NewTask::new(user.id, "t", "print(1)"))
                    .await?;
                let execution = tx.queue().enqueue(task.id, None).await?;
                Ok(tx.queue().cancel(execution.id).await?.status)
            })
            .await
            .unwrap_or_else(|e| panic!("transaction {round}: {e}"));
        assert_eq!(status, ExecutionStatus::Cancelled);
    }
}
