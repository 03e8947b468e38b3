//! Streaming replicas: a pool per replica, a prober that keeps each one's
//! state (standby or promoted, replay position, lag), and the choice of
//! where a read goes. The executor (`crate::pg`) runs the read and reports
//! back what it met.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use postgres_types::PgLsn;
use tokio::sync::oneshot;

use super::{Database, Inner, PoolStatus};
use crate::config::DbConfig;
use crate::error::{Error, Result};
use crate::token::ReadToken;

/// What a node of a [`Database`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeRole {
    /// The primary: every write, and the reads that go to no replica.
    Primary,
    /// A streaming replica reads may go to.
    Replica,
}

/// Whether a node is in rotation, as its last probe (or its last read)
/// found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// Not probed yet: not in rotation.
    Unknown,
    /// In rotation.
    Up,
    /// Replaying, but further behind than
    /// [`replica_max_lag`](crate::DbConfig::replica_max_lag): out of
    /// rotation for [`AnyReplica`](crate::Consistency::AnyReplica) reads;
    /// a token read still uses it once it has replayed the token.
    Lagging,
    /// Unreachable, or a read on it failed with the server going away:
    /// out of rotation until a probe succeeds.
    Down,
    /// No longer in recovery (promoted): out of rotation, since it no
    /// longer follows the primary.
    Promoted,
}

impl NodeState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => NodeState::Up,
            2 => NodeState::Lagging,
            3 => NodeState::Down,
            4 => NodeState::Promoted,
            _ => NodeState::Unknown,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            NodeState::Unknown => 0,
            NodeState::Up => 1,
            NodeState::Lagging => 2,
            NodeState::Down => 3,
            NodeState::Promoted => 4,
        }
    }
}

/// One node of a [`Database`], from
/// [`Database::nodes`](crate::Database::nodes) and
/// [`HealthReport::nodes`](crate::HealthReport::nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// `host:port/dbname`, never credentials.
    pub target: String,
    /// Primary or replica.
    pub role: NodeRole,
    /// The replica's state; the primary is always [`NodeState::Up`] here
    /// (its health is what [`health_check`](crate::Database::health_check)
    /// measures).
    pub state: NodeState,
    /// A replica's replay lag at its last probe: how long it has been
    /// missing WAL the primary had, to within one probe interval; `None`
    /// when unknown (never probed, down) and for the primary.
    pub lag: Option<Duration>,
    /// How far a replica had replayed, as a token, when last seen.
    pub replayed: Option<ReadToken>,
    /// Time since the last probe of a replica ended.
    pub since_probe: Option<Duration>,
    /// The last probe's error, if it failed (the server's message and
    /// SQLSTATE; never a password).
    pub error: Option<String>,
    /// Reads routed to this node by the handles of this pool: those of
    /// [`Consistency::AnyReplica`](crate::Consistency::AnyReplica) and
    /// [`AtLeast`](crate::Consistency::AtLeast) (and read-your-writes
    /// handles), counting each one on the node that answered it; for the
    /// primary, those that fell back to it.
    pub reads: u64,
    /// The node's own pool.
    pub pool: PoolStatus,
}

/// Most samples of the primary's position kept: a day of probes at the
/// default interval.
const MAX_SAMPLES: usize = 86_400;

/// The replicas of a [`Database`] and their prober.
pub(crate) struct ReplicaSet {
    nodes: Vec<Node>,
    /// Round-robin among the replicas in rotation.
    next: AtomicUsize,
    /// Routed reads that went to the primary.
    primary_reads: AtomicU64,
    /// The primary's write position, sampled by the prober, oldest first:
    /// what a replica's replay position is measured against.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    max_lag: Duration,
    pub(crate) wait: Duration,
    /// The primary's `system_identifier`, once sampled: a replica of
    /// another cluster is kept out of rotation.
    cluster: std::sync::OnceLock<i64>,
}

impl std::fmt::Debug for ReplicaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSet")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.target).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// One replica.
pub(crate) struct Node {
    /// Its own pool (with its own reaper, TLS connector and cancel route,
    /// from the same configuration as the primary's).
    pub(crate) db: Database,
    target: String,
    state: AtomicU8,
    /// Replay position last seen (0: never).
    replayed: AtomicU64,
    reads: AtomicU64,
    /// Counts the reads that took the replica out of rotation: a probe
    /// that started before one does not put it back.
    failures: AtomicU64,
    /// Token reads holding one of its connections while they wait for it
    /// to catch up.
    waiting: AtomicUsize,
    report: Mutex<Report>,
}

#[derive(Default)]
struct Report {
    lag: Option<Duration>,
    probed: Option<Instant>,
    error: Option<String>,
}

