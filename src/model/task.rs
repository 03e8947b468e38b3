//! Tasks: a script a user submitted, and its status.

use serde::{Deserialize, Serialize};

use crate::model::{TaskId, Timestamp, UserId, text_column};

/// The language a task's script is written in.
///
/// `#[non_exhaustive]`: languages are added in minor releases, so a `match`
/// outside this crate needs a `_` arm (for example, "not supported by this
/// worker").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ScriptType {
    /// `python`, the default.
    #[default]
    Python,
    /// `javascript`.
    Javascript,
    /// `bash`.
    Bash,
    /// `go`.
    Go,
}

impl ScriptType {
    /// Every script type.
    pub const ALL: [ScriptType; 4] = [
        ScriptType::Python,
        ScriptType::Javascript,
        ScriptType::Bash,
        ScriptType::Go,
    ];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScriptType::Python => "python",
            ScriptType::Javascript => "javascript",
            ScriptType::Bash => "bash",
            ScriptType::Go => "go",
        }
    }
}

text_column!(ScriptType, "script_type");

/// Where a task is in its life; see the
/// [domain reference](crate::domain#state-machines).
///
/// Exhaustive on purpose: a new status would change the state machine
/// ([`can_transition_to`](Self::can_transition_to)), which breaks the
/// services that follow it whatever the type says, so it would come in a
/// major release, and a `match` may name every status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting to run; the initial status.
    #[default]
    Pending,
    /// An execution is running.
    Running,
    /// Finished successfully; final.
    Completed,
    /// Finished with an error; may be retried.
    Failed,
    /// Ran out of time; may be retried.
    Timeout,
    /// Cancelled; may be retried.
    Cancelled,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Timeout,
        TaskStatus::Cancelled,
    ];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Timeout => "timeout",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task has stopped running (it may still be retried,
    /// except when completed).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Timeout
                | TaskStatus::Cancelled
        )
    }

    /// The task state machine: pending → running | cancelled; running →
    /// completed | failed | timeout | cancelled; failed | timeout |
    /// cancelled → pending (retry); completed is final; same → same is an
    /// allowed no-op.
    pub const fn can_transition_to(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        if self as u8 == to as u8 {
            return true;
        }
        matches!(
            (self, to),
            (Pending, Running | Cancelled)
                | (Running, Completed | Failed | Timeout | Cancelled)
                | (Failed | Timeout | Cancelled, Pending)
        )
    }
}

text_column!(TaskStatus, "status");

/// A task as stored.
///
/// Serialised with every field (the wire form a service sends), and
/// deserialised from the same form; deserialising does not validate.
///
/// `#[non_exhaustive]`: a column added to `tasks` becomes a field in a
/// minor release. Outside this crate a `Task` comes from a repository, from
/// serde, or, in tests, from [`fixtures::task`](crate::fixtures::task)
/// (feature `mock`); its fields stay public to read and to assign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Task {
    /// Primary key.
    pub id: TaskId,
    /// The owner; deleting the user deletes the task.
    pub user_id: UserId,
    /// Not blank, at most 255 characters.
    pub name: String,
    /// At most 1000 characters.
    pub description: Option<String>,
    /// The script; not blank, at most 65535 characters.
    pub script_content: String,
    /// The script's language.
    pub script_type: ScriptType,
    /// Where the task is in its life.
    pub status: TaskStatus,
    /// 0..=10; higher runs first.
    pub priority: i32,
    /// 1..=3600.
    pub timeout_seconds: i32,
    /// A JSON object.
    pub metadata: serde_json::Value,
    /// When the row was created.
    pub created_at: Timestamp,
    /// When the row last changed.
    pub updated_at: Timestamp,
}

