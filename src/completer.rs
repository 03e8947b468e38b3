//! [`Completer`]: completions of a worker fleet, batched into
//! [`ExecutionQueue::complete_many`] calls.
//!
//! Each worker calls [`Completer::complete`] as it would
//! [`ExecutionQueue::complete`]; a background task collects the
//! completions of every worker and sends them as one statement when the
//! oldest has waited [`CompleterConfig::flush_interval`] or
//! [`CompleterConfig::max_batch`] are waiting, whichever comes first. Each
//! caller gets its own result. One statement for many completions saves a
//! round trip and a commit per execution on a busy queue, at the price of
//! up to one flush interval of latency.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
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
}

impl CompleterConfig {
    /// The longest [`flush_interval`](Self::flush_interval): a completion
    /// held longer would eat into its lease.
    pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// `Error::Config` naming the setting out of range.
    pub fn validate(&self) -> Result<()> {
        if self.flush_interval.is_zero() || self.flush_interval > Self::MAX_FLUSH_INTERVAL {
            return Err(Error::Config {
                message: format!(
                    "completer flush_interval must be above zero and at most {:?}, not {:?}",
                    Self::MAX_FLUSH_INTERVAL,
                    self.flush_interval
                ),
            });
        }
        if self.max_batch == 0 || self.max_batch > Completion::MAX_BATCH {
            return Err(Error::Config {
                message: format!(
                    "completer max_batch must be between 1 and {}, not {}",
                    Completion::MAX_BATCH,
                    self.max_batch
                ),
            });
        }
        Ok(())
    }
}

impl Default for CompleterConfig {
    fn default() -> Self {
        CompleterConfig {
            flush_interval: Duration::from_millis(5),
            max_batch: 100,
        }
    }
}

/// A completion waiting for its batch, and where its result goes.
struct Request {
    completion: Completion,
    reply: oneshot::Sender<Result<TaskExecution>>,
}

