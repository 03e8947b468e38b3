//! [`Completer`]: completions of a worker fleet, batched into
//! [`ExecutionQueue::complete_many`] calls.
//!
//! Each worker calls [`Completer::complete`] as it would
//! [`ExecutionQueue::complete`]; a background task collects the
//! completions of every worker and sends them as one statement when the
//! oldest has waited [`CompleterConfig::flush_interval`] or
//! [`CompleterConfig::max_batch`] are waiting, whichever comes first, with
//! up to [`CompleterConfig::max_in_flight`] batches running at once. Each
//! caller gets its own result. One statement for many completions saves a
//! round trip and a commit per execution on a busy queue, at the price of
//! up to one flush interval of latency. A batch carries at most 64 MiB of
//! outputs (`stdout` and `stderr`; the server takes at most 1 GiB of
//! parameters per statement): what does not fit waits for the next batch,
//! and a larger output goes in a batch of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::batcher::{Batcher, Settings, Sink};
use crate::error::Result;
use crate::model::{Completion, ExecutionId, Outcome, TaskExecution};
use crate::repo::ExecutionQueue;

/// How a [`Completer`] batches.
///
/// Not `#[non_exhaustive]`, so it can be written as a struct literal with
/// `..Default::default()`; a new field would come in a major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompleterConfig {
    /// Longest a completion waits for others before its batch is sent.
    /// Default 5 ms; 1 µs..=[`CompleterConfig::MAX_FLUSH_INTERVAL`].
    pub flush_interval: Duration,
    /// A batch is sent as soon as it holds this many completions. Default
    /// 100; 1..=[`Completion::MAX_BATCH`].
    pub max_batch: usize,
    /// How many batches may be in flight at once, each on a connection of
    /// the pool: with one, the completions that arrive while a batch runs
    /// wait for it to end as well as for their own. Default 4;
    /// 1..=[`CompleterConfig::MAX_IN_FLIGHT`]. Two completions of one
    /// execution are still sent one after the other.
    pub max_in_flight: usize,
}

impl CompleterConfig {
    /// The longest [`flush_interval`](Self::flush_interval): a completion
    /// held longer would eat into its lease.
    pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// The most [`max_in_flight`](Self::max_in_flight) takes.
    pub const MAX_IN_FLIGHT: usize = crate::batcher::MAX_IN_FLIGHT;

    /// `Error::Config` naming the setting out of range.
    pub fn validate(&self) -> Result<()> {
        self.settings()
            .validate("completer", Self::MAX_FLUSH_INTERVAL, Completion::MAX_BATCH)
    }

    fn settings(&self) -> Settings {
        Settings {
            flush_interval: self.flush_interval,
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
        }
    }
}

impl Default for CompleterConfig {
    fn default() -> Self {
        CompleterConfig {
            flush_interval: Duration::from_millis(5),
            max_batch: 100,
            max_in_flight: 4,
        }
    }
}

/// [`Completer`]'s batches go through `complete_many`.
struct Completions(Arc<dyn ExecutionQueue>);

#[async_trait]
impl Sink for Completions {
    type Item = Completion;
    type Output = TaskExecution;
    const TYPE: &'static str = "Completer";
    const CALL: &'static str = "complete_many";

    fn execution_id(item: &Completion) -> ExecutionId {
        item.execution_id
    }

    fn weight(item: &Completion) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        text(&item.outcome.stdout).saturating_add(text(&item.outcome.stderr))
    }

    async fn send(&self, items: Vec<Completion>) -> Result<Vec<Result<TaskExecution>>> {
        self.0.complete_many(items).await
    }
}

/// Completions of many workers, sent in batches through
/// [`ExecutionQueue::complete_many`]; see the [module](self) documentation.
///
/// Cheap to clone: the clones share one background task, so a fleet holds
/// one `Completer` (or clones of it). Exactly-once is the queue's: every
/// completion is lease-checked in the statement as
/// [`ExecutionQueue::complete`] checks it, and a caller gets exactly the
/// result `complete` would have given (`LeaseLost`, `NotFound`,
/// `Validation`...). Two completions of one execution are never sent in the
/// same batch: the later one waits for the next, so it gets the answer a
/// second `complete` would.
///
/// A completion is handed over when [`complete`](Self::complete) is called,
/// not when its future is first polled; from then on it is sent even if the
/// caller drops the future, or every clone of the `Completer` is dropped
/// (while the runtime runs). [`shutdown`](Self::shutdown) sends what is
/// waiting and returns when it is done.
#[derive(Clone)]
pub struct Completer {
    inner: Arc<Batcher<Completions>>,
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer")
            .field("open", &self.inner.is_open())
            .finish()
    }
}