/// See [`Node::wait_permit`]; released when dropped.
pub(crate) struct WaitPermit<'a>(&'a Node);

impl Drop for WaitPermit<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Replica `index`; `check`: its replay position must be checked with
    /// the read (it is not known to have replayed the token).
    Replica {
        index: usize,
        check: bool,
    },
    Primary,
}

impl ReplicaSet {
    /// The replicas of `config`, each a lazily opened pool; `None` when it
    /// names none.
    pub(crate) fn build(config: &DbConfig) -> Result<Option<Self>> {
        let configs = config.replica_configs();
        if configs.is_empty() {
            return Ok(None);
        }
        let mut nodes = Vec::with_capacity(configs.len());
        for (i, mut replica) in configs.into_iter().enumerate() {
            let target = replica.display_target();
            // Each replica's sessions, and its pool's metrics, are told
            // apart from the primary's by name: `<name>.replica<N>`.
            let suffix = format!(".replica{}", i + 1);
            let base = replica
                .pg_config()
                .get_application_name()
                .unwrap_or(&replica.application_name)
                .to_owned();
            let mut keep = base
                .len()
                .min(crate::config::APPLICATION_NAME_MAX_BYTES - suffix.len());
            // Validated as ASCII, but never a slice through a character.
            while !base.is_char_boundary(keep) {
                keep -= 1;
            }
            let name = format!("{}{suffix}", &base[..keep]);
            replica.pg_config_mut().application_name(&name);
            replica.application_name = name;
            nodes.push(Node {
                db: Database::build(replica, false)?,
                target,
                state: AtomicU8::new(NodeState::Unknown.as_u8()),
                replayed: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                report: Mutex::new(Report::default()),
            });
        }
        Ok(Some(ReplicaSet {
            nodes,
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
            max_lag: config.replica_max_lag,
            wait: config.replica_wait,
            cluster: std::sync::OnceLock::new(),
        }))
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Where a read that asks for `floor` (a token's position; `None`: any
    /// replica in rotation) goes, skipping the replicas in `skip`.
    ///
    /// Without a floor: the next replica that is [`NodeState::Up`], in
    /// turn. With one: first a replica in rotation known to have replayed
    /// it (no check needed), else the one furthest along (checked with the
    /// read), else the primary.
    pub(crate) fn pick(&self, floor: Option<u64>, skip: &[bool]) -> Pick {
        let count = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let usable = |i: usize, lagging_ok: bool| {
            !skip.get(i).copied().unwrap_or(false)
                && match self.nodes[i].state() {
                    NodeState::Up => true,
                    NodeState::Lagging => lagging_ok,
                    _ => false,
                }
        };
        let Some(floor) = floor else {
            return (0..count)
                .map(|k| (start + k) % count)
                .find(|&i| usable(i, false))
                .map_or(Pick::Primary, |index| Pick::Replica {
                    index,
                    check: false,
                });
        };
        // Always checked: a remembered position is only a hint. A replica
        // that crashed restarts from its last restartpoint and opens for
        // reads before it is back where it was, and an address may reach
        // another server than before (a load balancer, a replaced
        // standby). Lagging replicas too, once seen past the token: the
        // check decides.
        if let Some(index) = (0..count)
            .map(|k| (start + k) % count)
            .find(|&i| usable(i, true) && self.nodes[i].replayed() >= floor)
        {
            return Pick::Replica { index, check: true };
        }
        (0..count)
            .filter(|&i| usable(i, false))
            .max_by_key(|&i| self.nodes[i].replayed())
            .map_or(Pick::Primary, |index| Pick::Replica { index, check: true })
    }

    /// Counts a routed read answered by the primary.
    pub(crate) fn served_by_primary(&self) {
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// The status of each replica.
    pub(crate) fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes.iter().map(Node::status).collect()
    }

    pub(crate) fn primary_reads(&self) -> u64 {
        self.primary_reads.load(Ordering::Relaxed)
    }

    /// Notes a sample of the primary's write position, forgetting those
    /// too old to matter: a replica missing what the primary had longer
    /// ago than the lag bound is lagging whatever the older samples say.
    ///
    /// A sample is kept while a replica in rotation (or lagging) has not
    /// replayed its position, so a replica's lag keeps growing for as long
    /// as it stays behind (up to [`MAX_SAMPLES`] probes, then it is only
    /// "at least" that long); otherwise while it is younger than `keep`.
    fn sample_primary(&self, at: Instant, position: u64, keep: Duration) {
        let behind = self
            .nodes
            .iter()
            .filter(|n| matches!(n.state(), NodeState::Up | NodeState::Lagging))
            .map(Node::replayed)
            .min();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((at, position));
        while samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(_, oldest)| behind.is_none_or(|replayed| *oldest <= replayed))
            && samples
                .get(1)
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) > keep)
        {
            samples.pop_front();
        }
    }

    /// How long a replica that has replayed `replayed` has been missing WAL
    /// the primary had: since the oldest sample beyond it (zero when it has
    /// every sampled position).
    fn lag_of(&self, replayed: u64, now: Instant) -> Option<Duration> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.is_empty() {
            return None;
        }
        Some(
            samples
                .iter()
                .find(|(_, position)| *position > replayed)
                .map_or(Duration::ZERO, |(t, _)| now.saturating_duration_since(*t)),
        )
    }
}

