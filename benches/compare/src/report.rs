//! BENCHMARKS.md and ratios.svg from one run's records: every ratio is
//! taken within a round (both sides measured minutes apart under the same
//! conditions), then summarised as the median and the min–max over rounds.

use std::fmt::Write as _;

use serde_json::Value;

use crate::ops::{OPS, SqlMap};

pub struct Record {
    pub round: usize,
    pub kind: String,
    pub variant: String,
    pub op: String,
    pub value: Value,
}

pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub server_version: String,
    pub date: String,
    pub commit: String,
    pub valgrind: &'static str,
    pub pgbench: bool,
}

/// (kind, field, label, higher is better)
const METRICS: [(&str, &str, &str, bool); 9] = [
    ("instr", "instr", "client instructions / call", false),
    ("lat", "cpu_us", "client CPU / call, c=1", false),
    ("lat", "bytes", "bytes allocated / call", false),
    ("lat", "allocs", "allocations / call", false),
    ("lat", "p50_us", "latency p50, c=1", false),
    ("lat", "p99_us", "latency p99, c=1", false),
    ("tput", "ops_per_s", "throughput, c=16", true),
    ("tput", "cpu_us", "client CPU / call, c=16", false),
    ("lat", "maxrss_kb", "peak RSS, c=1 process", false),
];

fn value(
    records: &[Record],
    round: usize,
    kind: &str,
    variant: &str,
    op: &str,
    field: &str,
) -> Option<f64> {
    records
        .iter()
        .find(|r| r.round == round && r.kind == kind && r.variant == variant && r.op == op)
        .and_then(|r| r.value[field].as_f64())
}

fn rounds(records: &[Record]) -> usize {
    records.iter().map(|r| r.round + 1).max().unwrap_or(0)
}

/// Median, min, max.
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

fn summary(mut values: Vec<f64>) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: values[0],
        max: values[n - 1],
        n,
    })
}

/// `a ÷ b` per round, summarised.
fn ratio(
    records: &[Record],
    kind: &str,
    field: &str,
    a: (&str, &str),
    b: (&str, &str),
) -> Option<Summary> {
    summary(
        (0..rounds(records))
            .filter_map(|round| {
                let x = value(records, round, kind, a.0, a.1, field)?;
                let y = value(records, round, kind, b.0, b.1, field)?;
                (y > 0.0).then_some(x / y)
            })
            .collect(),
    )
}

fn absolute(
    records: &[Record],
    kind: &str,
    variant: &str,
    op: &str,
    field: &str,
) -> Option<Summary> {
    summary(
        (0..rounds(records))
            .filter_map(|round| value(records, round, kind, variant, op, field))
            .collect(),
    )
}

fn cell(s: Option<&Summary>) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s.n == 1 => format!("{:.2}", s.median),
        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
    }
}

fn human(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn unit(field: &str) -> &'static str {
    match field {
        "cpu_us" | "p50_us" | "p99_us" => " µs",
        "bytes" => " B",
        "ops_per_s" => "/s",
        "maxrss_kb" => " KiB",
        _ => "",
    }
}

struct Target {
    what: &'static str,
    kind: &'static str,
    field: &'static str,
    a: (&'static str, &'static str),
    b: (&'static str, &'static str),
    /// Met when the ratio is at most this (or at least, when `at_least`).
    bound: f64,
    at_least: bool,
}

