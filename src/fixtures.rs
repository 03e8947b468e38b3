//! Test data for unit tests (feature `mock`): valid model values with
//! sensible defaults, so a test names only the fields it is about.
//!
//! The stored types ([`Task`], [`TaskExecution`], [`User`],
//! [`ClaimedExecution`]) are `#[non_exhaustive]`: outside this crate they
//! cannot be written as struct literals, and would need 5 to 18 fields if
//! they could. A mock returns them from here instead:
//!
//! | function | builds | defaults |
//! |---|---|---|
//! | [`user()`] | [`User`] | fresh id, a unique `user-…@example.com`, a non-empty (fake) hash |
//! | [`task()`] | [`Task`] | fresh id and owner, `pending`, python `print('hello')`, priority 0, timeout 10 s, metadata `{}` |
//! | [`execution()`] | [`TaskExecution`] | fresh id and task, `pending`, attempt 0, runnable now, no worker and no results |
//! | [`claimed()`] | [`ClaimedExecution`] | a `running` execution claimed by `worker-1` (attempt 1, lease 30 s) and the default task's script |
//! | [`task_with_latest()`] | [`TaskWithLatest`] | the default task, no execution, a count of 0 |
//! | [`task_from`] | [`Task`] | what `TaskRepository::create` returns for a [`NewTask`]: its fields, a fresh id, `pending`, now |
//! | [`user_from`] | [`User`] | what `UserRepository::create` returns for a [`NewUser`]: its hash, its email as stored, a fresh id, now |
//! | [`status_counts`] | [`TaskStatusCounts`] | the counts named, 0 for the other statuses |
//! | [`user_concurrency`] | [`UserConcurrency`] | what `ConcurrencyLimits::user_limit` answers for a stored cap, the default and a count of running executions |
//!
//! Each builder starts from a value that passes the crate's validation and
//! its schema's constraints (timestamps are [`Timestamp::now`], ids fresh
//! UUIDv7s), has one setter per field, named after it (a setter of an
//! optional field takes the value and sets `Some`), and a few helpers that
//! keep related fields consistent ([`TaskExecutionBuilder::task`],
//! [`TaskExecutionBuilder::running`], [`TaskExecutionBuilder::finished`],
//! [`ClaimedExecutionBuilder::task`], [`TaskWithLatestBuilder::latest`]). `build()` returns the value; its
//! fields stay public, so a test can still assign one afterwards (to `None`,
//! say).
//!
//! Setters do not validate: a test may build an invalid value on purpose.
//!
//! # Example
//!
//! A service that retries failed tasks, unit-tested over
//! [`MockTaskRepository`](crate::MockTaskRepository):
//!
//! ```
//! use std::sync::Arc;
//! use voidrunner_db::{fixtures, Error, MockTaskRepository, TaskId, TaskRepository, TaskStatus};
//!
//! async fn retry(tasks: &dyn TaskRepository, id: TaskId) -> Result<TaskStatus, Error> {
//!     let task = tasks.get(id).await?;
//!     if task.status != TaskStatus::Failed {
//!         return Err(Error::validation("status", "only failed tasks are retried"));
//!     }
//!     Ok(tasks.update_status(id, TaskStatus::Pending).await?.status)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let owner = fixtures::user().email("ada@example.com").build();
//! let failed = fixtures::task()
//!     .user_id(owner.id)
//!     .name("nightly report")
//!     .status(TaskStatus::Failed)
//!     .build();
//! let id = failed.id;
//!
//! let mut tasks = MockTaskRepository::new();
//! let found = failed.clone();
//! tasks.expect_get().returning(move |_| Ok(found.clone()));
//! tasks
//!     .expect_update_status()
//!     .times(1)
//!     .returning(move |_, status| Ok(fixtures::task().id(id).status(status).build()));
//! let tasks: Arc<dyn TaskRepository> = Arc::new(tasks);
//!
//! assert_eq!(retry(tasks.as_ref(), id).await.unwrap(), TaskStatus::Pending);
//! # }
//! ```

use std::time::Duration;

use crate::model::{
    ClaimedExecution, ConcurrencyLimit, ExecutionId, ExecutionStatus, NewTask, NewUser, Outcome,
    PasswordHash, ScriptType, Task, TaskExecution, TaskId, TaskStatus, TaskStatusCounts,
    TaskWithLatest, Timestamp, User, UserConcurrency, UserId,
};

