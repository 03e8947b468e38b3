//! The pooled [`Database`] handle.
//!
//! deadpool has no minimum size and no connection lifetime, so this module
//! adds them: the pool is warmed to [`DbConfig::min_connections`] at connect,
//! a pre-recycle hook refuses connections older than
//! [`DbConfig::max_lifetime`], and a reaper task closes connections idle
//! longer than [`DbConfig::idle_timeout`] (never going below the minimum) and
//! refills the pool to its minimum.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::config::DbConfig;
use crate::connect::{Connector, Tls};
use crate::error::{Error, Result};

mod replicas;
mod rotation;
mod views;

pub(crate) use rotation::ClaimRotation;

pub use replicas::{NodeRole, NodeState, NodeStatus};
pub(crate) use replicas::{Pick, ReplicaSet, Session};

/// A pooled connection checked out of a [`Database`]; returned to the pool
/// when dropped.
pub type PooledClient = deadpool_postgres::Object;

pub use crate::pool_status::PoolStatus;

/// Closes a pooled connection instead of returning it to the pool, first
/// cancelling whatever statement its server session is still running: a
/// session whose state nobody can vouch for (a call or transaction dropped
/// half-way) must neither serve another caller nor keep working, holding
/// locks, for a caller that is gone. The cancel request goes out as
/// `route` says: with the pool's TLS settings (a server that accepts only
/// TLS would not hear a plaintext one), or, behind a pooler, on a socket
/// that waits for the pooler to finish with it (see `crate::cancel`).
pub(crate) fn discard(client: PooledClient, route: CancelRoute) {
    let client = deadpool_postgres::Object::take(client);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let token = client.cancel_token();
            runtime.spawn(async move {
                let cancelled = match route.pooler {
                    // Plaintext is allowed: the pooler workaround, which
                    // speaks no TLS. Where TLS is required, the driver's own
                    // cancel (the workaround would not reach the server).
                    Some(pg) if !route.tls_required => {
                        crate::cancel::through_pooler(&token, &pg).await
                    }
                    _ => token
                        .cancel_query(route.tls)
                        .await
                        .map_err(std::io::Error::other),
                };
                if let Err(err) = cancelled {
                    tracing::debug!(error = %err, "cancelling the discarded session's statement failed");
                }
                // Closing the connection ends the session: the server rolls
                // back whatever transaction it had open.
                drop(client);
            });
        }
        Err(_) => drop(client),
    }
}

/// How the cancel request of a [`discard`]ed connection reaches the
/// server: the pool's TLS, and the pooler's address when one is in front.
#[derive(Clone)]
pub(crate) struct CancelRoute {
    tls: Tls,
    /// `sslmode` is `require` or stronger: the cancel request must go over
    /// TLS too.
    tls_required: bool,
    pooler: Option<Arc<tokio_postgres::Config>>,
}

impl std::fmt::Debug for CancelRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pooler's configuration may hold a password: only whether
        // there is one.
        f.debug_struct("CancelRoute")
            .field("through_pooler", &self.pooler.is_some())
            .finish_non_exhaustive()
    }
}

/// Closes a connection whose server refused a write as read-only (25006),
/// and every idle connection of its pool: they were opened to the same
/// server, a standby now or a primary a failover demoted. The next checkout
/// connects afresh, and a multi-host URL with
/// `target_session_attrs=read-write` finds the new primary; without this the
/// pool would keep handing out sessions that can never write.
pub(crate) fn retire_read_only(client: PooledClient, route: CancelRoute) {
    tracing::warn!("the server is read-only; closing its pooled connections");
    if let Some(pool) = deadpool_postgres::Object::pool(&client) {
        pool.retain(|_, _| false);
    }
    discard(client, route);
}

/// What [`Database::health_check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// Time for the checkout and a query round trip.
    pub latency: Duration,
    /// The server's `server_version`, e.g. `15.4 (Debian 15.4-1)`.
    pub server_version: String,
    /// Pool statistics taken after the check.
    pub pool: PoolStatus,
    /// Every node: the primary first, then each replica as its last probe
    /// found it (see [`Database::nodes`]).
    pub nodes: Vec<NodeStatus>,
}

