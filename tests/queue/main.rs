//! Queue and transaction tests against a real PostgreSQL server: claims
//! raced by many workers, leases, rescue, cancellation, pruning, bulk paths,
//! events and transactions. One binary keeps link time down.

mod batch;
mod batch_faults;
mod batch_in_flight;
mod bulk;
mod cancellation;
mod claim;
mod claim_races;
mod claim_storms;
mod event_limits;
mod events;
mod fair_plans;
mod fair_wrap;
mod fairness;
mod fairness_races;
mod invariants;
mod lifecycle;
mod operators;
mod ownership;
mod plans;
mod regressions;
mod roles;
mod transactions;

use std::time::Duration;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    ExecutionQueue, NewTask, NewUser, PasswordHash, PgExecutionQueue, PgExecutionRepository,
    PgTaskRepository, PgUserRepository, Task, TaskRepository, User, UserRepository,
};

pub const LEASE: Duration = Duration::from_secs(30);

/// `n` executions queued and claimed by `racer` with a 1 ms lease, every
/// lease expired by the time this returns: the start of the
/// rescue/complete races.
pub async fn queued_with_expired_leases(
    f: &Fixture,
    n: usize,
) -> Vec<voidrunner_db::TaskExecution> {
    let queued = f.queued(n, |_| 0).await;
    let mut claimed = 0;
    while claimed < n {
        claimed += f
            .queue
            .claim("racer", 1000, Duration::from_millis(1))
            .await
            .unwrap()
            .len();
    }
    tokio::time::sleep(Duration::from_millis(20)).await; // every lease has expired
    queued
}

/// The rescuer of the rescue/complete races: rescues expired leases in
/// batches of 50 until none is left, and returns what it timed out.
pub fn spawn_rescuer(
    queue: PgExecutionQueue,
) -> tokio::task::JoinHandle<Vec<voidrunner_db::ExecutionId>> {
    tokio::spawn(async move {
        let mut rescued = Vec::new();
        loop {
            let report = queue
                .rescue_expired(voidrunner_db::RescuePolicy {
                    batch_size: 50,
                    ..voidrunner_db::RescuePolicy::default()
                })
                .await
                .unwrap();
            if report.timed_out.is_empty() {
                return rescued;
            }
            rescued.extend(report.timed_out);
        }
    })
}

pub struct Fixture {
    pub db: TestDatabase,
    pub users: PgUserRepository,
    pub tasks: PgTaskRepository,
    pub executions: PgExecutionRepository,
    pub queue: PgExecutionQueue,
    pub user: User,
}

/// Whether the test database's pool goes through a transaction-mode pooler
/// (`VOIDRUNNER_TEST_POOLER=pgbouncer`, or `VOIDRUNNER_DB_POOLER=transaction`),
/// for the few tests of session behaviour such a pooler does not keep.
pub fn behind_transaction_pooler(db: &TestDatabase) -> bool {
    db.db().config().pooler == voidrunner_db::PoolerMode::Transaction
}

/// `VOIDRUNNER_TEST_CLAIM_ORDER=fair` runs the races once more with the fair
/// claim (CI's pass after the PgBouncer one): `fixture()`'s `queue` then
/// claims in `ClaimOrder::Fair`, and the test database gets a default cap of
/// [`FAIR_PASS_DEFAULT_CAP`], so every claim goes through the cap's path
/// (advisory lock, count of running rows) while no test's own counts come
/// near it. Any other value, or none, keeps the FIFO claim and no cap.
pub fn fair_claims() -> bool {
    std::env::var("VOIDRUNNER_TEST_CLAIM_ORDER").is_ok_and(|v| v == "fair")
}

/// The default cap of the fair pass: above any test's number of running
/// executions, so the cap is checked on every claim and never reached.
pub const FAIR_PASS_DEFAULT_CAP: u32 = 100_000;

pub async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

pub async fn fixture_with(adjust: impl FnOnce(&mut voidrunner_db::DbConfig)) -> Fixture {
    let db = TestDatabase::with_config(adjust)
        .await
        .expect("test database");
    let users = PgUserRepository::new(db.db().clone());
    let user = users
        .create(NewUser::new(
            "worker-owner@example.com",
            PasswordHash::new("h"),
        ))
        .await
        .unwrap();
    let mut queue = PgExecutionQueue::new(db.db().clone());
    if fair_claims() {
        queue = queue.with_claim_order(voidrunner_db::ClaimOrder::Fair);
        use voidrunner_db::ConcurrencyLimits;
        db.db()
            .concurrency_limits()
            .set_default_limit(Some(FAIR_PASS_DEFAULT_CAP))
            .await
            .unwrap();
    }
    Fixture {
        tasks: PgTaskRepository::new(db.db().clone()),
        executions: PgExecutionRepository::new(db.db().clone()),
        queue,
        users,
        user,
        db,
    }
}

impl Fixture {
    pub async fn task(&self, name: &str, priority: i32) -> Task {
        self.tasks
            .create(NewTask::new(self.user.id, name, "print(1)").priority(priority))
            .await
            .unwrap()
    }

    /// `n` tasks created with SQL (fast) and queued with one enqueue_many.
    pub async fn queued(
        &self,
        n: usize,
        priority_of: impl Fn(usize) -> i32,
    ) -> Vec<voidrunner_db::TaskExecution> {
        let tasks: Vec<NewTask> = (0..n)
            .map(|i| {
                NewTask::new(self.user.id, format!("t{i}"), "print(1)").priority(priority_of(i))
            })
            .collect();
        let created = self.tasks.create_many(tasks).await.unwrap();
        use voidrunner_db::ExecutionQueue;
        self.queue
            .enqueue_many(created.iter().map(|t| t.id).collect(), None)
            .await
            .unwrap()
    }

    /// The driver configuration of a connection of its own to the test
    /// database, straight to the server: the direct URL when the pool goes
    /// through a transaction pooler (whose server connections keep no
    /// session from one statement to the next).
    pub async fn session_pg_config(&self) -> tokio_postgres::Config {
        let config = self.db.config().await.unwrap();
        config
            .direct_pg_config()
            .unwrap_or(config.pg_config())
            .clone()
    }

    /// Raw SQL on the test database.
    pub async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T {
        self.db
            .raw_client()
            .await
            .unwrap()
            .query_one(sql, params)
            .await
            .unwrap()
            .get(0)
    }
}
