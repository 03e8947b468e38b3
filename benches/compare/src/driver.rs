//! The driver: a private cluster, seeded databases, the crate's SQL
//! captured from pg_stat_statements, then rounds of child processes (one
//! per variant and measurement, interleaved), callgrind, and the report.

pub(crate) mod counts;
pub(crate) mod fair;
pub(crate) mod logs;
pub(crate) mod replica;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::tokio_postgres::{self, NoTls};
use voidrunner_db::{
    Database, DbConfig, NewTask, NewUser, PasswordHash, PgTaskRepository, PgUserRepository,
    PoolerMode, TaskId, TaskRepository, UserId, UserRepository,
};

use crate::child::tv_us;
use crate::ops::{self, BoxError, OPS, SqlMap};
use crate::report::{self, Machine, Record};

pub struct Options {
    pub quick: bool,
    pub rounds: Option<usize>,
    pub out: Option<PathBuf>,
    pub callgrind: bool,
    /// Where to keep the callgrind profiles (for callgrind_annotate).
    pub keep_profiles: Option<PathBuf>,
    /// Only the queue runs (`--queue-only`): no repository operations, no
    /// callgrind.
    pub queue_only: bool,
    /// Only the reads with a replica run (`--replicas-only`, issue #19):
    /// their section is printed, and written to BENCHMARKS.md only with
    /// `--out DIR`; the README is left alone.
    pub replicas_only: bool,
    /// Only the counts' rounds run (`--counts-only`, issue #20): their
    /// section is printed; nothing is written.
    pub counts_only: bool,
    /// Only the log appends' rounds run (`--logs-only`, issue #21): their
    /// section is printed; nothing is written.
    pub logs_only: bool,
    /// Only the fair claim's rounds run (`--fair-only`, issue #22): their
    /// section is printed, and written into BENCHMARKS.md (in place of the
    /// one there) only with `--out DIR`.
    pub fair_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            rounds: None,
            out: None,
            callgrind: true,
            keep_profiles: None,
            queue_only: false,
            replicas_only: false,
            counts_only: false,
            logs_only: false,
            fair_only: false,
        }
    }
}

/// How much each measurement does; `--quick` shrinks all of it.
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    /// Rounds of the fair claim's runs (issue #22): 3 (2 quick) unless
    /// `--rounds N`.
    pub(crate) fair_rounds: usize,
    /// c=1 calls of each replica read (issue #19); a quarter of it for the
    /// reads right after a write, which each wait for a durable commit.
    pub(crate) replica_lat_n: usize,
    /// c=1 calls per op.
    lat_n: HashMap<&'static str, usize>,
    /// Calls per op under callgrind.
    instr_n: HashMap<&'static str, usize>,
    /// Seconds of each c=16 run.
    pub(crate) tput_secs: u64,
    /// Seconds of each queue run.
    queue_secs: f64,
    seed_tasks: usize,
}

impl Plan {
    fn new(options: &Options) -> Self {
        let q = options.quick;
        let pick = |full: usize, quick: usize| if q { quick } else { full };
        Plan {
            quick: q,
            rounds: options.rounds.unwrap_or(if q { 2 } else { 5 }),
            fair_rounds: options.rounds.unwrap_or(if q { 2 } else { 3 }),
            replica_lat_n: pick(2000, 300),
            lat_n: HashMap::from([
                ("get", pick(2000, 300)),
                ("list", pick(500, 100)),
                ("create", pick(1000, 200)),
                ("create_many", pick(20, 5)),
                ("import", pick(4, 2)),
            ]),
            instr_n: HashMap::from([
                ("get", pick(200, 50)),
                ("list", pick(50, 20)),
                ("create", pick(200, 50)),
                ("create_many", pick(4, 2)),
                ("import", 1),
            ]),
            tput_secs: if q { 1 } else { 2 },
            queue_secs: if q { 2.0 } else { 4.0 },
            seed_tasks: 10_000,
        }
    }

    pub fn describe(&self) -> String {
        let mut lat: Vec<String> = OPS
            .iter()
            .map(|op| format!("{op} {}", self.lat_n[op]))
            .collect();
        lat.sort();
        format!(
            "{} rounds; c=1 calls per op: {}; c=16 runs of {} s; queue runs of up to {} s; {} seeded tasks",
            self.rounds,
            lat.join(", "),
            self.tput_secs,
            self.queue_secs,
            self.seed_tasks
        )
    }
}

/// The three databases of a run and what was seeded in them.
pub(crate) struct Setup {
    pub(crate) ops_url: String,
    ops_db: String,
    port: u16,
    pub(crate) task: TaskId,
    pub(crate) user: UserId,
    /// (url, user) of the durable and the asynchronous-commit queue
    /// databases.
    durable: (String, UserId),
    asynchronous: (String, UserId),
    /// The migrated queue database every queue database is cloned from,
    /// and its user; fresh runs get a new clone each (see
    /// [`fresh_queue_run`]).
    queue_template: (String, UserId),
    /// The cluster's maintenance database, to create and drop clones from.
    pub(crate) cluster_url: String,
    pub(crate) sql: SqlMap,
}

