//! Connection and pool configuration.
//!
//! A [`DbConfig`] comes from a URL ([`DbConfig::from_url`]), from the
//! environment ([`DbConfig::from_env`]), or from any serde source (a config
//! file). The defaults are those of SPEC §5.
//!
//! | field | env variable | default | accepted | what it maps to |
//! |---|---|---|---|---|
//! | `url` | `DATABASE_URL` | required | | `tokio_postgres::Config` (URL or `key=value` form) |
//! | [`max_connections`](DbConfig::max_connections) | `VOIDRUNNER_DB_MAX_CONNECTIONS` | 25 | 1 to 10,000 | deadpool `max_size` |
//! | [`min_connections`](DbConfig::min_connections) | `VOIDRUNNER_DB_MIN_CONNECTIONS` | 5 | 0 to `max_connections` | warmed at connect, kept by the reaper |
//! | [`max_lifetime`](DbConfig::max_lifetime) | `VOIDRUNNER_DB_MAX_LIFETIME` | `1h` | 1 ms to 30 days, or `off` | pre-recycle hook and reaper retire older connections |
//! | [`idle_timeout`](DbConfig::idle_timeout) | `VOIDRUNNER_DB_IDLE_TIMEOUT` | `30m` | 1 ms to 30 days, or `off` | reaper closes connections idle longer (never below the minimum) |
//! | [`connect_timeout`](DbConfig::connect_timeout) | `VOIDRUNNER_DB_CONNECT_TIMEOUT` | `10s` | 1 ms to 24 h | `connect_timeout` of the driver and deadpool's create timeout |
//! | [`wait_timeout`](DbConfig::wait_timeout) | `VOIDRUNNER_DB_WAIT_TIMEOUT` | `5s` | 1 ms to 24 h | deadpool wait timeout: how long a checkout waits for a free connection |
//! | [`recycle_timeout`](DbConfig::recycle_timeout) | `VOIDRUNNER_DB_RECYCLE_TIMEOUT` | `5s` | 1 ms to 24 h | deadpool recycle timeout |
//! | [`statement_timeout`](DbConfig::statement_timeout) | `VOIDRUNNER_DB_STATEMENT_TIMEOUT` | `30s` | 1 ms to 2,147,483,647 ms (about 24.8 days), or `off`; rounded up to whole ms | server setting `statement_timeout`, sent at connect (behind a pooler: see [below](#behind-a-connection-pooler)) |
//! | [`idle_in_transaction_timeout`](DbConfig::idle_in_transaction_timeout) | `VOIDRUNNER_DB_IDLE_IN_TRANSACTION_TIMEOUT` | `60s` | as `statement_timeout` | server setting `idle_in_transaction_session_timeout`, sent at connect (behind a pooler: see [below](#behind-a-connection-pooler)) |
//! | [`reaper_interval`](DbConfig::reaper_interval) | `VOIDRUNNER_DB_REAPER_INTERVAL` | `30s` | 10 ms to 24 h | how often the reaper runs |
//! | [`application_name`](DbConfig::application_name) | `VOIDRUNNER_DB_APPLICATION_NAME` | `voidrunner-db` | printable ASCII, at most 63 bytes (what the server keeps) | server setting `application_name` (shown in `pg_stat_activity`) |
//! | [`notify_events`](DbConfig::notify_events) | `VOIDRUNNER_DB_NOTIFY_EVENTS` | `true` | | `false` sends `voidrunner.notify_events=off` at connect (behind a pooler: see [below](#behind-a-connection-pooler)): this pool's changes send no execution events |
//! | [`migration_lock_timeout`](DbConfig::migration_lock_timeout) | `VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT` | `2s` | 10 ms to 10 min | server setting `lock_timeout` of the migration session |
//! | [`migration_retries`](DbConfig::migration_retries) | `VOIDRUNNER_DB_MIGRATION_RETRIES` | 5 | 0 to 100 | retries of a migration that hit the lock timeout |
//! | [`slow_statement`](DbConfig::slow_statement) | `VOIDRUNNER_DB_SLOW_STATEMENT` | `1s` | 1 ms to 24 h, or `off` | a `WARN` event `slow statement` (duration and SQL, never parameters) for repository statements that take longer |
//! | [`max_output_bytes`](DbConfig::max_output_bytes) | `VOIDRUNNER_DB_MAX_OUTPUT_BYTES` | 1048576 (1 MiB) | 1 KiB to 256 MiB | stdout and stderr of an execution beyond this are truncated with a marker line |
//! | [`pooler`](DbConfig::pooler) | `VOIDRUNNER_DB_POOLER` | `direct` | `direct`, `session`, `transaction` | what `url` points at: the server (or a pooler that passes startup options), or a PgBouncer-style pooler in session or transaction mode (see [below](#behind-a-connection-pooler)) |
//! | `direct_url` ([`DbConfig::set_direct_url`]) | `VOIDRUNNER_DB_DIRECT_URL` | none | URL or `key=value` form | a connection to the server itself (or a session-mode pooler) for migrations, their advisory lock and LISTEN |
//!
//! A value outside its range is an [`Error::Config`] naming the field, from
//! [`DbConfig::validate`], which [`from_env`](DbConfig::from_env),
//! [`Database::connect`](crate::Database::connect) and
//! [`Database::connect_lazy`](crate::Database::connect_lazy) call: never a
//! panic and never a setting quietly replaced by another. The ranges are
//! also exported as constants ([`MAX_CONNECTIONS_RANGE`],
//! [`POOL_TIMEOUT_RANGE`], [`CONNECTION_AGE_RANGE`],
//! [`SERVER_TIMEOUT_RANGE`], [`REAPER_INTERVAL_RANGE`]).
//!
//! Durations are written with a unit: `250ms`, `30s`, `5m`, `1h`. The
//! optional ones also take `off`: `max_lifetime` and `idle_timeout` then never
//! retire a connection, and `statement_timeout` and
//! `idle_in_transaction_timeout` are not sent at all.
//!
//! # Behind a connection pooler
//!
//! By default ([`PoolerMode::Direct`]) the pool connects to the server
//! itself: session settings travel as startup `options`, and every
//! repository statement is a named prepared statement, cached per
//! connection. A pooler such as PgBouncer refuses startup `options`
//! (`unsupported startup parameter: options`, reported as an
//! [`Error::Config`] that says to set the pooler mode), and in transaction
//! mode it also hands each transaction (or lone statement) to whichever
//! server connection is free, so no session state survives from one to the
//! next: named statements, session settings, advisory locks and LISTEN.
//!
//! - [`PoolerMode::Session`]: no startup options; the session settings
//!   (`statement_timeout`, `idle_in_transaction_session_timeout`,
//!   `voidrunner.notify_events`) are sent with `SET` once per new
//!   connection instead. Everything else works as in `Direct` mode: a
//!   session-mode pooler keeps one server connection per client
//!   connection.
//! - [`PoolerMode::Transaction`]: no startup options, and no session state
//!   relied on. Every statement is sent unnamed, with its parameter types
//!   declared, in one round trip (`Parse`/`Bind`/`Execute`/`Sync`): no
//!   server-side statement outlives it. The session settings are set with
//!   `SET LOCAL` in the same message as the `BEGIN` of every transaction the
//!   crate opens; for the statements it sends outside a transaction, make
//!   them settings of the role (`ALTER ROLE app SET statement_timeout =
//!   '30s'`, and likewise `idle_in_transaction_session_timeout` and
//!   `voidrunner.notify_events`). COPY ([`TaskRepository::import`](crate::TaskRepository::import))
//!   runs inside a transaction of its own. Migrations, which hold a session
//!   advisory lock, and LISTEN need a session: they use the direct URL
//!   ([`DbConfig::set_direct_url`]), and without one
//!   [`Database::migrate`](crate::Database::migrate) and
//!   [`Database::subscribe`](crate::Database::subscribe) fail with an
//!   [`Error::Config`] ([`Database::subscribe_polling`](crate::Database::subscribe_polling)
//!   works through the pooler).
//!
//! Whatever the mode, a direct URL, when set, is what migrations and LISTEN
//! use.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// Environment variable holding the connection URL.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";

