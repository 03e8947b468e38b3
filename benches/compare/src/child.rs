//! One measurement in a process of its own (so that peak RSS, CPU and
//! allocations belong to one variant), started by the driver. Prints one
//! `RESULT {json}` line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use voidrunner_db::{
    ClaimOrder, Completer, ConcurrencyLimits, DbConfig, ExecutionQueue, NewTask, Outcome,
    PgExecutionQueue, PgTaskRepository, PoolerMode, TaskId, TaskRepository, UserId,
};

use crate::alloc;
use crate::ops::{Client, SqlMap};

pub type Args = HashMap<String, String>;

pub fn arg<'a>(args: &'a Args, key: &str) -> &'a str {
    args.get(key)
        .unwrap_or_else(|| panic!("child needs {key}="))
}

/// User + system CPU of this process so far, in microseconds.
pub fn cpu_us() -> u64 {
    let usage = rusage(libc::RUSAGE_SELF);
    tv_us(usage.ru_utime) + tv_us(usage.ru_stime)
}

pub fn tv_us(tv: libc::timeval) -> u64 {
    (tv.tv_sec as u64) * 1_000_000 + tv.tv_usec as u64
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    }
}

/// Peak RSS of this process image. Not `ru_maxrss`: Linux carries the
/// parent's high-water mark across fork and exec into it, so every child
/// would report at least the driver's.
fn max_rss_kb() -> u64 {
    vm_hwm_kb(std::process::id()).unwrap_or(0)
}

/// `VmHWM` of a running process, in KiB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn emit(value: serde_json::Value) {
    println!("RESULT {value}");
}

pub fn run(args: &Args) {
    match arg(args, "mode") {
        "lat" | "instr" => latency(args),
        "tput" => throughput(args),
        "queue" => queue(args),
        "load" => load(args),
        other => panic!("unknown mode {other}"),
    }
}

fn load_sql(args: &Args) -> &'static SqlMap {
    let text = std::fs::read_to_string(arg(args, "sql")).expect("sql file");
    Box::leak(Box::new(serde_json::from_str(&text).expect("sql json")))
}

fn ids(args: &Args) -> (TaskId, UserId) {
    (
        arg(args, "task").parse().expect("task id"),
        arg(args, "user").parse().expect("user id"),
    )
}

/// The calls whose instructions callgrind counts (`--toggle-collect`):
/// everything the client does on its one thread, the driver's connection
/// task included (a current-thread runtime runs it here).
#[inline(never)]
fn measured(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    op: &str,
    n: usize,
    ids: (TaskId, UserId),
) {
    rt.block_on(async {
        for i in 0..n {
            client.call(op, ids.0, ids.1, i).await;
        }
    });
}

