//! [`Heartbeater`]: heartbeats of a worker fleet, batched into
//! [`ExecutionQueue::heartbeat_batch`] calls.
//!
//! [`ExecutionQueue::heartbeat_many`] renews the leases of one worker's
//! in-flight set in one statement; a fleet of workers still sends a
//! statement (and a commit) per worker per round. Each worker calls
//! [`Heartbeater::heartbeat`] as it would [`ExecutionQueue::heartbeat`]
//! instead; a background task collects the heartbeats of every worker and
//! sends them as one statement when the oldest has waited
//! [`HeartbeaterConfig::flush_interval`] or
//! [`HeartbeaterConfig::max_batch`] are waiting, whichever comes first, as
//! the [`Completer`](crate::Completer) does for completions. Each caller
//! gets its own result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::batcher::{Batcher, Settings, Sink};
use crate::error::Result;
use crate::model::{ExecutionId, Heartbeat, Timestamp};
use crate::repo::ExecutionQueue;
use crate::validate::MAX_CLAIM;

/// How a [`Heartbeater`] batches.
///
/// Not `#[non_exhaustive]`, so it can be written as a struct literal with
/// `..Default::default()`; a new field would come in a major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeaterConfig {
    /// Longest a heartbeat waits for others before its batch is sent.
    /// Default 10 ms (a lease is usually many seconds, so a heartbeat can
    /// wait longer than a completion, and batches grow larger);
    /// 1 µs..=[`HeartbeaterConfig::MAX_FLUSH_INTERVAL`].
    pub flush_interval: Duration,
    /// A batch is sent as soon as it holds this many heartbeats. Default
    /// 500; 1..=[`validate::MAX_CLAIM`](crate::validate::MAX_CLAIM), what one
    /// [`heartbeat_batch`](ExecutionQueue::heartbeat_batch) takes.
    pub max_batch: usize,
    /// How many batches may be in flight at once, each on a connection of
    /// the pool. Default 4; 1..=[`HeartbeaterConfig::MAX_IN_FLIGHT`]. Two
    /// heartbeats of one execution are still sent one after the other.
    pub max_in_flight: usize,
}

impl HeartbeaterConfig {
    /// The longest [`flush_interval`](Self::flush_interval): a heartbeat
    /// held longer would eat into the lease it is meant to renew.
    pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// The most [`max_in_flight`](Self::max_in_flight) takes.
    pub const MAX_IN_FLIGHT: usize = crate::batcher::MAX_IN_FLIGHT;

    /// `Error::Config` naming the setting out of range.
    pub fn validate(&self) -> Result<()> {
        self.settings()
            .validate("heartbeater", Self::MAX_FLUSH_INTERVAL, MAX_CLAIM as usize)
    }

    fn settings(&self) -> Settings {
        Settings {
            flush_interval: self.flush_interval,
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
        }
    }
}

impl Default for HeartbeaterConfig {
    fn default() -> Self {
        HeartbeaterConfig {
            flush_interval: Duration::from_millis(10),
            max_batch: 500,
            max_in_flight: 4,
        }
    }
}

/// [`Heartbeater`]'s batches go through `heartbeat_batch`.
struct Heartbeats(Arc<dyn ExecutionQueue>);

#[async_trait]
impl Sink for Heartbeats {
    type Item = Heartbeat;
    type Output = Timestamp;
    const TYPE: &'static str = "Heartbeater";
    const CALL: &'static str = "heartbeat_batch";

    fn execution_id(item: &Heartbeat) -> ExecutionId {
        item.execution_id
    }

    async fn send(&self, items: Vec<Heartbeat>) -> Result<Vec<Result<Timestamp>>> {
        self.0.heartbeat_batch(items).await
    }
}

/// Heartbeats of many workers, sent in batches through
/// [`ExecutionQueue::heartbeat_batch`]; see the [module](self)
/// documentation.
///
/// Cheap to clone: the clones share one background task, so a fleet holds
/// one `Heartbeater` (or clones of it). Every heartbeat is lease-checked in
/// the statement as [`ExecutionQueue::heartbeat`] checks it, and a caller
/// gets exactly the result `heartbeat` would have given: the new end of the
/// lease, `LeaseLost` with the reason, `NotFound`, `Validation`. Two
/// heartbeats of one execution are never sent in the same batch: the later
/// one waits for the next, and renews the lease again, as a second
/// `heartbeat` would.
///
/// A heartbeat is handed over when [`heartbeat`](Self::heartbeat) is
/// called, not when its future is first polled; from then on it is sent
/// even if the caller drops the future, or every clone of the `Heartbeater`
/// is dropped (while the runtime runs). [`shutdown`](Self::shutdown) sends
/// what is waiting and returns when it is done.
#[derive(Clone)]
pub struct Heartbeater {
    inner: Arc<Batcher<Heartbeats>>,
}