pub fn run(options: Options) -> Result<(), BoxError> {
    let plan = Plan::new(&options);
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    // Made (and checked writable) before minutes of measuring, not after.
    std::fs::create_dir_all(&out)
        .map_err(|e| format!("cannot create the output directory {}: {e}", out.display()))?;
    let work = std::env::temp_dir().join(format!("voidrunner-compare-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    eprintln!("starting a private cluster…");
    let cluster = rt.block_on(start_cluster())?;
    let outcome = measure(&rt, &cluster, &plan, &options, &work, &out);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("done in {:.0?}", started.elapsed());
    outcome
}

fn measure(
    rt: &tokio::runtime::Runtime,
    cluster: &PrivateCluster,
    plan: &Plan,
    options: &Options,
    work: &Path,
    out: &Path,
) -> Result<(), BoxError> {
    if options.counts_only {
        println!("{}", counts::rounds(rt, cluster, plan)?);
        return Ok(());
    }
    if options.logs_only {
        println!("{}", logs::rounds(rt, cluster, plan)?);
        return Ok(());
    }
    if options.fair_only {
        let section = fair::rounds(rt, cluster, plan, &std::env::current_exe()?)?;
        println!("{section}");
        if options.out.is_some() {
            let path = out.join("BENCHMARKS.md");
            fair::write_section(&path, &section)?;
            eprintln!("wrote its section into {}", path.display());
        } else {
            eprintln!("--fair-only without --out: BENCHMARKS.md left alone");
        }
        return Ok(());
    }
    eprintln!("seeding and capturing the crate's SQL…");
    let setup = rt.block_on(setup(cluster, plan))?;
    let sql_file = work.join("sql.json");
    std::fs::write(&sql_file, serde_json::to_string_pretty(&setup.sql)?)?;
    let server_version = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&setup.ops_url, NoTls).await?;
        tokio::spawn(conn);
        let row = client.query_one("SHOW server_version", &[]).await?;
        Ok::<String, tokio_postgres::Error>(row.get(0))
    })?;
    let me = std::env::current_exe()?;
    let pgbench = find_program("pgbench");
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut queue_tasks: HashMap<String, usize> = HashMap::new();
    let main_rounds = if options.replicas_only {
        0
    } else {
        plan.rounds
    };
    for round in 0..main_rounds {
        eprintln!("round {}/{}", round + 1, plan.rounds);
        let mut variants = vec!["crate", "raw", "sqlx", "scoped"];
        if pgbench.is_some() {
            variants.push("pgbench");
        }
        // Each round starts with a different variant, so none always runs
        // first (cold) or last.
        let len = variants.len();
        variants.rotate_left(round % len);
        for op in OPS {
            if options.queue_only {
                break;
            }
            for &variant in &variants {
                if variant == "pgbench" && !matches!(op, "get" | "list" | "create") {
                    continue;
                }
                if variant == "scoped" && !matches!(op, "get" | "list") {
                    continue;
                }
                let result = if variant == "pgbench" {
                    pgbench_latency(pgbench.as_deref().expect("pgbench"), &setup, op, plan, work)
                } else {
                    run_child(
                        &me,
                        None,
                        &[
                            ("mode", "lat".into()),
                            ("variant", variant.into()),
                            ("op", op.into()),
                            ("n", plan.lat_n[op].to_string()),
                        ],
                        &setup,
                        &sql_file,
                    )
                };
                keep(&mut records, &mut errors, round, "lat", variant, op, result);
            }
            if matches!(op, "get" | "list" | "create") {
                for &variant in &variants {
                    if variant == "scoped" && op == "create" {
                        continue;
                    }
                    let result = if variant == "pgbench" {
                        pgbench_throughput(
                            pgbench.as_deref().expect("pgbench"),
                            &setup,
                            op,
                            plan,
                            work,
                        )
                    } else {
                        run_child(
                            &me,
                            None,
                            &[
                                ("mode", "tput".into()),
                                ("variant", variant.into()),
                                ("op", op.into()),
                                ("secs", plan.tput_secs.to_string()),
                            ],
                            &setup,
                            &sql_file,
                        )
                    };
                    keep(
                        &mut records,
                        &mut errors,
                        round,
                        "tput",
                        variant,
                        op,
                        result,
                    );
                }
            }
        }
        queue_round(
            rt,
            pgbench.as_deref(),
            work,
            &me,
            &setup,
            &sql_file,
            plan,
            round,
            &mut queue_tasks,
            &mut records,
            &mut errors,
        );
        rt.block_on(clean(&setup.ops_url))?;
    }
    // Issue #19: its own rounds, after the others, with a replica that
    // exists only meanwhile (its WAL sender and replay would otherwise
    // take CPU from every other measurement).
    replica::rounds(
        rt,
        cluster,
        &setup,
        &me,
        &sql_file,
        plan,
        &mut records,
        &mut errors,
    )?;
    // Issue #20: a database of its own, loaded with a user of a million
    // tasks.
    let counts_section = if options.queue_only || options.replicas_only {
        String::new()
    } else {
        counts::rounds(rt, cluster, plan)?
    };
    // Issue #21: log appends against a raw COPY, on a database of their
    // own.
    let logs_section = if options.queue_only || options.replicas_only {
        String::new()
    } else {
        logs::rounds(rt, cluster, plan)?
    };
    // Issue #22: the fair claim against FIFO, on a database of its own.
    let fair_section = if options.queue_only || options.replicas_only {
        String::new()
    } else {
        fair::rounds(rt, cluster, plan, &me)?
    };
    let valgrind = (options.callgrind && !options.queue_only && !options.replicas_only)
        .then(|| find_program("valgrind"))
        .flatten();
    if let Some(valgrind) = &valgrind {
        eprintln!("instruction counts under callgrind…");
        for op in OPS {
            for variant in ["crate", "raw", "sqlx"] {
                let result = callgrind(valgrind, &me, variant, op, plan, &setup, &sql_file, work);
                if let Some(dir) = &options.keep_profiles {
                    let name = format!("callgrind.{variant}.{op}");
                    std::fs::create_dir_all(dir)?;
                    let _ = std::fs::copy(work.join(&name), dir.join(&name));
                }
                keep(&mut records, &mut errors, 0, "instr", variant, op, result);
            }
            rt.block_on(clean(&setup.ops_url))?;
        }
    }
    let machine = Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        server_version,
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: command_line("git", &["rev-parse", "--short", "HEAD"]),
        valgrind: match (&valgrind, options.callgrind) {
            (Some(_), _) => "yes (instruction counts)",
            (None, false) => "skipped (`--no-callgrind`): no instruction counts",
            (None, true) => "not installed: no instruction counts",
        },
        pgbench: pgbench.is_some(),
    };
    // Hand-written: what was tried about missed targets and what profiling
    // showed, which a regenerated file would otherwise lose.
    let notes = std::fs::read_to_string(out.join("NOTES.md")).ok();
    let mut markdown = report::markdown(
        &machine,
        plan.quick,
        &plan.describe(),
        &records,
        &errors,
        &setup.sql,
        notes.as_deref(),
    );
    markdown.push_str(&counts_section);
    markdown.push_str(&logs_section);
    markdown.push_str(&fair_section);
    println!("{}", report::replicas_section(&records));
    println!("{counts_section}");
    println!("{logs_section}");
    println!("{fair_section}");
    if options.replicas_only && options.out.is_none() {
        eprintln!("--replicas-only without --out: BENCHMARKS.md and ratios.svg left alone");
        return finish(&errors);
    }
    std::fs::write(out.join("BENCHMARKS.md"), markdown)?;
    std::fs::write(out.join("ratios.svg"), report::svg(&records))?;
    if options.out.is_none() {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let (table, _) = report::targets_table(&records);
        let quote = format!(
            "{table}\n{} ({}; {} CPUs).\n",
            if plan.quick {
                "From a `--quick` run (smoke test, not figures to quote)"
            } else if options.queue_only {
                "From a `--queue-only` run (the queue alone: no repository rows)"
            } else {
                "From one full run"
            },
            machine.date,
            machine.nproc,
        );
        match report::replace_between_markers(&std::fs::read_to_string(&readme)?, &quote) {
            Some(text) => std::fs::write(&readme, text)?,
            None => eprintln!(
                "README.md has no {} … {} markers: its table was not updated",
                report::BEGIN,
                report::END
            ),
        }
    }
    eprintln!(
        "wrote {} and {}",
        out.join("BENCHMARKS.md").display(),
        out.join("ratios.svg").display()
    );
    finish(&errors)
}

