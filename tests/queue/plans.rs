//! The plans of the queue's statements: each reads what it takes, never the
//! backlog, whether the statistics are fresh or were taken while the tables
//! were empty, and after a mass rescue or a mass cancel.
//!
//! Measured with `testing::profile_statement` on the crate's own SQL
//! (`voidrunner_db::__statement`): buffers from `EXPLAIN (ANALYZE,
//! BUFFERS)`, and the index and sequential scans the run started (those
//! inside the V7 functions included), each run rolled back. Every statement
//! of `src/queries/queue.sql` and `events.sql` is checked: one that is not
//! fails the test.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::testing::{StatementProfile, profile_statement};
use voidrunner_db::{ExecutionQueue, RescuePolicy};

use crate::{Fixture, fixture};

/// Pending executions loaded after the statistics were taken: the backlog a
/// statement must not read.
const BACKLOG: i64 = 100_000;

/// Runs the statement `name` (`queue.claim`) twice and returns the second
/// run's profile (the first compiles and plans the V7 functions in this
/// session).
pub(crate) async fn profile(
    client: &tokio_postgres::Client,
    name: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StatementProfile {
    let sql = voidrunner_db::__statement(name).unwrap_or_else(|| panic!("no statement {name}"));
    profile_statement(client, sql, params).await.unwrap();
    profile_statement(client, sql, params).await.unwrap()
}

/// [`profile`], noting `name` in `covered`.
async fn check(
    client: &tokio_postgres::Client,
    covered: &mut BTreeSet<String>,
    name: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StatementProfile {
    covered.insert(name.to_owned());
    profile(client, name, params).await
}

/// The statements that read no table: nothing to bound.
const NO_TABLE: [&str; 7] = [
    "events.now",
    "server.version",
    "server.probe",
    "server.replay_position",
    "server.insert_position",
    "server.write_position",
    "server.replica_probe",
];

/// The entries of the 10,000 executions `stale_queue` moves to running:
/// the first of their priorities in the claim index. A scan marks them
/// dead once no snapshot may see them, which the cluster's oldest snapshot
/// can delay while other databases of a busy suite hold theirs (the
/// server's cached horizon is then not recomputed for this one); until
/// then a claim passes them. Far below a walk of the backlog all the same.
const LOAD_DEAD_HEADS: i64 = 10_000;

/// What a statement that touches `rows` rows may read: a few index entries
/// and a few dozen buffers per row (its index probes, the rows, the index
/// entries of the row versions it writes, its task: a task's new version
/// goes into each of its 19 indexes since V11's sort orders, about 110
/// buffers a claimed row), and a constant for the
/// descents. An index probe also meets the entries of dead versions of its
/// rows (the update that set them up and the first, rolled-back run of the
/// profile) until a vacuum or a later scan marks them dead: up to about ten
/// entries a row for a statement that probes the same index three times. A plan that walked the backlog would read more than
/// `BACKLOG` entries or about 1,400 heap pages of it, and one that scanned
/// a table shows as a sequential scan.
fn assert_bounded(name: &str, p: &StatementProfile, rows: i64, index: Option<&str>) {
    assert!(
        p.seq_scans.is_empty(),
        "{name}: sequential scans {:?}\n{}",
        p.seq_scans,
        p.plan
    );
    assert!(
        p.entries_read() <= 20 * rows + 60 + LOAD_DEAD_HEADS,
        "{name} of {rows}: read {} index entries {:?}\n{}",
        p.entries_read(),
        p.index_entries_read,
        p.plan
    );
    assert!(
        p.buffers <= 130 * rows as u64 + 400,
        "{name} of {rows}: {} buffers\n{}",
        p.buffers,
        p.plan
    );
    if let Some(index) = index {
        assert!(
            p.scanned(index),
            "{name}: {index} not scanned: {:?}\n{}",
            p.index_scans,
            p.plan
        );
    }
}

/// Autovacuum off and statistics taken on the tables as they are (empty),
/// then `load` run without event notifications: rows the planner does not
/// know about, which a statement must not read. A connection of the test's
/// database, for profiling. The load's statements (100,000 rows into every
/// index of the table) may take longer than the pool's statement timeout
/// on a busy machine, so it is lifted for them.
pub(crate) async fn stale_load(f: &Fixture, load: &str) -> voidrunner_db::PooledClient {
    let client = f.db.raw_client().await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER TABLE tasks SET (autovacuum_enabled = off); \
             ALTER TABLE task_executions SET (autovacuum_enabled = off); \
             ANALYZE tasks; ANALYZE task_executions; \
             SET voidrunner.notify_events = off; \
             SET statement_timeout = 0; \
             {load} \
             RESET statement_timeout; \
             RESET voidrunner.notify_events;"
        ))
        .await
        .unwrap();
    client
}

