//! LISTEN behind a transaction pooler: through the direct URL, or a clear
//! error instead of a stream that never yields; polling through the pooler.

use std::time::Duration;

use voidrunner_db::{
    Error, Event, EventKind, EventStream, ExecutionQueue, NewTask, NewUser, PasswordHash,
    PgExecutionQueue, PgTaskRepository, PgUserRepository, TaskRepository, UserRepository,
};

use crate::pooled_database;

async fn next_execution_event(stream: &mut EventStream) -> voidrunner_db::ExecutionEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Event::Execution(e))) => return e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("no event within 10 s"),
        }
    }
}

/// Enqueues a new task's execution through the pool; returns its id.
async fn enqueue_one(db: &voidrunner_db::Database, email: &str) -> voidrunner_db::ExecutionId {
    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new(email, PasswordHash::new("h")))
        .await
        .unwrap();
    let task = PgTaskRepository::new(db.clone())
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .unwrap();
    PgExecutionQueue::new(db.clone())
        .enqueue(task.id, None)
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn subscribe_listens_through_the_direct_url() {
    let test_db = pooled_database(2).await;
    let mut events = test_db.subscribe().await.unwrap();
    let id = enqueue_one(test_db.db(), "listen@example.com").await;
    let event = next_execution_event(&mut events).await;
    assert_eq!((event.execution_id, event.kind), (id, EventKind::Enqueued));
}

#[tokio::test]
async fn subscribe_without_a_direct_url_is_a_clear_error_and_polling_still_works() {
    let test_db = pooled_database(2).await;
    let mut config = test_db.db().config().clone();
    config.clear_direct_url();
    let db = voidrunner_db::Database::connect(config).await.unwrap();
    let err = db.subscribe().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("VOIDRUNNER_DB_DIRECT_URL") && message.contains("subscribe_polling"),
        "says what to do: {message}"
    );

    let mut polled = db
        .subscribe_polling(Duration::from_millis(20), Duration::ZERO)
        .await
        .unwrap();
    let id = enqueue_one(&db, "poll@example.com").await;
    let event = next_execution_event(&mut polled).await;
    assert_eq!((event.execution_id, event.kind), (id, EventKind::Enqueued));
    db.close(Duration::from_secs(5)).await;
}