fn finish(errors: &[String]) -> Result<(), BoxError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} measurements failed (listed above, and in BENCHMARKS.md when written)",
            errors.len()
        )
        .into())
    }
}

pub(crate) fn keep(
    records: &mut Vec<Record>,
    errors: &mut Vec<String>,
    round: usize,
    kind: &str,
    variant: &str,
    op: &str,
    result: Result<Value, BoxError>,
) {
    match result {
        Ok(value) => records.push(Record {
            round,
            kind: kind.to_owned(),
            variant: variant.to_owned(),
            op: op.to_owned(),
            value,
        }),
        Err(e) => {
            let message = format!("round {} {kind} {variant} {op}: {e}", round + 1);
            eprintln!("FAILED {message}");
            errors.push(message);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn queue_round(
    rt: &tokio::runtime::Runtime,
    pgbench: Option<&Path>,
    work: &Path,
    me: &Path,
    setup: &Setup,
    sql_file: &Path,
    plan: &Plan,
    round: usize,
    queue_tasks: &mut HashMap<String, usize>,
    records: &mut Vec<Record>,
    errors: &mut Vec<String>,
) {
    // (label, database, worker, notify); each pair runs A/B, swapped every
    // other round.
    let pairs = [
        [
            ("durable", &setup.durable, "batched", "on"),
            ("durable", &setup.durable, "single", "on"),
        ],
        [
            ("async", &setup.asynchronous, "batched", "on"),
            ("async", &setup.asynchronous, "single", "on"),
        ],
        [
            ("async", &setup.asynchronous, "batched", "on"),
            ("async", &setup.asynchronous, "batched", "off"),
        ],
    ];
    if round == 0 {
        // A first queue run in a fresh database is slower (cold caches,
        // relations growing): one untimed run in each, so the first pair
        // compares like with like.
        for (_, url, worker, notify) in [pairs[0][0], pairs[1][0]] {
            let _ = run_child(
                me,
                Some(&url.0),
                &[
                    ("mode", "queue".into()),
                    ("worker", worker.into()),
                    ("notify", notify.into()),
                    ("secs", "1".into()),
                    ("tasks", "5000".into()),
                    ("user", url.1.to_string()),
                ],
                setup,
                sql_file,
            );
        }
    }
    for (p, pair) in pairs.iter().enumerate() {
        let mut pair = pair.to_vec();
        if round % 2 == 1 {
            pair.reverse();
        }
        for (commit, (url, user), worker, notify) in pair {
            // The notify pair's "on" side repeats the async batched run in
            // the same place of the round as its "off" side, so both see
            // the same conditions.
            let op = if p == 2 {
                format!("notify_{notify}")
            } else {
                format!("{commit}_{worker}")
            };
            let guess = if worker == "batched" { 20_000 } else { 6_000 };
            let tasks = *queue_tasks.entry(op.clone()).or_insert(if plan.quick {
                guess / 2
            } else {
                guess
            });
            let result = run_child(
                me,
                Some(url),
                &[
                    ("mode", "queue".into()),
                    ("worker", worker.into()),
                    ("notify", notify.into()),
                    ("secs", plan.queue_secs.to_string()),
                    ("tasks", tasks.to_string()),
                    ("user", user.to_string()),
                ],
                setup,
                sql_file,
            );
            if let Ok(value) = &result {
                // Enough queued work for the next round to run the whole
                // time rather than drain early.
                let rate = value["ops_per_s"].as_f64().unwrap_or(0.0);
                let want = (rate * plan.queue_secs * 1.5) as usize;
                let entry = queue_tasks.get_mut(&op).expect("entry");
                *entry = (*entry).max(want).min(200_000);
            }
            keep(records, errors, round, "queue", "crate", &op, result);
        }
    }
    // Issue #16: a queue of FRESH_TASKS loaded into tables never analyzed
    // (a new clone of the template, autovacuum off), the batched worker
    // against the claim-1 loop, durable and asynchronous.
    for commit in ["durable", "async"] {
        let mut workers = ["batched", "single"];
        if round % 2 == 1 {
            workers.reverse();
        }
        for worker in workers {
            let op = format!("fresh_{commit}_{worker}");
            let result = fresh_queue_run(rt, me, setup, sql_file, plan, commit, worker);
            keep(records, errors, round, "queue", "crate", &op, result);
        }
    }
    if let Some(pgbench) = pgbench {
        for fresh in [true, false] {
            let op = if fresh {
                "fresh_async_single"
            } else {
                "async_single"
            };
            let result = pgbench_queue_run(rt, pgbench, me, setup, sql_file, plan, work, fresh);
            keep(records, errors, round, "queue", "pgbench", op, result);
        }
    }
}

/// Queued executions of a fresh run: the 20,000 (10,000 quick).
const FRESH_TASKS: usize = 20_000;

/// The name of the clone a fresh run gets.
const FRESH_DB: &str = "compare_q_fresh";

/// A new clone of the queue template, `synchronous_commit` as `commit`
/// says; returns its URL. Dropped by [`drop_fresh_db`].
fn fresh_db(rt: &tokio::runtime::Runtime, setup: &Setup, commit: &str) -> Result<String, BoxError> {
    let synchronous = if commit == "durable" { "on" } else { "off" };
    rt.block_on(async {
        let maintenance = admin(&setup.cluster_url).await?;
        // One statement each: a string of several runs as one transaction,
        // and CREATE DATABASE cannot.
        for statement in [
            format!("DROP DATABASE IF EXISTS {FRESH_DB}"),
            format!("CREATE DATABASE {FRESH_DB} TEMPLATE compare_q_template"),
            format!("ALTER DATABASE {FRESH_DB} SET synchronous_commit = {synchronous}"),
        ] {
            maintenance.batch_execute(&statement).await?;
        }
        Ok::<(), BoxError>(())
    })?;
    Ok(setup
        .queue_template
        .0
        .replace("compare_q_template", FRESH_DB))
}

fn drop_fresh_db(rt: &tokio::runtime::Runtime, setup: &Setup) -> Result<(), BoxError> {
    rt.block_on(async {
        admin(&setup.cluster_url)
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {FRESH_DB} WITH (FORCE)"))
            .await?;
        Ok(())
    })
}

fn fresh_tasks(plan: &Plan) -> usize {
    if plan.quick {
        FRESH_TASKS / 2
    } else {
        FRESH_TASKS
    }
}

/// One queue run in a new clone of the queue template, dropped after.
#[allow(clippy::too_many_arguments)]
fn fresh_queue_run(
    rt: &tokio::runtime::Runtime,
    me: &Path,
    setup: &Setup,
    sql_file: &Path,
    plan: &Plan,
    commit: &str,
    worker: &str,
) -> Result<Value, BoxError> {
    let url = fresh_db(rt, setup, commit)?;
    let result = run_child(
        me,
        Some(&url),
        &[
            ("mode", "queue".into()),
            ("worker", worker.into()),
            ("notify", "on".into()),
            ("fresh", "yes".into()),
            ("secs", plan.queue_secs.to_string()),
            ("tasks", fresh_tasks(plan).to_string()),
            ("user", setup.queue_template.1.to_string()),
        ],
        setup,
        sql_file,
    );
    drop_fresh_db(rt, setup)?;
    result
}

/// The claim-1/complete-1 loop replayed by pgbench with the crate's own
/// statements (`voidrunner_db::__statement`, the text the crate prepares): 16
/// clients, each claiming one execution as worker `client_id` and
/// completing it, on a queue of [`FRESH_TASKS`] loaded by a child, never
/// analyzed when `fresh`, else analyzed; `synchronous_commit = off`. What
/// the server does per execution without the crate's client.
#[allow(clippy::too_many_arguments)]
fn pgbench_queue_run(
    rt: &tokio::runtime::Runtime,
    pgbench: &Path,
    me: &Path,
    setup: &Setup,
    sql_file: &Path,
    plan: &Plan,
    work: &Path,
    fresh: bool,
) -> Result<Value, BoxError> {
    let url = fresh_db(rt, setup, "async")?;
    let result = (|| {
        let tasks = fresh_tasks(plan);
        run_child(
            me,
            Some(&url),
            &[
                ("mode", "load".into()),
                ("fresh", if fresh { "yes" } else { "no" }.into()),
                ("tasks", tasks.to_string()),
                ("user", setup.queue_template.1.to_string()),
            ],
            setup,
            sql_file,
        )?;
        let substitute = |name: &str, params: &[&str]| -> Result<String, BoxError> {
            let mut sql = voidrunner_db::__statement(&format!("queue.{name}"))
                .ok_or_else(|| format!("the crate has no queue.{name} statement"))?
                // One line, as pgbench reads a command up to its end.
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            for (k, value) in params.iter().enumerate().rev() {
                let placeholder = format!("${}", k + 1);
                if !sql.contains(&placeholder) {
                    return Err(format!("{name}: the crate's SQL has no {placeholder}").into());
                }
                sql = sql.replace(&placeholder, value);
            }
            if sql.contains(&format!("${}", params.len() + 1)) {
                return Err(format!("{name}: the crate's SQL takes more parameters").into());
            }
            Ok(sql)
        };
        let claim = substitute("claim", &[":client_id", "1", "60"])?;
        let complete = substitute(
            "complete",
            &[
                ":c_id",
                ":client_id",
                "'completed'",
                "0",
                "'ok'",
                "''",
                "1",
                "1048576",
            ],
        )?;
        let script = work.join("pgbench-queue.sql");
        std::fs::write(&script, format!("{claim} \\gset c_\n{complete};\n"))?;
        // Fewer transactions than tasks: a claim that finds nothing ends
        // its client with an error.
        let per_client = tasks / 16 * 3 / 4;
        let mut command = Command::new(pgbench);
        command
            .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(setup.port.to_string())
            .arg("-f")
            .arg(&script)
            .args(["-c", "16", "-j", "2", "-t"])
            .arg(per_client.to_string())
            .arg(FRESH_DB);
        let (text, cpu, maxrss) = run_pgbench(command)?;
        let tps = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("tps ="))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("no tps in pgbench's output")?;
        let done = (per_client * 16) as f64;
        Ok(serde_json::json!({
            "done": done,
            "ops_per_s": tps,
            "cpu_us": cpu as f64 / done,
            "maxrss_kb": maxrss,
        }))
    })();
    drop_fresh_db(rt, setup)?;
    result
}

/// Runs this binary as a child with `args` (plus the setup's), returns the
/// child's RESULT.
pub(crate) fn run_child(
    me: &Path,
    url: Option<&str>,
    args: &[(&str, String)],
    setup: &Setup,
    sql_file: &Path,
) -> Result<Value, BoxError> {
    let mut command = Command::new(me);
    child_args(&mut command, url, args, setup, sql_file);
    collect(command)
}

fn child_args(
    command: &mut Command,
    url: Option<&str>,
    args: &[(&str, String)],
    setup: &Setup,
    sql_file: &Path,
) {
    command.arg("child");
    let mut all: Vec<(&str, String)> = vec![
        ("url", url.unwrap_or(&setup.ops_url).to_owned()),
        ("sql", sql_file.display().to_string()),
        ("task", setup.task.to_string()),
        ("user", setup.user.to_string()),
    ];
    for (key, value) in args {
        all.retain(|(k, _)| k != key);
        all.push((key, value.clone()));
    }
    for (key, value) in all {
        command.arg(format!("{key}={value}"));
    }
}

/// The longest a child may take: far more than any measurement needs, so
/// that a hung child (a deadlock, a server gone) fails its measurement
/// instead of stalling the whole run.
const CHILD_LIMIT: Duration = Duration::from_secs(600);

fn collect(mut command: Command) -> Result<Value, BoxError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("killed after {CHILD_LIMIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(format!(
            "exited with {}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
        .into());
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or("no RESULT line")?;
    Ok(serde_json::from_str(line)?)
}

#[allow(clippy::too_many_arguments)]
fn callgrind(
    valgrind: &Path,
    me: &Path,
    variant: &str,
    op: &str,
    plan: &Plan,
    setup: &Setup,
    sql_file: &Path,
    work: &Path,
) -> Result<Value, BoxError> {
    let out_file = work.join(format!("callgrind.{variant}.{op}"));
    let n = plan.instr_n[op];
    let mut command = Command::new(valgrind);
    command
        .arg("--tool=callgrind")
        .arg("--toggle-collect=*child::measured*")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(me);
    child_args(
        &mut command,
        None,
        &[
            ("mode", "instr".into()),
            ("variant", variant.into()),
            ("op", op.into()),
            ("n", n.to_string()),
        ],
        setup,
        sql_file,
    );
    collect(command)?;
    let text = std::fs::read_to_string(&out_file)?;
    let total: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no totals in the callgrind output")?;
    if total == 0.0 {
        return Err("callgrind counted nothing: `measured` not found by --toggle-collect".into());
    }
    Ok(serde_json::json!({ "n": n, "instr": total / n as f64 }))
}

/// pgbench's arguments for `op`: the crate's statement with each `$n`
/// replaced by a pgbench variable (`-D`) or, where pgbench cannot make the
/// value, by SQL that does (a fresh uuid, a NULL).
fn pgbench_script(
    setup: &Setup,
    op: &str,
    work: &Path,
) -> Result<(PathBuf, Vec<String>), BoxError> {
    let sql = setup
        .sql
        .get(op)
        .ok_or_else(|| format!("no captured SQL for {op}"))?;
    let task = ops::new_task(setup.user, 1);
    let params: Vec<(&str, Option<String>)> = match op {
        "get" => vec![("", Some(setup.task.to_string()))],
        "list" => vec![("", Some((ops::LIST_LIMIT + 1).to_string()))],
        "create" => vec![
            ("gen_random_uuid()", None),
            ("", Some(task.user_id.to_string())),
            ("", Some(task.name.clone())),
            ("NULL", None),
            ("", Some(task.script_content.clone())),
            ("", Some(task.script_type.as_str().to_owned())),
            ("", Some(task.priority.to_string())),
            ("", Some(task.timeout_seconds.to_string())),
            ("", Some(task.metadata.to_string())),
        ],
        _ => return Err(format!("no pgbench script for {op}").into()),
    };
    let mut script = sql.clone();
    let mut defines = Vec::new();
    for (k, (literal, value)) in params.iter().enumerate().rev() {
        let placeholder = format!("${}", k + 1);
        if !script.contains(&placeholder) {
            return Err(format!("{op}: the crate's SQL has no {placeholder}: {sql}").into());
        }
        let replacement = match value {
            Some(value) => {
                defines.push("-D".to_owned());
                defines.push(format!("p{}={value}", k + 1));
                format!(":p{}", k + 1)
            }
            None => (*literal).to_owned(),
        };
        script = script.replace(&placeholder, &replacement);
    }
    if script.contains(&format!("${}", params.len() + 1)) {
        return Err(
            format!("{op}: the crate's SQL takes more parameters than expected: {sql}").into(),
        );
    }
    let path = work.join(format!("pgbench-{op}.sql"));
    std::fs::write(&path, format!("{script};\n"))?;
    Ok((path, defines))
}

fn pgbench_command(pgbench: &Path, setup: &Setup, script: &Path, defines: &[String]) -> Command {
    let mut command = Command::new(pgbench);
    command
        .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", "postgres"])
        .arg("-p")
        .arg(setup.port.to_string())
        .arg("-f")
        .arg(script)
        .args(defines)
        .arg(&setup.ops_db);
    command
}

/// Runs pgbench, and its CPU time and peak RSS from wait4.
fn run_pgbench(mut command: Command) -> Result<(String, u64, u64), BoxError> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    // pgbench's peak RSS, polled from /proc while it runs (see
    // child::max_rss_kb for why not wait4's ru_maxrss); its memory is
    // allocated at start, so the last reading is its peak.
    let peak = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kb) = crate::child::vm_hwm_kb(pid as u32) {
            peak = peak.max(kb);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let mut stdout = child.stdout.expect("stdout");
    let mut stderr = child.stderr.expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text)?;
    let err_text = err_reader.join().unwrap_or_default();
    let maxrss = peak.join().unwrap_or(0);
    // SAFETY: wait4 on our own child's pid, writing into structs we own.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::wait4(pid, &mut status, 0, &mut usage) < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        (status, usage)
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("pgbench failed: {}", err_text.trim()).into());
    }
    let cpu = tv_us(usage.ru_utime) + tv_us(usage.ru_stime);
    Ok((text, cpu, maxrss))
}