struct Inner {
    /// `None` once shut down.
    sender: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// The background task, until [`Completer::shutdown`] waits for it.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
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
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self
            .inner
            .sender
            .lock()
            .map(|s| s.is_some())
            .unwrap_or(false);
        f.debug_struct("Completer").field("open", &open).finish()
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
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::Config {
            message: "a Completer needs a Tokio runtime for its background task".to_owned(),
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = runtime.spawn(run(queue, receiver, config));
        Ok(Completer {
            inner: Arc::new(Inner {
                sender: Mutex::new(Some(sender)),
                task: tokio::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// Completes `execution_id` as [`ExecutionQueue::complete`] would, in
    /// the next batch, and resolves to this completion's own result.
    ///
    /// The completion is handed over here, before the returned future is
    /// polled: dropping the future does not withdraw it. After
    /// [`shutdown`](Self::shutdown), `Unavailable` and nothing is sent. An
    /// error of the batch as a whole (the connection lost, a timeout) is
    /// every caller's of that batch, as the same kind of error.
    pub fn complete(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        outcome: Outcome,
    ) -> impl Future<Output = Result<TaskExecution>> + Send + 'static {
        let handed = self.hand_over(Completion::new(execution_id, worker_id, outcome));
        async move {
            match handed?.await {
                Ok(result) => result,
                Err(_) => Err(stopped()),
            }
        }
    }

    fn hand_over(
        &self,
        completion: Completion,
    ) -> Result<oneshot::Receiver<Result<TaskExecution>>> {
        let (reply, result) = oneshot::channel();
        let sender = self.inner.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(Error::unavailable("the completer was shut down", None));
        };
        sender
            .send(Request { completion, reply })
            .map_err(|_| stopped())?;
        Ok(result)
    }

    /// Stops taking completions, sends every one already handed over and
    /// returns when they are done (their callers have their results). Later
    /// [`complete`](Self::complete) calls, through any clone, get
    /// `Unavailable`. Calling it again, or from a clone, returns once that
    /// flush is done.
    pub async fn shutdown(&self) {
        drop(
            self.inner
                .sender
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        // Held while waiting, so a concurrent shutdown returns only when
        // the flush is done too.
        let mut task = self.inner.task.lock().await;
        if let Some(handle) = task.take()
            && let Err(err) = handle.await
        {
            tracing::error!(error = %err, "the completer's background task failed");
        }
    }
}

fn stopped() -> Error {
    Error::unavailable("the completer's background task stopped", None)
}

/// The background task: collects, sends, answers, until every sender is
/// gone and nothing waits.
async fn run(
    queue: Arc<dyn ExecutionQueue>,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    config: CompleterConfig,
) {
    let mut waiting: Vec<Request> = Vec::new();
    let mut open = true;
    loop {
        if waiting.is_empty() {
            if !open {
                return;
            }
            match receiver.recv().await {
                Some(request) => waiting.push(request),
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + config.flush_interval;
        while open && waiting.len() < config.max_batch {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(request)) => waiting.push(request),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        flush(queue.as_ref(), &mut waiting, config.max_batch).await;
    }
}

/// Sends one batch out of `waiting`: up to `max_batch` completions, at most
/// one per execution (the others stay, in order, for the next batch).
async fn flush(queue: &dyn ExecutionQueue, waiting: &mut Vec<Request>, max_batch: usize) {
    let mut ids = HashSet::with_capacity(waiting.len().min(max_batch));
    let mut batch = Vec::with_capacity(waiting.len().min(max_batch));
    let mut later = Vec::new();
    for request in waiting.drain(..) {
        if batch.len() < max_batch && ids.insert(request.completion.execution_id) {
            batch.push(request);
        } else {
            later.push(request);
        }
    }
    *waiting = later;
    let (completions, replies): (Vec<Completion>, Vec<_>) =
        batch.into_iter().map(|r| (r.completion, r.reply)).unzip();
    let count = completions.len();
    match queue.complete_many(completions).await {
        Ok(results) if results.len() == count => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that dropped its future no longer listens.
                let _ = reply.send(result);
            }
        }
        Ok(results) => {
            let err = Error::unavailable(
                format!(
                    "complete_many answered {} completions with {} results",
                    count,
                    results.len()
                ),
                None,
            );
            answer_all(replies, err);
        }
        Err(err) => answer_all(replies, err),
    }
}

/// Gives every caller of a batch the batch's error.
fn answer_all(replies: Vec<oneshot::Sender<Result<TaskExecution>>>, err: Error) {
    tracing::warn!(error = %err, completions = replies.len(), "a completer batch failed");
    let shared = Arc::new(err);
    for reply in replies {
        let _ = reply.send(Err(replicate(&shared)));
    }
}

/// An error of the same kind as `err` (same variant, fields and predicates),
/// for one more caller: [`Error`] is not `Clone`, since its sources are
/// not. Where the variant has a boxed source, the original error is it.
fn replicate(err: &Arc<Error>) -> Error {
    let source = || Some(Box::new(err.clone()) as crate::error::BoxError);
    match err.as_ref() {
        Error::NotFound { entity, key } => Error::NotFound {
            entity,
            key: key.clone(),
        },
        Error::Conflict {
            message,
            constraint,
            ..
        } => Error::Conflict {
            message: message.clone(),
            constraint: constraint.clone(),
            source: None,
        },
        Error::ForeignKey {
            message,
            constraint,
            ..
        } => Error::ForeignKey {
            message: message.clone(),
            constraint: constraint.clone(),
            source: None,
        },
        Error::CheckViolation {
            message,
            constraint,
            not_null,
            ..
        } => Error::CheckViolation {
            message: message.clone(),
            constraint: constraint.clone(),
            not_null: *not_null,
            source: None,
        },
        Error::Validation { field, message } => Error::Validation {
            field,
            message: message.clone(),
        },
        Error::InvalidTransition { entity, from, to } => {
            Error::InvalidTransition { entity, from, to }
        }
        Error::LeaseLost { execution, reason } => Error::LeaseLost {
            execution: *execution,
            reason: *reason,
        },
        Error::TransactionEnded => Error::TransactionEnded,
        Error::TransactionAborted => Error::TransactionAborted,
        Error::Timeout { kind, .. } => Error::Timeout {
            kind: *kind,
            source: source(),
        },
        Error::Unavailable { reason, .. } => Error::Unavailable {
            reason: reason.clone(),
            source: source(),
        },
        Error::Tls { kind, message, .. } => Error::Tls {
            kind: *kind,
            message: message.clone(),
            source: source(),
        },
        Error::Migration { message, .. } => Error::Migration {
            message: message.clone(),
            source: source(),
        },
        Error::Decode {
            entity, column, id, ..
        } => Error::Decode {
            entity,
            column,
            id: id.clone(),
            source: Box::new(err.clone()),
        },
        Error::Config { message } => Error::Config {
            message: message.clone(),
        },
        Error::Database {
            sqlstate, message, ..
        } => Error::Database {
            sqlstate: sqlstate.clone(),
            message: message.clone(),
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn replicas_keep_the_kind() {
        let shared = Arc::new(Error::Timeout {
            kind: crate::error::TimeoutKind::PoolWait,
            source: None,
        });
        let copy = replicate(&shared);
        assert!(copy.is_timeout() && copy.is_retryable());
        let shared = Arc::new(Error::unavailable("gone", None));
        let copy = replicate(&shared);
        assert!(copy.is_unavailable());
        assert_eq!(copy.to_string(), shared.to_string());
    }
}
