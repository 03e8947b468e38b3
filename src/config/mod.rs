//! Connection and pool configuration.
//!
//! A [`DbConfig`] comes from a URL ([`DbConfig::from_url`]), from the
//! environment ([`DbConfig::from_env`]), or from any serde source (a config
//! file: `url` plus the field names). The settings, their environment
//! variables, defaults and accepted values are listed in the
//! [configuration guide](crate::docs::configuration), in one table that a
//! test holds to the code; each [`DbConfig`] field documents its own.
//!
//! Every source reads a value the same way. The environment names a
//! setting by its variable and a serde source by its field, and the same
//! text means the same thing in both (`30s`, `off`, `on`, `verify-full`); a
//! serde source's numbers and booleans read as the text they are written
//! as, and its null as `off` for a duration that can be off. A blank value
//! (or null) of a TLS setting or of the direct URL leaves it unset, as an
//! empty libpq key does. The `VOIDRUNNER_DB_SSL*` variables and the `ssl_*`
//! fields override the URL's `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey`; with `sslrootcert=system` and no mode given by any of them,
//! the mode is `verify-full`, as in libpq 16.
//!
//! A value outside its range is an [`Error::Config`] naming the field, from
//! [`DbConfig::validate`], which [`from_env`](DbConfig::from_env),
//! [`Database::connect`](crate::Database::connect) and
//! [`Database::connect_lazy`](crate::Database::connect_lazy) call: never a
//! panic and never a setting quietly replaced by another. The ranges are
//! also exported as constants ([`MAX_CONNECTIONS_RANGE`],
//! [`POOL_TIMEOUT_RANGE`], [`CONNECTION_AGE_RANGE`],
//! [`SERVER_TIMEOUT_RANGE`], [`REAPER_INTERVAL_RANGE`],
//! [`REPLICA_LAG_RANGE`], [`REPLICA_PROBE_INTERVAL_RANGE`],
//! [`REPLICA_WAIT_RANGE`], [`MAX_REPLICAS`]).
//!
//! Durations are written with a unit: `250ms`, `30s`, `5m`, `1h`. The
//! optional ones also take `off`: `max_lifetime` and `idle_timeout` then never
//! retire a connection, and `statement_timeout` and
//! `idle_in_transaction_timeout` are not sent at all. [`parse_duration`] is
//! that reader, for a service's own duration settings.
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
//!
//! # Streaming replicas
//!
//! `replicas` ([`DbConfig::set_replicas`], `VOIDRUNNER_DB_REPLICAS`) lists
//! the read replicas, as connection strings separated by commas: a list is
//! cut only before a `postgres://` or `postgresql://`, so a multi-host URL
//! (`postgres://u:p@r1:5432,r2:5433/db`) stays one, and stands for one node
//! per host. A `key=value` connection string (which may name several hosts
//! too) can only be the whole list. The main URL's TLS settings and
//! [`pooler`](DbConfig::pooler) mode apply to every node, so a replica URL
//! may not set TLS keys of its own; behind a pooler each replica URL points
//! at the pooler in front of that node. [`DbConfig::replica_configs`] gives
//! one configuration per node.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

mod check;
mod de;
mod draft;
mod duration;
mod env;
mod modes;
mod replicas;
mod role;
mod settings;
#[cfg(test)]
mod tests;
mod url;
mod value;

