//! What [`Completer`](crate::Completer),
//! [`Heartbeater`](crate::Heartbeater) and [`LogWriter`](crate::LogWriter)
//! share: callers hand items to a
//! background task, which sends them in batches through one queue call
//! when the oldest has waited the flush interval or the batch is full,
//! and gives each caller the result of its own item.
//!
//! A [`Sink`] says what a batch is sent through; [`Batcher`] does the
//! rest: the hand-over, the timing, one item per execution per batch, up
//! to [`Settings::max_in_flight`] batches at once (an execution in at most
//! one of them), a batch's error for each of its callers, and the final
//! flush on shutdown.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};
use crate::model::ExecutionId;

/// Where a [`Batcher`] sends its batches.
#[async_trait]
pub(crate) trait Sink: Send + Sync + 'static {
    /// What a caller hands over.
    type Item: Send + 'static;
    /// What a caller gets back for its item.
    type Output: Send + 'static;
    /// The public type, for messages: `Completer`.
    const TYPE: &'static str;
    /// The queue call a batch goes through, for messages: `complete_many`.
    const CALL: &'static str;

    /// The execution an item is about: a batch holds one item per
    /// execution.
    fn execution_id(item: &Self::Item) -> ExecutionId;

    /// About how many bytes `item` adds to a batch's statement (its
    /// unbounded texts); a batch holds at most [`MAX_BATCH_BYTES`] of them.
    fn weight(_item: &Self::Item) -> usize {
        0
    }

    /// Sends a batch; on success, one result per item, in order.
    async fn send(&self, items: Vec<Self::Item>) -> Result<Vec<Result<Self::Output>>>;
}

/// The most bytes of items ([`Sink::weight`]) one batch carries: a
/// statement's parameters travel in one message, which the server caps at
/// 1 GiB, so large items that would each go through alone are not made to
/// fail together. An item larger than this goes in a batch of its own.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;

/// The shortest flush interval either batcher takes (their documented
/// lower bound).
const MIN_FLUSH_INTERVAL: Duration = Duration::from_micros(1);

/// The most batches either batcher keeps in flight at once (its
/// documented upper bound).
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// When a batch goes out: after `flush_interval` or at `max_batch` items,
/// while fewer than `max_in_flight` batches are in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) flush_interval: Duration,
    pub(crate) max_batch: usize,
    pub(crate) max_in_flight: usize,
}