fn pgbench_latency(
    pgbench: &Path,
    setup: &Setup,
    op: &str,
    plan: &Plan,
    work: &Path,
) -> Result<Value, BoxError> {
    let (script, defines) = pgbench_script(setup, op, work)?;
    let n = plan.lat_n[op];
    let prefix = work.join(format!("pgbench-log-{op}"));
    let mut command = pgbench_command(pgbench, setup, &script, &defines);
    command
        .args(["-c", "1", "-j", "1", "-t"])
        .arg(n.to_string())
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()));
    let (_, cpu, maxrss) = run_pgbench(command)?;
    let mut times: Vec<f64> = Vec::with_capacity(n);
    for entry in std::fs::read_dir(work)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with(&format!("pgbench-log-{op}.")))
        {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                    times.push(us);
                }
            }
            std::fs::remove_file(&path)?;
        }
    }
    if times.is_empty() {
        return Err("pgbench wrote no transaction log".into());
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    Ok(serde_json::json!({
        "n": times.len(),
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "cpu_us": cpu as f64 / times.len() as f64,
        "maxrss_kb": maxrss,
    }))
}

fn pgbench_throughput(
    pgbench: &Path,
    setup: &Setup,
    op: &str,
    plan: &Plan,
    work: &Path,
) -> Result<Value, BoxError> {
    let (script, defines) = pgbench_script(setup, op, work)?;
    let mut command = pgbench_command(pgbench, setup, &script, &defines);
    command
        .args(["-c", "16", "-j", "2", "-T"])
        .arg(plan.tput_secs.to_string());
    let (text, cpu, maxrss) = run_pgbench(command)?;
    let number = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let tps = number("tps =").ok_or("no tps in pgbench's output")?;
    let ops = number("number of transactions actually processed:").unwrap_or(0.0);
    Ok(serde_json::json!({
        "ops": ops,
        "ops_per_s": tps,
        "cpu_us": cpu as f64 / ops.max(1.0),
        "maxrss_kb": maxrss,
    }))
}

