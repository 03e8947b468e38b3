//! Following an execution's log while it is written:
//! [`Database::follow_logs`] and [`Database::follow_scoped_logs`].
//!
//! A follower reads the log with
//! [`read_after`](crate::LogRepository::read_after), which returns the
//! lines after the last one yielded together with the execution's status,
//! in one snapshot. While the execution runs it yields only the lines that
//! continue the log without a gap (seq 0, 1, 2...): a line whose
//! predecessor has not arrived yet (an append still in flight, or a worker
//! that skipped one) waits for it. Once a read finds the status final and
//! fewer lines than it asked for, the log is complete (an append after the
//! end is refused): the follower yields what remains, in order, gaps or
//! not, and ends. Every stored line is yielded exactly once, in `seq`
//! order.
//!
//! Between reads it waits for a notification naming its execution on the
//! channel [`LOGS_CHANNEL`] (sent by the log table's statement trigger of
//! migration V13 when lines commit) or on the execution events' channel
//! [`CHANNEL`] (its end), or for
//! [`FollowOptions::poll_interval`], whichever comes first: the interval
//! is a safety net while listening (default 1 s), and the only clock when
//! polling (default 100 ms). Listening takes a dedicated connection per
//! follower, outside the pool, like [`Database::subscribe`], and the same
//! rules: behind a transaction-mode pooler it goes through the direct URL,
//! and without one [`FollowMode::Listen`] is an `Error::Config` while
//! [`FollowMode::Auto`] (the default) polls through the pool instead. A
//! lost listening connection is made again with backoff; meanwhile, and
//! right after it is back, the follower reads at its interval and at once,
//! from the last line it yielded, so nothing is lost or yielded twice.
//!
//! Sessions that set `voidrunner.notify_events = off`
//! ([`DbConfig::notify_events`](crate::DbConfig::notify_events)) send no
//! notifications; their lines then reach listening followers at the poll
//! interval.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{CHANNEL, Listener, MAX_BACKOFF, POLL_INTERVAL_RANGE, database_open, listen_to};
use crate::config::DbConfig;
use crate::connect::Connector;
use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{ExecutionId, LogLine, LogRead, UserId};
use crate::pg::{PgLogRepository, PgScopedLogRepository};
use crate::repo::{LogRepository, MAX_READ_LINES, ScopedLogRepository};

/// The notification channel of new log lines: a JSON array of the
/// executions an append statement added lines to (see the
/// [module docs](self)).
pub const LOGS_CHANNEL: &str = "voidrunner_logs";

/// Batches of lines read ahead of the consumer: the follower reads on
/// while the consumer works through the previous batch, and stops there.
const READ_AHEAD: usize = 2;

/// The least a follower waits after a failed read before the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How a follower waits for new lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FollowMode {
    /// Listens where a session of its own can be had (a direct connection,
    /// a session-mode pooler or a direct URL), polls otherwise. The
    /// default.
    #[default]
    Auto,
    /// Listens; `Error::Config` behind a transaction-mode pooler without a
    /// direct URL, `Unavailable` when the first listening connection cannot
    /// be made.
    Listen,
    /// Polls through the pool at the poll interval; no connection of its
    /// own.
    Poll,
}

/// How [`Database::follow_logs`] follows.
///
/// Not `#[non_exhaustive]`, so it can be written as a struct literal with
/// `..Default::default()`; a new field would come in a major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// Listen or poll. Default [`FollowMode::Auto`].
    pub mode: FollowMode,
    /// The longest wait between two reads while no notification comes:
    /// `None` for [`FollowOptions::LISTEN_POLL_INTERVAL`] when listening
    /// and [`FollowOptions::POLL_INTERVAL`] when polling. 1 ms to 1 hour.
    pub poll_interval: Option<Duration>,
    /// The most lines one read returns, 1..=[`MAX_READ_LINES`]. Default
    /// 1000. A follower reads ahead of its consumer by at most four reads'
    /// worth of lines (the one being consumed, two waiting, one being
    /// handed over), then waits for it.
    pub read_lines: u32,
}

impl FollowOptions {
    /// The default poll interval of a listening follower: only a safety
    /// net, a notification wakes it first.
    pub const LISTEN_POLL_INTERVAL: Duration = Duration::from_secs(1);

    /// The default poll interval of a polling follower.
    pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

    /// `Validation` naming the option out of range.
    pub fn validate(&self) -> Result<()> {
        if let Some(interval) = self.poll_interval {
            crate::validate::duration_in("poll_interval", interval, &POLL_INTERVAL_RANGE)?;
        }
        if self.read_lines == 0 || self.read_lines > MAX_READ_LINES {
            return Err(Error::validation(
                "read_lines",
                format!("must be 1..={MAX_READ_LINES}, not {}", self.read_lines),
            ));
        }
        Ok(())
    }
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            mode: FollowMode::Auto,
            poll_interval: None,
            read_lines: 1000,
        }
    }
}

