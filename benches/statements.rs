//! What sending statements unnamed costs: the repositories' calls with named,
//! cached statements (the default, [`PoolerMode::Direct`]) against the same
//! calls sent unnamed with declared parameter types
//! ([`PoolerMode::Transaction`], what a transaction pooler needs), both
//! straight to the same server: no pooler in the way, so only the protocol
//! differs (a named statement is parsed and planned once per connection,
//! an unnamed one on every call; both take one round trip).
//!
//! ```text
//! cargo bench --bench statements
//! ```
//!
//! - `get/{named,unnamed}`: `TaskRepository::get` of one task;
//! - `create/{named,unnamed}`: `TaskRepository::create` of one task;
//! - then `unnamed/named` ratios of both, from runs of the two modes taken
//!   in turns, printed at the end.
//!
//! One connection per pool and one call at a time, so the numbers are
//! latencies. Absolute numbers depend on the machine and what else it is
//! doing; compare the two modes with each other.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Database, NewTask, NewUser, PasswordHash, PgTaskRepository, PgUserRepository, PoolerMode,
    TaskId, TaskRepository, UserId, UserRepository,
};

struct Bench {
    rt: tokio::runtime::Runtime,
    _db: TestDatabase,
    user: UserId,
    task: TaskId,
    named: PgTaskRepository,
    unnamed: PgTaskRepository,
}

fn setup() -> Bench {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, unnamed_db, user, task) = rt.block_on(async {
        let db = TestDatabase::with_config(|c| {
            c.max_connections = 1;
            c.min_connections = 1;
            c.pooler = PoolerMode::Direct;
        })
        .await
        .expect("test database");
        let mut config = db.config().await.expect("config");
        // Straight to the server, like the named pool: only the protocol
        // differs.
        config = config.direct_config().unwrap_or(config);
        config.pooler = PoolerMode::Transaction;
        config.max_connections = 1;
        config.min_connections = 1;
        let unnamed_db = Database::connect(config).await.expect("unnamed pool");
        let user = PgUserRepository::new(db.db().clone())
            .create(NewUser::new("bench@example.com", PasswordHash::new("h")))
            .await
            .expect("user")
            .id;
        let task = PgTaskRepository::new(db.db().clone())
            .create(NewTask::new(user, "bench", "print(1)"))
            .await
            .expect("task")
            .id;
        (db, unnamed_db, user, task)
    });
    Bench {
        named: PgTaskRepository::new(db.db().clone()),
        unnamed: PgTaskRepository::new(unnamed_db),
        rt,
        _db: db,
        user,
        task,
    }
}

impl Bench {
    fn repo(&self, mode: &str) -> &PgTaskRepository {
        if mode == "named" {
            &self.named
        } else {
            &self.unnamed
        }
    }

    async fn get(&self, mode: &str) {
        self.repo(mode).get(self.task).await.expect("get");
    }

    async fn create(&self, mode: &str) {
        self.repo(mode)
            .create(NewTask::new(self.user, "bench", "print(1)").priority(3))
            .await
            .expect("create");
    }

    /// Mean time of `n` calls of `op` in `mode`.
    async fn time(&self, mode: &str, op: &str, n: u32) -> Duration {
        let started = Instant::now();
        for _ in 0..n {
            match op {
                "get" => self.get(mode).await,
                _ => self.create(mode).await,
            }
        }
        started.elapsed() / n
    }
}

fn statements(c: &mut Criterion) {
    let bench = setup();
    for op in ["get", "create"] {
        let mut group = c.benchmark_group(op);
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1));
        for mode in ["named", "unnamed"] {
            group.bench_function(mode, |b| {
                b.to_async(&bench.rt).iter(|| async {
                    match op {
                        "get" => bench.get(mode).await,
                        _ => bench.create(mode).await,
                    }
                })
            });
        }
        group.finish();
    }

    // The ratios, from the two modes measured in turns (so drift in the
    // machine's load hits both alike), medians of 15 rounds.
    bench.rt.block_on(async {
        for op in ["get", "create"] {
            let mut ratios = Vec::new();
            for _ in 0..15 {
                let named = bench.time("named", op, 200).await;
                let unnamed = bench.time("unnamed", op, 200).await;
                ratios.push((
                    unnamed.as_secs_f64() / named.as_secs_f64(),
                    named,
                    unnamed,
                ));
            }
            ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ratio, named, unnamed) = ratios[ratios.len() / 2];
            println!(
                "{op}: unnamed {unnamed:.2?} vs named {named:.2?} per call: unnamed/named = {ratio:.2}x"
            );
        }
    });
}

criterion_group!(benches, statements);
criterion_main!(benches);
