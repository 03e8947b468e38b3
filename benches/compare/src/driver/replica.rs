//! Issue #19: reads with one streaming replica. The child's side: one
//! measurement per process, as for the other modes, on a primary
//! (`url`) with one replica (`replica`) configured.
//!
//! `kind`:
//! - `tput_primary`, `tput_any`: get by id at c=16 for `secs`, through the
//!   default handle (every read on the primary) and through
//!   `reads(Consistency::AnyReplica)` (every read on the replica);
//! - `lat_primary`, `lat_any`: the same get at c=1, `n` calls;
//! - `lat_token`: the get through `reads(Consistency::AtLeast(token))`,
//!   the token the replica's replay position before the calls;
//! - `lat_fresh`: a read-your-writes handle per call, a task created
//!   through it (not timed), then the timed get of that task right after,
//!   with the fresh token of the write.
//!
//! Every kind reports, beside its figures, how many of its reads each node
//! answered (`Database::nodes`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{
    Consistency, Database, DbConfig, NodeRole, NodeState, PgTaskRepository, PoolerMode, TaskId,
    TaskRepository, UserId,
};

use super::{Plan, Setup, admin, clean, keep, run_child, url_of};
use crate::child::{Args, arg, cpu_us};
use crate::ops::{BoxError, new_task};
use crate::report::Record;

const CLIENTS: usize = 16;

pub fn run(args: &Args) {
    let kind = arg(args, "kind").to_owned();
    let task: TaskId = arg(args, "task").parse().expect("task id");
    let user: UserId = arg(args, "user").parse().expect("user id");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let value = rt.block_on(async {
        let db = connect(arg(args, "url"), arg(args, "replica")).await;
        let before = reads(&db);
        let mut value = match kind.as_str() {
            "tput_primary" | "tput_any" => {
                let secs: f64 = arg(args, "secs").parse().expect("secs");
                let handle = if kind == "tput_any" {
                    db.reads(Consistency::AnyReplica)
                } else {
                    db.clone()
                };
                throughput(PgTaskRepository::new(handle), task, secs).await
            }
            "lat_primary" | "lat_any" | "lat_token" | "lat_fresh" => {
                let n: usize = arg(args, "n").parse().expect("n");
                latency(&db, &kind, task, user, n).await
            }
            other => panic!("unknown replica kind {other}"),
        };
        let after = reads(&db);
        value["primary_reads"] = json!(after.0 - before.0);
        value["replica_reads"] = json!(after.1 - before.1);
        db.close(Duration::from_secs(5)).await;
        value
    });
    println!("RESULT {value}");
}

