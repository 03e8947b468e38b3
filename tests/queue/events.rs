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

/// A LISTEN of its own on the events channel, outside the crate, to count
/// the notifications themselves (the stream yields one event per
/// execution, however many notifications carried them).
struct RawListener {
    _client: tokio_postgres::Client,
    payloads: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Sent after a change to mark where its notifications end: NOTIFY is
/// delivered in commit order, so whatever came before the marker is all
/// the change sent.
const MARKER: &str = "test-marker: not an event";

async fn raw_listener(f: &crate::Fixture) -> RawListener {
    let (client, mut connection) = f
        .session_pg_config()
        .await
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (sender, payloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message
                && sender.send(n.payload().to_owned()).is_err()
            {
                return;
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", voidrunner_db::events::CHANNEL))
        .await
        .unwrap();
    RawListener {
        _client: client,
        payloads,
    }
}

impl RawListener {
    /// The payloads received up to the next [`MARKER`], which this sends.
    async fn until_marker(&mut self, f: &crate::Fixture) -> Vec<String> {
        f.db.raw_client()
            .await
            .unwrap()
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&voidrunner_db::events::CHANNEL, &MARKER],
            )
            .await
            .unwrap();
        let mut payloads = Vec::new();
        loop {
            let payload = tokio::time::timeout(Duration::from_secs(10), self.payloads.recv())
                .await
                .expect("the marker within 10 s")
                .expect("the listener goes on");
            if payload == MARKER {
                return payloads;
            }
            payloads.push(payload);
        }
    }
}

/// The execution ids of a notification payload, which must be a JSON array
/// of event objects shorter than NOTIFY's 8000 bytes.
fn ids_of(payload: &str) -> Vec<voidrunner_db::ExecutionId> {
    assert!(payload.len() < 8000, "{} bytes", payload.len());
    let events: Vec<serde_json::Value> =
        serde_json::from_str(payload).expect("a JSON array of events");
    events
        .iter()
        .map(|e| {
            e["execution_id"]
                .as_str()
                .expect("execution_id")
                .parse::<uuid::Uuid>()
                .map(voidrunner_db::ExecutionId::from_uuid)
                .unwrap()
        })
        .collect()
}

/// The next `n` execution events of the stream.
async fn next_executions(stream: &mut EventStream, n: usize) -> Vec<voidrunner_db::ExecutionEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_execution_event(stream).await);
    }
    events
}