use draft::{Draft, Source};
pub use duration::parse_duration;
use modes::without_prefix;
pub use modes::{PoolerMode, SslMode};
use settings::{Read, SETTINGS};
use url::{parse_direct_url, parse_url};

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
#[derive(Clone)]
#[non_exhaustive]
pub struct DbConfig {
    /// The driver's settings, without the TLS keys (which the driver does
    /// not know; they are the `ssl_*` fields).
    connection: tokio_postgres::Config,
    /// Most connections the pool opens. Default 25; 1 to 10,000
    /// ([`MAX_CONNECTIONS_RANGE`]).
    pub max_connections: usize,
    /// Connections opened at connect and kept open while idle. Default 5;
    /// 0 to [`max_connections`](Self::max_connections).
    pub min_connections: usize,
    /// A connection older than this is closed instead of reused. Default
    /// 1 hour; 1 ms to 30 days ([`CONNECTION_AGE_RANGE`]); `None` keeps
    /// connections forever.
    pub max_lifetime: Option<Duration>,
    /// A connection idle longer than this is closed, unless the pool would
    /// drop below [`min_connections`](Self::min_connections). Default 30
    /// minutes; 1 ms to 30 days ([`CONNECTION_AGE_RANGE`]); `None` never
    /// closes idle connections.
    pub idle_timeout: Option<Duration>,
    /// Time allowed to open one connection. Default 10 seconds; 1 ms to
    /// 24 hours ([`POOL_TIMEOUT_RANGE`]).
    pub connect_timeout: Duration,
    /// Time a checkout waits for a free connection before failing with
    /// [`Error::Timeout`]. Default 5 seconds; 1 ms to 24 hours
    /// ([`POOL_TIMEOUT_RANGE`]).
    pub wait_timeout: Duration,
    /// Time allowed to check a returned connection. Default 5 seconds; 1 ms
    /// to 24 hours ([`POOL_TIMEOUT_RANGE`]).
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
    pub statement_timeout: Option<Duration>,
    /// Server-side `idle_in_transaction_session_timeout`. Default 60 seconds;
    /// `None` does not send the setting. Same range, rounding and way of
    /// sending as [`statement_timeout`](Self::statement_timeout).
    pub idle_in_transaction_timeout: Option<Duration>,
    /// How often the background reaper retires old and idle connections and
    /// refills the pool to its minimum. Default 30 seconds; 10 ms to 24
    /// hours ([`REAPER_INTERVAL_RANGE`]).
    pub reaper_interval: Duration,
    /// `application_name` reported to the server. Default `voidrunner-db`;
    /// a connection string's `application_name` is read as this setting
    /// (and `VOIDRUNNER_DB_APPLICATION_NAME`, or the field of a serde
    /// source, overrides it), so the pool's sessions carry the name this
    /// field holds (a name set on the driver configuration afterwards, with
    /// [`pg_config_mut`](Self::pg_config_mut), is replaced by it). A
    /// `direct_url` that names its sessions itself keeps its name.
    pub application_name: String,
    /// The role every session of this configuration runs as (`SET ROLE`),
    /// instead of the user the URL logs in as; `None` (the default) runs
    /// as that user. The URL's user must be a member of it. It holds for
    /// the pool's sessions (a startup option `-c role=…` when connecting
    /// directly, so that `RESET ROLE` keeps it; `SET ROLE` once per
    /// connection behind a session-mode pooler), the migration sessions
    /// (so the objects a migration creates are the role's: see
    /// [Roles](crate::docs::deploying#roles-and-upgrades)), the event
    /// listener and [`roles::install`](crate::roles::install). Refused
    /// behind a transaction-mode pooler ([`PoolerMode::Transaction`]),
    /// which cannot keep it for the statements sent outside a
    /// transaction. At most 63 bytes
    /// ([`ROLE_MAX_BYTES`]), not empty, no NUL, not `none`; always sent
    /// quoted (as an identifier in SQL), never as SQL text of its own. See
    /// [`crate::roles`] for the roles the crate ships.
    pub role: Option<String>,
    /// Whether executions changed through this pool send events (see
    /// [`crate::events`]). Default true. NOTIFY serialises the commits of
    /// the transactions that send one, so a busy fleet that does not listen
    /// can turn it off (`-c voidrunner.notify_events=off` is sent at
    /// connect; behind a pooler, as [`statement_timeout`](Self::statement_timeout)
    /// is: in transaction mode only the crate's transactions get it, so set
    /// it with `ALTER ROLE … SET voidrunner.notify_events = off` as well).
    pub notify_events: bool,
    /// `lock_timeout` of the session that applies or reverts migrations
    /// (see [`crate::migrate`]). A migration statement that waits longer
    /// than this for a lock gives up, so the reads and writes queued behind
    /// its lock request go on; the migration is then retried (see
    /// [`migration_retries`](Self::migration_retries)). Default 2 seconds;
    /// valid from 10 milliseconds to 10 minutes, anything else is an
    /// [`Error::Config`]. The wait for the migration advisory lock itself is
    /// not bounded by it.
    pub migration_lock_timeout: Duration,
    /// How many times a migration that hit
    /// [`migration_lock_timeout`](Self::migration_lock_timeout) is tried
    /// again, after a jittered exponential backoff, before the migration
    /// fails with an error for which [`Error::is_lock_timeout`] is true.
    /// Default 5 (6 attempts in all); at most 100.
    pub migration_retries: u32,
    /// Most bytes of an execution's `stdout` and of its `stderr` that the
    /// crate stores ([`ExecutionQueue::complete`](crate::ExecutionQueue::complete),
    /// [`ExecutionRepository::update`](crate::ExecutionRepository::update)).
    /// Longer output is truncated, not refused, so a worker's result is
    /// never lost to its size: the first `max_output_bytes` (cut at a
    /// character boundary) are kept and a line
    /// `[voidrunner-db: output truncated: N of M bytes kept]` is appended.
    /// Default 1 MiB; [`OUTPUT_BYTES_RANGE`], else [`Error::Config`].
    pub max_output_bytes: usize,
    /// A repository statement that takes longer than this (from sending it
    /// to its last row) is reported as a `WARN` event `slow statement`
    /// with its duration and SQL text (never its parameters). Default 1 s;
    /// `off` (`None`) disables it; 1 ms to 24 h, else [`Error::Config`].
    pub slow_statement: Option<Duration>,
    /// Whether connections use TLS and how the server's certificate is
    /// checked, as libpq's `sslmode` (see [TLS](crate::docs::deploying#tls)). Default
    /// [`SslMode::Prefer`], or [`SslMode::VerifyFull`] when
    /// [`ssl_root_cert`](Self::ssl_root_cert) is `system`. Set by the URL's
    /// `sslmode`, overridden by `VOIDRUNNER_DB_SSLMODE` or the serde field
    /// `ssl_mode`.
    pub ssl_mode: SslMode,
    /// A PEM file of the CA certificates a server certificate must chain
    /// to, as libpq's `sslrootcert`; `system` (the path `system`, as in
    /// libpq 16) means the operating system's roots. `None`: the system's
    /// roots for `verify-ca` and `verify-full`; nothing checked for
    /// `require`. With a file, `require` checks the chain as `verify-ca`
    /// does.
    pub ssl_root_cert: Option<PathBuf>,
    /// A PEM file with the client certificate (and any intermediates)
    /// presented to the server, as libpq's `sslcert`. Needs
    /// [`ssl_key`](Self::ssl_key).
    pub ssl_cert: Option<PathBuf>,
    /// The PEM private key of [`ssl_cert`](Self::ssl_cert) (PKCS#8, PKCS#1
    /// or SEC1), as libpq's `sslkey`. As libpq demands, the file must not be
    /// readable by group or others (mode 0600), or at most by group when
    /// owned by root (0640).
    pub ssl_key: Option<PathBuf>,
    /// What `url` points at: the server itself ([`PoolerMode::Direct`], the
    /// default), or a pooler in session or transaction mode. See
    /// [Behind a connection pooler](self#behind-a-connection-pooler).
    pub pooler: PoolerMode,
    /// A connection to the server itself (or a session-mode pooler), for
    /// what needs a session of its own: migrations and their advisory lock,
    /// and LISTEN. Parsed and redacted like `url`.
    direct: Option<tokio_postgres::Config>,
    /// The streaming replicas, one entry per node (a multi-host URL is
    /// expanded), at most [`MAX_REPLICAS`]. Parsed and redacted like `url`;
    /// see [Streaming replicas](self#streaming-replicas).
    replicas: Vec<tokio_postgres::Config>,
    /// A replica whose replay lag exceeds this is taken out of rotation for
    /// `Consistency::AnyReplica` reads, until a probe finds it within the
    /// bound again. Default 1 second; 1 ms to 24 hours
    /// ([`REPLICA_LAG_RANGE`]).
    pub replica_max_lag: Duration,
    /// How often each replica's state (whether it is in recovery, its
    /// replay position, its lag) is probed; a replica taken out of rotation
    /// is used again after its next good probe. Default 1 second; 10 ms to
    /// 24 hours ([`REPLICA_PROBE_INTERVAL_RANGE`]).
    pub replica_probe_interval: Duration,
    /// How long a read carrying a read-your-writes token waits for a
    /// replica to replay the token's position before it reads from the
    /// primary instead. Default 250 ms; zero (go to the primary at once) to
    /// 1 minute ([`REPLICA_WAIT_RANGE`]).
    pub replica_wait: Duration,
}

