//! The tenant-scoped repositories: what a request handler acting for one
//! user may do with tasks and executions.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    ExecutionId, NewTask, Page, PageRequest, Task, TaskExecution, TaskId, TaskStatus,
    TaskStatusCounts, TaskUpdate, Timestamp, UserId,
};
use crate::model::{TaskSort, TaskWithLatest};

/// One user's tasks: [`TaskRepository`](crate::TaskRepository) narrowed to
/// the rows of [`user_id`](Self::user_id).
///
/// Another user's task answers exactly as a missing one does (`NotFound`,
/// an empty page, a count of 0) and is left unchanged; so does a task id
/// that never existed. From [`Database::scoped`](crate::Database::scoped),
/// [`Transaction::scoped`](crate::Transaction::scoped) or
/// [`Repositories::scoped`](crate::Repositories::scoped); see the
/// [tenants guide](crate::docs::tenants) for what the scope is enforced by.
/// The methods validate and fail as their unscoped twins do.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScopedTaskRepository: Send + Sync {
    /// The user this view is scoped to.
    fn user_id(&self) -> UserId;

    /// Creates a pending task owned by the scope's user. A `NewTask` whose
    /// `user_id` names anyone else is a `Validation` error (field
    /// `user_id`), before any SQL.
    async fn create(&self, task: NewTask) -> Result<Task>;

    /// [`create`](Self::create) for many tasks in one statement, all or
    /// nothing; every task must name the scope's user.
    async fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Task>>;

    /// The user's task `id`; `NotFound` otherwise.
    async fn get(&self, id: TaskId) -> Result<Task>;

    /// Changes the fields `update` sets on the user's task `id`; `NotFound`
    /// otherwise, `Validation`.
    async fn update(&self, id: TaskId, update: TaskUpdate) -> Result<Task>;

    /// Sets the status of the user's task by hand (pending or cancelled),
    /// as [`TaskRepository::update_status`](crate::TaskRepository::update_status).
    async fn update_status(&self, id: TaskId, status: TaskStatus) -> Result<Task>;

    /// Deletes the user's task and its executions; `NotFound` otherwise.
    async fn delete(&self, id: TaskId) -> Result<()>;

    /// A page of the user's tasks, by priority then newest.
    async fn list(&self, page: PageRequest) -> Result<Page<Task>>;

    /// A page of the user's tasks in `status`.
    async fn list_by_status(&self, status: TaskStatus, page: PageRequest) -> Result<Page<Task>>;

    /// A page of the user's tasks whose metadata contains `filter` (JSONB
    /// `@>`), as [`TaskRepository::search_by_metadata`](crate::TaskRepository::search_by_metadata).
    async fn search_by_metadata(
        &self,
        filter: serde_json::Value,
        page: PageRequest,
    ) -> Result<Page<Task>>;

    /// How many tasks the user has.
    async fn count(&self) -> Result<i64>;

    /// How many of the user's tasks are in `status`.
    async fn count_by_status(&self, status: TaskStatus) -> Result<i64>;

    /// A page of the user's tasks (in `status`, when given) in the order
    /// `sort`, as [`TaskRepository::list_sorted`](crate::TaskRepository::list_sorted)
    /// of the user's filter; the cursors are that list's.
    async fn list_sorted(
        &self,
        status: Option<TaskStatus>,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<Task>>;

    /// [`list_sorted`](Self::list_sorted) with each task's latest
    /// execution and execution count, in one statement.
    async fn list_with_latest(
        &self,
        status: Option<TaskStatus>,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<TaskWithLatest>>;

    /// How many of the user's tasks are in each status, in one read; like
    /// the counts above, from the user's counters (their cost does not
    /// grow with the tasks).
    async fn status_counts(&self) -> Result<TaskStatusCounts>;
}

/// One user's executions: what a request handler may read and ask of the
/// queue for the tasks of [`user_id`](Self::user_id). Claims, heartbeats,
/// completions, the rescuer and pruning are the workers' and stay on the
/// unscoped [`ExecutionQueue`](crate::ExecutionQueue).
///
/// Another user's task or execution answers exactly as a missing one does
/// (`NotFound`, `None`, an empty page, a count of 0) and is left unchanged.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScopedExecutionRepository: Send + Sync {
    /// The user this view is scoped to.
    fn user_id(&self) -> UserId;

    /// Queues a run of the user's task, as
    /// [`ExecutionQueue::enqueue`](crate::ExecutionQueue::enqueue);
    /// `NotFound` for another user's task.
    async fn enqueue(&self, task_id: TaskId, run_after: Option<Timestamp>)
    -> Result<TaskExecution>;

    /// [`enqueue`](Self::enqueue) for many of the user's tasks, all or
    /// nothing: `NotFound` names the first task that is missing or another
    /// user's, and then nothing is queued.
    async fn enqueue_many(
        &self,
        task_ids: Vec<TaskId>,
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>>;

    /// The user's execution `id`; `NotFound` otherwise.
    async fn get(&self, id: ExecutionId) -> Result<TaskExecution>;

    /// A page of all the user's executions, newest first.
    async fn list(&self, page: PageRequest) -> Result<Page<TaskExecution>>;

    /// A page of the executions of the user's task, newest first; empty
    /// for another user's task.
    async fn list_by_task(&self, task_id: TaskId, page: PageRequest)
    -> Result<Page<TaskExecution>>;

    /// The newest execution of the user's task; `None` when it has none or
    /// is not the user's.
    async fn latest_for_task(&self, task_id: TaskId) -> Result<Option<TaskExecution>>;

    /// Cancels the user's pending or running execution and its task, as
    /// [`ExecutionQueue::cancel`](crate::ExecutionQueue::cancel);
    /// `NotFound` for another user's.
    async fn cancel(&self, id: ExecutionId) -> Result<TaskExecution>;

    /// How many executions the user's tasks have.
    async fn count(&self) -> Result<i64>;

    /// How many executions the user's task has; 0 for another user's.
    async fn count_by_task(&self, task_id: TaskId) -> Result<i64>;
}
