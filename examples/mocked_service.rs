//! One service function, written against the unit-of-work seam, run in a
//! PostgreSQL transaction in production and over mockall mocks in a unit
//! test, unchanged.
//!
//! ```text
//! cargo run --example mocked_service     # the mocked runs, then the same over PostgreSQL
//! cargo test --example mocked_service    # the unit tests at the bottom: mocks only
//! ```
//!
//! The PostgreSQL part finds its server as the tests do (`DATABASE_URL`, else
//! 127.0.0.1:5432, else a private cluster from the server binaries) and
//! works in a throwaway database of the test harness, dropped at the end.
//!
//! In a downstream crate:
//!
//! ```toml
//! [dependencies]
//! voidrunner-db = "0.1"
//!
//! [dev-dependencies]
//! voidrunner-db = { version = "0.1", features = ["mock"] }
//! ```

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Error, MockExecutionQueue, MockTaskRepository, MockUserRepository, NewTask, NewUser,
    PassThroughUnitOfWork, PasswordHash, Repositories, TaskExecution, TaskId, UnitOfWork,
    UnitOfWorkExt, UserId, fixtures,
};

// ---------------------------------------------------------------------------
// The service. It sees only `&dyn UnitOfWork` and the repository traits.

/// How many tasks a user may own.
const MAX_TASKS_PER_USER: i64 = 3;

/// The service's own error: callers match on it, and the unit of work hands
/// it back unchanged. `From<voidrunner_db::Error>` is all the unit of work
/// asks of it.
#[derive(Debug)]
enum SubmitError {
    UnknownUser(UserId),
    QuotaExceeded { user: UserId, limit: i64 },
    Storage(Error),
}

impl From<Error> for SubmitError {
    fn from(err: Error) -> Self {
        SubmitError::Storage(err)
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::UnknownUser(user) => write!(f, "no user {user}"),
            SubmitError::QuotaExceeded { user, limit } => {
                write!(f, "user {user} already owns {limit} tasks")
            }
            SubmitError::Storage(err) => write!(f, "storage: {err}"),
        }
    }
}

impl std::error::Error for SubmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubmitError::Storage(err) => Some(err),
            _ => None,
        }
    }
}

/// Creates the task and queues its first run: both or neither. The quota
/// counts the new task, so over it the whole unit rolls back, task included.
async fn submit(uow: &dyn UnitOfWork, task: NewTask) -> Result<TaskExecution, SubmitError> {
    let user = task.user_id;
    // `run` takes an FnOnce (the task moves in, no clone) and never retries;
    // `run_with(TransactionOptions::serializable(5), …)` would retry, with
    // an FnMut.
    uow.run(move |repos| async move {
        match repos.users.get(user).await {
            Err(err) if err.is_not_found() => return Err(SubmitError::UnknownUser(user)),
            other => other?,
        };
        let task = repos.tasks.create(task).await?;
        if repos.tasks.count_by_user(user).await? > MAX_TASKS_PER_USER {
            return Err(SubmitError::QuotaExceeded {
                user,
                limit: MAX_TASKS_PER_USER,
            });
        }
        Ok(repos.queue.enqueue(task.id, None).await?)
    })
    .await
}

// ---------------------------------------------------------------------------
// Unit tests of the service: mocks behind a `PassThroughUnitOfWork`, which
// calls the closure with them (no transaction, so no rollback: what is
// tested is the service's logic).