/// The value of [`DbConfig::ssl_root_cert`] that means the operating
/// system's roots (libpq 16's `sslrootcert=system`).
pub const SYSTEM_ROOTS: &str = "system";

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

/// Most nodes [`DbConfig`] takes as replicas: each is a pool and a prober
/// of its own, so a list this long is a mistake rather than a fleet.
pub const MAX_REPLICAS: usize = 64;
/// Accepted [`DbConfig::replica_max_lag`]: 1 ms to 24 hours.
pub const REPLICA_LAG_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 3600);
/// Accepted [`DbConfig::replica_probe_interval`]: 10 ms (the probes are
/// queries, and a shorter period would load the replicas for nothing) to
/// 24 hours.
pub const REPLICA_PROBE_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(24 * 3600);
/// Accepted [`DbConfig::replica_wait`]: zero (read from the primary at once
/// when no replica has caught up) to 1 minute.
pub const REPLICA_WAIT_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(60);

/// Accepted [`DbConfig::max_output_bytes`]: 1 KiB to 256 MiB (a text value
/// of PostgreSQL holds at most 1 GB, and a row that large strains every
/// reader).
pub const OUTPUT_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=256 << 20;

/// Most bytes of an `application_name`: the server keeps NAMEDATALEN - 1
/// and silently cuts the rest (and turns non-ASCII characters into `?`), so
/// what `pg_stat_activity` shows would not be what was configured.
pub const APPLICATION_NAME_MAX_BYTES: usize = 63;

