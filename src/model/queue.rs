//! What the execution queue takes and gives: claims, outcomes, rescue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{ExecutionId, ExecutionStatus, ScriptType, TaskExecution};

/// An execution a worker claimed, with what it needs to run it.
///
/// Serialises and deserialises (a dispatcher may hand claims to workers
/// over the wire). `#[non_exhaustive]`: what a worker is given grows in
/// minor releases. Outside this crate one comes from
/// [`ExecutionQueue::claim`](crate::repo::ExecutionQueue::claim), from
/// serde, or, in tests, from [`fixtures::claimed`](crate::fixtures::claimed)
/// (feature `mock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClaimedExecution {
    /// The execution, now running, owned by the worker until
    /// `execution.lease_expires_at`.
    pub execution: TaskExecution,
    /// The script to run.
    pub script_content: String,
    /// Its language.
    pub script_type: ScriptType,
    /// How long it may run, in seconds.
    pub timeout_seconds: i32,
}

/// How a run ended, for
/// [`ExecutionQueue::complete`](crate::repo::ExecutionQueue::complete).
///
/// Built with [`Outcome::completed`], [`Outcome::failed`],
/// [`Outcome::timed_out`] (or [`Outcome::new`]) and the setters; serialises
/// and deserialises (a worker may report it over the wire).
/// `#[non_exhaustive]`: what a worker reports grows in minor releases
/// (optional fields), and the constructors keep compiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// `completed`, `failed` or `timeout`.
    pub status: ExecutionStatus,
    /// Exit code, 0..=255.
    pub return_code: Option<i32>,
    /// Standard output.
    pub stdout: Option<String>,
    /// Standard error.
    pub stderr: Option<String>,
    /// Run time in milliseconds, >= 0.
    pub execution_time_ms: Option<i32>,
    /// Peak memory in bytes, >= 0.
    pub memory_usage_bytes: Option<i64>,
}

impl Outcome {
    /// An outcome with `status` and no results. Only `completed`, `failed`
    /// and `timeout` end a run; the queue refuses the others
    /// ([`validate::outcome`](crate::validate::outcome)), which this builds
    /// for tests of that refusal.
    pub fn new(status: ExecutionStatus) -> Self {
        Self::with_status(status)
    }

    fn with_status(status: ExecutionStatus) -> Self {
        Outcome {
            status,
            return_code: None,
            stdout: None,
            stderr: None,
            execution_time_ms: None,
            memory_usage_bytes: None,
        }
    }

    /// A successful run that exited with `return_code`.
    pub fn completed(return_code: i32) -> Self {
        Outcome {
            return_code: Some(return_code),
            ..Self::with_status(ExecutionStatus::Completed)
        }
    }

    /// A failed run that exited with `return_code`.
    pub fn failed(return_code: i32) -> Self {
        Outcome {
            return_code: Some(return_code),
            ..Self::with_status(ExecutionStatus::Failed)
        }
    }

    /// A run stopped for exceeding its timeout.
    pub fn timed_out() -> Self {
        Self::with_status(ExecutionStatus::Timeout)
    }

    /// Sets the exit code.
    pub fn return_code(mut self, return_code: i32) -> Self {
        self.return_code = Some(return_code);
        self
    }

    /// Sets the captured output.
    pub fn output(mut self, stdout: impl Into<String>, stderr: impl Into<String>) -> Self {
        self.stdout = Some(stdout.into());
        self.stderr = Some(stderr.into());
        self
    }

    /// Sets the run time and peak memory.
    pub fn usage(mut self, execution_time_ms: i32, memory_usage_bytes: i64) -> Self {
        self.execution_time_ms = Some(execution_time_ms);
        self.memory_usage_bytes = Some(memory_usage_bytes);
        self
    }
}

/// One completion of a batch, for
/// [`ExecutionQueue::complete_many`](crate::repo::ExecutionQueue::complete_many):
/// the arguments of
/// [`ExecutionQueue::complete`](crate::repo::ExecutionQueue::complete).
///
/// Built with [`Completion::new`]; serialises and deserialises.
/// `#[non_exhaustive]`: a completion may carry more in minor releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Completion {
    /// The execution the worker ran.
    pub execution_id: ExecutionId,
    /// The worker that claimed it (the lease owner).
    pub worker_id: String,
    /// How the run ended.
    pub outcome: Outcome,
}

impl Completion {
    /// Most completions one
    /// [`complete_many`](crate::repo::ExecutionQueue::complete_many) takes:
    /// as many as one claim hands out
    /// ([`MAX_CLAIM`](crate::validate::MAX_CLAIM)).
    pub const MAX_BATCH: usize = 1000;

    /// `worker_id`'s report that `execution_id` ended with `outcome`.
    pub fn new(execution_id: ExecutionId, worker_id: impl Into<String>, outcome: Outcome) -> Self {
        Completion {
            execution_id,
            worker_id: worker_id.into(),
            outcome,
        }
    }
}