async fn start_cluster() -> Result<PrivateCluster, BoxError> {
    let cluster = PrivateCluster::start_with(|data| {
        use std::io::Write as _;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        writeln!(conf, "shared_preload_libraries = 'pg_stat_statements'")?;
        writeln!(conf, "max_connections = 200")?;
        Ok(())
    })
    .await?;
    // The harness starts its clusters with fsync and synchronous_commit
    // off; the durable queue figures need real commits, so the server is
    // restarted with the defaults (fsync on) and each database chooses its
    // synchronous_commit.
    cluster.stop_server().await?;
    let bindir = server_bindir().ok_or("no PostgreSQL server binaries (pg_ctl) found")?;
    let options = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1",
        cluster.port(),
        cluster.root_dir().display()
    );
    let pg_ctl = bindir.join("pg_ctl");
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl);
        c
    } else {
        Command::new(pg_ctl)
    };
    command
        .arg("-D")
        .arg(cluster.data_dir())
        .arg("-l")
        .arg(cluster.root_dir().join("server.log"))
        .args(["-w", "-t", "60", "-o", &options, "start"])
        .stdin(Stdio::null());
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "restarting the private cluster: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(cluster)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn server_bindir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_string_lossy().parse().ok()?;
                Some((major, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, p)| p));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("pg_ctl").is_file())
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(server_bindir())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(crate) fn url_of(cluster: &PrivateCluster, db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{}/{db}", cluster.port())
}