/// Statistics taken on the empty tables (one user), autovacuum off for the
/// test's database, then `BACKLOG` tasks queued, as a bulk enqueue leaves
/// them; and, as mass changes after the statistics: 10,000 of them claimed
/// by `w` with leases that have expired, 10,000 completed a day ago, and
/// 1,000 failed tasks with nothing queued.
async fn stale_queue(f: &Fixture) -> voidrunner_db::PooledClient {
    stale_load(
        f,
        &format!(
            "INSERT INTO tasks (user_id, name, script_content, priority) \
               SELECT '{user}', 't' || g, 'print(1)', g % 11 FROM generate_series(1, {BACKLOG}) g; \
             INSERT INTO task_executions (task_id, priority) SELECT id, priority FROM tasks; \
             WITH picked AS (SELECT id, task_id FROM task_executions ORDER BY id LIMIT 10000), \
                  moved AS (UPDATE tasks SET status = 'running' \
                            WHERE id IN (SELECT task_id FROM picked)) \
             UPDATE task_executions SET status = 'running', worker_id = 'w', attempt = 1, \
                    started_at = now() - interval '2 minutes', \
                    lease_expires_at = now() - interval '1 minute' \
             WHERE id IN (SELECT id FROM picked); \
             WITH picked AS (SELECT id, task_id FROM task_executions WHERE status = 'pending' \
                             ORDER BY id DESC LIMIT 10000), \
                  moved AS (UPDATE tasks SET status = 'completed' \
                            WHERE id IN (SELECT task_id FROM picked)) \
             UPDATE task_executions SET status = 'completed', worker_id = 'w', \
                    started_at = now() - interval '1 day', completed_at = now() - interval '1 day' \
             WHERE id IN (SELECT id FROM picked); \
             INSERT INTO tasks (user_id, name, script_content, status) \
               SELECT '{user}', 'f' || g, 'print(1)', 'failed' FROM generate_series(1, 1000) g;",
            user = f.user.id
        ),
    )
    .await
}

