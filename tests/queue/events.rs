use std::time::Duration;

use voidrunner_db::{
    Error, Event, EventKind, EventStream, ExecutionQueue, ExecutionStatus, Outcome,
};

use crate::{LEASE, fixture};

/// The next execution event, skipping `Reconnected`; fails after 10 s.
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

#[tokio::test]
async fn every_change_is_announced() {
    let f = fixture().await;
    let mut events = f.db.subscribe().await.unwrap();
    let task = f.task("t", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let other = f.task("other", 0).await;
    let cancelled = f.queue.enqueue(other.id, None).await.unwrap();
    f.queue.cancel(cancelled.id).await.unwrap();

    let expected = [
        (e.id, EventKind::Enqueued, ExecutionStatus::Pending),
        (e.id, EventKind::Claimed, ExecutionStatus::Running),
        (e.id, EventKind::Finished, ExecutionStatus::Completed),
        (cancelled.id, EventKind::Enqueued, ExecutionStatus::Pending),
        (
            cancelled.id,
            EventKind::Cancelled,
            ExecutionStatus::Cancelled,
        ),
    ];
    for (id, kind, status) in expected {
        let event = next_execution_event(&mut events).await;
        assert_eq!(
            (event.execution_id, event.kind, event.status),
            (id, kind, status)
        );
    }
    let claimed_by = f.queue.enqueue(task.id, None).await.unwrap_err();
    assert!(
        claimed_by.is_invalid_transition(),
        "completed tasks are not queued"
    );
}

#[tokio::test]
async fn the_listener_comes_back_after_its_backend_is_terminated() {
    let f = fixture().await;
    let mut events = f.db.subscribe().await.unwrap();
    let client = f.db.raw_client().await.unwrap();
    let terminated: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'voidrunner-db-listener'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1);
    drop(client);
    match tokio::time::timeout(Duration::from_secs(15), events.next()).await {
        Ok(Some(Event::Reconnected)) => {}
        other => panic!("expected Reconnected, got {other:?}"),
    }
    let task = f.task("after", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let event = next_execution_event(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (e.id, EventKind::Enqueued)
    );
}

#[tokio::test]
async fn a_rolled_back_enqueue_announces_nothing() {
    let f = fixture().await;
    let mut events = f.db.subscribe().await.unwrap();
    let doomed = f.task("doomed", 0).await;
    let kept = f.task("kept", 0).await;
    let err =
        f.db.transaction(|tx| async move {
            tx.queue().enqueue(doomed.id, None).await?;
            Err::<(), _>(Error::validation("test", "roll it back"))
        })
        .await
        .unwrap_err();
    assert!(err.is_validation());
    let e = f.queue.enqueue(kept.id, None).await.unwrap();
    let event = next_execution_event(&mut events).await;
    assert_eq!(
        event.execution_id, e.id,
        "the first event is the committed enqueue"
    );
    let queued: i64 = f.scalar("SELECT count(*) FROM task_executions", &[]).await;
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn polling_is_a_fallback_for_poolers_that_break_listen() {
    let f = fixture().await;
    let mut events =
        f.db.subscribe_polling(Duration::from_millis(50), Duration::ZERO)
            .await
            .unwrap();
    let task = f.task("polled", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let event = next_execution_event(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (e.id, EventKind::Enqueued)
    );
    f.queue.claim("w", 1, LEASE).await.unwrap();
    let event = next_execution_event(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind, event.worker_id.as_deref()),
        (e.id, EventKind::Claimed, Some("w"))
    );
}

#[tokio::test]
async fn streams_end_when_the_database_closes() {
    let f = fixture().await;
    let mut listening = f.db.subscribe().await.unwrap();
    let mut polling =
        f.db.subscribe_polling(Duration::from_millis(20), Duration::ZERO)
            .await
            .unwrap();
    f.db.close(Duration::from_secs(5)).await;
    for stream in [&mut listening, &mut polling] {
        let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("ends");
        assert_eq!(end, None);
    }
}

#[tokio::test]
async fn the_listener_listens_again_after_the_server_restarts() {
    use voidrunner_db::testing::PrivateCluster;
    use voidrunner_db::{
        Database, NewTask, NewUser, PasswordHash, PgExecutionQueue, PgTaskRepository,
        PgUserRepository, TaskRepository, UserRepository,
    };

    // Restarting a server is only done to a private one.
    let cluster = PrivateCluster::start().await.unwrap();
    let mut config = cluster.config();
    config.min_connections = 1;
    config.connect_timeout = Duration::from_secs(2);
    let db = Database::connect(config).await.unwrap();
    db.migrate().await.unwrap();
    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new("restart@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let tasks = PgTaskRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let mut events = db.subscribe().await.unwrap();

    let before = tasks
        .create(NewTask::new(user.id, "before", "x"))
        .await
        .unwrap();
    let e = queue.enqueue(before.id, None).await.unwrap();
    assert_eq!(next_execution_event(&mut events).await.execution_id, e.id);

    cluster.stop_server().await.unwrap();
    cluster.start_server().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(30), events.next()).await {
        Ok(Some(Event::Reconnected)) => {}
        other => panic!("expected Reconnected, got {other:?}"),
    }
    // The pool drops its dead connections as it meets them.
    let mut after = None;
    for _ in 0..50 {
        match tasks.create(NewTask::new(user.id, "after", "x")).await {
            Ok(task) => {
                after = Some(task);
                break;
            }
            Err(e) if e.is_unavailable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    let e = queue
        .enqueue(after.expect("server back").id, None)
        .await
        .unwrap();
    assert_eq!(next_execution_event(&mut events).await.execution_id, e.id);

    drop(events);
    db.close(Duration::from_secs(5)).await;
    cluster.destroy().await.unwrap();
}

#[tokio::test]
async fn a_pool_with_notify_events_off_changes_quietly() {
    use voidrunner_db::{Database, PgExecutionQueue};

    let f = crate::fixture_with(|c| c.notify_events = false).await;
    if crate::behind_transaction_pooler(&f.db) {
        // Skipped: behind a transaction pooler `notify_events = false` is a
        // SET LOCAL in the crate's transactions only; the lone enqueue below
        // runs outside one, where the setting must be a role setting
        // (documented on DbConfig::notify_events).
        return;
    }
    let mut events = f.db.subscribe().await.unwrap();
    let quiet = f.task("quiet", 0).await;
    let loud = f.task("loud", 0).await;
    let quiet_execution = f.queue.enqueue(quiet.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();

    // The same database through a pool with the default setting.
    let mut config = f.db.config().await.unwrap();
    config.min_connections = 1;
    let noisy = Database::connect(config).await.unwrap();
    let loud_execution = PgExecutionQueue::new(noisy.clone())
        .enqueue(loud.id, None)
        .await
        .unwrap();
    let first = next_execution_event(&mut events).await;
    assert_eq!(
        first.execution_id, loud_execution.id,
        "nothing was sent for {}",
        quiet_execution.id
    );
    noisy.close(Duration::from_secs(5)).await;
}
