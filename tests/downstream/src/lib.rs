//! A downstream service of voidrunner-db, written against its public API
//! only (`default-features = false`, feature `mock`): repositories held as
//! `Arc<dyn …>`, one repository implemented by hand through the
//! `voidrunner_db::async_trait` re-export, and unit tests over the mocks
//! (scripted through the `voidrunner_db::mockall` re-export), the
//! fixtures, constructed errors and a pass-through unit of work. No
//! database is needed.

use std::fmt;
use std::sync::{Arc, Mutex};

use voidrunner_db::{
    ClaimOrder, ConcurrencyLimit, ConcurrencyLimits, Database, Error, NewTask, NewUser, Page,
    PageRequest, PasswordHash, PgExecutionQueue, Task, TaskId, TaskRepository, TaskStatus, User,
    UserConcurrency, UserId, UserRepository, UserUpdate, fixtures,
};

/// The service's own error.
#[derive(Debug)]
pub enum ServiceError {
    EmailTaken(String),
    UnknownUser(UserId),
    NotRetryable(TaskId, TaskStatus),
    Storage(Error),
}

impl From<Error> for ServiceError {
    fn from(err: Error) -> Self {
        ServiceError::Storage(err)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::EmailTaken(email) => write!(f, "{email} is taken"),
            ServiceError::UnknownUser(user) => write!(f, "no user {user}"),
            ServiceError::NotRetryable(task, status) => {
                write!(f, "task {task} is {status:?}, not retryable")
            }
            ServiceError::Storage(err) => write!(f, "storage: {err}"),
        }
    }
}

impl std::error::Error for ServiceError {}

/// A service over the repository traits.
#[derive(Clone)]
pub struct TaskService {
    users: Arc<dyn UserRepository>,
    tasks: Arc<dyn TaskRepository>,
}

impl TaskService {
    pub fn new(users: Arc<dyn UserRepository>, tasks: Arc<dyn TaskRepository>) -> Self {
        TaskService { users, tasks }
    }

    /// Registers a user; a taken email is the service's own error.
    pub async fn register(&self, email: &str, hash: &str) -> Result<User, ServiceError> {
        match self
            .users
            .create(NewUser::new(email, PasswordHash::new(hash)))
            .await
        {
            Err(err) if err.is_conflict() && err.constraint() == Some("users_email_key") => {
                Err(ServiceError::EmailTaken(email.to_owned()))
            }
            other => Ok(other?),
        }
    }

    /// Submits a task; an owner that does not exist is the service's error.
    pub async fn submit(
        &self,
        user: UserId,
        name: &str,
        script: &str,
    ) -> Result<Task, ServiceError> {
        match self.tasks.create(NewTask::new(user, name, script)).await {
            Err(err) if err.is_foreign_key() => Err(ServiceError::UnknownUser(user)),
            other => Ok(other?),
        }
    }

    /// Puts a failed, timed-out or cancelled task back to pending.
    pub async fn retry(&self, id: TaskId) -> Result<Task, ServiceError> {
        let task = self.tasks.get(id).await?;
        match task.status {
            TaskStatus::Failed | TaskStatus::Timeout | TaskStatus::Cancelled => {
                Ok(self.tasks.update_status(id, TaskStatus::Pending).await?)
            }
            status => Err(ServiceError::NotRetryable(id, status)),
        }
    }
}

/// The operators' side of fair queueing: a worker's queue that claims
/// round-robin between users, and the caps, held as `Arc<dyn …>`.
pub struct QueueAdmin {
    limits: Arc<dyn ConcurrencyLimits>,
}

impl QueueAdmin {
    pub fn new(limits: Arc<dyn ConcurrencyLimits>) -> Self {
        QueueAdmin { limits }
    }

    /// The queue a worker claims from: fair, or the crate's default.
    pub fn worker_queue(db: Database, fair: bool) -> PgExecutionQueue {
        let order = if fair {
            ClaimOrder::Fair
        } else {
            ClaimOrder::default()
        };
        PgExecutionQueue::new(db).with_claim_order(order)
    }