impl std::fmt::Debug for Heartbeater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeater")
            .field("open", &self.inner.is_open())
            .finish()
    }
}

impl Heartbeater {
    /// A heartbeater over `queue` with the default [`HeartbeaterConfig`].
    /// Its background task runs on the current Tokio runtime:
    /// `Error::Config` outside one.
    pub fn new(queue: Arc<dyn ExecutionQueue>) -> Result<Self> {
        Self::with_config(queue, HeartbeaterConfig::default())
    }

    /// A heartbeater over `queue` batching as `config` says.
    /// `Error::Config` for settings out of range
    /// ([`HeartbeaterConfig::validate`]) or outside a Tokio runtime.
    pub fn with_config(queue: Arc<dyn ExecutionQueue>, config: HeartbeaterConfig) -> Result<Self> {
        config.validate()?;
        let batcher = Batcher::start(Heartbeats(queue), config.settings())?;
        Ok(Heartbeater {
            inner: Arc::new(batcher),
        })
    }

    /// Heartbeats `execution_id` as [`ExecutionQueue::heartbeat`] would, in
    /// the next batch, and resolves to this heartbeat's own result: the new
    /// end of the lease (`now + lease`, `now` being when the batch ran).
    ///
    /// The heartbeat is handed over here, before the returned future is
    /// polled: dropping the future does not withdraw it. After
    /// [`shutdown`](Self::shutdown), `Unavailable` and nothing is sent. An
    /// error of the batch as a whole (the connection lost, a timeout) is
    /// every caller's of that batch, as the same kind of error, with the
    /// same SQLSTATE and predicates; when it means the answer was lost, the
    /// batch may still have been applied, as
    /// [`heartbeat_batch`](ExecutionQueue::heartbeat_batch) says.
    pub fn heartbeat(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Timestamp>> + Send + 'static {
        self.inner
            .submit(Heartbeat::new(execution_id, worker_id, lease))
    }

    /// Stops taking heartbeats, sends every one already handed over and
    /// returns when they are done (their callers have their results). Later
    /// [`heartbeat`](Self::heartbeat) calls, through any clone, get
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
        assert!(HeartbeaterConfig::default().validate().is_ok());
        for config in [
            HeartbeaterConfig {
                flush_interval: Duration::ZERO,
                ..Default::default()
            },
            HeartbeaterConfig {
                flush_interval: HeartbeaterConfig::MAX_FLUSH_INTERVAL + Duration::from_nanos(1),
                ..Default::default()
            },
            HeartbeaterConfig {
                max_batch: 0,
                ..Default::default()
            },
            HeartbeaterConfig {
                max_batch: MAX_CLAIM as usize + 1,
                ..Default::default()
            },
            HeartbeaterConfig {
                max_in_flight: 0,
                ..Default::default()
            },
            HeartbeaterConfig {
                max_in_flight: HeartbeaterConfig::MAX_IN_FLIGHT + 1,
                ..Default::default()
            },
        ] {
            let err = config.validate().unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{config:?}");
            assert!(err.to_string().contains("heartbeater"), "{err}");
        }
    }

    #[cfg(feature = "mock")]
    #[test]
    fn outside_a_runtime_is_a_config_error() {
        let queue = crate::repo::MockExecutionQueue::new();
        let err = Heartbeater::new(Arc::new(queue)).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
    }

    #[cfg(feature = "mock")]
    #[tokio::test]
    async fn a_failed_batch_is_every_callers_error() {
        let mut queue = crate::repo::MockExecutionQueue::new();
        queue
            .expect_heartbeat_batch()
            .times(1)
            .returning(|heartbeats| {
                assert_eq!(heartbeats.len(), 3);
                Err(Error::Timeout {
                    kind: crate::error::TimeoutKind::Statement,
                    source: None,
                })
            });
        let heartbeater = Heartbeater::with_config(
            Arc::new(queue),
            HeartbeaterConfig {
                flush_interval: Duration::from_millis(50),
                max_batch: 3,
                max_in_flight: 1,
            },
        )
        .unwrap();
        let call = || heartbeater.heartbeat(ExecutionId::new(), "w", Duration::from_secs(30));
        let (a, b, c) = tokio::join!(call(), call(), call());
        for result in [a, b, c] {
            let err = result.unwrap_err();
            assert!(err.is_timeout(), "{err:?}");
        }
        heartbeater.shutdown().await;
    }
}