pub(crate) async fn admin(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn connect(url: &str, pool: usize) -> Result<Database, BoxError> {
    let mut config = DbConfig::from_url(url)?;
    config.max_connections = pool;
    config.min_connections = 1;
    config.pooler = PoolerMode::Direct;
    Ok(Database::connect(config).await?)
}

async fn setup(cluster: &PrivateCluster, plan: &Plan) -> Result<Setup, BoxError> {
    let maintenance = admin(&cluster.url()).await?;
    maintenance
        .batch_execute("CREATE DATABASE compare_q_template")
        .await?;
    // The queue's template: migrated, one user, pg_stat_statements (for
    // buffers per claim), and autovacuum off on the queue's tables, so that
    // a fresh clone stays never analyzed while it runs and no run is
    // measured with autovacuum at work in it.
    let template_url = url_of(cluster, "compare_q_template");
    let db = connect(&template_url, 2).await?;
    db.migrate().await?;
    let queue_user = PgUserRepository::new(db.clone())
        .create(NewUser::new("queue@example.com", PasswordHash::new("h")))
        .await?
        .id;
    db.close(Duration::from_secs(5)).await;
    admin(&template_url)
        .await?
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements; \
             ALTER TABLE tasks SET (autovacuum_enabled = off); \
             ALTER TABLE task_executions SET (autovacuum_enabled = off);",
        )
        .await?;
    for statement in [
        "CREATE DATABASE compare",
        "CREATE DATABASE compare_q_durable TEMPLATE compare_q_template",
        "CREATE DATABASE compare_q_async TEMPLATE compare_q_template",
        "ALTER DATABASE compare SET synchronous_commit = off",
        "ALTER DATABASE compare_q_durable SET synchronous_commit = on",
        "ALTER DATABASE compare_q_async SET synchronous_commit = off",
    ] {
        maintenance.batch_execute(statement).await?;
    }
    let queue_dbs =
        ["compare_q_durable", "compare_q_async"].map(|name| (url_of(cluster, name), queue_user));
    let ops_url = url_of(cluster, "compare");
    let db = connect(&ops_url, 2).await?;
    db.migrate().await?;
    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new("bench@example.com", PasswordHash::new("h")))
        .await?
        .id;
    let tasks = PgTaskRepository::new(db.clone());
    let mut first = None;
    for chunk in 0..plan.seed_tasks.div_ceil(1000) {
        let batch: Vec<NewTask> = (0..1000)
            .map(|i| {
                let mut t = ops::new_task(user, chunk * 1000 + i);
                t.name = format!("seed {}", chunk * 1000 + i);
                t
            })
            .collect();
        let created = tasks.create_many(batch).await?;
        first = first.or(created.first().map(|t| t.id));
    }
    db.close(Duration::from_secs(5)).await;
    let client = admin(&ops_url).await?;
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await?;
    client.batch_execute("VACUUM ANALYZE tasks").await?;
    let task = first.ok_or("nothing seeded")?;
    let sql = capture(&ops_url, &client, task, user).await?;
    let [durable, asynchronous] = queue_dbs;
    Ok(Setup {
        ops_url,
        ops_db: "compare".to_owned(),
        port: cluster.port(),
        task,
        user,
        durable,
        asynchronous,
        queue_template: (template_url, queue_user),
        cluster_url: cluster.url(),
        sql,
    })
}

