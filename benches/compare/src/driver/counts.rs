//! Issue #20: counts that do not grow with the data (`--counts-only`, and
//! the last rounds of a full run). In the driver's process, on a database
//! of their own in the private cluster (durable commits):
//!
//! - `count_by_user` at c=1 for users with 10, 10,000 and 1,000,000 tasks
//!   (loaded with one `INSERT … SELECT generate_series` each, then
//!   `VACUUM ANALYZE`; the largest's counts then spread over all 64 slots,
//!   its worst case), in another order each round; the ratio of the
//!   largest user's mean to the smallest's (target ≤ 1.5×), and beside it
//!   what the `count(*)` the crate ran before (V12) costs for the same users;
//! - `create` of one user's tasks at c=16 (a pool of 16, 16 tasks) with
//!   the counters' insert trigger on and off (`ALTER TABLE … DISABLE
//!   TRIGGER` in this database), alternately first in each round (target
//!   ≥ 0.8×);
//! - the queue's claim-1/complete-1 loop with 16 workers, with the
//!   counters' update trigger on and off (every claim and completion
//!   changes a task's status, so it fires for each).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{
    Database, DbConfig, ExecutionQueue, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue,
    PgTaskRepository, PgUserRepository, PoolerMode, TaskRepository, UserId, UserRepository,
};

use super::{Plan, admin, url_of};
use crate::ops::BoxError;

const CLIENTS: usize = 16;
const LEASE: Duration = Duration::from_secs(60);

/// The three users' sizes; `--quick` loads 100,000 instead of a million.
fn sizes(plan: &Plan) -> [usize; 3] {
    [10, 10_000, if plan.quick { 100_000 } else { 1_000_000 }]
}

async fn connect(url: &str, pool: usize) -> Result<Database, BoxError> {
    let mut config = DbConfig::from_url(url)?;
    config.max_connections = pool;
    config.min_connections = pool;
    config.pooler = PoolerMode::Direct;
    Ok(Database::connect(config).await?)
}

/// Runs the rounds and prints their section.
pub(crate) fn rounds(
    rt: &tokio::runtime::Runtime,
    cluster: &PrivateCluster,
    plan: &Plan,
) -> Result<String, BoxError> {
    rt.block_on(async {
        let maintenance = admin(&cluster.url()).await?;
        maintenance
            .batch_execute("DROP DATABASE IF EXISTS compare_counts")
            .await?;
        maintenance
            .batch_execute("CREATE DATABASE compare_counts")
            .await?;
        let url = url_of(cluster, "compare_counts");
        let db = connect(&url, CLIENTS).await?;
        db.migrate().await?;
        let section = measure(&db, &url, plan).await;
        db.close(Duration::from_secs(5)).await;
        section
    })
}

async fn user(db: &Database, email: &str) -> Result<UserId, BoxError> {
    Ok(PgUserRepository::new(db.clone())
        .create(NewUser::new(email, PasswordHash::new("h")))
        .await?
        .id)
}

