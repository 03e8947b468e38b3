//! Streaming read replicas and read-your-writes tokens.
//!
//! ```text
//! DATABASE_URL=postgres://app@db-primary:5432/voidrunner \
//! VOIDRUNNER_DB_REPLICAS=postgres://app@db-replica-1:5432/voidrunner \
//!     cargo run --example replicas -- --secs 5
//! ```
//!
//! The primary is `DATABASE_URL`, the replicas `VOIDRUNNER_DB_REPLICAS`
//! (comma-separated); every other `VOIDRUNNER_DB_*` setting of
//! `DbConfig::from_env` applies too. Migrates the primary, waits for the
//! replicas to be in rotation, then for `--secs` seconds (5 by default)
//! runs a few clients that behave as a web service's requests do:
//!
//! 1. the request starts a read-your-writes handle from the token the
//!    client brought back (as text, the way a cookie carries it):
//!    `db.read_your_writes(cookie.parse()?)`;
//! 2. it reads the task the client created in its previous request: the
//!    token covers it, so it must be found, wherever the read goes;
//! 3. it creates a task and reads it back through the same handle;
//! 4. it hands the new token back to the client (`request.token()`).
//!
//! Meanwhile a writer creates tasks through the default handle, so that
//! the replicas always have WAL to replay. Every read that did not find a
//! row the token covered is a *stale read*; the report prints `stale
//! reads: N` and the reads each node answered (`Database::nodes`), and the
//! exit code is non-zero unless N is 0.
//!
//! Without `VOIDRUNNER_DB_REPLICAS` it runs all the same, every read on
//! the primary. The users it creates (and their tasks) are deleted at the
//! end. `.ci/replicas-example.sh` runs it against a private primary and
//! replica.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use voidrunner_db::{
    Database, DbConfig, NewTask, NewUser, NodeRole, NodeState, PasswordHash, PgTaskRepository,
    PgUserRepository, ReadToken, TaskId, TaskRepository, UserId, UserRepository,
};

const USAGE: &str = "usage: replicas [--secs N] [--clients N]";

/// How long the replicas get to come into rotation.
const REPLICAS_UP_WITHIN: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> ExitCode {
    let (secs, clients) = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(Duration::from_secs_f64(secs), clients).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("replicas example: stale reads found");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("replicas example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(f64, usize), String> {
    let (mut secs, mut clients) = (5.0, 4);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = || format!("bad value `{value}` for {flag}\n{USAGE}");
        match flag.as_str() {
            "--secs" => secs = value.parse().map_err(|_| bad())?,
            "--clients" => clients = value.parse().map_err(|_| bad())?,
            _ => return Err(USAGE.to_owned()),
        }
    }
    if !(secs > 0.0 && secs < 3600.0) || clients == 0 {
        return Err(USAGE.to_owned());
    }
    Ok((secs, clients))
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    token_reads: u64,
    stale: u64,
}

