//! `voidrunner-compare`: voidrunner-db against raw tokio-postgres +
//! deadpool, sqlx and pgbench running the crate's own SQL (issue #11).
//! See README.md beside Cargo.toml.

mod alloc;
mod child;
mod driver;
mod ops;
mod report;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const USAGE: &str = "usage: voidrunner-compare [--quick] [--rounds N] [--out DIR] [--no-callgrind] [--keep-profiles DIR] [--queue-only] [--replicas-only] [--counts-only] [--logs-only] [--fair-only]";

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("child") {
        let args: child::Args = args
            .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        // The replica rounds' children live with their driver (one
        // module, no import circle through `child`).
        if child::arg(&args, "mode") == "replica" {
            driver::replica::run(&args);
        } else {
            child::run(&args);
        }
        return;
    }
    let mut options = driver::Options::default();
    let mut rest = first.into_iter().chain(args);
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--quick" => options.quick = true,
            "--no-callgrind" => options.callgrind = false,
            "--rounds" => {
                options.rounds = rest.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0)
            }
            "--out" => options.out = rest.next().map(Into::into),
            "--keep-profiles" => options.keep_profiles = rest.next().map(Into::into),
            "--queue-only" => options.queue_only = true,
            "--replicas-only" => options.replicas_only = true,
            "--counts-only" => options.counts_only = true,
            "--logs-only" => options.logs_only = true,
            "--fair-only" => options.fair_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = driver::run(options) {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        eprintln!("voidrunner-compare: {message}");
        std::process::exit(1);
    }
}
