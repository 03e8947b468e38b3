//! Pool gauges and checkout wait times through the
//! [`metrics`](https://docs.rs/metrics/0.24) facade (feature `metrics`).
//!
//! The crate only emits; the application installs the recorder and
//! exporter it likes (Prometheus, StatsD, OpenTelemetry…) as usual for the
//! facade. Without a recorder every call is a no-op, and without the
//! feature none of this is compiled in.
//!
//! The series go to the recorder of `metrics` 0.24: install yours through
//! that version of the facade (an exporter built on another, incompatible
//! version has a global recorder of its own, which sees nothing of them).
//! No `metrics` type appears in this crate's API; moving to another
//! incompatible version of the facade is a breaking change of this crate
//! all the same.
//!
//! | name | kind | labels | value |
//! |---|---|---|---|
//! | `voidrunner_db_pool_size` | gauge | `pool` | connections open, idle and in use ([`PoolStatus::size`]) |
//! | `voidrunner_db_pool_available` | gauge | `pool` | open connections not checked out ([`PoolStatus::idle`]) |
//! | `voidrunner_db_pool_in_use` | gauge | `pool` | connections checked out ([`PoolStatus::in_use`]) |
//! | `voidrunner_db_pool_waiting` | gauge | `pool` | checkouts waiting for a connection ([`PoolStatus::waiting`]) |
//! | `voidrunner_db_pool_max` | gauge | `pool` | the most connections the pool opens ([`PoolStatus::max`]) |
//! | `voidrunner_db_pool_wait_seconds` | histogram | `pool`, `outcome` | time a checkout took, in seconds |
//! | `voidrunner_db_pool_wait_timeouts_total` | counter | `pool` | checkouts that gave up after [`wait_timeout`](crate::DbConfig::wait_timeout) |
//! | `voidrunner_db_replica_in_rotation` | gauge | `pool` | 1 while a replica is in rotation for reads, else 0 (see [`NodeState`](crate::NodeState)) |
//! | `voidrunner_db_replica_lag_seconds` | gauge | `pool` | a replica's replay lag at its last probe; NaN while unknown |
//!
//! Each replica ([`DbConfig::set_replicas`](crate::DbConfig::set_replicas))
//! has a pool of its own, with every pool series of its own: its `pool`
//! label is the primary's with `.replica<N>` appended (`voidrunner-db.replica1`
//! for the first), the name its sessions report to the replica's server.
//!
//! The names are also exported as constants ([`POOL_SIZE`] and so on).
//!
//! # Labels
//!
//! Every series carries `pool`: the `application_name` the pool's sessions
//! report to the server (the connection URL's if it sets one, else
//! [`DbConfig::application_name`](crate::DbConfig::application_name)), as
//! [`pool_label`] gives it. A metric series and the pool's sessions in
//! `pg_stat_activity` so carry the same name, and two [`Database`]s of one
//! process stay apart when their application names differ: give each pool
//! its own (`VOIDRUNNER_DB_APPLICATION_NAME`). The label never holds the
//! URL, host, user or password.
//!
//! The histogram also carries `outcome`:
//!
//! | `outcome` | the checkout… |
//! |---|---|
//! | `ok` | got a connection |
//! | `timeout` | waited [`wait_timeout`](crate::DbConfig::wait_timeout) for a free connection and failed with [`Error::Timeout`](crate::Error::Timeout) of kind [`PoolWait`](crate::TimeoutKind::PoolWait); also counted by `voidrunner_db_pool_wait_timeouts_total` |
//! | `error` | failed otherwise: the server could not be reached, recycling timed out, the pool is closed |
//! | `cancelled` | was abandoned by its caller (its future dropped, e.g. by an outer timeout) before it ended |
//!
//! # When they are recorded
//!
//! Every checkout, that of [`Database::client`] and those the repositories,
//! transactions, units of work and event streams make through it, records
//! one histogram sample: the time from the start of the checkout to its
//! end, that is the wait for a free connection plus recycling an idle one
//! or opening a new one. The pool's own warming and refilling (at connect,
//! by the reaper and [`Database::warm`]) are not checkouts and are not
//! recorded.
//!
//! The gauges are set after every checkout (successful or not), on every
//! run of the pool's reaper ([`reaper_interval`](crate::DbConfig::reaper_interval)),
//! after [`Database::connect`] and [`Database::close`], and whenever
//! [`Database::record_pool_metrics`] is called. Between those moments a
//! connection returned to the pool is not seen: call
//! [`Database::record_pool_metrics`] from the scrape handler for exact
//! values at scrape time.
//!
//! ```no_run
//! # async fn scrape(db: &voidrunner_db::Database) {
//! // In the handler of GET /metrics, before rendering the exporter's output:
//! db.record_pool_metrics();
//! # }
//! ```
//!
//! The series are registered on every update rather than once, so a
//! recorder installed after [`Database::connect`] still receives them; only
//! the units and descriptions, sent by [`describe`] when a [`Database`] is
//! built, would then be missed: call [`describe`] again after installing
//! the recorder.
//!
//! [`Database`]: crate::Database
//! [`Database::client`]: crate::Database::client
//! [`Database::connect`]: crate::Database::connect
//! [`Database::close`]: crate::Database::close
//! [`Database::warm`]: crate::Database::warm
//! [`Database::record_pool_metrics`]: crate::Database::record_pool_metrics
//! [`PoolStatus::size`]: crate::PoolStatus::size
//! [`PoolStatus::idle`]: crate::PoolStatus::idle
//! [`PoolStatus::in_use`]: crate::PoolStatus::in_use
//! [`PoolStatus::waiting`]: crate::PoolStatus::waiting
//! [`PoolStatus::max`]: crate::PoolStatus::max

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::{PoolError, TimeoutType};
use metrics::{SharedString, Unit};

