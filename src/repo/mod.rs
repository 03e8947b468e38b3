//! The repository traits: the crate's public contract.
//!
//! [`crate::pg`] implements them on PostgreSQL; with the `mock` feature,
//! [`MockUserRepository`], [`MockTaskRepository`] and
//! [`MockExecutionRepository`] (mockall) implement them for unit tests.
//! Services hold them as `Arc<dyn TaskRepository>` and so on.
//!
//! Every method validates its input first ([`crate::validate`]): an invalid
//! input returns [`Error::Validation`](crate::Error::Validation) without a
//! round trip and changes nothing. Beyond the errors each method lists, any
//! method can return [`Error::Timeout`](crate::Error::Timeout) and
//! [`Error::Unavailable`](crate::Error::Unavailable).

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    ExecutionId, ExecutionStatus, ExecutionUpdate, NewExecution, NewTask, NewUser, Page,
    PageRequest, Task, TaskExecution, TaskId, TaskStatus, TaskUpdate, User, UserId, UserUpdate,
};

/// Users. Emails are compared after trimming and lower-casing, so lookups
/// and uniqueness are case-insensitive.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Creates a user. `Conflict` (constraint `users_email_key`) when the
    /// email is taken; `Validation` for a bad email or hash.
    async fn create(&self, user: NewUser) -> Result<User>;

    /// The user `id`; `NotFound` when there is none.
    async fn get(&self, id: UserId) -> Result<User>;

    /// The user with this email, in any case; `NotFound` when there is none,
    /// `Validation` when it is not an email.
    async fn get_by_email(&self, email: &str) -> Result<User>;

    /// Changes the fields `update` sets; an empty update returns the user
    /// unchanged. `NotFound`, `Conflict` for a taken email, `Validation`.
    async fn update(&self, id: UserId, update: UserUpdate) -> Result<User>;

    /// Deletes the user and, by cascade, their tasks and executions.
    /// `NotFound` when there is none.
    async fn delete(&self, id: UserId) -> Result<()>;

    /// A page of users, newest first. `Validation` for a bad cursor or a
    /// zero limit.
    async fn list(&self, page: PageRequest) -> Result<Page<User>>;

    /// How many users exist.
    async fn count(&self) -> Result<i64>;
}

/// Tasks. Lists are ordered by priority (highest first), then newest first.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskRepository: Send + Sync {
    /// Creates a pending task. `ForeignKey` (constraint
    /// `tasks_user_id_fkey`) when the user does not exist; `Validation`.
    async fn create(&self, task: NewTask) -> Result<Task>;

    /// The task `id`; `NotFound` when there is none.
    async fn get(&self, id: TaskId) -> Result<Task>;

    /// Changes the fields `update` sets; an empty update returns the task
    /// unchanged. `NotFound`, `Validation`.
    async fn update(&self, id: TaskId, update: TaskUpdate) -> Result<Task>;

    /// Moves the task to `status` if the state machine allows it from the
    /// status it has when the row is locked (same → same is a no-op that
    /// returns the task unchanged). `InvalidTransition` naming the actual
    /// current status otherwise; `NotFound`.
    async fn update_status(&self, id: TaskId, status: TaskStatus) -> Result<Task>;

    /// Deletes the task and its executions. `NotFound` when there is none.
    async fn delete(&self, id: TaskId) -> Result<()>;

    /// A page of every task. `Validation` for a bad cursor or limit.
    async fn list(&self, page: PageRequest) -> Result<Page<Task>>;

    /// A page of one user's tasks. `Validation` for a bad cursor or limit.
    async fn list_by_user(&self, user_id: UserId, page: PageRequest) -> Result<Page<Task>>;

    /// A page of the tasks in `status`. `Validation` for a bad cursor or
    /// limit.
    async fn list_by_status(&self, status: TaskStatus, page: PageRequest) -> Result<Page<Task>>;

    /// A page of the tasks whose metadata contains `filter` (JSONB `@>`:
    /// every key and value of the filter, nested objects and array elements
    /// included). `Validation` when `filter` is not a JSON object, or for a
    /// bad cursor or limit.
    async fn search_by_metadata(
        &self,
        filter: serde_json::Value,
        page: PageRequest,
    ) -> Result<Page<Task>>;

    /// How many tasks exist.
    async fn count(&self) -> Result<i64>;

    /// How many tasks the user has.
    async fn count_by_user(&self, user_id: UserId) -> Result<i64>;

    /// How many tasks are in `status`.
    async fn count_by_status(&self, status: TaskStatus) -> Result<i64>;
}

/// Task executions. Lists are ordered newest first.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ExecutionRepository: Send + Sync {
    /// Creates a pending execution. `ForeignKey` (constraint
    /// `task_executions_task_id_fkey`) when the task does not exist.
    async fn create(&self, execution: NewExecution) -> Result<TaskExecution>;

    /// The execution `id`; `NotFound` when there is none.
    async fn get(&self, id: ExecutionId) -> Result<TaskExecution>;

    /// A page of every execution. `Validation` for a bad cursor or limit.
    async fn list(&self, page: PageRequest) -> Result<Page<TaskExecution>>;

    /// A page of one task's executions. `Validation` for a bad cursor or
    /// limit.
    async fn list_by_task(&self, task_id: TaskId, page: PageRequest)
    -> Result<Page<TaskExecution>>;

    /// A page of the executions in `status`. `Validation` for a bad cursor
    /// or limit.
    async fn list_by_status(
        &self,
        status: ExecutionStatus,
        page: PageRequest,
    ) -> Result<Page<TaskExecution>>;

    /// The newest execution of the task, `None` when it has none (or the
    /// task does not exist).
    async fn latest_for_task(&self, task_id: TaskId) -> Result<Option<TaskExecution>>;

    /// Records results: the fields `update` sets. `NotFound`; `Validation`;
    /// `CheckViolation` (`task_executions_completed_after_started`) when the
    /// new times contradict the stored ones.
    async fn update(&self, id: ExecutionId, update: ExecutionUpdate) -> Result<TaskExecution>;

    /// Moves the execution to `status` if the state machine allows it from
    /// the status it has when the row is locked; entering running sets
    /// `started_at`, entering an end state sets `completed_at` (unless
    /// already set). `InvalidTransition` naming the actual current status
    /// otherwise; `NotFound`.
    async fn update_status(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
    ) -> Result<TaskExecution>;

    /// Deletes the execution. `NotFound` when there is none.
    async fn delete(&self, id: ExecutionId) -> Result<()>;

    /// How many executions exist.
    async fn count(&self) -> Result<i64>;

    /// How many executions the task has.
    async fn count_by_task(&self, task_id: TaskId) -> Result<i64>;

    /// How many executions are in `status`.
    async fn count_by_status(&self, status: ExecutionStatus) -> Result<i64>;
}
