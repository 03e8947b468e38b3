//! Execution events over LISTEN/NOTIFY, with a polling fallback.
//!
//! Triggers (migrations V2 and V6) send a notification on the channel
//! [`CHANNEL`] for every statement that adds executions or changes their
//! status, from the transaction that makes the change: delivered when it
//! commits, never when it rolls back. Its payload is a JSON array with one
//! object per execution, in the order the statement wrote them (split over
//! a few notifications when they do not fit in one: a payload must be
//! shorter than 8000 bytes), or, for a statement with one event, that
//! object alone, as triggers before V6 sent every event (so listeners of
//! earlier releases still read the common case); the listener reads both,
//! as another application may send either. The stream yields
//! one [`Event::Execution`] per execution all the same. A payload that
//! cannot be read is logged and skipped (an array's readable elements still
//! go out); the stream goes on. [`Database::subscribe`] listens on a dedicated connection
//! outside the pool; when that connection is lost (server restart,
//! `pg_terminate_backend`, network) it reconnects with exponential backoff,
//! listens again, and yields [`Event::Reconnected`], since notifications
//! sent while it was away are lost: a consumer that must not miss work
//! should then look at the tables (a worker simply claims).
//!
//! The listening connection has TCP keepalives on, starting after 15 s of
//! silence, probing every 5 s and giving up after 3 unanswered probes, so a
//! dead link (a peer that vanished without closing the connection) is
//! noticed within about 30 seconds and the stream reconnects, instead of
//! waiting silently for events that can no longer arrive.
//!
//! # Slow consumers
//!
//! The listener never stops reading its connection (a listener that stops
//! reading makes the server queue notifications for every session of the
//! cluster). It buffers up to [`EVENT_BUFFER`] events for the consumer (an
//! execution of a notification's array is one event);
//! events that arrive while the buffer is full are dropped and counted, and
//! the consumer then reads [`Event::Lagged`] with the number dropped, at the
//! place where they were, followed by the events that came after. Memory
//! stays bounded by the buffer whatever the consumer does. Like
//! `Reconnected`, `Lagged` means "look at the tables".
//!
//! # Polling
//!
//! Poolers in transaction mode (PgBouncer) break LISTEN: behind one,
//! [`Database::subscribe`] listens through the direct URL
//! ([`DbConfig::set_direct_url`]), and without one it fails with an
//! [`Error::Config`](crate::Error::Config) rather than return a stream that
//! never yields. Or use [`Database::subscribe_polling`], which reads changed
//! rows by `updated_at` at an interval instead, through the pool. Like LISTEN, it reports status changes only: a
//! heartbeat, or any other update that leaves the status as it was, yields
//! nothing. It sees the status a row has when polled (a row that went
//! pending → running → completed between two polls yields one event,
//! completed), and it waits `settle` before reading a change so that
//! transactions committing up to that much later than they started are not
//! missed. It reads at most 256 rows per query, and only while the
//! consumer's buffer has room for them: a slow consumer slows the polling
//! down and loses nothing, so a polling stream never yields `Lagged`.
//!
//! To tell a status change from another update, the polling stream
//! remembers the last status it reported for up to
//! [`POLL_TRACKED_EXECUTIONS`] executions (a few MiB at most). A row it does
//! not remember counts as changed when the timestamp of its status
//! (`created_at` for pending, `started_at` for running, `completed_at` for
//! the end states) is later than what it has already forgotten: the start
//! of the stream at first; when the memory is full, the older half of the
//! remembered executions is forgotten and that point moves forward to the
//! newest forgotten status. So an execution whose status changed before the
//! stream started is never reported for a heartbeat, and one forgotten is
//! not reported again.
//!
//! `subscribe_polling` takes an `interval` of 1 ms to 1 hour
//! ([`POLL_INTERVAL_RANGE`]) and a `settle` of 0 to 1 hour
//! ([`SETTLE_RANGE`]); anything else is an
//! [`Error::Validation`](crate::Error::Validation) naming the argument.

use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::AsyncMessage;

use crate::config::DbConfig;
use crate::connect::Connector;
use crate::db::Database;
use crate::error::Result;
use crate::model::{ExecutionId, ExecutionStatus, TaskId, Timestamp};