impl Settings {
    /// `Error::Config` naming the setting of `what` (`completer`) out of
    /// range: `flush_interval` in (0, `max_interval`], `max_batch` in
    /// 1..=`max_items`.
    pub(crate) fn validate(
        &self,
        what: &str,
        max_interval: Duration,
        max_items: usize,
    ) -> Result<()> {
        if self.flush_interval < MIN_FLUSH_INTERVAL || self.flush_interval > max_interval {
            return Err(Error::Config {
                message: format!(
                    "{what} flush_interval must be at least {MIN_FLUSH_INTERVAL:?} and at most \
                     {max_interval:?}, not {:?}",
                    self.flush_interval
                ),
            });
        }
        if self.max_batch == 0 || self.max_batch > max_items {
            return Err(Error::Config {
                message: format!(
                    "{what} max_batch must be between 1 and {max_items}, not {}",
                    self.max_batch
                ),
            });
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT {
            return Err(Error::Config {
                message: format!(
                    "{what} max_in_flight must be between 1 and {MAX_IN_FLIGHT}, not {}",
                    self.max_in_flight
                ),
            });
        }
        Ok(())
    }
}

/// An item waiting for its batch, and where its result goes.
struct Request<S: Sink> {
    item: S::Item,
    reply: oneshot::Sender<Result<S::Output>>,
}

/// The handle callers share (behind an `Arc` in the public types).
pub(crate) struct Batcher<S: Sink> {
    /// `None` once shut down.
    sender: Mutex<Option<mpsc::UnboundedSender<Request<S>>>>,
    /// The background task, until [`Batcher::shutdown`] waits for it.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl<S: Sink> Batcher<S> {
    /// Starts the background task on the current Tokio runtime
    /// (`Error::Config` outside one). `settings` are already validated.
    pub(crate) fn start(sink: S, settings: Settings) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::Config {
            message: format!(
                "a {} needs a Tokio runtime for its background task",
                S::TYPE
            ),
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = runtime.spawn(run(sink, receiver, settings));
        Ok(Batcher {
            sender: Mutex::new(Some(sender)),
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// Whether items are still taken.
    pub(crate) fn is_open(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Hands `item` over now, before the returned future is polled (so
    /// dropping the future does not withdraw it), and resolves to its
    /// result. `Unavailable` after shutdown.
    pub(crate) fn submit(
        &self,
        item: S::Item,
    ) -> impl Future<Output = Result<S::Output>> + Send + 'static {
        let handed = self.hand_over(item);
        async move {
            match handed?.await {
                Ok(result) => result,
                Err(_) => Err(stopped::<S>()),
            }
        }
    }

    fn hand_over(&self, item: S::Item) -> Result<oneshot::Receiver<Result<S::Output>>> {
        let (reply, result) = oneshot::channel();
        // Nothing panics while holding the lock; if something did, the
        // sender is still usable.
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(Error::unavailable(
                format!("the {} was shut down", S::TYPE.to_lowercase()),
                None,
            ));
        };
        sender
            .send(Request { item, reply })
            .map_err(|_| stopped::<S>())?;
        Ok(result)
    }

    /// Stops taking items, sends every one already handed over and returns
    /// when they are done. Calling it again returns once that flush is
    /// done.
    pub(crate) async fn shutdown(&self) {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        // Held while waiting, so a concurrent shutdown returns only when
        // the flush is done too.
        let mut task = self.task.lock().await;
        // Awaited in place and taken only once finished: a shutdown whose
        // wait is dropped (a timeout, `select!`) leaves the handle for the
        // next one, which then still waits for the flush.
        if let Some(handle) = task.as_mut() {
            let finished = handle.await;
            *task = None;
            if let Err(err) = finished {
                tracing::error!(error = %err, kind = S::TYPE, "a batcher's background task failed");
            }
        }
    }
}

fn stopped<S: Sink>() -> Error {
    Error::unavailable(
        format!("the {}'s background task stopped", S::TYPE.to_lowercase()),
        None,
    )
}

/// The background task: collects, sends, answers, until every sender is
/// gone and nothing waits or is in flight.
///
/// A batch goes out when `max_batch` items can go, or when the oldest
/// waiting item has waited `flush_interval` (at once after the last sender
/// is gone), as long as fewer than `max_in_flight` batches are in flight:
/// with one in flight, the callers of the next would otherwise wait for it
/// as well as for their own, while the server has room for both. An item
/// whose execution is in a batch in flight waits for that batch to end, so
/// two items of one execution are still sent, and answered, in the order
/// they were handed over.
async fn run<S: Sink>(
    sink: S,
    mut receiver: mpsc::UnboundedReceiver<Request<S>>,
    settings: Settings,
) {
    let sink = Arc::new(sink);
    let mut waiting: Vec<Request<S>> = Vec::new();
    // When the oldest item in `waiting` started waiting.
    let mut since: Option<tokio::time::Instant> = None;
    let mut in_flight: JoinSet<()> = JoinSet::new();
    // The executions of each batch in flight, and all of them.
    let mut batches: HashMap<tokio::task::Id, Vec<ExecutionId>> = HashMap::new();
    let mut busy: HashSet<ExecutionId> = HashSet::new();
    let mut open = true;
    loop {
        let room = in_flight.len() < settings.max_in_flight;
        // Counted only when a batch could go, and only as far as needed:
        // this runs for every item handed over.
        let ready = room
            && !waiting.is_empty()
            && (busy.is_empty()
                || waiting
                    .iter()
                    .any(|request| !busy.contains(&S::execution_id(&request.item))));
        let full = ready
            && waiting.len() >= settings.max_batch
            && sendable(&waiting, &busy, settings.max_batch) >= settings.max_batch;
        let due = !open
            || since.is_some_and(|at| at + settings.flush_interval <= tokio::time::Instant::now());
        if ready && (full || due) {
            let batch = take_batch(&mut waiting, &busy, settings.max_batch);
            // What could not go waits again, from now.
            since = (!waiting.is_empty()).then(tokio::time::Instant::now);
            let ids: Vec<ExecutionId> = batch
                .iter()
                .map(|request| S::execution_id(&request.item))
                .collect();
            busy.extend(ids.iter().copied());
            let sink = Arc::clone(&sink);
            let task = in_flight.spawn(async move { send_batch(&*sink, batch).await });
            batches.insert(task.id(), ids);
            continue;
        }
        if !open && waiting.is_empty() && in_flight.is_empty() {
            return;
        }
        let deadline = since.map(|at| at + settings.flush_interval);
        tokio::select! {
            request = receiver.recv(), if open => match request {
                Some(request) => {
                    if waiting.is_empty() {
                        since = Some(tokio::time::Instant::now());
                    }
                    waiting.push(request);
                }
                None => open = false,
            },
            Some(finished) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                let id = match &finished {
                    Ok((id, ())) => *id,
                    Err(err) => {
                        // Its callers' replies were dropped with it: they
                        // get `stopped`.
                        tracing::error!(error = %err, kind = S::TYPE, "a batch's task failed");
                        err.id()
                    }
                };
                for execution in batches.remove(&id).unwrap_or_default() {
                    busy.remove(&execution);
                }
            },
            // Only while a batch could go: otherwise a deadline already
            // passed would wake this loop again at once.
            () = sleep_until_some(deadline), if ready => {}
        }
    }
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How many of `waiting` the next batch would take (at most `max_batch`):
/// one per execution, none whose execution is in flight.
fn sendable<S: Sink>(
    waiting: &[Request<S>],
    busy: &HashSet<ExecutionId>,
    max_batch: usize,
) -> usize {
    let mut ids = HashSet::new();
    waiting
        .iter()
        .map(|request| S::execution_id(&request.item))
        .filter(|id| !busy.contains(id) && ids.insert(*id))
        .take(max_batch)
        .count()
}

/// Takes one batch out of `waiting`: up to `max_batch` items and
/// [`MAX_BATCH_BYTES`], at most one per execution and none whose execution
/// is in flight (the others stay, in order, for a later batch).
fn take_batch<S: Sink>(
    waiting: &mut Vec<Request<S>>,
    busy: &HashSet<ExecutionId>,
    max_batch: usize,
) -> Vec<Request<S>> {
    let mut ids = HashSet::with_capacity(waiting.len().min(max_batch));
    let mut batch = Vec::with_capacity(waiting.len().min(max_batch));
    let mut bytes = 0usize;
    let mut later = Vec::new();
    for request in waiting.drain(..) {
        let weight = S::weight(&request.item);
        let id = S::execution_id(&request.item);
        let fits = batch.is_empty() || bytes.saturating_add(weight) <= MAX_BATCH_BYTES;
        if batch.len() < max_batch && fits && !busy.contains(&id) && ids.insert(id) {
            bytes = bytes.saturating_add(weight);
            batch.push(request);
        } else {
            later.push(request);
        }
    }
    *waiting = later;
    batch
}

/// Sends one batch and gives each caller its result.
async fn send_batch<S: Sink>(sink: &S, batch: Vec<Request<S>>) {
    let (items, replies): (Vec<S::Item>, Vec<_>) =
        batch.into_iter().map(|r| (r.item, r.reply)).unzip();
    let count = items.len();
    match sink.send(items).await {
        Ok(results) if results.len() == count => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that dropped its future no longer listens.
                let _ = reply.send(result);
            }
        }
        Ok(results) => {
            let err = Error::unavailable(
                format!(
                    "{} answered {} items with {} results",
                    S::CALL,
                    count,
                    results.len()
                ),
                None,
            );
            answer_all::<S>(replies, err);
        }
        Err(err) => answer_all::<S>(replies, err),
    }
}

/// Gives every caller of a batch the batch's error.
fn answer_all<S: Sink>(replies: Vec<oneshot::Sender<Result<S::Output>>>, err: Error) {
    tracing::warn!(error = %err, kind = S::TYPE, items = replies.len(), "a batch failed");
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

    /// The batches an [`Echo`] was sent.
    type Sent = Arc<Mutex<Vec<Vec<(ExecutionId, u32)>>>>;

    /// Answers each item with itself after a pause, recording the batches.
    struct Echo {
        batches: Sent,
    }

    #[async_trait]
    impl Sink for Echo {
        type Item = (ExecutionId, u32);
        type Output = u32;
        const TYPE: &'static str = "Echo";
        const CALL: &'static str = "echo";

        fn execution_id(item: &Self::Item) -> ExecutionId {
            item.0
        }

        fn weight(item: &Self::Item) -> usize {
            item.1 as usize
        }

        async fn send(&self, items: Vec<Self::Item>) -> Result<Vec<Result<u32>>> {
            self.batches.lock().unwrap().push(items.clone());
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(items.into_iter().map(|(_, n)| Ok(n)).collect())
        }
    }

    #[tokio::test]
    async fn one_item_per_execution_per_batch_and_a_dropped_future_loses_nothing() {
        let batches: Sent = Arc::default();
        let batcher = Batcher::start(
            Echo {
                batches: Arc::clone(&batches),
            },
            Settings {
                flush_interval: Duration::from_millis(20),
                max_batch: 3,
                max_in_flight: 4,
            },
        )
        .unwrap();
        let same = ExecutionId::new();
        let a = batcher.submit((same, 1));
        let b = batcher.submit((same, 2));
        drop(batcher.submit((ExecutionId::new(), 3)));
        let c = batcher.submit((ExecutionId::new(), 4));
        let d = batcher.submit((ExecutionId::new(), 5));
        assert_eq!(
            (a.await.unwrap(), b.await.unwrap(), c.await.unwrap()),
            (1, 2, 4)
        );
        batcher.shutdown().await;
        assert_eq!(d.await.unwrap(), 5);
        assert!(!batcher.is_open());
        let late = batcher.submit((ExecutionId::new(), 6)).await.unwrap_err();
        assert!(late.is_unavailable());
        let batches = batches.lock().unwrap();
        let sent: Vec<u32> = batches.iter().flatten().map(|(_, n)| *n).collect();
        assert_eq!(sent.len(), 5, "the dropped one was sent too: {batches:?}");
        for batch in batches.iter() {
            assert!(batch.len() <= 3);
            let ids: HashSet<_> = batch.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids.len(), batch.len(), "one item per execution");
        }
    }

