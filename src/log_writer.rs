//! [`LogWriter`]: log lines of a worker fleet, batched into
//! [`LogRepository::append_many`] calls.
//!
//! A worker that appends each chunk of output as it comes sends a statement
//! (and a commit) per chunk per execution. Each worker calls
//! [`LogWriter::append`] as it would [`LogRepository::append`] instead; a
//! background task collects the appends of every worker and sends them as
//! one statement when the oldest has waited
//! [`LogWriterConfig::flush_interval`] or [`LogWriterConfig::max_batch`]
//! are waiting, whichever comes first, with up to
//! [`LogWriterConfig::max_in_flight`] batches running at once, as the
//! [`Completer`](crate::Completer) does for completions. Each caller gets
//! its own result. A batch carries at most 64 MiB of line text (the server
//! takes at most 1 GiB of parameters per statement): what does not fit
//! waits for the next batch, and a larger append goes in a batch of its
//! own.
//!
//! Two appends of one execution are never in one batch, nor in two batches
//! in flight at once: the later waits for the earlier to be answered, so an
//! execution's lines reach the table in the order they were handed over.
//! A worker that wants its appends to overlap (to keep streaming while the
//! previous append is on its way) can call [`append`](LogWriter::append)
//! again without awaiting the previous future, and await both later.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::batcher::{Batcher, Settings, Sink};
use crate::error::Result;
use crate::model::{ExecutionId, LogAppend, NewLogLine};
use crate::repo::LogRepository;
use crate::validate;

/// How a [`LogWriter`] batches.
///
/// Not `#[non_exhaustive]`, so it can be written as a struct literal with
/// `..Default::default()`; a new field would come in a major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWriterConfig {
    /// Longest an append waits for others before its batch is sent.
    /// Default 5 ms; 1 µs..=[`LogWriterConfig::MAX_FLUSH_INTERVAL`].
    pub flush_interval: Duration,
    /// A batch is sent as soon as it holds this many appends (each of any
    /// number of lines, of one execution). Default 100;
    /// 1..=[`LogWriterConfig::MAX_BATCH`].
    pub max_batch: usize,
    /// How many batches may be in flight at once, each on a connection of
    /// the pool. Default 4; 1..=[`LogWriterConfig::MAX_IN_FLIGHT`]. Two
    /// appends of one execution are still sent one after the other.
    pub max_in_flight: usize,
}

impl LogWriterConfig {
    /// The longest [`flush_interval`](Self::flush_interval): lines held
    /// longer would reach their followers late, and an append held past
    /// its execution's lease would be refused.
    pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// The most [`max_batch`](Self::max_batch) takes: appends of a thousand
    /// executions in one statement.
    pub const MAX_BATCH: usize = 1_000;

    /// The most [`max_in_flight`](Self::max_in_flight) takes.
    pub const MAX_IN_FLIGHT: usize = crate::batcher::MAX_IN_FLIGHT;

    /// `Error::Config` naming the setting out of range.
    pub fn validate(&self) -> Result<()> {
        self.settings()
            .validate("log writer", Self::MAX_FLUSH_INTERVAL, Self::MAX_BATCH)
    }

    fn settings(&self) -> Settings {
        Settings {
            flush_interval: self.flush_interval,
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
        }
    }
}

impl Default for LogWriterConfig {
    fn default() -> Self {
        LogWriterConfig {
            flush_interval: Duration::from_millis(5),
            max_batch: 100,
            max_in_flight: 4,
        }
    }
}

/// About what a line costs a statement beyond its text: its seq, stream,
/// time and execution id in the parameter arrays.
const LINE_OVERHEAD: usize = 32;

/// [`LogWriter`]'s batches go through `append_many`.
struct Appends(Arc<dyn LogRepository>);

#[async_trait]
impl Sink for Appends {
    type Item = LogAppend;
    type Output = u64;
    const TYPE: &'static str = "LogWriter";
    const CALL: &'static str = "append_many";

    fn execution_id(item: &LogAppend) -> ExecutionId {
        item.execution_id
    }

    fn weight(item: &LogAppend) -> usize {
        item.lines.iter().fold(0usize, |bytes, line| {
            bytes
                .saturating_add(line.text.len())
                .saturating_add(LINE_OVERHEAD)
        })
    }

    async fn send(&self, items: Vec<LogAppend>) -> Result<Vec<Result<u64>>> {
        self.0.append_many(items).await
    }
}

/// Log lines of many workers, sent in batches through
/// [`LogRepository::append_many`]; see the [module](self) documentation.
///
/// Cheap to clone: the clones share one background task, so a fleet holds
/// one `LogWriter` (or clones of it). Every append is lease-checked in the
/// statement as [`LogRepository::append`] checks it, and a caller gets
/// exactly the result `append` would have given (the lines added,
/// `LeaseLost`, `NotFound`...). An invalid append is refused with its own
/// `Validation` when it is handed over and never joins a batch, so it
/// cannot fail the appends of other workers.
///
/// An append is handed over when [`append`](Self::append) is called, not
/// when its future is first polled; from then on it is sent even if the
/// caller drops the future, or every clone of the `LogWriter` is dropped
/// (while the runtime runs). [`shutdown`](Self::shutdown) sends what is
/// waiting and returns when it is done.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Batcher<Appends>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("open", &self.inner.is_open())
            .finish()
    }
}