/// The script of a default task and claim.
pub const DEFAULT_SCRIPT: &str = "print('hello')";
/// The name of a default task.
pub const DEFAULT_TASK_NAME: &str = "fixture task";
/// The worker of a default claim ([`claimed()`]).
pub const DEFAULT_WORKER: &str = "worker-1";
/// The lease [`TaskExecutionBuilder::running`] grants.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The password hash of a default user: the shape of an argon2id hash, but
/// the hash of no password.
pub const DEFAULT_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Zml4dHVyZS1zYWx0$Zml4dHVyZS1oYXNoLW5vdC1hLXBhc3N3b3Jk";

fn plus(at: Timestamp, by: Duration) -> Timestamp {
    let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
    at.as_offset_date_time()
        .checked_add(by)
        .map_or(at, Timestamp::from)
}

/// Setters that assign a field as is.
macro_rules! setters {
    ($target:ident: $($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$target.$field = $field;
                self
            }
        )*
    };
}

/// Setters that take a string.
macro_rules! string_setters {
    ($target:ident: $($(#[$doc:meta])* $field:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: impl Into<String>) -> Self {
                self.$target.$field = $field.into();
                self
            }
        )*
    };
}

/// Setters of optional fields: the value is set as `Some`.
macro_rules! some_setters {
    ($target:ident: $($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$target.$field = Some($field.into());
                self
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// User

/// A [`User`] with defaults; see [`user()`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct UserBuilder {
    user: User,
}

/// A valid user: a fresh id, a unique email `user-<id>@example.com`, the
/// display name the crate gives it by default (`user-<id>`),
/// [`DEFAULT_PASSWORD_HASH`], created and updated now.
pub fn user() -> UserBuilder {
    let id = UserId::new();
    let now = Timestamp::now();
    UserBuilder {
        user: User {
            id,
            email: format!("user-{}@example.com", id.as_uuid().simple()),
            display_name: format!("user-{}", id.as_uuid().simple()),
            password_hash: PasswordHash::new(DEFAULT_PASSWORD_HASH),
            created_at: now,
            updated_at: now,
        },
    }
}

impl Default for UserBuilder {
    fn default() -> Self {
        user()
    }
}

impl UserBuilder {
    setters! { user:
        /// Sets the id.
        id: UserId;
        /// Sets the hash.
        password_hash: PasswordHash;
        /// Sets the creation time.
        created_at: Timestamp;
        /// Sets the last change time.
        updated_at: Timestamp;
    }

    string_setters! { user:
        /// Sets the email as given: stored emails are trimmed and
        /// lower-cased, so a realistic one is too.
        email;
        /// Sets the display name as given (stored ones are trimmed).
        display_name;
    }

    /// The user.
    pub fn build(self) -> User {
        self.user
    }
}

impl From<UserBuilder> for User {
    fn from(builder: UserBuilder) -> User {
        builder.build()
    }
}

/// The [`User`] that `UserRepository::create` returns for `new`: a fresh
/// id, `new`'s password hash, its email as the crate stores it (trimmed
/// and lower-cased), its display name as stored (trimmed; by default the
/// email's part before the `@`), created and updated now. For a mock's
/// `create`:
///
/// ```
/// use voidrunner_db::{fixtures, MockUserRepository, NewUser, PasswordHash, UserRepository};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut users = MockUserRepository::new();
/// users.expect_create().returning(|new| Ok(fixtures::user_from(&new)));
///
/// let user = users
///     .create(NewUser::new(" Ada@Example.com ", PasswordHash::new("$argon2id$v=19$h")))
///     .await
///     .unwrap();
/// assert_eq!(user.email, "ada@example.com");
/// assert_eq!(user.display_name, "ada");
/// # }
/// ```
///
/// Nothing is validated: an email the crate would refuse is copied (and
/// lower-cased) all the same.
pub fn user_from(new: &NewUser) -> User {
    // As in `task_from`: a new field of `NewUser` must be copied here.
    let NewUser {
        email,
        password_hash,
        display_name,
    } = new;
    // What `validate::email` and `validate::display_name` store; repeated
    // here rather than called, as they refuse what a test may pass on
    // purpose.
    let email = email.trim().to_lowercase();
    let display_name = match display_name {
        Some(name) => name.trim().to_owned(),
        None => crate::validate::default_display_name(&email),
    };
    user()
        .email(email)
        .display_name(display_name)
        .password_hash(password_hash.clone())
        .build()
}

// ---------------------------------------------------------------------------
// Task

/// A [`Task`] with defaults; see [`task()`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct TaskBuilder {
    task: Task,
}

/// A valid pending task: a fresh id and owner, [`DEFAULT_TASK_NAME`], no
/// description, python [`DEFAULT_SCRIPT`], priority 0, timeout 10 s,
/// metadata `{}`, created and updated now. The defaults are those of
/// [`NewTask::new`](crate::NewTask::new).
pub fn task() -> TaskBuilder {
    let now = Timestamp::now();
    TaskBuilder {
        task: Task {
            id: TaskId::new(),
            user_id: UserId::new(),
            name: DEFAULT_TASK_NAME.to_owned(),
            description: None,
            script_content: DEFAULT_SCRIPT.to_owned(),
            script_type: ScriptType::Python,
            status: TaskStatus::Pending,
            priority: 0,
            timeout_seconds: 10,
            metadata: serde_json::Value::Object(Default::default()),
            created_at: now,
            updated_at: now,
        },
    }
}

impl Default for TaskBuilder {
    fn default() -> Self {
        task()
    }
}

impl TaskBuilder {
    setters! { task:
        /// Sets the id.
        id: TaskId;
        /// Sets the owner.
        user_id: UserId;
        /// Sets the script's language.
        script_type: ScriptType;
        /// Sets the status.
        status: TaskStatus;
        /// Sets the priority.
        priority: i32;
        /// Sets the timeout in seconds.
        timeout_seconds: i32;
        /// Sets the metadata (valid when a JSON object).
        metadata: serde_json::Value;
        /// Sets the creation time.
        created_at: Timestamp;
        /// Sets the last change time.
        updated_at: Timestamp;
    }

    string_setters! { task:
        /// Sets the name.
        name;
        /// Sets the script.
        script_content;
    }

    some_setters! { task:
        /// Sets the description.
        description: impl Into<String>;
    }

    /// The task.
    pub fn build(self) -> Task {
        self.task
    }
}

impl From<TaskBuilder> for Task {
    fn from(builder: TaskBuilder) -> Task {
        builder.build()
    }
}

/// The [`Task`] that `TaskRepository::create` returns for `new`: every field
/// of `new` copied (owner, name, description, script and its type,
/// priority, timeout, metadata), a fresh id, `pending`, created and updated
/// now. For a mock's `create`:
///
/// ```
/// use voidrunner_db::{fixtures, MockTaskRepository, NewTask, TaskRepository, TaskStatus, UserId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut tasks = MockTaskRepository::new();
/// tasks.expect_create().returning(|new| Ok(fixtures::task_from(&new)));
///
/// let new = NewTask::new(UserId::new(), "nightly", "print(1)").priority(3);
/// let task = tasks.create(new.clone()).await.unwrap();
/// assert_eq!((task.user_id, task.name.as_str(), task.priority), (new.user_id, "nightly", 3));
/// assert_eq!(task.status, TaskStatus::Pending);
/// # }
/// ```
///
/// A test that needs a known id sets it afterwards (`task.id = id`): the
/// fields are public. Nothing is validated: a task the crate would refuse
/// is copied all the same.
pub fn task_from(new: &NewTask) -> Task {
    // Taken apart field by field, so that a field added to `NewTask` does
    // not compile until it is copied here too.
    let NewTask {
        user_id,
        name,
        description,
        script_content,
        script_type,
        priority,
        timeout_seconds,
        metadata,
    } = new;
    let mut task = task().build();
    task.user_id = *user_id;
    task.name.clone_from(name);
    task.description.clone_from(description);
    task.script_content.clone_from(script_content);
    task.script_type = *script_type;
    task.priority = *priority;
    task.timeout_seconds = *timeout_seconds;
    task.metadata.clone_from(metadata);
    task
}

/// The [`TaskStatusCounts`] a mock returns: `n` tasks in each named
/// status, 0 in the others (a status named twice adds up).
///
/// ```
/// use voidrunner_db::{fixtures, MockTaskRepository, TaskStatus};
///
/// let mut tasks = MockTaskRepository::new();
/// tasks.expect_status_counts().returning(|| {
///     Ok(fixtures::status_counts(&[(TaskStatus::Running, 3), (TaskStatus::Pending, 12)]))
/// });
/// ```
pub fn status_counts(counts: &[(TaskStatus, i64)]) -> TaskStatusCounts {
    counts
        .iter()
        .fold(TaskStatusCounts::default(), |sum, &(status, n)| {
            sum.with(status, sum.get(status) + n)
        })
}

/// What [`ConcurrencyLimits::user_limit`](crate::ConcurrencyLimits::user_limit)
/// answers for `user_id` whose stored cap is `limit`, under the
/// deployment's `default` cap, with `running` executions: the cap that
/// applies (`effective`) follows from the two as the repository derives it.
///
/// ```
/// use voidrunner_db::{fixtures, ConcurrencyLimit, MockConcurrencyLimits};
///
/// let mut limits = MockConcurrencyLimits::new();
/// limits.expect_user_limit().returning(|user| {
///     Ok(fixtures::user_concurrency(user, ConcurrencyLimit::Default, Some(4), 1))
/// });
/// ```
pub fn user_concurrency(
    user_id: UserId,
    limit: ConcurrencyLimit,
    default: Option<u32>,
    running: u64,
) -> UserConcurrency {
    let effective = match limit {
        ConcurrencyLimit::Default => default,
        ConcurrencyLimit::Unlimited => None,
        ConcurrencyLimit::Max(n) => Some(n),
    };
    UserConcurrency {
        user_id,
        limit,
        effective,
        running,
    }
}

// ---------------------------------------------------------------------------
// TaskExecution

/// A [`TaskExecution`] with defaults; see [`execution()`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct TaskExecutionBuilder {
    execution: TaskExecution,
}

