//! A worker fleet on the execution queue.
//!
//! ```text
//! cargo run --release --example worker -- --tasks 2000 --workers 8 --fail-rate 0.1
//! ```
//!
//! Queues `--tasks` tasks, runs `--workers` concurrent workers that claim
//! them in batches, fake-run each batch for `--run-ms` (0 by default),
//! heartbeating its in-flight executions every `--heartbeat-ms` meanwhile
//! (10,000 by default, a third of the 30 s lease: jobs shorter than that
//! need no heartbeat), and complete them as completed, or as failed with
//! probability `--fail-rate`. Each job's fake output streams to its log
//! while it runs: a system line and half of its `--log-lines` stdout lines
//! (4 by default) when it starts, the rest (and a stderr line when it
//! fails) when it is done, all stored before it completes. The fleet shares
//! one `Heartbeater`, one `LogWriter` and one `Completer`, which send the
//! heartbeats, the log lines and the completions of every worker in
//! batches (`ExecutionQueue::heartbeat_batch`, `LogRepository::append_many`,
//! `ExecutionQueue::complete_many`). Prints totals and throughput, then
//! checks the database: the exit code is 0 only if every execution ended
//! exactly once with every line of its log.
//!
//! `--users U` spreads the tasks over U users; `--claim-order fair` claims
//! them round-robin between the users (`ClaimOrder::Fair`), and `--cap C`
//! (which implies it) lets at most C of each user's executions run at once
//! (`ConcurrencyLimits::set_default_limit`). A sampler meanwhile counts the
//! running executions of each user in the database; the check then also
//! requires that no sample exceeded the cap:
//!
//! ```text
//! cargo run --example worker -- --tasks 2000 --workers 8 --users 20 --cap 2 --run-ms 5
//! ```
//!
//! It runs in a throwaway database of its own on the server the test harness
//! finds (`DATABASE_URL`, else 127.0.0.1:5432, else a private cluster), which
//! is dropped at the end, with the `VOIDRUNNER_DB_*` settings of
//! `DbConfig::from_env`. Through PgBouncer in transaction mode:
//!
//! ```text
//! VOIDRUNNER_TEST_POOLER=pgbouncer cargo run --example worker -- --tasks 2000 --workers 8
//! ```

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    ClaimOrder, Completer, ConcurrencyLimits, ExecutionId, ExecutionQueue, Heartbeater, LogWriter,
    NewLogLine, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue, PgTaskRepository,
    PgUserRepository, TaskRepository, UserRepository,
};

const USAGE: &str = "usage: worker --tasks N --workers W [--fail-rate P] [--run-ms MS] \
                     [--heartbeat-ms MS] [--log-lines N] [--users U] \
                     [--claim-order fifo|fair] [--cap C]";
const CLAIM_BATCH: u32 = 10;
const LEASE: Duration = Duration::from_secs(30);