use crate::config::DbConfig;
use crate::pool_status::PoolStatus;

/// Gauge: connections open, idle and in use.
pub const POOL_SIZE: &str = "voidrunner_db_pool_size";
/// Gauge: open connections not checked out.
pub const POOL_AVAILABLE: &str = "voidrunner_db_pool_available";
/// Gauge: connections checked out.
pub const POOL_IN_USE: &str = "voidrunner_db_pool_in_use";
/// Gauge: checkouts waiting for a connection.
pub const POOL_WAITING: &str = "voidrunner_db_pool_waiting";
/// Gauge: the most connections the pool opens.
pub const POOL_MAX: &str = "voidrunner_db_pool_max";
/// Histogram: seconds a checkout took, labelled with its [`OUTCOME_LABEL`].
pub const POOL_WAIT_SECONDS: &str = "voidrunner_db_pool_wait_seconds";
/// Counter: checkouts that gave up after the wait timeout.
pub const POOL_WAIT_TIMEOUTS_TOTAL: &str = "voidrunner_db_pool_wait_timeouts_total";

/// Gauge: 1 while a replica is in rotation, else 0 (its pool's label).
pub const REPLICA_IN_ROTATION: &str = "voidrunner_db_replica_in_rotation";
/// Gauge: a replica's replay lag at its last probe, in seconds; NaN while
/// unknown (never probed, down).
pub const REPLICA_LAG_SECONDS: &str = "voidrunner_db_replica_lag_seconds";

/// The label naming the pool, on every series (see [`pool_label`]).
pub const POOL_LABEL: &str = "pool";
/// The label of [`POOL_WAIT_SECONDS`] telling how the checkout ended: `ok`,
/// `timeout`, `error` or `cancelled`.
pub const OUTCOME_LABEL: &str = "outcome";

/// The value of the [`POOL_LABEL`] label for a [`Database`](crate::Database)
/// built from `config`: the `application_name` its sessions report to the
/// server, the connection URL's if it sets one, else
/// [`DbConfig::application_name`]. Never contains the URL, host, user or
/// password.
pub fn pool_label(config: &DbConfig) -> &str {
    config
        .pg_config()
        .get_application_name()
        .unwrap_or(&config.application_name)
}

/// Sends the unit and description of every series to the installed
/// recorder. Done whenever a [`Database`](crate::Database) is built; call it
/// again after installing a recorder if a `Database` was built before.
pub fn describe() {
    for (name, description) in [
        (POOL_SIZE, "Connections open in the pool, idle and in use."),
        (
            POOL_AVAILABLE,
            "Open connections of the pool not checked out.",
        ),
        (POOL_IN_USE, "Connections checked out of the pool."),
        (POOL_WAITING, "Checkouts waiting for a pooled connection."),
        (POOL_MAX, "The most connections the pool opens."),
    ] {
        metrics::describe_gauge!(name, Unit::Count, description);
    }
    metrics::describe_gauge!(
        REPLICA_IN_ROTATION,
        Unit::Count,
        "1 while the replica is in rotation for reads, else 0."
    );
    metrics::describe_gauge!(
        REPLICA_LAG_SECONDS,
        Unit::Seconds,
        "The replica's replay lag at its last probe; NaN while unknown."
    );
    metrics::describe_histogram!(
        POOL_WAIT_SECONDS,
        Unit::Seconds,
        "Time a checkout of a pooled connection took, by outcome."
    );
    metrics::describe_counter!(
        POOL_WAIT_TIMEOUTS_TOTAL,
        Unit::Count,
        "Checkouts that found no free pooled connection within the wait timeout."
    );
}