    /// Pauses a user (a cap of 0) and returns how many of theirs still run.
    pub async fn pause(&self, user: UserId) -> Result<u64, ServiceError> {
        self.limits
            .set_user_limit(user, ConcurrencyLimit::Max(0))
            .await?;
        let now: UserConcurrency = self.limits.user_limit(user).await?;
        Ok(now.running)
    }

    /// The cap that applies to `user`, as text for an admin page.
    pub async fn describe(&self, user: UserId) -> Result<String, ServiceError> {
        let now = self.limits.user_limit(user).await?;
        let stored = match now.limit {
            ConcurrencyLimit::Default => "default".to_owned(),
            ConcurrencyLimit::Unlimited => "unlimited".to_owned(),
            ConcurrencyLimit::Max(n) => format!("max {n}"),
        };
        Ok(match now.effective {
            Some(cap) => format!("{stored}: {} of {cap} running", now.running),
            None => format!("{stored}: {} running, no cap", now.running),
        })
    }
}

/// An in-memory [`UserRepository`], implemented by hand with the crate's
/// `async_trait` re-export (no direct dependency on async-trait). `User` is
/// `#[non_exhaustive]`, so its values come from `voidrunner_db::fixtures`.
#[derive(Default)]
pub struct InMemoryUsers {
    users: Mutex<Vec<User>>,
}

fn normalized(email: &str) -> String {
    email.trim().to_lowercase()
}

#[voidrunner_db::async_trait]
impl UserRepository for InMemoryUsers {
    async fn create(&self, user: NewUser) -> voidrunner_db::Result<User> {
        let email = normalized(&user.email);
        if !email.contains('@') {
            return Err(Error::validation("email", "not an email"));
        }
        let mut users = self.users.lock().unwrap();
        if users.iter().any(|u| u.email == email) {
            return Err(Error::conflict("users_email_key"));
        }
        let created = fixtures::user()
            .email(email)
            .password_hash(user.password_hash)
            .build();
        users.push(created.clone());
        Ok(created)
    }

    async fn get(&self, id: UserId) -> voidrunner_db::Result<User> {
        let users = self.users.lock().unwrap();
        users
            .iter()
            .find(|u| u.id == id)
            .cloned()
            .ok_or_else(|| Error::not_found("user", id))
    }

    async fn get_by_email(&self, email: &str) -> voidrunner_db::Result<User> {
        let email = normalized(email);
        let users = self.users.lock().unwrap();
        users
            .iter()
            .find(|u| u.email == email)
            .cloned()
            .ok_or_else(|| Error::not_found("user", email))
    }

    async fn update(&self, id: UserId, update: UserUpdate) -> voidrunner_db::Result<User> {
        let mut users = self.users.lock().unwrap();
        if let Some(email) = &update.email {
            let email = normalized(email);
            if users.iter().any(|u| u.email == email && u.id != id) {
                return Err(Error::conflict("users_email_key"));
            }
        }
        let user = users
            .iter_mut()
            .find(|u| u.id == id)
            .ok_or_else(|| Error::not_found("user", id))?;
        if let Some(email) = update.email {
            user.email = normalized(&email);
        }
        if let Some(hash) = update.password_hash {
            user.password_hash = hash;
        }
        Ok(user.clone())
    }

    async fn delete(&self, id: UserId) -> voidrunner_db::Result<()> {
        let mut users = self.users.lock().unwrap();
        let before = users.len();
        users.retain(|u| u.id != id);
        if users.len() == before {
            return Err(Error::not_found("user", id));
        }
        Ok(())
    }

    async fn list(&self, page: PageRequest) -> voidrunner_db::Result<Page<User>> {
        if page.cursor.is_some() {
            return Err(Error::validation("cursor", "paging is not supported here"));
        }
        let users = self.users.lock().unwrap();
        let limit = page
            .limit
            .unwrap_or(voidrunner_db::model::DEFAULT_PAGE_LIMIT) as usize;
        Ok(Page::last(
            users.iter().rev().take(limit).cloned().collect(),
        ))
    }

