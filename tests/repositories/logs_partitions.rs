//! The log tables' partitions (issue #21 §1, §2): maintenance as if the
//! clock stood at a chosen time, lines of executions whose day has no
//! partition waiting in DEFAULT and moved out by the next maintenance,
//! other units, a change of unit, and retention dropping whole partitions
//! while appends go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use time::macros::datetime;
use voidrunner_db::{
    LogAppend, LogPartitionUnit, LogRepository, LogRetention, NewLogLine, Timestamp,
};

use crate::logs::{lines, running_task, seqs, set_created_at, stored};
use crate::{Repos, repos};

fn ts(at: time::OffsetDateTime) -> Timestamp {
    Timestamp::from(at)
}

/// The partitions of `parent` with their bounds (the DEFAULT one left
/// out), oldest first, read from the catalog.
async fn partitions(r: &Repos, parent: &str) -> Vec<(String, Timestamp, Timestamp)> {
    r.db.raw_client()
        .await
        .unwrap()
        .query(
            "SELECT partition::text, lower_bound, upper_bound \
             FROM voidrunner_log_partitions($1::text::regclass) ORDER BY lower_bound",
            &[&parent],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Both tables' partitions, names only, sorted.
async fn all_partitions(r: &Repos) -> Vec<String> {
    let mut names: Vec<String> = partitions(r, "task_execution_logs")
        .await
        .into_iter()
        .chain(partitions(r, "task_execution_log_chunks").await)
        .map(|(name, _, _)| name)
        .collect();
    names.sort();
    names
}

/// The partition names of both tables for the range starting at `stamp`
/// (`YYYYMMDD_HHMI`).
fn names(stamps: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = stamps
        .iter()
        .flat_map(|s| {
            [
                format!("task_execution_logs_p{s}"),
                format!("task_execution_log_chunks_p{s}"),
            ]
        })
        .collect();
    all.sort();
    all
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Rows waiting in the DEFAULT partitions: (lines, chunks).
async fn waiting(r: &Repos) -> (i64, i64) {
    (
        r.count_rows("task_execution_logs_default").await,
        r.count_rows("task_execution_log_chunks_default").await,
    )
}

/// No two partitions of a table overlap and each table's are contiguous
/// from `from` to `to`.
fn contiguous(parts: &[(String, Timestamp, Timestamp)], from: Timestamp, to: Timestamp) {
    let inside: Vec<_> = parts
        .iter()
        .filter(|(_, lo, hi)| *hi > from && *lo < to)
        .collect();
    assert_eq!(inside.first().map(|p| p.1), Some(from), "{parts:?}");
    assert_eq!(inside.last().map(|p| p.2), Some(to), "{parts:?}");
    for pair in inside.windows(2) {
        assert_eq!(pair[0].2, pair[1].1, "gap or overlap: {parts:?}");
    }
}

#[tokio::test]
async fn lines_of_a_day_without_a_partition_wait_in_default_and_move_out() {
    let r = repos().await;
    let db = r.db.db();
    let logs = db.logs();
    let retention = LogRetention::default();
    let report = db
        .maintain_log_partitions_at(&retention, Some(ts(datetime!(2019-03-10 23:30 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&["20190310_0000", "20190311_0000", "20190312_0000"]),
        "{report:?}"
    );
    assert_eq!(report.moved, 0);

    let user = r.user("days@example.com").await;
    let last_moment = running_task(&r, &user, "last moment", "w1").await;
    let next_day = running_task(&r, &user, "next day", "w2").await;
    let far = running_task(&r, &user, "far", "w3").await;
    set_created_at(
        &r,
        last_moment.id,
        ts(datetime!(2019-03-10 23:59:59.999999 UTC)),
    )
    .await;
    set_created_at(&r, next_day.id, ts(datetime!(2019-03-13 00:00 UTC))).await;
    set_created_at(&r, far.id, ts(datetime!(2020-07-04 12:00 UTC))).await;
    for (e, worker) in [(&last_moment, "w1"), (&next_day, "w2"), (&far, "w3")] {
        assert_eq!(
            logs.append(e.id, worker, lines(0..150, "early"))
                .await
                .unwrap(),
            150
        );
        assert_eq!(
            logs.append(e.id, worker, lines(150..300, "later"))
                .await
                .unwrap(),
            150
        );
    }
    assert_eq!(
        r.count_rows("task_execution_logs_p20190310_0000").await,
        300
    );
    assert_eq!(waiting(&r).await, (600, 4));
    // Readable while they wait.
    assert_eq!(seqs(&r, next_day.id).await, (0..300).collect::<Vec<_>>());

    let report = db
        .maintain_log_partitions_at(&retention, Some(ts(datetime!(2019-03-11 00:30 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&["20190313_0000", "20200704_0000"]),
        "{report:?}"
    );
    assert_eq!(report.moved, 604, "{report:?}");
    assert_eq!(waiting(&r).await, (0, 0));
    assert_eq!(
        r.count_rows("task_execution_logs_p20190313_0000").await,
        300
    );
    assert_eq!(
        r.count_rows("task_execution_logs_p20200704_0000").await,
        300
    );
    for e in [&last_moment, &next_day, &far] {
        assert_eq!(seqs(&r, e.id).await, (0..300).collect::<Vec<_>>());
        assert_eq!(stored(&r, e.id).await, (300, 2));
    }
    let found = logs
        .search(
            voidrunner_db::LogScope::User(user.id),
            "later",
            voidrunner_db::PageRequest::first(100),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 100);

    // Appends now land in the new partition; maintenance again does nothing.
    assert_eq!(
        logs.append(next_day.id, "w2", lines(300..310, "after"))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        r.count_rows("task_execution_logs_p20190313_0000").await,
        310
    );
    let again = db
        .maintain_log_partitions_at(&retention, Some(ts(datetime!(2019-03-11 00:30 UTC))))
        .await
        .unwrap();
    assert!(again.created.is_empty() && again.moved == 0, "{again:?}");
}

#[tokio::test]
async fn hourly_weekly_and_monthly_partitions_cover_their_ranges() {
    let r = repos().await;
    let db = r.db.db();
    let hourly = LogRetention {
        partition: LogPartitionUnit::Hour,
        ahead: 3,
        keep: Duration::from_secs(2 * 3600),
    };
    let report = db
        .maintain_log_partitions_at(&hourly, Some(ts(datetime!(2019-04-01 10:15 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&[
            "20190401_1000",
            "20190401_1100",
            "20190401_1200",
            "20190401_1300"
        ])
    );
    let user = r.user("hours@example.com").await;
    let late = running_task(&r, &user, "late", "w").await;
    set_created_at(&r, late.id, ts(datetime!(2019-04-01 20:05 UTC))).await;
    db.logs()
        .append(late.id, "w", lines(0..10, "hour"))
        .await
        .unwrap();
    assert_eq!(waiting(&r).await, (10, 1));
    let report = db
        .maintain_log_partitions_at(&hourly, Some(ts(datetime!(2019-04-01 11:10 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&["20190401_1400", "20190401_2000"])
    );
    assert_eq!(report.moved, 11);
    // Only what ended two hours before 11:10: the migration's partitions.
    assert!(
        report.dropped.iter().all(|name| !name.contains("_p2019")),
        "{report:?}"
    );
    assert_eq!(seqs(&r, late.id).await, (0..10).collect::<Vec<_>>());
    contiguous(
        &partitions(&r, "task_execution_logs").await,
        ts(datetime!(2019-04-01 10:00 UTC)),
        ts(datetime!(2019-04-01 15:00 UTC)),
    );

    let weekly = LogRetention {
        partition: LogPartitionUnit::Week,
        ahead: 1,
        keep: Duration::from_secs(14 * 86_400),
    };
    // A Wednesday: its week starts on Monday the 29th.
    let report = db
        .maintain_log_partitions_at(&weekly, Some(ts(datetime!(2019-05-01 09:00 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&["20190429_0000", "20190506_0000"])
    );
    contiguous(
        &partitions(&r, "task_execution_log_chunks").await,
        ts(datetime!(2019-04-29 00:00 UTC)),
        ts(datetime!(2019-05-13 00:00 UTC)),
    );

    // The last day of January: the month ahead is February, not March.
    let monthly = LogRetention {
        partition: LogPartitionUnit::Month,
        ahead: 1,
        keep: Duration::from_secs(62 * 86_400),
    };
    let report = db
        .maintain_log_partitions_at(&monthly, Some(ts(datetime!(2020-01-31 18:00 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&["20200101_0000", "20200201_0000"]),
        "{report:?}"
    );
    contiguous(
        &partitions(&r, "task_execution_logs").await,
        ts(datetime!(2020-01-01 00:00 UTC)),
        ts(datetime!(2020-03-01 00:00 UTC)),
    );
}

#[tokio::test]
async fn a_change_of_unit_keeps_the_partitions_and_fills_the_gaps() {
    let r = repos().await;
    let db = r.db.db();
    // Long enough that nothing of 2019 expires (counted from the test's
    // clock, in the past), short enough for hourly partitions (at most
    // 1,000 kept).
    let daily = LogRetention {
        keep: Duration::from_secs(40 * 86_400),
        ..LogRetention::default()
    };
    db.maintain_log_partitions_at(&daily, Some(ts(datetime!(2019-03-10 12:00 UTC))))
        .await
        .unwrap();
    let before = partitions(&r, "task_execution_logs").await;
    let weekly = LogRetention {
        partition: LogPartitionUnit::Week,
        ahead: 1,
        keep: daily.keep,
    };
    // Monday the 11th: its week already has the 11th and the 12th.
    let report = db
        .maintain_log_partitions_at(&weekly, Some(ts(datetime!(2019-03-11 08:00 UTC))))
        .await
        .unwrap();
    assert_eq!(
        sorted(report.created.clone()),
        names(&["20190313_0000", "20190318_0000"]),
        "{report:?}"
    );
    let after = partitions(&r, "task_execution_logs").await;
    for old in &before {
        assert!(after.contains(old), "{old:?} changed: {after:?}");
    }
    let gap = after
        .iter()
        .find(|(name, _, _)| name.ends_with("_p20190313_0000"))
        .unwrap();
    assert_eq!(
        (gap.1, gap.2),
        (
            ts(datetime!(2019-03-13 00:00 UTC)),
            ts(datetime!(2019-03-18 00:00 UTC))
        )
    );
    contiguous(
        &after,
        ts(datetime!(2019-03-10 00:00 UTC)),
        ts(datetime!(2019-03-25 00:00 UTC)),
    );
    // Hours inside days and weeks that exist: nothing to make.
    let hourly = LogRetention {
        partition: LogPartitionUnit::Hour,
        ahead: 5,
        keep: daily.keep,
    };
    let report = db
        .maintain_log_partitions_at(&hourly, Some(ts(datetime!(2019-03-12 05:00 UTC))))
        .await
        .unwrap();
    assert!(report.created.is_empty(), "{report:?}");
    assert_eq!(partitions(&r, "task_execution_logs").await, after);
}

#[tokio::test]
async fn retention_drops_whole_old_partitions_while_appends_go_on() {
    let r = crate::repos_with_pool(8).await;
    let db = r.db.db();
    let day = LogRetention {
        partition: LogPartitionUnit::Day,
        ahead: 2,
        keep: Duration::from_secs(86_400),
    };
    db.maintain_log_partitions_at(&day, Some(ts(datetime!(2019-06-01 00:00 UTC))))
        .await
        .unwrap();
    let user = r.user("retention@example.com").await;
    let logs = db.logs();
    let mut old = Vec::new();
    for i in 0..3 {
        let worker = format!("old{i}");
        let e = running_task(&r, &user, &worker, &worker).await;
        set_created_at(&r, e.id, ts(datetime!(2019-06-01 10:00 UTC))).await;
        logs.append(e.id, &worker, lines(0..200, "old"))
            .await
            .unwrap();
        old.push(e);
    }
    let mut recent = Vec::new();
    for i in 0..4 {
        let worker = format!("new{i}");
        let e = running_task(&r, &user, &worker, &worker).await;
        set_created_at(&r, e.id, ts(datetime!(2019-06-03 01:00 UTC))).await;
        recent.push((e, worker));
    }
    // A row-by-row delete of any line would fail: only DROP may take them.
    r.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION no_row_deletes() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN RAISE EXCEPTION 'row deleted from %', TG_TABLE_NAME; END $$; \
             CREATE TRIGGER no_row_deletes BEFORE DELETE ON task_execution_logs \
               FOR EACH ROW EXECUTE FUNCTION no_row_deletes(); \
             CREATE TRIGGER no_row_deletes BEFORE DELETE ON task_execution_log_chunks \
               FOR EACH ROW EXECUTE FUNCTION no_row_deletes();",
        )
        .await
        .unwrap();

    // Cut off at 2019-06-02 12:00: the 1st's partitions end before it (the
    // migration's, today's and tomorrow's, do not: retention never counts
    // from a time later than the server's, so the test's clock stands in
    // the past).
    let cutoff = ts(datetime!(2019-06-02 12:00 UTC));
    let mut expected_dropped = Vec::new();
    for parent in ["task_execution_logs", "task_execution_log_chunks"] {
        for (name, _, hi) in partitions(&r, parent).await {
            if hi <= cutoff {
                expected_dropped.push(name);
            }
        }
    }
    expected_dropped.sort();
    assert!(expected_dropped.len() >= 2, "{expected_dropped:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let mut appenders = Vec::new();
    for (e, worker) in &recent {
        let (logs, stop, batches) = (db.logs(), stop.clone(), batches.clone());
        let (id, worker) = (e.id, worker.clone());
        appenders.push(tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<NewLogLine> = lines(next..next + 20, "recent");
                let added = logs
                    .append_many(vec![LogAppend::new(id, worker.clone(), batch)])
                    .await
                    .unwrap()
                    .remove(0)
                    .unwrap();
                assert_eq!(added, 20);
                next += 20;
                batches.fetch_add(1, Ordering::SeqCst);
            }
            next
        }));
    }
    while batches.load(Ordering::SeqCst) < 8 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = db
        .maintain_log_partitions_at(&day, Some(ts(datetime!(2019-06-03 12:00 UTC))))
        .await
        .unwrap();
    let during = batches.load(Ordering::SeqCst);
    // Appends carry on after the drop.
    while batches.load(Ordering::SeqCst) < during + 8 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut totals = Vec::new();
    for appender in appenders {
        totals.push(appender.await.unwrap());
    }
    assert_eq!(
        sorted(report.dropped.clone()),
        expected_dropped,
        "{report:?}"
    );
    let left = all_partitions(&r).await;
    for name in names(&[
        "20190602_0000",
        "20190603_0000",
        "20190604_0000",
        "20190605_0000",
    ]) {
        assert!(left.contains(&name), "{name} dropped: {left:?}");
    }
    for parent in ["task_execution_logs", "task_execution_log_chunks"] {
        for (name, _, hi) in partitions(&r, parent).await {
            assert!(hi > cutoff, "{name} ends before the cutoff and was left");
        }
    }
    for e in &old {
        assert_eq!(stored(&r, e.id).await, (0, 0));
        let read = logs.read_after(e.id, None, 10).await.unwrap();
        assert!(read.lines.is_empty());
    }
    for ((e, _), total) in recent.iter().zip(totals) {
        assert_eq!(seqs(&r, e.id).await, (0..total).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_bad_retention_is_refused_and_changes_nothing() {
    let r = repos().await;
    let db = r.db.db();
    let before = all_partitions(&r).await;
    let at = Some(ts(datetime!(2019-03-10 12:00 UTC)));
    for (field, bad) in [
        (
            "keep",
            LogRetention {
                keep: Duration::from_secs(3599),
                partition: LogPartitionUnit::Hour,
                ..LogRetention::default()
            },
        ),
        (
            "keep",
            LogRetention {
                keep: Duration::from_secs(86_399),
                ..LogRetention::default()
            },
        ),
        (
            "keep",
            LogRetention {
                keep: LogRetention::MAX_KEEP + Duration::from_secs(1),
                ..LogRetention::default()
            },
        ),
        (
            "ahead",
            LogRetention {
                ahead: LogRetention::MAX_AHEAD + 1,
                ..LogRetention::default()
            },
        ),
        (
            "keep",
            LogRetention {
                partition: LogPartitionUnit::Hour,
                keep: Duration::from_secs(60 * 86_400),
                ..LogRetention::default()
            },
        ),
    ] {
        let err = db.maintain_log_partitions_at(&bad, at).await.unwrap_err();
        assert!(
            matches!(&err, voidrunner_db::Error::Validation { field: f, .. } if *f == field),
            "{bad:?}: {err:?}"
        );
        assert_eq!(all_partitions(&r).await, before);
    }
    // The longest keep is accepted with a unit that keeps it in at most
    // 1,000 partitions.
    let edge = LogRetention {
        partition: LogPartitionUnit::Month,
        keep: LogRetention::MAX_KEEP,
        ahead: 0,
    };
    let report = db.maintain_log_partitions_at(&edge, at).await.unwrap();
    assert_eq!(sorted(report.created), names(&["20190301_0000"]));
}

/// Appends to executions whose lines wait in DEFAULT go on while the
/// maintenance makes their partition and moves the lines into it: every
/// append succeeds (at most it waits for the move), no line is lost or
/// doubled, and the DEFAULT partition ends empty.
#[tokio::test]
async fn appends_go_on_while_their_lines_move_out_of_default() {
    let r = crate::repos_with_pool(8).await;
    let db = r.db.db();
    let user = r.user("moving@example.com").await;
    let mut running = Vec::new();
    for i in 0..4 {
        let worker = format!("m{i}");
        let e = running_task(&r, &user, &worker, &worker).await;
        set_created_at(&r, e.id, ts(datetime!(2019-09-09 09:00 UTC))).await;
        running.push((e, worker));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let mut appenders = Vec::new();
    for (e, worker) in &running {
        let (logs, stop, batches) = (db.logs(), stop.clone(), batches.clone());
        let (id, worker) = (e.id, worker.clone());
        appenders.push(tokio::spawn(async move {
            let mut next = 0u64;
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match logs
                    .append(id, &worker, lines(next..next + 25, "moving"))
                    .await
                {
                    Ok(added) => {
                        assert_eq!(added, 25);
                        next += 25;
                    }
                    // Retried as a worker would: the batch is all or nothing.
                    Err(err) => failures.push(format!("{err:?}")),
                }
                batches.fetch_add(1, Ordering::SeqCst);
            }
            (next, failures)
        }));
    }
    while batches.load(Ordering::SeqCst) < 8 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = db
        .maintain_log_partitions_at(
            &LogRetention::default(),
            Some(ts(datetime!(2019-09-08 12:00 UTC))),
        )
        .await
        .unwrap();
    assert!(report.moved > 0, "{report:?}");
    let during = batches.load(Ordering::SeqCst);
    while batches.load(Ordering::SeqCst) < during + 8 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for ((e, _), appender) in running.iter().zip(appenders) {
        let (total, failures) = appender.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(seqs(&r, e.id).await, (0..total).collect::<Vec<_>>());
    }
    assert_eq!(waiting(&r).await, (0, 0));
}
