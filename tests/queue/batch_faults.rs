//! Faults of the batched queue (#11): Completer/Heartbeater shutdown and
//! error propagation, the V6 statement-level trigger against another
//! application's writes, cancellation and lock-order races of the batched
//! statements.

use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::{
    Completer, CompleterConfig, Completion, ExecutionQueue, ExecutionRepository, ExecutionStatus,
    Heartbeat, Heartbeater, HeartbeaterConfig, Outcome, PgExecutionQueue, RescuePolicy,
};

use crate::{LEASE, fixture};

/// A raw session of its own (not pooled), to hold locks in a transaction.
async fn session(f: &crate::Fixture) -> tokio_postgres::Client {
    let (client, connection) = f
        .session_pg_config()
        .await
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// `Completer::shutdown` documents: "Calling it again, or from a clone,
/// returns once that flush is done." When the first `shutdown` is dropped
/// while it waits (a service's shutdown under `tokio::time::timeout`, or a
/// `select!` on a signal), the second returns at once, while the flush is
/// still running: the caller then closes the `Database` under a batch that
/// has not been written.
#[tokio::test]
async fn a_shutdown_dropped_while_waiting_lets_the_next_return_before_the_flush() {
    let f = fixture().await;
    f.queued(1, |_| 0).await;
    let job = f.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    let id = job.execution.id;

    // Another session holds the task's lock: the batch's statement waits.
    let locker = session(&f).await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
            job.execution.task_id
        ))
        .await
        .unwrap();

    let completer = Completer::with_config(
        Arc::new(f.queue.clone()),
        CompleterConfig {
            flush_interval: Duration::from_millis(1),
            max_batch: 10,
            ..CompleterConfig::default()
        },
    )
    .unwrap();
    let pending = tokio::spawn(completer.complete(id, "w", Outcome::completed(0)));
    tokio::time::sleep(Duration::from_millis(100)).await; // the batch is blocked
    assert!(
        tokio::time::timeout(Duration::from_millis(50), completer.shutdown())
            .await
            .is_err(),
        "the flush is blocked by the lock, so the first shutdown must wait"
    );
    // Documented: returns once that flush is done. The flush cannot finish
    // while the lock is held.
    let second = tokio::time::timeout(Duration::from_millis(500), completer.shutdown()).await;
    let status_when_second_returned = f.executions.get(id).await.unwrap().status;

    locker.batch_execute("ROLLBACK").await.unwrap();
    let result = pending.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        second.is_err(),
        "the second shutdown returned while the flush was still blocked \
         (execution still {status_when_second_returned:?})"
    );
}

/// A batch's error is "every caller's of that batch, as the same kind of
/// error", and `replicate` promises the same "variant, fields and
/// predicates". A write refused by a read-only server (a failover demoted
/// the primary) is `is_read_only()` for `complete` and `complete_many`,
/// but not for the callers of a `Completer` (nor of a `Heartbeater`): the
/// copy's source is an `Arc<Error>`, which `sqlstate()` does not look
/// through, so the SQLSTATE (25006) is lost.
#[tokio::test]
async fn batch_errors_keep_is_read_only_for_every_caller() {
    let f = fixture().await;
    if crate::behind_transaction_pooler(&f.db) {
        // ALTER DATABASE ... SET is read at connect; a pooler keeps its
        // server connections. Checked straight against the server.
        return;
    }
    f.queued(3, |_| 0).await;
    let jobs = f.queue.claim("w", 3, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let admin = session(&f).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            f.db.name()
        ))
        .await
        .unwrap();
    let read_only = voidrunner_db::Database::connect(f.db.config().await.unwrap())
        .await
        .unwrap();
    let queue = PgExecutionQueue::new(read_only.clone());

    let direct = queue
        .complete_many(vec![Completion::new(
            jobs[0].execution.id,
            "w",
            Outcome::completed(0),
        )])
        .await
        .unwrap_err();
    assert!(direct.is_read_only(), "complete_many itself: {direct:?}");

    let completer = Completer::new(Arc::new(queue.clone())).unwrap();
    let batched = completer
        .complete(jobs[1].execution.id, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    let heartbeater = Heartbeater::new(Arc::new(queue.clone())).unwrap();
    let beat = heartbeater
        .heartbeat(jobs[2].execution.id, "w", LEASE)
        .await
        .unwrap_err();
    completer.shutdown().await;
    heartbeater.shutdown().await;
    read_only.close(Duration::from_secs(5)).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" RESET default_transaction_read_only",
            f.db.name()
        ))
        .await
        .unwrap();

    assert_eq!(batched.is_unavailable(), direct.is_unavailable());
    assert_eq!(
        batched.sqlstate(),
        direct.sqlstate(),
        "Completer caller: {batched:?}"
    );
    assert!(batched.is_read_only(), "Completer caller: {batched:?}");
    assert!(beat.is_read_only(), "Heartbeater caller: {beat:?}");
}