/// The pooled handle to the voidrunner database.
///
/// Cheap to clone: clones share one pool. The background reaper stops when
/// the last clone is dropped or [`close`](Self::close) is called.
#[derive(Clone, Debug)]
pub struct Database {
    inner: Arc<Inner>,
    /// Where this handle's reads go, and the read-your-writes session it
    /// belongs to, if any: set by [`reads`](Self::reads) and
    /// [`read_your_writes`](Self::read_your_writes) on a clone.
    view: views::View,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    /// Shared with the transactions opened on this pool, which read their
    /// settings here too.
    config: Arc<DbConfig>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::PoolMetrics,
    /// The TLS connector of every connection of this handle, built once.
    connector: Connector,
    /// Held by [`fill`], shared with the reaper.
    filling: Arc<tokio::sync::Mutex<()>>,
    /// Where the pool connects, when that is a pooler (see [`discard`]).
    pooler_route: Option<Arc<tokio_postgres::Config>>,
    /// The streaming replicas reads may go to, if configured.
    replicas: Option<ReplicaSet>,
    /// Where the fair claim's rotation stands: shared by every queue handle
    /// of this pool and the transactions opened on it.
    claim_rotation: Arc<ClaimRotation>,
    // Dropping the senders (with the last Database clone) stops the reaper
    // and the replicas' prober.
    _reaper_stop: oneshot::Sender<()>,
    _prober_stop: Option<oneshot::Sender<()>>,
}

impl Database {
    /// Longest wait of [`close`](Self::close): a longer timeout waits this
    /// long.
    pub const MAX_CLOSE_WAIT: Duration = Duration::from_secs(24 * 3600);

    /// Opens the pool and warms it to
    /// [`min_connections`](DbConfig::min_connections).
    ///
    /// Fails with [`Error::Unavailable`] when the server cannot be reached,
    /// with [`Error::Tls`] when TLS fails (see [`Error::tls_kind`]: an
    /// unknown CA, a host name the certificate does not name, an expired
    /// certificate, a server without TLS), and with [`Error::Config`] when
    /// a setting is out of its documented range, the settings are
    /// inconsistent ([`DbConfig::validate`]) or a certificate or key file
    /// cannot be read. Must be called inside a Tokio runtime.
    ///
    /// Once connected, it checks in one round trip that the session's role
    /// (the URL's user, or [`DbConfig::role`]) may read what every pool
    /// reads, whatever it is for: `SELECT` on `tasks` and
    /// `task_executions`, `USAGE` on their schema, and `EXECUTE` on the
    /// functions reads go through (the scope's, from migration V9, and
    /// the list pages). Only what exists is checked, so connecting to a
    /// database not migrated yet succeeds. A missing privilege is an
    /// [`Error::Config`] naming the role, each privilege and its table,
    /// schema or function. Writes and the queue's functions are not
    /// checked (the app role of [`crate::roles`] has no worker privileges,
    /// and a reporting pool may only read), and
    /// [`connect_lazy`](Self::connect_lazy) checks nothing. A role that
    /// cannot be taken (missing, or the URL's user not a member) is an
    /// [`Error::Config`] too.
    pub async fn connect(config: DbConfig) -> Result<Self> {
        let span = tracing::info_span!("voidrunner_db.connect", target = %config.display_target());
        async move {
            let db = Self::build(config, false)?;
            // Warm with the normal wait timeout: a refused connection must
            // fail connect, not be discovered by the first query.
            let warm = db.inner.config.min_connections.max(1);
            fill(
                &db.inner.pool,
                warm,
                db.inner.pool.timeouts(),
                &db.inner.filling,
            )
            .await
            .map_err(|e| db.opening_failed(e))?;
            db.check_privileges().await?;
            // The replicas' first probe, so reads may go to them from the
            // start; one that does not answer is only left out of rotation.
            if let Some(set) = db.replica_set() {
                replicas::probe_all(&db, set).await;
            }
            #[cfg(feature = "metrics")]
            db.record_pool_metrics();
            tracing::info!(connections = db.pool_status().size, "connected");
            Ok(db)
        }
        .instrument(span)
        .await
    }

    /// Builds the pool without opening any connection; the reaper warms it
    /// in the background. Useful when the server may come up after the
    /// service. Fails with [`Error::Config`] as [`connect`](Self::connect)
    /// does (the certificate and key files are read here too), but checks
    /// no privilege: a role that lacks one fails on the first statement
    /// that needs it, with the server's error (SQLSTATE 42501). Must be
    /// called inside a Tokio runtime.
    pub fn connect_lazy(config: DbConfig) -> Result<Self> {
        Self::build(config, true)
    }