const TARGETS: [Target; 15] = [
    Target {
        what: "scoped get: throughput (c=16) within 1.10× the unscoped get's (unscoped ÷ scoped)",
        kind: "tput",
        field: "ops_per_s",
        a: ("crate", "get"),
        b: ("scoped", "get"),
        bound: 1.10,
        at_least: false,
    },
    Target {
        what: "scoped list (50 rows): throughput (c=16) within 1.10× the unscoped list's",
        kind: "tput",
        field: "ops_per_s",
        a: ("crate", "list"),
        b: ("scoped", "list"),
        bound: 1.10,
        at_least: false,
    },
    Target {
        what: "get: client instructions ≤ 1.10× raw",
        kind: "instr",
        field: "instr",
        a: ("crate", "get"),
        b: ("raw", "get"),
        bound: 1.10,
        at_least: false,
    },
    Target {
        what: "create: client instructions ≤ 1.10× raw",
        kind: "instr",
        field: "instr",
        a: ("crate", "create"),
        b: ("raw", "create"),
        bound: 1.10,
        at_least: false,
    },
    Target {
        what: "list (50 rows): client instructions ≤ 1.10× raw",
        kind: "instr",
        field: "instr",
        a: ("crate", "list"),
        b: ("raw", "list"),
        bound: 1.10,
        at_least: false,
    },
    Target {
        what: "create_many (1,000): client instructions ≤ 1.5× raw",
        kind: "instr",
        field: "instr",
        a: ("crate", "create_many"),
        b: ("raw", "create_many"),
        bound: 1.5,
        at_least: false,
    },
    Target {
        what: "import (10,000): client instructions ≤ 1.5× raw",
        kind: "instr",
        field: "instr",
        a: ("crate", "import"),
        b: ("raw", "import"),
        bound: 1.5,
        at_least: false,
    },
    Target {
        what: "get: bytes allocated ≤ 2× raw",
        kind: "lat",
        field: "bytes",
        a: ("crate", "get"),
        b: ("raw", "get"),
        bound: 2.0,
        at_least: false,
    },
    Target {
        what: "queue, durable: batched worker ≥ 5× claim-1/complete-1 (cycles/s)",
        kind: "queue",
        field: "ops_per_s",
        a: ("crate", "durable_batched"),
        b: ("crate", "durable_single"),
        bound: 5.0,
        at_least: true,
    },
    Target {
        what: "queue, synchronous_commit=off: batched worker ≥ 5× claim-1/complete-1",
        kind: "queue",
        field: "ops_per_s",
        a: ("crate", "async_batched"),
        b: ("crate", "async_single"),
        bound: 5.0,
        at_least: true,
    },
    Target {
        what: "fresh queue (never analyzed), durable: batched worker ≥ 5× claim-1/complete-1",
        kind: "queue",
        field: "ops_per_s",
        a: ("crate", "fresh_durable_batched"),
        b: ("crate", "fresh_durable_single"),
        bound: 5.0,
        at_least: true,
    },
    Target {
        what: "fresh queue (never analyzed), synchronous_commit=off: batched worker ≥ 5× claim-1/complete-1",
        kind: "queue",
        field: "ops_per_s",
        a: ("crate", "fresh_async_batched"),
        b: ("crate", "fresh_async_single"),
        bound: 5.0,
        at_least: true,
    },
    Target {
        what: "claim of 10, p99: fresh queue ≤ 2× analyzed queue (synchronous_commit=off)",
        kind: "queue",
        field: "claim_p99_us",
        a: ("crate", "fresh_async_batched"),
        b: ("crate", "async_batched"),
        bound: 2.0,
        at_least: false,
    },
    Target {
        what: "queue: notify-on ≥ 0.8× notify-off (batched, synchronous_commit=off)",
        kind: "queue",
        field: "ops_per_s",
        a: ("crate", "notify_on"),
        b: ("crate", "notify_off"),
        bound: 0.8,
        at_least: true,
    },
    Target {
        what: "client CPU of get, c=1 (no target; the instruction target's wall-clock cousin)",
        kind: "lat",
        field: "cpu_us",
        a: ("crate", "get"),
        b: ("raw", "get"),
        bound: f64::INFINITY,
        at_least: false,
    },
];

/// The targets table alone (also what the README quotes).
pub fn targets_table(records: &[Record]) -> (String, Vec<&'static str>) {
    let mut out = String::new();
    let mut missed = Vec::new();
    out.push_str("| target | ratio: median (min–max) | |\n|---|---|---|\n");
    for t in TARGETS.iter().filter(|t| t.bound.is_finite()) {
        let s = ratio(records, t.kind, t.field, t.a, t.b);
        let verdict = match &s {
            None => "not measured".to_owned(),
            Some(s)
                if (t.at_least && s.median >= t.bound) || (!t.at_least && s.median <= t.bound) =>
            {
                "met".to_owned()
            }
            Some(_) => {
                missed.push(t.what);
                "**missed**".to_owned()
            }
        };
        let _ = writeln!(out, "| {} | {} | {verdict} |", t.what, cell(s.as_ref()));
    }
    (out, missed)
}