/// The lines of one execution's log as they are written, each once, in
/// `seq` order; see the [module docs](self). Implements
/// `futures_core::Stream`; [`next`](Self::next) is the same without a
/// stream library.
///
/// Dropping it stops its background task and closes its listening
/// connection; a read in flight is abandoned as any dropped repository
/// call is.
#[derive(Debug)]
pub struct LogFollow {
    pending: VecDeque<LogLine>,
    receiver: mpsc::Receiver<Result<Vec<LogLine>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    listens: bool,
}

impl LogFollow {
    /// The next line; `None` once the execution has ended and every line
    /// of its log was yielded. An error of a read is yielded too: the
    /// follower goes on after `Unavailable` and `Timeout` (the next read
    /// starts after the last line yielded) and ends after any other
    /// (`NotFound` when the execution was deleted; `Unavailable` "the
    /// database was closed" once its [`Database`] is).
    pub async fn next(&mut self) -> Option<Result<LogLine>> {
        std::future::poll_fn(|cx| self.poll_line(cx)).await
    }

    /// Whether it waits on notifications (else it polls): what
    /// [`FollowMode::Auto`] chose.
    pub fn listens(&self) -> bool {
        self.listens
    }

    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<LogLine>>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(line)));
            }
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(Ok(lines))) => self.pending.extend(lines),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_core::Stream for LogFollow {
    type Item = Result<LogLine>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_line(cx)
    }
}

impl Drop for LogFollow {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Where a follower reads: every log, or one user's.
enum Reader {
    All(PgLogRepository),
    Scoped(PgScopedLogRepository),
}

impl Reader {
    async fn read(&self, id: ExecutionId, after: Option<u64>, limit: u32) -> Result<LogRead> {
        match self {
            Reader::All(logs) => logs.read_after(id, after, limit).await,
            Reader::Scoped(logs) => logs.read_after(id, after, limit).await,
        }
    }
}

/// What a follower does after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read again at once: the read was full.
    Read,
    /// Wait for a notification or the interval.
    Wait,
    /// The log is complete.
    Done,
}

/// The last line a follower yielded.
#[derive(Debug, Default)]
struct Position {
    after: Option<u64>,
}

impl Position {
    /// The lines of `read` (a read of at most `limit` lines after
    /// `self.after`) to yield now, and what to do next.
    fn take(&mut self, read: LogRead, limit: u32) -> (Vec<LogLine>, Next) {
        let full = read.lines.len() >= limit as usize;
        let mut lines = read.lines;
        let next = if read.status.is_terminal() {
            // Nothing can be added any more: a gap is for good.
            if full { Next::Read } else { Next::Done }
        } else {
            let expected = self.after.map_or(Some(0), |after| after.checked_add(1));
            let contiguous = lines
                .iter()
                .zip(0u64..)
                .take_while(|(line, i)| expected.and_then(|e| e.checked_add(*i)) == Some(line.seq))
                .count();
            let gap = contiguous < lines.len();
            lines.truncate(contiguous);
            if full && !gap { Next::Read } else { Next::Wait }
        };
        if let Some(last) = lines.last() {
            self.after = Some(last.seq);
        }
        (lines, next)
    }
}

/// A follower's listening connection, made again when lost.
struct Listening {
    config: DbConfig,
    connector: Connector,
    execution: String,
    wake: Arc<Notify>,
    listener: Option<Listener>,
    backoff: Duration,
    retry_at: Instant,
}

impl Listening {
    fn new(db: &Database, execution: ExecutionId) -> Self {
        Listening {
            config: db.config().clone(),
            connector: db.connector().clone(),
            execution: execution.as_uuid().hyphenated().to_string(),
            wake: Arc::new(Notify::new()),
            listener: None,
            backoff: Duration::from_millis(50),
            retry_at: Instant::now(),
        }
    }