async fn ids(client: &tokio_postgres::Client, sql: &str) -> Vec<Uuid> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every statement of the queue on a stale queue.
async fn check_every_statement(client: &tokio_postgres::Client) {
    let mut covered = BTreeSet::new();
    let lease = 30.0f64;
    for n in [1i64, 10, 1000] {
        let p = check(client, &mut covered, "queue.claim", &[&"w2", &n, &lease]).await;
        assert_bounded("claim", &p, n, Some("task_executions_claim_idx"));
    }
    // The fair claim (V15), from the lowest user and after one: the queue's
    // one user, so a batch takes a row, then the rest from the same user.
    let someone = ids(client, "SELECT id FROM users ORDER BY id LIMIT 1").await;
    for after in [None, Some(someone[0])] {
        for n in [1i64, 10, 1000] {
            let p = check(
                client,
                &mut covered,
                "queue.claim_fair",
                &[&"w2", &n, &lease, &after, &false],
            )
            .await;
            assert_bounded("claim_fair", &p, n, Some("task_executions_user_claim_idx"));
        }
    }

    let running = ids(
        client,
        "SELECT id FROM task_executions WHERE status = 'running' AND worker_id = 'w' \
         ORDER BY id LIMIT 100",
    )
    .await;
    let one = &running[..1];
    let p = check(
        client,
        &mut covered,
        "queue.heartbeat",
        &[&one[0], &"w", &lease],
    )
    .await;
    assert_bounded("heartbeat", &p, 1, None);
    let workers = vec!["w"; running.len()];
    let leases = vec![lease; running.len()];
    let p = check(
        client,
        &mut covered,
        "queue.heartbeat_batch",
        &[&running, &workers, &leases],
    )
    .await;
    assert_bounded("heartbeat_batch", &p, 100, None);

    let outcome = |n: usize| {
        (
            vec!["completed"; n],
            vec![Some(0i32); n],
            vec![Some("ok"); n],
            vec![None::<&str>; n],
            vec![Some(5i32); n],
            vec![Some(1i64); n],
        )
    };
    let (statuses, codes, stdouts, stderrs, times, memory) = outcome(1);
    let p = check(
        client,
        &mut covered,
        "queue.complete",
        &[
            &one[0],
            &"w",
            &statuses[0],
            &codes[0],
            &stdouts[0],
            &stderrs[0],
            &times[0],
            &memory[0],
        ],
    )
    .await;
    assert_bounded("complete", &p, 1, None);
    let (statuses, codes, stdouts, stderrs, times, memory) = outcome(running.len());
    let p = check(
        client,
        &mut covered,
        "queue.complete_many",
        &[
            &running, &workers, &statuses, &codes, &stdouts, &stderrs, &times, &memory,
        ],
    )
    .await;
    assert_bounded("complete_many", &p, 100, None);

    let pending = ids(
        client,
        "SELECT id FROM task_executions WHERE status = 'pending' ORDER BY id LIMIT 1",
    )
    .await;
    let from = vec!["pending", "running"];
    let p = check(
        client,
        &mut covered,
        "queue.finish",
        &[&pending[0], &"cancelled", &from],
    )
    .await;
    assert_bounded("finish", &p, 1, None);
    let p = check(client, &mut covered, "queue.delete", &[&pending[0]]).await;
    assert_bounded("delete", &p, 1, None);
    // A task cancelled by hand: the task and its active execution.
    let queued_task = ids(
        client,
        "SELECT task_id FROM task_executions WHERE status = 'pending' ORDER BY id LIMIT 1",
    )
    .await;
    let to_cancelled = vec!["pending", "running", "failed", "timeout"];
    let p = check(
        client,
        &mut covered,
        "queue.task_status",
        &[&queued_task[0], &"cancelled", &to_cancelled],
    )
    .await;
    assert_bounded("task_status", &p, 1, None);

    let idle = ids(
        client,
        "SELECT id FROM tasks WHERE status = 'failed' ORDER BY id LIMIT 100",
    )
    .await;
    let enqueueable = vec!["pending", "failed", "timeout", "cancelled"];
    let p = check(
        client,
        &mut covered,
        "queue.enqueue",
        &[
            &idle[0],
            &Uuid::new_v4(),
            &None::<voidrunner_db::Timestamp>,
            &enqueueable,
        ],
    )
    .await;
    assert_bounded("enqueue", &p, 1, None);
    let new_ids: Vec<Uuid> = idle.iter().map(|_| Uuid::new_v4()).collect();
    let p = check(
        client,
        &mut covered,
        "queue.enqueue_many",
        &[
            &idle,
            &new_ids,
            &None::<voidrunner_db::Timestamp>,
            &enqueueable,
        ],
    )
    .await;
    assert_bounded("enqueue_many", &p, 100, None);

    let retry_ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    let p = check(
        client,
        &mut covered,
        "queue.rescue",
        &[&100i64, &3i32, &retry_ids, &0.0f64],
    )
    .await;
    assert_bounded("rescue", &p, 100, Some("task_executions_lease_idx"));

    let p = check(client, &mut covered, "queue.prune", &[&3600.0f64, &100i64]).await;
    assert_bounded("prune", &p, 100, Some("task_executions_prune_idx"));

    // The polling event stream from its start (every row changed since):
    // one page of 256 changes, in (updated_at, id) order.
    let epoch = voidrunner_db::Timestamp::from_unix_micros(0).unwrap();
    let start = (epoch, Uuid::nil(), 0.0f64);
    let p = check(
        client,
        &mut covered,
        "events.poll",
        &[&start.0, &start.1, &start.2],
    )
    .await;
    assert_bounded("poll", &p, 256, Some("task_executions_updated_at_id_idx"));

    // Every statement of the queue and the events was checked above.
    let missed: Vec<&str> = voidrunner_db::__statements()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("queue.") || name.starts_with("events."))
        .filter(|name| !covered.contains(*name) && !NO_TABLE.contains(name))
        .collect();
    assert_eq!(
        missed,
        Vec::<&str>::new(),
        "statements no plan check covers"
    );
}

#[tokio::test]
async fn stale_statistics_leave_every_queue_statement_reading_its_rows_only() {
    let f = fixture().await;
    let client = stale_queue(&f).await;
    check_every_statement(&client).await;
}

