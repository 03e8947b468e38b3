//! Queue and bulk-path throughput against a real PostgreSQL server.
//!
//! ```text
//! cargo bench --bench queue
//! ```
//!
//! - `claim_complete/{1,4,16}`: claim-one + complete cycles per second with
//!   that many concurrent workers; `claim_complete_quiet/*` the same with
//!   `notify_events` off, which shows what the NOTIFY of each change costs;
//! - `claim_complete_batched/{4,16}`: the same cycle as the worker example
//!   runs it, claims of 10 and completions through one shared `Completer`
//!   (one statement, and so one notification, per batch);
//!   `claim_complete_batched_quiet/*` with `notify_events` off;
//! - `insert_tasks/*`: tasks written per second by one-row-at-a-time
//!   `create` (the baseline), `create_many` (unnest) and `import` (COPY);
//!   `insert_tasks_32000/*`: `create_many` against `import` (the baseline)
//!   for 32,000 rows in one call;
//! - `enqueue/*`: executions queued per second by one-at-a-time `enqueue`
//!   (the baseline) and `enqueue_many`.
//!
//! Compare the variants of a group with each other: they run in the same
//! process against the same server, one right after the other. Absolute
//! numbers depend on the machine and what else it is doing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Completer, ExecutionQueue, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue,
    PgTaskRepository, PgUserRepository, TaskId, TaskRepository, UserId, UserRepository,
};

const ROWS: usize = 1000;

struct Bench {
    rt: tokio::runtime::Runtime,
    db: TestDatabase,
    user: UserId,
    tasks: PgTaskRepository,
    queue: Arc<PgExecutionQueue>,
}

fn setup(notify_events: bool) -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, user) = rt.block_on(async {
        let db = TestDatabase::with_config(|c| {
            c.max_connections = 20;
            c.min_connections = 18;
            c.notify_events = notify_events;
        })
        .await
        .expect("test database");
        let user = PgUserRepository::new(db.db().clone())
            .create(NewUser::new("bench@example.com", PasswordHash::new("h")))
            .await
            .expect("user")
            .id;
        (db, user)
    });
    Bench {
        tasks: PgTaskRepository::new(db.db().clone()),
        queue: Arc::new(PgExecutionQueue::new(db.db().clone())),
        rt,
        db,
        user,
    }
}

impl Bench {
    fn new_tasks(&self, n: usize) -> Vec<NewTask> {
        (0..n)
            .map(|i| {
                NewTask::new(self.user, format!("bench {i}"), "print(1)").priority((i % 11) as i32)
            })
            .collect()
    }

    /// Empties the tables between measurements, so every run starts alike.
    async fn reset(&self) {
        self.db
            .client()
            .await
            .expect("client")
            .batch_execute("TRUNCATE tasks, task_executions")
            .await
            .expect("truncate");
    }

    async fn queued_tasks(&self, n: usize) -> Vec<TaskId> {
        let mut ids = Vec::with_capacity(n);
        for chunk in self.new_tasks(n).chunks(ROWS) {
            let created = self.tasks.create_many(chunk.to_vec()).await.expect("tasks");
            ids.extend(created.iter().map(|t| t.id));
        }
        ids
    }
}

fn claim_complete(c: &mut Criterion) {
    claim_complete_group(c, "claim_complete", true, false);
    claim_complete_group(c, "claim_complete_quiet", false, false);
}

fn claim_complete_batched(c: &mut Criterion) {
    claim_complete_group(c, "claim_complete_batched", true, true);
    claim_complete_group(c, "claim_complete_batched_quiet", false, true);
}

/// Executions a batched worker claims at a time (as examples/worker.rs).
const CLAIM_BATCH: u32 = 10;