/// Most bytes of [`DbConfig::role`]: the server cuts a longer name to
/// NAMEDATALEN - 1 bytes, which could name another role.
pub const ROLE_MAX_BYTES: usize = 63;

impl DbConfig {
    /// A configuration for `url` (`postgres://user:pass@host:port/db` or the
    /// `key=value` form) with every pool setting at its default, and the
    /// TLS settings of its `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
    /// (see [TLS](crate::docs::deploying#tls)).
    pub fn from_url(url: &str) -> Result<Self> {
        Draft::read(draft::url_only(url), Source::Url)
    }

    /// The same settings against another database of the same server (and
    /// of the direct URL's server, if set, and of every replica).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.clone();
        config.connection.dbname(dbname);
        if let Some(direct) = &mut config.direct {
            direct.dbname(dbname);
        }
        for replica in &mut config.replicas {
            replica.dbname(dbname);
        }
        config
    }

    /// Sets the direct URL (`postgres://…` or the `key=value` form): a
    /// connection to the server itself, or to a session-mode pooler, for
    /// migrations, their advisory lock and LISTEN (see
    /// [Behind a connection pooler](self#behind-a-connection-pooler)).
    /// Fails with [`Error::Config`] when it does not parse (the error never
    /// quotes it) or sets TLS keys of its own (this config's TLS settings
    /// apply to it). It must not point at a transaction-mode pooler: the
    /// crate cannot tell, and the migration lock and LISTEN would then not
    /// hold.
    pub fn set_direct_url(&mut self, url: &str) -> Result<()> {
        self.direct = Some(parse_direct_url(url)?);
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
            application_name: self.direct_session_name().to_owned(),
            ..self.clone()
        })
    }

    /// The name of the sessions to the direct URL (the dedicated ones:
    /// migrations, listeners; and the pool of [`direct_config`](Self::direct_config)):
    /// the direct URL's own `application_name` when it sets one, else the
    /// setting.
    fn direct_session_name(&self) -> &str {
        self.direct
            .as_ref()
            .and_then(|direct| direct.get_application_name())
            .unwrap_or(&self.application_name)
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

    /// The driver configuration (hosts, user, database…). Its TLS mode is
    /// not the one connections use: that is [`ssl_mode`](Self::ssl_mode),
    /// and the URL's TLS keys are kept out of it.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.connection
    }

    /// Mutable access to the driver configuration, e.g. to set a password
    /// read from a secret store. Its TLS mode is not used: every connection
    /// takes it from [`ssl_mode`](Self::ssl_mode).
    pub fn pg_config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.connection
    }

    /// The database name, if the URL names one.
    pub fn dbname(&self) -> Option<&str> {
        self.connection.get_dbname()
    }

    /// The driver configuration a pooled connection uses: the URL's settings
    /// plus, in [`PoolerMode::Direct`], the session settings and timeouts
    /// of this config as startup options (poolers refuse them; see
    /// [`session_settings`](Self::session_settings)).
    pub(crate) fn pooled_pg_config(&self) -> tokio_postgres::Config {
        let mut pg = self.connection.clone();
        pg.connect_timeout(self.connect_timeout);
        // The URL's TLS keys were taken out of `connection`: the mode in
        // force is `ssl_mode`, for the pool as for every connection.
        pg.ssl_mode(self.ssl_mode.driver_mode());
        // The setting names every session of the pool (a connection
        // string's own name was read into it).
        pg.application_name(&self.application_name);
        if !self.pooler.startup_options() {
            return pg;
        }
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        // The role as a startup option is the session's default: `RESET
        // ROLE` or `DISCARD ALL` on a pooled connection keeps it.
        let role = self.role.as_deref().map(role::startup_option);
        let settings = self
            .session_settings()
            .into_iter()
            .map(|(setting, value)| format!("-c {setting}={value}"));
        for option in role.into_iter().chain(settings) {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&option);
        }
        if !options.is_empty() {
            pg.options(options);
        }
        pg
    }

    /// How long the crate waits for the answer to one statement before it
    /// gives up on the connection ([`TimeoutKind::NoAnswer`](crate::TimeoutKind::NoAnswer)):
    /// `statement_timeout` plus [`NO_ANSWER_MARGIN`](crate::error::NO_ANSWER_MARGIN).
    /// None without a statement timeout.
    pub(crate) fn answer_deadline(&self) -> Option<Duration> {
        self.statement_timeout
            .map(|t| t.saturating_add(crate::error::NO_ANSWER_MARGIN))
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
    /// [`PoolerMode::Session`]: the role and the session settings with
    /// `SET` (they could not be startup options). `None` in the other
    /// modes or when there is nothing to set.
    pub(crate) fn connect_sql(&self) -> Option<String> {
        let role = self.set_role_sql().map(|sql| format!("{sql}; "));
        let sql = role.unwrap_or_default() + &self.settings_sql(false);
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
        pg.ssl_mode(self.ssl_mode.driver_mode());
        pg.application_name(self.direct_session_name());
        pg
    }

    /// `host:port/dbname` for logs and messages, every host of a multi-host
    /// URL in order (`a:5432,b:5433/db`); never includes credentials.
    pub fn display_target(&self) -> String {
        target_of(&self.connection)
    }

    /// [`display_target`](Self::display_target) of the direct URL, if set.
    pub fn display_direct_target(&self) -> Option<String> {
        self.direct.as_ref().map(target_of)
    }
}

