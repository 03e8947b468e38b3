//! The repository suite's smoke subset over TLS: connect, migrate, users,
//! tasks, the queue, events on the listener's own connection, and the
//! cancel request of a dropped call.

use std::time::Duration;

use voidrunner_db::{
    Database, Event, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewTask, NewUser,
    Outcome, PasswordHash, PgExecutionQueue, PgExecutionRepository, PgTaskRepository,
    PgUserRepository, TaskRepository, UserRepository,
};

use crate::{session_tls, tls_cluster};

/// Bound on waits that only a defect makes long.
const NO_HANG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_and_events_work_over_verify_full() {
    let tls = tls_cluster().await;
    let mut config = tls.fresh_database("vr_tls_smoke").await;
    config.application_name = format!("vr-tls-smoke-{}", uuid::Uuid::new_v4().simple());
    let app = config.application_name.clone();
    let db = Database::connect(config).await.unwrap();
    assert!(session_tls(&db).await.0);
    let applied = db.migrate().await.unwrap();
    assert!(!applied.is_empty());
    assert!(db.migration_status().await.unwrap().pending.is_empty());

    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let executions = PgExecutionRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let mut events = db.subscribe().await.unwrap();

    let user = users
        .create(NewUser::new("tls@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    assert_eq!(users.get(user.id).await.unwrap().email, "tls@example.com");
    let task = tasks
        .create(NewTask::new(user.id, "over tls", "print(1)"))
        .await
        .unwrap();
    let queued = queue.enqueue(task.id, None).await.unwrap();
    let claimed = queue
        .claim("tls-worker", 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].execution.id, queued.id);
    let done = queue
        .complete(queued.id, "tls-worker", Outcome::completed(0))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(
        executions.get(queued.id).await.unwrap().status,
        ExecutionStatus::Completed
    );

    // The listener's connection is a TLS one too, and hears the changes.
    let mut seen = Vec::new();
    while !seen.contains(&ExecutionStatus::Completed) {
        match tokio::time::timeout(NO_HANG, events.next()).await {
            Ok(Some(Event::Execution(e))) if e.execution_id == queued.id => seen.push(e.status),
            Ok(Some(_)) => {}
            other => panic!("no completion event over TLS: {other:?} after {seen:?}"),
        }
    }
    let listener_ssl: bool = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&format!("{app}-listener")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(listener_ssl);
}

/// Pids of the sessions of `app` that wait on a lock.
async fn lock_waiters(observer: &Database, app: &str) -> Vec<i32> {
    observer
        .client()
        .await
        .unwrap()
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A call dropped while its statement waits: its statement is cancelled
/// by a cancel request that must itself speak TLS (`require`, which the
/// plaintext cancel request could not satisfy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_is_cancelled_over_tls() {
    let tls = tls_cluster().await;
    let mut config = tls.fresh_database("vr_tls_cancel").await;
    config.ssl_mode = voidrunner_db::SslMode::Require;
    config.max_connections = 1;
    let observer = Database::connect(config.clone()).await.unwrap();
    observer.migrate().await.unwrap();
    let app = format!("vr-tls-cancel-{}", uuid::Uuid::new_v4().simple());
    config.application_name = app.clone();
    let db = Database::connect(config).await.unwrap();
    assert!(session_tls(&db).await.0);

    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new("cancel@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let task = PgTaskRepository::new(db.clone())
        .create(NewTask::new(user.id, "locked", "print(1)"))
        .await
        .unwrap();
    let queue = PgExecutionQueue::new(db.clone());

    // Another session holds the task's row lock.
    let holder = Database::connect(observer.config().clone()).await.unwrap();
    let holder = holder.client().await.unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", &[&task.id])
        .await
        .unwrap();

    // The enqueue is dropped once its statement waits on the lock.
    tokio::select! {
        result = queue.enqueue(task.id, None) => {
            panic!("enqueue finished while its task was locked: {result:?}")
        }
        _ = async {
            while lock_waiters(&observer, &app).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } => {}
        _ = tokio::time::sleep(NO_HANG) => panic!("the enqueue never waited on the lock"),
    }

    // The cancel request reached the server: nothing of the pool waits
    // any more, though the lock is still held.
    let started = std::time::Instant::now();
    while !lock_waiters(&observer, &app).await.is_empty() {
        assert!(
            started.elapsed() < NO_HANG,
            "the dropped call's statement still waits: its cancel request did not get through"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        PgExecutionRepository::new(db.clone())
            .latest_for_task(task.id)
            .await
            .unwrap(),
        None
    );
}