    /// Items whose texts together pass [`MAX_BATCH_BYTES`] go out in
    /// several batches, an oversized one alone, rather than in one
    /// statement the server would refuse for all of them.
    #[tokio::test]
    async fn a_batch_carries_at_most_max_batch_bytes() {
        let batches: Sent = Arc::default();
        let batcher = Batcher::start(
            Echo {
                batches: Arc::clone(&batches),
            },
            Settings {
                flush_interval: Duration::from_millis(20),
                max_batch: 100,
                max_in_flight: 4,
            },
        )
        .unwrap();
        let third = (MAX_BATCH_BYTES / 3) as u32;
        let huge = (MAX_BATCH_BYTES * 2) as u32;
        let weights = [third, third, third, 1, huge, third];
        let calls: Vec<_> = weights
            .iter()
            .map(|&w| batcher.submit((ExecutionId::new(), w)))
            .collect();
        for (call, w) in calls.into_iter().zip(weights) {
            assert_eq!(call.await.unwrap(), w);
        }
        batcher.shutdown().await;
        let batches = batches.lock().unwrap();
        for batch in batches.iter() {
            let bytes: usize = batch.iter().map(|(_, w)| *w as usize).sum();
            assert!(
                bytes <= MAX_BATCH_BYTES || batch.len() == 1,
                "{} items of {bytes} bytes in one batch",
                batch.len()
            );
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), weights.len());
    }

