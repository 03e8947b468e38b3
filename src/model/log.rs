//! Execution log lines (migration V13): what a worker appends while a task
//! runs, and what readers page, tail, follow and search.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::execution::ExecutionStatus;
use super::ids::{ExecutionId, TaskId, UserId};
use super::text_column;
use super::timestamp::Timestamp;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogStream {
    /// The script's standard output, the default.
    #[default]
    Stdout,
    /// The script's standard error.
    Stderr,
    /// Lines of the platform itself (the worker's own notes: started,
    /// killed after the timeout...).
    System,
}

impl LogStream {
    /// Every stream.
    pub const ALL: [LogStream; 3] = [LogStream::Stdout, LogStream::Stderr, LogStream::System];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }
}

text_column!(LogStream, "stream");

/// A line to append to an execution's log.
///
/// `seq` is the worker's: the line's place in the execution's log, counted
/// from 0 without gaps (a [follower](crate::Database::follow_logs) yields a
/// line only once every earlier one has arrived, and the rest when the
/// execution ends). Appending a line whose `seq` is already stored for the
/// execution adds nothing, so a batch can be retried safely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLogLine {
    /// The line's place in the execution's log: 0..=`i64::MAX`.
    pub seq: u64,
    /// Which output it came from.
    pub stream: LogStream,
    /// The text, without its line break: UTF-8 without NUL, at most
    /// [`NewLogLine::MAX_BYTES`] bytes.
    pub text: String,
    /// When the worker read it.
    pub logged_at: Timestamp,
}

impl NewLogLine {
    /// The longest line, in bytes of UTF-8 (64 KiB): a longer one is
    /// refused, not cut; a worker splits it.
    pub const MAX_BYTES: usize = 65_536;

    /// A line of `stream`, read now.
    pub fn new(seq: u64, stream: LogStream, text: impl Into<String>) -> Self {
        NewLogLine {
            seq,
            stream,
            text: text.into(),
            logged_at: Timestamp::now(),
        }
    }

    /// A line of standard output, read now.
    pub fn stdout(seq: u64, text: impl Into<String>) -> Self {
        Self::new(seq, LogStream::Stdout, text)
    }

    /// A line of standard error, read now.
    pub fn stderr(seq: u64, text: impl Into<String>) -> Self {
        Self::new(seq, LogStream::Stderr, text)
    }

    /// A line of the platform's own, read now.
    pub fn system(seq: u64, text: impl Into<String>) -> Self {
        Self::new(seq, LogStream::System, text)
    }
}

/// Lines of one execution from the worker that runs it: an element of
/// [`LogRepository::append_many`](crate::LogRepository::append_many) and
/// what a [`LogWriter`](crate::LogWriter) batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAppend {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The worker that holds it.
    pub worker_id: String,
    /// Its lines, `seq` strictly increasing; 1..=[`LogAppend::MAX_LINES`].
    pub lines: Vec<NewLogLine>,
}

impl LogAppend {
    /// The most lines in one append.
    pub const MAX_LINES: usize = 10_000;

    /// The most text, in bytes, in one append, and in one
    /// [`append_many`](crate::LogRepository::append_many) call together
    /// (64 MiB): the statement's parameters are held in memory at once,
    /// and the server takes at most 1 GiB of them.
    pub const MAX_BYTES: usize = 64 << 20;

    /// Lines of `execution_id` from `worker_id`.
    pub fn new(
        execution_id: ExecutionId,
        worker_id: impl Into<String>,
        lines: Vec<NewLogLine>,
    ) -> Self {
        LogAppend {
            execution_id,
            worker_id: worker_id.into(),
            lines,
        }
    }
}

/// A stored line of an execution's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Its place in the execution's log.
    pub seq: u64,
    /// Which output it came from.
    pub stream: LogStream,
    /// When the worker read it.
    pub logged_at: Timestamp,
    /// The text.
    pub text: String,
}

impl LogLine {
    /// A line, as a mock or a test builds it.
    pub fn new(
        execution_id: ExecutionId,
        seq: u64,
        stream: LogStream,
        logged_at: Timestamp,
        text: impl Into<String>,
    ) -> Self {
        LogLine {
            execution_id,
            seq,
            stream,
            logged_at,
            text: text.into(),
        }
    }
}