/// Cycles per second of a fleet: claims of one, each completed on its own,
/// or (`batched`) claims of [`CLAIM_BATCH`] completed through a shared
/// [`Completer`], as examples/worker.rs does. `notify_events` off shows
/// what the events cost.
fn claim_complete_group(c: &mut Criterion, name: &str, notify_events: bool, batched: bool) {
    let bench = setup(notify_events);
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    let fleets: &[usize] = if batched { &[4, 16] } else { &[1, 4, 16] };
    for &workers in fleets {
        group.bench_with_input(
            BenchmarkId::from_parameter(workers),
            &workers,
            |b, &workers| {
                b.to_async(&bench.rt).iter_custom(|iters| {
                    let bench = &bench;
                    async move {
                        bench.reset().await;
                        let ids = bench.queued_tasks(iters as usize).await;
                        for chunk in ids.chunks(ROWS) {
                            bench
                                .queue
                                .enqueue_many(chunk.to_vec(), None)
                                .await
                                .expect("enqueue");
                        }
                        let completer = Completer::new(bench.queue.clone()).expect("completer");
                        let started = Instant::now();
                        let mut fleet = tokio::task::JoinSet::new();
                        for w in 0..workers {
                            let queue = bench.queue.clone();
                            let completer = completer.clone();
                            fleet.spawn(async move {
                                let worker = format!("bench-{w}");
                                let limit = if batched { CLAIM_BATCH } else { 1 };
                                loop {
                                    let claimed = queue
                                        .claim(&worker, limit, Duration::from_secs(60))
                                        .await
                                        .expect("claim");
                                    if claimed.is_empty() {
                                        return;
                                    }
                                    if !batched {
                                        for job in claimed {
                                            queue
                                                .complete(
                                                    job.execution.id,
                                                    &worker,
                                                    Outcome::completed(0),
                                                )
                                                .await
                                                .expect("complete");
                                        }
                                        continue;
                                    }
                                    let reports: Vec<_> = claimed
                                        .iter()
                                        .map(|job| {
                                            completer.complete(
                                                job.execution.id,
                                                &worker,
                                                Outcome::completed(0),
                                            )
                                        })
                                        .collect();
                                    for report in reports {
                                        report.await.expect("complete");
                                    }
                                }
                            });
                        }
                        while let Some(done) = fleet.join_next().await {
                            done.expect("worker");
                        }
                        completer.shutdown().await;
                        started.elapsed()
                    }
                });
            },
        );
    }
    group.finish();
}

#[derive(Clone, Copy)]
enum Insert {
    OneAtATime,
    Unnest,
    Copy,
}

fn insert_tasks(c: &mut Criterion) {
    let bench = setup(true);
    let mut group = c.benchmark_group("insert_tasks");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, path) in [
        ("one_at_a_time", Insert::OneAtATime),
        ("create_many_unnest", Insert::Unnest),
        ("import_copy", Insert::Copy),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&bench.rt).iter_custom(|iters| {
                let bench = &bench;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        bench.reset().await;
                        let input = bench.new_tasks(ROWS);
                        let started = Instant::now();
                        match path {
                            Insert::OneAtATime => {
                                for task in input {
                                    bench.tasks.create(task).await.expect("create");
                                }
                            }
                            Insert::Unnest => {
                                bench.tasks.create_many(input).await.expect("create_many");
                            }
                            Insert::Copy => {
                                bench.tasks.import(input).await.expect("import");
                            }
                        }
                        total += started.elapsed();
                    }
                    total
                }
            });
        });
    }
    group.finish();

    // The large batch: create_many must stay within a small factor of COPY
    // (its result comes back in input order from SQL, no re-sort).
    let mut group = c.benchmark_group("insert_tasks_32000");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(LARGE_ROWS as u64));
    for (name, path) in [
        ("create_many_unnest", Insert::Unnest),
        ("import_copy", Insert::Copy),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&bench.rt).iter_custom(|iters| {
                let bench = &bench;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        bench.reset().await;
                        let input = bench.new_tasks(LARGE_ROWS);
                        let started = Instant::now();
                        match path {
                            Insert::Unnest => {
                                bench.tasks.create_many(input).await.expect("create_many");
                            }
                            _ => {
                                bench.tasks.import(input).await.expect("import");
                            }
                        }
                        total += started.elapsed();
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

/// Rows of the large-batch group (the case the hostile-input review timed).
const LARGE_ROWS: usize = 32_000;

fn enqueue(c: &mut Criterion) {
    let bench = setup(true);
    let mut group = c.benchmark_group("enqueue");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(ROWS as u64));
    for many in [false, true] {
        let name = if many {
            "enqueue_many_unnest"
        } else {
            "one_at_a_time"
        };
        group.bench_function(name, |b| {
            b.to_async(&bench.rt).iter_custom(|iters| {
                let bench = &bench;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        bench.reset().await;
                        let ids = bench.queued_tasks(ROWS).await;
                        let started = Instant::now();
                        if many {
                            bench
                                .queue
                                .enqueue_many(ids, None)
                                .await
                                .expect("enqueue_many");
                        } else {
                            for id in ids {
                                bench.queue.enqueue(id, None).await.expect("enqueue");
                            }
                        }
                        total += started.elapsed();
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    insert_tasks,
    enqueue,
    claim_complete,
    claim_complete_batched
);
criterion_main!(benches);
