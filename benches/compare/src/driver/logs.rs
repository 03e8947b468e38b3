//! Issue #21: execution log appends (`--logs-only`, and the last rounds of
//! a full run). In the driver's process, on a database of its own in the
//! private cluster (durable commits):
//!
//! - 64 running executions per connection (claimed by one worker per
//!   connection), so concurrent batches never wait on each other's locks,
//!   as workers that each append their own executions;
//! - lines of 60–120 bytes of words and numbers, in batches of 64
//!   executions × 50 lines, one statement per batch;
//! - at c = 1, 2 and 4 connections, a fixed number of lines per run, three
//!   variants, in another order each round, each on emptied log tables
//!   (`TRUNCATE`, then `CHECKPOINT`), and each run's time includes the
//!   merge of what it left in the search index's pending list:
//!   - `append`: [`LogRepository::append_many`];
//!   - `copy`: a binary `COPY` of the same rows (same columns) into
//!     `task_execution_logs` (the partitioned parent, its key and checks),
//!     one `COPY` per batch: the table's own cost, no lease check, no
//!     search chunks;
//!   - `copy+chunks`: that `COPY` and an `INSERT` of the batch's search
//!     chunks (one per execution: `to_tsvector` of its lines joined by
//!     newlines, as the append builds them) in one transaction per batch:
//!     what the append writes, without its lease check, `ON CONFLICT` and
//!     the grouping in SQL.
//!
//! Beside lines/s, each run's CPU per line: the server's (all of the
//! cluster's processes, from /proc) and this process's, which what else
//! runs on the machine disturbs less. On stderr, per run, the statements
//! `pg_stat_statements` counted (plans, planning and execution per call).
//! `VR_LOGS_SQL`, when set, is run in the database after the migrations:
//! for experiments (a storage parameter, an index option) without a
//! rebuild.

use std::sync::Arc;
use std::time::{Duration, Instant};

use voidrunner_db::tokio_postgres::binary_copy::BinaryCopyInWriter;
use voidrunner_db::tokio_postgres::types::Type;
use voidrunner_db::{
    Database, DbConfig, ExecutionId, ExecutionQueue, LogAppend, LogRepository, LogStream,
    NewLogLine, NewTask, NewUser, PasswordHash, PgExecutionQueue, PgTaskRepository,
    PgUserRepository, PoolerMode, TaskId, TaskRepository, Timestamp, UserId, UserRepository,
};

use super::{Plan, admin, url_of};
use crate::ops::BoxError;
use voidrunner_db::testing::PrivateCluster;

/// Executions per connection, and in each batch.
const EXECUTIONS: usize = 64;
/// Lines of each execution per batch.
const LINES_PER_EXECUTION: usize = 50;
const BATCH: usize = EXECUTIONS * LINES_PER_EXECUTION;
const CONCURRENCY: [usize; 3] = [1, 2, 4];
const VARIANTS: [&str; 3] = ["append", "copy", "copy+chunks"];
/// The target, lines per second.
const TARGET: f64 = 100_000.0;

/// Lines of each run; `--quick` appends a fifth.
fn lines_per_run(plan: &Plan) -> usize {
    if plan.quick { 30 * BATCH } else { 150 * BATCH }
}

/// A running execution and what a raw `COPY` needs to know of it.
#[derive(Clone)]
struct Running {
    id: ExecutionId,
    worker: String,
    created_at: Timestamp,
    user: UserId,
    task: TaskId,
}

/// One run's figures.
#[derive(Clone, Copy, Default)]
struct Run {
    lines_per_s: f64,
    /// Median and 99th percentile of a batch's time, ms.
    p50_ms: f64,
    p99_ms: f64,
    /// The load average (1 min) when the run ended.
    load: f64,
    /// CPU per line, µs: the server's processes (every backend, the
    /// checkpointer, the WAL writer...) and this process.
    server_us: f64,
    client_us: f64,
}

/// CPU time, µs, of the server's processes so far: the postmaster's own
/// and its exited children's (reaped, so in its `cutime`/`cstime`) and its
/// live children's. Read from /proc; the cluster runs on this machine.
fn server_cpu_us(postmaster: u32) -> f64 {
    let ticks = |pid: u32, with_children: bool| -> Option<(u64, u32)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command's closing parenthesis, from field 3.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let own = n(14) + n(15);
        let total = if with_children {
            own + n(16) + n(17)
        } else {
            own
        };
        Some((total, n(4) as u32))
    };
    let mut total = ticks(postmaster, true).map_or(0, |t| t.0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            if let Some((t, parent)) = ticks(pid, false)
                && parent == postmaster
            {
                total += t;
            }
        }
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    total as f64 * 1e6 / hz
}