#[tokio::test]
async fn a_batch_statement_sends_one_notification_and_the_stream_one_event_each() {
    let f = fixture().await;
    let mut raw = raw_listener(&f).await;
    let mut events = f.db.subscribe().await.unwrap();

    let queued = f.queued(5, |_| 0).await;
    let payloads = raw.until_marker(&f).await;
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let ids: Vec<_> = queued.iter().map(|e| e.id).collect();
    assert_eq!(ids_of(&payloads[0]), ids, "in the order they were queued");
    let enqueued = next_executions(&mut events, 5).await;
    assert_eq!(
        enqueued.iter().map(|e| e.execution_id).collect::<Vec<_>>(),
        ids
    );
    assert!(enqueued.iter().all(|e| e.kind == EventKind::Enqueued));

    let claimed = f.queue.claim("w", 5, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let payloads = raw.until_marker(&f).await;
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let in_payload = ids_of(&payloads[0]);
    let mut sorted = in_payload.clone();
    sorted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    let running = next_executions(&mut events, 5).await;
    assert_eq!(
        running.iter().map(|e| e.execution_id).collect::<Vec<_>>(),
        in_payload,
        "the stream keeps the payload's order"
    );
    assert!(running.iter().all(|e| e.kind == EventKind::Claimed
        && e.status == ExecutionStatus::Running
        && e.worker_id.as_deref() == Some("w")));

    let completions = ids
        .iter()
        .map(|&id| voidrunner_db::Completion::new(id, "w", Outcome::completed(0)))
        .collect();
    let results = f.queue.complete_many(completions).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let payloads = raw.until_marker(&f).await;
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let in_payload = ids_of(&payloads[0]);
    assert_eq!(in_payload.len(), 5);
    let finished = next_executions(&mut events, 5).await;
    assert_eq!(
        finished.iter().map(|e| e.execution_id).collect::<Vec<_>>(),
        in_payload
    );
    assert!(
        finished
            .iter()
            .all(|e| e.kind == EventKind::Finished && e.status == ExecutionStatus::Completed)
    );
}

#[tokio::test]
async fn a_statement_too_big_for_one_notification_is_split_and_loses_nothing() {
    let f = fixture().await;
    let mut raw = raw_listener(&f).await;
    let mut events = f.db.subscribe().await.unwrap();

    let queued = f.queued(1000, |_| 0).await;
    let ids: Vec<_> = queued.iter().map(|e| e.id).collect();
    let payloads = raw.until_marker(&f).await;
    // About 150 bytes an event: 1000 need at least 19 notifications of
    // under 8000 bytes, and as few as fit means no more than one in
    // addition to the full ones.
    assert!(
        (19..=30).contains(&payloads.len()),
        "{} notifications",
        payloads.len()
    );
    let in_payloads: Vec<_> = payloads.iter().flat_map(|p| ids_of(p)).collect();
    assert_eq!(in_payloads, ids, "every execution once, in order");
    let enqueued = next_executions(&mut events, 1000).await;
    assert_eq!(
        enqueued.iter().map(|e| e.execution_id).collect::<Vec<_>>(),
        ids
    );

    // Long worker ids, two bytes a character: chunks are cut by size.
    let worker = "é".repeat(voidrunner_db::validate::WORKER_ID_MAX_CHARS);
    let mut claimed = 0;
    let mut notified = Vec::new();
    while claimed < 1000 {
        claimed += f.queue.claim(&worker, 1000, LEASE).await.unwrap().len();
        let payloads = raw.until_marker(&f).await;
        for payload in &payloads {
            assert!(payload.len() < 8000);
            // Full chunks: another event of this size would not have fit.
            assert!(payload.len() > 8000 - 2 * 700 || payload == payloads.last().unwrap());
        }
        notified.extend(payloads.iter().flat_map(|p| ids_of(p)));
    }
    notified.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(notified, expected, "every claim notified once");
    let running = next_executions(&mut events, 1000).await;
    assert!(
        running.iter().all(
            |e| e.kind == EventKind::Claimed && e.worker_id.as_deref() == Some(worker.as_str())
        )
    );
}

#[tokio::test]
async fn heartbeats_send_no_notification() {
    let f = fixture().await;
    f.queued(3, |_| 0).await;
    let claimed = f.queue.claim("w", 3, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let mut raw = raw_listener(&f).await;
    let ids: Vec<_> = claimed.iter().map(|c| c.execution.id).collect();
    f.queue.heartbeat(ids[0], "w", LEASE).await.unwrap();
    let beats = f
        .queue
        .heartbeat_many("w", ids.clone(), LEASE)
        .await
        .unwrap();
    assert!(beats.iter().all(Result::is_ok), "{beats:?}");
    // A lease lost is no status change either.
    let refused = f.queue.heartbeat_many("other", ids, LEASE).await.unwrap();
    assert!(refused.iter().all(Result::is_err), "{refused:?}");
    assert_eq!(raw.until_marker(&f).await, Vec::<String>::new());
}

#[tokio::test]
async fn batches_with_notify_events_off_send_nothing() {
    let f = crate::fixture_with(|c| c.notify_events = false).await;
    if crate::behind_transaction_pooler(&f.db) {
        // Skipped as in a_pool_with_notify_events_off_changes_quietly: the
        // setting is a SET LOCAL in the crate's transactions there.
        return;
    }
    let mut raw = raw_listener(&f).await;
    let queued = f.queued(20, |_| 0).await;
    let claimed = f.queue.claim("w", 20, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 20);
    let completions = queued
        .iter()
        .map(|e| voidrunner_db::Completion::new(e.id, "w", Outcome::failed(1)))
        .collect();
    let results = f.queue.complete_many(completions).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(raw.until_marker(&f).await, Vec::<String>::new());
}

#[tokio::test]
async fn foreign_single_objects_are_read_and_garbage_does_not_end_the_stream() {
    let f = fixture().await;
    let mut events = f.db.subscribe().await.unwrap();
    let client = f.db.raw_client().await.unwrap();
    let notify = |payload: String| {
        let client = &client;
        async move {
            client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&voidrunner_db::events::CHANNEL, &payload],
                )
                .await
                .unwrap();
        }
    };
    let object = |status: &str, worker: Option<&str>| {
        serde_json::json!({
            "execution_id": uuid::Uuid::new_v4(),
            "task_id": uuid::Uuid::new_v4(),
            "status": status,
            "worker_id": worker,
        })
    };
    // As the V2/V3 row trigger (or another application) sends it.
    let old_style = object("running", Some("w-old"));
    notify(old_style.to_string()).await;
    let event = next_execution_event(&mut events).await;
    assert_eq!(
        event.execution_id.as_uuid().to_string(),
        old_style["execution_id"].as_str().unwrap()
    );
    assert_eq!(
        (event.kind, event.worker_id.as_deref()),
        (EventKind::Claimed, Some("w-old"))
    );

    for garbage in ["", "not json", "[", "{}", "[1, 2]", r#"{"status": "lost"}"#] {
        notify(garbage.to_owned()).await;
    }
    // An array with a foreign element: the readable ones still come.
    let (a, b) = (object("pending", None), object("cancelled", None));
    notify(serde_json::json!([a, {"what": "foreign"}, b]).to_string()).await;
    let first = next_execution_event(&mut events).await;
    let second = next_execution_event(&mut events).await;
    assert_eq!(
        (first.execution_id.as_uuid().to_string(), first.kind),
        (
            a["execution_id"].as_str().unwrap().to_owned(),
            EventKind::Enqueued
        )
    );
    assert_eq!(
        (second.execution_id.as_uuid().to_string(), second.kind),
        (
            b["execution_id"].as_str().unwrap().to_owned(),
            EventKind::Cancelled
        )
    );

    // And the trigger's own events still come through.
    let task = f.task("after-garbage", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let event = next_execution_event(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (e.id, EventKind::Enqueued)
    );
    assert_eq!(events.buffered(), 0, "nothing else was queued");
}