/// Connection and pool settings of a [`Database`](crate::Database).
///
/// The password never appears in the `Debug` output.
///
/// ```
/// use std::time::Duration;
/// use voidrunner_db::DbConfig;
///
/// let mut config = DbConfig::from_url("postgres://app:secret@db.internal:5432/voidrunner")?;
/// config.max_connections = 10;
/// config.statement_timeout = Some(Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), voidrunner_db::Error>(())
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DbConfig {
    #[serde(rename = "url", deserialize_with = "de_url")]
    connection: tokio_postgres::Config,
    /// Most connections the pool opens. Default 25; 1 to 10,000
    /// ([`MAX_CONNECTIONS_RANGE`]).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections opened at connect and kept open while idle. Default 5;
    /// 0 to [`max_connections`](Self::max_connections).
    #[serde(default = "defaults::min_connections")]
    pub min_connections: usize,
    /// A connection older than this is closed instead of reused. Default
    /// 1 hour; 1 ms to 30 days ([`CONNECTION_AGE_RANGE`]); `None` keeps
    /// connections forever.
    #[serde(default = "defaults::max_lifetime", with = "duration::option")]
    pub max_lifetime: Option<Duration>,
    /// A connection idle longer than this is closed, unless the pool would
    /// drop below [`min_connections`](Self::min_connections). Default 30
    /// minutes; 1 ms to 30 days ([`CONNECTION_AGE_RANGE`]); `None` never
    /// closes idle connections.
    #[serde(default = "defaults::idle_timeout", with = "duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Time allowed to open one connection. Default 10 seconds; 1 ms to
    /// 24 hours ([`POOL_TIMEOUT_RANGE`]).
    #[serde(default = "defaults::connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Time a checkout waits for a free connection before failing with
    /// [`Error::Timeout`]. Default 5 seconds; 1 ms to 24 hours
    /// ([`POOL_TIMEOUT_RANGE`]).
    #[serde(default = "defaults::wait_timeout", with = "duration")]
    pub wait_timeout: Duration,
    /// Time allowed to check a returned connection. Default 5 seconds; 1 ms
    /// to 24 hours ([`POOL_TIMEOUT_RANGE`]).
    #[serde(default = "defaults::recycle_timeout", with = "duration")]
    pub recycle_timeout: Duration,
    /// Server-side `statement_timeout` of every pooled connection. Default
    /// 30 seconds; `None` does not send the setting. Sent as a startup
    /// option; behind a pooler as `SET` per connection (session mode) or
    /// `SET LOCAL` in the crate's transactions (transaction mode: make it a
    /// role setting for the statements outside them). From 1 ms to
    /// `i32::MAX` ms, about 24.8 days ([`SERVER_TIMEOUT_RANGE`]): the server
    /// counts in whole milliseconds and takes 0 to mean "no timeout", so
    /// anything shorter than 1 ms is refused rather than sent as 0, and a
    /// fraction of a millisecond is rounded up (1.5 ms is sent as 2 ms).
    #[serde(default = "defaults::statement_timeout", with = "duration::option")]
    pub statement_timeout: Option<Duration>,
    /// Server-side `idle_in_transaction_session_timeout`. Default 60 seconds;
    /// `None` does not send the setting. Same range, rounding and way of
    /// sending as [`statement_timeout`](Self::statement_timeout).
    #[serde(
        default = "defaults::idle_in_transaction_timeout",
        with = "duration::option"
    )]
    pub idle_in_transaction_timeout: Option<Duration>,
    /// How often the background reaper retires old and idle connections and
    /// refills the pool to its minimum. Default 30 seconds; 10 ms to 24
    /// hours ([`REAPER_INTERVAL_RANGE`]).
    #[serde(default = "defaults::reaper_interval", with = "duration")]
    pub reaper_interval: Duration,
    /// `application_name` reported to the server. Default `voidrunner-db`.
    #[serde(default = "defaults::application_name")]
    pub application_name: String,
    /// Whether executions changed through this pool send events (see
    /// [`crate::events`]). Default true. NOTIFY serialises the commits of
    /// the transactions that send one, so a busy fleet that does not listen
    /// can turn it off (`-c voidrunner.notify_events=off` is sent at
    /// connect; behind a pooler, as [`statement_timeout`](Self::statement_timeout)
    /// is: in transaction mode only the crate's transactions get it, so set
    /// it with `ALTER ROLE … SET voidrunner.notify_events = off` as well).
    #[serde(default = "defaults::notify_events")]
    pub notify_events: bool,
    /// `lock_timeout` of the session that applies or reverts migrations
    /// (see [`crate::migrate`]). A migration statement that waits longer
    /// than this for a lock gives up, so the reads and writes queued behind
    /// its lock request go on; the migration is then retried (see
    /// [`migration_retries`](Self::migration_retries)). Default 2 seconds;
    /// valid from 10 milliseconds to 10 minutes, anything else is an
    /// [`Error::Config`]. The wait for the migration advisory lock itself is
    /// not bounded by it.
    #[serde(default = "defaults::migration_lock_timeout", with = "duration")]
    pub migration_lock_timeout: Duration,
    /// How many times a migration that hit
    /// [`migration_lock_timeout`](Self::migration_lock_timeout) is tried
    /// again, after a jittered exponential backoff, before the migration
    /// fails with an error for which [`Error::is_lock_timeout`] is true.
    /// Default 5 (6 attempts in all); at most 100.
    #[serde(default = "defaults::migration_retries")]
    pub migration_retries: u32,
    /// Most bytes of an execution's `stdout` and of its `stderr` that the
    /// crate stores ([`ExecutionQueue::complete`](crate::ExecutionQueue::complete),
    /// [`ExecutionRepository::update`](crate::ExecutionRepository::update)).
    /// Longer output is truncated, not refused, so a worker's result is
    /// never lost to its size: the first `max_output_bytes` (cut at a
    /// character boundary) are kept and a line
    /// `[voidrunner-db: output truncated: N of M bytes kept]` is appended.
    /// Default 1 MiB; [`OUTPUT_BYTES_RANGE`], else [`Error::Config`].
    #[serde(default = "defaults::max_output_bytes")]
    pub max_output_bytes: usize,
    /// A repository statement that takes longer than this (from sending it
    /// to its last row) is reported as a `WARN` event `slow statement`
    /// with its duration and SQL text (never its parameters). Default 1 s;
    /// `off` (`None`) disables it; 1 ms to 24 h, else [`Error::Config`].
    #[serde(default = "defaults::slow_statement", with = "duration::option")]
    pub slow_statement: Option<Duration>,
    /// What `url` points at: the server itself ([`PoolerMode::Direct`], the
    /// default), or a pooler in session or transaction mode. See
    /// [Behind a connection pooler](self#behind-a-connection-pooler).
    #[serde(default)]
    pub pooler: PoolerMode,
    /// A connection to the server itself (or a session-mode pooler), for
    /// what needs a session of its own: migrations and their advisory lock,
    /// and LISTEN. Parsed and redacted like `url`.
    #[serde(rename = "direct_url", default, deserialize_with = "de_optional_url")]
    direct: Option<tokio_postgres::Config>,
}