impl Node {
    pub(crate) fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Acquire)
    }

    /// Notes a replay position a read's check found.
    pub(crate) fn saw_replayed(&self, position: u64) {
        self.replayed.fetch_max(position, Ordering::AcqRel);
    }

    /// A token read's permit to hold one of the replica's connections
    /// while it waits for the replica to catch up, or `None` when half its
    /// pool is already waiting so: then the read goes to the primary, and
    /// waiters (a forged token among them) never take every connection
    /// from the replica's other reads.
    pub(crate) fn wait_permit(&self) -> Option<WaitPermit<'_>> {
        // A pool of one never waits: its only connection is the others'.
        let limit = self.db.config().max_connections / 2;
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let permit = WaitPermit(self);
        (before < limit).then_some(permit)
    }

    pub(crate) fn served(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the replica out of rotation after a read met `err` on it (the
    /// server went away, or is no longer a standby): the prober brings it
    /// back once it answers as a standby again. Its idle connections are
    /// closed: they were opened to a server that is gone.
    pub(crate) fn failed(&self, state: NodeState, err: &Error) {
        // Whatever answers next at this address starts from what it says.
        self.replayed.store(0, Ordering::Release);
        self.failures.fetch_add(1, Ordering::AcqRel);
        let before = self.state.swap(state.as_u8(), Ordering::AcqRel);
        if before != state.as_u8() {
            tracing::warn!(replica = %self.target, error = %err, ?state, "replica out of rotation");
        }
        self.db.pool().retain(|_, _| false);
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.error = Some(err.to_string());
    }

    fn set_state(&self, state: NodeState) {
        let before = NodeState::from_u8(self.state.swap(state.as_u8(), Ordering::AcqRel));
        match (before, state) {
            (a, b) if a == b => {}
            (_, NodeState::Up) => tracing::info!(replica = %self.target, "replica in rotation"),
            (_, state) => tracing::warn!(replica = %self.target, ?state, "replica out of rotation"),
        }
    }

    fn status(&self) -> NodeStatus {
        let report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        let replayed = self.replayed();
        NodeStatus {
            target: self.target.clone(),
            role: NodeRole::Replica,
            state: self.state(),
            lag: report.lag,
            replayed: (replayed > 0).then(|| ReadToken::from_lsn(replayed)),
            since_probe: report.probed.map(|t| t.elapsed()),
            error: report.error.clone(),
            reads: self.reads.load(Ordering::Relaxed),
            pool: self.db.pool_status(),
        }
    }

    /// Probes the replica once: standby or not, replay position, lag.
    async fn probe(&self, set: &ReplicaSet, limit: Duration) {
        let failures = self.failures.load(Ordering::Acquire);
        let answer = tokio::time::timeout(
            limit,
            self.db
                .server_row_if_free(&crate::queries::server::REPLICA_PROBE),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::unavailable(
                format!("the replica's probe got no answer within {limit:?}"),
                None,
            ))
        });
        let answer = match answer {
            // Every connection is serving reads: busy, not down. The next
            // probe asks again; the reads' own checks keep its position.
            Ok(None) => return,
            Ok(Some(row)) => Ok(row),
            Err(err) => Err(err),
        };
        let answer = answer.and_then(|row| {
            let standby: bool = row.try_get(0)?;
            let position: Option<PgLsn> = row.try_get(1)?;
            let cluster: i64 = row.try_get(2)?;
            match set.cluster.get() {
                Some(primary) if *primary != cluster => Err(Error::unavailable(
                    format!(
                        "not a copy of the primary: its system identifier is {cluster}, the \
                         primary's {primary}; check VOIDRUNNER_DB_REPLICAS"
                    ),
                    None,
                )),
                _ => Ok((standby, position.map(u64::from))),
            }
        });
        let now = Instant::now();
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.probed = Some(now);
        #[cfg(feature = "metrics")]
        let _record = RecordOnDrop(self);
        match answer {
            Err(err) => {
                report.lag = None;
                report.error = Some(err.to_string());
                drop(report);
                self.replayed.store(0, Ordering::Release);
                if self.state() != NodeState::Down {
                    self.db.pool().retain(|_, _| false);
                }
                self.set_state(NodeState::Down);
            }
            Ok((false, _)) | Ok((true, None)) => {
                report.lag = None;
                report.error = None;
                drop(report);
                self.replayed.store(0, Ordering::Release);
                self.set_state(NodeState::Promoted);
            }
            Ok((true, Some(position))) => {
                // Stored, not raised: a replica that restarted may be
                // behind where it was.
                self.replayed.store(position, Ordering::Release);
                let lag = set.lag_of(position, now);
                report.lag = lag;
                report.error = None;
                drop(report);
                if self.failures.load(Ordering::Acquire) != failures {
                    // A read found it gone while this probe was out: the
                    // next probe decides.
                    return;
                }
                let lagging = lag.is_some_and(|lag| lag > set.max_lag);
                self.set_state(if lagging {
                    NodeState::Lagging
                } else {
                    NodeState::Up
                });
            }
        }
    }
}

