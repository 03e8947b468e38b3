//! Limits of the event streams (#8 §2 and §5): the arguments of
//! `subscribe_polling` have ranges, a slow consumer of `subscribe` is told
//! how many events it lost and the stream goes on, the polling fallback
//! reports status changes only, and the listener's connection sends TCP
//! keepalives.

use std::collections::HashSet;
use std::time::Duration;

use voidrunner_db::events::{EVENT_BUFFER, POLL_INTERVAL_RANGE, SETTLE_RANGE};
use voidrunner_db::{
    Event, EventKind, EventStream, ExecutionEvent, ExecutionQueue, ExecutionStatus, Outcome,
};

use crate::{LEASE, fixture};

/// Generous bound so a hang fails the test instead of stalling CI.
const NO_HANG: Duration = Duration::from_secs(60);

/// The next item of the stream; fails if the stream ends or hangs.
async fn next(stream: &mut EventStream) -> Event {
    tokio::time::timeout(NO_HANG, stream.next())
        .await
        .expect("an event, not a hang")
        .expect("the stream goes on")
}

/// The next execution event; anything else fails the test.
async fn next_execution(stream: &mut EventStream) -> ExecutionEvent {
    match next(stream).await {
        Event::Execution(e) => e,
        other => panic!("expected an execution event, got {other:?}"),
    }
}

#[tokio::test]
async fn polling_arguments_are_bounded() {
    // interval = 0 used to end the stream at once (tokio's interval
    // panicked in the background task); settle = MAX never yielded.
    let f = fixture().await;
    let ms = Duration::from_millis;
    let refusals = [
        ("interval", Duration::ZERO, ms(10)),
        ("interval", Duration::from_micros(999), ms(10)),
        ("interval", *POLL_INTERVAL_RANGE.end() + ms(1), ms(10)),
        ("interval", Duration::MAX, ms(10)),
        (
            "settle",
            ms(10),
            *SETTLE_RANGE.end() + Duration::from_micros(1),
        ),
        ("settle", ms(10), Duration::MAX),
    ];
    for (field, interval, settle) in refusals {
        let err =
            f.db.subscribe_polling(interval, settle)
                .await
                .expect_err(field);
        assert!(err.is_validation(), "{field}: {err:?}");
        assert_eq!(err.field(), Some(field), "{err:?}");
    }
    assert_eq!(POLL_INTERVAL_RANGE, ms(1)..=Duration::from_secs(3600));
    assert_eq!(SETTLE_RANGE, Duration::ZERO..=Duration::from_secs(3600));

    // The smallest interval with no settling delivers events.
    let mut fast =
        f.db.subscribe_polling(*POLL_INTERVAL_RANGE.start(), *SETTLE_RANGE.start())
            .await
            .unwrap();
    let task = f.task("polled", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let event = next_execution(&mut fast).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (e.id, EventKind::Enqueued)
    );

    // The largest of both is a working stream too (it reads changes an
    // hour old, so none yet): still open, nothing buffered.
    let mut slow =
        f.db.subscribe_polling(*POLL_INTERVAL_RANGE.end(), *SETTLE_RANGE.end())
            .await
            .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), slow.next())
            .await
            .is_err(),
        "no event and no end of stream"
    );
    assert_eq!(slow.buffered(), 0);
}