async fn measure(db: &Database, url: &str, plan: &Plan) -> Result<String, BoxError> {
    let sql = admin(url).await?;
    let sizes = sizes(plan);
    let mut users = Vec::new();
    eprintln!("counts: loading users with {sizes:?} tasks…");
    for (i, n) in sizes.iter().enumerate() {
        let id = user(db, &format!("count{i}@example.com")).await?;
        sql.execute(
            "INSERT INTO tasks (user_id, name, script_content, status) \
             SELECT $1, 'n', 'x', (ARRAY['completed', 'pending', 'failed'])[1 + g % 3] \
             FROM generate_series(1, $2::int) g",
            &[&id.as_uuid(), &(*n as i32)],
        )
        .await?;
        users.push(id);
    }
    // The worst case for the largest user: its counts spread over all 64
    // slots (as 64 concurrent writers leave them), one more task each; the
    // smallest keeps one row.
    for slot in 0..64 {
        sql.batch_execute(&format!(
            "BEGIN; SET LOCAL voidrunner.count_slot = {slot}; \
             INSERT INTO tasks (user_id, name, script_content) VALUES ('{}', 'n', 'x'); COMMIT;",
            users[2].as_uuid()
        ))
        .await?;
    }
    sql.batch_execute("VACUUM ANALYZE").await?;
    let tasks = PgTaskRepository::new(db.clone());
    for (i, (id, n)) in users.iter().zip(sizes).enumerate() {
        let spread = if i == 2 { 64 } else { 0 };
        assert_eq!(
            tasks.count_by_user(*id).await? as usize,
            n + spread,
            "the counters"
        );
    }

    // count_by_user, c=1, mean µs per call: [round][user].
    let calls = if plan.quick { 500 } else { 3000 };
    let mut means = vec![[0f64; 3]; plan.rounds];
    for (round, row) in means.iter_mut().enumerate() {
        eprintln!("counts: count_by_user round {}/{}", round + 1, plan.rounds);
        for k in 0..3 {
            let i = (k + round) % 3;
            // A warm-up call, then the timed ones.
            tasks.count_by_user(users[i]).await?;
            let start = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(tasks.count_by_user(users[i]).await?);
            }
            row[i] = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
        }
        eprintln!("  µs/call by size: {row:.1?}");
    }
    // What V11's count(*) cost for the same users (a few calls).
    let old = sql
        .prepare("SELECT count(*) FROM tasks WHERE user_id = $1")
        .await?;
    let mut before = [0f64; 3];
    for (i, id) in users.iter().enumerate() {
        let n = if i == 2 { 5 } else { 50 };
        sql.query_one(&old, &[&id.as_uuid()]).await?;
        let start = Instant::now();
        for _ in 0..n {
            sql.query_one(&old, &[&id.as_uuid()]).await?;
        }
        before[i] = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    }

    // create at c=16 for one user, counters on and off: creates/s.
    let writer = user(db, "writer@example.com").await?;
    let secs = if plan.quick { 2.0 } else { 4.0 };
    let mut creates = vec![(0f64, 0f64); plan.rounds];
    for (round, pair) in creates.iter_mut().enumerate() {
        eprintln!("counts: c=16 create round {}/{}", round + 1, plan.rounds);
        for on in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let verb = if on { "ENABLE" } else { "DISABLE" };
            sql.batch_execute(&format!(
                "ALTER TABLE tasks {verb} TRIGGER tasks_counts_insert"
            ))
            .await?;
            let rate = create_rate(db, writer, secs).await?;
            eprintln!(
                "  counters {}: {rate:.0} creates/s",
                if on { "on" } else { "off" }
            );
            if on {
                pair.0 = rate;
            } else {
                pair.1 = rate;
            }
        }
    }
    sql.batch_execute("ALTER TABLE tasks ENABLE TRIGGER tasks_counts_insert")
        .await?;

    // The queue: claim-1/complete-1 by 16 workers, counters on and off.
    let queue_user = user(db, "queue@example.com").await?;
    let mut queue = vec![(0f64, 0f64); plan.rounds];
    for (round, pair) in queue.iter_mut().enumerate() {
        eprintln!("counts: queue round {}/{}", round + 1, plan.rounds);
        for on in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let verb = if on { "ENABLE" } else { "DISABLE" };
            fill_queue(db, queue_user, if plan.quick { 4_000 } else { 12_000 }).await?;
            sql.batch_execute(&format!(
                "ALTER TABLE tasks {verb} TRIGGER tasks_counts_update"
            ))
            .await?;
            sql.batch_execute("VACUUM ANALYZE tasks, task_executions")
                .await?;
            let rate = queue_rate(db, secs).await?;
            eprintln!(
                "  counters {}: {rate:.0} completions/s",
                if on { "on" } else { "off" }
            );
            if on {
                pair.0 = rate;
            } else {
                pair.1 = rate;
            }
            sql.batch_execute("ALTER TABLE tasks ENABLE TRIGGER tasks_counts_update")
                .await?;
            // What is left of this run, so the next starts alike.
            sql.batch_execute("DELETE FROM tasks WHERE user_id IN (SELECT id FROM users WHERE email = 'queue@example.com')")
                .await?;
        }
    }
    db.recount_tasks().await?;
    Ok(section(plan, &sizes, &means, &before, &creates, &queue))
}