pub fn markdown(
    machine: &Machine,
    quick: bool,
    plan: &str,
    records: &[Record],
    errors: &[String],
    sql: &SqlMap,
    notes: Option<&str>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# voidrunner-db against its peers\n");
    let _ = writeln!(
        md,
        "Generated by `benches/compare` (issue #11); do not edit by hand: rerun\n\n\
         ```sh\ncd benches/compare && CARGO_TARGET_DIR=$PWD/target cargo run --release\n```\n\n\
         and commit this file and `ratios.svg`.{}\n",
        if quick {
            "\n\n**This is a `--quick` run** (fewer rounds and calls): a smoke test of the \
             tool, not figures to quote."
        } else {
            ""
        }
    );
    md.push_str("## Machine\n\n");
    let _ = writeln!(
        md,
        "| | |\n|---|---|\n| date | {} |\n| crate commit | {} |\n| CPUs (`nproc`) | {} |\n| CPU | {} |\n| PostgreSQL | {} (a private cluster on the same machine, fsync on) |\n| valgrind | {} |\n| pgbench | {} |\n",
        machine.date,
        machine.commit,
        machine.nproc,
        machine.cpu,
        machine.server_version,
        machine.valgrind,
        if machine.pgbench {
            "yes"
        } else {
            "not installed: no pgbench column"
        },
    );
    md.push_str("## Targets\n\n");
    let (targets, missed) = targets_table(records);
    md.push_str(&targets);
    md.push('\n');
    md.push_str(
        "Ratios are the crate's figure over the peer's (for the queue, A over B), taken within \
         each round and summarised over the rounds: the median, then the smallest and largest \
         in parentheses. Instruction counts come from one callgrind pass (they vary little from \
         run to run), so they have no range.\n\n",
    );
    md.push_str("## Ratios to raw tokio-postgres + deadpool\n\n");
    md.push_str("![ratios](ratios.svg)\n\n");
    md.push_str(
        "| op | metric | crate ÷ raw | sqlx ÷ raw | pgbench ÷ raw | raw, median |\n|---|---|---|---|---|---|\n",
    );
    for op in OPS {
        for (kind, field, label, higher) in METRICS {
            let raw = absolute(records, kind, "raw", op, field);
            if raw.is_none() {
                continue;
            }
            let r = |v: &str| cell(ratio(records, kind, field, (v, op), ("raw", op)).as_ref());
            let _ = writeln!(
                md,
                "| {op} | {label}{} | {} | {} | {} | {}{} |",
                if higher { " (higher is better)" } else { "" },
                r("crate"),
                r("sqlx"),
                r("pgbench"),
                human(raw.as_ref().map_or(0.0, |s| s.median)),
                unit(field),
            );
        }
    }
    md.push_str("\n## Queue\n\n");
    md.push_str(
        "16 workers against one queue, cycles (claim → complete) per second. `batched` is \
         examples/worker.rs with its defaults: claim up to 10, completions through one \
         shared `Completer` (its jobs take no time, so its heartbeat timer never fires); `single` claims one and completes it, in a loop. Durable runs \
         use `synchronous_commit = on` (fsync on), the others `off`; each pair runs A/B, its \
         order swapped every other round. The `fresh_` runs (issue #16) load 20,000 tasks \
         into a new database whose tables have never been analyzed (autovacuum off), as a \
         bulk enqueue into a new or long-quiet queue leaves them; the others empty, load and \
         analyze the tables first. Claim latency is over the claims that returned rows; \
         buffers (shared, hit or read) come from pg_stat_statements, reset after loading: per \
         claim, and per execution for every statement of the run.\n\n",
    );
    md.push_str("| run | cycles/s, median (min–max) | client CPU / cycle | claim p50 | claim p99 | buffers / claim | buffers / execution | server time / execution (claim) | drained early |\n|---|---|---|---|---|---|---|---|---|\n");
    for op in [
        "durable_batched",
        "durable_single",
        "async_batched",
        "async_single",
        "fresh_durable_batched",
        "fresh_durable_single",
        "fresh_async_batched",
        "fresh_async_single",
        "notify_on",
        "notify_off",
    ] {
        let rate = absolute(records, "queue", "crate", op, "ops_per_s");
        let median = |field: &str| {
            absolute(records, "queue", "crate", op, field)
                .as_ref()
                .map_or("–".to_owned(), |s| human(s.median))
        };
        let drained = records
            .iter()
            .filter(|r| {
                r.kind == "queue" && r.op == op && r.value["drained"].as_bool() == Some(true)
            })
            .count();
        let _ = writeln!(
            md,
            "| {op} | {} | {} µs | {} µs | {} µs | {} | {} | {} µs ({} µs) | {drained} of {} rounds |",
            rate.as_ref().map_or("–".to_owned(), |s| format!(
                "{} ({}–{})",
                human(s.median),
                human(s.min),
                human(s.max)
            )),
            median("cpu_us"),
            median("claim_p50_us"),
            median("claim_p99_us"),
            median("buffers_per_claim"),
            median("buffers_per_execution"),
            median("server_us"),
            median("server_claim_us"),
            rate.as_ref().map_or(0, |s| s.n),
        );
    }
    md.push_str(
        "\npgbench's replay of the claim-1/complete-1 loop: the crate's own claim and \
         complete statements (`src/queries/queue.sql`), `-M prepared`, 16 clients each claiming as \
         worker `client_id` and completing what it claimed, on a queue of 20,000 (10,000 with `--quick`) loaded as \
         above (`synchronous_commit = off`): what the server does per execution without the \
         crate's client.\n\n| queue | pgbench, cycles/s | the crate's loop ÷ pgbench | pgbench CPU / cycle |\n|---|---|---|---|\n",
    );
    for op in ["async_single", "fresh_async_single"] {
        let rate = absolute(records, "queue", "pgbench", op, "ops_per_s");
        let ratio = ratio(
            records,
            "queue",
            "ops_per_s",
            ("crate", op),
            ("pgbench", op),
        );
        let cpu = absolute(records, "queue", "pgbench", op, "cpu_us");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} µs |",
            if op == "async_single" {
                "analyzed"
            } else {
                "fresh (never analyzed)"
            },
            rate.as_ref().map_or("–".to_owned(), |s| format!(
                "{} ({}–{})",
                human(s.median),
                human(s.min),
                human(s.max)
            )),
            cell(ratio.as_ref()),
            cpu.as_ref().map_or("–".to_owned(), |s| human(s.median)),
        );
    }
    let replicas = replicas_section(records);
    if !replicas.is_empty() {
        md.push('\n');
        md.push_str(&replicas);
    }
    md.push_str("\n## Method\n\n");
    let _ = writeln!(md, "- Plan: {plan}.");
    md.push_str(
        "- One private PostgreSQL cluster, started by the tool (`PrivateCluster`, restarted with \
fsync on and `pg_stat_statements` preloaded) and removed at the end; the repository \
operations run in a database with `synchronous_commit = off`, so that the client's work, not \
the disk, is what differs.\n\
- The crate's SQL is captured, not copied: each operation runs once through the crate on a \
fresh connection, pg_stat_statements must show exactly one statement, and its text (exact, \
from `pg_prepared_statements`, where the connection kept it prepared) is what raw \
tokio-postgres, sqlx and pgbench then run. If the crate's statement changes shape (the number \
of parameters the peers bind), the peers stop with an error naming it rather than compare \
different work.\n\
- Variants: **crate** (`PgTaskRepository`, pool of 1 for c=1 and 16 for c=16); **raw** \
(deadpool-postgres + tokio-postgres, `prepare_cached`, the same input values, every column \
decoded into the crate's column types by position); **sqlx** (0.9, the current release, pinned by `Cargo.lock`, \
`sqlx::query` + `bind`, statement cache on, every column decoded, ids, enums and timestamps \
converted into the crate's types; import writes binary COPY by hand, sqlx having no encoder); \
**pgbench** (`-M prepared`, get / list / create only: the captured statement with `$n` turned \
into pgbench variables, except create's id, made by `gen_random_uuid()` in the statement, and \
its NULL description; C and libpq, no decoding into types: a floor).\n\
- Every measurement runs in a child process of its own (the tool re-executes itself), so CPU \
(`getrusage` around the measured calls), peak RSS (`ru_maxrss`) and allocations (a counting \
global allocator, on only around the measured calls) belong to one variant; pgbench's CPU and \
RSS come from `wait4` and include its start-up. Rounds are interleaved: every round runs every \
variant of every operation, starting with a different variant each round.\n\
- c=1: calls one after another on one connection on a current-thread runtime, after a warm-up \
call that prepares the statement; p50 and p99 of the per-call times. c=16: 16 tasks on a \
two-thread runtime sharing a pool of 16 for a fixed time (get / list / create only: the bulk \
operations are about one caller's throughput). create_many and import write 1,000 and 10,000 \
rows per call; what the writes add is deleted between rounds.\n\
- Instructions: the c=1 child under `valgrind --tool=callgrind --toggle-collect=*child::measured*`, \
which counts only the measured calls (client code, the driver's connection task included: it runs \
on the same thread), divided by the number of calls.\n\
- Targets are judged on the median.\n",
    );
    md.push_str("\n## Missed targets\n\n");
    if missed.is_empty() {
        md.push_str("None in this run.\n");
    } else {
        for m in &missed {
            let _ = writeln!(md, "- {m}");
        }
    }
    if let Some(notes) = notes {
        md.push_str(
            "\nWhat was tried and what profiling showed (from `NOTES.md` beside this file, \
written by hand and copied here at every run):\n\n",
        );
        md.push_str(notes.trim());
        md.push('\n');
    }
    md.push_str("\n## The statements\n\n");
    for op in OPS {
        if let Some(text) = sql.get(op) {
            let _ = writeln!(md, "- {op}: `{}`", text.replace('`', "'"));
        }
    }
    if !errors.is_empty() {
        md.push_str("\n## Failed measurements\n\n");
        for e in errors {
            let _ = writeln!(md, "- {}", e.replace('\n', " "));
        }
    }
    md
}