    /// A sink whose batches wait for permits the test hands out, and which
    /// records how many ran at once and whether one execution was ever in
    /// two batches at once.
    struct Gated {
        permits: Arc<tokio::sync::Semaphore>,
        running: Arc<Mutex<Vec<ExecutionId>>>,
        most: Arc<std::sync::atomic::AtomicUsize>,
        overlapped: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait]
    impl Sink for Gated {
        type Item = (ExecutionId, u32);
        type Output = u32;
        const TYPE: &'static str = "Gated";
        const CALL: &'static str = "gated";

        fn execution_id(item: &Self::Item) -> ExecutionId {
            item.0
        }

        async fn send(&self, items: Vec<Self::Item>) -> Result<Vec<Result<u32>>> {
            use std::sync::atomic::Ordering;
            {
                let mut running = self.running.lock().unwrap();
                for (id, _) in &items {
                    if running.contains(id) {
                        self.overlapped.store(true, Ordering::SeqCst);
                    }
                    running.push(*id);
                }
                let batches = running.len();
                self.most.fetch_max(batches, Ordering::SeqCst);
            }
            self.permits.acquire().await.unwrap().forget();
            let mut running = self.running.lock().unwrap();
            for (id, _) in &items {
                if let Some(at) = running.iter().position(|r| r == id) {
                    running.remove(at);
                }
            }
            Ok(items.into_iter().map(|(_, n)| Ok(n)).collect())
        }
    }

