//! Repository tests against a real PostgreSQL server, one fresh database per
//! test; plus the mock-injection test. One binary keeps link time down.

mod executions;
mod explain;
mod mocked_service;
mod paging;
mod tasks;
mod users;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    NewTask, NewUser, PasswordHash, PgExecutionRepository, PgTaskRepository, PgUserRepository,
    Task, TaskRepository, User, UserRepository,
};

/// A fresh database and its three repositories.
pub struct Repos {
    pub db: TestDatabase,
    pub users: PgUserRepository,
    pub tasks: PgTaskRepository,
    pub executions: PgExecutionRepository,
}

pub async fn repos() -> Repos {
    let db = TestDatabase::new().await.expect("test database");
    Repos {
        users: PgUserRepository::new(db.db().clone()),
        tasks: PgTaskRepository::new(db.db().clone()),
        executions: PgExecutionRepository::new(db.db().clone()),
        db,
    }
}

impl Repos {
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

    /// Rows in `table`, read with raw SQL.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.db
            .client()
            .await
            .unwrap()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}
