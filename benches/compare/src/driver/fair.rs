//! Issue #22: the fair claim and the concurrency caps (`--fair-only`, and
//! the last rounds of a full run), on a database of their own in the
//! private cluster (`synchronous_commit = off`: the server's CPU per claim
//! shows, where durable commits would hide it behind WAL flushes), with
//! 1,000 users. Every run is the queue child (`mode=queue`), as the queue
//! rounds run it:
//!
//! - throughput, executions claimed and completed per second by 16
//!   workers, batched (claim 10, completions through the shared
//!   `Completer`) and single (claim 1, complete 1), on the same number of
//!   queued executions spread evenly over 1,000 active users or all of one
//!   user's, claiming FIFO (`PgExecutionQueue::new`), fair
//!   (`ClaimOrder::Fair`), capped (fair under a default cap too high to
//!   bind: what the cap's lock and count cost) and, informational, fair
//!   under a default cap of 4 (which binds);
//! - the noisy neighbour: user A's backlog queued, 8 batched workers at work
//!   on it, then users B–E enqueue 10 tasks each; the run ends when theirs
//!   are completed, and their waits to be claimed (`started_at -
//!   created_at`) are the figures, FIFO against fair.
//!
//! Each round runs every (users, worker) cell's claim orders back to back,
//! in another order each round, the cells themselves rotated too; ratios
//! are taken within a round, then their median.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{NewUser, PasswordHash, PgUserRepository, UserRepository};

use super::{Plan, admin, collect, command_line, connect, cpu_model, url_of};
use crate::ops::BoxError;

const DB: &str = "compare_fair";
/// Users in the database; the runs with one active user queue the first's.
const USERS: usize = 1000;
const USER_COUNTS: [usize; 2] = [USERS, 1];
const WORKERS: [&str; 2] = ["batched", "single"];
/// A default cap no user comes near: the cap's row lock and count of
/// running rows on every visit, never a refusal.
const LOOSE_CAP: u32 = 1_000_000;
/// A default cap that binds (informational).
const TIGHT_CAP: u32 = 4;
/// (label, claim order, default cap).
const ORDERS: [(&str, &str, Option<u32>); 4] = [
    ("fifo", "fifo", None),
    ("fair", "fair", None),
    ("capped", "fair", Some(LOOSE_CAP)),
    ("cap4", "fair", Some(TIGHT_CAP)),
];
/// The target: fair (and capped) ≥ 0.8× FIFO.
const TARGET: f64 = 0.8;
/// Users B–E, and what each submits.
const NEIGHBOURS: usize = 4;
const NEIGHBOUR_TASKS: usize = 10;
const NOISY_WORKERS: usize = 8;

/// What the runs do; `--quick` shrinks it.
struct Sizes {
    /// Queued executions of a throughput run.
    tasks: usize,
    /// Longest throughput run, s.
    secs: f64,
    /// User A's backlog in the noisy-neighbour runs.
    backlog: usize,
    /// Executions done before B–E submit.
    warm: usize,
    /// Longest noisy-neighbour run, s: long enough for FIFO to drain A's
    /// backlog ahead of B–E's tasks.
    noisy_secs: f64,
}