fn client_cpu_us() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    (crate::child::tv_us(usage.ru_utime) + crate::child::tv_us(usage.ru_stime)) as f64
}

async fn connect(url: &str, pool: usize) -> Result<Database, BoxError> {
    let mut config = DbConfig::from_url(url)?;
    config.max_connections = pool;
    config.min_connections = pool;
    config.pooler = PoolerMode::Direct;
    Ok(Database::connect(config).await?)
}

/// Runs the rounds and returns their section.
pub(crate) fn rounds(
    rt: &tokio::runtime::Runtime,
    cluster: &PrivateCluster,
    plan: &Plan,
) -> Result<String, BoxError> {
    rt.block_on(async {
        let maintenance = admin(&cluster.url()).await?;
        maintenance
            .batch_execute("DROP DATABASE IF EXISTS compare_logs")
            .await?;
        maintenance
            .batch_execute("CREATE DATABASE compare_logs")
            .await?;
        let url = url_of(cluster, "compare_logs");
        // The statements' plans and times, as the server counts them (the
        // cluster preloads the module), for the lines on stderr.
        admin(&url)
            .await?
            .batch_execute(
                "CREATE EXTENSION pg_stat_statements; \
                 ALTER DATABASE compare_logs SET pg_stat_statements.track_planning = on",
            )
            .await?;
        let max_c = CONCURRENCY[CONCURRENCY.len() - 1];
        let db = connect(&url, max_c).await?;
        db.migrate().await?;
        if let Ok(extra) = std::env::var("VR_LOGS_SQL") {
            admin(&url).await?.batch_execute(&extra).await?;
        }
        let postmaster = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("no pid in postmaster.pid")?;
        let section = measure(&db, &url, plan, postmaster).await;
        db.close(Duration::from_secs(5)).await;
        section
    })
}

/// 64 running executions for each of `workers` workers.
async fn executions(
    db: &Database,
    sql: &voidrunner_db::tokio_postgres::Client,
    workers: usize,
) -> Result<Vec<Vec<Running>>, BoxError> {
    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new("logs@example.com", PasswordHash::new("h")))
        .await?
        .id;
    let tasks = PgTaskRepository::new(db.clone())
        .create_many(
            (0..EXECUTIONS * workers)
                .map(|i| NewTask::new(user, format!("logs {i}"), "print(1)"))
                .collect(),
        )
        .await?;
    let queue = PgExecutionQueue::new(db.clone());
    queue
        .enqueue_many(tasks.iter().map(|t| t.id).collect(), None)
        .await?;
    let mut fleet = Vec::new();
    for w in 0..workers {
        let worker = format!("logs-worker-{w}");
        let claimed = queue
            .claim(&worker, EXECUTIONS as u32, Duration::from_secs(6 * 3600))
            .await?;
        if claimed.len() != EXECUTIONS {
            return Err(format!("{worker} claimed {} executions", claimed.len()).into());
        }
        let mut mine = Vec::new();
        for c in claimed {
            let row = sql
                .query_one(
                    "SELECT user_id FROM task_executions WHERE id = $1",
                    &[&c.execution.id],
                )
                .await?;
            mine.push(Running {
                id: c.execution.id,
                worker: worker.clone(),
                created_at: c.execution.created_at,
                user: row.try_get(0)?,
                task: c.execution.task_id,
            });
        }
        fleet.push(mine);
    }
    Ok(fleet)
}