/// Records a replica's gauges once its probe has updated its state.
#[cfg(feature = "metrics")]
struct RecordOnDrop<'a>(&'a Node);

#[cfg(feature = "metrics")]
impl Drop for RecordOnDrop<'_> {
    fn drop(&mut self) {
        let node = self.0;
        let lag = node
            .report
            .lock()
            .map(|r| r.lag)
            .unwrap_or_else(|p| p.into_inner().lag);
        node.db
            .inner
            .metrics
            .record_replica(node.state() == NodeState::Up, lag);
    }
}

/// Probes the primary's write position, then every replica at once.
pub(super) async fn probe_all(db: &Database, set: &ReplicaSet) {
    let config = db.config();
    let limit = config.connect_timeout.max(Duration::from_millis(100));
    let sampled = tokio::time::timeout(
        limit,
        db.server_row(&crate::queries::server::WRITE_POSITION),
    )
    .await;
    match sampled {
        Ok(Ok(row)) => match row.try_get::<_, Option<PgLsn>>(0) {
            Ok(Some(position)) => {
                if let Ok(cluster) = row.try_get::<_, i64>(1) {
                    let _ = set.cluster.set(cluster);
                }
                let keep = config
                    .replica_max_lag
                    .saturating_add(config.replica_probe_interval.saturating_mul(2));
                set.sample_primary(Instant::now(), u64::from(position), keep);
            }
            Ok(None) => {}
            Err(err) => tracing::debug!(error = %err, "reading the primary's WAL position"),
        },
        Ok(Err(err)) => tracing::debug!(error = %err, "sampling the primary's WAL position"),
        Err(_) => tracing::debug!("sampling the primary's WAL position got no answer"),
    }
    let probes = set.nodes.iter().map(|node| node.probe(set, limit));
    join_all(probes).await;
}

/// Runs every future to completion, concurrently, on this task.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Probes the replicas every [`DbConfig::replica_probe_interval`] until
/// `stop` fires or the last handle is dropped; the first probe right away,
/// so that replicas come into rotation as soon as they answer.
pub(super) async fn prober(inner: Weak<Inner>, period: Duration, mut stop: oneshot::Receiver<()>) {
    let period = period.max(*crate::config::REPLICA_PROBE_INTERVAL_RANGE.start());
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.pool.is_closed() {
            return;
        }
        let db = Database::from_inner(inner);
        if let Some(set) = db.replica_set() {
            // Stops with the handle: a probe in flight when the last
            // handle goes is dropped with it.
            tokio::select! {
                _ = &mut stop => return,
                _ = probe_all(&db, set) => {}
            }
        }
        drop(db);
    }
}

/// A read-your-writes handle's writes: the highest position any of them
/// committed at, and the token it started from.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// 0: none yet.
    position: AtomicU64,
}

impl Session {
    pub(crate) fn new(since: Option<ReadToken>) -> Arc<Self> {
        Arc::new(Session {
            position: AtomicU64::new(since.map_or(0, ReadToken::lsn)),
        })
    }

    /// Notes the position after a write.
    pub(crate) fn wrote(&self, position: u64) {
        self.position.fetch_max(position, Ordering::AcqRel);
    }

    pub(crate) fn token(&self) -> Option<ReadToken> {
        match self.position.load(Ordering::Acquire) {
            0 => None,
            position => Some(ReadToken::from_lsn(position)),
        }
    }
}

impl Session {
    /// A write's position could not be learnt: from now on the handle's
    /// token is the highest there is, which no replica reaches, so its
    /// reads go to the primary (after waiting `replica_wait`), never stale.
    pub(crate) fn lost(&self) {
        self.position.store(u64::MAX, Ordering::Release);
    }
}