#[tokio::test]
async fn a_slow_consumer_is_told_what_it_lost_and_the_stream_goes_on() {
    let f = fixture().await;
    let mut events = f.db.subscribe().await.unwrap();
    // More notifications than the buffer holds, while nobody reads.
    let total = EVENT_BUFFER + 300;
    let queued = f.queued(total, |_| 0).await;
    let sent: HashSet<_> = queued.iter().map(|e| e.id).collect();

    // The buffer fills up and a Lagged stands behind it; memory stays
    // bounded whatever arrives next.
    tokio::time::timeout(NO_HANG, async {
        while events.buffered() < EVENT_BUFFER + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the buffer fills up");
    assert_eq!(events.buffered(), EVENT_BUFFER + 1);

    // First what fit, in order...
    let mut received = HashSet::new();
    for _ in 0..EVENT_BUFFER {
        let e = next_execution(&mut events).await;
        assert_eq!(e.kind, EventKind::Enqueued);
        assert!(sent.contains(&e.execution_id));
        assert!(received.insert(e.execution_id), "no duplicate");
    }
    // ...then how many were dropped...
    let mut missed = match next(&mut events).await {
        Event::Lagged { missed } => missed,
        other => panic!("expected Lagged, got {other:?}"),
    };
    assert!(missed >= 1);
    // ...then the rest, if any arrived after the consumer made room: every
    // notification sent is either delivered or counted.
    while received.len() as u64 + missed < total as u64 {
        match next(&mut events).await {
            Event::Execution(e) => {
                assert!(sent.contains(&e.execution_id));
                assert!(received.insert(e.execution_id), "no duplicate");
            }
            Event::Lagged { missed: more } => missed += more,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received.len() as u64 + missed, total as u64);

    // The stream goes on: a new change arrives as usual.
    let cancelled = f.queue.cancel(queued[0].id).await.unwrap();
    let event = next_execution(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind, event.status),
        (
            cancelled.id,
            EventKind::Cancelled,
            ExecutionStatus::Cancelled
        )
    );
    assert_eq!(events.buffered(), 0);
}

#[tokio::test]
async fn polling_reports_status_changes_and_not_heartbeats() {
    let f = fixture().await;
    // Claimed before the stream starts: its heartbeats must stay quiet too.
    let old_task = f.task("old", 0).await;
    let old = f.queue.enqueue(old_task.id, None).await.unwrap();
    assert_eq!(f.queue.claim("w-old", 1, LEASE).await.unwrap().len(), 1);

    let mut events =
        f.db.subscribe_polling(Duration::from_millis(20), Duration::ZERO)
            .await
            .unwrap();
    let task = f.task("t", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let event = next_execution(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (e.id, EventKind::Enqueued)
    );
    assert_eq!(f.queue.claim("w", 1, LEASE).await.unwrap().len(), 1);
    let event = next_execution(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind, event.worker_id.as_deref()),
        (e.id, EventKind::Claimed, Some("w"))
    );

    // Heartbeats (they move updated_at) spread over several polls.
    for _ in 0..5 {
        f.queue.heartbeat(e.id, "w", LEASE).await.unwrap();
        f.queue.heartbeat(old.id, "w-old", LEASE).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // A status change after them: the poller reads in updated_at order, so
    // once it reports this one it has read past every heartbeat, and
    // reported none of them.
    let marker_task = f.task("marker", 0).await;
    let marker = f.queue.enqueue(marker_task.id, None).await.unwrap();
    let event = next_execution(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (marker.id, EventKind::Enqueued),
        "heartbeats are not events"
    );

    // Status changes still are, for both executions.
    f.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let event = next_execution(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind, event.status),
        (e.id, EventKind::Finished, ExecutionStatus::Completed)
    );
    f.queue.cancel(old.id).await.unwrap();
    let event = next_execution(&mut events).await;
    assert_eq!(
        (event.execution_id, event.kind),
        (old.id, EventKind::Cancelled)
    );
    // And a heartbeat of a finished execution is refused, changing nothing.
    assert!(f.queue.heartbeat(e.id, "w", LEASE).await.is_err());
    assert_eq!(events.buffered(), 0);
}

/// The TCP keepalive timer of the local socket connected from `local_port`
/// to `remote_port`, from `/proc/net/tcp{,6}`: `(timer kind, clock ticks
/// until it fires)`. Kind 2 is the keepalive timer.
#[cfg(target_os = "linux")]
fn socket_timer(local_port: u16, remote_port: u16) -> Option<(u32, u64)> {
    let port = |address: &str| {
        let hex = address.rsplit(':').next()?;
        u16::from_str_radix(hex, 16).ok()
    };
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 {
                continue;
            }
            if port(fields[1]) == Some(local_port) && port(fields[2]) == Some(remote_port) {
                let (kind, when) = fields[5].split_once(':')?;
                return Some((
                    u32::from_str_radix(kind, 16).ok()?,
                    u64::from_str_radix(when, 16).ok()?,
                ));
            }
        }
    }
    None
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_listener_connection_sends_keepalives_within_seconds() {
    let f = fixture().await;
    let _events = f.db.subscribe().await.unwrap();
    let client = f.db.raw_client().await.unwrap();
    let row = client
        .query_one(
            "SELECT a.client_port, inet_server_port(), inet_client_port() \
             FROM pg_stat_activity a \
             WHERE a.datname = current_database() \
               AND a.application_name = 'voidrunner-db-listener'",
            &[],
        )
        .await
        .unwrap();
    let (listener_port, server_port, pooled_port): (Option<i32>, Option<i32>, Option<i32>) =
        (row.get(0), row.get(1), row.get(2));
    let (Some(listener_port), Some(server_port), Some(pooled_port)) =
        (listener_port, server_port, pooled_port)
    else {
        // A Unix-socket server: no TCP, nothing to keep alive.
        eprintln!("the test server is not reached over TCP; keepalives do not apply");
        return;
    };
    let port = |p: i32| u16::try_from(p).expect("a TCP port");

    // The listener's socket: keepalive timer armed to fire within its idle
    // time of 15 s (the kernel counts in 1/100 s).
    let (kind, ticks) = socket_timer(port(listener_port), port(server_port))
        .expect("the listener's socket is in /proc/net/tcp");
    assert_eq!(kind, 2, "keepalive timer armed on the listener's socket");
    assert!(
        ticks <= 15 * 100,
        "first probe within 15 s, not {ticks} ticks"
    );

    // A pooled connection keeps the driver's default (2 hours): the short
    // timer is the listener's own setting.
    let (kind, ticks) = socket_timer(port(pooled_port), port(server_port))
        .expect("the pooled socket is in /proc/net/tcp");
    assert_eq!(kind, 2);
    assert!(ticks > 15 * 100, "{ticks}");
}