/// Mocks scripted for one submission by `user` that finds `owned` tasks,
/// the new one included; the queue is called only if `enqueued`.
fn scripted(user: UserId, task_id: TaskId, owned: i64, enqueued: bool) -> Repositories {
    let mut users = MockUserRepository::new();
    users
        .expect_get()
        .times(1)
        .returning(|id| Ok(fixtures::user().id(id).build()));
    let mut tasks = MockTaskRepository::new();
    tasks.expect_create().times(1).returning(move |new| {
        // The row the database would return: test data from
        // `voidrunner_db::fixtures` (feature `mock`).
        Ok(fixtures::task()
            .id(task_id)
            .user_id(new.user_id)
            .name(new.name)
            .build())
    });
    tasks
        .expect_count_by_user()
        .withf(move |asked| *asked == user)
        .times(1)
        .returning(move |_| Ok(owned));
    let mut queue = MockExecutionQueue::new();
    queue
        .expect_enqueue()
        .withf(move |id, run_after| *id == task_id && run_after.is_none())
        .times(usize::from(enqueued))
        .returning(|id, _| Ok(fixtures::execution().task_id(id).build()));
    // Executions: a mock without expectations; a call would fail the test.
    Repositories::mocked()
        .with_users(users)
        .with_tasks(tasks)
        .with_queue(queue)
}

async fn unit_test_submit_enqueues_the_new_task() {
    let (user, task_id) = (UserId::new(), TaskId::new());
    let uow = PassThroughUnitOfWork::new(scripted(user, task_id, 1, true));
    let execution = submit(&uow, NewTask::new(user, "nightly", "print(1)"))
        .await
        .expect("submitted");
    assert_eq!(execution.task_id, task_id);
    assert_eq!(uow.runs().len(), 1, "one unit of work");
    println!("mocks:    submitted, execution {} pending", execution.id);
}

async fn unit_test_submit_refuses_over_the_quota() {
    let (user, task_id) = (UserId::new(), TaskId::new());
    let uow = PassThroughUnitOfWork::new(scripted(user, task_id, MAX_TASKS_PER_USER + 1, false));
    let err = submit(&uow, NewTask::new(user, "one too many", "print(1)"))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::QuotaExceeded { .. }), "{err:?}");
    println!("mocks:    refused ({err}); nothing was queued");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn submit_enqueues_the_new_task() {
        super::unit_test_submit_enqueues_the_new_task().await;
    }

    #[tokio::test]
    async fn submit_refuses_over_the_quota() {
        super::unit_test_submit_refuses_over_the_quota().await;
    }
}

// ---------------------------------------------------------------------------
// Production: the same function over PostgreSQL, each call one transaction.

async fn production() -> Result<(), Box<dyn std::error::Error>> {
    // In a service: `Database::connect(DbConfig::from_env()?)` and
    // `db.migrate()`; here a migrated throwaway database of the harness.
    let test_db = TestDatabase::new().await?;
    let db = test_db.db().clone();
    let uow: Arc<dyn UnitOfWork> = Arc::new(db.clone());
    // Outside a unit of work, the pooled repositories: one call, one commit.
    let repos = db.repositories();

    let user = repos
        .users
        .create(NewUser::new(
            "submitter@example.com",
            PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
        ))
        .await?;
    for n in 1..=MAX_TASKS_PER_USER {
        let execution = submit(
            &*uow,
            NewTask::new(user.id, format!("report {n}"), "print(1)"),
        )
        .await?;
        println!("postgres: submitted, execution {} pending", execution.id);
    }
    match submit(&*uow, NewTask::new(user.id, "one too many", "print(1)")).await {
        Err(err @ SubmitError::QuotaExceeded { .. }) => println!("postgres: refused ({err})"),
        other => return Err(format!("expected the quota to refuse, got {other:?}").into()),
    }
    let (tasks, executions) = (
        repos.tasks.count_by_user(user.id).await?,
        repos.executions.count().await?,
    );
    println!("postgres: {tasks} tasks, {executions} executions: the refused task was rolled back");
    assert_eq!(
        (tasks, executions),
        (MAX_TASKS_PER_USER, MAX_TASKS_PER_USER)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    unit_test_submit_enqueues_the_new_task().await;
    unit_test_submit_refuses_over_the_quota().await;
    match production().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mocked_service over PostgreSQL failed: {e}");
            ExitCode::FAILURE
        }
    }
}