/// A small deterministic generator, so every run sends the same lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// 4,096 distinct lines of 60–120 bytes: a script's output, words and
/// numbers.
fn line_pool() -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let parts = [
        "loader",
        "parser",
        "writer",
        "fetcher",
        "scheduler",
        "cache",
    ];
    let states = ["ok", "partial", "skipped", "timeout", "retrying"];
    let words = [
        "connection",
        "refused",
        "request",
        "completed",
        "upstream",
        "checksum",
        "mismatch",
        "bucket",
        "records",
        "invalid",
        "payload",
        "batch",
        "flushed",
        "worker",
        "queue",
    ];
    let mut pool = Vec::with_capacity(4096);
    while pool.len() < 4096 {
        let ts = format!(
            "2026-12-05T{:02}:{:02}:{:02}.{:03}Z",
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000)
        );
        let line = match rng.below(5) {
            0 => format!(
                "{ts} {} [{}] fetched {} records from s3://bucket-{}/part-{:05}.parquet in {} ms",
                rng.pick(&levels),
                rng.pick(&parts),
                rng.below(100_000),
                rng.below(1000),
                rng.below(100_000),
                rng.below(5000)
            ),
            1 => format!(
                "{ts} WARN [worker-{}] {} {} after {} ms ({}/5), {} {}",
                rng.below(64),
                rng.pick(&words),
                rng.pick(&words),
                rng.below(30_000),
                rng.below(5),
                rng.pick(&words),
                rng.pick(&words)
            ),
            2 => format!(
                "epoch {} step {}: loss={}.{:04} accuracy=0.{:03} lr=0.000{} grad_norm={}.{:02}",
                rng.below(100),
                rng.below(100_000),
                rng.below(10),
                rng.below(10_000),
                rng.below(1000),
                rng.below(10),
                rng.below(100),
                rng.below(100)
            ),
            3 => format!(
                "{ts} ERROR {} {}: db-{}.internal:5432 (attempt {}, status={})",
                rng.pick(&words),
                rng.pick(&words),
                rng.below(16),
                rng.below(10),
                rng.pick(&states)
            ),
            _ => format!(
                "processed {} of {} rows ({}%), {} rows/s, eta {}s, {} {} {}",
                rng.below(1_000_000),
                1_000_000,
                rng.below(100),
                rng.below(50_000),
                rng.below(3600),
                rng.pick(&words),
                rng.pick(&words),
                rng.pick(&words)
            ),
        };
        if (60..=120).contains(&line.len()) {
            pool.push(line);
        }
    }
    pool
}

/// The lines of batch `b` for `executions`: 50 each, from seq `b * 50`.
fn batch(pool: &[String], executions: &[Running], b: usize) -> Vec<LogAppend> {
    let now = Timestamp::now();
    executions
        .iter()
        .enumerate()
        .map(|(e, x)| {
            let lines = (0..LINES_PER_EXECUTION)
                .map(|i| {
                    let seq = (b * LINES_PER_EXECUTION + i) as u64;
                    let stream = if i % 7 == 6 {
                        LogStream::Stderr
                    } else {
                        LogStream::Stdout
                    };
                    let text = &pool[(b * 7919 + e * 131 + i) % pool.len()];
                    NewLogLine {
                        seq,
                        stream,
                        text: text.clone(),
                        logged_at: now,
                    }
                })
                .collect();
            LogAppend::new(x.id, x.worker.clone(), lines)
        })
        .collect()
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What every run uses.
struct Bench<'a> {
    db: &'a Database,
    url: &'a str,
    /// 64 running executions per connection.
    fleet: Vec<Vec<Running>>,
    pool: Arc<Vec<String>>,
    postmaster: u32,
}