impl LogWriter {
    /// A writer over `logs` with the default [`LogWriterConfig`]. Its
    /// background task runs on the current Tokio runtime: `Error::Config`
    /// outside one.
    pub fn new(logs: Arc<dyn LogRepository>) -> Result<Self> {
        Self::with_config(logs, LogWriterConfig::default())
    }

    /// A writer over `logs` batching as `config` says. `Error::Config` for
    /// settings out of range ([`LogWriterConfig::validate`]) or outside a
    /// Tokio runtime.
    pub fn with_config(logs: Arc<dyn LogRepository>, config: LogWriterConfig) -> Result<Self> {
        config.validate()?;
        let batcher = Batcher::start(Appends(logs), config.settings())?;
        Ok(LogWriter {
            inner: Arc::new(batcher),
        })
    }

    /// Appends `lines` to `execution_id`'s log as its worker `worker_id`,
    /// as [`LogRepository::append`] would, in the next batch, and resolves
    /// to this append's own result: how many lines were added.
    ///
    /// The append is checked ([`validate::log_append`]) and handed over
    /// here, before the returned future is polled: dropping the future does
    /// not withdraw it. An invalid one resolves to its `Validation` and is
    /// not sent. After [`shutdown`](Self::shutdown), `Unavailable` and
    /// nothing is sent. An error of the batch as a whole (the connection
    /// lost, a timeout) is every caller's of that batch, as the same kind of
    /// error; when it means the answer was lost, the batch may still have
    /// been applied, and appending the same lines again adds only those
    /// that are missing.
    ///
    /// Await the returned future before completing the execution: an
    /// append is lease-checked when its batch runs, so one still waiting
    /// when the completion commits is refused (`LeaseLost`, `Finished`)
    /// and its lines are not stored.
    pub fn append(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lines: Vec<NewLogLine>,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let append = LogAppend::new(execution_id, worker_id, lines);
        let handed = validate::log_append(&append).map(|()| self.inner.submit(append));
        async move { handed?.await }
    }

    /// Stops taking appends, sends every one already handed over and
    /// returns when they are done (their callers have their results). Later
    /// [`append`](Self::append) calls, through any clone, get
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
        assert!(LogWriterConfig::default().validate().is_ok());
        for config in [
            LogWriterConfig {
                flush_interval: Duration::ZERO,
                ..Default::default()
            },
            LogWriterConfig {
                flush_interval: Duration::from_secs(2),
                ..Default::default()
            },
            LogWriterConfig {
                max_batch: 0,
                ..Default::default()
            },
            LogWriterConfig {
                max_batch: LogWriterConfig::MAX_BATCH + 1,
                ..Default::default()
            },
            LogWriterConfig {
                max_in_flight: 0,
                ..Default::default()
            },
            LogWriterConfig {
                max_in_flight: LogWriterConfig::MAX_IN_FLIGHT + 1,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(config.validate(), Err(Error::Config { .. })),
                "{config:?}"
            );
        }
    }

    #[test]
    fn an_append_weighs_its_text_and_its_lines() {
        let append = LogAppend::new(
            ExecutionId::new(),
            "w",
            vec![NewLogLine::stdout(0, "abc"), NewLogLine::stderr(1, "")],
        );
        assert_eq!(Appends::weight(&append), 3 + 2 * LINE_OVERHEAD);
    }

    #[cfg(feature = "mock")]
    #[tokio::test]
    async fn a_bad_append_fails_alone_and_a_failed_batch_is_every_callers_error() {
        let mut logs = crate::repo::MockLogRepository::new();
        logs.expect_append_many().times(1).returning(|appends| {
            // The invalid append never joined the batch.
            assert_eq!(appends.len(), 2);
            Err(Error::unavailable("connection lost", None))
        });
        logs.expect_append_many()
            .returning(|appends| Ok(appends.iter().map(|a| Ok(a.lines.len() as u64)).collect()));
        let writer = LogWriter::with_config(
            Arc::new(logs),
            LogWriterConfig {
                flush_interval: Duration::from_millis(50),
                max_batch: 2,
                max_in_flight: 1,
            },
        )
        .unwrap();
        let line = |seq| vec![NewLogLine::stdout(seq, "x")];
        let a = writer.append(ExecutionId::new(), "w", line(0));
        let bad = writer.append(ExecutionId::new(), "w", Vec::new());
        let b = writer.append(ExecutionId::new(), "w", line(0));
        let err = bad.await.unwrap_err();
        assert!(
            matches!(err, Error::Validation { field: "lines", .. }),
            "{err:?}"
        );
        let (a, b) = tokio::join!(a, b);
        for result in [a, b] {
            let err = result.unwrap_err();
            assert!(err.is_unavailable(), "{err:?}");
            assert!(err.to_string().contains("connection lost"));
        }
        let two = vec![NewLogLine::stdout(0, "x"), NewLogLine::stdout(1, "y")];
        assert_eq!(
            writer.append(ExecutionId::new(), "w", two).await.unwrap(),
            2
        );
        writer.shutdown().await;
        let late = writer
            .append(ExecutionId::new(), "w", line(0))
            .await
            .unwrap_err();
        assert!(late.is_unavailable(), "{late:?}");
    }
}