struct Args {
    tasks: usize,
    workers: usize,
    fail_rate: f64,
    run: Duration,
    heartbeat_every: Duration,
    log_lines: u64,
    users: usize,
    claim_order: ClaimOrder,
    cap: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tasks: 1000,
        workers: 4,
        fail_rate: 0.0,
        run: Duration::ZERO,
        heartbeat_every: LEASE / 3,
        log_lines: 4,
        users: 1,
        claim_order: ClaimOrder::Fifo,
        cap: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = || format!("bad value `{value}` for {flag}\n{USAGE}");
        match flag.as_str() {
            "--tasks" => args.tasks = value.parse().map_err(|_| bad())?,
            "--workers" => args.workers = value.parse().map_err(|_| bad())?,
            "--fail-rate" => args.fail_rate = value.parse().map_err(|_| bad())?,
            "--run-ms" => args.run = Duration::from_millis(value.parse().map_err(|_| bad())?),
            "--heartbeat-ms" => {
                args.heartbeat_every = Duration::from_millis(value.parse().map_err(|_| bad())?)
            }
            "--log-lines" => args.log_lines = value.parse().map_err(|_| bad())?,
            "--users" => args.users = value.parse().map_err(|_| bad())?,
            "--claim-order" => {
                args.claim_order = match value.as_str() {
                    "fifo" => ClaimOrder::Fifo,
                    "fair" => ClaimOrder::Fair,
                    _ => return Err(bad()),
                }
            }
            "--cap" => {
                args.cap = Some(value.parse().map_err(|_| bad())?);
                // The FIFO claim knows no caps.
                args.claim_order = ClaimOrder::Fair;
            }
            _ => return Err(USAGE.to_owned()),
        }
    }
    if args.workers == 0
        || args.users == 0
        || !(0.0..=1.0).contains(&args.fail_rate)
        || args.heartbeat_every.is_zero()
        || args.heartbeat_every >= LEASE
    {
        return Err(format!(
            "workers and users must be at least 1, fail-rate within 0..=1 and heartbeat-ms above 0 \
             and below the {LEASE:?} lease\n{USAGE}"
        ));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("worker failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Deterministic "randomness" from the execution id, so a run can be
/// repeated: the id's random bits, scaled to 0..1.
fn fails(id: ExecutionId, fail_rate: f64) -> bool {
    let bits = (id.as_uuid().as_u128() & 0xffff_ffff) as f64;
    bits / f64::from(u32::MAX) < fail_rate
}

async fn run(args: Args) -> voidrunner_db::Result<bool> {
    let test_db = TestDatabase::with_config(|c| {
        c.max_connections = args.workers + 2;
        c.min_connections = args.workers.min(5);
    })
    .await?;
    let db = test_db.db().clone();
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let queue = Arc::new(PgExecutionQueue::new(db.clone()).with_claim_order(args.claim_order));
    if args.cap.is_some() {
        db.concurrency_limits().set_default_limit(args.cap).await?;
    }

    let mut owners = Vec::with_capacity(args.users);
    for u in 0..args.users {
        let email = format!("fleet-{u}@example.com");
        owners.push(
            users
                .create(NewUser::new(email, PasswordHash::new("demo")))
                .await?
                .id,
        );
    }
    let enqueue_started = Instant::now();
    let mut queued = 0;
    while queued < args.tasks {
        let n = (args.tasks - queued).min(1000);
        let batch: Vec<NewTask> = (queued..queued + n)
            .map(|i| {
                NewTask::new(
                    owners[i % owners.len()],
                    format!("job {i}"),
                    format!("print({i})"),
                )
                .priority((i % 11) as i32)
            })
            .collect();
        let created = tasks.create_many(batch).await?;
        queue
            .enqueue_many(created.iter().map(|t| t.id).collect(), None)
            .await?;
        queued += n;
    }
    println!(
        "queued:     {} tasks in {:.2?}",
        args.tasks,
        enqueue_started.elapsed()
    );

    let ended: Arc<Mutex<HashSet<ExecutionId>>> = Arc::default();
    let twice = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let heartbeats = Arc::new(AtomicUsize::new(0));
    let logged = Arc::new(AtomicUsize::new(0));
    // One completer for the fleet: completions of every worker, sent in
    // batches every few milliseconds.
    let completer = Completer::new(queue.clone())?;
    // And one heartbeater: every worker's heartbeats in shared statements.
    let heartbeater = Heartbeater::new(queue.clone())?;
    // And one log writer: every worker's output lines, in shared appends.
    let log_writer = LogWriter::new(Arc::new(db.logs()))?;
    let started = Instant::now();
    // The most executions of one user seen running at once, sampled in the
    // database while the fleet runs (and at most the cap, when there is one).
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn(sample_running(db.clone(), sampling.clone()));
    let mut fleet = tokio::task::JoinSet::new();
    for w in 0..args.workers {
        let queue = queue.clone();
        let completer = completer.clone();
        let heartbeater = heartbeater.clone();
        let ended = ended.clone();
        let twice = twice.clone();
        let failed = failed.clone();
        let heartbeats = heartbeats.clone();
        let log_writer = log_writer.clone();
        let logged = logged.clone();
        let (run_for, heartbeat_every, log_lines) =
            (args.run, args.heartbeat_every, args.log_lines);
        let total = args.tasks;
        let fail_rate = args.fail_rate;
        fleet.spawn(async move {
            let worker = format!("worker-{w}");
            loop {
                let claimed = queue.claim(&worker, CLAIM_BATCH, LEASE).await?;
                if claimed.is_empty() {
                    if ended.lock().expect("lock").len() >= total {
                        return Ok::<(), voidrunner_db::Error>(());
                    }
                    // Others hold the last rows; look again shortly.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                // A real worker runs each job.script_content here, for at
                // most job.timeout_seconds, and heartbeats its in-flight set
                // until they are done, so the lease never runs out under a
                // live worker. Handed to the shared heartbeater, the
                // heartbeats go out with other workers'.
                let ids: Vec<ExecutionId> = claimed.iter().map(|job| job.execution.id).collect();
                // The jobs' output streams to their logs while they run:
                // the first half now. Handed over without waiting, the
                // appends go out with other workers' lines.
                let half = log_lines / 2;
                let mut appends = Vec::with_capacity(2 * ids.len());
                for &id in &ids {
                    let mut lines = vec![NewLogLine::system(0, format!("started on {worker}"))];
                    lines.extend(
                        (1..=half).map(|seq| NewLogLine::stdout(seq, format!("{id}: step {seq}"))),
                    );
                    appends.push(log_writer.append(id, &worker, lines));
                }
                let running = tokio::time::sleep(run_for);
                tokio::pin!(running);
                let mut ticks = tokio::time::interval_at(
                    tokio::time::Instant::now() + heartbeat_every,
                    heartbeat_every,
                );
                loop {
                    tokio::select! {
                        () = &mut running => break,
                        _ = ticks.tick() => {
                            let beats: Vec<_> = ids
                                .iter()
                                .map(|&id| heartbeater.heartbeat(id, &worker, LEASE))
                                .collect();
                            for beat in beats {
                                beat.await?;
                                heartbeats.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                // The rest of the output when the job is done, every line
                // stored before the completion: an append after the end is
                // refused (LeaseLost).
                for &id in &ids {
                    let mut lines: Vec<NewLogLine> = (half + 1..=log_lines)
                        .map(|seq| NewLogLine::stdout(seq, format!("{id}: step {seq}")))
                        .collect();
                    if fails(id, fail_rate) {
                        lines.push(NewLogLine::stderr(log_lines + 1, "simulated failure"));
                    }
                    if !lines.is_empty() {
                        appends.push(log_writer.append(id, &worker, lines));
                    }
                }
                for append in appends {
                    let added = append.await?;
                    logged.fetch_add(added as usize, Ordering::Relaxed);
                }
                let mut reports = Vec::with_capacity(claimed.len());
                for job in claimed {
                    let id = job.execution.id;
                    let outcome = if fails(id, fail_rate) {
                        failed.fetch_add(1, Ordering::Relaxed);
                        Outcome::failed(1).output("", "simulated failure")
                    } else {
                        Outcome::completed(0).output("ok", "")
                    }
                    .usage(1, 1 << 20);
                    // Handed over now; the batch goes out with other
                    // workers' completions.
                    reports.push(completer.complete(id, &worker, outcome));
                }
                for report in reports {
                    let done = report.await?;
                    if !ended.lock().expect("lock").insert(done.id) {
                        twice.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while let Some(joined) = fleet.join_next().await {
        joined.expect("worker task")?;
    }
    completer.shutdown().await;
    heartbeater.shutdown().await;
    log_writer.shutdown().await;
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let (samples, most_running) = sampler.await.expect("sampler task")?;
    let done = ended.lock().expect("lock").len();
    let failed = failed.load(Ordering::Relaxed);
    println!("workers:    {}", args.workers);
    println!(
        "users:      {} (claim order {}, cap {})",
        args.users,
        args.claim_order.as_str(),
        args.cap.map_or("none".to_owned(), |c| c.to_string())
    );
    println!("running:    at most {most_running} of one user at once ({samples} samples)");
    println!(
        "ended:      {done} ({} completed, {failed} failed)",
        done - failed
    );
    println!("heartbeats: {}", heartbeats.load(Ordering::Relaxed));
    let logged = logged.load(Ordering::Relaxed);
    println!("log lines:  {logged}");
    println!(
        "throughput: {:.0} executions/s (claim + complete) over {elapsed:.2?}",
        done as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
    );

    // What the database says, independently of the workers' own counts.
    // Unnamed (nothing to declare): runs through a transaction pooler too.
    let client = db.client().await?;
    let row = client
        .query_typed_one(
            "SELECT count(*), \
                    count(*) FILTER (WHERE status = 'completed'), \
                    count(*) FILTER (WHERE status = 'failed'), \
                    count(*) FILTER (WHERE status NOT IN ('completed', 'failed')), \
                    count(DISTINCT task_id), \
                    count(*) FILTER (WHERE attempt <> 1), \
                    (SELECT count(*) FROM task_execution_logs) \
             FROM task_executions",
            &[],
        )
        .await?;
    let (rows, completed, failed_rows, unfinished, tasks_run, reclaimed, lines): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
    );
    // A system line and `log_lines` stdout lines per execution, and a
    // stderr line per failure.
    let lines_expected = total_lines(args.tasks, args.log_lines, failed);
    let total = args.tasks as i64;
    let ok = rows == total
        && tasks_run == total
        && unfinished == 0
        && reclaimed == 0
        && failed_rows == failed as i64
        && completed == total - failed as i64
        && done == args.tasks
        && twice.load(Ordering::Relaxed) == 0
        && lines == lines_expected
        && logged as i64 == lines_expected
        && args.cap.is_none_or(|cap| most_running <= i64::from(cap));
    println!(
        "check:      {} (database: {rows} executions of {tasks_run} tasks, {completed} completed, {failed_rows} failed, {unfinished} unfinished, {reclaimed} claimed twice, {lines} of {lines_expected} log lines)",
        if ok {
            "every execution ended exactly once"
        } else {
            "MISMATCH"
        }
    );
    Ok(ok)
}

/// Counts each user's running executions in the database until `sampling`
/// is cleared; returns how many samples were taken and the most running
/// of one user in any of them.
async fn sample_running(
    db: voidrunner_db::Database,
    sampling: Arc<std::sync::atomic::AtomicBool>,
) -> voidrunner_db::Result<(u64, i64)> {
    let client = db.client().await?;
    let (mut samples, mut most) = (0u64, 0i64);
    while sampling.load(Ordering::Relaxed) {
        let row = client
            .query_typed_one(
                "SELECT coalesce(max(n), 0) FROM \
                   (SELECT count(*) AS n FROM task_executions \
                    WHERE status = 'running' GROUP BY user_id) per_user",
                &[],
            )
            .await?;
        most = most.max(row.try_get(0)?);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((samples, most))
}

/// The log lines a run of `tasks` with `log_lines` each and `failed`
/// failures stores.
fn total_lines(tasks: usize, log_lines: u64, failed: usize) -> i64 {
    let per_task = i64::try_from(log_lines)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    (tasks as i64).saturating_mul(per_task) + failed as i64
}
