//! Task executions: one row per attempt to run a task.

use serde::{Deserialize, Serialize};

use crate::model::{ExecutionId, TaskId, Timestamp, text_column};

/// Where an execution is in its life; see the
/// [domain reference](crate::domain#state-machines).
///
/// Exhaustive on purpose, like [`TaskStatus`](crate::TaskStatus): a new
/// status would change the state machine, so it would come in a major
/// release, and a `match` may name every status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Created, not started; the initial status.
    #[default]
    Pending,
    /// A worker is running it.
    Running,
    /// Finished successfully; final.
    Completed,
    /// Finished with an error; final.
    Failed,
    /// Ran out of time; final.
    Timeout,
    /// Cancelled; final.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status.
    pub const ALL: [ExecutionStatus; 6] = [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
    ];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the execution has ended; end states are final.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Failed
                | ExecutionStatus::Timeout
                | ExecutionStatus::Cancelled
        )
    }

    /// The execution state machine: pending → running | cancelled; running →
    /// completed | failed | timeout | cancelled; the four end states are
    /// final. Unlike tasks, same → same is not a transition.
    pub const fn can_transition_to(self, to: ExecutionStatus) -> bool {
        use ExecutionStatus::*;
        matches!(
            (self, to),
            (Pending, Running | Cancelled) | (Running, Completed | Failed | Timeout | Cancelled)
        )
    }
}

text_column!(ExecutionStatus, "status");

/// An execution as stored.
///
/// Serialised with every field and deserialised from the same form;
/// deserialising does not validate.
///
/// `#[non_exhaustive]`: a column added to `task_executions` becomes a field
/// in a minor release. Outside this crate a `TaskExecution` comes from a
/// repository, from serde, or, in tests, from
/// [`fixtures::execution`](crate::fixtures::execution) (feature `mock`); its
/// fields stay public to read and to assign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskExecution {
    /// Primary key.
    pub id: ExecutionId,
    /// The task run; deleting the task deletes its executions.
    pub task_id: TaskId,
    /// Where the execution is in its life.
    pub status: ExecutionStatus,
    /// The process exit code, 0..=255.
    pub return_code: Option<i32>,
    /// Captured standard output.
    pub stdout: Option<String>,
    /// Captured standard error.
    pub stderr: Option<String>,
    /// Run time in milliseconds, >= 0.
    pub execution_time_ms: Option<i32>,
    /// Peak memory in bytes, >= 0.
    pub memory_usage_bytes: Option<i64>,
    /// When it started running; set by the transition to running.
    pub started_at: Option<Timestamp>,
    /// When it ended; set by the transition to an end state.
    pub completed_at: Option<Timestamp>,
    /// When the row was created.
    pub created_at: Timestamp,
    /// The task's priority when the execution was queued; claims take
    /// higher priorities first.
    pub priority: i32,
    /// Not claimed before this time.
    pub run_after: Timestamp,
    /// How many times this execution's lineage was claimed: a retry starts
    /// from the attempt of the execution it replaces; each claim adds one.
    pub attempt: i32,
    /// The worker that claimed it.
    pub worker_id: Option<String>,
    /// Until when the worker's claim holds; extended by heartbeats.
    pub lease_expires_at: Option<Timestamp>,
    /// The worker's last heartbeat.
    pub heartbeat_at: Option<Timestamp>,
    /// When the row last changed.
    pub updated_at: Timestamp,
}

/// Input of
/// [`ExecutionRepository::create`](crate::repo::ExecutionRepository::create):
/// a pending execution of a task.
///
/// Built with [`NewExecution::new`]. `#[non_exhaustive]`: a new optional
/// input is added in a minor release, and [`NewExecution::new`] keeps
/// compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(deny_unknown_fields)]
pub struct NewExecution {
    /// The task to run.
    pub task_id: TaskId,
}

impl NewExecution {
    /// A pending execution of `task_id`.
    pub fn new(task_id: TaskId) -> Self {
        NewExecution { task_id }
    }
}

/// A partial update of an execution's results: `None` fields are left as
/// they are. The status changes only through
/// [`ExecutionRepository::update_status`](crate::repo::ExecutionRepository::update_status).
///
/// Not `#[non_exhaustive]`, on purpose: an update is written as a struct
/// literal, `ExecutionUpdate { stdout: Some(out), ..Default::default() }`,
/// which `#[non_exhaustive]` would forbid outside this crate. A new field
/// would therefore come in a major release.
///
/// In serde, absent and `null` fields are left as they are; serialising
/// writes only the fields set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionUpdate {
    /// Exit code, 0..=255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_code: Option<i32>,
    /// Standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Standard error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Run time in milliseconds, >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_time_ms: Option<i32>,
    /// Peak memory in bytes, >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage_bytes: Option<i64>,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// End time; not before the start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

impl ExecutionUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == ExecutionUpdate::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_state_machine() {
        use ExecutionStatus::*;
        let allowed = [
            (Pending, Running),
            (Pending, Cancelled),
            (Running, Completed),
            (Running, Failed),
            (Running, Timeout),
            (Running, Cancelled),
        ];
        for from in ExecutionStatus::ALL {
            for to in ExecutionStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            assert_eq!(from.as_str().parse::<ExecutionStatus>().unwrap(), from);
        }
        assert!(Failed.is_terminal() && !Running.is_terminal());
    }
}