/// Horizontal bars of crate ÷ raw per operation (instructions, CPU at c=1,
/// bytes allocated) and sqlx ÷ raw instructions, with min–max whiskers and
/// the 1.0 line.
pub fn svg(records: &[Record]) -> String {
    let series: [(&str, &str, &str, &str); 4] = [
        ("crate", "instr", "instr", "#1f77b4"),
        ("crate", "lat", "cpu_us", "#6baed6"),
        ("crate", "lat", "bytes", "#9ecae1"),
        ("sqlx", "instr", "instr", "#ff7f0e"),
    ];
    let labels = [
        "crate ÷ raw, instructions",
        "crate ÷ raw, CPU c=1",
        "crate ÷ raw, bytes allocated",
        "sqlx ÷ raw, instructions",
    ];
    let mut bars = Vec::new();
    for op in OPS {
        for (variant, kind, field, color) in series {
            bars.push((
                op,
                color,
                ratio(records, kind, field, (variant, op), ("raw", op)),
            ));
        }
    }
    let top = bars
        .iter()
        .filter_map(|(_, _, s)| s.as_ref().map(|s| s.max))
        .fold(2.0_f64, f64::max)
        .min(20.0)
        .ceil();
    let (left, width, bar_h, gap, head) = (110.0, 560.0, 12.0, 14.0, 40.0);
    let x = |v: f64| left + width * v.min(top) / top;
    let height = head
        + (bars.len() as f64) * bar_h
        + (OPS.len() as f64) * gap
        + 30.0
        + 18.0 * labels.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" font-family=\"sans-serif\" font-size=\"11\">",
        w = left + width + 90.0
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"16\" font-size=\"13\">voidrunner-db ÷ raw tokio-postgres (median, min–max whiskers; lower is better)</text>"
    );
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let _ = writeln!(
            s,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{3}\"/><text x=\"{0}\" y=\"{4}\" text-anchor=\"middle\" fill=\"#555\">{5}</text>",
            x(tick),
            head - 6.0,
            height - 18.0 * labels.len() as f64 - 20.0,
            if (tick - 1.0).abs() < 1e-9 {
                "#d62728"
            } else {
                "#ddd"
            },
            head - 10.0,
            tick
        );
        tick += if top > 6.0 { 1.0 } else { 0.5 };
    }
    let mut y = head;
    for (i, (op, color, summary)) in bars.iter().enumerate() {
        if i % series.len() == 0 {
            y += gap;
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{op}</text>",
                left - 8.0,
                y + bar_h * series.len() as f64 / 2.0 + 4.0
            );
        }
        if let Some(summary) = summary {
            let _ = writeln!(
                s,
                "<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>",
                x(summary.median) - left,
                bar_h - 2.0
            );
            if summary.n > 1 {
                let mid = y + (bar_h - 2.0) / 2.0;
                let _ = writeln!(
                    s,
                    "<line x1=\"{:.1}\" y1=\"{mid}\" x2=\"{:.1}\" y2=\"{mid}\" stroke=\"black\"/>",
                    x(summary.min),
                    x(summary.max)
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" fill=\"#333\">{:.2}</text>",
                x(summary.max.max(summary.median)) + 4.0,
                y + bar_h - 3.0,
                summary.median
            );
        }
        y += bar_h;
    }
    // The 1.0 line again, over the bars: parity with raw is the reference.
    let _ = writeln!(
        s,
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>",
        x(1.0),
        head - 6.0,
        y + 4.0
    );
    y += 24.0;
    for (i, label) in labels.iter().enumerate() {
        let yy = y + 18.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{}\" width=\"12\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{label}</text>",
            yy - 9.0,
            series[i].3,
            left + 18.0,
            yy
        );
    }
    s.push_str("</svg>\n");
    s
}

