//! Execution events over LISTEN/NOTIFY, with a polling fallback.
//!
//! A trigger (migration V2) sends a notification on the channel
//! [`CHANNEL`] for every new execution and every status change, from the
//! transaction that makes the change: delivered when it commits, never when
//! it rolls back. [`Database::subscribe`] listens on a dedicated connection
//! outside the pool; when that connection is lost (server restart,
//! `pg_terminate_backend`, network) it reconnects with exponential backoff,
//! listens again, and yields [`Event::Reconnected`], since notifications
//! sent while it was away are lost: a consumer that must not miss work
//! should then look at the tables (a worker simply claims).
//!
//! Poolers in transaction mode (PgBouncer) break LISTEN. Behind one, use
//! [`Database::subscribe_polling`], which reads changed rows by `updated_at`
//! at an interval instead. It sees the status a row has when polled (a row
//! that went pending → running → completed between two polls yields one
//! event, completed), and it waits `settle` before reading a change so that
//! transactions committing up to that much later than they started are not
//! missed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::config::DbConfig;
use crate::db::Database;
use crate::error::Result;
use crate::model::{ExecutionId, ExecutionStatus, TaskId, Timestamp};

/// The notification channel of execution events.
pub const CHANNEL: &str = "voidrunner_execution_events";

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
}

impl Event {
    /// The execution event, if this is one.
    pub fn execution(&self) -> Option<&ExecutionEvent> {
        match self {
            Event::Execution(e) => Some(e),
            Event::Reconnected => None,
        }
    }
}

/// The payload the trigger sends.
#[derive(Deserialize)]
struct Payload {
    execution_id: ExecutionId,
    task_id: TaskId,
    status: ExecutionStatus,
    worker_id: Option<String>,
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
/// stream library. Dropping it stops the background task and closes its
/// connection.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl EventStream {
    /// The next event; `None` once the stream has ended (the database was
    /// closed).
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Buffered events per stream; a consumer that falls this far behind slows
/// the listener down rather than growing memory without bound.
const BUFFER: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A listening connection: the client (dropping it closes the connection)
/// and the messages its driver task forwards.
struct Listener {
    _client: tokio_postgres::Client,
    messages: mpsc::UnboundedReceiver<AsyncMessage>,
}

async fn listen(config: &DbConfig) -> Result<Listener> {
    let mut pg = config.dedicated_pg_config();
    pg.application_name(format!("{}-listener", config.application_name));
    let (client, mut connection) = pg.connect(NoTls).await?;
    let (tx, messages) = mpsc::unbounded_channel();
    // Notifications arrive on the connection, not as query results: drive it
    // here and forward what it yields. The task ends with the connection.
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(message) => {
                    if tx.send(message).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "event listener connection lost");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(Listener {
        _client: client,
        messages,
    })
}

/// Whether the [`Database`] the stream came from is still open.
fn database_open(pool: &deadpool_postgres::WeakPool) -> bool {
    pool.upgrade().is_some_and(|p| !p.is_closed())
}

async fn listen_loop(
    config: DbConfig,
    pool: deadpool_postgres::WeakPool,
    out: mpsc::Sender<Event>,
    first: Listener,
) {
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
            None => match listen(&config).await {
                Ok(l) => {
                    tracing::info!("event listener reconnected");
                    backoff = Duration::from_millis(50);
                    if out.send(Event::Reconnected).await.is_err() {
                        return;
                    }
                    l
                }
                Err(e) => {
                    tracing::debug!(error = %e, ?backoff, "event listener cannot reconnect yet");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = out.closed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        loop {
            let message = tokio::select! {
                m = current.messages.recv() => m,
                _ = out.closed() => return,
                _ = liveness.tick() => {
                    if database_open(&pool) {
                        continue;
                    }
                    return;
                }
            };
            match message {
                Some(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    match serde_json::from_str::<Payload>(n.payload()) {
                        Ok(payload) => {
                            if out.send(Event::Execution(payload.into())).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable execution event"),
                    }
                }
                Some(_) => {}
                None => break, // connection lost: reconnect
            }
        }
    }
}

async fn poll_loop(
    db: Database,
    out: mpsc::Sender<Event>,
    interval: Duration,
    settle: Duration,
    mut cursor: (Timestamp, ExecutionId),
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = out.closed() => return,
        }
        if db.pool().is_closed() {
            return;
        }
        match poll_once(&db, &mut cursor, settle, &out).await {
            Ok(true) => {
                if failing {
                    failing = false;
                    // Rows changed while polling failed are still read
                    // (the cursor did not move), but say so anyway.
                    if out.send(Event::Reconnected).await.is_err() {
                        return;
                    }
                }
            }
            Ok(false) => return,
            Err(e) => {
                failing = true;
                tracing::debug!(error = %e, "polling for execution events failed");
            }
        }
    }
}

/// Reads and forwards changes after `cursor`; false when the consumer is
/// gone.
async fn poll_once(
    db: &Database,
    cursor: &mut (Timestamp, ExecutionId),
    settle: Duration,
    out: &mpsc::Sender<Event>,
) -> Result<bool> {
    let client = db.client().await?;
    let stmt = client
        .prepare_cached(
            "SELECT id, task_id, status, worker_id, updated_at FROM task_executions \
             WHERE (updated_at, id) > ($1, $2) \
               AND updated_at < now() - make_interval(secs => $3) \
             ORDER BY updated_at, id LIMIT 1000",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&cursor.0, &cursor.1, &settle.as_secs_f64()])
        .await?;
    drop(client);
    for row in rows {
        let status: ExecutionStatus = row.try_get("status")?;
        let event = ExecutionEvent {
            kind: EventKind::of(status),
            execution_id: row.try_get("id")?,
            task_id: row.try_get("task_id")?,
            status,
            worker_id: row.try_get("worker_id")?,
        };
        *cursor = (row.try_get("updated_at")?, event.execution_id);
        if out.send(Event::Execution(event)).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Database {
    /// Execution events over LISTEN/NOTIFY on a dedicated connection (see
    /// [`crate::events`]). Fails with [`Error::Unavailable`](crate::Error)
    /// if the first connection cannot be made; after that, the stream
    /// reconnects by itself.
    pub async fn subscribe(&self) -> Result<EventStream> {
        let config = self.config().clone();
        let first = listen(&config).await?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(listen_loop(config, self.pool().weak(), tx, first));
        Ok(EventStream { rx, task })
    }

    /// Execution events by polling every `interval`, for connections where
    /// LISTEN does not work (see [`crate::events`]). Starts with changes made
    /// after the call; a change is read once it is `settle` old. The stream
    /// holds a clone of this `Database` and ends when it is closed.
    pub async fn subscribe_polling(
        &self,
        interval: Duration,
        settle: Duration,
    ) -> Result<EventStream> {
        let client = self.client().await?;
        let start: Timestamp = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
        drop(client);
        let (tx, rx) = mpsc::channel(BUFFER);
        let cursor = (start, ExecutionId::from_uuid(uuid::Uuid::max()));
        let task = tokio::spawn(poll_loop(self.clone(), tx, interval, settle, cursor));
        Ok(EventStream { rx, task })
    }
}
