//! The execution logs' repositories (migration V13).

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    ExecutionId, LogAppend, LogLine, LogMatch, LogRead, LogScope, NewLogLine, Page, PageRequest,
    TaskId,
};

/// Execution log lines: appended by the worker that holds the execution,
/// read by anyone the caller's scope allows. See the
/// [domain reference](crate::domain#execution-logs-v13).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LogRepository: Send + Sync {
    /// Appends `lines` to execution `execution_id`'s log as its worker
    /// `worker_id`, in one statement, all or nothing; returns how many
    /// were added (lines whose `seq` is already stored are skipped, so a
    /// retry adds nothing twice). `LeaseLost` when the worker no longer
    /// holds the execution (it ended, was cancelled or timed out, or is
    /// another worker's), as a late completion gets; `NotFound` when it does
    /// not exist; `Validation` for bad lines
    /// ([`validate::log_append`](crate::validate::log_append)). Nothing is
    /// written in any of those cases.
    async fn append(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lines: Vec<NewLogLine>,
    ) -> Result<u64>;

    /// [`append`](Self::append) for many executions in one statement, each
    /// with its own result in input order (one append's `LeaseLost` does
    /// not stop the others). `Validation` for the whole batch, before any
    /// SQL, when any append is invalid or names an execution twice.
    async fn append_many(&self, appends: Vec<LogAppend>) -> Result<Vec<Result<u64>>>;

    /// A page of the execution's lines in `seq` order (keyset by `seq`).
    /// `NotFound` when the execution does not exist; `Validation` for a bad
    /// cursor or limit.
    async fn page(&self, execution_id: ExecutionId, page: PageRequest) -> Result<Page<LogLine>>;

    /// Up to `limit` (1..=[`MAX_READ_LINES`]) lines after `after` (`None`:
    /// from the first), in order, with the execution's status read in the
    /// same snapshot: what a follower polls. `NotFound` when the execution
    /// does not exist.
    async fn read_after(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<LogRead>;

    /// The last `lines` (1..=[`MAX_READ_LINES`]) lines of the execution,
    /// oldest first. `NotFound` when the execution does not exist.
    async fn tail(&self, execution_id: ExecutionId, lines: u32) -> Result<Vec<LogLine>>;

    /// The lines of `scope`'s logs that match `query`, newest execution
    /// first and, within one, last line first. `query` is web-search
    /// syntax (`websearch_to_tsquery` with the `simple` configuration:
    /// words, `"quoted phrases"`, `-not`, `or`), matched word by word
    /// without stemming, case-insensitively. `Validation` for a blank or
    /// overlong query, a bad cursor or limit.
    async fn search(
        &self,
        scope: LogScope,
        query: &str,
        page: PageRequest,
    ) -> Result<Page<LogMatch>>;
}

/// The most lines [`LogRepository::read_after`] and
/// [`LogRepository::tail`] return in one call.
pub const MAX_READ_LINES: u32 = 10_000;

/// One user's execution logs: [`LogRepository`]'s reads narrowed to the
/// executions of the user's tasks. Another user's execution is missing
/// (`NotFound`), another user's task has no lines. From
/// [`Database::scoped_logs`](crate::Database::scoped_logs); see the
/// [tenants guide](crate::docs::tenants).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScopedLogRepository: Send + Sync {
    /// As [`LogRepository::page`], for the user's execution.
    async fn page(&self, execution_id: ExecutionId, page: PageRequest) -> Result<Page<LogLine>>;

    /// As [`LogRepository::read_after`], for the user's execution.
    async fn read_after(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<LogRead>;

    /// As [`LogRepository::tail`], for the user's execution.
    async fn tail(&self, execution_id: ExecutionId, lines: u32) -> Result<Vec<LogLine>>;

    /// As [`LogRepository::search`], in all of the user's logs.
    async fn search(&self, query: &str, page: PageRequest) -> Result<Page<LogMatch>>;

    /// As [`LogRepository::search`], in the logs of the user's task
    /// `task_id` (another user's task: an empty page).
    async fn search_task(
        &self,
        task_id: TaskId,
        query: &str,
        page: PageRequest,
    ) -> Result<Page<LogMatch>>;
}
