//! [`TaskStatusCounts`]: how many tasks are in each status.

use serde::{Deserialize, Serialize};

use super::task::TaskStatus;

/// How many tasks are in each status: all tasks
/// ([`TaskRepository::status_counts`](crate::TaskRepository::status_counts)),
/// one user's
/// ([`status_counts_by_user`](crate::TaskRepository::status_counts_by_user),
/// [`ScopedTaskRepository::status_counts`](crate::ScopedTaskRepository::status_counts)):
/// a dashboard's "3 running, 12 pending, 240 completed", read in one
/// statement whose cost does not grow with the number of tasks.
///
/// Exact, as of the statement's snapshot. `#[non_exhaustive]`: built with
/// [`Default`] and [`with`](Self::with), collected from statuses, or by
/// serde.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskStatusCounts {
    /// Tasks in [`TaskStatus::Pending`].
    pub pending: i64,
    /// Tasks in [`TaskStatus::Running`].
    pub running: i64,
    /// Tasks in [`TaskStatus::Completed`].
    pub completed: i64,
    /// Tasks in [`TaskStatus::Failed`].
    pub failed: i64,
    /// Tasks in [`TaskStatus::Timeout`].
    pub timeout: i64,
    /// Tasks in [`TaskStatus::Cancelled`].
    pub cancelled: i64,
}

impl TaskStatusCounts {
    /// Tasks in any status.
    pub fn total(&self) -> i64 {
        TaskStatus::ALL.into_iter().map(|s| self.get(s)).sum()
    }

    /// Tasks in `status`.
    pub fn get(&self, status: TaskStatus) -> i64 {
        match status {
            TaskStatus::Pending => self.pending,
            TaskStatus::Running => self.running,
            TaskStatus::Completed => self.completed,
            TaskStatus::Failed => self.failed,
            TaskStatus::Timeout => self.timeout,
            TaskStatus::Cancelled => self.cancelled,
        }
    }

    /// These counts with `n` tasks in `status`.
    pub fn with(mut self, status: TaskStatus, n: i64) -> Self {
        *self.slot(status) = n;
        self
    }

    fn slot(&mut self, status: TaskStatus) -> &mut i64 {
        match status {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Completed => &mut self.completed,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Timeout => &mut self.timeout,
            TaskStatus::Cancelled => &mut self.cancelled,
        }
    }
}

/// Counts the statuses of some tasks (`tasks.iter().map(|t| t.status)`),
/// as a mock or an in-memory repository answers.
impl FromIterator<TaskStatus> for TaskStatusCounts {
    fn from_iter<I: IntoIterator<Item = TaskStatus>>(statuses: I) -> Self {
        let mut counts = TaskStatusCounts::default();
        for status in statuses {
            *counts.slot(status) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_round_trip() {
        let counts: TaskStatusCounts = [
            TaskStatus::Running,
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Cancelled,
        ]
        .into_iter()
        .collect();
        assert_eq!(counts.get(TaskStatus::Running), 2);
        assert_eq!(counts.total(), 4);
        assert_eq!(
            counts,
            TaskStatusCounts::default()
                .with(TaskStatus::Running, 2)
                .with(TaskStatus::Pending, 1)
                .with(TaskStatus::Cancelled, 1)
        );
        let json = serde_json::to_value(counts).unwrap();
        assert_eq!(json["running"], 2);
        assert_eq!(
            serde_json::from_value::<TaskStatusCounts>(json).unwrap(),
            counts
        );
    }
}