/// One run: `variant` on `c` connections, `total` lines.
async fn run(
    bench: &Bench<'_>,
    variant: &'static str,
    c: usize,
    total: usize,
) -> Result<Run, BoxError> {
    let Bench {
        db,
        url,
        fleet,
        pool,
        postmaster,
    } = bench;
    let postmaster = *postmaster;
    let batches = total / BATCH / c;
    let (server0, client0) = (server_cpu_us(postmaster), client_cpu_us());
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for executions in fleet[..c].iter() {
        let executions = executions.clone();
        let pool = pool.clone();
        let db = Database::clone(db);
        let url = url.to_string();
        workers.spawn(async move {
            let mut times = Vec::with_capacity(batches);
            match variant {
                "append" => {
                    let logs = db.logs();
                    for b in 0..batches {
                        let appends = batch(&pool, &executions, b);
                        let t = Instant::now();
                        let results = logs.append_many(appends).await?;
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                        for r in results {
                            if r? != LINES_PER_EXECUTION as u64 {
                                return Err::<_, BoxError>("an append added fewer lines".into());
                            }
                        }
                    }
                }
                _ => {
                    let mut client = admin(&url).await?;
                    let chunks = client
                        .prepare(
                            "INSERT INTO task_execution_log_chunks (execution_id, \
                             execution_created_at, user_id, task_id, first_seq, last_seq, document) \
                             SELECT e, c, u, t, f, l, to_tsvector('simple', d) \
                             FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[], \
                                         $5::int8[], $6::int8[], $7::text[]) AS x(e, c, u, t, f, l, d)",
                        )
                        .await?;
                    let types = [
                        Type::UUID,
                        Type::TIMESTAMPTZ,
                        Type::UUID,
                        Type::INT8,
                        Type::TEXT,
                        Type::TIMESTAMPTZ,
                        Type::TEXT,
                    ];
                    for b in 0..batches {
                        let appends = batch(&pool, &executions, b);
                        let t = Instant::now();
                        let tx = client.transaction().await?;
                        let sink = tx
                            .copy_in(
                                "COPY task_execution_logs (execution_id, execution_created_at, \
                                 user_id, seq, stream, logged_at, line) FROM STDIN BINARY",
                            )
                            .await?;
                        let writer = BinaryCopyInWriter::new(sink, &types);
                        let mut writer = std::pin::pin!(writer);
                        for (a, x) in appends.iter().zip(&executions) {
                            for line in &a.lines {
                                let seq = line.seq as i64;
                                writer
                                    .as_mut()
                                    .write(&[
                                        &x.id,
                                        &x.created_at,
                                        &x.user,
                                        &seq,
                                        &line.stream.as_str(),
                                        &line.logged_at,
                                        &line.text,
                                    ])
                                    .await?;
                            }
                        }
                        writer.finish().await?;
                        if variant == "copy+chunks" {
                            let mut cols = (
                                Vec::new(),
                                Vec::new(),
                                Vec::new(),
                                Vec::new(),
                                Vec::new(),
                                Vec::new(),
                                Vec::new(),
                            );
                            for (a, x) in appends.iter().zip(&executions) {
                                cols.0.push(x.id);
                                cols.1.push(x.created_at);
                                cols.2.push(x.user);
                                cols.3.push(x.task);
                                cols.4.push(a.lines[0].seq as i64);
                                cols.5.push(a.lines[a.lines.len() - 1].seq as i64);
                                let texts: Vec<&str> =
                                    a.lines.iter().map(|l| l.text.as_str()).collect();
                                cols.6.push(texts.join("\n"));
                            }
                            tx.execute(
                                &chunks,
                                &[
                                    &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6,
                                ],
                            )
                            .await?;
                        }
                        tx.commit().await?;
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            Ok(times)
        });
    }
    let mut times = Vec::new();
    while let Some(joined) = workers.join_next().await {
        times.extend(joined??);
    }
    // The search index's pending list (GIN `fastupdate`) is merged by
    // whichever insert fills it; what the run left there is merged now and
    // counted, so no run leaves part of its index work to the next one.
    admin(url)
        .await?
        .batch_execute(
            "SELECT gin_clean_pending_list(inhrelid::regclass) FROM pg_inherits \
             WHERE inhparent = 'task_execution_log_chunks_document_idx'::regclass",
        )
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    let lines = (batches * c * BATCH) as f64;
    let server_us = (server_cpu_us(postmaster) - server0) / lines;
    let client_us = (client_cpu_us() - client0) / lines;
    times.sort_by(f64::total_cmp);
    Ok(Run {
        server_us,
        client_us,
        lines_per_s: lines / elapsed,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        load: load_average(),
    })
}

async fn measure(
    db: &Database,
    url: &str,
    plan: &Plan,
    postmaster: u32,
) -> Result<String, BoxError> {
    let sql = admin(url).await?;
    let max_c = CONCURRENCY[CONCURRENCY.len() - 1];
    eprintln!("logs: {} running executions…", EXECUTIONS * max_c);
    let fleet = executions(db, &sql, max_c).await?;
    sql.batch_execute("VACUUM ANALYZE").await?;
    let pool = Arc::new(line_pool());
    let mean_bytes = pool.iter().map(String::len).sum::<usize>() as f64 / pool.len() as f64;
    let total = lines_per_run(plan);
    let bench = Bench {
        db,
        url,
        fleet,
        pool,
        postmaster,
    };
    // [round][concurrency][variant]
    let mut runs = vec![[[Run::default(); 3]; 3]; plan.rounds];
    for (round, by_c) in runs.iter_mut().enumerate() {
        for (ci, &c) in CONCURRENCY.iter().enumerate() {
            for k in 0..VARIANTS.len() {
                let vi = (k + round + ci) % VARIANTS.len();
                let variant = VARIANTS[vi];
                sql.batch_execute(
                    "TRUNCATE task_execution_logs, task_execution_log_chunks; CHECKPOINT; \
                     SELECT pg_stat_statements_reset()",
                )
                .await?;
                let r = run(&bench, variant, c, total).await?;
                // The server's own account of the run's statements: plans,
                // planning and execution per call.
                for row in sql
                    .query(
                        "SELECT calls, plans, total_plan_time / greatest(plans, 1), \
                                total_exec_time / calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) \
                         FROM pg_stat_statements \
                         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                           AND calls >= 5 AND query NOT LIKE '%pg_stat_statements%' \
                         ORDER BY total_exec_time DESC LIMIT 3",
                        &[],
                    )
                    .await?
                {
                    eprintln!(
                        "    {} calls, {} plans of {:.2} ms, {:.2} ms a call: {}",
                        row.get::<_, i64>(0),
                        row.get::<_, i64>(1),
                        row.get::<_, f64>(2),
                        row.get::<_, f64>(3),
                        row.get::<_, String>(4)
                    );
                }
                eprintln!(
                    "logs: round {}/{} c={c} {variant}: {:.0} lines/s, CPU µs/line server {:.1} client {:.1}, batch p50 {:.1} ms p99 {:.1} ms (load {:.2})",
                    round + 1,
                    plan.rounds,
                    r.lines_per_s,
                    r.server_us,
                    r.client_us,
                    r.p50_ms,
                    r.p99_ms,
                    r.load
                );
                by_c[ci][vi] = r;
            }
        }
    }
    // Leaves the database small for whoever looks at it afterwards.
    sql.batch_execute("TRUNCATE task_execution_logs, task_execution_log_chunks")
        .await?;
    Ok(section(plan, total, mean_bytes, &runs))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn section(plan: &Plan, total: usize, mean_bytes: f64, runs: &[[[Run; 3]; 3]]) -> String {
    use std::fmt::Write as _;
    let mut md = String::from("## Execution log appends (issue #21)\n\n");
    let _ = writeln!(
        md,
        "{} rounds{}; one database of its own, durable commits; in the driver's process. \
         Each run: {total} lines of {mean_bytes:.0} bytes on average, in batches of \
         {EXECUTIONS} executions × {LINES_PER_EXECUTION} lines (one statement, or one \
         transaction, per batch); each connection appends its own {EXECUTIONS} running \
         executions; the log tables emptied before each run, and each run's time includes \
         merging what it left in the search index's pending list (GIN `fastupdate`). `copy`: binary COPY of the same \
         rows into `task_execution_logs` (no lease check, no search chunks); `copy+chunks`: \
         that COPY and an INSERT of the batch's chunks (`to_tsvector` of each execution's \
         lines) in one transaction. Medians of rounds; the load average (1 min) at each \
         run's end in brackets (2 CPUs, shared).\n",
        plan.rounds,
        if plan.quick { " (`--quick`)" } else { "" }
    );
    md.push_str(
        "| c | append, lines/s | batch p50 / p99, ms | copy, lines/s | copy+chunks, lines/s | append ÷ copy | append ÷ copy+chunks | load |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (ci, c) in CONCURRENCY.iter().enumerate() {
        let col = |vi: usize, f: fn(&Run) -> f64| -> f64 {
            median(runs.iter().map(|r| f(&r[ci][vi])).collect())
        };
        let ratio = |vi: usize| -> f64 {
            median(
                runs.iter()
                    .map(|r| r[ci][0].lines_per_s / r[ci][vi].lines_per_s)
                    .collect(),
            )
        };
        let loads: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.1}", r[ci][0].load))
            .collect();
        let _ = writeln!(
            md,
            "| {c} | {:.0} | {:.1} / {:.1} | {:.0} | {:.0} | {:.2}× | {:.2}× | {} |",
            col(0, |r| r.lines_per_s),
            col(0, |r| r.p50_ms),
            col(0, |r| r.p99_ms),
            col(1, |r| r.lines_per_s),
            col(2, |r| r.lines_per_s),
            ratio(1),
            ratio(2),
            loads.join(", ")
        );
    }
    md.push_str(
        "\nCPU per line, µs, server (all of its processes) + client (this process), medians of rounds; \
         less sensitive to what else runs on the machine than lines/s:\n\n\
         | c | append | copy | copy+chunks | append ÷ copy+chunks, server CPU |\n|---|---|---|---|---|\n",
    );
    for (ci, c) in CONCURRENCY.iter().enumerate() {
        let cpu = |vi: usize| -> (f64, f64) {
            (
                median(runs.iter().map(|r| r[ci][vi].server_us).collect()),
                median(runs.iter().map(|r| r[ci][vi].client_us).collect()),
            )
        };
        let [a, p, k] = [cpu(0), cpu(1), cpu(2)];
        let _ = writeln!(
            md,
            "| {c} | {:.1} + {:.1} | {:.1} + {:.1} | {:.1} + {:.1} | {:.2}× |",
            a.0,
            a.1,
            p.0,
            p.1,
            k.0,
            k.1,
            a.0 / k.0
        );
    }
    let best = (0..CONCURRENCY.len())
        .map(|ci| median(runs.iter().map(|r| r[ci][0].lines_per_s).collect()))
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "\nBest append: {best:.0} lines/s (target ≥ {TARGET:.0} lines/s: {}).\n",
        if best >= TARGET { "met" } else { "missed" }
    );
    md
}