/// A valid pending execution, as
/// [`ExecutionQueue::enqueue`](crate::ExecutionQueue::enqueue) leaves it: a
/// fresh id and task, priority 0, attempt 0, runnable now, no worker, lease
/// or results, created and updated now.
pub fn execution() -> TaskExecutionBuilder {
    let now = Timestamp::now();
    TaskExecutionBuilder {
        execution: TaskExecution {
            id: ExecutionId::new(),
            task_id: TaskId::new(),
            status: ExecutionStatus::Pending,
            return_code: None,
            stdout: None,
            stderr: None,
            execution_time_ms: None,
            memory_usage_bytes: None,
            started_at: None,
            completed_at: None,
            created_at: now,
            priority: 0,
            run_after: now,
            attempt: 0,
            worker_id: None,
            lease_expires_at: None,
            heartbeat_at: None,
            updated_at: now,
        },
    }
}

impl Default for TaskExecutionBuilder {
    fn default() -> Self {
        execution()
    }
}

impl TaskExecutionBuilder {
    setters! { execution:
        /// Sets the id.
        id: ExecutionId;
        /// Sets the task run.
        task_id: TaskId;
        /// Sets the status alone; [`running`](Self::running) and
        /// [`finished`](Self::finished) also set what the status implies.
        status: ExecutionStatus;
        /// Sets the creation time.
        created_at: Timestamp;
        /// Sets the queue priority.
        priority: i32;
        /// Sets the time before which it is not claimed.
        run_after: Timestamp;
        /// Sets the claim count.
        attempt: i32;
        /// Sets the last change time.
        updated_at: Timestamp;
    }

