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

use std::time::Duration;

use async_trait::async_trait;

mod limits;
mod logs;
mod scoped;

pub use limits::ConcurrencyLimits;
#[cfg(feature = "mock")]
pub use limits::MockConcurrencyLimits;
pub use logs::{LogRepository, MAX_READ_LINES, ScopedLogRepository};
#[cfg(feature = "mock")]
pub use logs::{MockLogRepository, MockScopedLogRepository};
#[cfg(feature = "mock")]
pub use scoped::{MockScopedExecutionRepository, MockScopedTaskRepository};
pub use scoped::{ScopedExecutionRepository, ScopedTaskRepository};

use crate::error::Result;
use crate::model::{
    ClaimedExecution, Completion, ExecutionId, ExecutionStatus, ExecutionUpdate, Heartbeat,
    NewExecution, NewTask, NewUser, Outcome, Page, PageRequest, RescuePolicy, RescueReport, Task,
    TaskExecution, TaskId, TaskStatus, TaskStatusCounts, TaskUpdate, Timestamp, User, UserId,
    UserUpdate,
};
use crate::model::{TaskFilter, TaskSort, TaskWithLatest};

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

    /// How many users exist, counted exactly (a read of every row).
    async fn count(&self) -> Result<i64>;

    /// About how many users exist: the planner's estimate, from the
    /// statistics of the last `ANALYZE` (or vacuum) scaled to the table's
    /// size now, in time that does not grow with the table. Not a count:
    /// it drifts between analyzes; a table never analyzed (or only while
    /// empty) is counted exactly instead, until autovacuum (or an `ANALYZE
    /// users`) analyzes it. The default method answers [`count`](Self::count).
    async fn estimated_count(&self) -> Result<i64> {
        self.count().await
    }
}