impl Sizes {
    fn new(plan: &Plan) -> Self {
        if plan.quick {
            Sizes {
                tasks: 5_000,
                secs: 2.0,
                backlog: 10_000,
                warm: 500,
                noisy_secs: 60.0,
            }
        } else {
            Sizes {
                tasks: 20_000,
                secs: 4.0,
                backlog: 100_000,
                warm: 2_000,
                noisy_secs: 180.0,
            }
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// `n` with thousands separated by commas, as the report writes counts.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the rounds and returns their section.
pub(crate) fn rounds(
    rt: &tokio::runtime::Runtime,
    cluster: &PrivateCluster,
    plan: &Plan,
    me: &Path,
) -> Result<String, BoxError> {
    let url = url_of(cluster, DB);
    // For experiments (another `voidrunner_claim_fair`, an index): run in
    // the database after the migrations, and said so in the section.
    let experiment = std::env::var("VR_FAIR_SQL").ok();
    let server_version = rt.block_on(async {
        let maintenance = admin(&cluster.url()).await?;
        for statement in [
            format!("DROP DATABASE IF EXISTS {DB}"),
            format!("CREATE DATABASE {DB}"),
            format!("ALTER DATABASE {DB} SET synchronous_commit = off"),
        ] {
            maintenance.batch_execute(&statement).await?;
        }
        let db = connect(&url, 2).await?;
        db.migrate().await?;
        let users = PgUserRepository::new(db.clone());
        for i in 0..USERS {
            users
                .create(NewUser::new(
                    format!("fair{i}@example.com"),
                    PasswordHash::new("h"),
                ))
                .await?;
        }
        db.close(Duration::from_secs(5)).await;
        let sql = admin(&url).await?;
        // As the queue template: the statements' buffers and times, and no
        // autovacuum at work during a run (each run empties, loads and
        // analyzes the tables).
        sql.batch_execute(
            "CREATE EXTENSION pg_stat_statements; \
             ALTER TABLE tasks SET (autovacuum_enabled = off); \
             ALTER TABLE task_executions SET (autovacuum_enabled = off);",
        )
        .await?;
        sql.batch_execute("VACUUM ANALYZE users").await?;
        if let Some(extra) = &experiment {
            sql.batch_execute(extra).await?;
        }
        let row = sql.query_one("SHOW server_version", &[]).await?;
        Ok::<String, BoxError>(row.get(0))
    })?;
    let sizes = Sizes::new(plan);
    let load_before = load_average();
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let child = |args: &[(&str, String)]| -> Result<Value, BoxError> {
        let mut command = Command::new(me);
        command.arg("child");
        let mut all: Vec<(&str, String)> = vec![
            ("url", url.clone()),
            ("mode", "queue".into()),
            ("notify", "on".into()),
        ];
        all.extend(args.iter().cloned());
        for (key, value) in all {
            command.arg(format!("{key}={value}"));
        }
        collect(command)
    };
    let throughput_run =
        |users: usize, worker: &str, order: &str, cap: Option<u32>, tasks, secs| {
            child(&[
                ("worker", worker.into()),
                ("order", order.into()),
                ("cap", cap.map_or("none".into(), |c| c.to_string())),
                ("users", users.to_string()),
                ("tasks", format!("{tasks}")),
                ("secs", format!("{secs}")),
            ])
        };
    // A first queue run in a new database is slower (cold caches, relations
    // growing): one untimed run, so the first cell compares like with like.
    eprintln!("fair: warm-up run…");
    throughput_run(USERS, "batched", "fifo", None, 5_000, 1.0)?;

    // [(users, worker, label)] → one value per round.
    let mut runs: HashMap<(usize, &str, &str), Vec<Value>> = HashMap::new();
    // [order] → one value per round.
    let mut noisy: HashMap<&str, Vec<Value>> = HashMap::new();
    let cells: Vec<(usize, &str)> = USER_COUNTS
        .iter()
        .flat_map(|&u| WORKERS.iter().map(move |&w| (u, w)))
        .collect();
    for round in 0..plan.fair_rounds {
        eprintln!("fair: round {}/{}", round + 1, plan.fair_rounds);
        let mut cells = cells.clone();
        let n = cells.len();
        cells.rotate_left(round % n);
        for (users, worker) in cells {
            let mut orders = ORDERS;
            orders.rotate_left(round % ORDERS.len());
            for (label, order, cap) in orders {
                let value = throughput_run(users, worker, order, cap, sizes.tasks, sizes.secs)
                    .map_err(|e| format!("fair {users} users {worker} {label}: {e}"))?;
                eprintln!(
                    "  {users} users, {worker}, {label}: {:.0}/s, claims {:.1} µs/execution on the server, {} empty claims{}",
                    value["ops_per_s"].as_f64().unwrap_or(0.0),
                    value["server_claim_us"].as_f64().unwrap_or(0.0),
                    value["empty_claims"],
                    if value["drained"].as_bool() == Some(true) {
                        " (drained)"
                    } else {
                        ""
                    }
                );
                runs.entry((users, worker, label)).or_default().push(value);
            }
        }
        let mut orders = ["fifo", "fair"];
        if round % 2 == 1 {
            orders.reverse();
        }
        for order in orders {
            let value = child(&[
                ("worker", "batched".into()),
                ("order", order.into()),
                ("cap", "none".into()),
                ("users", (NEIGHBOURS + 1).to_string()),
                ("workers", NOISY_WORKERS.to_string()),
                ("tasks", sizes.backlog.to_string()),
                ("neighbours", NEIGHBOUR_TASKS.to_string()),
                ("warm", sizes.warm.to_string()),
                ("secs", sizes.noisy_secs.to_string()),
            ])
            .map_err(|e| format!("fair noisy neighbour {order}: {e}"))?;
            let waits = waits(&value);
            eprintln!(
                "  noisy neighbour, {order}: {}/{} claimed, wait p50 {:.1} ms, p99 {:.1} ms, {:.1} s",
                waits.len(),
                NEIGHBOURS * NEIGHBOUR_TASKS,
                percentile(&waits, 0.5),
                percentile(&waits, 0.99),
                value["secs"].as_f64().unwrap_or(0.0)
            );
            noisy.entry(order).or_default().push(value);
        }
    }
    // Leaves the database small for whoever looks at it afterwards.
    rt.block_on(async {
        admin(&url)
            .await?
            .batch_execute("TRUNCATE task_executions, tasks")
            .await?;
        Ok::<(), BoxError>(())
    })?;
    let machine = format!(
        "{date}, commit {}, {} ({} CPUs), PostgreSQL {server_version}; load average (1 min) {load_before} before the rounds, {} after.",
        command_line("git", &["rev-parse", "--short", "HEAD"]),
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
    );
    let mut md = section(plan, &sizes, &machine, &runs, &noisy);
    if experiment.is_some() {
        md = md.replacen(
            "\n\nMachine:",
            "\n\n**With `VR_FAIR_SQL` run after the migrations (an experiment).**\n\nMachine:",
            1,
        );
    }
    Ok(md)
}

fn waits(value: &Value) -> Vec<f64> {
    value["neighbour_waits_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn section(
    plan: &Plan,
    sizes: &Sizes,
    machine: &str,
    runs: &HashMap<(usize, &str, &str), Vec<Value>>,
    noisy: &HashMap<&str, Vec<Value>>,
) -> String {
    use std::fmt::Write as _;
    let mut md = format!("{HEADING}\n\n");
    let _ = writeln!(md, "Machine: {machine}\n");
    let _ = writeln!(
        md,
        "Method: `--fair-only`{}, {} interleaved rounds; a database of its own in the \
         private cluster, `synchronous_commit = off` (the server's CPU per claim shows; \
         durable commits would hide it behind WAL flushes), 1,000 users. Throughput: \
         the queue child of the queue rounds, 16 workers on a two-thread runtime, \
         {} executions queued (spread evenly over the active users; the tables \
         emptied, loaded and analyzed before each run), claimed and completed until \
         drained or {} s; batched = claim 10, completions through the shared \
         `Completer`; single = claim 1, complete 1. FIFO = `PgExecutionQueue::new(db)`; \
         fair = `.with_claim_order(ClaimOrder::Fair)`; capped = fair with a default cap \
         of {} (never reached: the cost of the cap's row lock and count of \
         running rows); cap {TIGHT_CAP} = fair with a default cap of {TIGHT_CAP}, which \
         binds (informational). Each (users, worker) cell runs its claim orders back \
         to back, in another order each round; ratios are taken within a round, \
         medians of rounds shown (throughputs too).\n",
        if plan.quick {
            " `--quick` (smoke test, not figures to quote)"
        } else {
            ""
        },
        plan.fair_rounds,
        thousands(sizes.tasks),
        sizes.secs,
        thousands(LOOSE_CAP as usize),
    );
    md.push_str(
        "| active users | worker | FIFO /s | fair /s | fair ÷ FIFO | capped /s | capped ÷ FIFO | cap 4 /s (binds) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let get = |users, worker, label, field: &str| -> Vec<f64> {
        runs.get(&(users, worker, label))
            .map(|v| {
                v.iter()
                    .map(|r| r[field].as_f64().unwrap_or(f64::NAN))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ratio = |users, worker, label| -> f64 {
        let (a, b) = (
            get(users, worker, label, "ops_per_s"),
            get(users, worker, "fifo", "ops_per_s"),
        );
        median(a.iter().zip(&b).map(|(a, b)| a / b).collect())
    };
    let verdict = |r: f64| if r >= TARGET { "PASS" } else { "MISS" };
    let (mut misses, mut capped_below) = (0, 0);
    for &users in &USER_COUNTS {
        for &worker in &WORKERS {
            let tput = |label| median(get(users, worker, label, "ops_per_s"));
            let (fair, capped) = (ratio(users, worker, "fair"), ratio(users, worker, "capped"));
            misses += usize::from(fair < TARGET);
            capped_below += usize::from(capped < TARGET);
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {fair:.2}× {} | {:.0} | {capped:.2}× {} | {:.0} |",
                if users == 1 { "1" } else { "1,000" },
                if worker == "batched" {
                    "batched (claim 10)"
                } else {
                    "single (claim 1)"
                },
                tput("fifo"),
                tput("fair"),
                verdict(fair),
                tput("capped"),
                verdict(capped),
                tput("cap4"),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nTarget (issue #22: fair ≥ {TARGET}× FIFO): {}. Capped, measured against the \
         same mark for information: below it in {capped_below} of 4 cells.\n",
        if misses == 0 {
            "met in all 4 cells".to_owned()
        } else {
            format!("missed in {misses} of 4 cells")
        }
    );
    md.push_str(
        "Server time in the claim statements per execution, µs (pg_stat_statements, \
         `total_exec_time` of the claims ÷ executions done), shared buffers per claim, and \
         claims that found nothing while work was left (the worker looks again 2 ms later, \
         as examples/worker.rs does) per 1,000 executions, medians of rounds:\n\n\
         | active users | worker | FIFO | fair | capped | cap 4 | buffers per claim, FIFO / fair / capped | empty claims, FIFO / fair / capped / cap 4 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for &users in &USER_COUNTS {
        for &worker in &WORKERS {
            let us = |label| median(get(users, worker, label, "server_claim_us"));
            let buffers = |label| median(get(users, worker, label, "buffers_per_claim"));
            let empty = |label| {
                let runs = runs.get(&(users, worker, label)).map(Vec::as_slice);
                median(
                    runs.unwrap_or_default()
                        .iter()
                        .map(|r| {
                            r["empty_claims"].as_f64().unwrap_or(f64::NAN) * 1e3
                                / r["done"].as_f64().unwrap_or(f64::NAN).max(1.0)
                        })
                        .collect(),
                )
            };
            let _ = writeln!(
                md,
                "| {} | {worker} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} / {:.0} |",
                if users == 1 { "1" } else { "1,000" },
                us("fifo"),
                us("fair"),
                us("capped"),
                us("cap4"),
                buffers("fifo"),
                buffers("fair"),
                buffers("capped"),
                empty("fifo"),
                empty("fair"),
                empty("capped"),
                empty("cap4"),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nNoisy neighbour: user A has {} pending executions; {NOISY_WORKERS} workers \
         (batched: claim 10, completions through the `Completer`) work on them, and once \
         {} are done users B–E enqueue {NEIGHBOUR_TASKS} each; the run ends when B–E's \
         {} are completed (at most {} s). Wait to be claimed = `started_at - created_at` \
         of each of B–E's executions, in the database; percentiles over the {} rounds' \
         executions together.\n",
        thousands(sizes.backlog),
        thousands(sizes.warm),
        NEIGHBOURS * NEIGHBOUR_TASKS,
        sizes.noisy_secs,
        plan.fair_rounds,
    );
    md.push_str(
        "| claim order | B–E claimed | wait p50, ms | wait p99, ms | max, ms | run, s (median) |\n\
         |---|---|---|---|---|---|\n",
    );
    for order in ["fifo", "fair"] {
        let values = noisy.get(order).map(Vec::as_slice).unwrap_or_default();
        let mut all: Vec<f64> = values.iter().flat_map(waits).collect();
        all.sort_by(f64::total_cmp);
        let _ = writeln!(
            md,
            "| {} | {}/{} | {:.1} | {:.1} | {:.1} | {:.1} |",
            if order == "fifo" { "FIFO" } else { "fair" },
            all.len(),
            NEIGHBOURS * NEIGHBOUR_TASKS * values.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or(f64::NAN),
            median(
                values
                    .iter()
                    .map(|v| v["secs"].as_f64().unwrap_or(f64::NAN))
                    .collect()
            ),
        );
    }
    md.push('\n');
    md
}

/// The section's heading: `--fair-only --out DIR` replaces the section
/// under it in `DIR/BENCHMARKS.md`.
pub(crate) const HEADING: &str = "## Fair claims and concurrency caps (issue #22)";

/// Writes `section` into the report at `path`: in place of the one there
/// (from its heading to the next `## ` heading), else at the end; a new
/// file holds the section alone.
pub(crate) fn write_section(path: &Path, section: &str) -> Result<(), BoxError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    std::fs::write(path, replace_section(&text, section))?;
    Ok(())
}

fn replace_section(text: &str, section: &str) -> String {
    let start = if text.starts_with(HEADING) {
        Some(0)
    } else {
        text.find(&format!("\n{HEADING}\n")).map(|i| i + 1)
    };
    match start {
        Some(start) => {
            let after = start + HEADING.len();
            let end = text[after..]
                .find("\n## ")
                .map_or(text.len(), |i| after + i + 1);
            format!("{}{section}{}", &text[..start], &text[end..])
        }
        None if text.is_empty() => section.to_owned(),
        None => format!(
            "{}\n{section}",
            text.trim_end_matches('\n').to_owned() + "\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_replaces_its_predecessor_and_nothing_else() {
        let new = format!("{HEADING}\n\nnew\n\n");
        let doc = format!("# T\n\n## A\n\na\n\n{HEADING}\n\nold\n\n## B\n\nb\n");
        assert_eq!(
            replace_section(&doc, &new),
            format!("# T\n\n## A\n\na\n\n{HEADING}\n\nnew\n\n## B\n\nb\n")
        );
        let last = format!("# T\n\n{HEADING}\n\nold\n");
        assert_eq!(replace_section(&last, &new), format!("# T\n\n{new}"));
        assert_eq!(
            replace_section("# T\n\n## A\n\na\n", &new),
            format!("# T\n\n## A\n\na\n\n{new}")
        );
        assert_eq!(replace_section("", &new), new);
    }

    #[test]
    fn counts_are_written_with_thousands_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(20_000), "20,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