    some_setters! { execution:
        /// Sets the exit code.
        return_code: i32;
        /// Sets the standard output.
        stdout: impl Into<String>;
        /// Sets the standard error.
        stderr: impl Into<String>;
        /// Sets the run time in milliseconds.
        execution_time_ms: i32;
        /// Sets the peak memory in bytes.
        memory_usage_bytes: i64;
        /// Sets the start time.
        started_at: Timestamp;
        /// Sets the end time.
        completed_at: Timestamp;
        /// Sets the worker.
        worker_id: impl Into<String>;
        /// Sets the lease's end.
        lease_expires_at: Timestamp;
        /// Sets the last heartbeat.
        heartbeat_at: Timestamp;
    }

    /// An execution of `task`: its id and priority, as enqueueing copies
    /// them.
    pub fn task(mut self, task: &Task) -> Self {
        self.execution.task_id = task.id;
        self.execution.priority = task.priority;
        self
    }

    /// Claimed by `worker_id` now, as
    /// [`ExecutionQueue::claim`](crate::ExecutionQueue::claim) leaves it:
    /// `running`, one more attempt, started and heartbeat now, a lease of
    /// [`DEFAULT_LEASE`], no end time.
    pub fn running(mut self, worker_id: impl Into<String>) -> Self {
        let now = Timestamp::now();
        let e = &mut self.execution;
        e.status = ExecutionStatus::Running;
        e.attempt = e.attempt.saturating_add(1);
        e.worker_id = Some(worker_id.into());
        e.started_at = Some(now);
        e.completed_at = None;
        e.heartbeat_at = Some(now);
        e.lease_expires_at = Some(plus(now, DEFAULT_LEASE));
        e.updated_at = now;
        self
    }