/// The metrics of one pool: its label, shared by every clone.
#[derive(Debug, Clone)]
pub(crate) struct PoolMetrics {
    pool: SharedString,
}

impl PoolMetrics {
    pub(crate) fn new(config: &DbConfig) -> Self {
        let label: Arc<str> = Arc::from(pool_label(config));
        PoolMetrics {
            pool: SharedString::from(label),
        }
    }

    /// Describes the series and registers the timeout counter at 0, so it
    /// is exported before the first timeout.
    pub(crate) fn announce(&self) {
        describe();
        metrics::counter!(POOL_WAIT_TIMEOUTS_TOTAL, POOL_LABEL => self.pool.clone()).increment(0);
    }

    /// Sets the gauges to `status`.
    pub(crate) fn record_status(&self, status: &PoolStatus) {
        for (name, value) in [
            (POOL_SIZE, status.size),
            (POOL_AVAILABLE, status.idle),
            (POOL_IN_USE, status.in_use),
            (POOL_WAITING, status.waiting),
            (POOL_MAX, status.max),
        ] {
            // Pool sizes are at most 10,000: exact in an f64.
            metrics::gauge!(name, POOL_LABEL => self.pool.clone()).set(value as f64);
        }
    }

    /// Sets a replica pool's gauges after a probe: whether it is in
    /// rotation, and its replay lag (removed while unknown).
    pub(crate) fn record_replica(&self, in_rotation: bool, lag: Option<std::time::Duration>) {
        metrics::gauge!(REPLICA_IN_ROTATION, POOL_LABEL => self.pool.clone()).set(if in_rotation {
            1.0
        } else {
            0.0
        });
        let gauge = metrics::gauge!(REPLICA_LAG_SECONDS, POOL_LABEL => self.pool.clone());
        match lag {
            Some(lag) => gauge.set(lag.as_secs_f64()),
            None => gauge.set(f64::NAN),
        }
    }

    /// Starts timing a checkout.
    pub(crate) fn checkout(&self) -> Checkout<'_> {
        Checkout {
            metrics: self,
            started: Instant::now(),
            finished: false,
        }
    }

    fn record_wait(&self, started: Instant, outcome: &'static str) {
        metrics::histogram!(
            POOL_WAIT_SECONDS,
            POOL_LABEL => self.pool.clone(),
            OUTCOME_LABEL => outcome
        )
        .record(started.elapsed().as_secs_f64());
    }
}

/// A checkout being timed: [`finish`](Self::finish) records it; dropped
/// unfinished (the caller gave up on the checkout), it records a
/// `cancelled` sample.
#[derive(Debug)]
pub(crate) struct Checkout<'a> {
    metrics: &'a PoolMetrics,
    started: Instant,
    finished: bool,
}

impl Checkout<'_> {
    /// Records the checkout's wait and outcome.
    pub(crate) fn finish(mut self, result: &Result<deadpool_postgres::Object, PoolError>) {
        self.finished = true;
        let outcome = match result {
            Ok(_) => "ok",
            Err(PoolError::Timeout(TimeoutType::Wait)) => {
                metrics::counter!(POOL_WAIT_TIMEOUTS_TOTAL, POOL_LABEL => self.metrics.pool.clone())
                    .increment(1);
                "timeout"
            }
            Err(_) => "error",
        };
        self.metrics.record_wait(self.started, outcome);
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.record_wait(self.started, "cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_label_is_the_application_name_and_no_secret() {
        let mut config =
            DbConfig::from_url("postgres://alice:s3cret@db.internal:6543/app").unwrap();
        assert_eq!(pool_label(&config), "voidrunner-db");
        config.application_name = "billing".into();
        assert_eq!(pool_label(&config), "billing");
        // The URL's own application_name is the one the server sees.
        let config = DbConfig::from_url(
            "postgres://alice:s3cret@db.internal:6543/app?application_name=worker-7",
        )
        .unwrap();
        assert_eq!(pool_label(&config), "worker-7");
        assert_eq!(PoolMetrics::new(&config).pool.as_ref(), "worker-7");
    }
}