#[tokio::test]
async fn fresh_statistics_leave_every_queue_statement_reading_its_rows_only() {
    let f = fixture().await;
    let client = stale_queue(&f).await;
    client
        .batch_execute("VACUUM ANALYZE tasks, task_executions")
        .await
        .unwrap();
    check_every_statement(&client).await;
}

/// A mass rescue queues retries that wait out their delay at their
/// priority, and a mass cancel leaves dead entries in the claim index: the
/// claim passes over the delayed rows without reading them, and reads the
/// cancelled ones' entries only where they lie between rows it takes.
#[tokio::test]
async fn claims_stay_bounded_after_a_mass_rescue_and_a_mass_cancel() {
    let f = fixture().await;
    let client = stale_queue(&f).await;
    // Every expired lease rescued through the crate, each retried in an
    // hour: 10,000 delayed rows spread over every priority.
    let mut rescued = 0;
    loop {
        let report = f
            .queue
            .rescue_expired(RescuePolicy {
                batch_size: 1000,
                max_attempts: 3,
                retry_delay: Duration::from_secs(3600),
            })
            .await
            .unwrap();
        if report.timed_out.is_empty() {
            break;
        }
        rescued += report.timed_out.len();
        assert_eq!(report.retried.len(), report.timed_out.len());
    }
    assert_eq!(rescued, 10_000);
    for n in [1i64, 10, 100] {
        let p = profile(&client, "queue.claim", &[&"w2", &n, &30.0f64]).await;
        assert_bounded("claim after a mass rescue", &p, n, None);
    }

    // Every other pending execution cancelled, as another application
    // would: 40,000 rows leave the claim index between the rest.
    client
        .batch_execute(
            "SET voidrunner.notify_events = off; \
             WITH picked AS ( \
               SELECT id, task_id FROM ( \
                 SELECT id, task_id, row_number() OVER (ORDER BY priority DESC, run_after, id) AS n \
                 FROM task_executions WHERE status = 'pending' AND run_after <= now()) x \
               WHERE n % 2 = 0), \
             moved AS (UPDATE tasks SET status = 'cancelled' \
                       WHERE id IN (SELECT task_id FROM picked)) \
             UPDATE task_executions SET status = 'cancelled', completed_at = now() \
             WHERE id IN (SELECT id FROM picked); \
             RESET voidrunner.notify_events;",
        )
        .await
        .unwrap();
    for n in [1i64, 10, 100] {
        let p = profile(&client, "queue.claim", &[&"w2", &n, &30.0f64]).await;
        // Up to one dead entry passed over per row taken.
        assert_bounded("claim after a mass cancel", &p, 2 * n, None);
    }
}

/// Statistics on empty tables, autovacuum off, then `n` pending tasks at
/// one priority (5), in run_after order.
async fn stale_single_priority(f: &Fixture, n: i64) -> voidrunner_db::PooledClient {
    stale_load(
        f,
        &format!(
            "INSERT INTO tasks (user_id, name, script_content, priority) \
               SELECT '{user}', 't' || g, 'print(1)', 5 FROM generate_series(1, {n}) g; \
             INSERT INTO task_executions (task_id, priority, run_after) \
               SELECT id, priority, now() - interval '1 day' + (row_number() OVER (ORDER BY id)) * interval '1 ms' \
               FROM tasks;",
            user = f.user.id
        ),
    )
    .await
}

/// Cancels the first `k` pending executions in claim order, as another
/// application (or a user cancelling a backlog) would.
async fn cancel_head(client: &tokio_postgres::Client, k: i64) {
    client
        .batch_execute(&format!(
            "SET voidrunner.notify_events = off; \
             WITH picked AS (SELECT id, task_id FROM task_executions WHERE status = 'pending' \
                             ORDER BY priority DESC, run_after, id LIMIT {k}), \
                  moved AS (UPDATE tasks SET status = 'cancelled' WHERE id IN (SELECT task_id FROM picked)) \
             UPDATE task_executions SET status = 'cancelled', completed_at = now() \
             WHERE id IN (SELECT id FROM picked); \
             RESET voidrunner.notify_events;"
        ))
        .await
        .unwrap();
}

fn report(label: &str, p: &StatementProfile) -> String {
    format!(
        "{label}: {} buffers, entries {:?}, seq {:?}",
        p.buffers, p.index_entries_read, p.seq_scans
    )
}

