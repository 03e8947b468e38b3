//! The sorted task lists: which order, which tasks, and a task with its
//! latest execution.

use serde::{Deserialize, Serialize};

use crate::model::{Task, TaskExecution, TaskStatus, UserId};

/// The column a sorted task list is ordered by; the task id breaks ties,
/// so every order is total.
///
/// `#[non_exhaustive]`: an order may be added in a minor release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskSortField {
    /// When the task was created: `(created_at, id)`.
    CreatedAt,
    /// When the task last changed: `(updated_at, id)`. Rows move in this
    /// order while they change; see the
    /// [repositories guide](crate::docs::repositories#sorted-lists) for
    /// what a walk then guarantees.
    UpdatedAt,
    /// `(priority, created_at, id)`: the order of
    /// [`TaskRepository::list`](crate::TaskRepository::list) when
    /// descending.
    #[default]
    Priority,
    /// The name, in its column's collation: `(name, id)`.
    Name,
}

impl TaskSortField {
    /// Every field.
    pub const ALL: [TaskSortField; 4] = [
        TaskSortField::CreatedAt,
        TaskSortField::UpdatedAt,
        TaskSortField::Priority,
        TaskSortField::Name,
    ];

    /// The name of the order, as serde writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskSortField::CreatedAt => "created_at",
            TaskSortField::UpdatedAt => "updated_at",
            TaskSortField::Priority => "priority",
            TaskSortField::Name => "name",
        }
    }
}

/// Which way a sorted list runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortDirection {
    /// Smallest first (oldest, lowest priority, A before Z).
    #[serde(alias = "asc")]
    Ascending,
    /// Largest first (newest, highest priority, Z before A).
    #[default]
    #[serde(alias = "desc")]
    Descending,
}

impl SortDirection {
    /// Both directions.
    pub const ALL: [SortDirection; 2] = [SortDirection::Ascending, SortDirection::Descending];

    /// Whether it is [`Descending`](Self::Descending).
    pub const fn is_descending(self) -> bool {
        matches!(self, SortDirection::Descending)
    }
}

/// The order of a sorted task list: a field and a direction. The
/// default, priority descending, is the order of the unsorted lists.
///
/// Serde: `{"field": "created_at", "direction": "ascending"}` (a missing
/// key takes the default; `"asc"` and `"desc"` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSort {
    /// What the list is ordered by.
    pub field: TaskSortField,
    /// Which way.
    pub direction: SortDirection,
}

impl TaskSort {
    /// `field` in `direction`.
    pub const fn new(field: TaskSortField, direction: SortDirection) -> Self {
        TaskSort { field, direction }
    }

    /// `field`, smallest first.
    pub const fn ascending(field: TaskSortField) -> Self {
        TaskSort::new(field, SortDirection::Ascending)
    }

    /// `field`, largest first.
    pub const fn descending(field: TaskSortField) -> Self {
        TaskSort::new(field, SortDirection::Descending)
    }

    /// Every field in both directions.
    pub fn all() -> impl Iterator<Item = TaskSort> {
        TaskSortField::ALL.into_iter().flat_map(|field| {
            SortDirection::ALL
                .into_iter()
                .map(move |direction| TaskSort::new(field, direction))
        })
    }
}

/// Which tasks a sorted list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskFilter {
    /// Every task.
    #[default]
    All,
    /// One user's tasks.
    User(UserId),
    /// The tasks in one status.
    Status(TaskStatus),
    /// One user's tasks in one status.
    UserStatus(UserId, TaskStatus),
}

impl TaskFilter {
    /// The user it filters on, if any.
    pub const fn user(&self) -> Option<UserId> {
        match *self {
            TaskFilter::User(user) | TaskFilter::UserStatus(user, _) => Some(user),
            TaskFilter::All | TaskFilter::Status(_) => None,
        }
    }

    /// The status it filters on, if any.
    pub const fn status(&self) -> Option<TaskStatus> {
        match *self {
            TaskFilter::Status(status) | TaskFilter::UserStatus(_, status) => Some(status),
            TaskFilter::All | TaskFilter::User(_) => None,
        }
    }

    /// The filter of `user` (if any) and `status` (if any).
    pub const fn of(user: Option<UserId>, status: Option<TaskStatus>) -> Self {
        match (user, status) {
            (None, None) => TaskFilter::All,
            (Some(user), None) => TaskFilter::User(user),
            (None, Some(status)) => TaskFilter::Status(status),
            (Some(user), Some(status)) => TaskFilter::UserStatus(user, status),
        }
    }
}

/// A task with its latest execution and how many executions it has: a row
/// of [`TaskRepository::list_with_latest`](crate::TaskRepository::list_with_latest).
///
/// Serialised with every field, like [`Task`]. `#[non_exhaustive]`: built
/// by the repositories, by serde, or in tests by
/// [`fixtures::task_with_latest`](crate::fixtures::task_with_latest)
/// (feature `mock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskWithLatest {
    /// The task.
    pub task: Task,
    /// Its newest execution by `(created_at, id)`, `None` when it has none.
    pub latest_execution: Option<TaskExecution>,
    /// How many executions it has (pruned ones are gone).
    pub execution_count: i64,
}

impl TaskWithLatest {
    /// `task` with `latest_execution` and `execution_count`.
    pub fn new(task: Task, latest_execution: Option<TaskExecution>, execution_count: i64) -> Self {
        TaskWithLatest {
            task,
            latest_execution,
            execution_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_serde_and_default() {
        assert_eq!(
            TaskSort::default(),
            TaskSort::descending(TaskSortField::Priority)
        );
        let sort = TaskSort::ascending(TaskSortField::CreatedAt);
        let json = serde_json::to_string(&sort).unwrap();
        assert_eq!(json, r#"{"field":"created_at","direction":"ascending"}"#);
        assert_eq!(serde_json::from_str::<TaskSort>(&json).unwrap(), sort);
        let short: TaskSort =
            serde_json::from_str(r#"{"field":"name","direction":"desc"}"#).unwrap();
        assert_eq!(short, TaskSort::descending(TaskSortField::Name));
        assert_eq!(
            serde_json::from_str::<TaskSort>("{}").unwrap(),
            TaskSort::default()
        );
        assert!(serde_json::from_str::<TaskSort>(r#"{"field":"id"}"#).is_err());
        assert_eq!(TaskSort::all().count(), 8);
        for field in TaskSortField::ALL {
            assert_eq!(
                serde_json::to_string(&field).unwrap(),
                format!("\"{}\"", field.as_str())
            );
        }
    }

    #[test]
    fn filter_parts() {
        let user = UserId::new();
        for filter in [
            TaskFilter::All,
            TaskFilter::User(user),
            TaskFilter::Status(TaskStatus::Failed),
            TaskFilter::UserStatus(user, TaskStatus::Failed),
        ] {
            assert_eq!(TaskFilter::of(filter.user(), filter.status()), filter);
        }
    }
}
