//! One service function, two backends: `submit` is written against
//! `&dyn UnitOfWork` and runs over mocks (`PassThroughUnitOfWork`, no
//! database) and over PostgreSQL (`Database`, one transaction), unchanged.
//! Its error type is its own; the unit of work hands it back unchanged.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mockall::predicate::eq;
use voidrunner_db::{
    Error, ExecutionRepository, ExecutionStatus, MockExecutionQueue, MockTaskRepository,
    MockUserRepository, NewTask, PageRequest, PassThroughUnitOfWork, Repositories, TaskExecution,
    TaskId, TaskRepository, TaskStatus, TransactionOptions, UnitOfWork, UnitOfWorkExt, UserId,
    fixtures,
};

// The service, as a downstream crate writes it.

/// How many tasks a user may own.
const MAX_TASKS_PER_USER: i64 = 3;

/// The service's own error.
#[derive(Debug)]
enum SubmitError {
    UnknownUser(UserId),
    QuotaExceeded { user: UserId, limit: i64 },
    Db(Error),
}

impl From<Error> for SubmitError {
    fn from(err: Error) -> Self {
        SubmitError::Db(err)
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::UnknownUser(user) => write!(f, "no user {user}"),
            SubmitError::QuotaExceeded { user, limit } => {
                write!(f, "user {user} already owns {limit} tasks")
            }
            SubmitError::Db(err) => write!(f, "storage: {err}"),
        }
    }
}

impl std::error::Error for SubmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubmitError::Db(err) => Some(err),
            _ => None,
        }
    }
}