/// A mass cancel of the head of the queue (40,000 of 60,000, all at one
/// priority, before any vacuum): the claim index keeps their entries until
/// a vacuum, and a claim steps over their leaf pages (after the first
/// claim has marked them dead, without reading the rows). What removes
/// them is VACUUM (autovacuum, in production): after it, a claim reads its
/// row again and no more.
#[tokio::test]
async fn a_vacuum_after_a_mass_cancel_of_the_head_bounds_the_claim_again() {
    let f = fixture().await;
    let client = stale_single_priority(&f, 60_000).await;
    cancel_head(&client, 40_000).await;
    let before = profile(&client, "queue.claim", &[&"w2", &1i64, &30.0f64]).await;
    client
        .batch_execute("VACUUM task_executions")
        .await
        .unwrap();
    let after = profile(&client, "queue.claim", &[&"w2", &1i64, &30.0f64]).await;
    assert!(
        after.buffers < before.buffers,
        "{}\n{}",
        report("before VACUUM", &before),
        report("after VACUUM", &after)
    );
    assert_bounded("claim after a mass cancel and a VACUUM", &after, 1, None);
}

/// Rescue and prune on stale statistics with the crate's own batches:
/// 50,000 running executions whose leases have NOT expired, 10 expired;
/// 50,000 ended today, 10 ended long ago. Each reads what it takes.
#[tokio::test]
async fn rescue_and_prune_skip_the_unexpired_and_recent() {
    let f = fixture().await;
    let client = stale_load(
        &f,
        &format!(
            "INSERT INTO tasks (user_id, name, script_content, status) \
               SELECT '{user}', 'r' || g, 'print(1)', 'running' FROM generate_series(1, 50010) g; \
             INSERT INTO task_executions (task_id, status, worker_id, started_at, lease_expires_at, attempt) \
               SELECT id, 'running', 'w', now() - interval '1 hour', \
                      CASE WHEN row_number() OVER (ORDER BY id) <= 10 THEN now() - interval '1 minute' \
                           ELSE now() + interval '1 hour' END, 1 \
               FROM tasks WHERE status = 'running'; \
             INSERT INTO tasks (user_id, name, script_content, status) \
               SELECT '{user}', 'c' || g, 'print(1)', 'completed' FROM generate_series(1, 50010) g; \
             INSERT INTO task_executions (task_id, status, worker_id, started_at, completed_at) \
               SELECT id, 'completed', 'w', now() - interval '400 days', \
                      CASE WHEN row_number() OVER (ORDER BY id) <= 10 THEN now() - interval '365 days' \
                           ELSE now() - interval '1 minute' END \
               FROM tasks WHERE status = 'completed';",
            user = f.user.id
        ),
    )
    .await;
    let retry_ids: Vec<uuid::Uuid> = (0..1000).map(|_| uuid::Uuid::new_v4()).collect();
    let p = profile(
        &client,
        "queue.rescue",
        &[&1000i64, &3i32, &retry_ids, &0.0f64],
    )
    .await;
    let p2 = profile(&client, "queue.prune", &[&(30.0f64 * 86400.0), &1000i64]).await;
    assert!(p.seq_scans.is_empty() && p.entries_read() <= 12 * 10 + 60 && p.buffers <= 1200);
    assert!(p2.seq_scans.is_empty() && p2.entries_read() <= 12 * 10 + 60 && p2.buffers <= 1200);
}

/// Every priority holds 10,000 rows delayed by an hour; one eligible row
/// at priority 0, under statistics taken on empty tables. A claim of 1000
/// walks each priority's first entry only.
#[tokio::test]
async fn claim_past_delayed_rows_at_every_priority() {
    let f = fixture().await;
    let client = stale_load(
        &f,
        &format!(
            "INSERT INTO tasks (user_id, name, script_content, priority) \
               SELECT '{user}', 't' || g, 'print(1)', g % 11 FROM generate_series(1, 110001) g; \
             INSERT INTO task_executions (task_id, priority, run_after) \
               SELECT id, priority, CASE WHEN name = 't110001' THEN now() - interval '1 day' \
                                         ELSE now() + interval '1 hour' END FROM tasks;",
            user = f.user.id
        ),
    )
    .await;
    let p = profile(&client, "queue.claim", &[&"w2", &1000i64, &30.0f64]).await;
    assert!(p.seq_scans.is_empty() && p.entries_read() <= 100 && p.buffers <= 600);
}