/// Lines read after a point of an execution's log, with the execution's
/// status in the same snapshot: when [`status`](Self::status) is final,
/// no line can follow the ones read (an append after the end is refused),
/// so a reader that got fewer lines than it asked for has them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogRead {
    /// The execution's status when the lines were read.
    pub status: ExecutionStatus,
    /// The lines, in `seq` order.
    pub lines: Vec<LogLine>,
}

impl LogRead {
    /// A read, as a mock builds it.
    pub fn new(status: ExecutionStatus, lines: Vec<LogLine>) -> Self {
        LogRead { status, lines }
    }
}

/// Whose logs a search looks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogScope {
    /// Every execution of one task.
    Task(TaskId),
    /// Every execution of one user's tasks.
    User(UserId),
}

/// A line a search found, with the task it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogMatch {
    /// The task of the line's execution.
    pub task_id: TaskId,
    /// The line.
    pub line: LogLine,
}

impl LogMatch {
    /// A match, as a mock builds it.
    pub fn new(task_id: TaskId, line: LogLine) -> Self {
        LogMatch { task_id, line }
    }
}

/// How long each partition of the log tables spans (in UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogPartitionUnit {
    /// An hour.
    Hour,
    /// A day, the default.
    #[default]
    Day,
    /// A week, from Monday.
    Week,
    /// A calendar month.
    Month,
}

impl LogPartitionUnit {
    /// Every unit.
    pub const ALL: [LogPartitionUnit; 4] = [
        LogPartitionUnit::Hour,
        LogPartitionUnit::Day,
        LogPartitionUnit::Week,
        LogPartitionUnit::Month,
    ];

    /// The unit's name, as `date_trunc` takes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogPartitionUnit::Hour => "hour",
            LogPartitionUnit::Day => "day",
            LogPartitionUnit::Week => "week",
            LogPartitionUnit::Month => "month",
        }
    }

    /// The unit's nominal length (a month counts 31 days), to step from one
    /// partition to the next.
    pub(crate) const fn nominal(self) -> Duration {
        Duration::from_secs(match self {
            LogPartitionUnit::Hour => 3_600,
            LogPartitionUnit::Day => 86_400,
            LogPartitionUnit::Week => 7 * 86_400,
            LogPartitionUnit::Month => 31 * 86_400,
        })
    }
}

text_column!(LogPartitionUnit, "partition");

/// How [`Database::maintain_log_partitions`](crate::Database::maintain_log_partitions)
/// keeps the log tables' partitions.
///
/// Not `#[non_exhaustive]`, so it can be written as a struct literal with
/// `..Default::default()`; a new field would come in a major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogRetention {
    /// The span of each partition. Default a day.
    pub partition: LogPartitionUnit,
    /// How many partitions after the current one are made ahead of time.
    /// Default 2; at most [`LogRetention::MAX_AHEAD`].
    pub ahead: u32,
    /// Partitions that ended this long ago are dropped, with every line in
    /// them. Default 30 days; at least one `partition` unit, at most
    /// [`LogRetention::MAX_KEEP`]. Partitions go by the execution's
    /// creation, so an execution's log is kept as long as the execution
    /// was created within `keep` (and at most one unit more).
    #[serde(rename = "keep_ms", with = "super::queue::duration_ms")]
    pub keep: Duration,
}

impl LogRetention {
    /// The most partitions made ahead.
    pub const MAX_AHEAD: u32 = 366;
    /// The longest retention: about ten years.
    pub const MAX_KEEP: Duration = Duration::from_secs(3_660 * 86_400);
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            partition: LogPartitionUnit::Day,
            ahead: 2,
            keep: Duration::from_secs(30 * 86_400),
        }
    }
}

/// What one maintenance of the log partitions did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogMaintenanceReport {
    /// The partitions made (of both log tables).
    pub created: Vec<String>,
    /// Rows moved out of the DEFAULT partitions into the new ones (lines
    /// and search chunks appended before their partition existed).
    pub moved: u64,
    /// The partitions dropped, with their rows.
    pub dropped: Vec<String>,
}