/// Creates the task and queues its first run, both or neither. The quota
/// counts the new task: over it, the unit of work rolls the task back.
async fn submit(uow: &dyn UnitOfWork, task: NewTask) -> Result<TaskExecution, SubmitError> {
    let user = task.user_id;
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

/// Mocks scripted for one submission by `user` that finds `owned` tasks
/// (the new one included); the queue expects the created task only if
/// `enqueued`.
fn scripted(user: UserId, task_id: TaskId, owned: i64, enqueued: bool) -> Repositories {
    let mut users = MockUserRepository::new();
    users
        .expect_get()
        .with(eq(user))
        .times(1)
        .returning(|id| Ok(fixtures::user().id(id).build()));
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_create()
        .withf(move |new| new.user_id == user)
        .times(1)
        .returning(move |new| {
            let mut task = fixtures::task_from(&new);
            task.id = task_id;
            Ok(task)
        });
    tasks
        .expect_count_by_user()
        .with(eq(user))
        .times(1)
        .returning(move |_| Ok(owned));
    let mut queue = MockExecutionQueue::new();
    queue
        .expect_enqueue()
        .with(eq(task_id), eq(None))
        .times(usize::from(enqueued))
        .returning(|task_id, _| Ok(fixtures::execution().task_id(task_id).build()));
    Repositories::mocked()
        .with_users(users)
        .with_tasks(tasks)
        .with_queue(queue)
}

// Over mocks: the service's logic, no database.

#[tokio::test]
async fn over_mocks_submit_creates_and_enqueues_in_one_unit_of_work() {
    let (user, task_id) = (UserId::new(), TaskId::new());
    let uow = PassThroughUnitOfWork::new(scripted(user, task_id, 1, true));
    let execution = submit(&uow, NewTask::new(user, "nightly", "print(1)"))
        .await
        .unwrap();
    assert_eq!(execution.task_id, task_id);
    assert_eq!(execution.status, ExecutionStatus::Pending);
    assert_eq!(
        uow.runs(),
        [TransactionOptions::default()],
        "exactly one unit of work, run once"
    );
}

#[tokio::test]
async fn over_mocks_the_quota_stops_before_the_queue() {
    let (user, task_id) = (UserId::new(), TaskId::new());
    let uow = PassThroughUnitOfWork::new(scripted(user, task_id, MAX_TASKS_PER_USER + 1, false));
    let err = submit(&uow, NewTask::new(user, "one too many", "print(1)"))
        .await
        .unwrap_err();
    // The service's own variant, not a wrapped crate error. (The pass-through
    // cannot roll the mocked create back; PostgreSQL does, below.)
    assert!(
        matches!(err, SubmitError::QuotaExceeded { user: u, limit: MAX_TASKS_PER_USER } if u == user),
        "{err:?}"
    );
}

#[tokio::test]
async fn over_mocks_a_missing_user_becomes_the_service_s_error() {
    let user = UserId::new();
    let mut users = MockUserRepository::new();
    users
        .expect_get()
        .returning(|id| Err(Error::not_found("user", id)));
    // Tasks and queue are mocks without expectations: any call would fail.
    let uow = PassThroughUnitOfWork::new(Repositories::mocked().with_users(users));
    let err = submit(&uow, NewTask::new(user, "orphan", "print(1)"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::UnknownUser(u) if u == user),
        "{err:?}"
    );
}

#[tokio::test]
async fn over_mocks_a_repository_error_arrives_through_from() {
    let user = UserId::new();
    let mut users = MockUserRepository::new();
    users
        .expect_get()
        .returning(|id| Ok(fixtures::user().id(id).build()));
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_create()
        .returning(|_| Err(Error::validation("name", "too long")));
    let uow =
        PassThroughUnitOfWork::new(Repositories::mocked().with_users(users).with_tasks(tasks));
    let shared: Arc<dyn UnitOfWork> = Arc::new(uow);
    let err = submit(&*shared, NewTask::new(user, "x", "print(1)"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SubmitError::Db(e) if e.is_validation() && e.field() == Some("name")),
        "{err:?}"
    );
}

// Over PostgreSQL: the same function, in a transaction.

#[tokio::test]
async fn over_postgres_submit_commits_the_task_and_its_execution() {
    let r = crate::repos().await;
    let user = r.user("submit@example.com").await;
    let uow: Arc<dyn UnitOfWork> = Arc::new(r.db.db().clone());
    let execution = submit(&*uow, NewTask::new(user.id, "nightly", "print(1)"))
        .await
        .unwrap();
    assert_eq!(r.executions.get(execution.id).await.unwrap(), execution);
    assert_eq!(execution.status, ExecutionStatus::Pending);
    let task = r.tasks.get(execution.task_id).await.unwrap();
    assert_eq!((task.name.as_str(), task.user_id), ("nightly", user.id));
    assert_eq!(task.status, TaskStatus::Pending);
    // The pooled bundle sees the committed rows too.
    let repos = r.db.db().repositories();
    assert_eq!(repos.tasks.count_by_user(user.id).await.unwrap(), 1);
    assert_eq!(repos.executions.count_by_task(task.id).await.unwrap(), 1);
}

#[tokio::test]
async fn over_postgres_the_service_s_error_rolls_back_and_comes_back_unchanged() {
    let r = crate::repos().await;
    let user = r.user("quota@example.com").await;
    for n in 0..MAX_TASKS_PER_USER {
        r.task(&user, &format!("owned {n}")).await;
    }
    let err = submit(r.db.db(), NewTask::new(user.id, "one too many", "print(1)"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::QuotaExceeded { user: u, limit: MAX_TASKS_PER_USER } if u == user.id),
        "{err:?}"
    );
    // The task the unit of work created before the check is gone, and
    // nothing was queued.
    assert_eq!(r.count_rows("tasks").await, MAX_TASKS_PER_USER);
    assert_eq!(r.count_rows("task_executions").await, 0);
    let names: Vec<String> = r
        .tasks
        .list_by_user(user.id, PageRequest::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.iter().any(|n| n == "one too many"), "{names:?}");
    // The connection went back to the pool outside any transaction.
    let stuck: i64 =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(stuck, 0);
}

#[tokio::test]
async fn over_postgres_a_missing_user_writes_nothing() {
    let r = crate::repos().await;
    let missing = UserId::new();
    let err = submit(r.db.db(), NewTask::new(missing, "orphan", "print(1)"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::UnknownUser(u) if u == missing),
        "{err:?}"
    );
    assert_eq!(r.count_rows("tasks").await, 0);
}

#[tokio::test]
async fn over_postgres_a_crate_error_after_a_write_rolls_back_and_arrives_through_from() {
    let r = crate::repos().await;
    let user = r.user("fk@example.com").await;
    let err: SubmitError =
        r.db.db()
            .run(|repos| async move {
                repos
                    .tasks
                    .create(NewTask::new(user.id, "written", "x"))
                    .await?;
                // A task of a user that does not exist: the server refuses it.
                repos
                    .tasks
                    .create(NewTask::new(UserId::new(), "refused", "x"))
                    .await?;
                Ok(())
            })
            .await
            .unwrap_err();
    assert!(
        matches!(&err, SubmitError::Db(e) if e.is_foreign_key()),
        "{err:?}"
    );
    assert_eq!(r.count_rows("tasks").await, 0);
}

/// A serialization failure that the closure turned into its own error type
/// (`SubmitError::Db` here: the unit of work cannot see inside it) is still
/// retried: the failed statement doomed the transaction, and the unit of
/// work noticed.
#[tokio::test]
async fn over_postgres_run_with_retries_serialization_failures_in_the_caller_s_error_type() {
    let r = crate::repos().await;
    let user = r.user("skew@example.com").await.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let run = |name: &'static str| {
        let uow: Arc<dyn UnitOfWork> = Arc::new(r.db.db().clone());
        let barrier = barrier.clone();
        let attempts = attempts.clone();
        tokio::spawn(async move {
            let mut first = true;
            uow.run_with(TransactionOptions::serializable(10), move |repos| {
                let barrier = barrier.clone();
                let wait = std::mem::replace(&mut first, false);
                attempts.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Both read before either writes: write skew.
                    let seen = repos.tasks.count_by_user(user).await?;
                    if wait {
                        barrier.wait().await;
                    }
                    repos
                        .tasks
                        .create(NewTask::new(user, format!("{name} saw {seen}"), "x"))
                        .await?;
                    Ok::<_, SubmitError>(seen)
                }
            })
            .await
        })
    };
    let (a, b) = (run("a"), run("b"));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let mut seen = [a, b];
    seen.sort();
    assert_eq!(seen, [0, 1], "the retried unit saw the other's row");
    assert!(
        attempts.load(Ordering::SeqCst) >= 3,
        "one of them was retried"
    );
    assert_eq!(r.tasks.count_by_user(user).await.unwrap(), 2);
}

/// Without retries, the serialization failure comes back, in the caller's
/// type, and only the other unit's task was written.
#[tokio::test]
async fn over_postgres_without_retries_the_failure_comes_back_in_the_caller_s_type() {
    let r = crate::repos().await;
    let user = r.user("once@example.com").await.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let run = |name: &'static str| {
        let db = r.db.db().clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            db.run_with(TransactionOptions::serializable(0), move |repos| {
                let barrier = barrier.clone();
                async move {
                    let seen = repos.tasks.count_by_user(user).await?;
                    barrier.wait().await;
                    repos
                        .tasks
                        .create(NewTask::new(user, format!("{name} saw {seen}"), "x"))
                        .await?;
                    Ok::<_, SubmitError>(seen)
                }
            })
            .await
        })
    };
    let (a, b) = (run("a"), run("b"));
    let results = [a.await.unwrap(), b.await.unwrap()];
    let failed: Vec<&SubmitError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        matches!(failed[0], SubmitError::Db(e) if e.is_retryable()),
        "{failed:?}"
    );
    assert_eq!(r.tasks.count_by_user(user).await.unwrap(), 1);
}