/// What the connection URL of a [`DbConfig`] points at, which decides how
/// the crate talks to it (see
/// [Behind a connection pooler](self#behind-a-connection-pooler)).
///
/// Written `direct`, `session` or `transaction` in
/// `VOIDRUNNER_DB_POOLER` and in serde sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PoolerMode {
    /// The server itself, or a pooler that passes startup options through
    /// and keeps a session per connection: session settings are startup
    /// options, statements are named and cached per connection.
    #[default]
    Direct,
    /// A pooler in session mode (PgBouncer `pool_mode = session`): a server
    /// connection per client connection, but no startup options. Session
    /// settings are sent with `SET` when a connection is opened.
    Session,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`):
    /// consecutive transactions of one client connection may run on
    /// different server connections. Statements are sent unnamed with
    /// declared parameter types; session settings become `SET LOCAL` in the
    /// crate's transactions (and role settings outside them); migrations
    /// and LISTEN need [`DbConfig::set_direct_url`].
    Transaction,
}

impl PoolerMode {
    /// The name used in `VOIDRUNNER_DB_POOLER`: `direct`, `session` or
    /// `transaction`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolerMode::Direct => "direct",
            PoolerMode::Session => "session",
            PoolerMode::Transaction => "transaction",
        }
    }

    /// Whether statements are prepared with a name and cached per
    /// connection (every mode but [`Transaction`](Self::Transaction)).
    pub fn named_statements(self) -> bool {
        self != PoolerMode::Transaction
    }

    /// Whether session settings are sent as startup options (only
    /// [`Direct`](Self::Direct): poolers refuse them).
    pub fn startup_options(self) -> bool {
        self == PoolerMode::Direct
    }
}

impl fmt::Display for PoolerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PoolerMode {
    fn parse(text: &str) -> std::result::Result<Self, String> {
        match text.trim() {
            "direct" => Ok(PoolerMode::Direct),
            "session" => Ok(PoolerMode::Session),
            "transaction" => Ok(PoolerMode::Transaction),
            other => Err(format!(
                "`{other}` is not a pooler mode (direct, session or transaction)"
            )),
        }
    }
}

impl FromStr for PoolerMode {
    type Err = Error;

    /// `direct`, `session` or `transaction`; anything else is an
    /// [`Error::Config`].
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text).map_err(Error::config)
    }
}

/// Accepted [`DbConfig::max_connections`]: at least one, and few enough
/// that the pool's bookkeeping (a semaphore, one slot per connection) can
/// never overflow.
pub const MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = 1..=10_000;
/// Accepted [`DbConfig::connect_timeout`], [`DbConfig::wait_timeout`] and
/// [`DbConfig::recycle_timeout`]: 1 ms to 24 hours.
pub const POOL_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 3600);
/// Accepted [`DbConfig::max_lifetime`] and [`DbConfig::idle_timeout`] when
/// set: 1 ms to 30 days (`None` disables them).
pub const CONNECTION_AGE_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(30 * 24 * 3600);
/// Accepted [`DbConfig::statement_timeout`] and
/// [`DbConfig::idle_in_transaction_timeout`] when set: 1 ms to `i32::MAX`
/// ms, the server's range for these settings (0, which the server reads as
/// "off", is not in it: use `None`).
pub const SERVER_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_millis(i32::MAX as u64);
/// Accepted [`DbConfig::reaper_interval`]: 10 ms to 24 hours.
pub const REAPER_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(24 * 3600);

/// Shortest accepted [`DbConfig::migration_lock_timeout`].
const MIN_MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_millis(10);
/// Longest accepted [`DbConfig::migration_lock_timeout`].
const MAX_MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// Accepted [`DbConfig::max_output_bytes`]: 1 KiB to 256 MiB (a text value
/// of PostgreSQL holds at most 1 GB, and a row that large strains every
/// reader).
pub const OUTPUT_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=256 << 20;

/// Most accepted [`DbConfig::migration_retries`].
const MAX_MIGRATION_RETRIES: u32 = 100;

mod defaults {
    use std::time::Duration;

    pub(super) fn max_connections() -> usize {
        25
    }
    pub(super) fn min_connections() -> usize {
        5
    }
    pub(super) fn max_lifetime() -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
    pub(super) fn idle_timeout() -> Option<Duration> {
        Some(Duration::from_secs(30 * 60))
    }
    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn wait_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn recycle_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn statement_timeout() -> Option<Duration> {
        Some(Duration::from_secs(30))
    }
    pub(super) fn idle_in_transaction_timeout() -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
    pub(super) fn reaper_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn application_name() -> String {
        "voidrunner-db".to_owned()
    }
    pub(super) fn notify_events() -> bool {
        true
    }
    pub(super) fn migration_lock_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn migration_retries() -> u32 {
        5
    }
    pub(super) fn max_output_bytes() -> usize {
        1 << 20
    }
    pub(super) fn slow_statement() -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// Most bytes of an `application_name`: the server keeps NAMEDATALEN - 1
/// and silently cuts the rest (and turns non-ASCII characters into `?`), so
/// what `pg_stat_activity` shows would not be what was configured.
pub const APPLICATION_NAME_MAX_BYTES: usize = 63;

fn application_name_fits(name: &str) -> Result<()> {
    if name.len() > APPLICATION_NAME_MAX_BYTES {
        return Err(Error::config(format!(
            "application_name is {} bytes; the server keeps at most {APPLICATION_NAME_MAX_BYTES}",
            name.len()
        )));
    }
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::config(
            "application_name must be printable ASCII: the server replaces anything else with '?'",
        ));
    }
    Ok(())
}

impl DbConfig {
    /// A configuration for `url` (`postgres://user:pass@host:port/db` or the
    /// `key=value` form) with every pool setting at its default.
    pub fn from_url(url: &str) -> Result<Self> {
        let connection = parse_url(url)?;
        Ok(DbConfig {
            connection,
            max_connections: defaults::max_connections(),
            min_connections: defaults::min_connections(),
            max_lifetime: defaults::max_lifetime(),
            idle_timeout: defaults::idle_timeout(),
            connect_timeout: defaults::connect_timeout(),
            wait_timeout: defaults::wait_timeout(),
            recycle_timeout: defaults::recycle_timeout(),
            statement_timeout: defaults::statement_timeout(),
            idle_in_transaction_timeout: defaults::idle_in_transaction_timeout(),
            reaper_interval: defaults::reaper_interval(),
            application_name: defaults::application_name(),
            notify_events: defaults::notify_events(),
            migration_lock_timeout: defaults::migration_lock_timeout(),
            migration_retries: defaults::migration_retries(),
            max_output_bytes: defaults::max_output_bytes(),
            slow_statement: defaults::slow_statement(),
            pooler: PoolerMode::default(),
            direct: None,
        })
    }

    /// Reads `DATABASE_URL` and the `VOIDRUNNER_DB_*` variables listed in the
    /// [module docs](self). Unset variables keep their defaults; a set but
    /// malformed one is an [`Error::Config`] naming it.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = lookup(DATABASE_URL_ENV)
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| Error::config(format!("{DATABASE_URL_ENV} is not set")))?;
        Self::from_url(&url)?.overlay_lookup(lookup)
    }

    /// These settings with every `VOIDRUNNER_DB_*` variable `lookup` finds
    /// applied over them (`DATABASE_URL` is not read), then validated: what
    /// the test harness does with the server it found.
    pub(crate) fn overlay_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = self;
        let var = |suffix: &str| {
            let name = format!("VOIDRUNNER_DB_{suffix}");
            lookup(&name).map(|value| (name, value))
        };
        let bad = |name: &str, message: String| Error::config(format!("{name}: {message}"));

        if let Some((name, v)) = var("MAX_CONNECTIONS") {
            config.max_connections = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        if let Some((name, v)) = var("MIN_CONNECTIONS") {
            config.min_connections = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        let optional = |suffix: &str, slot: &mut Option<Duration>| -> Result<()> {
            if let Some((name, v)) = var(suffix) {
                *slot = duration::parse_optional(&v).map_err(|e| bad(&name, e))?;
            }
            Ok(())
        };
        optional("MAX_LIFETIME", &mut config.max_lifetime)?;
        optional("IDLE_TIMEOUT", &mut config.idle_timeout)?;
        optional("STATEMENT_TIMEOUT", &mut config.statement_timeout)?;
        optional("SLOW_STATEMENT", &mut config.slow_statement)?;
        optional(
            "IDLE_IN_TRANSACTION_TIMEOUT",
            &mut config.idle_in_transaction_timeout,
        )?;
        let required = |suffix: &str, slot: &mut Duration| -> Result<()> {
            if let Some((name, v)) = var(suffix) {
                *slot = duration::parse(&v).map_err(|e| bad(&name, e))?;
            }
            Ok(())
        };
        required("CONNECT_TIMEOUT", &mut config.connect_timeout)?;
        required("WAIT_TIMEOUT", &mut config.wait_timeout)?;
        required("RECYCLE_TIMEOUT", &mut config.recycle_timeout)?;
        required("REAPER_INTERVAL", &mut config.reaper_interval)?;
        required("MIGRATION_LOCK_TIMEOUT", &mut config.migration_lock_timeout)?;
        if let Some((name, v)) = var("MIGRATION_RETRIES") {
            config.migration_retries = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        if let Some((name, v)) = var("MAX_OUTPUT_BYTES") {
            config.max_output_bytes = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        if let Some((_, v)) = var("APPLICATION_NAME") {
            config.application_name = v;
        }
        if let Some((name, v)) = var("POOLER") {
            config.pooler = PoolerMode::parse(&v).map_err(|e| bad(&name, e))?;
        }
        if let Some((name, v)) = var("DIRECT_URL").filter(|(_, v)| !v.trim().is_empty()) {
            // The parse error never quotes the URL (it may hold a password).
            config.direct = Some(parse_url(&v).map_err(|e| bad(&name, e.to_string()))?);
        }
        if let Some((name, v)) = var("NOTIFY_EVENTS") {
            config.notify_events = match v.trim() {
                "true" | "on" | "1" => true,
                "false" | "off" | "0" => false,
                other => return Err(bad(&name, format!("`{other}` is not true or false"))),
            };
        }
        config.validate()?;
        Ok(config)
    }

    /// The same settings against another database of the same server (and
    /// of the direct URL's server, if set).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.clone();
        config.connection.dbname(dbname);
        if let Some(direct) = &mut config.direct {
            direct.dbname(dbname);
        }
        config
    }

    /// Sets the direct URL (`postgres://…` or the `key=value` form): a
    /// connection to the server itself, or to a session-mode pooler, for
    /// migrations, their advisory lock and LISTEN (see
    /// [Behind a connection pooler](self#behind-a-connection-pooler)).
    /// Fails with [`Error::Config`] when it does not parse; the error never
    /// quotes it.
    pub fn set_direct_url(&mut self, url: &str) -> Result<()> {
        self.direct = Some(parse_url(url)?);
        Ok(())
    }

    /// Forgets the direct URL: migrations and LISTEN then use `url`.
    pub fn clear_direct_url(&mut self) {
        self.direct = None;
    }

    /// The same settings against the direct URL, as a connection to the
    /// server itself ([`PoolerMode::Direct`], no direct URL of its own);
    /// `None` when no direct URL is set. For a pool of its own that needs
    /// sessions, next to one through the pooler.
    pub fn direct_config(&self) -> Option<DbConfig> {
        let direct = self.direct.clone()?;
        Some(DbConfig {
            connection: direct,
            pooler: PoolerMode::Direct,
            direct: None,
            ..self.clone()
        })
    }

    /// The driver configuration of the direct URL, if set.
    pub fn direct_pg_config(&self) -> Option<&tokio_postgres::Config> {
        self.direct.as_ref()
    }

    /// Mutable access to the direct URL's driver configuration, if set, e.g.
    /// to set a password read from a secret store.
    pub fn direct_pg_config_mut(&mut self) -> Option<&mut tokio_postgres::Config> {
        self.direct.as_mut()
    }

    /// The same settings through a pooler listening on `host:port` in
    /// `mode`: `url` points there (same user, password and database), and
    /// the direct URL at what `url` was. For the test harness's PgBouncer.
    #[cfg(feature = "test-support")]
    pub(crate) fn through_pooler(&self, host: &str, port: u16, mode: PoolerMode) -> DbConfig {
        let original = &self.connection;
        // The pooler's address replaces every host of the original.
        let mut through = tokio_postgres::Config::new();
        through.host(host).port(port);
        if let Some(user) = original.get_user() {
            through.user(user);
        }
        if let Some(password) = original.get_password() {
            through.password(password);
        }
        if let Some(dbname) = original.get_dbname() {
            through.dbname(dbname);
        }
        if let Some(name) = original.get_application_name() {
            through.application_name(name);
        }
        DbConfig {
            connection: through,
            pooler: mode,
            direct: Some(original.clone()),
            ..self.clone()
        }
    }

    /// Fails with [`Error::Config`] when `what` needs a session of its own
    /// (an advisory lock, LISTEN) that neither `url` (a transaction-mode
    /// pooler) nor a direct URL gives.
    pub(crate) fn require_session(&self, what: &str) -> Result<()> {
        if self.pooler == PoolerMode::Transaction && self.direct.is_none() {
            return Err(Error::config(format!(
                "{what} needs a session of its own, which a transaction-mode pooler does not keep: \
                 set a direct URL to the server or a session-mode pooler \
                 (VOIDRUNNER_DB_DIRECT_URL, DbConfig::set_direct_url)"
            )));
        }
        Ok(())
    }

    /// The driver configuration (hosts, user, database, TLS mode…).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.connection
    }

    /// Mutable access to the driver configuration, e.g. to set a password
    /// read from a secret store.
    pub fn pg_config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.connection
    }

    /// The database name, if the URL names one.
    pub fn dbname(&self) -> Option<&str> {
        self.connection.get_dbname()
    }

    /// Checks that the settings are consistent; [`Database::connect`]
    /// calls this first.
    ///
    /// [`Database::connect`]: crate::Database::connect
    pub fn validate(&self) -> Result<()> {
        if !MAX_CONNECTIONS_RANGE.contains(&self.max_connections) {
            return Err(Error::config(format!(
                "max_connections must be between {} and {}, not {}",
                MAX_CONNECTIONS_RANGE.start(),
                MAX_CONNECTIONS_RANGE.end(),
                self.max_connections
            )));
        }
        if self.min_connections > self.max_connections {
            return Err(Error::config(format!(
                "min_connections ({}) exceeds max_connections ({})",
                self.min_connections, self.max_connections
            )));
        }
        for (name, value, range) in [
            (
                "connect_timeout",
                Some(self.connect_timeout),
                POOL_TIMEOUT_RANGE,
            ),
            ("wait_timeout", Some(self.wait_timeout), POOL_TIMEOUT_RANGE),
            (
                "recycle_timeout",
                Some(self.recycle_timeout),
                POOL_TIMEOUT_RANGE,
            ),
            (
                "reaper_interval",
                Some(self.reaper_interval),
                REAPER_INTERVAL_RANGE,
            ),
            ("max_lifetime", self.max_lifetime, CONNECTION_AGE_RANGE),
            ("idle_timeout", self.idle_timeout, CONNECTION_AGE_RANGE),
            (
                "statement_timeout",
                self.statement_timeout,
                SERVER_TIMEOUT_RANGE,
            ),
            (
                "idle_in_transaction_timeout",
                self.idle_in_transaction_timeout,
                SERVER_TIMEOUT_RANGE,
            ),
        ] {
            if let Some(value) = value {
                check_range(name, value, &range)?;
            }
        }
        if !(MIN_MIGRATION_LOCK_TIMEOUT..=MAX_MIGRATION_LOCK_TIMEOUT)
            .contains(&self.migration_lock_timeout)
        {
            return Err(Error::config(format!(
                "migration_lock_timeout must be between {MIN_MIGRATION_LOCK_TIMEOUT:?} and {MAX_MIGRATION_LOCK_TIMEOUT:?}, not {:?}",
                self.migration_lock_timeout
            )));
        }
        if let Some(slow) = self.slow_statement
            && !(Duration::from_millis(1)..=Duration::from_secs(24 * 3600)).contains(&slow)
        {
            return Err(Error::config(format!(
                "slow_statement must be between 1ms and 24h (or off), not {slow:?}"
            )));
        }
        if !OUTPUT_BYTES_RANGE.contains(&self.max_output_bytes) {
            return Err(Error::config(format!(
                "max_output_bytes must be between {} and {}, not {}",
                OUTPUT_BYTES_RANGE.start(),
                OUTPUT_BYTES_RANGE.end(),
                self.max_output_bytes
            )));
        }
        if self.migration_retries > MAX_MIGRATION_RETRIES {
            return Err(Error::config(format!(
                "migration_retries must be at most {MAX_MIGRATION_RETRIES}, not {}",
                self.migration_retries
            )));
        }
        for name in [
            Some(self.application_name.as_str()),
            self.connection.get_application_name(),
        ]
        .into_iter()
        .flatten()
        {
            application_name_fits(name)?;
        }
        if self.application_name.contains('\0') {
            return Err(Error::config("application_name contains a NUL character"));
        }
        if let Some(name) = self.direct.as_ref().and_then(|d| d.get_application_name()) {
            application_name_fits(name)?;
        }
        if !self.pooler.startup_options() && self.connection.get_options().is_some() {
            return Err(Error::config(format!(
                "the URL sets `options`, which a pooler refuses at connect (pooler mode {}): \
                 make those settings settings of the role (ALTER ROLE … SET …) instead",
                self.pooler
            )));
        }
        Ok(())
    }

    /// The driver configuration a pooled connection uses: the URL's settings
    /// plus, in [`PoolerMode::Direct`], the session settings and timeouts
    /// of this config as startup options (poolers refuse them; see
    /// [`session_settings`](Self::session_settings)).
    pub(crate) fn pooled_pg_config(&self) -> tokio_postgres::Config {
        let mut pg = self.connection.clone();
        pg.connect_timeout(self.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name(&self.application_name);
        }
        if !self.pooler.startup_options() {
            return pg;
        }
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        for (setting, value) in self.session_settings() {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {setting}={value}"));
        }
        if !options.is_empty() {
            pg.options(options);
        }
        pg
    }

    /// The server settings every pooled session gets: the timeouts (in
    /// whole milliseconds, the server's unit for both, rounded up: rounding
    /// down would turn 500 µs into 0, which is "off"; `validate` keeps them
    /// within 1..=i32::MAX) and the event switch. Values are digits or
    /// `off`, so they need no quoting in `-c` or `SET`.
    pub(crate) fn session_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = Vec::new();
        for (setting, value) in [
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
        ] {
            if let Some(value) = value {
                settings.push((setting, whole_millis_up(value).to_string()));
            }
        }
        if !self.notify_events {
            settings.push(("voidrunner.notify_events", "off".to_owned()));
        }
        settings
    }

    /// `SET` (or `SET LOCAL`) statements of the session settings, each
    /// followed by `;`; empty when there are none.
    fn settings_sql(&self, local: bool) -> String {
        let verb = if local { "SET LOCAL" } else { "SET" };
        self.session_settings()
            .into_iter()
            .map(|(setting, value)| format!("{verb} {setting} = {value}; "))
            .collect()
    }

    /// What a new pooled connection runs once, in
    /// [`PoolerMode::Session`]: the session settings with `SET` (they could
    /// not be startup options). `None` in the other modes or when there is
    /// nothing to set.
    pub(crate) fn connect_sql(&self) -> Option<String> {
        let sql = self.settings_sql(false);
        (self.pooler == PoolerMode::Session && !sql.is_empty()).then_some(sql)
    }

    /// `begin` (a `BEGIN …` statement) followed, in
    /// [`PoolerMode::Transaction`], by `SET LOCAL` of the session settings,
    /// as one simple-query batch: one round trip, and the settings hold for
    /// exactly this transaction, whichever server connection runs it.
    pub(crate) fn begin_sql(&self, begin: &str) -> String {
        if self.pooler != PoolerMode::Transaction {
            return begin.to_owned();
        }
        format!("{begin}; {}", self.settings_sql(true))
            .trim_end_matches([' ', ';'])
            .to_owned()
    }

    /// The driver configuration of a connection outside the pool (migrations,
    /// listeners): the direct URL if set, else `url`; no statement timeout,
    /// because a migration may run long.
    pub(crate) fn dedicated_pg_config(&self) -> tokio_postgres::Config {
        let mut pg = self.direct.as_ref().unwrap_or(&self.connection).clone();
        pg.connect_timeout(self.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name(&self.application_name);
        }
        pg
    }

    /// `host:port/dbname` for logs and messages; never includes credentials.
    pub fn display_target(&self) -> String {
        target_of(&self.connection)
    }

    /// [`display_target`](Self::display_target) of the direct URL, if set.
    pub fn display_direct_target(&self) -> Option<String> {
        self.direct.as_ref().map(target_of)
    }
}