/// `host:port/dbname` of a driver configuration, every host of a
/// multi-host URL in order (`a:5432,b:5433/db`), without credentials.
fn target_of(pg: &tokio_postgres::Config) -> String {
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or("");
    format!("{}/{db}", addresses_of(pg).join(","))
}

/// `host:port` of every host of a driver configuration, in order, paired
/// as the driver pairs them.
fn addresses_of(pg: &tokio_postgres::Config) -> Vec<String> {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            // Set through `pg_config_mut`, past the URL check: a host
            // holding '@' may hold part of a password.
            tokio_postgres::config::Host::Tcp(name) if name.contains('@') => {
                "<redacted>".to_owned()
            }
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let hostaddrs = pg.get_hostaddrs();
    let ports = pg.get_ports();
    // The driver pairs the i-th host (or hostaddr) with the i-th port, or
    // with the only port given, or 5432.
    let count = hosts.len().max(hostaddrs.len()).max(1);
    (0..count)
        .map(|i| {
            let host = hosts
                .get(i)
                .cloned()
                .or_else(|| hostaddrs.get(i).map(|a| a.to_string()))
                .unwrap_or_else(|| "localhost".to_owned());
            let port = match ports {
                [one] => *one,
                many => many.get(i).copied().unwrap_or(5432),
            };
            format!("{host}:{port}")
        })
        .collect()
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("DbConfig");
        out.field("target", &self.display_target())
            .field("user", &self.connection.get_user())
            .field(
                "password",
                &self.connection.get_password().map(|_| "<redacted>"),
            );
        // Connection strings may hold a password: shown as their target.
        for setting in SETTINGS.iter().filter(|s| s.read != Read::ConnectionString) {
            out.field(setting.name, (setting.show)(self));
        }
        out.field("direct_target", &self.display_direct_target())
            .field(
                "direct_password",
                &self
                    .direct
                    .as_ref()
                    .and_then(|d| d.get_password())
                    .map(|_| "<redacted>"),
            )
            .field("replica_targets", &self.replica_targets())
            .field(
                "replica_passwords",
                &self
                    .replicas
                    .iter()
                    .map(|r| r.get_password().map(|_| "<redacted>"))
                    .collect::<Vec<_>>(),
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

/// `value` in whole milliseconds, rounded up (what the server is sent for
/// `statement_timeout` and `idle_in_transaction_session_timeout`).
pub(crate) fn whole_millis_up(value: Duration) -> u128 {
    value.as_nanos().div_ceil(1_000_000)
}