impl Completer {
    /// A completer over `queue` with the default [`CompleterConfig`]. Its
    /// background task runs on the current Tokio runtime: `Error::Config`
    /// outside one.
    pub fn new(queue: Arc<dyn ExecutionQueue>) -> Result<Self> {
        Self::with_config(queue, CompleterConfig::default())
    }

    /// A completer over `queue` batching as `config` says. `Error::Config`
    /// for settings out of range ([`CompleterConfig::validate`]) or outside
    /// a Tokio runtime.
    pub fn with_config(queue: Arc<dyn ExecutionQueue>, config: CompleterConfig) -> Result<Self> {
        config.validate()?;
        let batcher = Batcher::start(Completions(queue), config.settings())?;
        Ok(Completer {
            inner: Arc::new(batcher),
        })
    }

    /// Completes `execution_id` as [`ExecutionQueue::complete`] would, in
    /// the next batch, and resolves to this completion's own result.
    ///
    /// The completion is handed over here, before the returned future is
    /// polled: dropping the future does not withdraw it. After
    /// [`shutdown`](Self::shutdown), `Unavailable` and nothing is sent. An
    /// error of the batch as a whole (the connection lost, a timeout) is
    /// every caller's of that batch, as the same kind of error, with the
    /// same SQLSTATE and predicates; when it means the answer was lost, the
    /// batch may still have been applied, as
    /// [`complete_many`](ExecutionQueue::complete_many) says.
    pub fn complete(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        outcome: Outcome,
    ) -> impl Future<Output = Result<TaskExecution>> + Send + 'static {
        self.inner
            .submit(Completion::new(execution_id, worker_id, outcome))
    }

    /// Stops taking completions, sends every one already handed over and
    /// returns when they are done (their callers have their results). Later
    /// [`complete`](Self::complete) calls, through any clone, get
    /// `Unavailable`. Calling it again, or from a clone, returns once that
    /// flush is done.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn config_out_of_range_is_a_config_error() {
        assert!(CompleterConfig::default().validate().is_ok());
        for config in [
            CompleterConfig {
                flush_interval: Duration::ZERO,
                ..Default::default()
            },
            CompleterConfig {
                flush_interval: Duration::from_secs(2),
                ..Default::default()
            },
            CompleterConfig {
                max_batch: 0,
                ..Default::default()
            },
            CompleterConfig {
                max_batch: Completion::MAX_BATCH + 1,
                ..Default::default()
            },
            CompleterConfig {
                max_in_flight: 0,
                ..Default::default()
            },
            CompleterConfig {
                max_in_flight: CompleterConfig::MAX_IN_FLIGHT + 1,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(config.validate(), Err(Error::Config { .. })),
                "{config:?}"
            );
        }
    }

    #[cfg(feature = "mock")]
    #[tokio::test]
    async fn a_failed_batch_is_every_callers_error() {
        let mut queue = crate::repo::MockExecutionQueue::new();
        queue
            .expect_complete_many()
            .times(1)
            .returning(|completions| {
                assert_eq!(completions.len(), 3);
                Err(Error::unavailable("connection lost", None))
            });
        let completer = Completer::with_config(
            Arc::new(queue),
            CompleterConfig {
                flush_interval: Duration::from_millis(50),
                max_batch: 3,
                max_in_flight: 1,
            },
        )
        .unwrap();
        let call = || completer.complete(ExecutionId::new(), "w", Outcome::completed(0));
        let (a, b, c) = tokio::join!(call(), call(), call());
        for result in [a, b, c] {
            let err = result.unwrap_err();
            assert!(err.is_unavailable(), "{err:?}");
            assert!(err.to_string().contains("connection lost"));
        }
        completer.shutdown().await;
    }
}