/// `host:port/dbname` of a driver configuration, without credentials.
fn target_of(connection: &tokio_postgres::Config) -> String {
    let host = connection
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = connection.get_ports().first().copied().unwrap_or(5432);
    let db = connection
        .get_dbname()
        .or(connection.get_user())
        .unwrap_or("");
    format!("{host}:{port}/{db}")
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("target", &self.display_target())
            .field("user", &self.connection.get_user())
            .field(
                "password",
                &self.connection.get_password().map(|_| "<redacted>"),
            )
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("wait_timeout", &self.wait_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("reaper_interval", &self.reaper_interval)
            .field("application_name", &self.application_name)
            .field("notify_events", &self.notify_events)
            .field("migration_lock_timeout", &self.migration_lock_timeout)
            .field("migration_retries", &self.migration_retries)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("slow_statement", &self.slow_statement)
            .field("pooler", &self.pooler)
            .field("direct_target", &self.display_direct_target())
            .field(
                "direct_password",
                &self
                    .direct
                    .as_ref()
                    .and_then(|d| d.get_password())
                    .map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl FromStr for DbConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

/// `Error::Config` unless `value` lies in `range`.
fn check_range(name: &str, value: Duration, range: &RangeInclusive<Duration>) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{name} must be between {:?} and {:?}, not {value:?}",
        range.start(),
        range.end()
    )))
}