    /// The pool and its reaper; `warm_now` makes the reaper's first run
    /// immediate instead of one interval from now.
    fn build(config: DbConfig, warm_now: bool) -> Result<Self> {
        config.validate()?;
        let connector = Connector::new(&config)?;
        let pooled = config.pooled_pg_config();
        let pooler_route =
            (config.pooler != crate::config::PoolerMode::Direct).then(|| Arc::new(pooled.clone()));
        let manager = Manager::from_config(
            pooled,
            connector.tls(),
            ManagerConfig {
                // Fast: a returned connection is only checked for being
                // closed; a broken one surfaces as Unavailable on use.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let max_lifetime = config.max_lifetime;
        // Behind a session-mode pooler the session settings cannot be
        // startup options: each new connection sets them once instead.
        let connect_sql: Option<Arc<str>> = config.connect_sql().map(Arc::from);
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.recycle_timeout))
            .pre_recycle(deadpool_postgres::Hook::sync_fn(
                move |_, metrics| match max_lifetime {
                    Some(max) if metrics.age() >= max => {
                        Err(HookError::message("connection exceeded max_lifetime"))
                    }
                    _ => Ok(()),
                },
            ))
            .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let sql = connect_sql.clone();
                Box::pin(async move {
                    if let Some(sql) = sql {
                        client
                            .batch_execute(&sql)
                            .await
                            .map_err(HookError::Backend)?;
                    }
                    Ok(())
                })
            }))
            .build()
            .map_err(|e| Error::config(format!("building the pool: {e}")))?;

        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::PoolMetrics::new(&config);
        #[cfg(feature = "metrics")]
        metrics.announce();
        let replicas = ReplicaSet::build(&config)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let filling = Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(reaper(
            pool.clone(),
            config.clone(),
            Arc::clone(&filling),
            warm_now,
            stop_rx,
        ));
        let (prober_stop, prober_stopped) = match replicas {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let probe_interval = config.replica_probe_interval;
        let inner = Arc::new(Inner {
            pool,
            config: Arc::new(config),
            #[cfg(feature = "metrics")]
            metrics,
            connector,
            filling,
            pooler_route,
            replicas,
            claim_rotation: Arc::default(),
            _reaper_stop: stop_tx,
            _prober_stop: prober_stop,
        });
        if let Some(stopped) = prober_stopped {
            tokio::spawn(replicas::prober(
                Arc::downgrade(&inner),
                probe_interval,
                stopped,
            ));
        }
        Ok(Database::from_inner(inner))
    }

    /// A handle on `inner` with the default view (reads on the primary).
    fn from_inner(inner: Arc<Inner>) -> Self {
        Database {
            inner,
            view: views::View::default(),
        }
    }

    /// Checks a connection out of the pool.
    ///
    /// Fails with [`Error::Timeout`] (kind
    /// [`PoolWait`](crate::TimeoutKind::PoolWait)) when every connection
    /// stays in use for [`wait_timeout`](DbConfig::wait_timeout), and with
    /// [`Error::Unavailable`] when the server cannot be reached or the pool
    /// is closed, and with [`Error::Tls`] when a new connection fails
    /// because of TLS.
    ///
    /// Every checkout of the crate (repositories, transactions, units of
    /// work, event polling) goes through here; with the `metrics` feature
    /// its wait is recorded and the pool gauges are updated (see
    /// [`crate::metrics`]).
    pub async fn client(&self) -> Result<PooledClient> {
        #[cfg(feature = "metrics")]
        let timing = self.inner.metrics.checkout();
        let checkout = self.inner.pool.get().await;
        #[cfg(feature = "metrics")]
        {
            timing.finish(&checkout);
            self.record_pool_metrics();
        }
        checkout.map_err(|e| self.opening_failed(Error::from(e)))
    }

    /// Fails with an [`Error::Config`] listing what the session's role may
    /// not do of what every pool does (see [`connect`](Self::connect)).
    async fn check_privileges(&self) -> Result<()> {
        let config = &self.inner.config;
        let limit = config.connect_timeout.saturating_add(config.wait_timeout);
        let check = async {
            // Straight from the pool, as the warm-up's checkouts: the
            // crate's own, not one the checkout metrics should count.
            let client = self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| self.opening_failed(Error::from(e)))?;
            let messages = match client
                .simple_query(crate::queries::server::MISSING_PRIVILEGES.text)
                .await
            {
                Ok(messages) => messages,
                Err(e) => {
                    // Its transaction may be left open: not for the pool.
                    discard(client, self.cancel_route());
                    return Err(Error::from(e));
                }
            };
            let mut role = String::new();
            let mut missing = Vec::new();
            for message in &messages {
                let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                let column = |i: usize| Ok::<_, Error>(row.try_get(i)?.unwrap_or_default());
                let (who, privilege, kind, object) =
                    (column(0)?, column(1)?, column(2)?, column(3)?);
                role = who.to_owned();
                missing.push(format!("{privilege} on {kind} {object}"));
            }
            Ok::<_, Error>((role, missing))
        };
        let (role, missing) = match tokio::time::timeout(limit, check).await {
            Ok(checked) => checked?,
            Err(_) => {
                return Err(Error::unavailable(
                    format!("checking the role's privileges got no answer within {limit:?}"),
                    None,
                ));
            }
        };
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::config(format!(
            "role {role:?} lacks what every pool of voidrunner-db needs: {}. Grant it (the roles \
             script does: voidrunner_db::roles), or connect as a role that has it (DbConfig::role)",
            missing.join(", ")
        )))
    }

    /// `err`, met checking out (and so perhaps opening) a connection: a
    /// TLS failure names the server, a refused
    /// [`role`](DbConfig::role) is the configuration error it is.
    fn opening_failed(&self, err: Error) -> Error {
        let config = &self.inner.config;
        config.role_refused(err.connecting_to(&config.display_target()))
    }

    /// The TLS connector of this handle's connections.
    pub(crate) fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// The configuration this handle was built from.
    pub fn config(&self) -> &DbConfig {
        &self.inner.config
    }

    /// The configuration, shared: a transaction holds it, not the pool, so
    /// a transaction kept after the last `Database` clone does not keep the
    /// pool and its reaper alive.
    pub(crate) fn shared_config(&self) -> Arc<DbConfig> {
        Arc::clone(&self.inner.config)
    }

    /// The fair claim's rotation of this pool (see `rotation::ClaimRotation`).
    pub(crate) fn claim_rotation(&self) -> Arc<ClaimRotation> {
        Arc::clone(&self.inner.claim_rotation)
    }

    /// How a discarded connection's cancel request reaches the server
    /// ([`discard`]).
    pub(crate) fn cancel_route(&self) -> CancelRoute {
        CancelRoute {
            tls: self.inner.connector.tls(),
            tls_required: self.inner.config.ssl_mode.requires_tls(),
            pooler: self.inner.pooler_route.clone(),
        }
    }

    /// The underlying deadpool pool, for what this crate does not wrap.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Current pool statistics.
    pub fn pool_status(&self) -> PoolStatus {
        self.inner.pool.status().into()
    }

    /// Publishes the pool gauges (the [`pool_status`](Self::pool_status)
    /// fields) through the `metrics` facade now. They are also updated after
    /// every checkout and on every run of the reaper, so this is only needed
    /// for exact values at a given moment: call it from the scrape handler.
    /// See [`crate::metrics`] for the series and their labels.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_pool_metrics(&self) {
        self.inner.metrics.record_status(&self.pool_status());
    }

    /// Checks out a connection, runs a query round trip and reports the
    /// server version, the latency and the pool statistics.
    ///
    /// Never hangs: the whole check is bounded by
    /// [`connect_timeout`](DbConfig::connect_timeout) +
    /// [`wait_timeout`](DbConfig::wait_timeout) (at most 48 hours, since
    /// [`DbConfig::validate`] caps each at 24), and an unreachable server
    /// gives [`Error::Unavailable`].
    pub async fn health_check(&self) -> Result<HealthReport> {
        let span = tracing::debug_span!("voidrunner_db.health_check");
        let limit = self
            .inner
            .config
            .connect_timeout
            .saturating_add(self.inner.config.wait_timeout);
        let started = Instant::now();
        let check = async {
            let client = self.client().await?;
            let sql = crate::queries::server::VERSION.text;
            // Unnamed behind a transaction-mode pooler: a named statement's
            // execution could reach another server connection than its
            // preparation.
            let row = if self.inner.config.pooler.named_statements() {
                let stmt = client.prepare_cached(sql).await?;
                client.query_one(&stmt, &[]).await?
            } else {
                client.query_typed_one(sql, &[]).await?
            };
            Ok::<String, Error>(row.try_get(0)?)
        };
        let result = match tokio::time::timeout(limit, check).instrument(span).await {
            Ok(result) => result,
            Err(_) => Err(Error::unavailable(
                format!("health check got no answer within {limit:?}"),
                None,
            )),
        };
        match result {
            Ok(server_version) => {
                let report = HealthReport {
                    latency: started.elapsed(),
                    server_version,
                    pool: self.pool_status(),
                    nodes: self.nodes(),
                };
                tracing::debug!(latency = ?report.latency, "healthy");
                Ok(report)
            }
            Err(err) => {
                tracing::warn!(error = %err, "health check failed");
                Err(err)
            }
        }
    }

    /// Closes the pool: new checkouts fail at once with
    /// [`Error::Unavailable`], idle connections are closed, and this waits up
    /// to `timeout` for checked-out connections to come back (they are
    /// closed as they do). Returns whether every connection was closed in
    /// time. Also stops the reaper.
    ///
    /// Any `timeout` is accepted: [`Duration::ZERO`] does not wait at all,
    /// and the wait never exceeds [`MAX_CLOSE_WAIT`](Self::MAX_CLOSE_WAIT)
    /// (24 hours), so `close(Duration::MAX)` waits at most that long for a
    /// connection that is never returned and then answers `false`.
    pub async fn close(&self, timeout: Duration) -> bool {
        self.inner.pool.close();
        if let Some(set) = self.replica_set() {
            for index in 0..set.len() {
                set.node(index).db.pool().close();
            }
        }
        let wait = timeout.min(Self::MAX_CLOSE_WAIT);
        // Elapsed time against the wait: no deadline is computed, so no
        // Instant arithmetic can overflow.
        let started = Instant::now();
        let open = || {
            self.inner.pool.status().size
                + self.replica_set().map_or(0, |set| {
                    (0..set.len())
                        .map(|i| set.node(i).db.pool().status().size)
                        .sum()
                })
        };
        let closed = loop {
            if open() == 0 {
                break true;
            }
            if started.elapsed() >= wait {
                tracing::warn!(
                    in_use = open(),
                    "closing with connections still checked out"
                );
                break false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        #[cfg(feature = "metrics")]
        self.record_pool_metrics();
        closed
    }

    /// Forgets every prepared statement cached by the pooled connections.
    /// Needed after the schema changes underneath them: otherwise the
    /// server answers "cached plan must not change result type". Nothing to
    /// forget behind a transaction-mode pooler, where nothing is cached.
    pub fn clear_statement_caches(&self) {
        self.inner.pool.manager().statement_caches.clear();
        // The replicas replay the schema change too.
        if let Some(set) = self.replica_set() {
            for index in 0..set.len() {
                set.node(index).db.clear_statement_caches();
            }
        }
    }

    /// Brings the pool up to the minimum size without waiting for a
    /// connection in use: the reaper's refill, exposed for tests and for
    /// services that want a warm pool after a burst of failures.
    pub async fn warm(&self) -> Result<()> {
        let timeouts = Timeouts {
            wait: Some(Duration::ZERO),
            ..self.inner.pool.timeouts()
        };
        fill(
            &self.inner.pool,
            self.inner.config.min_connections,
            timeouts,
            &self.inner.filling,
        )
        .await
        .map_err(|e| self.opening_failed(e))
    }
}

/// Makes sure at least `min` connections are open, by checking out enough of
/// them at the same time. With a zero wait timeout this never queues behind
/// the service's own checkouts.
async fn fill(
    pool: &Pool,
    min: usize,
    timeouts: Timeouts,
    filling: &tokio::sync::Mutex<()>,
) -> Result<()> {
    // One fill at a time: the pool counts a connection only once it is
    // open, so a second fill (the reaper's, while connect's is still
    // opening slow TLS connections) would open the missing ones again.
    let _one_at_a_time = filling.lock().await;
    let status = pool.status();
    let missing = min.saturating_sub(status.size);
    if missing == 0 {
        return Ok(());
    }
    // Holding every idle connection too forces the pool to open `missing`
    // new ones instead of handing the same idle one out repeatedly.
    let wanted = (status.available + missing).min(status.max_size);
    let mut checkouts = tokio::task::JoinSet::new();
    for _ in 0..wanted {
        let pool = pool.clone();
        checkouts.spawn(async move { pool.timeout_get(&timeouts).await });
    }
    let mut held = Vec::with_capacity(wanted);
    let mut first_error = None;
    while let Some(joined) = checkouts.join_next().await {
        match joined {
            Ok(Ok(client)) => held.push(client),
            Ok(Err(e)) => {
                first_error.get_or_insert(Error::from(e));
            }
            Err(join) => {
                first_error.get_or_insert(Error::unavailable(
                    format!("warming the pool: {join}"),
                    None,
                ));
            }
        }
    }
    drop(held);
    match first_error {
        // Losing a race with the service's checkouts is fine: the pool is in
        // use, so it is warm.
        Some(err) if !err.is_timeout() => Err(err),
        _ => Ok(()),
    }
}

/// Retires connections past their lifetime or idle too long, and refills the
/// pool to its minimum; runs until `stop` fires or its sender is dropped.
async fn reaper(
    pool: Pool,
    config: DbConfig,
    filling: Arc<tokio::sync::Mutex<()>>,
    warm_now: bool,
    mut stop: oneshot::Receiver<()>,
) {
    // Hold only a weak reference between runs, so the pool is freed as soon
    // as the last Database clone goes.
    let weak = pool.weak();
    drop(pool);
    // `validate` keeps the interval within 10 ms..=24 h; checked all the
    // same, so no setting can make this task panic.
    let now = tokio::time::Instant::now();
    let first = if warm_now {
        now
    } else {
        now.checked_add(config.reaper_interval).unwrap_or(now)
    };
    let period = config
        .reaper_interval
        .max(*crate::config::REAPER_INTERVAL_RANGE.start());
    let mut ticker = tokio::time::interval_at(first, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeouts = Timeouts {
        wait: Some(Duration::ZERO),
        create: Some(config.connect_timeout),
        recycle: Some(config.recycle_timeout),
    };
    #[cfg(feature = "metrics")]
    let metrics = crate::metrics::PoolMetrics::new(&config);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let Some(pool) = weak.upgrade() else { return };
        if pool.is_closed() {
            return;
        }
        if let Some(max) = config.max_lifetime {
            pool.retain(|_, metrics| metrics.age() < max);
        }
        if let Some(idle) = config.idle_timeout {
            // deadpool stamps a connection when it is checked out, so "idle"
            // is measured from its last checkout: a connection held for
            // longer than the idle timeout may be closed soon after it is
            // returned. Only idle connections are visited here.
            let mut removable = pool.status().size.saturating_sub(config.min_connections);
            pool.retain(|_, metrics| {
                if removable > 0 && metrics.last_used() >= idle {
                    removable -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if let Err(err) = fill(&pool, config.min_connections, timeouts, &filling).await {
            tracing::debug!(error = %err, "could not refill the pool");
        }
        #[cfg(feature = "metrics")]
        metrics.record_status(&pool.status().into());
    }
}

impl Database {
    /// Applies every pending embedded migration under the migration lock
    /// (see [`crate::migrate`]) and then clears the pool's prepared-statement
    /// caches. Returns the versions this call applied: empty when the schema
    /// was already current, e.g. because another instance migrated first.
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        let applied = crate::migrate::up(&self.inner.config, &self.inner.connector).await;
        self.clear_statement_caches();
        applied
    }

    /// Applies a service's own `migrations` (in any order: refinery sorts
    /// them by version), recorded in the service's `history_table`, under the
    /// same migration lock, `lock_timeout` and retries as
    /// [`migrate`](Self::migrate), then clears the prepared-statement
    /// caches. Call it after [`migrate`](Self::migrate): it fails with an
    /// [`Error::Migration`](crate::Error::Migration) while any of the
    /// crate's migrations is pending. `history_table` must be a lowercase
    /// identifier other than [`HISTORY_TABLE`](crate::migrate::HISTORY_TABLE)
    /// ([`Error::Validation`](crate::Error::Validation) otherwise). Returns
    /// the versions this call applied. See
    /// [the module docs](crate::migrate#a-services-own-migrations).
    pub async fn migrate_service(
        &self,
        migrations: &[refinery::Migration],
        history_table: &str,
    ) -> Result<Vec<i32>> {
        let applied = crate::migrate::up_service(
            &self.inner.config,
            &self.inner.connector,
            migrations,
            history_table,
        )
        .await;
        self.clear_statement_caches();
        applied
    }

    /// Reverts applied migrations, newest first, with their down scripts.
    /// Returns the versions reverted.
    pub async fn migrate_down(&self, target: crate::migrate::DownTarget) -> Result<Vec<i32>> {
        let reverted =
            crate::migrate::down(&self.inner.config, &self.inner.connector, target).await;
        self.clear_statement_caches();
        reverted
    }

    /// Lists applied and pending migrations.
    pub async fn migration_status(&self) -> Result<crate::migrate::MigrationStatus> {
        crate::migrate::status(&self.inner.config, &self.inner.connector).await
    }
}