    async fn connect(&mut self) -> Result<()> {
        let wake = Arc::clone(&self.wake);
        let execution = self.execution.clone();
        // A notification names executions by their text; matching the
        // text is enough (a uuid does not occur by chance) and costs no
        // parse of the events of every other execution.
        let result = listen_to(
            &self.config,
            &self.connector,
            &[LOGS_CHANNEL, CHANNEL],
            move |n| {
                if n.payload().contains(&execution) {
                    // Kept as a permit when the follower is reading, so a
                    // notification between a read and the next wait is not
                    // lost.
                    wake.notify_one();
                }
            },
        )
        .await;
        match result {
            Ok(listener) => {
                self.listener = Some(listener);
                self.backoff = Duration::from_millis(50);
                Ok(())
            }
            Err(e) => {
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = self.backoff.saturating_mul(2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    /// Waits for a notification naming the execution, `interval`, or the
    /// connection's loss, whichever comes first. Without a connection,
    /// tries to make one when its backoff is over (and returns at once
    /// when it succeeds: what was notified meanwhile was missed).
    async fn wait(&mut self, interval: Duration) {
        if self.listener.is_none() && Instant::now() >= self.retry_at {
            match self.connect().await {
                Ok(()) => {
                    tracing::info!("log follower listening again");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "log follower cannot listen yet");
                }
            }
        }
        let Listening {
            wake,
            listener,
            retry_at,
            ..
        } = self;
        match listener {
            Some(connection) => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(interval) => {}
                    () = connection.closed() => {
                        tracing::debug!("log follower lost its listening connection");
                        *listener = None;
                        *retry_at = Instant::now();
                    }
                }
            }
            None => {
                let until = (Instant::now() + interval).min(*retry_at);
                tokio::time::sleep_until(until).await;
            }
        }
    }
}

/// How a follower waits between reads.
enum Waiter {
    Listen(Box<Listening>),
    Poll,
}

impl Waiter {
    async fn wait(&mut self, interval: Duration) {
        match self {
            Waiter::Listen(listening) => listening.wait(interval).await,
            Waiter::Poll => tokio::time::sleep(interval).await,
        }
    }
}

/// Errors after which a follower reads again: the next read may pass.
fn transient(err: &Error) -> bool {
    err.is_unavailable() || err.is_timeout() || err.is_retryable()
}

/// Everything a follower's background task needs.
struct Follower {
    reader: Reader,
    execution: ExecutionId,
    limit: u32,
    interval: Duration,
    waiter: Waiter,
    position: Position,
    pool: deadpool_postgres::WeakPool,
    sender: mpsc::Sender<Result<Vec<LogLine>>>,
}

impl Follower {
    async fn run(mut self, mut next: Next) {
        loop {
            match next {
                Next::Done => return,
                Next::Wait => self.waiter.wait(self.interval).await,
                Next::Read => {}
            }
            if !database_open(&self.pool) {
                let closed = Error::unavailable("the database was closed", None);
                let _ = self.sender.send(Err(closed)).await;
                return;
            }
            match self
                .reader
                .read(self.execution, self.position.after, self.limit)
                .await
            {
                Ok(read) => {
                    let (lines, then) = self.position.take(read, self.limit);
                    next = then;
                    // A send waits while the consumer is READ_AHEAD
                    // batches behind; it fails once the follow is dropped.
                    if !lines.is_empty() && self.sender.send(Ok(lines)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let go_on = transient(&e);
                    tracing::debug!(error = %e, go_on, "a log follower's read failed");
                    if self.sender.send(Err(e)).await.is_err() || !go_on {
                        return;
                    }
                    tokio::time::sleep(self.interval.max(ERROR_PAUSE)).await;
                    next = Next::Read;
                }
            }
        }
    }
}

async fn follow(
    db: &Database,
    reader: Reader,
    execution: ExecutionId,
    options: FollowOptions,
) -> Result<LogFollow> {
    options.validate()?;
    const WHAT: &str = "follow_logs with FollowMode::Listen (LISTEN; FollowMode::Poll and \
                        FollowMode::Auto work through the pooler)";
    let listens = match options.mode {
        FollowMode::Poll => false,
        FollowMode::Listen => {
            db.config().require_session(WHAT)?;
            true
        }
        FollowMode::Auto => db.config().require_session(WHAT).is_ok(),
    };
    let interval = options.poll_interval.unwrap_or(if listens {
        FollowOptions::LISTEN_POLL_INTERVAL
    } else {
        FollowOptions::POLL_INTERVAL
    });
    // Listening before the first read: a line committed after that read
    // finds the follower notified.
    let waiter = if listens {
        let mut listening = Box::new(Listening::new(db, execution));
        if let Err(e) = listening.connect().await {
            if options.mode == FollowMode::Listen {
                return Err(e);
            }
            tracing::debug!(error = %e, "log follower cannot listen yet, reads at its interval");
        }
        Waiter::Listen(listening)
    } else {
        Waiter::Poll
    };
    let limit = options.read_lines;
    let mut position = Position::default();
    let read = reader.read(execution, None, limit).await?;
    let (lines, next) = position.take(read, limit);
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    let task = (next != Next::Done).then(|| {
        let follower = Follower {
            reader,
            execution,
            limit,
            interval,
            waiter,
            position,
            pool: db.pool().weak(),
            sender,
        };
        tokio::spawn(follower.run(next))
    });
    Ok(LogFollow {
        pending: lines.into(),
        receiver,
        task,
        listens,
    })
}

impl Database {
    /// Follows execution `execution_id`'s log: every line once, in `seq`
    /// order, as it is written, ending when the execution has ended and
    /// every line was yielded (see [`crate::events::follow`]). Reads
    /// through the pool as [`logs`](Self::logs) does; listens on a
    /// dedicated connection unless `options` say to poll (or
    /// [`FollowMode::Auto`] cannot listen here).
    ///
    /// `NotFound` when the execution does not exist; `Validation` for
    /// options out of range; with [`FollowMode::Listen`], `Error::Config`
    /// behind a transaction-mode pooler without a direct URL and
    /// `Unavailable` when the listening connection cannot be made.
    pub async fn follow_logs(
        &self,
        execution_id: ExecutionId,
        options: FollowOptions,
    ) -> Result<LogFollow> {
        follow(self, Reader::All(self.logs()), execution_id, options).await
    }