    /// Up to `max_in_flight` batches run at once, no more; an execution's
    /// second item waits for the batch of its first and is answered after
    /// it.
    #[tokio::test]
    async fn batches_run_side_by_side_up_to_max_in_flight_one_execution_at_a_time() {
        use std::sync::atomic::Ordering;
        let sink = Gated {
            permits: Arc::new(tokio::sync::Semaphore::new(0)),
            running: Arc::default(),
            most: Arc::default(),
            overlapped: Arc::default(),
        };
        let (permits, running, most, overlapped) = (
            Arc::clone(&sink.permits),
            Arc::clone(&sink.running),
            Arc::clone(&sink.most),
            Arc::clone(&sink.overlapped),
        );
        let batcher = Batcher::start(
            sink,
            Settings {
                flush_interval: Duration::from_micros(1),
                max_batch: 1,
                max_in_flight: 3,
            },
        )
        .unwrap();
        let same = ExecutionId::new();
        let first = batcher.submit((same, 1));
        let second = batcher.submit((same, 2));
        let others: Vec<_> = (10..15)
            .map(|n| batcher.submit((ExecutionId::new(), n)))
            .collect();
        // Three batches start and wait for their permits; the others wait
        // for room.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while running.lock().unwrap().len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "batches did not start"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        permits.add_permits(100);
        let (first, second) = tokio::join!(first, second);
        assert_eq!((first.unwrap(), second.unwrap()), (1, 2));
        for (call, n) in others.into_iter().zip(10..) {
            assert_eq!(call.await.unwrap(), n);
        }
        batcher.shutdown().await;
        assert_eq!(
            most.load(Ordering::SeqCst),
            3,
            "at most max_in_flight at once"
        );
        assert!(
            !overlapped.load(Ordering::SeqCst),
            "one execution in two batches at once"
        );
    }
}