pub mod follow;

pub use follow::{FollowMode, FollowOptions, LOGS_CHANNEL, LogFollow};

/// The notification channel of execution events.
pub const CHANNEL: &str = "voidrunner_execution_events";

/// Events an [`EventStream`] holds for its consumer. A LISTEN stream whose
/// consumer is this far behind drops what arrives next and reports it with
/// [`Event::Lagged`]; a polling stream stops reading until there is room.
pub const EVENT_BUFFER: usize = 1024;

/// Accepted `interval` of [`Database::subscribe_polling`]: 1 ms to 1 hour.
pub const POLL_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);

/// Accepted `settle` of [`Database::subscribe_polling`]: 0 to 1 hour.
pub const SETTLE_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);

/// Most executions a polling stream remembers the last reported status of
/// (see the [module docs](self)).
pub const POLL_TRACKED_EXECUTIONS: usize = 65_536;

/// Rows read by one polling query (the `LIMIT` of `events.poll`, `src/queries/events.sql`).
const POLL_BATCH: usize = 256;
// A batch (and a Reconnected) must fit in an empty buffer, or polling
// would never run.
const _: () = assert!(POLL_BATCH < EVENT_BUFFER);
/// Longest wait between two reconnection attempts of a listener.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// TCP keepalive of the listening connection: idle time before the first
/// probe, time between probes, and unanswered probes before the kernel
/// gives up on the connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// What happened to an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventKind {
    /// Created pending (enqueued, or retried by the rescuer).
    Enqueued,
    /// A worker claimed it: running.
    Claimed,
    /// Completed, failed or timed out.
    Finished,
    /// Cancelled.
    Cancelled,
}

impl EventKind {
    fn of(status: ExecutionStatus) -> Self {
        match status {
            ExecutionStatus::Pending => EventKind::Enqueued,
            ExecutionStatus::Running => EventKind::Claimed,
            ExecutionStatus::Cancelled => EventKind::Cancelled,
            ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Timeout => {
                EventKind::Finished
            }
        }
    }
}

/// One change of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The execution.
    pub execution_id: ExecutionId,
    /// Its task.
    pub task_id: TaskId,
    /// Its status after the change.
    pub status: ExecutionStatus,
    /// The worker that claimed it, if any.
    pub worker_id: Option<String>,
}

/// An item of an [`EventStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An execution changed.
    Execution(ExecutionEvent),
    /// The listener lost its connection and is listening again; events of
    /// the time in between were not received.
    Reconnected,
    /// The consumer fell behind: `missed` events arrived while
    /// [`EVENT_BUFFER`] events were already waiting to be read, and were
    /// dropped. It stands where they would have been; the stream goes on
    /// with the events that arrived after. `missed` counts every item
    /// dropped, a [`Reconnected`](Event::Reconnected) among them. Only
    /// [`Database::subscribe`] streams lag (see the [module docs](self));
    /// as after `Reconnected`, a consumer that must not miss work should
    /// look at the tables.
    Lagged {
        /// How many events were dropped (at least 1).
        missed: u64,
    },
}

impl Event {
    /// The execution event, if this is one.
    pub fn execution(&self) -> Option<&ExecutionEvent> {
        match self {
            Event::Execution(e) => Some(e),
            Event::Reconnected | Event::Lagged { .. } => None,
        }
    }
}

/// One execution of a notification: the objects of the array the trigger
/// sends (V6), or the single object triggers sent before it.
#[derive(Deserialize)]
struct Payload {
    execution_id: ExecutionId,
    task_id: TaskId,
    status: ExecutionStatus,
    worker_id: Option<String>,
}