    /// Ended with `outcome` now, as
    /// [`ExecutionQueue::complete`](crate::ExecutionQueue::complete) leaves
    /// it: the outcome's status and results, ended now (not before its
    /// start, which is now if it had none), no lease; the worker stays.
    pub fn finished(mut self, outcome: &Outcome) -> Self {
        let now = Timestamp::now();
        let e = &mut self.execution;
        e.status = outcome.status;
        e.return_code = outcome.return_code;
        e.stdout.clone_from(&outcome.stdout);
        e.stderr.clone_from(&outcome.stderr);
        e.execution_time_ms = outcome.execution_time_ms;
        e.memory_usage_bytes = outcome.memory_usage_bytes;
        let started = *e.started_at.get_or_insert(now);
        e.completed_at = Some(now.max(started));
        e.lease_expires_at = None;
        e.updated_at = now;
        self
    }

    /// The execution.
    pub fn build(self) -> TaskExecution {
        self.execution
    }
}

impl From<TaskExecutionBuilder> for TaskExecution {
    fn from(builder: TaskExecutionBuilder) -> TaskExecution {
        builder.build()
    }
}

// ---------------------------------------------------------------------------
// ClaimedExecution

/// A [`ClaimedExecution`] with defaults; see [`claimed()`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct ClaimedExecutionBuilder {
    claimed: ClaimedExecution,
}

/// A valid claim: an execution of a fresh task, claimed by
/// [`DEFAULT_WORKER`] now ([`TaskExecutionBuilder::running`]), with the
/// default task's python [`DEFAULT_SCRIPT`] and timeout 10 s.
pub fn claimed() -> ClaimedExecutionBuilder {
    ClaimedExecutionBuilder {
        claimed: ClaimedExecution {
            execution: execution().running(DEFAULT_WORKER).build(),
            script_content: DEFAULT_SCRIPT.to_owned(),
            script_type: ScriptType::Python,
            timeout_seconds: 10,
        },
    }
}

impl Default for ClaimedExecutionBuilder {
    fn default() -> Self {
        claimed()
    }
}

impl ClaimedExecutionBuilder {
    setters! { claimed:
        /// Sets the execution whole (see [`execution()`]).
        execution: TaskExecution;
        /// Sets the script's language.
        script_type: ScriptType;
        /// Sets the timeout in seconds.
        timeout_seconds: i32;
    }

    string_setters! { claimed:
        /// Sets the script.
        script_content;
    }

    /// A claim of an execution of `task`: the execution's task id and
    /// priority, and the task's script, language and timeout.
    pub fn task(mut self, task: &Task) -> Self {
        self.claimed.execution.task_id = task.id;
        self.claimed.execution.priority = task.priority;
        self.claimed.script_content.clone_from(&task.script_content);
        self.claimed.script_type = task.script_type;
        self.claimed.timeout_seconds = task.timeout_seconds;
        self
    }

    /// Claimed by `worker_id` instead of [`DEFAULT_WORKER`].
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.claimed.execution.worker_id = Some(worker_id.into());
        self
    }

    /// The claim.
    pub fn build(self) -> ClaimedExecution {
        self.claimed
    }
}

impl From<ClaimedExecutionBuilder> for ClaimedExecution {
    fn from(builder: ClaimedExecutionBuilder) -> ClaimedExecution {
        builder.build()
    }
}

// ---------------------------------------------------------------------------
// TaskWithLatest

/// A [`TaskWithLatest`] with defaults; see [`task_with_latest()`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct TaskWithLatestBuilder {
    item: TaskWithLatest,
}

/// A row of a list with latest executions: the default [`task()`], no
/// execution, a count of 0.
pub fn task_with_latest() -> TaskWithLatestBuilder {
    TaskWithLatestBuilder {
        item: TaskWithLatest::new(task().build(), None, 0),
    }
}

impl Default for TaskWithLatestBuilder {
    fn default() -> Self {
        task_with_latest()
    }
}