/// V6 builds every event of a statement into one `text[]` before cutting
/// it into notifications. An array is limited to 1 GB, so another
/// application's bulk write of many executions (here an import of 700,000
/// finished executions whose 255-character worker ids are control
/// characters, which JSON escapes to 6 bytes each: ~1.7 KB an event) now
/// fails with "array size exceeds the maximum allowed" and rolls back. The
/// same INSERT succeeds under V5's row trigger (checked by hand: 35 s).
/// With worker ids of ordinary length the limit is ~6 M rows: an operator's
/// `UPDATE task_executions SET status = 'cancelled' WHERE status =
/// 'pending'` on a big backlog fails the same way.
#[tokio::test]
async fn another_applications_bulk_insert_is_not_broken_by_the_statement_trigger() {
    let f = fixture().await;
    let task = f.task("history", 0).await;
    let client = session(&f).await;
    let result = client
        .execute(
            "INSERT INTO task_executions (task_id, status, worker_id) \
             SELECT $1, 'failed', repeat(chr(1), 255) FROM generate_series(1, 700000)",
            &[&task.id],
        )
        .await;
    assert!(
        result.is_ok(),
        "the V6 trigger broke another application's INSERT: {:?}",
        result
            .err()
            .and_then(|e| e.as_db_error().map(|d| d.message().to_owned()))
    );
}