/// Input of [`TaskRepository::create`](crate::repo::TaskRepository::create).
/// The status of a new task is always pending.
///
/// Built with [`NewTask::new`] and its setters, or deserialised (absent
/// optional fields take the defaults of [`NewTask::new`]).
/// `#[non_exhaustive]`: a new optional input (with a default) is added in a
/// minor release, and [`NewTask::new`] keeps compiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The owner.
    pub user_id: UserId,
    /// Not blank, at most 255 characters.
    pub name: String,
    /// At most 1000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Not blank, at most 65535 characters, allowed by the script policy.
    pub script_content: String,
    /// Default python.
    #[serde(default)]
    pub script_type: ScriptType,
    /// 0..=10, default 0.
    #[serde(default)]
    pub priority: i32,
    /// 1..=3600, default 10.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: i32,
    /// A JSON object, default `{}`.
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
}

fn default_timeout() -> i32 {
    10
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl NewTask {
    /// A python task with the defaults: priority 0, timeout 10 s, no
    /// description, empty metadata.
    pub fn new(
        user_id: UserId,
        name: impl Into<String>,
        script_content: impl Into<String>,
    ) -> Self {
        NewTask {
            user_id,
            name: name.into(),
            description: None,
            script_content: script_content.into(),
            script_type: ScriptType::default(),
            priority: 0,
            timeout_seconds: default_timeout(),
            metadata: empty_object(),
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the script.
    pub fn script_content(mut self, script_content: impl Into<String>) -> Self {
        self.script_content = script_content.into();
        self
    }

    /// Sets the script type.
    pub fn script_type(mut self, script_type: ScriptType) -> Self {
        self.script_type = script_type;
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the timeout in seconds.
    pub fn timeout_seconds(mut self, seconds: i32) -> Self {
        self.timeout_seconds = seconds;
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the metadata (must be a JSON object).
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A partial update of a task: `None` fields are left as they are. The
/// status changes only through
/// [`TaskRepository::update_status`](crate::repo::TaskRepository::update_status).
///
/// Not `#[non_exhaustive]`, on purpose: an update is written as a struct
/// literal, `TaskUpdate { priority: Some(3), ..Default::default() }`, which
/// `#[non_exhaustive]` would forbid outside this crate. A new field would
/// therefore come in a major release (code that spells every field without
/// `..Default::default()` would stop compiling).
///
/// In serde, absent fields are left as they are and `"description": null`
/// clears the description; serialising writes only the fields set, so the
/// two forms round-trip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskUpdate {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Some(None)` clears the description, `Some(Some(d))` sets it.
    #[serde(
        default,
        deserialize_with = "double_option::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<Option<String>>,
    /// New script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_content: Option<String>,
    /// New script type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_type: Option<ScriptType>,
    /// New priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// New timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// New metadata (replaces the old object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl TaskUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == TaskUpdate::default()
    }
}

/// `"description": null` clears, an absent field leaves as is.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_round_trips() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for t in ScriptType::ALL {
            assert_eq!(t.as_str().parse::<ScriptType>().unwrap(), t);
        }
        assert!("ruby".parse::<ScriptType>().unwrap_err().is_validation());
        assert!("done".parse::<TaskStatus>().unwrap_err().is_validation());
    }

    #[test]
    fn task_state_machine() {
        use TaskStatus::*;
        let allowed = [
            (Pending, Running),
            (Pending, Cancelled),
            (Running, Completed),
            (Running, Failed),
            (Running, Timeout),
            (Running, Cancelled),
            (Failed, Pending),
            (Timeout, Pending),
            (Cancelled, Pending),
        ];
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
            }
        }
        assert!(!Pending.is_terminal() && !Running.is_terminal());
        assert!(Completed.is_terminal() && Cancelled.is_terminal());
    }

    #[test]
    fn update_json_distinguishes_absent_and_null() {
        let clear: TaskUpdate = serde_json::from_str(r#"{"description": null}"#).unwrap();
        assert_eq!(clear.description, Some(None));
        let keep: TaskUpdate = serde_json::from_str(r#"{"priority": 3}"#).unwrap();
        assert_eq!(keep.description, None);
        assert!(!keep.is_empty());
        assert!(TaskUpdate::default().is_empty());
    }
}
