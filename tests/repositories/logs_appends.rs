//! Appends (issue #21 §3): a lost lease refused with its reason and
//! nothing written, retries that add nothing twice, one bad execution of a
//! batch not stopping the others, and a batch killed or dropped mid-flight
//! written whole or not at all.

use std::time::Duration;

use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionStatus, LeaseLostReason, LogAppend, LogRepository,
    LogScope, NewLogLine, Outcome, PageRequest, RescuePolicy,
};

use crate::logs::{lines, missing_execution, running_task, seqs, stored};
use crate::{Repos, repos, repos_with_pool};

fn assert_lost(err: &Error, id: ExecutionId, reason: LeaseLostReason) {
    match err {
        Error::LeaseLost {
            execution,
            reason: r,
        } => assert_eq!((*execution, *r), (id, reason), "{err:?}"),
        other => panic!("expected LeaseLost {reason:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn an_append_without_the_lease_is_refused_with_its_reason_and_writes_nothing() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("lease@example.com").await;

    let completed = running_task(&r, &user, "completed", "w").await;
    logs.append(completed.id, "w", lines(0..5, "before"))
        .await
        .unwrap();
    r.queue
        .complete(completed.id, "w", Outcome::completed(0))
        .await
        .unwrap();

    let cancelled = running_task(&r, &user, "cancelled", "w").await;
    logs.append(cancelled.id, "w", lines(0..5, "before"))
        .await
        .unwrap();
    r.queue.cancel(cancelled.id).await.unwrap();

    let rescued = running_task(&r, &user, "rescued", "w").await;
    logs.append(rescued.id, "w", lines(0..5, "before"))
        .await
        .unwrap();
    r.db.raw_client()
        .await
        .unwrap()
        .execute(
            "UPDATE task_executions SET lease_expires_at = now() - interval '1 second' \
             WHERE id = $1",
            &[&rescued.id],
        )
        .await
        .unwrap();
    let report = r
        .queue
        .rescue_expired(RescuePolicy::default())
        .await
        .unwrap();
    drop(report);
    let status: ExecutionStatus =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT status FROM task_executions WHERE id = $1",
                &[&rescued.id],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(status, ExecutionStatus::Timeout);

    let others = running_task(&r, &user, "others", "owner").await;
    logs.append(others.id, "owner", lines(0..5, "before"))
        .await
        .unwrap();

    for (e, worker, reason) in [
        (&completed, "w", LeaseLostReason::Finished),
        (&cancelled, "w", LeaseLostReason::Cancelled),
        (&rescued, "w", LeaseLostReason::Expired),
        (&others, "intruder", LeaseLostReason::NotOwner),
    ] {
        let err = logs
            .append(e.id, worker, lines(5..10, "late"))
            .await
            .unwrap_err();
        assert_lost(&err, e.id, reason);
        let many = logs
            .append_many(vec![LogAppend::new(e.id, worker, lines(5..10, "late"))])
            .await
            .unwrap();
        assert_lost(many[0].as_ref().unwrap_err(), e.id, reason);
        assert_eq!(stored(&r, e.id).await, (5, 1), "{reason:?}");
    }
    // The finished ones' logs read to their end, their status final.
    let read = logs.read_after(completed.id, Some(4), 10).await.unwrap();
    assert_eq!(read.status, ExecutionStatus::Completed);
    assert!(read.lines.is_empty());

    let missing = missing_execution();
    let err = logs
        .append(missing, "w", lines(0..1, "x"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    for read in [
        logs.read_after(missing, None, 10).await.map(|_| ()),
        logs.tail(missing, 10).await.map(|_| ()),
        logs.page(missing, PageRequest::first(10)).await.map(|_| ()),
    ] {
        assert!(read.unwrap_err().is_not_found());
    }
    assert_eq!(r.count_rows("task_execution_logs").await, 20);
}

#[tokio::test]
async fn a_retried_or_overlapping_batch_adds_nothing_twice() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("retry@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    assert_eq!(
        logs.append(e.id, "w", lines(0..5, "alpha")).await.unwrap(),
        5
    );
    assert_eq!(
        logs.append(e.id, "w", lines(0..5, "alpha")).await.unwrap(),
        0
    );
    assert_eq!(stored(&r, e.id).await, (5, 1));
    // Overlapping: 3 and 4 are there, 5..8 are new.
    assert_eq!(
        logs.append(e.id, "w", lines(3..8, "alpha")).await.unwrap(),
        3
    );
    // A gap filled later, and a retry that straddles everything.
    assert_eq!(
        logs.append(e.id, "w", lines(10..12, "alpha"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        logs.append(e.id, "w", lines(0..12, "alpha")).await.unwrap(),
        2
    );
    assert_eq!(seqs(&r, e.id).await, (0..12).collect::<Vec<_>>());
    let (n, _) = stored(&r, e.id).await;
    assert_eq!(n, 12);
    // A retried line keeps its first text.
    let changed = vec![NewLogLine::stdout(4, "rewritten")];
    assert_eq!(logs.append(e.id, "w", changed).await.unwrap(), 0);
    let found = logs
        .search(LogScope::User(user.id), "alpha", PageRequest::first(100))
        .await
        .unwrap();
    let mut found: Vec<u64> = found.items.iter().map(|m| m.line.seq).collect();
    found.reverse();
    assert_eq!(found, (0..12).collect::<Vec<_>>(), "each line once");
    let found = logs
        .search(LogScope::User(user.id), "rewritten", PageRequest::first(10))
        .await
        .unwrap();
    assert!(found.items.is_empty());
}

#[tokio::test]
async fn one_bad_execution_of_a_batch_does_not_stop_the_others() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("batch@example.com").await;
    let first = running_task(&r, &user, "first", "w").await;
    let ended = running_task(&r, &user, "ended", "w").await;
    let last = running_task(&r, &user, "last", "w").await;
    r.queue
        .complete(ended.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let missing = missing_execution();
    let results = logs
        .append_many(vec![
            LogAppend::new(first.id, "w", lines(0..3, "a")),
            LogAppend::new(ended.id, "w", lines(0..3, "b")),
            LogAppend::new(missing, "w", lines(0..3, "c")),
            LogAppend::new(last.id, "w", lines(0..4, "d")),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(*results[0].as_ref().unwrap(), 3);
    assert_lost(
        results[1].as_ref().unwrap_err(),
        ended.id,
        LeaseLostReason::Finished,
    );
    assert!(results[2].as_ref().unwrap_err().is_not_found());
    assert_eq!(*results[3].as_ref().unwrap(), 4);
    assert_eq!(stored(&r, first.id).await, (3, 1));
    assert_eq!(stored(&r, ended.id).await, (0, 0));
    assert_eq!(stored(&r, last.id).await, (4, 1));
    // An invalid append refuses the whole batch before any SQL.
    let err = logs
        .append_many(vec![
            LogAppend::new(first.id, "w", lines(3..5, "a")),
            LogAppend::new(last.id, "w", vec![NewLogLine::stdout(9, "a\0b")]),
        ])
        .await
        .unwrap_err();
    assert!(err.is_validation(), "{err:?}");
    let err = logs
        .append_many(vec![
            LogAppend::new(first.id, "w", lines(3..5, "a")),
            LogAppend::new(first.id, "w", lines(5..7, "a")),
        ])
        .await
        .unwrap_err();
    assert!(err.is_validation(), "{err:?}");
    assert_eq!(stored(&r, first.id).await, (3, 1));
}

/// Lines big enough that their append takes a while: 10,000 of 3,000
/// bytes.
fn big_batch() -> Vec<NewLogLine> {
    (0..10_000u64)
        .map(|i| NewLogLine::stdout(i, format!("{i} {}", "word ".repeat(600))))
        .collect()
}

/// The pid of the backend running an append into the log tables, once
/// one is; `None` when `done` first says the append finished.
async fn appending_backend(r: &Repos, done: impl Fn() -> bool) -> Option<i32> {
    let raw = r.db.raw_client().await.unwrap();
    loop {
        let row = raw
            .query_opt(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() AND state = 'active' \
                   AND pid <> pg_backend_pid() \
                   AND query LIKE '%INSERT INTO task_execution_logs%' LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return Some(row.get(0));
        }
        if done() {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_batch_killed_mid_flight_is_written_whole_or_not_at_all() {
    let r = repos().await;
    let user = r.user("killed@example.com").await;
    for kill in ["pg_terminate_backend", "pg_cancel_backend"] {
        let e = running_task(&r, &user, kill, "w").await;
        let logs = r.db.db().logs();
        let append = tokio::spawn(async move { logs.append(e.id, "w", big_batch()).await });
        let pid = appending_backend(&r, || append.is_finished()).await;
        if let Some(pid) = pid {
            r.db.raw_client()
                .await
                .unwrap()
                .execute(&format!("SELECT {kill}($1)"), &[&pid])
                .await
                .unwrap();
        }
        let result = append.await.unwrap();
        let (n, chunks) = stored(&r, e.id).await;
        match result {
            Ok(added) => assert_eq!((added, n), (10_000, 10_000), "{kill}"),
            Err(err) => {
                assert_eq!((n, chunks), (0, 0), "{kill}: {err:?}");
                // The pool goes on; the retry writes the batch once. Behind
                // a transaction pooler the killed server session takes its
                // client connection down a moment later: a call that meets
                // it is Unavailable, retryable, and the next one goes
                // through a fresh connection.
                let mut attempts = 0;
                let added = loop {
                    attempts += 1;
                    match r.db.db().logs().append(e.id, "w", big_batch()).await {
                        Err(err) if err.is_unavailable() && attempts < 3 => continue,
                        other => break other.unwrap(),
                    }
                };
                assert_eq!(added, 10_000, "{kill}");
            }
        }
        assert_eq!(seqs(&r, e.id).await.len(), 10_000);
        let (_, chunks) = stored(&r, e.id).await;
        assert!(chunks >= 10_000 * 3_000 / 65_536, "{chunks}");
    }
}

#[tokio::test]
async fn an_append_dropped_mid_flight_leaves_the_pool_usable() {
    // Two connections: the raw session that watches, and the append's.
    let r = repos_with_pool(2).await;
    let user = r.user("dropped@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    let logs = r.db.db().logs();
    let append = tokio::spawn(async move { logs.append(e.id, "w", big_batch()).await });
    appending_backend(&r, || append.is_finished()).await;
    append.abort();
    let _ = append.await;
    // Both connections of the pool answer again, the dropped one's too.
    let both = tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b) = (
            r.db.raw_client().await.unwrap(),
            r.db.raw_client().await.unwrap(),
        );
        for c in [&a, &b] {
            c.query_one("SELECT 1", &[]).await.unwrap();
        }
    })
    .await;
    assert!(both.is_ok(), "the pool gives its connections back");
    let logs = r.db.db().logs();
    let small = logs
        .append(
            e.id,
            "w",
            vec![NewLogLine::stdout(10_000, "after the drop")],
        )
        .await
        .unwrap();
    assert_eq!(small, 1);
    let (n, _) = stored(&r, e.id).await;
    assert!(
        n == 1 || n == 10_001,
        "{n}: all or nothing of the dropped batch"
    );
    // The dropped batch may still be running on the server (a cancel
    // through a transaction pooler takes a moment): the retry then waits
    // for its lock and adds nothing, or adds the whole batch when the
    // dropped one was cancelled. Never part of it, never twice.
    let retried = logs.append(e.id, "w", big_batch()).await.unwrap();
    assert!(
        retried == 10_000 && n == 1 || retried == 0,
        "{n} stored, then {retried} added"
    );
    assert_eq!(stored(&r, e.id).await.0, 10_001);
    let tail = logs.tail(e.id, 2).await.unwrap();
    assert_eq!(
        tail.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [9_999, 10_000]
    );
}