    async fn count(&self) -> voidrunner_db::Result<i64> {
        Ok(self.users.lock().unwrap().len() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voidrunner_db::{MockTaskRepository, MockUserRepository};

    fn service(
        users: impl UserRepository + 'static,
        tasks: impl TaskRepository + 'static,
    ) -> TaskService {
        TaskService::new(Arc::new(users), Arc::new(tasks))
    }

    #[tokio::test]
    async fn a_taken_email_is_the_services_error() {
        let svc = service(InMemoryUsers::default(), MockTaskRepository::new());
        let ada = svc.register("Ada@Example.com", "hash").await.unwrap();
        assert_eq!(ada.email, "ada@example.com");
        let err = svc.register("ada@example.com ", "hash").await.unwrap_err();
        assert!(matches!(err, ServiceError::EmailTaken(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_mocked_conflict_answers_as_a_real_one() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .times(1)
            .returning(|_| Err(Error::conflict("users_email_key")));
        let svc = service(users, MockTaskRepository::new());
        let err = svc.register("ada@example.com", "hash").await.unwrap_err();
        assert!(matches!(err, ServiceError::EmailTaken(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_owner_is_the_services_error() {
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_create()
            .times(1)
            .returning(|_| Err(Error::foreign_key("tasks_user_id_fkey")));
        let svc = service(InMemoryUsers::default(), tasks);
        let user = UserId::new();
        let err = svc.submit(user, "report", "print(1)").await.unwrap_err();
        assert!(
            matches!(err, ServiceError::UnknownUser(u) if u == user),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn submit_returns_the_created_task() {
        let owner = fixtures::user().email("ada@example.com").build();
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_create()
            .times(1)
            .returning(|new| Ok(fixtures::task_from(&new)));
        let svc = service(InMemoryUsers::default(), tasks);
        let task = svc.submit(owner.id, "report", "print(1)").await.unwrap();
        assert_eq!((task.user_id, task.name.as_str()), (owner.id, "report"));
        assert_eq!(task.status, TaskStatus::Pending);
    }

    #[tokio::test]
    async fn retry_puts_a_failed_task_back_to_pending() {
        let failed = fixtures::task().status(TaskStatus::Failed).build();
        let id = failed.id;
        let mut tasks = MockTaskRepository::new();
        let found = failed.clone();
        tasks.expect_get().returning(move |_| Ok(found.clone()));
        tasks
            .expect_update_status()
            .withf(move |asked, status| *asked == id && *status == TaskStatus::Pending)
            .times(1)
            .returning(move |_, status| {
                let mut task = failed.clone();
                task.status = status;
                Ok(task)
            });
        let svc = service(InMemoryUsers::default(), tasks);
        assert_eq!(svc.retry(id).await.unwrap().status, TaskStatus::Pending);
    }

    #[tokio::test]
    async fn retry_refuses_a_running_task_and_passes_storage_errors_on() {
        let running = fixtures::task().status(TaskStatus::Running).build();
        let id = running.id;
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_get()
            .times(1)
            .returning(move |_| Ok(running.clone()));
        tasks
            .expect_get()
            .times(1)
            .returning(|id| Err(Error::not_found("task", id)));
        tasks.expect_update_status().never();
        let svc = service(InMemoryUsers::default(), tasks);
        let err = svc.retry(id).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::NotRetryable(_, TaskStatus::Running)),
            "{err:?}"
        );
        let err = svc.retry(TaskId::new()).await.unwrap_err();
        assert!(
            matches!(&err, ServiceError::Storage(e) if e.is_not_found()),
            "{err:?}"
        );
    }

    /// The seam of a service written on the unit of work, from outside the
    /// crate: a nested service call through a pass-through, mocks scripted
    /// with the re-exported mockall, options and durations of its own.
    #[tokio::test]
    async fn the_unit_of_work_seam_from_downstream() {
        use voidrunner_db::mockall::predicate::eq;
        use voidrunner_db::validate::ValidationPolicy;
        use voidrunner_db::{
            PassThroughUnitOfWork, Repositories, RepositoryOptions, UnitOfWork, UnitOfWorkExt,
        };

        async fn create(uow: &dyn UnitOfWork, new: NewTask) -> Result<Task, ServiceError> {
            uow.run(|repos| async move { Ok(repos.tasks.create(new).await?) })
                .await
        }

        let user = UserId::new();
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_count_by_user()
            .with(eq(user))
            .times(1)
            .returning(|_| Ok(0));
        tasks
            .expect_create()
            .times(1)
            .returning(|new| Ok(fixtures::task_from(&new)));
        let uow = PassThroughUnitOfWork::new(Repositories::mocked().with_tasks(tasks));
        let task = uow
            .run(|repos| async move {
                assert_eq!(repos.tasks.count_by_user(user).await?, 0);
                let nested = PassThroughUnitOfWork::new(repos.clone());
                create(&nested, NewTask::new(user, "report", "print(1)")).await
            })
            .await
            .unwrap();
        assert_eq!((task.user_id, task.status), (user, TaskStatus::Pending));
        assert_eq!(uow.runs().len(), 1);

        let options = RepositoryOptions::new().with_validation(ValidationPolicy::default());
        assert_eq!(options, RepositoryOptions::default());
        let timeout = voidrunner_db::config::parse_duration("1m30s").unwrap();
        assert_eq!(timeout.as_secs(), 90);
        assert!(voidrunner_db::config::parse_duration("-1s").is_err());
    }

    /// The caps through the mock: a pause stores `Max(0)`, and a user the
    /// database does not know is the storage's `NotFound`.
    #[tokio::test]
    async fn pausing_a_user_through_mocked_caps() {
        use voidrunner_db::MockConcurrencyLimits;
        use voidrunner_db::mockall::predicate::eq;

        let user = UserId::new();
        let missing = UserId::new();
        let mut limits = MockConcurrencyLimits::new();
        limits
            .expect_set_user_limit()
            .with(eq(user), eq(ConcurrencyLimit::Max(0)))
            .times(1)
            .returning(|_, _| Ok(()));
        limits
            .expect_set_user_limit()
            .with(eq(missing), eq(ConcurrencyLimit::Max(0)))
            .times(1)
            .returning(|id, _| Err(Error::not_found("user", id)));
        // `UserConcurrency` is `#[non_exhaustive]`: the fixture builds it.
        limits
            .expect_user_limit()
            .with(eq(user))
            .returning(|user| {
                Ok(fixtures::user_concurrency(
                    user,
                    ConcurrencyLimit::Max(0),
                    Some(4),
                    2,
                ))
            });
        let admin = QueueAdmin::new(Arc::new(limits));
        assert_eq!(admin.pause(user).await.unwrap(), 2);
        assert_eq!(admin.describe(user).await.unwrap(), "max 0: 2 of 0 running");
        let err = admin.pause(missing).await.unwrap_err();
        assert!(
            matches!(&err, ServiceError::Storage(e) if e.is_not_found()),
            "{err:?}"
        );
        assert_eq!(ClaimOrder::Fair.as_str(), "fair");
        assert_eq!(ClaimOrder::default(), ClaimOrder::Fifo);
        assert_eq!(ConcurrencyLimit::default(), ConcurrencyLimit::Default);
        assert_eq!(ConcurrencyLimit::MAX, i32::MAX as u32);
    }

    #[tokio::test]
    async fn the_hand_written_repository_behaves_like_the_contract() {
        let users = InMemoryUsers::default();
        let ada = users
            .create(NewUser::new("ada@example.com", PasswordHash::new("h")))
            .await
            .unwrap();
        assert_eq!(
            users.get_by_email("ADA@example.com").await.unwrap().id,
            ada.id
        );
        assert_eq!(users.count().await.unwrap(), 1);
        assert_eq!(
            users
                .list(PageRequest::first(10))
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        users.delete(ada.id).await.unwrap();
        assert!(users.get(ada.id).await.unwrap_err().is_not_found());
    }
}