    /// [`follow_logs`](Self::follow_logs) as `user` reads: another user's
    /// execution is `NotFound`, as in [`scoped_logs`](Self::scoped_logs).
    /// A notification names only execution ids, so listening tells a
    /// follower nothing of other users' logs beyond that some were
    /// written.
    pub async fn follow_scoped_logs(
        &self,
        user: UserId,
        execution_id: ExecutionId,
        options: FollowOptions,
    ) -> Result<LogFollow> {
        follow(
            self,
            Reader::Scoped(self.scoped_logs(user)),
            execution_id,
            options,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutionStatus, LogStream, Timestamp};

    fn read(status: ExecutionStatus, seqs: &[u64]) -> LogRead {
        let id = ExecutionId::new();
        LogRead::new(
            status,
            seqs.iter()
                .map(|&seq| LogLine::new(id, seq, LogStream::Stdout, Timestamp::now(), "x"))
                .collect(),
        )
    }

    fn seqs(lines: &[LogLine]) -> Vec<u64> {
        lines.iter().map(|l| l.seq).collect()
    }

    #[test]
    fn a_running_log_yields_up_to_its_first_gap_and_an_ended_one_everything() {
        let mut at = Position::default();
        let (lines, next) = at.take(read(ExecutionStatus::Running, &[0, 1, 3]), 10);
        assert_eq!((seqs(&lines), next), (vec![0, 1], Next::Wait));
        let (lines, next) = at.take(read(ExecutionStatus::Running, &[3, 4]), 10);
        assert_eq!((seqs(&lines), next), (vec![], Next::Wait));
        assert_eq!(at.after, Some(1));
        let (lines, next) = at.take(read(ExecutionStatus::Running, &[2, 3]), 2);
        assert_eq!((seqs(&lines), next), (vec![2, 3], Next::Read));
        let (lines, next) = at.take(read(ExecutionStatus::Completed, &[4, 6]), 2);
        assert_eq!((seqs(&lines), next), (vec![4, 6], Next::Read));
        let (lines, next) = at.take(read(ExecutionStatus::Failed, &[9]), 2);
        assert_eq!((seqs(&lines), next), (vec![9], Next::Done));
        assert_eq!(at.after, Some(9));
    }

    #[test]
    fn a_log_that_does_not_start_at_zero_waits_while_running() {
        let mut at = Position::default();
        let (lines, next) = at.take(read(ExecutionStatus::Running, &[1, 2]), 10);
        assert_eq!((seqs(&lines), next), (vec![], Next::Wait));
        let (lines, next) = at.take(read(ExecutionStatus::Pending, &[]), 10);
        assert_eq!((seqs(&lines), next), (vec![], Next::Wait));
        let (lines, next) = at.take(read(ExecutionStatus::Cancelled, &[1, 2]), 10);
        assert_eq!((seqs(&lines), next), (vec![1, 2], Next::Done));
    }

    #[test]
    fn options_out_of_range_are_validation_errors() {
        assert!(FollowOptions::default().validate().is_ok());
        for (options, field) in [
            (
                FollowOptions {
                    poll_interval: Some(Duration::ZERO),
                    ..Default::default()
                },
                "poll_interval",
            ),
            (
                FollowOptions {
                    read_lines: 0,
                    ..Default::default()
                },
                "read_lines",
            ),
            (
                FollowOptions {
                    read_lines: MAX_READ_LINES + 1,
                    ..Default::default()
                },
                "read_lines",
            ),
        ] {
            let err = options.validate().unwrap_err();
            assert!(
                matches!(err, Error::Validation { field: f, .. } if f == field),
                "{err:?}"
            );
        }
    }
}
