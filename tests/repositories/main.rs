//! Repository tests against a real PostgreSQL server, one fresh database per
//! test; plus the mock-injection test. One binary keeps link time down.
//!
//! What every repository and the queue promise lives in `conformance/`,
//! where each contract runs pooled, inside a transaction and through
//! PgBouncer; the files beside it hold what is particular to one entity
//! (races, hostile inputs and rows, plans, faults).

mod app_role;
mod conformance;
mod counts;
mod counts_attacks;
mod deny_list;
mod display_names;
mod error_constructors;
mod executions;
mod explain;
mod hostile_inputs;
mod hostile_rows;
mod limits;
mod logs;
mod logs_appends;
mod logs_follow;
mod logs_hostile;
mod logs_partitions;
mod logs_plans;
mod logs_review;
mod logs_snapshots;
mod logs_tenants;
mod mocked_service;
mod sorted_plans;
mod sorted_walks;
mod tasks;
mod tenants;
mod tenants_app_role;
mod tenants_attack;
mod tenants_plans;
mod tenants_random;
mod unit_of_work;
mod unit_of_work_seam;

use std::time::Duration;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    ExecutionQueue, NewTask, NewUser, PasswordHash, PgExecutionQueue, PgExecutionRepository,
    PgTaskRepository, PgUserRepository, Task, TaskExecution, TaskRepository, User, UserRepository,
};

/// The lease of the executions tests claim: long enough never to expire
/// during a test.
pub const LEASE: Duration = Duration::from_secs(30);

/// A fresh database, its three repositories and the execution queue (the
/// only way an execution starts running and a task leaves pending for
/// running or an end state).
pub struct Repos {
    pub db: TestDatabase,
    pub users: PgUserRepository,
    pub tasks: PgTaskRepository,
    pub executions: PgExecutionRepository,
    pub queue: PgExecutionQueue,
}

pub async fn repos() -> Repos {
    Repos::over(TestDatabase::new().await.expect("test database"))
}

/// [`repos`] with a pool of `max_connections`, for tests that race.
pub async fn repos_with_pool(max_connections: usize) -> Repos {
    Repos::over(
        TestDatabase::with_config(|c| c.max_connections = max_connections)
            .await
            .expect("test database"),
    )
}

impl Repos {
    fn over(db: TestDatabase) -> Repos {
        Repos {
            users: PgUserRepository::new(db.db().clone()),
            tasks: PgTaskRepository::new(db.db().clone()),
            executions: PgExecutionRepository::new(db.db().clone()),
            queue: PgExecutionQueue::new(db.db().clone()),
            db,
        }
    }

    pub async fn user(&self, email: &str) -> User {
        self.users
            .create(NewUser::new(
                email,
                PasswordHash::new("$argon2id$v=19$hash"),
            ))
            .await
            .expect("create user")
    }

    pub async fn task(&self, user: &User, name: &str) -> Task {
        self.tasks
            .create(NewTask::new(user.id, name, "print('hi')"))
            .await
            .expect("create task")
    }

    /// What worker `worker` gets from one claim of up to `limit` executions:
    /// the executions, now running under its lease.
    pub async fn claim(&self, worker: &str, limit: u32) -> Vec<TaskExecution> {
        self.queue
            .claim(worker, limit, LEASE)
            .await
            .expect("claim")
            .into_iter()
            .map(|claimed| claimed.execution)
            .collect()
    }

    /// Rows in `table`, read with raw SQL.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.db
            .raw_client()
            .await
            .unwrap()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// The ids of `executions`, in their order.
pub fn ids_of(executions: Vec<TaskExecution>) -> Vec<voidrunner_db::ExecutionId> {
    executions.into_iter().map(|e| e.id).collect()
}