/// The statement each operation sends, read from pg_stat_statements after
/// the crate ran it once on a fresh connection. Each operation must be one
/// statement: the peers run exactly that one. pg_stat_statements replaces
/// constants in the text it keeps, so where the crate left the statement
/// prepared on its connection, the exact text comes from
/// pg_prepared_statements (and must be the one pg_stat_statements counted).
async fn capture(
    url: &str,
    admin: &tokio_postgres::Client,
    task: TaskId,
    user: UserId,
) -> Result<SqlMap, BoxError> {
    let db = connect(url, 1).await?;
    db.health_check().await?;
    let repo = PgTaskRepository::new(db.clone());
    let prepared = |db: Database| async move {
        let client = db.client().await?;
        let rows = client
            .simple_query("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
            .await?;
        Ok::<Vec<String>, BoxError>(
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect(),
        )
    };
    let mut sql = SqlMap::new();
    for op in OPS {
        let before = prepared(db.clone()).await?;
        admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await?;
        match op {
            "get" => drop(repo.get(task).await?),
            "list" => drop(repo.list(voidrunner_db::PageRequest::first(50)).await?),
            "create" => drop(repo.create(ops::new_task(user, 0)).await?),
            "create_many" => drop(
                repo.create_many((0..3).map(|i| ops::new_task(user, i)).collect())
                    .await?,
            ),
            "import" => drop(
                repo.import((0..3).map(|i| ops::new_task(user, i)).collect())
                    .await?,
            ),
            _ => unreachable!(),
        }
        let seen: Vec<(String, i64)> = admin
            .query(
                "SELECT query, calls FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND query NOT LIKE '%pg_stat_statements%' \
                   AND query NOT LIKE '%pg_prepared_statements%'",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let after = prepared(db.clone()).await?;
        let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
        let [(text, calls)] = seen.as_slice() else {
            return Err(format!(
                "the crate's {op} ran {} statements, this comparison expects one: {seen:?}",
                seen.len()
            )
            .into());
        };
        if *calls != 1 {
            return Err(format!("the crate's {op} ran its statement {calls} times").into());
        }
        let exact = match new.as_slice() {
            [] => text.clone(),
            [prepared] if normalized_match(text, prepared) => (*prepared).clone(),
            other => {
                return Err(format!(
                    "the crate's {op}: pg_stat_statements saw {text:?}, the connection prepared {other:?}"
                )
                .into());
            }
        };
        sql.insert(op.to_owned(), exact);
    }
    db.close(Duration::from_secs(5)).await;
    Ok(sql)
}

/// Whether `normalized` (pg_stat_statements' text, constants replaced by
/// `$n`) is `exact` with some constants replaced.
fn normalized_match(normalized: &str, exact: &str) -> bool {
    if normalized == exact {
        return true;
    }
    // Compare the words outside `$n` placeholders: a cheap check that they
    // are the same statement.
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty() && w.parse::<u64>().is_err())
            .map(str::to_lowercase)
            .collect()
    };
    let (a, b) = (words(normalized), words(exact));
    let b: BTreeMap<&String, usize> = b.iter().fold(BTreeMap::new(), |mut m, w| {
        *m.entry(w).or_default() += 1;
        m
    });
    a.iter().all(|w| b.contains_key(w))
}

/// Removes what the write operations added, so every round (and the
/// callgrind pass) sees the seeded table.
pub(crate) async fn clean(url: &str) -> Result<(), BoxError> {
    let client = admin(url).await?;
    client
        .batch_execute(&format!(
            "DELETE FROM tasks WHERE name LIKE '{}%'",
            ops::WRITE_PREFIX
        ))
        .await?;
    client.batch_execute("VACUUM ANALYZE tasks").await?;
    Ok(())
}