/// `value` in whole milliseconds, rounded up (what the server is sent for
/// `statement_timeout` and `idle_in_transaction_session_timeout`).
pub(crate) fn whole_millis_up(value: Duration) -> u128 {
    value.as_nanos().div_ceil(1_000_000)
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    // The driver's parse error can quote the input, which may hold a
    // password: report only that it failed and how.
    url.parse::<tokio_postgres::Config>().map_err(|e| {
        let reason = e.to_string();
        let reason = if reason.contains(url) {
            "malformed connection string".to_owned()
        } else {
            reason
        };
        Error::config(format!("invalid database URL: {reason}"))
    })
}

fn de_optional_url<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<tokio_postgres::Config>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(url) if !url.trim().is_empty() => {
            parse_url(&url).map(Some).map_err(serde::de::Error::custom)
        }
        _ => Ok(None),
    }
}

fn de_url<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<tokio_postgres::Config, D::Error> {
    let url = String::deserialize(d)?;
    parse_url(&url).map_err(serde::de::Error::custom)
}

/// Durations written with a unit (`250ms`, `30s`, `5m`, `1h`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// humantime's syntax: `250ms`, `30s`, `1m30s`, `1.5s`, `2h 15m`; a unit
    /// is required.
    pub(super) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration such as 30s, 1m30s or 1.5s: {e}"))
    }

    pub(super) fn parse_optional(text: &str) -> Result<Option<Duration>, String> {
        match text.trim() {
            "off" | "none" => Ok(None),
            other => parse(other).map(Some),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub(super) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer};

        pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => super::parse_optional(&text).map_err(serde::de::Error::custom),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = DbConfig::from_url("postgres://u@h/db").unwrap();
        assert_eq!(c.max_connections, 25);
        assert_eq!(c.min_connections, 5);
        assert_eq!(c.max_lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.statement_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.idle_in_transaction_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.migration_lock_timeout, Duration::from_secs(2));
        assert_eq!(c.migration_retries, 5);
        assert_eq!(c.dbname(), Some("db"));
        c.validate().unwrap();
    }

    #[test]
    fn debug_never_shows_the_password() {
        for url in [
            "postgres://app:s3cr3t-pw@db.example:5433/vr",
            "host=db.example user=app password=s3cr3t-pw dbname=vr",
            "postgres://app@db.example/vr?password=s3cr3t-pw",
        ] {
            let c = DbConfig::from_url(url).unwrap();
            let shown = format!("{c:?}");
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
            assert!(shown.contains("db.example"), "{shown}");
        }
    }

    #[test]
    fn bad_url_is_a_config_error_without_the_secret() {
        let err = DbConfig::from_url("postgres://app:s3cr3t@host:notaport/db").unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn env_knobs_are_read() {
        let c = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("VOIDRUNNER_DB_MAX_CONNECTIONS", "7"),
            ("VOIDRUNNER_DB_MIN_CONNECTIONS", "2"),
            ("VOIDRUNNER_DB_MAX_LIFETIME", "90s"),
            ("VOIDRUNNER_DB_IDLE_TIMEOUT", "off"),
            ("VOIDRUNNER_DB_CONNECT_TIMEOUT", "1500ms"),
            ("VOIDRUNNER_DB_WAIT_TIMEOUT", "2s"),
            ("VOIDRUNNER_DB_RECYCLE_TIMEOUT", "3s"),
            ("VOIDRUNNER_DB_STATEMENT_TIMEOUT", "off"),
            ("VOIDRUNNER_DB_IDLE_IN_TRANSACTION_TIMEOUT", "2m"),
            ("VOIDRUNNER_DB_REAPER_INTERVAL", "1h"),
            ("VOIDRUNNER_DB_APPLICATION_NAME", "svc"),
            ("VOIDRUNNER_DB_NOTIFY_EVENTS", "off"),
            ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "750ms"),
            ("VOIDRUNNER_DB_MIGRATION_RETRIES", "2"),
        ]))
        .unwrap();
        assert_eq!(c.migration_lock_timeout, Duration::from_millis(750));
        assert_eq!(c.migration_retries, 2);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.min_connections, 2);
        assert_eq!(c.max_lifetime, Some(Duration::from_secs(90)));
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.wait_timeout, Duration::from_secs(2));
        assert_eq!(c.recycle_timeout, Duration::from_secs(3));
        assert_eq!(c.statement_timeout, None);
        assert_eq!(
            c.idle_in_transaction_timeout,
            Some(Duration::from_secs(120))
        );
        assert_eq!(c.reaper_interval, Duration::from_secs(3600));
        assert_eq!(c.application_name, "svc");
        let pg = c.pooled_pg_config();
        assert!(!c.notify_events);
        assert_eq!(
            pg.get_options(),
            Some("-c idle_in_transaction_session_timeout=120000 -c voidrunner.notify_events=off")
        );
    }

    #[test]
    fn env_errors_name_the_variable() {
        let missing = DbConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(missing.to_string().contains("DATABASE_URL"), "{missing}");
        let bad = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("VOIDRUNNER_DB_WAIT_TIMEOUT", "5"),
        ]))
        .unwrap_err();
        assert!(
            bad.to_string().contains("VOIDRUNNER_DB_WAIT_TIMEOUT"),
            "{bad}"
        );
        let inverted = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("VOIDRUNNER_DB_MIN_CONNECTIONS", "30"),
        ]))
        .unwrap_err();
        assert!(
            inverted.to_string().contains("min_connections"),
            "{inverted}"
        );
    }

    #[test]
    fn migration_lock_settings_are_bounded() {
        let base = || DbConfig::from_url("postgres://u@h/db").unwrap();
        for (timeout, ok) in [
            (Duration::ZERO, false),
            (Duration::from_millis(9), false),
            (Duration::from_millis(10), true),
            (Duration::from_secs(600), true),
            (Duration::from_secs(601), false),
            (Duration::from_secs(u64::MAX / 2), false),
        ] {
            let mut c = base();
            c.migration_lock_timeout = timeout;
            let result = c.validate();
            assert_eq!(result.is_ok(), ok, "{timeout:?}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, Error::Config { .. }), "{e:?}");
                assert!(e.to_string().contains("migration_lock_timeout"), "{e}");
            }
        }
        let mut c = base();
        c.migration_retries = 0;
        c.validate().unwrap();
        c.migration_retries = 101;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("migration_retries"), "{err}");
        let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
        c.application_name = "a".repeat(APPLICATION_NAME_MAX_BYTES);
        c.validate().unwrap();
        c.application_name.push('a');
        assert!(matches!(c.validate(), Err(Error::Config { .. })));
        c.application_name = "naïve".into();
        assert!(matches!(c.validate(), Err(Error::Config { .. })));
        let long = format!("postgres://u@h/db?application_name={}", "b".repeat(64));
        assert!(matches!(
            DbConfig::from_url(&long).and_then(|c| c.validate()),
            Err(Error::Config { .. })
        ));
        let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
        c.max_output_bytes = 1023;
        assert!(matches!(c.validate(), Err(Error::Config { .. })));
        c.max_output_bytes = usize::MAX;
        assert!(matches!(c.validate(), Err(Error::Config { .. })));

        for (var, value) in [
            ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "0s"),
            ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "2"),
            ("VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT", "11m"),
            ("VOIDRUNNER_DB_MIGRATION_RETRIES", "-1"),
            ("VOIDRUNNER_DB_MIGRATION_RETRIES", "1000"),
        ] {
            let err = DbConfig::from_lookup(lookup(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                (var, value),
            ]))
            .unwrap_err();
            assert!(
                matches!(err, Error::Config { .. }),
                "{var}={value}: {err:?}"
            );
        }
    }

    #[test]
    fn every_size_and_duration_has_a_range() {
        let base = || DbConfig::from_url("postgres://u@h/db").unwrap();
        let ms = Duration::from_millis;
        let day = Duration::from_secs(24 * 3600);
        type Set = fn(&mut DbConfig, Duration);
        let cases: [(&str, Set, Duration, Duration); 8] = [
            ("connect_timeout", |c, d| c.connect_timeout = d, ms(1), day),
            ("wait_timeout", |c, d| c.wait_timeout = d, ms(1), day),
            ("recycle_timeout", |c, d| c.recycle_timeout = d, ms(1), day),
            ("reaper_interval", |c, d| c.reaper_interval = d, ms(10), day),
            (
                "max_lifetime",
                |c, d| c.max_lifetime = Some(d),
                ms(1),
                day * 30,
            ),
            (
                "idle_timeout",
                |c, d| c.idle_timeout = Some(d),
                ms(1),
                day * 30,
            ),
            (
                "statement_timeout",
                |c, d| c.statement_timeout = Some(d),
                ms(1),
                ms(i32::MAX as u64),
            ),
            (
                "idle_in_transaction_timeout",
                |c, d| c.idle_in_transaction_timeout = Some(d),
                ms(1),
                ms(i32::MAX as u64),
            ),
        ];
        for (name, set, min, max) in cases {
            for (value, ok) in [
                (Duration::ZERO, false),
                (min - Duration::from_micros(1), false),
                (min, true),
                (max, true),
                (max + Duration::from_micros(1), false),
                (Duration::MAX, false),
            ] {
                let mut c = base();
                set(&mut c, value);
                match c.validate() {
                    Ok(()) => assert!(ok, "{name} = {value:?} was accepted"),
                    Err(e) => {
                        assert!(!ok, "{name} = {value:?}: {e}");
                        assert!(matches!(e, Error::Config { .. }), "{e:?}");
                        assert!(e.to_string().contains(name), "{e}");
                    }
                }
            }
        }
        for (max, ok) in [
            (0, false),
            (1, true),
            (10_000, true),
            (10_001, false),
            (usize::MAX, false),
        ] {
            let mut c = base();
            c.min_connections = 0;
            c.max_connections = max;
            assert_eq!(c.validate().is_ok(), ok, "max_connections = {max}");
        }
    }

    #[test]
    fn server_timeouts_are_sent_rounded_up_to_whole_milliseconds() {
        let mut c = DbConfig::from_url("postgres://u@h/db").unwrap();
        c.statement_timeout = Some(Duration::from_micros(1_500));
        c.idle_in_transaction_timeout = Some(Duration::from_millis(i32::MAX as u64));
        c.validate().unwrap();
        assert_eq!(
            c.pooled_pg_config().get_options(),
            Some("-c statement_timeout=2 -c idle_in_transaction_session_timeout=2147483647")
        );
        assert_eq!(whole_millis_up(Duration::from_nanos(1)), 1);
        assert_eq!(whole_millis_up(Duration::from_millis(7)), 7);
        assert_eq!(whole_millis_up(Duration::ZERO), 0);
    }

    #[test]
    fn session_settings_join_url_options() {
        let c = DbConfig::from_url("postgres://u@h/db?options=-c%20search_path%3Dapp").unwrap();
        assert_eq!(
            c.pooled_pg_config().get_options(),
            Some(
                "-c search_path=app -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
            )
        );
        // Dedicated connections never get the statement timeout.
        assert_eq!(
            c.dedicated_pg_config().get_options(),
            Some("-c search_path=app")
        );
    }

    #[test]
    fn durations_parse_with_units_only() {
        assert_eq!(duration::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration::parse(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(duration::parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration::parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(duration::parse("30").is_err());
        assert!(duration::parse("s").is_err());
        assert!(duration::parse("-1s").is_err());
        assert!(duration::parse("3 parsecs").is_err());
        // Compound and fractional values, which the hand-written parser
        // refused (humantime's syntax).
        assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration::parse("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert!(duration::parse("99999999999999999999h").is_err());
        assert_eq!(duration::parse_optional("off"), Ok(None));
    }

    #[test]
    fn deserialises_from_serde_sources() {
        let c: DbConfig = serde_json::from_value(serde_json::json!({
            "url": "postgres://u:pw@h/db",
            "max_connections": 3,
            "min_connections": 1,
            "statement_timeout": "off",
            "wait_timeout": "100ms",
            "migration_lock_timeout": "5s",
            "migration_retries": 3
        }))
        .unwrap();
        assert_eq!(c.migration_lock_timeout, Duration::from_secs(5));
        assert_eq!(c.migration_retries, 3);
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.statement_timeout, None);
        assert_eq!(c.wait_timeout, Duration::from_millis(100));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(1800)));
        let unknown = serde_json::from_value::<DbConfig>(serde_json::json!({
            "url": "postgres://u@h/db",
            "max_conections": 3
        }));
        assert!(unknown.is_err());
        let no_url = serde_json::from_value::<DbConfig>(serde_json::json!({}));
        assert!(no_url.is_err());
    }

    #[test]
    fn pooler_settings_come_from_the_environment() {
        let c = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://app:pool-pw@pgbouncer:6432/vr"),
            ("VOIDRUNNER_DB_POOLER", "transaction"),
            (
                "VOIDRUNNER_DB_DIRECT_URL",
                "postgres://app:direct-pw@db.internal:5432/vr",
            ),
        ]))
        .unwrap();
        assert_eq!(c.pooler, PoolerMode::Transaction);
        assert_eq!(c.display_target(), "pgbouncer:6432/vr");
        assert_eq!(
            c.display_direct_target().as_deref(),
            Some("db.internal:5432/vr")
        );
        // Dedicated connections (migrations, LISTEN) use the direct URL.
        assert_eq!(c.dedicated_pg_config().get_ports(), &[5432]);
        assert_eq!(c.pooled_pg_config().get_ports(), &[6432]);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("pool-pw") && !shown.contains("direct-pw"),
            "{shown}"
        );
        assert!(shown.contains("db.internal:5432/vr"), "{shown}");
        // Another database of the same servers: both URLs follow.
        let other = c.with_dbname("other");
        assert_eq!(
            other.display_direct_target().as_deref(),
            Some("db.internal:5432/other")
        );
        let direct = other.direct_config().unwrap();
        assert_eq!(direct.pooler, PoolerMode::Direct);
        assert_eq!(direct.display_target(), "db.internal:5432/other");
        assert!(direct.direct_pg_config().is_none());

        for (var, value) in [
            ("VOIDRUNNER_DB_POOLER", "statement"),
            (
                "VOIDRUNNER_DB_DIRECT_URL",
                "postgres://app:s3cr3t@host:notaport/vr",
            ),
        ] {
            let err = DbConfig::from_lookup(lookup(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                (var, value),
            ]))
            .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            assert!(err.to_string().contains(var), "{err}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
        // Empty means unset.
        let c = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("VOIDRUNNER_DB_DIRECT_URL", " "),
        ]))
        .unwrap();
        assert!(c.direct_pg_config().is_none());
        assert_eq!(c.pooler, PoolerMode::Direct);
        assert_eq!(
            "session".parse::<PoolerMode>().unwrap(),
            PoolerMode::Session
        );
        assert!("bogus".parse::<PoolerMode>().is_err());
    }

    #[test]
    fn behind_a_pooler_no_startup_options_are_sent() {
        let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db").unwrap();
        c.notify_events = false;
        assert!(c.pooled_pg_config().get_options().is_some());
        assert_eq!(c.connect_sql(), None);
        assert_eq!(c.begin_sql("BEGIN"), "BEGIN");

        c.pooler = PoolerMode::Session;
        assert_eq!(c.pooled_pg_config().get_options(), None);
        assert_eq!(
            c.connect_sql().as_deref(),
            Some(
                "SET statement_timeout = 30000; SET idle_in_transaction_session_timeout = 60000; \
                 SET voidrunner.notify_events = off; "
            )
        );
        assert_eq!(c.begin_sql("BEGIN"), "BEGIN");

        c.pooler = PoolerMode::Transaction;
        assert_eq!(c.pooled_pg_config().get_options(), None);
        assert_eq!(c.connect_sql(), None);
        assert_eq!(
            c.begin_sql("BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE"),
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE; SET LOCAL statement_timeout = 30000; \
             SET LOCAL idle_in_transaction_session_timeout = 60000; \
             SET LOCAL voidrunner.notify_events = off"
        );
        c.statement_timeout = None;
        c.idle_in_transaction_timeout = None;
        c.notify_events = true;
        assert_eq!(c.begin_sql("BEGIN"), "BEGIN");
    }

    #[test]
    fn pooler_modes_need_what_they_need() {
        let mut c =
            DbConfig::from_url("postgres://u@pgbouncer:6432/db?options=-c%20search_path%3Dapp")
                .unwrap();
        c.validate().unwrap();
        for mode in [PoolerMode::Session, PoolerMode::Transaction] {
            c.pooler = mode;
            let err = c.validate().unwrap_err();
            assert!(err.to_string().contains("ALTER ROLE"), "{err}");
        }
        let mut c = DbConfig::from_url("postgres://u@pgbouncer:6432/db").unwrap();
        c.pooler = PoolerMode::Transaction;
        let err = c.require_session("migrating").unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        assert!(
            err.to_string().contains("VOIDRUNNER_DB_DIRECT_URL"),
            "{err}"
        );
        c.set_direct_url("postgres://u@db:5432/db").unwrap();
        c.require_session("migrating").unwrap();
        c.clear_direct_url();
        c.pooler = PoolerMode::Session;
        c.require_session("migrating").unwrap();
        assert!(
            c.set_direct_url("postgres://u:s3cr3t@db:notaport/db")
                .is_err()
        );
    }

    #[test]
    fn pooler_settings_deserialise() {
        let c: DbConfig = serde_json::from_value(serde_json::json!({
            "url": "postgres://u@pgbouncer:6432/db",
            "pooler": "transaction",
            "direct_url": "postgres://u@db:5432/db"
        }))
        .unwrap();
        assert_eq!(c.pooler, PoolerMode::Transaction);
        assert_eq!(c.display_direct_target().as_deref(), Some("db:5432/db"));
        let c: DbConfig =
            serde_json::from_value(serde_json::json!({"url": "postgres://u@h/db"})).unwrap();
        assert_eq!((c.pooler, c.direct_pg_config()), (PoolerMode::Direct, None));
        assert!(
            serde_json::from_value::<DbConfig>(serde_json::json!({
                "url": "postgres://u@h/db",
                "pooler": "statement"
            }))
            .is_err()
        );
    }
}