async fn create_rate(db: &Database, user: UserId, secs: f64) -> Result<f64, BoxError> {
    let tasks = Arc::new(PgTaskRepository::new(db.clone()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut fleet = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (tasks, done, stop) = (tasks.clone(), done.clone(), stop.clone());
        fleet.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tasks
                    .create(NewTask::new(user, "c16", "print(1)"))
                    .await
                    .expect("create");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    fleet.join_all().await;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn fill_queue(db: &Database, user: UserId, n: usize) -> Result<(), BoxError> {
    let tasks = PgTaskRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    for _ in 0..n / 1000 {
        let batch = tasks
            .create_many(vec![NewTask::new(user, "q", "print(1)"); 1000])
            .await?;
        queue
            .enqueue_many(batch.iter().map(|t| t.id).collect(), None)
            .await?;
    }
    Ok(())
}

async fn queue_rate(db: &Database, secs: f64) -> Result<f64, BoxError> {
    let queue = Arc::new(PgExecutionQueue::new(db.clone()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut fleet = tokio::task::JoinSet::new();
    for w in 0..CLIENTS {
        let (queue, done, stop) = (queue.clone(), done.clone(), stop.clone());
        fleet.spawn(async move {
            let worker = format!("w{w}");
            while !stop.load(Ordering::Relaxed) {
                let claimed = queue.claim(&worker, 1, LEASE).await.expect("claim");
                let Some(c) = claimed.into_iter().next() else {
                    break;
                };
                queue
                    .complete(c.execution.id, &worker, Outcome::completed(0))
                    .await
                    .expect("complete");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline && !fleet.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        while fleet.try_join_next().is_some() {}
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    fleet.join_all().await;
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn section(
    plan: &Plan,
    sizes: &[usize; 3],
    means: &[[f64; 3]],
    before: &[f64; 3],
    creates: &[(f64, f64)],
    queue: &[(f64, f64)],
) -> String {
    use std::fmt::Write as _;
    let mut md = String::from("## Counts that do not grow with the data (issue #20)\n\n");
    let _ = writeln!(
        md,
        "{} rounds{}; one database of its own, durable commits; in the driver's process.\n",
        plan.rounds,
        if plan.quick { " (`--quick`)" } else { "" }
    );
    md.push_str("| `count_by_user`, c=1 | µs / call, median of rounds (min–max) | before V12: `count(*)`, µs / call |\n|---|---|---|\n");
    for i in 0..3 {
        let col: Vec<f64> = means.iter().map(|r| r[i]).collect();
        let min = col.iter().copied().fold(f64::MAX, f64::min);
        let max = col.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "| user with {}{} tasks | {:.1} ({:.1}–{:.1}) | {:.0} |",
            sizes[i],
            if i == 2 { " (+64, over 64 slots)" } else { "" },
            median(col),
            min,
            max,
            before[i]
        );
    }
    let ratios: Vec<f64> = means.iter().map(|r| r[2] / r[0]).collect();
    let _ = writeln!(
        md,
        "\nlargest ÷ smallest, per round: median {:.2}× (rounds: {}; target ≤ 1.5×)\n",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let table = |md: &mut String, title: &str, unit: &str, rows: &[(f64, f64)], target: &str| {
        let ratio: Vec<f64> = rows.iter().map(|(on, off)| on / off).collect();
        let _ = writeln!(
            md,
            "| {title} | {unit} with the counters | without | ÷ |\n|---|---|---|---|"
        );
        for (round, (on, off)) in rows.iter().enumerate() {
            let _ = writeln!(
                md,
                "| round {} | {on:.0} | {off:.0} | {:.2} |",
                round + 1,
                on / off
            );
        }
        let _ = writeln!(
            md,
            "| median | {:.0} | {:.0} | **{:.2}×** {target} |\n",
            median(rows.iter().map(|r| r.0).collect()),
            median(rows.iter().map(|r| r.1).collect()),
            median(ratio)
        );
    };
    table(
        &mut md,
        "`create` of one user's tasks, c=16",
        "creates/s",
        creates,
        "(target ≥ 0.8×)",
    );
    table(
        &mut md,
        "queue: claim 1 + complete, 16 workers",
        "completions/s",
        queue,
        "",
    );
    md
}