impl TaskWithLatestBuilder {
    setters! { item:
        /// Sets the task whole (see [`task()`]); the latest execution, if
        /// any, keeps its task id.
        task: Task;
        /// Sets the count as is.
        execution_count: i64;
    }

    /// The task's latest execution: `execution` with the task's id (and
    /// priority), and a count of at least 1.
    pub fn latest(mut self, execution: TaskExecution) -> Self {
        let mut execution = execution;
        execution.task_id = self.item.task.id;
        execution.priority = self.item.task.priority;
        self.item.latest_execution = Some(execution);
        self.item.execution_count = self.item.execution_count.max(1);
        self
    }

    /// The row.
    pub fn build(self) -> TaskWithLatest {
        self.item
    }
}

impl From<TaskWithLatestBuilder> for TaskWithLatest {
    fn from(builder: TaskWithLatestBuilder) -> TaskWithLatest {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutionUpdate, NewTask};
    use crate::validate::{self, ValidationPolicy};

    fn as_new_task(task: &Task) -> NewTask {
        let mut new = NewTask::new(task.user_id, &task.name, &task.script_content)
            .script_type(task.script_type)
            .priority(task.priority)
            .timeout_seconds(task.timeout_seconds)
            .metadata(task.metadata.clone());
        new.description.clone_from(&task.description);
        new
    }

    fn results_of(e: &TaskExecution) -> ExecutionUpdate {
        ExecutionUpdate {
            return_code: e.return_code,
            stdout: e.stdout.clone(),
            stderr: e.stderr.clone(),
            execution_time_ms: e.execution_time_ms,
            memory_usage_bytes: e.memory_usage_bytes,
            started_at: e.started_at,
            completed_at: e.completed_at,
        }
    }

    /// What the schema's CHECK constraints (V1, V2, V4) require of a row.
    fn assert_execution_row_valid(e: &TaskExecution) {
        validate::execution_update(&results_of(e)).unwrap();
        validate::priority(e.priority).unwrap();
        assert!(e.attempt >= 0);
        if let Some(worker) = &e.worker_id {
            validate::worker_id(worker).unwrap();
        }
        if e.status == ExecutionStatus::Running {
            assert!(e.lease_expires_at.is_some(), "running needs a lease");
            assert!(e.started_at.is_some());
        }
        if e.status.is_terminal() {
            assert!(e.completed_at.is_some());
            assert!(e.lease_expires_at.is_none());
        }
    }

    #[test]
    fn defaults_pass_validation() {
        let policy = ValidationPolicy::default();

        let user = user().build();
        assert_eq!(validate::email(&user.email).unwrap(), user.email);
        assert_eq!(
            validate::display_name(&user.display_name).unwrap(),
            user.display_name
        );
        validate::password_hash(&user.password_hash).unwrap();
        assert_eq!(user.created_at, user.updated_at);
        assert_ne!(user.email, super::user().build().email, "emails are unique");

        let task = task().build();
        validate::new_task(&as_new_task(&task), &policy).unwrap();
        assert_eq!(task.status, TaskStatus::Pending);
        let defaults = NewTask::new(task.user_id, &task.name, &task.script_content);
        assert_eq!(as_new_task(&task), defaults, "the defaults of NewTask::new");

        let pending = execution().build();
        assert_eq!(pending.status, ExecutionStatus::Pending);
        assert_eq!(pending.attempt, 0);
        assert_execution_row_valid(&pending);

        let claim = claimed().build();
        assert_eq!(claim.execution.status, ExecutionStatus::Running);
        assert_eq!(claim.execution.attempt, 1);
        assert_eq!(claim.execution.worker_id.as_deref(), Some(DEFAULT_WORKER));
        assert!(claim.execution.lease_expires_at > claim.execution.started_at);
        assert_execution_row_valid(&claim.execution);
        validate::script_content(&claim.script_content, &policy.script).unwrap();
        validate::timeout_seconds(claim.timeout_seconds).unwrap();

        for outcome in [
            Outcome::completed(0).output("ok\n", ""),
            Outcome::failed(1).usage(12, 4096),
            Outcome::timed_out(),
        ] {
            let done = execution().running("w").finished(&outcome).build();
            assert_eq!(done.status, outcome.status);
            assert_eq!(done.return_code, outcome.return_code);
            assert_execution_row_valid(&done);
            validate::outcome(&outcome).unwrap();
        }
    }