/// Returns the number of stale reads.
async fn run(duration: Duration, clients: usize) -> Result<u64, Box<dyn std::error::Error>> {
    let config = DbConfig::from_env()?;
    let replicas = config.replica_targets();
    println!("primary:      {}", config.display_target());
    if replicas.is_empty() {
        println!(
            "replicas:     none (VOIDRUNNER_DB_REPLICAS is empty or unset): every read goes to the primary"
        );
    } else {
        println!("replicas:     {}", replicas.join(", "));
    }

    let db = Database::connect(config).await?;
    let applied = db.migrate().await?;
    println!("migrations:   {} applied now", applied.len());
    wait_for_replicas(&db).await;

    // The writer's user, and one user per client, created on the primary.
    let users = PgUserRepository::new(db.clone());
    let mut owners = Vec::new();
    for _ in 0..=clients {
        let email = format!("replicas-{}@example.com", uuid::Uuid::new_v4().simple());
        owners.push(
            users
                .create(NewUser::new(email, PasswordHash::new("x")))
                .await?
                .id,
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_until(
        db.clone(),
        owners[0],
        stop.clone(),
        written.clone(),
    ));
    let mut fleet = tokio::task::JoinSet::new();
    for &user in &owners[1..] {
        fleet.spawn(client(db.clone(), user, stop.clone()));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for tally in fleet.join_all().await {
        let tally = tally?;
        total.requests += tally.requests;
        total.token_reads += tally.token_reads;
        total.stale += tally.stale;
    }
    writer.await??;
    let elapsed = started.elapsed();

    println!(
        "ran {:.1} s:   {clients} clients, {} requests, {} token reads; the writer created {} tasks",
        elapsed.as_secs_f64(),
        total.requests,
        total.token_reads,
        written.load(Ordering::Relaxed),
    );
    println!("stale reads: {}", total.stale);
    println!();
    report_nodes(&db);
    if replicas.is_empty() {
        println!("(without replicas no read is routed, so the primary counts none)");
    }

    for user in owners {
        users.delete(user).await?;
    }
    db.close(Duration::from_secs(5)).await;
    Ok(total.stale)
}

/// Waits until every replica is in rotation (or [`REPLICAS_UP_WITHIN`] has
/// passed: then reads fall back to the primary, still never stale).
async fn wait_for_replicas(db: &Database) {
    let deadline = Instant::now() + REPLICAS_UP_WITHIN;
    loop {
        let nodes = db.nodes();
        let waiting: Vec<_> = nodes.iter().filter(|n| n.state != NodeState::Up).collect();
        if waiting.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for node in waiting {
                println!(
                    "warning:      {} is {:?} ({}); its reads go elsewhere",
                    node.target,
                    node.state,
                    node.error.as_deref().unwrap_or("no error"),
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One client: requests one after another, each on a read-your-writes
/// handle started from the previous request's token, as text.
async fn client(db: Database, user: UserId, stop: Arc<AtomicBool>) -> voidrunner_db::Result<Tally> {
    let mut tally = Tally::default();
    // What the client keeps between requests: the cookie, and the id of
    // the task its last request created.
    let mut cookie: Option<String> = None;
    let mut last_task: Option<TaskId> = None;
    while !stop.load(Ordering::Relaxed) {
        // A new request: the handle starts from the client's token.
        let since = cookie.as_deref().map(str::parse::<ReadToken>).transpose()?;
        let request = db.read_your_writes(since);
        let tasks = PgTaskRepository::new(request.clone());

        // The previous request's write, seen through the cookie alone.
        if let Some(id) = last_task {
            tally.token_reads += 1;
            tally.stale += u64::from(!found(tasks.get(id).await)?);
        }
        // This request's own write, read back at once.
        let task = tasks
            .create(NewTask::new(user, "replicas example", "print(1)"))
            .await?;
        tally.token_reads += 1;
        tally.stale += u64::from(!found(tasks.get(task.id).await)?);

        last_task = Some(task.id);
        cookie = request.token().map(|token| token.to_string());
        tally.requests += 1;
    }
    Ok(tally)
}

/// Whether a read found its row: not found is a stale read, any other
/// error is the run's failure.
fn found<T>(read: voidrunner_db::Result<T>) -> voidrunner_db::Result<bool> {
    match read {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes through another handle (the default one, on the primary) so the
/// replicas keep replaying while the clients read.
async fn write_until(
    db: Database,
    user: UserId,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> voidrunner_db::Result<()> {
    let tasks = PgTaskRepository::new(db);
    while !stop.load(Ordering::Relaxed) {
        tasks
            .create(NewTask::new(user, "background write", "print(2)"))
            .await?;
        written.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Every node, the primary first: where the reads went.
fn report_nodes(db: &Database) {
    println!(
        "{:<32} {:<8} {:<9} {:>9} {:>8}",
        "node", "role", "state", "lag", "reads"
    );
    for node in db.nodes() {
        let role = match node.role {
            NodeRole::Primary => "primary",
            _ => "replica",
        };
        let lag = node
            .lag
            .map_or("-".to_owned(), |lag| format!("{} ms", lag.as_millis()));
        println!(
            "{:<32} {:<8} {:<9} {:>9} {:>8}",
            node.target,
            role,
            format!("{:?}", node.state),
            lag,
            node.reads
        );
    }
}