/// One heartbeat of a batch, for
/// [`ExecutionQueue::heartbeat_batch`](crate::repo::ExecutionQueue::heartbeat_batch):
/// the arguments of
/// [`ExecutionQueue::heartbeat`](crate::repo::ExecutionQueue::heartbeat).
/// The heartbeats of one batch may come from different workers.
///
/// Built with [`Heartbeat::new`]; serialises and deserialises (the lease as
/// whole milliseconds). `#[non_exhaustive]`: a heartbeat may carry more in
/// minor releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The execution the worker is running.
    pub execution_id: ExecutionId,
    /// The worker that claimed it (the lease owner).
    pub worker_id: String,
    /// The lease is extended to `now + lease`.
    #[serde(rename = "lease_ms", with = "duration_ms")]
    pub lease: Duration,
}

impl Heartbeat {
    /// `worker_id`'s heartbeat of `execution_id`, asking for `lease` more.
    pub fn new(execution_id: ExecutionId, worker_id: impl Into<String>, lease: Duration) -> Self {
        Heartbeat {
            execution_id,
            worker_id: worker_id.into(),
            lease,
        }
    }
}

/// What [`ExecutionQueue::rescue_expired`](crate::repo::ExecutionQueue::rescue_expired)
/// does with executions whose lease expired.
///
/// Not `#[non_exhaustive]`, on purpose: a policy is written as a struct
/// literal, `RescuePolicy { max_attempts: 3, ..Default::default() }`, which
/// `#[non_exhaustive]` would forbid outside this crate. A new field would
/// therefore come in a major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RescuePolicy {
    /// An expired execution becomes `timeout`; if its attempt is below this,
    /// a new execution of the task is queued to try again. Default 1: no
    /// retry.
    pub max_attempts: i32,
    /// The retry is not claimed before this delay. Default 0.
    #[serde(with = "duration_ms")]
    pub retry_delay: Duration,
    /// Most executions handled per call. Default 1000.
    pub batch_size: u32,
}

impl Default for RescuePolicy {
    fn default() -> Self {
        RescuePolicy {
            max_attempts: 1,
            retry_delay: Duration::ZERO,
            batch_size: 1000,
        }
    }
}

/// Durations as whole milliseconds in serde.
pub(super) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What a rescue did.
///
/// `#[non_exhaustive]`: a rescue may report more in minor releases. A mock
/// builds one from [`RescueReport::default`] and assigns the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RescueReport {
    /// Executions whose lease had expired, now `timeout`.
    pub timed_out: Vec<ExecutionId>,
    /// The new executions queued to retry them.
    pub retried: Vec<ExecutionId>,
}

/// The order in which [`PgExecutionQueue`](crate::PgExecutionQueue) claims
/// pending executions; chosen per queue handle with
/// [`with_claim_order`](crate::PgExecutionQueue::with_claim_order). See the
/// [domain reference](crate::domain#fair-claims-and-concurrency-caps-v14-v15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClaimOrder {
    /// Highest priority first, then oldest, across all users: one user's
    /// flood is claimed before later work of everyone else. Knows no
    /// concurrency caps.
    #[default]
    Fifo,
    /// Round-robin between the users that have runnable work; priority,
    /// then age, orders each user's own work. Each user's concurrency cap
    /// ([`ConcurrencyLimits`](crate::ConcurrencyLimits)) is kept.
    Fair,
}

impl ClaimOrder {
    /// `"fifo"` or `"fair"`, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimOrder::Fifo => "fifo",
            ClaimOrder::Fair => "fair",
        }
    }
}

/// A user's concurrency cap, as stored for them
/// ([`ConcurrencyLimits::set_user_limit`](crate::ConcurrencyLimits::set_user_limit)):
/// how many of their executions a fair claim lets run at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyLimit {
    /// No override: the deployment's default cap applies
    /// ([`ConcurrencyLimits::default_limit`](crate::ConcurrencyLimits::default_limit)).
    #[default]
    Default,
    /// No cap for this user, whatever the default.
    Unlimited,
    /// At most this many running at once; 0 pauses the user (their work
    /// stays pending). At most [`ConcurrencyLimit::MAX`].
    Max(u32),
}

impl ConcurrencyLimit {
    /// The highest cap the database stores (`integer`).
    pub const MAX: u32 = i32::MAX as u32;
}

/// A user's concurrency cap and how many of their executions run now: what
/// [`ConcurrencyLimits::user_limit`](crate::ConcurrencyLimits::user_limit)
/// answers. `#[non_exhaustive]`: it may grow in minor releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserConcurrency {
    /// The user.
    pub user_id: crate::model::UserId,
    /// What is stored for them: no override, none, or a cap of their own.
    pub limit: ConcurrencyLimit,
    /// The cap a fair claim applies to them: their own, else the
    /// deployment's default; `None` for no cap.
    pub effective: Option<u32>,
    /// How many of their executions are running (claimed and not yet
    /// ended, an expired lease not yet rescued included).
    pub running: u64,
}