/// c=1: `n` calls one after another on one connection, after one warm-up
/// call that prepares the statement.
fn latency(args: &Args) {
    let sql = load_sql(args);
    let (variant, op) = (arg(args, "variant"), arg(args, "op"));
    let n: usize = arg(args, "n").parse().expect("n");
    let ids = ids(args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt.block_on(async {
        let client = Client::connect(variant, arg(args, "url"), 1, sql).await;
        client.call(op, ids.0, ids.1, 0).await;
        client
    });
    if arg(args, "mode") == "instr" {
        measured(&rt, &client, op, n, ids);
        emit(json!({ "n": n }));
        return;
    }
    let mut times = Vec::with_capacity(n);
    let cpu = cpu_us();
    alloc::start();
    rt.block_on(async {
        for i in 0..n {
            let start = Instant::now();
            client.call(op, ids.0, ids.1, i).await;
            times.push(start.elapsed());
        }
    });
    let (bytes, allocs) = alloc::stop();
    let cpu = cpu_us() - cpu;
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    emit(json!({
        "n": n,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "cpu_us": cpu as f64 / n as f64,
        "bytes": bytes as f64 / n as f64,
        "allocs": allocs as f64 / n as f64,
        "maxrss_kb": max_rss_kb(),
    }));
}

/// c=16: 16 tasks on a two-thread runtime and a pool of 16, for `secs`.
fn throughput(args: &Args) {
    const CLIENTS: usize = 16;
    let sql = load_sql(args);
    let (variant, op) = (arg(args, "variant"), arg(args, "op"));
    let secs: f64 = arg(args, "secs").parse().expect("secs");
    let ids = ids(args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ops, elapsed, cpu) = rt.block_on(async {
        let client = Arc::new(Client::connect(variant, arg(args, "url"), CLIENTS, sql).await);
        // Every connection prepares its statement before the clock starts.
        let mut warm = tokio::task::JoinSet::new();
        for c in 0..CLIENTS {
            let client = client.clone();
            let op = op.to_owned();
            warm.spawn(async move { client.call(&op, ids.0, ids.1, c).await });
        }
        warm.join_all().await;
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let cpu = cpu_us();
        let start = Instant::now();
        let mut fleet = tokio::task::JoinSet::new();
        for c in 0..CLIENTS {
            let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
            let op = op.to_owned();
            fleet.spawn(async move {
                let mut i = c * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    client.call(&op, ids.0, ids.1, i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        fleet.join_all().await;
        let elapsed = start.elapsed().as_secs_f64();
        (done.load(Ordering::Relaxed), elapsed, cpu_us() - cpu)
    });
    emit(json!({
        "ops": ops,
        "secs": elapsed,
        "ops_per_s": ops as f64 / elapsed,
        "cpu_us": cpu as f64 / ops.max(1) as f64,
        "maxrss_kb": max_rss_kb(),
    }));
}

/// Workers of a queue run unless `workers=` says otherwise.
const WORKERS: usize = 16;
const CLAIM_BATCH: u32 = 10;
const LEASE: Duration = Duration::from_secs(60);

/// `n_tasks` tasks created and queued (`create_many` and `enqueue_many` of
/// 1,000), task `i` for `users[i % users.len()]`, into the emptied tables,
/// analyzed after, unless `fresh` (a new database nothing analyzes).
async fn load_queue(db: &voidrunner_db::Database, users: &[UserId], n_tasks: usize, fresh: bool) {
    let admin = db.client().await.expect("client");
    if !fresh {
        admin
            .batch_execute("TRUNCATE task_executions, tasks")
            .await
            .expect("truncate");
    }
    let tasks = PgTaskRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let mut queued = 0;
    while queued < n_tasks {
        let n = (n_tasks - queued).min(1000);
        let batch: Vec<NewTask> = (queued..queued + n)
            .map(|i| NewTask::new(users[i % users.len()], format!("job {i}"), "print(1)"))
            .collect();
        let created = tasks.create_many(batch).await.expect("create_many");
        queue
            .enqueue_many(created.iter().map(|t| t.id).collect(), None)
            .await
            .expect("enqueue_many");
        queued += n;
    }
    if !fresh {
        admin
            .batch_execute("ANALYZE tasks, task_executions")
            .await
            .expect("analyze");
    }
}

/// Only loads a queue, as `queue` does (`fresh`, `tasks`, `user`), for a
/// run by another client (pgbench).
fn load(args: &Args) {
    let fresh = args.get("fresh").map(String::as_str) == Some("yes");
    let n_tasks: usize = arg(args, "tasks").parse().expect("tasks");
    let user: UserId = arg(args, "user").parse().expect("user id");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut config = DbConfig::from_url(arg(args, "url")).expect("url");
        config.max_connections = 2;
        config.min_connections = 1;
        config.pooler = PoolerMode::Direct;
        let db = voidrunner_db::Database::connect(config)
            .await
            .expect("connect");
        load_queue(&db, &[user], n_tasks, fresh).await;
        db.close(Duration::from_secs(5)).await;
    });
    emit(json!({ "loaded": n_tasks }));
}

/// The queue: `worker=batched` is examples/worker.rs with its defaults
/// (claim 10, completions through a shared `Completer`; jobs take no time,
/// so the heartbeat timer never fires);
/// `worker=single` claims one and completes it, in a loop. 16 workers
/// either way (`workers=N`), on `tasks` queued executions, until they are
/// done or `secs` have passed.
///
/// `fresh=yes`: the database is new (cloned from a migrated template whose
/// tables have autovacuum off) and nothing analyzes it, so the queue is
/// loaded into tables the planner has never seen statistics of, as a bulk
/// enqueue into a new or long-quiet queue leaves them. Otherwise the tables
/// are emptied, loaded and analyzed first.
///
/// Issue #22 (`--fair-only`): `order=fair` claims in `ClaimOrder::Fair`
/// (else FIFO); `users=N` spreads the tasks evenly over the database's
/// first N users by id (else they are all `user`'s); `cap=K` (or `none`)
/// sets the default concurrency cap first, so a run never inherits the
/// one of the run before; a worker whose claim finds nothing while work is
/// left looks again after 2 ms. `neighbours=K` is the noisy-neighbour run: the
/// tasks are the first user's backlog; once the workers are at work on it
/// (`warm` executions done), every other user of `users` enqueues K tasks,
/// and the run ends when those are completed (or at `secs`), reporting
/// each one's wait to be claimed (`started_at - created_at`, in the
/// database).
///
/// Also reported: the latency of each claim that returned rows (p50, p99),
/// and from pg_stat_statements (reset after loading) the shared buffers per
/// claim and per execution, all statements of the run counted.
fn queue(args: &Args) {
    let batched = arg(args, "worker") == "batched";
    let notify = arg(args, "notify") == "on";
    let fresh = args.get("fresh").map(String::as_str) == Some("yes");
    let secs: f64 = arg(args, "secs").parse().expect("secs");
    let n_tasks: usize = arg(args, "tasks").parse().expect("tasks");
    let order = match args.get("order").map(String::as_str) {
        None | Some("fifo") => ClaimOrder::Fifo,
        Some("fair") => ClaimOrder::Fair,
        Some(other) => panic!("unknown order {other}"),
    };
    let workers: usize = args
        .get("workers")
        .map_or(WORKERS, |n| n.parse().expect("workers"));
    let neighbours: usize = args
        .get("neighbours")
        .map_or(0, |n| n.parse().expect("neighbours"));
    // The fair rounds' workers (any order) wait out an empty claim while
    // work is left; the queue rounds' stop at the first, as they always
    // have.
    let patient = args.contains_key("order");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let run = rt.block_on(async {
        let mut config = DbConfig::from_url(arg(args, "url")).expect("url");
        config.max_connections = workers + 2;
        config.min_connections = workers + 2;
        config.pooler = PoolerMode::Direct;
        config.notify_events = notify;
        let db = voidrunner_db::Database::connect(config)
            .await
            .expect("connect");
        let admin = db.client().await.expect("client");
        let users: Vec<UserId> = match args.get("users") {
            Some(n) => {
                let n: i64 = n.parse().expect("users");
                let rows = admin
                    .query("SELECT id FROM users ORDER BY id LIMIT $1", &[&n])
                    .await
                    .expect("users");
                assert_eq!(rows.len() as i64, n, "fewer users in the database");
                rows.iter().map(|r| UserId::from_uuid(r.get(0))).collect()
            }
            None => vec![arg(args, "user").parse().expect("user id")],
        };
        if let Some(cap) = args.get("cap") {
            let cap = (cap != "none").then(|| cap.parse().expect("cap"));
            db.concurrency_limits()
                .set_default_limit(cap)
                .await
                .expect("set_default_limit");
        }
        let queue = Arc::new(PgExecutionQueue::new(db.clone()).with_claim_order(order));
        let backlog = if neighbours > 0 { &users[..1] } else { &users[..] };
        load_queue(&db, backlog, n_tasks, fresh).await;
        let n_tasks = n_tasks + neighbours * (users.len() - 1);
        admin
            .batch_execute(
                "SELECT pg_stat_statements_reset(0, \
                   (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
            )
            .await
            .expect("pg_stat_statements_reset");
        let completer = Completer::new(queue.clone()).expect("completer");
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let empty = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let cpu = cpu_us();
        let start = Instant::now();
        let mut fleet = tokio::task::JoinSet::new();
        for w in 0..workers {
            let (queue, completer) = (queue.clone(), completer.clone());
            let (done, stop, empty) = (done.clone(), stop.clone(), empty.clone());
            fleet.spawn(async move {
                let worker = format!("worker-{w}");
                let mut claim_us = Vec::new();
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let limit = if batched { CLAIM_BATCH } else { 1 };
                    let asked = Instant::now();
                    let claimed = queue.claim(&worker, limit, LEASE).await.expect("claim");
                    if claimed.is_empty() {
                        // Work left that another claim holds, or that a
                        // cap or another claim's hold on a capped user
                        // keeps from this one: look again shortly, as
                        // examples/worker.rs does.
                        if patient && done.load(Ordering::Relaxed) < n_tasks {
                            empty.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            continue;
                        }
                        return claim_us;
                    }
                    claim_us.push(asked.elapsed().as_secs_f64() * 1e6);
                    let outcome = || Outcome::completed(0).output("ok", "").usage(1, 1 << 20);
                    if batched {
                        let reports: Vec<_> = claimed
                            .iter()
                            .map(|job| completer.complete(job.execution.id, &worker, outcome()))
                            .collect();
                        for report in reports {
                            report.await.expect("complete");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        for job in claimed {
                            queue
                                .complete(job.execution.id, &worker, outcome())
                                .await
                                .expect("complete");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                claim_us
            });
        }
        let waits = if neighbours > 0 {
            let warm: usize = arg(args, "warm").parse().expect("warm");
            let at = Neighbours { users: &users[1..], each: neighbours, warm };
            Some(at.run(&db, &admin, &done, &stop, deadline).await)
        } else {
            None
        };
        let mut claim_us: Vec<f64> = fleet.join_all().await.into_iter().flatten().collect();
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = cpu_us() - cpu;
        completer.shutdown().await;
        let done = done.load(Ordering::Relaxed);
        // Every statement of the run: the claims (FIFO's and the fair
        // one's), and the completions the Completer sent (flushed by the
        // shutdown above).
        let row = admin
            .query_one(
                "SELECT coalesce(sum(calls) FILTER (WHERE query LIKE '%voidrunner_claim%'), 0)::float8, \
                        coalesce(sum(shared_blks_hit + shared_blks_read) \
                                 FILTER (WHERE query LIKE '%voidrunner_claim%'), 0)::float8, \
                        coalesce(sum(shared_blks_hit + shared_blks_read), 0)::float8, \
                        coalesce(sum(total_exec_time) \
                                 FILTER (WHERE query LIKE '%voidrunner_claim%'), 0)::float8, \
                        coalesce(sum(total_exec_time), 0)::float8 \
                 FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("pg_stat_statements");
        let (claims, claim_blocks, all_blocks): (f64, f64, f64) =
            (row.get(0), row.get(1), row.get(2));
        let (claim_ms, all_ms): (f64, f64) = (row.get(3), row.get(4));
        claim_us.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            claim_us
                .get(((claim_us.len() as f64 * p) as usize).min(claim_us.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        let mut run = json!({
            "done": done,
            "secs": elapsed,
            "ops_per_s": done as f64 / elapsed,
            "cpu_us": cpu as f64 / done.max(1) as f64,
            "claim_p50_us": pct(0.50),
            "claim_p99_us": pct(0.99),
            "buffers_per_claim": claim_blocks / claims.max(1.0),
            "buffers_per_execution": all_blocks / (done.max(1) as f64),
            // Time the server spent executing the run's statements (from
            // pg_stat_statements), per execution: claims, then all.
            "server_claim_us": claim_ms * 1e3 / (done.max(1) as f64),
            "server_us": all_ms * 1e3 / (done.max(1) as f64),
            "drained": done >= n_tasks,
            // Claims that found nothing while work was left (waited out).
            "empty_claims": empty.load(Ordering::Relaxed),
        });
        if let Some(waits) = waits {
            run["neighbour_waits_ms"] = json!(waits);
            run["neighbour_tasks"] = json!(neighbours * (users.len() - 1));
        }
        run
    });
    let mut run = run;
    run["maxrss_kb"] = json!(max_rss_kb());
    emit(run);
}

/// The noisy neighbour's victims: `users`, `each` tasks each, enqueued once
/// `warm` executions of the backlog are done.
struct Neighbours<'a> {
    users: &'a [UserId],
    each: usize,
    warm: usize,
}

impl Neighbours<'_> {
    /// Enqueues the users' tasks (one `create_many` and `enqueue_many` per
    /// user, as each would submit them), sets `stop` once they are all
    /// completed or at `deadline`, and returns the wait of each one claimed,
    /// ms, sorted.
    async fn run(
        &self,
        db: &voidrunner_db::Database,
        admin: &voidrunner_db::PooledClient,
        done: &AtomicUsize,
        stop: &AtomicBool,
        deadline: Instant,
    ) -> Vec<f64> {
        // Polled: the workers are at work on the backlog, in their steady
        // state, before anyone else submits.
        while done.load(Ordering::Relaxed) < self.warm && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let tasks = PgTaskRepository::new(db.clone());
        let queue = PgExecutionQueue::new(db.clone());
        let mut ids = Vec::new();
        for (k, user) in self.users.iter().enumerate() {
            let created = tasks
                .create_many(
                    (0..self.each)
                        .map(|i| NewTask::new(*user, format!("neighbour {k}.{i}"), "print(1)"))
                        .collect(),
                )
                .await
                .expect("create_many");
            let queued = queue
                .enqueue_many(created.iter().map(|t| t.id).collect(), None)
                .await
                .expect("enqueue_many");
            ids.extend(queued.iter().map(|e| e.id.as_uuid()));
        }
        while Instant::now() < deadline {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM task_executions \
                     WHERE id = ANY($1) AND status = 'completed'",
                    &[&ids],
                )
                .await
                .expect("neighbours' progress");
            if row.get::<_, i64>(0) as usize == ids.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let rows = admin
            .query(
                "SELECT (extract(epoch FROM started_at - created_at) * 1000)::float8 \
                 FROM task_executions WHERE id = ANY($1) AND started_at IS NOT NULL \
                 ORDER BY 1",
                &[&ids],
            )
            .await
            .expect("neighbours' waits");
        rows.iter().map(|r| r.get(0)).collect()
    }
}