/// The executions of a notification's payload, in order: a JSON array of
/// objects or a single object. Elements of an array that cannot be read are
/// skipped and counted in the `Err` returned beside the readable ones.
fn parse_payload(payload: &str) -> (Vec<Payload>, Option<serde_json::Error>) {
    if payload.trim_start().starts_with('[') {
        if let Ok(all) = serde_json::from_str::<Vec<Payload>>(payload) {
            return (all, None);
        }
        // One foreign element must not cost the others their events.
        return match serde_json::from_str::<Vec<serde_json::Value>>(payload) {
            Ok(values) => {
                let mut read = Vec::with_capacity(values.len());
                let mut first_error = None;
                for value in values {
                    match Payload::deserialize(value) {
                        Ok(p) => read.push(p),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (read, first_error)
            }
            Err(e) => (Vec::new(), Some(e)),
        };
    }
    match serde_json::from_str::<Payload>(payload) {
        Ok(one) => (vec![one], None),
        Err(e) => (Vec::new(), Some(e)),
    }
}

impl From<Payload> for ExecutionEvent {
    fn from(p: Payload) -> Self {
        ExecutionEvent {
            kind: EventKind::of(p.status),
            execution_id: p.execution_id,
            task_id: p.task_id,
            status: p.status,
            worker_id: p.worker_id,
        }
    }
}

/// Events, in the order the server delivered them. Implements
/// `futures_core::Stream`; [`next`](Self::next) is the same without a
/// stream library. Holds at most [`EVENT_BUFFER`] unread events (plus one
/// [`Event::Lagged`]). Dropping it stops the background task and closes its
/// connection.
#[derive(Debug)]
pub struct EventStream {
    buffer: Arc<Buffer>,
    task: tokio::task::JoinHandle<()>,
}

impl EventStream {
    /// The next event; `None` once the stream has ended (the database was
    /// closed).
    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.buffer.poll_next(cx)).await
    }

    /// Events received and not read yet (an [`Event::Lagged`] counts as
    /// one): how far behind the consumer is. At most [`EVENT_BUFFER`] + 1.
    pub fn buffered(&self) -> usize {
        self.buffer.lock().queue.len()
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.buffer.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.buffered(), None)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The events waiting for the consumer: a queue that never blocks the
/// producer and never holds more than `capacity` events plus one
/// [`Event::Lagged`] counting what did not fit.
#[derive(Debug)]
struct Buffer {
    state: Mutex<BufferState>,
}

#[derive(Debug)]
struct BufferState {
    queue: VecDeque<Event>,
    capacity: usize,
    /// No more events: the consumer reads what is left, then `None`.
    closed: bool,
    /// The listener reconnected; `Reconnected` goes out before the next
    /// event, or when listening has resumed, whichever comes first.
    reconnect_pending: bool,
    waker: Option<Waker>,
}

impl Buffer {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Buffer {
            state: Mutex::new(BufferState {
                queue: VecDeque::new(),
                capacity,
                closed: false,
                reconnect_pending: false,
                waker: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BufferState> {
        // Nothing panics while holding the lock; if something did, the
        // queue is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` (or counts it as missed when the buffer is full).
    fn push(&self, event: Event) {
        self.push_all(std::iter::once(event));
    }

    /// Queues `events` in order, each counted as [`push`](Self::push) would
    /// count it, under one lock.
    fn push_all(&self, events: impl IntoIterator<Item = Event>) {
        let mut state = self.lock();
        state.flush_reconnect();
        for event in events {
            state.enqueue(event);
        }
        state.wake();
    }

    /// The connection was lost: a `Reconnected` is due once listening
    /// resumes.
    fn reconnect_pending(&self) {
        self.lock().reconnect_pending = true;
    }

    /// Listening has resumed: sends the pending `Reconnected`, unless an
    /// event of the new connection already did.
    fn reconnected(&self) {
        let mut state = self.lock();
        state.flush_reconnect();
        state.wake();
    }

    /// Ends the stream after the events already queued.
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.wake();
    }

    /// Room left before events would be dropped.
    fn free(&self) -> usize {
        let state = self.lock();
        state.capacity.saturating_sub(state.queue.len())
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut state = self.lock();
        if let Some(event) = state.queue.pop_front() {
            return Poll::Ready(Some(event));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl BufferState {
    fn enqueue(&mut self, event: Event) {
        if self.closed {
            return;
        }
        if self.queue.len() < self.capacity {
            self.queue.push_back(event);
            return;
        }
        // Full: count it. The queue exceeds its capacity by at most this
        // one Lagged, which absorbs everything dropped until the consumer
        // makes room.
        match self.queue.back_mut() {
            Some(Event::Lagged { missed }) => *missed = missed.saturating_add(1),
            _ => self.queue.push_back(Event::Lagged { missed: 1 }),
        }
    }

    fn flush_reconnect(&mut self) {
        if std::mem::take(&mut self.reconnect_pending) {
            self.enqueue(Event::Reconnected);
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Closes the buffer when the task feeding it ends, however it ends.
struct CloseOnDrop(Arc<Buffer>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The driver configuration of a listening connection: a dedicated
/// connection with its own `application_name` and TCP keepalives, so that
/// a dead link is noticed (see the [module docs](self)).
pub(crate) fn listener_pg_config(config: &DbConfig) -> tokio_postgres::Config {
    let mut pg = config.dedicated_pg_config();
    pg.application_name(format!("{}-listener", config.application_name));
    pg.keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    pg
}

/// A listening connection: the client (dropping it closes the connection)
/// and the task that drives the connection, handing notifications to the
/// listener's callback; the task ends when the connection does.
pub(crate) struct Listener {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Resolves when the connection has ended (lost, or closed by the
    /// server). Not to be awaited again once it has resolved.
    pub(crate) async fn closed(&mut self) {
        let _ = (&mut self.driver).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A dedicated connection ([`listener_pg_config`]) listening on
/// `channels`, which calls `on_notification` with each notification as it
/// arrives. The callback runs on the connection's driver and must not
/// block: a listener that stops reading makes the server queue
/// notifications for every session of the cluster. `channels` are the
/// crate's constants, never input.
pub(crate) async fn listen_to(
    config: &DbConfig,
    connector: &Connector,
    channels: &[&'static str],
    mut on_notification: impl FnMut(&tokio_postgres::Notification) + Send + 'static,
) -> Result<Listener> {
    let (client, mut connection) = connector
        .connect(config, &listener_pg_config(config))
        .await?;
    // Notifications arrive on the connection, not as query results. The
    // driver reads them as they come and never waits for their consumer.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => on_notification(&n),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listener connection lost");
                    return;
                }
            }
        }
    });
    let listener = Listener { client, driver };
    // The role first, as every session of the configuration takes it
    // (LISTEN itself needs no privilege).
    let mut sql = config
        .set_role_sql()
        .map(|sql| format!("{sql}; "))
        .unwrap_or_default();
    for channel in channels {
        sql.push_str(&format!("LISTEN {channel}; "));
    }
    listener
        .client
        .batch_execute(&sql)
        .await
        .map_err(|e| config.role_refused(crate::error::Error::from(e)))?;
    Ok(listener)
}

async fn listen(
    config: &DbConfig,
    connector: &Connector,
    buffer: &Arc<Buffer>,
) -> Result<Listener> {
    let events = Arc::clone(buffer);
    // The buffer drops and counts what does not fit.
    listen_to(config, connector, &[CHANNEL], move |n| {
        if n.channel() != CHANNEL {
            return;
        }
        let (read, error) = parse_payload(n.payload());
        if let Some(e) = error {
            tracing::warn!(error = %e, "unreadable execution event");
        }
        if !read.is_empty() {
            events.push_all(read.into_iter().map(|p| Event::Execution(p.into())));
        }
    })
    .await
}

/// Whether the [`Database`] the stream came from is still open.
pub(crate) fn database_open(pool: &deadpool_postgres::WeakPool) -> bool {
    pool.upgrade().is_some_and(|p| !p.is_closed())
}

async fn listen_loop(
    config: DbConfig,
    connector: Connector,
    pool: deadpool_postgres::WeakPool,
    buffer: Arc<Buffer>,
    first: Listener,
) {
    let _close = CloseOnDrop(Arc::clone(&buffer));
    let mut listener = Some(first);
    let mut backoff = Duration::from_millis(50);
    // The stream ends when its Database is closed or dropped.
    let mut liveness = tokio::time::interval(Duration::from_millis(500));
    loop {
        if !database_open(&pool) {
            return;
        }
        let mut current = match listener.take() {
            Some(l) => l,
            None => {
                // Set before listening: the first notification of the new
                // connection (which can only come once LISTEN is in force)
                // is preceded by the Reconnected.
                buffer.reconnect_pending();
                match listen(&config, &connector, &buffer).await {
                    Ok(l) => {
                        tracing::info!("event listener reconnected");
                        backoff = Duration::from_millis(50);
                        buffer.reconnected();
                        l
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, ?backoff, "event listener cannot reconnect yet");
                        tokio::time::sleep(backoff).await;
                        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
        };
        loop {
            tokio::select! {
                // Connection lost (or the keepalive gave up on it): listen
                // again.
                () = current.closed() => break,
                _ = liveness.tick() => {
                    if !database_open(&pool) {
                        return;
                    }
                }
            }
        }
    }
}

/// What a polling stream has read so far, and the statuses it remembers.
struct PollState {
    /// The last row read, in `(updated_at, id)` order.
    cursor: (Timestamp, ExecutionId),
    /// The last status reported per execution, with the time the row
    /// entered it. At most [`POLL_TRACKED_EXECUTIONS`] entries.
    reported: HashMap<ExecutionId, (ExecutionStatus, Timestamp)>,
    /// Statuses entered at or before this time are not reported for a row
    /// not in `reported`: they predate the stream or were forgotten.
    forgotten_until: Timestamp,
}

impl PollState {
    fn new(start: Timestamp) -> Self {
        PollState {
            cursor: (start, ExecutionId::from_uuid(uuid::Uuid::max())),
            reported: HashMap::new(),
            forgotten_until: start,
        }
    }

    /// Whether a row read with `status`, entered at `status_at`, is a
    /// status change to report; remembers it if so.
    fn is_change(
        &mut self,
        id: ExecutionId,
        status: ExecutionStatus,
        status_at: Timestamp,
    ) -> bool {
        match self.reported.get(&id) {
            Some((known, _)) if *known == status => false,
            Some(_) => {
                self.reported.insert(id, (status, status_at));
                true
            }
            None if status_at <= self.forgotten_until => false,
            None => {
                self.reported.insert(id, (status, status_at));
                if self.reported.len() > POLL_TRACKED_EXECUTIONS {
                    self.forget_older_half();
                }
                true
            }
        }
    }

    /// Forgets the executions whose status is older than the median, and
    /// moves `forgotten_until` there, so none of them is reported again
    /// unless its status changes.
    fn forget_older_half(&mut self) {
        let mut times: Vec<Timestamp> = self.reported.values().map(|(_, at)| *at).collect();
        let middle = times.len() / 2;
        let (_, median, _) = times.select_nth_unstable(middle);
        let median = *median;
        self.reported.retain(|_, (_, at)| *at > median);
        self.forgotten_until = self.forgotten_until.max(median);
    }
}

async fn poll_loop(
    db: Database,
    buffer: Arc<Buffer>,
    interval: Duration,
    settle: Duration,
    start: Timestamp,
) {
    let _close = CloseOnDrop(Arc::clone(&buffer));
    let mut state = PollState::new(start);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        loop {
            if db.pool().is_closed() {
                return;
            }
            // Read only what the buffer has room for (a batch of events
            // and a Reconnected): a slow consumer slows the polling down,
            // and nothing is dropped.
            if buffer.free() <= POLL_BATCH {
                break;
            }
            match poll_once(&db, &mut state, settle, &buffer).await {
                Ok(more) => {
                    if failing {
                        failing = false;
                        // Rows changed while polling failed are still read
                        // (the cursor did not move), but say so anyway.
                        buffer.push(Event::Reconnected);
                    }
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    failing = true;
                    tracing::debug!(error = %e, "polling for execution events failed");
                    break;
                }
            }
        }
    }
}

/// Reads one batch of changes after the cursor and queues the status
/// changes among them; true when the batch was full (more may wait).
async fn poll_once(
    db: &Database,
    state: &mut PollState,
    settle: Duration,
    buffer: &Buffer,
) -> Result<bool> {
    // Through the repositories' executor: a statement cached before a
    // schema change heals instead of failing every poll.
    let rows = crate::pg::query_pooled(
        db,
        &crate::queries::events::POLL,
        &[&state.cursor.0, &state.cursor.1, &settle.as_secs_f64()],
    )
    .await?;
    let full = rows.len() >= POLL_BATCH;
    for row in rows {
        let id: ExecutionId = row.try_get("id")?;
        let status: ExecutionStatus = row.try_get("status")?;
        let updated_at: Timestamp = row.try_get("updated_at")?;
        // A status is entered no later than the row's last update. A
        // missing or unreadable status time (a row written by another
        // application) counts as the last update.
        let status_at = row
            .try_get::<_, Option<Timestamp>>("status_at")
            .ok()
            .flatten()
            .map_or(updated_at, |at| at.min(updated_at));
        if state.is_change(id, status, status_at) {
            buffer.push(Event::Execution(ExecutionEvent {
                kind: EventKind::of(status),
                execution_id: id,
                task_id: row.try_get("task_id")?,
                status,
                worker_id: row.try_get("worker_id")?,
            }));
        }
        state.cursor = (updated_at, id);
    }
    Ok(full)
}

impl Database {
    /// Execution events over LISTEN/NOTIFY on a dedicated connection with
    /// TCP keepalives (see [`crate::events`]). Fails with
    /// [`Error::Unavailable`](crate::Error) if the first connection cannot
    /// be made ([`Error::Tls`](crate::Error::Tls) if TLS is why); after
    /// that, the stream reconnects by itself. A consumer more than
    /// [`EVENT_BUFFER`] events behind gets [`Event::Lagged`].
    ///
    /// The listening connection uses the direct URL when one is set
    /// ([`DbConfig::set_direct_url`]). Behind a transaction-mode pooler
    /// ([`PoolerMode::Transaction`](crate::PoolerMode::Transaction)) without
    /// one, LISTEN would succeed and then receive nothing (the pooler hands
    /// the server connection to others), so this fails at once with an
    /// [`Error::Config`](crate::Error::Config) instead;
    /// [`subscribe_polling`](Self::subscribe_polling) works there.
    pub async fn subscribe(&self) -> Result<EventStream> {
        self.config()
            .require_session("subscribe (LISTEN; subscribe_polling works through the pooler)")?;
        let config = self.config().clone();
        let connector = self.connector().clone();
        let buffer = Buffer::new(EVENT_BUFFER);
        let first = listen(&config, &connector, &buffer).await?;
        let task = tokio::spawn(listen_loop(
            config,
            connector,
            self.pool().weak(),
            Arc::clone(&buffer),
            first,
        ));
        Ok(EventStream { buffer, task })
    }

    /// Execution status changes by polling every `interval`, for
    /// connections where LISTEN does not work (see [`crate::events`]).
    /// Starts with changes made after the call; a change is read once it is
    /// `settle` old. The stream holds a clone of this `Database` and ends
    /// when it is closed.
    ///
    /// `interval` must be 1 ms to 1 hour ([`POLL_INTERVAL_RANGE`]) and
    /// `settle` 0 to 1 hour ([`SETTLE_RANGE`]); otherwise the call fails
    /// with [`Error::Validation`](crate::Error::Validation) naming the
    /// argument, before any SQL.
    pub async fn subscribe_polling(
        &self,
        interval: Duration,
        settle: Duration,
    ) -> Result<EventStream> {
        crate::validate::duration_in("interval", interval, &POLL_INTERVAL_RANGE)?;
        crate::validate::duration_in("settle", settle, &SETTLE_RANGE)?;
        // Through the repositories' executor, which sends it unnamed behind
        // a transaction-mode pooler.
        let start: Timestamp = crate::pg::query_pooled(self, &crate::queries::events::NOW, &[])
            .await?
            .first()
            .ok_or_else(|| {
                crate::error::Error::unavailable(
                    "the query of the server's clock returned no row",
                    None,
                )
            })?
            .try_get(0)?;
        let buffer = Buffer::new(EVENT_BUFFER);
        let task = tokio::spawn(poll_loop(
            self.clone(),
            Arc::clone(&buffer),
            interval,
            settle,
            start,
        ));
        Ok(EventStream { buffer, task })
    }
}

#[cfg(test)]
mod tests;