    #[test]
    fn from_inputs_copies_every_field() {
        let new = NewTask::new(UserId::new(), "nightly", "echo hi")
            .script_type(ScriptType::Bash)
            .priority(9)
            .timeout_seconds(600)
            .metadata(serde_json::json!({ "team": "data" }));
        let new = NewTask {
            description: Some("the nightly report".into()),
            ..new
        };
        let task = task_from(&new);
        assert_eq!(as_new_task(&task), new);
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(task.created_at, task.updated_at);
        assert_ne!(task.id, task_from(&new).id, "ids are fresh");
        validate::new_task(&as_new_task(&task), &ValidationPolicy::default()).unwrap();

        let hash = PasswordHash::new("$argon2id$v=19$hash");
        let user = user_from(&NewUser::new("  Ada@Example.COM\n", hash.clone()));
        assert_eq!(user.email, "ada@example.com");
        assert_eq!(user.display_name, "ada");
        assert_eq!(user.password_hash, hash);
        assert_eq!(user.created_at, user.updated_at);
        let named = NewUser::new("a@b.co", hash.clone()).with_display_name(" Ada L. ");
        assert_eq!(user_from(&named).display_name, "Ada L.");
        // Not validated: a test may pass what the crate refuses.
        assert_eq!(user_from(&NewUser::new("", hash)).email, "");
    }

    #[test]
    fn setters_set_and_helpers_agree() {
        let owner = user().email("ada@example.com").build();
        let task = task()
            .user_id(owner.id)
            .name("nightly")
            .description("the nightly report")
            .script_content("echo hi")
            .script_type(ScriptType::Bash)
            .status(TaskStatus::Running)
            .priority(7)
            .timeout_seconds(60)
            .metadata(serde_json::json!({ "team": "data" }))
            .build();
        assert_eq!(owner.email, "ada@example.com");
        assert_eq!(task.user_id, owner.id);
        assert_eq!(task.name, "nightly");
        assert_eq!(task.description.as_deref(), Some("the nightly report"));
        assert_eq!(
            (
                task.script_type,
                task.status,
                task.priority,
                task.timeout_seconds
            ),
            (ScriptType::Bash, TaskStatus::Running, 7, 60)
        );
        validate::new_task(&as_new_task(&task), &ValidationPolicy::default()).unwrap();

        let run = execution().task(&task).build();
        assert_eq!((run.task_id, run.priority), (task.id, 7));

        let row = task_with_latest()
            .task(task.clone())
            .latest(execution().build())
            .build();
        assert_eq!(
            row.latest_execution.as_ref().map(|e| e.task_id),
            Some(task.id)
        );
        assert_eq!(row.execution_count, 1);
        assert_eq!(task_with_latest().build().latest_execution, None);

        let claim = claimed().task(&task).worker_id("w-9").build();
        assert_eq!(claim.execution.task_id, task.id);
        assert_eq!(claim.execution.priority, 7);
        assert_eq!(claim.script_content, "echo hi");
        assert_eq!(claim.script_type, ScriptType::Bash);
        assert_eq!(claim.timeout_seconds, 60);
        assert_eq!(claim.execution.worker_id.as_deref(), Some("w-9"));

        let at = Timestamp::from_unix_micros(1_700_000_000_000_000).unwrap();
        let e = execution()
            .id(ExecutionId::new())
            .status(ExecutionStatus::Completed)
            .return_code(0)
            .stdout("out")
            .stderr("err")
            .execution_time_ms(5)
            .memory_usage_bytes(1024)
            .started_at(at)
            .completed_at(at)
            .created_at(at)
            .run_after(at)
            .attempt(2)
            .worker_id("w")
            .heartbeat_at(at)
            .updated_at(at)
            .build();
        assert_eq!(e.stdout.as_deref(), Some("out"));
        assert_eq!(e.stderr.as_deref(), Some("err"));
        assert_eq!(
            (e.execution_time_ms, e.memory_usage_bytes),
            (Some(5), Some(1024))
        );
        assert_eq!((e.started_at, e.completed_at), (Some(at), Some(at)));
        assert_eq!((e.created_at, e.run_after, e.updated_at), (at, at, at));
        assert_eq!(e.attempt, 2);
        assert_execution_row_valid(&e);

        let retried = execution().attempt(1).running("w").build();
        assert_eq!(retried.attempt, 2, "a claim adds one attempt");
    }
}