pub const BEGIN: &str = "<!-- benches/compare: begin (written by voidrunner-compare) -->";
pub const END: &str = "<!-- benches/compare: end -->";

/// `text` with what lies between the markers replaced by `quote`; `None`
/// without both markers.
pub fn replace_between_markers(text: &str, quote: &str) -> Option<String> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    Some(format!("{}\n{quote}{}", &text[..start], &text[end..]))
}

/// Issue #19: reads with one streaming replica, from the `replica` records
/// (empty when there are none).
pub fn replicas_section(records: &[Record]) -> String {
    if !records.iter().any(|r| r.kind == "replica") {
        return String::new();
    }
    let mut md = String::from("## Reads with one streaming replica (issue #19)\n\n");
    md.push_str(
        "get by id of one seeded task, through the crate, on a primary with one streaming \
         replica (`pg_basebackup -R`) on the same machine, started for these rounds only; a \
         copy of the seeded database with durable commits (`synchronous_commit = on`). Each \
         round runs every measurement in a child process of its own (a pool of 16 on each \
         node), in another order each round; ratios are taken within a round.\n\n",
    );
    let abs = |kind: &str, field: &str| absolute(records, "replica", "crate", kind, field);
    let rat = |a: &str, b: &str, field: &str| {
        ratio(records, "replica", field, ("crate", a), ("crate", b))
    };
    let range = |s: Option<Summary>, unit: &str| {
        s.map_or("–".to_owned(), |s| {
            format!(
                "{}{unit} ({}–{})",
                human(s.median),
                human(s.min),
                human(s.max)
            )
        })
    };
    let total = |kind: &str, field: &str| -> u64 {
        records
            .iter()
            .filter(|r| r.kind == "replica" && r.op == kind)
            .filter_map(|r| r.value[field].as_u64())
            .sum()
    };
    md.push_str(
        "| c=16, 16 tasks on 2 threads | get/s, median (min–max) | ÷ primary only | client CPU / get | reads on the replica / fallbacks to the primary |\n|---|---|---|---|---|\n",
    );
    for (kind, label) in [
        ("tput_primary", "primary only (the default handle)"),
        ("tput_any", "`reads(Consistency::AnyReplica)`"),
    ] {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} µs | {} / {} |",
            range(abs(kind, "ops_per_s"), "/s"),
            cell(rat(kind, "tput_primary", "ops_per_s").as_ref()),
            abs(kind, "cpu_us").map_or("–".to_owned(), |s| human(s.median)),
            total(kind, "replica_reads"),
            total(kind, "primary_reads"),
        );
    }
    md.push_str(
        "\n| c=1, one call after another | p50, median (min–max) | p50 ÷ AnyReplica | p99 | p99 ÷ AnyReplica | reads on the replica / fallbacks to the primary |\n|---|---|---|---|---|---|\n",
    );
    for (kind, label) in [
        ("lat_primary", "primary only (the default handle)"),
        ("lat_any", "`AnyReplica`"),
        (
            "lat_token",
            "`AtLeast(token)`, a token the replica has replayed",
        ),
        (
            "lat_fresh",
            "read-your-writes, right after the handle's own write (fresh token)",
        ),
    ] {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} / {} |",
            range(abs(kind, "p50_us"), " µs"),
            cell(rat(kind, "lat_any", "p50_us").as_ref()),
            range(abs(kind, "p99_us"), " µs"),
            cell(rat(kind, "lat_any", "p99_us").as_ref()),
            total(kind, "replica_reads"),
            total(kind, "primary_reads"),
        );
    }
    md.push_str(
        "\nThe default handle's reads are not routed, so they count on no node. The fresh \
         token's read is timed alone (the write before it is not).\n",
    );
    md
}