/// A pool of 16 on the primary and on the replica, once the replica is in
/// rotation.
async fn connect(url: &str, replica: &str) -> Database {
    let mut config = DbConfig::from_url(url).expect("url");
    config.max_connections = CLIENTS;
    config.min_connections = CLIENTS;
    config.pooler = PoolerMode::Direct;
    config.add_replica(replica).expect("replica url");
    let db = Database::connect(config).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.nodes().iter().any(|n| n.state != NodeState::Up) {
        assert!(
            Instant::now() < deadline,
            "the replica never came up: {:?}",
            db.nodes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db
}

/// Reads answered so far: (primary, replicas).
fn reads(db: &Database) -> (u64, u64) {
    db.nodes().iter().fold((0, 0), |(p, r), n| match n.role {
        NodeRole::Primary => (p + n.reads, r),
        _ => (p, r + n.reads),
    })
}

async fn throughput(repo: PgTaskRepository, task: TaskId, secs: f64) -> serde_json::Value {
    let repo = Arc::new(repo);
    // Every connection of both pools prepares its statement first.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let repo = repo.clone();
        warm.spawn(async move { repo.get(task).await.expect("get") });
    }
    warm.join_all().await;
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu = cpu_us();
    let start = Instant::now();
    let mut fleet = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (repo, done, stop) = (repo.clone(), done.clone(), stop.clone());
        fleet.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(repo.get(task).await.expect("get"));
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    fleet.join_all().await;
    let elapsed = start.elapsed().as_secs_f64();
    let ops = done.load(Ordering::Relaxed);
    json!({
        "ops": ops,
        "secs": elapsed,
        "ops_per_s": ops as f64 / elapsed,
        "cpu_us": (cpu_us() - cpu) as f64 / ops.max(1) as f64,
    })
}

async fn latency(
    db: &Database,
    kind: &str,
    task: TaskId,
    user: UserId,
    n: usize,
) -> serde_json::Value {
    let handle = match kind {
        "lat_primary" => db.clone(),
        "lat_any" => db.reads(Consistency::AnyReplica),
        "lat_token" => {
            // The replica's own replay position, as its last probe saw it:
            // a token it has replayed. (The primary's insert position
            // taken on an idle primary may stay ahead of every replay
            // position until the next write, when it falls just after a
            // page header.)
            let deadline = Instant::now() + Duration::from_secs(10);
            let token = loop {
                let replayed = db
                    .nodes()
                    .iter()
                    .find(|n| n.role != NodeRole::Primary)
                    .and_then(|n| n.replayed);
                if let Some(token) = replayed {
                    break token;
                }
                assert!(
                    Instant::now() < deadline,
                    "the replica reported no position"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            db.reads(Consistency::AtLeast(token))
        }
        _ => db.clone(),
    };
    let repo = PgTaskRepository::new(handle);
    repo.get(task).await.expect("warm-up get");
    let mut times = Vec::with_capacity(n);
    let mut cpu = 0;
    for i in 0..n {
        let (request, id) = if kind == "lat_fresh" {
            let request = db.read_your_writes(None);
            let created = PgTaskRepository::new(request.clone())
                .create(new_task(user, i))
                .await
                .expect("create");
            (Some(request), created.id)
        } else {
            (None, task)
        };
        let cpu_before = cpu_us();
        let start = Instant::now();
        let found = match &request {
            Some(request) => PgTaskRepository::new(request.clone()).get(id).await,
            None => repo.get(id).await,
        };
        times.push(start.elapsed());
        cpu += cpu_us() - cpu_before;
        std::hint::black_box(found.expect("get"));
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    json!({
        "n": n,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "mean_us": times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / n as f64,
        "cpu_us": cpu as f64 / n as f64,
    })
}

/// The database of these runs: a copy of the seeded one with durable
/// commits, as a service would run (with `synchronous_commit = off`, a
/// fresh token's WAL would reach the replica only at the WAL writer's next
/// flush, up to `wal_writer_delay` later).
const REPLICA_DB: &str = "compare_replica";

/// The driver's side: a replica of the cluster, made for these rounds and
/// removed after, and `plan.rounds` rounds of every kind, each round in
/// another order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rounds(
    rt: &tokio::runtime::Runtime,
    cluster: &PrivateCluster,
    setup: &Setup,
    me: &Path,
    sql_file: &Path,
    plan: &Plan,
    records: &mut Vec<Record>,
    errors: &mut Vec<String>,
) -> Result<(), BoxError> {
    eprintln!("reads with one streaming replica (issue #19)…");
    rt.block_on(async {
        let maintenance = admin(&setup.cluster_url).await?;
        // The template must have no sessions: the last round's may still
        // be closing.
        let mut attempt = 0;
        loop {
            let create = format!("CREATE DATABASE {REPLICA_DB} TEMPLATE compare");
            match maintenance.batch_execute(&create).await {
                Ok(()) => break,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    eprintln!("  {e}; again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(BoxError::from(e)),
            }
        }
        maintenance
            .batch_execute(&format!(
                "ALTER DATABASE {REPLICA_DB} SET synchronous_commit = on"
            ))
            .await?;
        // pg_basebackup asks for a spread checkpoint, paced over most of
        // checkpoint_timeout when there are dirty buffers (minutes after
        // seeding): flush them now, so that it has nothing to pace.
        maintenance.batch_execute("CHECKPOINT").await?;
        Ok(())
    })?;
    let replica = rt.block_on(cluster.replica())?;
    let primary_url = url_of(cluster, REPLICA_DB);
    let replica_url = format!(
        "postgres://postgres@127.0.0.1:{}/{REPLICA_DB}",
        replica.port()
    );
    let mut kinds = KINDS.to_vec();
    let outcome = (|| {
        for round in 0..plan.rounds {
            eprintln!("replica round {}/{}", round + 1, plan.rounds);
            for &kind in &kinds {
                let n = if kind == "lat_fresh" {
                    plan.replica_lat_n / 4
                } else {
                    plan.replica_lat_n
                };
                let result = run_child(
                    me,
                    Some(&primary_url),
                    &[
                        ("mode", "replica".into()),
                        ("kind", kind.into()),
                        ("replica", replica_url.clone()),
                        ("secs", plan.tput_secs.to_string()),
                        ("n", n.to_string()),
                    ],
                    setup,
                    sql_file,
                );
                keep(records, errors, round, "replica", "crate", kind, result);
            }
            kinds.rotate_left(1);
            rt.block_on(clean(&primary_url))?;
        }
        Ok::<(), BoxError>(())
    })();
    rt.block_on(replica.destroy())?;
    rt.block_on(async {
        admin(&setup.cluster_url)
            .await?
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {REPLICA_DB} WITH (FORCE)"
            ))
            .await?;
        Ok::<(), BoxError>(())
    })?;
    outcome
}

/// Every measurement of a round.
pub(crate) const KINDS: [&str; 6] = [
    "tput_primary",
    "tput_any",
    "lat_primary",
    "lat_any",
    "lat_token",
    "lat_fresh",
];