/// Tasks. Lists are ordered by priority (highest first), then newest first;
/// [`list_sorted`](Self::list_sorted) and
/// [`list_with_latest`](Self::list_with_latest) in any [`TaskSort`].
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskRepository: Send + Sync {
    /// Creates a pending task. `ForeignKey` (constraint
    /// `tasks_user_id_fkey`) when the user does not exist; `Validation`.
    async fn create(&self, task: NewTask) -> Result<Task>;

    /// Creates many pending tasks in one statement (`unnest`) and returns
    /// them in input order. All or nothing: `Validation` (the message names
    /// the index of the first bad task) before any SQL; `ForeignKey` when a
    /// user does not exist.
    async fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Task>>;

    /// Loads many pending tasks with binary `COPY`, the fastest path for
    /// large imports, and returns how many were written. All or nothing,
    /// validated like [`create_many`](Self::create_many); returns no rows.
    async fn import(&self, tasks: Vec<NewTask>) -> Result<u64>;

    /// The task `id`; `NotFound` when there is none.
    async fn get(&self, id: TaskId) -> Result<Task>;

    /// Changes the fields `update` sets; an empty update returns the task
    /// unchanged. `NotFound`, `Validation`.
    async fn update(&self, id: TaskId, update: TaskUpdate) -> Result<Task>;

    /// Sets the task's status by hand: `Pending` (a retry from failed,
    /// timeout or cancelled: the task may be queued again, but nothing is
    /// queued until [`ExecutionQueue::enqueue`], which does both) or
    /// `Cancelled` (from pending or running; cancels the task's active
    /// execution in the same statement, and a running worker learns it at
    /// its next heartbeat). The other statuses follow the task's execution
    /// and are set only by the queue: asking for them is a `Validation`
    /// error. The transition is checked against the status the task has
    /// when its row is locked (same → same is a no-op that returns the task
    /// unchanged): `InvalidTransition` naming the actual current status
    /// otherwise; `NotFound`.
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

    /// How many tasks exist. Exact, and read from counters kept with every
    /// write (migration V12), so its cost does not grow with the tasks; so
    /// are the other counts of tasks.
    async fn count(&self) -> Result<i64>;

    /// How many tasks the user has.
    async fn count_by_user(&self, user_id: UserId) -> Result<i64>;

    /// How many tasks are in `status`.
    async fn count_by_status(&self, status: TaskStatus) -> Result<i64>;

    /// A page of the tasks `filter` selects, in the order `sort` (the id
    /// breaks ties), each order an index walk. Its cursors belong to this
    /// order, direction and filter: another's is a `Validation` error
    /// (field `cursor`), as are a bad cursor and a zero limit. See the
    /// [repositories guide](crate::docs::repositories#sorted-lists) for
    /// what a walk by `updated_at` sees of rows changed during it.
    async fn list_sorted(
        &self,
        filter: TaskFilter,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<Task>>;

    /// [`list_sorted`](Self::list_sorted) with each task's latest
    /// execution and execution count, in one statement; the same cursors.
    async fn list_with_latest(
        &self,
        filter: TaskFilter,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<TaskWithLatest>>;

    /// How many tasks are in each status, in one read.
    async fn status_counts(&self) -> Result<TaskStatusCounts>;

    /// How many of the user's tasks are in each status, in one read (all 0
    /// for a user who has none, or does not exist).
    async fn status_counts_by_user(&self, user_id: UserId) -> Result<TaskStatusCounts>;
}

/// Task executions. Lists are ordered newest first.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ExecutionRepository: Send + Sync {
    /// Queues the task: exactly [`ExecutionQueue::enqueue`] without a
    /// delay. Returns the task's active (pending or running) execution if it
    /// has one, else creates a pending one and moves the task to pending.
    /// `NotFound` when the task does not exist; `InvalidTransition` when its
    /// status may not move to pending (completed).
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

    /// Ends the execution by hand: moves it to an end `status` if the state
    /// machine allows it from the status it has when the row is locked
    /// (pending → cancelled; running → any end status), sets `completed_at`
    /// (unless already set), clears the lease, and the task follows (a
    /// cancelled execution cancels its pending or running task; another end
    /// status ends a running task the same way). `InvalidTransition` naming
    /// the actual current status otherwise; `NotFound`. `Running` is a
    /// `Validation` error: only [`ExecutionQueue::claim`] starts an
    /// execution, because it sets the lease the rescuer relies on.
    async fn update_status(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
    ) -> Result<TaskExecution>;

    /// Deletes the execution. Deleting an active (pending or running)
    /// execution cancels its task, like [`cancel`](ExecutionQueue::cancel),
    /// so no task is left pending or running with nothing to run.
    /// `NotFound` when there is none.
    async fn delete(&self, id: ExecutionId) -> Result<()>;

    /// How many executions exist, counted exactly (a read of every row).
    async fn count(&self) -> Result<i64>;

    /// About how many executions exist: the planner's estimate, as
    /// [`UserRepository::estimated_count`], in time that does not grow with
    /// the table. The default method answers [`count`](Self::count).
    async fn estimated_count(&self) -> Result<i64> {
        self.count().await
    }

    /// How many executions the task has.
    async fn count_by_task(&self, task_id: TaskId) -> Result<i64>;

    /// How many executions are in `status`.
    async fn count_by_status(&self, status: ExecutionStatus) -> Result<i64>;
}

/// The execution queue: what workers and schedulers do with executions.
///
/// Workers [`claim`](Self::claim) pending executions under a lease, renew
/// it with [`heartbeat`](Self::heartbeat) and report with
/// [`complete`](Self::complete); [`rescue_expired`](Self::rescue_expired)
/// times out executions whose worker vanished. Each operation is one
/// statement, and the task's status follows the execution's in that same
/// statement, where the task state machine allows it.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ExecutionQueue: Send + Sync {
    /// Queues a run of the task, idempotently: a task that has an active
    /// (pending or running) execution gets that execution back, unchanged.
    /// Otherwise a pending execution with the task's priority, claimable
    /// from `run_after` (default now), and the task moves to pending (from
    /// failed, timeout or cancelled; a pending task stays pending).
    /// `NotFound` for a missing task; `InvalidTransition` when the task is
    /// completed (or running with no active execution, which only another
    /// application writing to the tables can cause).
    async fn enqueue(&self, task_id: TaskId, run_after: Option<Timestamp>)
    -> Result<TaskExecution>;

    /// [`enqueue`](Self::enqueue) for many tasks in one statement, all or
    /// nothing; executions are returned in input order (a task named twice
    /// is queued once and its execution returned twice). `NotFound` names
    /// the first missing task, `InvalidTransition` the first that cannot be
    /// queued; then nothing is queued.
    async fn enqueue_many(
        &self,
        task_ids: Vec<TaskId>,
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>>;

    /// Claims up to `limit` pending executions whose time has come and whose
    /// task is pending (work of a cancelled task never runs), highest
    /// priority first, then oldest, skipping rows other workers are
    /// claiming (a claim never waits): each becomes running, owned by `worker_id` until
    /// `now + lease`, with its attempt incremented; its task becomes running.
    /// An empty vector when there is nothing to do. `Validation` for a bad
    /// worker id, lease or limit (1..=1000).
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedExecution>>;

    /// Extends the worker's lease to `now + lease` and returns its new end.
    /// `LeaseLost` (with the reason: cancelled, expired, finished, not the
    /// owner) when the worker no longer owns the execution; `NotFound`.
    async fn heartbeat(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Timestamp>;

    /// [`heartbeat`](Self::heartbeat) for a worker's whole in-flight set in
    /// one statement: extends the lease of each execution `worker_id` still
    /// owns and returns, per id and in input order, its new end or the error
    /// `heartbeat` would give for it alone (`LeaseLost` with the reason,
    /// `NotFound`); the others are unchanged. An id named twice gets the
    /// same answer twice. `Validation` for the whole call (before any SQL)
    /// for a bad worker id or lease, or more than
    /// [`MAX_CLAIM`](crate::validate::MAX_CLAIM) ids. Tasks are locked in id
    /// order, then their executions.
    async fn heartbeat_many(
        &self,
        worker_id: &str,
        execution_ids: Vec<ExecutionId>,
        lease: Duration,
    ) -> Result<Vec<Result<Timestamp>>>;

    /// [`heartbeat`](Self::heartbeat) for many executions, of any workers,
    /// in one statement: what a fleet's shared
    /// [`Heartbeater`](crate::Heartbeater) sends. Each heartbeat is checked
    /// and applied exactly as `heartbeat` alone would (owner and status
    /// re-checked on the locked row; its own lease), and the result says,
    /// per heartbeat and in input order, what `heartbeat` would have
    /// returned: the new end of the lease, `LeaseLost` with the reason
    /// (nothing changed for it), `NotFound`.
    ///
    /// Validation is per heartbeat and comes before any SQL: an invalid one
    /// (bad worker id or lease) gets its `Validation` error and is left out;
    /// the others go ahead. An execution named more than once is heartbeaten
    /// once, at its first valid heartbeat; each later one gets a
    /// `Validation` error (field `execution_id`), as in
    /// [`complete_many`](Self::complete_many). The call as a whole fails
    /// only with `Validation` for more than
    /// [`MAX_CLAIM`](crate::validate::MAX_CLAIM) heartbeats (then nothing is
    /// sent), or with an error of the statement itself: the statement is
    /// atomic, so one the server refused changed nothing, but when the
    /// answer is lost (`Unavailable`, or `Timeout` of kind `NoAnswer`) it
    /// may still have been applied, whole. Tasks are locked in id order,
    /// then their executions, as in
    /// [`heartbeat_many`](Self::heartbeat_many).
    async fn heartbeat_batch(&self, heartbeats: Vec<Heartbeat>) -> Result<Vec<Result<Timestamp>>>;

    /// Records how the run ended and ends the execution; the task follows
    /// (running → completed, failed or timeout). `LeaseLost` when the worker
    /// no longer owns it (nothing is changed); `Validation` for an outcome
    /// that is not completed, failed or timeout, or has invalid results;
    /// `NotFound`.
    async fn complete(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        outcome: Outcome,
    ) -> Result<TaskExecution>;

    /// [`complete`](Self::complete) for many executions, of any workers, in
    /// one statement. Each completion is checked and applied exactly as
    /// `complete` alone would (lease owner and status re-checked on the
    /// locked row; the task follows), and the result says, per completion
    /// and in input order, what `complete` would have returned:
    /// `Ok(execution)`, `LeaseLost` (nothing changed for it), `NotFound`.
    ///
    /// Validation is per completion and comes before any SQL: an invalid one
    /// (bad worker id or outcome) gets its `Validation` error and is left
    /// out; the others go ahead. An execution named more than once is
    /// applied once, at its first valid completion; each later one gets a
    /// `Validation` error (field `execution_id`). The call as a whole fails
    /// only with `Validation` for more than [`Completion::MAX_BATCH`]
    /// completions (then nothing is sent), or with an error of the statement
    /// itself (`Timeout`, `Unavailable`, ...). The statement is atomic: one
    /// the server refused changed nothing, but when its answer is lost
    /// (`Unavailable`, or `Timeout` of kind `NoAnswer`: see
    /// [`Error::is_retryable`](crate::Error::is_retryable)) it may still
    /// have been applied, whole; completing again then says which
    /// (`Ok`, or `LeaseLost` because the execution finished).
    /// Tasks are locked in id order, then their executions, keeping the
    /// crate's lock order.
    async fn complete_many(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<Result<TaskExecution>>>;

    /// Cancels a pending or running execution at once; its task is
    /// cancelled too. A running execution's worker learns it from its next
    /// heartbeat or completion (`LeaseLost` with reason cancelled) and from
    /// the event stream. `InvalidTransition` for an ended execution;
    /// `NotFound`.
    async fn cancel(&self, execution_id: ExecutionId) -> Result<TaskExecution>;

    /// Times out running executions whose lease has expired, re-checking
    /// status and lease in the UPDATE itself so an execution completed or
    /// heartbeaten meanwhile is never overwritten; queues a retry for those
    /// below `policy.max_attempts` whose task is still running (never for a
    /// cancelled task). Handles at most `policy.batch_size`.
    async fn rescue_expired(&self, policy: RescuePolicy) -> Result<RescueReport>;

    /// Deletes ended executions that ended more than `older_than` ago, in
    /// batches of `batch_size` (one short statement each, so no long lock);
    /// returns how many were deleted. Pending and running rows are never
    /// touched.
    async fn prune(&self, older_than: Duration, batch_size: u32) -> Result<u64>;
}