/// Batched calls dropped at every await point (tiny timeouts) leave no
/// session idle in a transaction, keep every execution and its task in
/// step, and the pool usable.
#[tokio::test]
async fn batched_calls_dropped_midway_leave_nothing_half_done() {
    let f = fixture().await;
    let queued = f.queued(60, |_| 0).await;
    let mut jobs = Vec::new();
    while jobs.len() < queued.len() {
        jobs.extend(f.queue.claim("w", 100, LEASE).await.unwrap());
    }
    let ids: Vec<_> = jobs.iter().map(|j| j.execution.id).collect();
    for round in 0..200u64 {
        let micros = Duration::from_micros(round * 37 % 4000);
        let chunk = &ids[(round as usize * 7) % 50..][..10];
        if round % 2 == 0 {
            let beats = chunk
                .iter()
                .map(|id| Heartbeat::new(*id, "w", LEASE))
                .collect();
            let _ = tokio::time::timeout(micros, f.queue.heartbeat_batch(beats)).await;
        } else if round % 5 == 1 {
            let completions = chunk
                .iter()
                .map(|id| Completion::new(*id, "w", Outcome::completed(0)))
                .collect();
            let _ = tokio::time::timeout(micros, f.queue.complete_many(completions)).await;
        } else {
            let _ =
                tokio::time::timeout(micros, f.queue.heartbeat_many("w", chunk.to_vec(), LEASE))
                    .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let in_tx: i64 = f
        .scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await;
    assert_eq!(in_tx, 0, "a session was left in a transaction");
    let out_of_step: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
             WHERE (e.status = 'running') <> (t.status = 'running') \
                OR (e.status = 'completed') <> (t.status = 'completed')",
            &[],
        )
        .await;
    assert_eq!(out_of_step, 0);
    // Still usable, and everything left still completes.
    let results = f
        .queue
        .complete_many(
            ids.iter()
                .map(|id| Completion::new(*id, "w", Outcome::completed(0)))
                .collect(),
        )
        .await
        .unwrap();
    for (id, result) in ids.iter().zip(results) {
        match result {
            Ok(e) => assert_eq!(e.status, ExecutionStatus::Completed),
            Err(err) => {
                assert!(err.is_lease_lost(), "{id}: {err:?}");
                assert_eq!(
                    f.executions.get(*id).await.unwrap().status,
                    ExecutionStatus::Completed
                );
            }
        }
    }
}

/// heartbeat_batch, complete_many, heartbeat_many, cancel and the rescuer
/// on the same executions, each in its own order, concurrently: no
/// deadlock (40P01) and no error other than the per-item answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_in_different_orders_never_deadlock() {
    let f = fixture().await;
    for round in 0..5 {
        let queued = f.queued(40, |i| (i % 3) as i32).await;
        let mut jobs = Vec::new();
        while jobs.len() < queued.len() {
            jobs.extend(
                f.queue
                    .claim("w", 100, Duration::from_millis(300))
                    .await
                    .unwrap(),
            );
        }
        let ids: Vec<_> = jobs.iter().map(|j| j.execution.id).collect();
        let mut reversed = ids.clone();
        reversed.reverse();
        let mut interleaved: Vec<_> = ids.iter().step_by(2).copied().collect();
        interleaved.extend(ids.iter().skip(1).step_by(2));

        let mut set = tokio::task::JoinSet::new();
        for k in 0..3 {
            let q = f.queue.clone();
            let order = [&ids, &reversed, &interleaved][k].clone();
            set.spawn(async move {
                for _ in 0..5 {
                    let beats = order
                        .iter()
                        .map(|id| Heartbeat::new(*id, "w", LEASE))
                        .collect();
                    q.heartbeat_batch(beats).await.map(|_| ())?;
                }
                Ok::<_, voidrunner_db::Error>(())
            });
        }
        let q = f.queue.clone();
        let order = reversed.clone();
        set.spawn(async move { q.heartbeat_many("w", order, LEASE).await.map(|_| ()) });
        let q = f.queue.clone();
        let order = interleaved.clone();
        set.spawn(async move {
            q.complete_many(
                order
                    .iter()
                    .map(|id| Completion::new(*id, "w", Outcome::completed(0)))
                    .collect(),
            )
            .await
            .map(|_| ())
        });
        let q = f.queue.clone();
        let order = reversed.clone();
        set.spawn(async move {
            for id in order {
                match q.cancel(id).await {
                    Ok(_) => {}
                    Err(e) if e.is_invalid_transition() || e.is_lease_lost() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        let q = f.queue.clone();
        set.spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            q.rescue_expired(RescuePolicy::default()).await.map(|_| ())
        });
        while let Some(joined) = set.join_next().await {
            if let Err(err) = joined.unwrap() {
                panic!("round {round}: {err:?} (sqlstate {:?})", err.sqlstate());
            }
        }
        // Make room for the next round: end whatever is still active.
        f.db.raw_client()
            .await
            .unwrap()
            .batch_execute(
                "SET voidrunner.notify_events = off; \
                 UPDATE task_executions SET status = 'cancelled', lease_expires_at = NULL, \
                   completed_at = greatest(now(), started_at) \
                 WHERE status IN ('pending', 'running'); \
                 RESET voidrunner.notify_events",
            )
            .await
            .unwrap();
    }
}

/// A Heartbeater's docs: a caller gets exactly the result `heartbeat`
/// would have given. Hostile items (blank, NUL, too long, non-ASCII worker
/// ids; zero and huge leases) get `Validation`, and do not cost the
/// valid heartbeats of the same batch anything.
#[tokio::test]
async fn heartbeater_hostile_items_are_their_own_validation_errors() {
    let f = fixture().await;
    f.queued(2, |_| 0).await;
    let worker = "ẞ-ünïcödé-🦀".repeat(20); // 220 characters, > 255 bytes
    let jobs = f.queue.claim(&worker, 2, LEASE).await.unwrap();
    let (a, b) = (jobs[0].execution.id, jobs[1].execution.id);
    let heartbeater = Heartbeater::with_config(
        Arc::new(f.queue.clone()),
        HeartbeaterConfig {
            flush_interval: Duration::from_millis(20),
            max_batch: 50,
            ..HeartbeaterConfig::default()
        },
    )
    .unwrap();
    let before = f.executions.get(b).await.unwrap();
    let bad = [
        heartbeater.heartbeat(b, "", LEASE),
        heartbeater.heartbeat(b, "w\0", LEASE),
        heartbeater.heartbeat(b, &"x".repeat(256), LEASE),
        heartbeater.heartbeat(b, &worker, Duration::ZERO),
        heartbeater.heartbeat(b, &worker, Duration::MAX),
        heartbeater.heartbeat(b, &worker, Duration::from_nanos(1)),
    ];
    let good = heartbeater.heartbeat(a, &worker, LEASE);
    for (i, call) in bad.into_iter().enumerate() {
        let err = call.await.unwrap_err();
        assert!(err.is_validation(), "{i}: {err:?}");
    }
    good.await.unwrap();
    let after = f.executions.get(b).await.unwrap();
    assert_eq!(before.lease_expires_at, after.lease_expires_at);
    assert_eq!(before.heartbeat_at, after.heartbeat_at);
    heartbeater.shutdown().await;
    // After shutdown, through a clone too.
    let err = heartbeater
        .clone()
        .heartbeat(a, &worker, LEASE)
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    let _ = ExecutionRepository::get(&f.executions, a).await.unwrap();
}

/// A session LISTENing on the events channel, raw: the payloads as sent.
async fn raw_payloads(
    f: &crate::Fixture,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = f
        .session_pg_config()
        .await
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (sender, payloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = sender.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", voidrunner_db::events::CHANNEL))
        .await
        .unwrap();
    (client, payloads)
}

/// The payload was documented (domain.rs, V2/V3, the previous release) as
/// one JSON object per execution, and the previous release's listener
/// reads nothing else: during a rolling deploy, the instances still on it
/// log and skip every V6 notification, with no `Lagged` or `Reconnected`
/// to tell them to look at the tables, and so does any other application
/// on the channel. A statement that changes one execution (`enqueue`,
/// `claim` of one, `complete`, `cancel`: the common case) could keep
/// sending the object; V6 wraps it in an array. (The CHANGELOG lists the
/// new format under "Changed", not as a breaking change.)
#[tokio::test]
async fn a_one_row_change_still_sends_the_documented_single_object() {
    let f = fixture().await;
    let (_client, mut payloads) = raw_payloads(&f).await;
    let task = f.task("one", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let payload = tokio::time::timeout(Duration::from_secs(10), payloads.recv())
        .await
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert!(
        value.is_object(),
        "a listener of the previous release cannot read {payload}"
    );
    assert_eq!(value["execution_id"], e.id.as_uuid().to_string());
}

/// Down to V5 and up to V6 again under a live `subscribe` stream: every
/// change is announced under both triggers, and the old trigger is back
/// after the down migration.
#[tokio::test]
async fn v6_down_and_up_under_a_live_listener_loses_no_event() {
    let f = fixture().await;
    if crate::behind_transaction_pooler(&f.db) {
        return; // migrating needs the direct URL; checked straight.
    }
    let mut events = f.db.subscribe().await.unwrap();
    async fn expect(
        events: &mut voidrunner_db::EventStream,
        n: usize,
    ) -> Vec<voidrunner_db::ExecutionEvent> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("an event within 10 s")
                .unwrap()
            {
                voidrunner_db::Event::Execution(e) => got.push(e),
                other => panic!("{other:?}"),
            }
        }
        got
    }
    f.queued(3, |_| 0).await;
    assert_eq!(expect(&mut events, 3).await.len(), 3);
    // Every version from V6 up is reverted, newest first, and applied again.
    let above_v5: Vec<i32> = (6..=voidrunner_db::migrate::latest_version()).collect();
    assert_eq!(
        f.db.migrate_down(voidrunner_db::DownTarget::ToVersion(5))
            .await
            .unwrap(),
        above_v5.iter().rev().copied().collect::<Vec<_>>()
    );
    let triggers: i64 = f
        .scalar(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'task_executions_notify'",
            &[],
        )
        .await;
    assert_eq!(triggers, 1);
    // Queued as V5's schema takes them: the crate's statements need the
    // latest schema (V9's scope check), so by hand, one row each.
    let queued: i64 = f
        .scalar(
            "WITH t AS (INSERT INTO tasks (user_id, name, script_content) \
               SELECT $1, 'v5-' || g, 'print(1)' FROM generate_series(1, 3) g RETURNING id), \
             moved AS (INSERT INTO task_executions (task_id) SELECT id FROM t RETURNING 1) \
             SELECT count(*) FROM moved",
            &[&f.user.id],
        )
        .await;
    assert_eq!(queued, 3);
    assert_eq!(expect(&mut events, 3).await.len(), 3);
    assert_eq!(f.db.migrate().await.unwrap(), above_v5);
    let claimed = f.queue.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 6);
    let got = expect(&mut events, 6).await;
    assert!(got.iter().all(|e| e.status == ExecutionStatus::Running));
}

/// An operator drops a column of task_executions and adds it back (it
/// moves to the end of the table): rows are still read right, by the
/// crate's own statements (cached before the change) and its batched
/// paths, which locate columns by position.
#[tokio::test]
async fn a_column_dropped_and_added_back_is_still_read_in_its_place() {
    let f = fixture().await;
    if crate::behind_transaction_pooler(&f.db) {
        return;
    }
    f.queued(4, |_| 0).await;
    let jobs = f.queue.claim("w", 2, LEASE).await.unwrap(); // statements cached
    f.queue
        .complete(jobs[0].execution.id, "w", Outcome::completed(3))
        .await
        .unwrap();
    let admin = session(&f).await;
    admin
        .batch_execute(
            "ALTER TABLE task_executions DROP COLUMN stdout; \
             ALTER TABLE task_executions ADD COLUMN stdout text; \
             ALTER TABLE task_executions DROP COLUMN return_code; \
             ALTER TABLE task_executions ADD COLUMN return_code integer",
        )
        .await
        .unwrap();
    let more = f.queue.claim("w", 2, LEASE).await.unwrap();
    assert_eq!(more.len(), 2);
    let mut outcome = Outcome::completed(7);
    outcome.stdout = Some("out".to_owned());
    let done = f
        .queue
        .complete_many(vec![
            Completion::new(jobs[1].execution.id, "w", outcome.clone()),
            Completion::new(more[0].execution.id, "w", outcome.clone()),
        ])
        .await
        .unwrap();
    for r in done {
        let e = r.unwrap();
        assert_eq!(e.return_code, Some(7));
        assert_eq!(e.stdout.as_deref(), Some("out"));
        assert_eq!(e.status, ExecutionStatus::Completed);
    }
    let e = f.executions.get(more[1].execution.id).await.unwrap();
    assert_eq!(e.worker_id.as_deref(), Some("w"));
    assert_eq!(e.return_code, None);
}

/// `CompleterConfig::flush_interval` and `HeartbeaterConfig::flush_interval`
/// are documented as "1 µs..=MAX_FLUSH_INTERVAL"; `validate` only refuses
/// zero, so 1 ns passes.
#[tokio::test]
async fn flush_intervals_below_the_documented_microsecond_are_config_errors() {
    let completer = CompleterConfig {
        flush_interval: Duration::from_nanos(1),
        ..Default::default()
    };
    let heartbeater = HeartbeaterConfig {
        flush_interval: Duration::from_nanos(999),
        ..Default::default()
    };
    assert!(
        matches!(
            completer.validate(),
            Err(voidrunner_db::Error::Config { .. })
        ),
        "{completer:?} accepted"
    );
    assert!(
        matches!(
            heartbeater.validate(),
            Err(voidrunner_db::Error::Config { .. })
        ),
        "{heartbeater:?} accepted"
    );
}

/// The server stops under a blocked batch (a private cluster): every caller
/// of that batch gets `Unavailable`, nothing of it is applied, and after
/// the restart the same `Completer` and `Heartbeater` carry on (their
/// background task survives; the pool heals).
#[tokio::test]
async fn the_batchers_survive_a_server_restart_under_a_batch() {
    use voidrunner_db::testing::PrivateCluster;
    use voidrunner_db::{
        Database, NewTask, NewUser, PasswordHash, PgTaskRepository, PgUserRepository,
        TaskRepository, UserRepository,
    };
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
    let mut ids = Vec::new();
    for i in 0..10 {
        let t = tasks
            .create(NewTask::new(user.id, format!("t{i}"), "x"))
            .await
            .unwrap();
        queue.enqueue(t.id, None).await.unwrap();
    }
    for job in queue.claim("w", 10, LEASE).await.unwrap() {
        ids.push((job.execution.id, job.execution.task_id));
    }
    assert_eq!(ids.len(), 10);
    let (locker, connection) = cluster
        .config()
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
            ids[0].1
        ))
        .await
        .unwrap();
    let completer = Completer::new(Arc::new(queue.clone())).unwrap();
    let heartbeater = Heartbeater::new(Arc::new(queue.clone())).unwrap();
    let beats: Vec<_> = ids
        .iter()
        .map(|(id, _)| tokio::spawn(heartbeater.heartbeat(*id, "w", LEASE)))
        .collect();
    let calls: Vec<_> = ids
        .iter()
        .map(|(id, _)| tokio::spawn(completer.complete(*id, "w", Outcome::completed(0))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop_server().await.unwrap();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    for beat in beats {
        let err = beat.await.unwrap().unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    cluster.start_server().await.unwrap();
    let mut done = 0;
    for (id, _) in &ids {
        for attempt in 0..50 {
            match completer.complete(*id, "w", Outcome::completed(0)).await {
                Ok(e) => {
                    assert_eq!(e.status, ExecutionStatus::Completed);
                    done += 1;
                    break;
                }
                Err(e) if e.is_unavailable() && attempt < 49 => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{id}: {e:?}"),
            }
        }
    }
    assert_eq!(done, 10, "every completion applied once, after the restart");
    completer.shutdown().await;
    heartbeater.shutdown().await;
    db.close(Duration::from_secs(5)).await;
    cluster.destroy().await.unwrap();
}

/// Many callers race two concurrent shutdowns of one `Completer`: every
/// caller gets an answer (no hang); one told `Unavailable` "shut down" had
/// nothing applied, one answered `Ok` had its completion applied; both
/// shutdowns return after the last applied completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_racing_concurrent_shutdowns_each_get_the_truth() {
    let f = fixture().await;
    f.queued(200, |_| 0).await;
    let mut jobs = Vec::new();
    while jobs.len() < 200 {
        jobs.extend(f.queue.claim("w", 100, LEASE).await.unwrap());
    }
    let completer = Completer::with_config(
        Arc::new(f.queue.clone()),
        CompleterConfig {
            flush_interval: Duration::from_micros(500),
            max_batch: 7,
            ..CompleterConfig::default()
        },
    )
    .unwrap();
    let mut callers = tokio::task::JoinSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let completer = completer.clone();
        let id = job.execution.id;
        callers.spawn(async move {
            tokio::time::sleep(Duration::from_micros((i as u64 % 50) * 100)).await;
            (id, completer.complete(id, "w", Outcome::completed(0)).await)
        });
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    let (a, b) = (completer.clone(), completer.clone());
    let (s1, s2) = tokio::join!(
        tokio::spawn(async move { a.shutdown().await }),
        tokio::spawn(async move { b.shutdown().await })
    );
    s1.unwrap();
    s2.unwrap();
    // Both shutdowns are back: whatever was handed over is applied now.
    let applied_at_shutdown: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status = 'completed'",
            &[],
        )
        .await;
    let mut ok = 0;
    let mut refused = 0;
    let answers = tokio::time::timeout(Duration::from_secs(30), async {
        let mut all = Vec::new();
        while let Some(joined) = callers.join_next().await {
            all.push(joined.unwrap());
        }
        all
    })
    .await
    .expect("a caller hung");
    for (id, answer) in answers {
        let status = f.executions.get(id).await.unwrap().status;
        match answer {
            Ok(e) => {
                ok += 1;
                assert_eq!(e.status, ExecutionStatus::Completed);
                assert_eq!(status, ExecutionStatus::Completed);
            }
            Err(err) => {
                refused += 1;
                assert!(err.is_unavailable(), "{err:?}");
                assert_eq!(
                    status,
                    ExecutionStatus::Running,
                    "{id}: refused yet applied"
                );
            }
        }
    }
    assert_eq!(ok + refused, 200);
    assert_eq!(
        applied_at_shutdown, ok as i64,
        "shutdown returned before a flush"
    );
}
