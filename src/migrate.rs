//! Embedded, reversible, lock-protected schema migrations.
//!
//! The up scripts (`migrations/V{n}__{name}.sql`) are applied by refinery;
//! their down scripts (`migrations/down/V{n}__{name}.down.sql`) are run by
//! this module, since refinery is forward-only. Both are compiled into the
//! library (see `build.rs`).
//!
//! # One instance at a time
//!
//! Every operation runs on a dedicated connection (never a pooled one; the
//! direct URL when one is set, see [`DbConfig::set_direct_url`]; behind a
//! transaction-mode pooler without one, every operation fails with an
//! [`Error::Config`]) that first takes a PostgreSQL session advisory lock
//! ([`MIGRATION_LOCK_KEY`]),
//! so service instances starting together against an empty database take
//! turns and exactly one applies each migration. The connection is closed
//! afterwards, which releases the lock even when a step failed half-way.
//!
//! The wait for that lock has no time limit: an instance waits for as long
//! as another one is migrating. It polls with `pg_try_advisory_lock`
//! (every 20 ms at first, backing off to 500 ms) instead of blocking in
//! `pg_advisory_lock`, because a session blocked in a statement holds a
//! snapshot, and `CREATE INDEX CONCURRENTLY` in the migrating session would
//! wait for that snapshot while the waiter waits for the lock: a deadlock.
//!
//! # Not stalling a live system
//!
//! Once it holds the advisory lock, the session sets `lock_timeout` to
//! [`DbConfig::migration_lock_timeout`] (2 s by default) for every statement
//! it runs: refinery's, the up scripts, the scripts run outside a
//! transaction and the down scripts. A DDL statement waiting for a strong
//! lock (an `ALTER TABLE` behind a long transaction) makes every later
//! query of that table queue behind it; the timeout bounds that queueing.
//! A migration that hit it (SQLSTATE 55P03), or that the server chose to
//! break a deadlock (40P01: a migration locking several tables meets
//! traffic that locks them in another order), is rolled back (one outside
//! a transaction: its failed statement) and tried again from its start
//! after a jittered exponential backoff (half to all of `min(lock_timeout,
//! 1 s) × 2^(retry-1)`, at most 10 s), up to [`DbConfig::migration_retries`]
//! times; then the call fails with an [`Error::Migration`] for which
//! [`Error::is_lock_timeout`] is true and whose message names the lock it
//! waited for and the sessions holding it (pid, `application_name`, state
//! and lock mode, never their queries). To find them, a second connection,
//! open while migrations run, looks at `pg_stat_activity` four times per
//! lock timeout (at most once a second) and, while the migration session
//! waits for a lock, at `pg_locks` and `pg_blocking_pids`. Migrations
//! applied before the one that gave up stay applied.
//!
//! A migration may override the timeout for itself with `SET LOCAL
//! lock_timeout = …` (in a transaction) or `SET lock_timeout = …` (outside
//! one; the session's value is restored afterwards).
//!
//! # Migrations outside a transaction
//!
//! refinery runs every migration in a transaction, where `CREATE INDEX
//! CONCURRENTLY` and the like are refused. An up script whose first line is
//! [`NO_TRANSACTION_MARKER`] (`-- voidrunner:no-transaction`) is run by this
//! module instead: refinery applies everything before it (`set_target`),
//! then its statements run one at a time in autocommit (each committed on
//! its own, split at top-level semicolons; quotes, dollar quotes and
//! comments are understood, `BEGIN ATOMIC` bodies are not), then its
//! history row is written exactly as refinery writes it (same table, name,
//! refinery's checksum, `applied_on` in RFC 3339), and refinery goes on
//! with the rest. refinery then treats it as any applied migration, and
//! still refuses it if it is edited afterwards.
//!
//! Such a migration must be **idempotent**: it can stop half-way (a failed
//! statement, a lock timeout, a crash) with its first statements committed
//! and no history row, and is then run again from its first statement, by
//! the next retry or the next `migrate()`. So every statement must be safe
//! to run again: `IF [NOT] EXISTS`, updates that change nothing the second
//! time, and a `DROP INDEX CONCURRENTLY IF EXISTS` before each `CREATE INDEX
//! CONCURRENTLY`, since a failed concurrent build leaves an `INVALID` index
//! of that name behind (which `IF NOT EXISTS` would take for done). Its
//! down script still runs in a transaction.
//!
//! A concurrent index build also waits, under the same `lock_timeout`, for
//! every transaction of the database older than the build to end, whatever
//! tables they use: a transaction kept open longer than the timeout makes
//! it give up (the error names that session's "virtual transaction"). End
//! such transactions, or raise the timeout for that deploy.
//!
//! # A service's own migrations
//!
//! A service that needs tables of its own (one referencing `tasks(id)`,
//! say) keeps them in refinery migrations of its own, recorded in a history
//! table of its own, and applies them with
//! [`Database::migrate_service`](crate::Database::migrate_service) after
//! [`Database::migrate`](crate::Database::migrate). They run as the crate's
//! do: on a dedicated connection holding [`MIGRATION_LOCK_KEY`], under the
//! same `lock_timeout` and retries, each in its own transaction (the
//! [`NO_TRANSACTION_MARKER`] is refused), an edited applied migration
//! aborting the run. The history table must be a lowercase identifier
//! other than [`HISTORY_TABLE`] (see [`validate_history_table`]); the two
//! version sequences are independent. There is no down direction: a
//! service reverts its own migrations itself.
//!
//! [`TestDatabase::with_migrations`](crate::testing::TestDatabase::with_migrations)
//! (feature `test-support`) gives tests a database with both sets applied.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use refinery::{Migration, Runner, Target};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tracing::Instrument as _;

use crate::config::DbConfig;
use crate::connect::Connector;
use crate::error::{BoxError, Error, Result, TimeoutKind};

/// The refinery version the crate runs migrations with, for building the
/// [`refinery::Migration`]s given to
/// [`Database::migrate_service`](crate::Database::migrate_service) without
/// a version mismatch.
pub use refinery;

/// The history table. Not refinery's default name, so a host application
/// using refinery for its own schema in the same database never collides.
pub const HISTORY_TABLE: &str = "voidrunner_db_schema_history";

/// Key of the session advisory lock held while migrating ("voidrun" + 1).
pub const MIGRATION_LOCK_KEY: i64 = 0x766F_6964_7275_6E01;

/// First line of an up script that runs outside a transaction, one
/// statement at a time (see the [module docs](self)).
pub const NO_TRANSACTION_MARKER: &str = "-- voidrunner:no-transaction";

/// A migration compiled into the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmbeddedMigration {
    /// The `n` of `V{n}__{name}.sql`.
    pub version: i32,
    /// The `name` of `V{n}__{name}.sql`.
    pub name: &'static str,
    /// The up script.
    pub up: &'static str,
    /// The down script that removes exactly what `up` added.
    pub down: &'static str,
}

impl EmbeddedMigration {
    /// `V{n}__{name}`, as refinery names it.
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// False when the up script's first line is [`NO_TRANSACTION_MARKER`]:
    /// it is then run statement by statement in autocommit and must be
    /// idempotent (see the [module docs](self)). Down scripts always run in
    /// a transaction.
    pub fn runs_in_transaction(&self) -> bool {
        self.up
            .lines()
            .next()
            .is_none_or(|first| first.trim_end() != NO_TRANSACTION_MARKER)
    }
}

static EMBEDDED: &[EmbeddedMigration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Every migration compiled into the crate, oldest first.
pub fn embedded() -> &'static [EmbeddedMigration] {
    EMBEDDED
}

/// The newest version the crate knows.
pub fn latest_version() -> i32 {
    EMBEDDED.last().map_or(0, |m| m.version)
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// The version.
    pub version: i32,
    /// The name recorded when it was applied.
    pub name: String,
    /// When it was applied (RFC 3339, as refinery records it).
    pub applied_on: String,
}

/// What [`status`](crate::Database::migration_status) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// Versions recorded in the history table, oldest first.
    pub applied: Vec<AppliedMigration>,
    /// Embedded versions not applied yet, oldest first.
    pub pending: Vec<EmbeddedMigration>,
}

impl MigrationStatus {
    /// The highest applied version, 0 for an empty database.
    pub fn current_version(&self) -> i32 {
        self.applied.last().map_or(0, |m| m.version)
    }
}

impl fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.applied {
            writeln!(f, "applied  V{}__{} ({})", m.version, m.name, m.applied_on)?;
        }
        for m in &self.pending {
            writeln!(f, "pending  V{}__{}", m.version, m.name)?;
        }
        write!(f, "current version: {}", self.current_version())
    }
}

/// How far [`migrate_down`](crate::Database::migrate_down) reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownTarget {
    /// Revert the newest `n` applied migrations.
    Steps(usize),
    /// Revert every applied migration newer than this version (0: all).
    ToVersion(i32),
}

/// Applies every pending migration. Returns the versions applied by this
/// call (empty when another instance already did the work).
pub(crate) async fn up(config: &DbConfig, connector: &Connector) -> Result<Vec<i32>> {
    let span = tracing::info_span!("voidrunner_db.migrate", direction = "up");
    async {
        let mut session = Session::open(config, connector).await?;
        let result = apply(&mut session).await;
        session.close().await;
        let applied = result?;
        tracing::info!(?applied, "migrations applied");
        Ok(applied)
    }
    .instrument(span)
    .await
}

async fn apply(session: &mut Session) -> Result<Vec<i32>> {
    let migrations = EMBEDDED
        .iter()
        .map(|m| {
            Migration::unapplied(&m.label(), m.up).map_err(|e| {
                Error::migration(
                    format!("embedded migration V{} is malformed", m.version),
                    Some(Box::new(e)),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let history = read_history(&session.client, HISTORY_TABLE).await?;
    let is_applied = |version: i32| history.iter().any(|a| a.version == version);
    if EMBEDDED.iter().any(|m| !is_applied(m.version)) {
        session.watch_locks();
    }
    let mut applied = Vec::new();
    // Each migration runs in its own transaction together with its history
    // row (refinery's non-grouped mode); a migration edited after it was
    // applied aborts the run instead of being silently skipped. A migration
    // outside a transaction splits the run in two: refinery up to the
    // version before it (which also checks the history), then this module.
    for (m, migration) in EMBEDDED.iter().zip(&migrations) {
        if m.runs_in_transaction() || is_applied(m.version) {
            continue;
        }
        session
            .run_refinery(
                &migrations,
                Target::Version(m.version - 1),
                HISTORY_TABLE,
                &mut applied,
            )
            .await?;
        session.run_without_transaction(m, migration).await?;
        applied.push(m.version);
    }
    session
        .run_refinery(&migrations, Target::Latest, HISTORY_TABLE, &mut applied)
        .await?;
    Ok(applied)
}

/// Checks that `name` can be a service's history table: a lowercase SQL
/// identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes, used unquoted) other
/// than the crate's own [`HISTORY_TABLE`].
pub fn validate_history_table(name: &str) -> Result<()> {
    let invalid = |why: &str| {
        Err(Error::validation(
            "history_table",
            format!("{name:?} cannot be a service's migration history table: {why}"),
        ))
    };
    let mut chars = name.chars();
    if !chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return invalid("it must be a lowercase identifier ([a-z_][a-z0-9_]*)");
    }
    if name.len() > 63 {
        return invalid("PostgreSQL truncates identifiers at 63 bytes");
    }
    if name == HISTORY_TABLE {
        return invalid("it is the crate's own history table");
    }
    if ["users", "tasks", "task_executions"].contains(&name) {
        return invalid("it is one of the crate's tables");
    }
    if name.starts_with("pg_") {
        return invalid("names starting with pg_ are the system catalogs'");
    }
    Ok(())
}

/// What only the server knows about a history table's name: a reserved
/// word cannot name a table unquoted (refinery does not quote it), and an
/// existing relation must already be a migration history.
async fn check_history_table_on_server(client: &Client, name: &str) -> Result<()> {
    let row = client
        .query_one(
            "SELECT \
               EXISTS (SELECT 1 FROM pg_get_keywords() WHERE word = $1 AND catcode IN ('R', 'T')), \
               to_regclass($1) IS NOT NULL, \
               EXISTS (SELECT 1 FROM pg_attribute \
                       WHERE attrelid = to_regclass($1) AND attname = 'version' AND NOT attisdropped)",
            &[&name],
        )
        .await
        .map_err(|e| {
            Error::migration("checking the history table's name failed", Some(Box::new(e)))
        })?;
    let read = |i: usize| -> Result<bool> {
        row.try_get(i).map_err(|e| {
            Error::migration(
                "checking the history table's name failed",
                Some(Box::new(e)),
            )
        })
    };
    let why = if read(0)? {
        "it is a reserved word of SQL"
    } else if read(1)? && !read(2)? {
        "it names an existing relation that is not a migration history"
    } else {
        return Ok(());
    };
    Err(Error::validation(
        "history_table",
        format!("{name:?} cannot be a service's migration history table: {why}"),
    ))
}

/// Applies a service's own migrations (see [`Database::migrate_service`](crate::Database::migrate_service)).
pub(crate) async fn up_service(
    config: &DbConfig,
    connector: &Connector,
    migrations: &[Migration],
    history_table: &str,
) -> Result<Vec<i32>> {
    validate_history_table(history_table)?;
    if let Some(m) = migrations.iter().find(|m| {
        m.sql()
            .and_then(|sql| sql.lines().next())
            .is_some_and(|first| first.trim_end() == NO_TRANSACTION_MARKER)
    }) {
        return Err(Error::migration(
            format!(
                "service migration V{}__{} starts with {NO_TRANSACTION_MARKER:?}: service migrations always run in a transaction",
                m.version(),
                m.name()
            ),
            None,
        ));
    }
    let span = tracing::info_span!(
        "voidrunner_db.migrate",
        direction = "up",
        history_table = %history_table
    );
    async {
        let mut session = Session::open(config, connector).await?;
        let result = match check_history_table_on_server(&session.client, history_table).await {
            Ok(()) => apply_service(&mut session, migrations, history_table).await,
            Err(e) => Err(e),
        };
        session.close().await;
        let applied = result?;
        tracing::info!(?applied, history_table, "service migrations applied");
        Ok(applied)
    }
    .instrument(span)
    .await
}

async fn apply_service(
    session: &mut Session,
    migrations: &[Migration],
    history_table: &str,
) -> Result<Vec<i32>> {
    // Service migrations build on the crate's schema: refuse to run them
    // on top of an older one.
    let crate_history = read_history(&session.client, HISTORY_TABLE).await?;
    let pending: Vec<String> = EMBEDDED
        .iter()
        .filter(|m| !crate_history.iter().any(|a| a.version == m.version))
        .map(EmbeddedMigration::label)
        .collect();
    if !pending.is_empty() {
        return Err(Error::migration(
            format!(
                "the crate's migrations {} are not applied: run Database::migrate before the service's migrations",
                pending.join(", ")
            ),
            None,
        ));
    }
    let history = read_history(&session.client, history_table).await?;
    if migrations
        .iter()
        .any(|m| !history.iter().any(|a| a.version == m.version()))
    {
        session.watch_locks();
    }
    let mut applied = Vec::new();
    session
        .run_refinery(migrations, Target::Latest, history_table, &mut applied)
        .await?;
    Ok(applied)
}

/// Runs down scripts, newest first, each in a transaction together with the
/// removal of its history row. Returns the versions reverted.
pub(crate) async fn down(
    config: &DbConfig,
    connector: &Connector,
    target: DownTarget,
) -> Result<Vec<i32>> {
    let span = tracing::info_span!("voidrunner_db.migrate", direction = "down", ?target);
    async {
        let mut session = Session::open(config, connector).await?;
        let result = revert(&mut session, target).await;
        session.close().await;
        let reverted = result?;
        tracing::info!(?reverted, "migrations reverted");
        Ok(reverted)
    }
    .instrument(span)
    .await
}

async fn revert(session: &mut Session, target: DownTarget) -> Result<Vec<i32>> {
    let applied = read_history(&session.client, HISTORY_TABLE).await?;
    let mut to_revert: Vec<&AppliedMigration> = applied.iter().rev().collect();
    match target {
        DownTarget::Steps(n) => to_revert.truncate(n),
        DownTarget::ToVersion(v) => to_revert.retain(|m| m.version > v),
    }
    // Check every down script exists before reverting anything.
    let scripts = to_revert
        .iter()
        .map(|m| {
            EMBEDDED
                .iter()
                .find(|e| e.version == m.version)
                .ok_or_else(|| {
                    Error::migration(
                        format!(
                            "applied migration V{}__{} is not embedded in this build: cannot revert it",
                            m.version, m.name
                        ),
                        None,
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    if !scripts.is_empty() {
        session.watch_locks();
    }
    let mut reverted = Vec::with_capacity(scripts.len());
    for m in scripts {
        let mut retry = 0;
        loop {
            session.attempt_started();
            match revert_one(&mut session.client, m).await {
                Ok(()) => break,
                Err(failure) => session.after_failure(failure, &mut retry).await?,
            }
        }
        reverted.push(m.version);
    }
    Ok(reverted)
}

async fn revert_one(client: &mut Client, m: &EmbeddedMigration) -> Result<(), Failure> {
    let label = m.label();
    let failed = |e: tokio_postgres::Error| {
        Failure::from_pg(e, &label, |e| format!("reverting {label} failed: {e}"))
    };
    let delete = format!("DELETE FROM {HISTORY_TABLE} WHERE version = $1");
    // Dropping the transaction on an error rolls it back.
    let tx = client.transaction().await.map_err(failed)?;
    tx.batch_execute(m.down).await.map_err(failed)?;
    tx.execute(&delete, &[&m.version]).await.map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(())
}

/// Lists applied and pending migrations. Takes no lock: a concurrent
/// migration shows up as applied or pending, never half-way (a migration
/// outside a transaction shows up as pending until its history row is
/// written, after its last statement).
pub(crate) async fn status(config: &DbConfig, connector: &Connector) -> Result<MigrationStatus> {
    let client = dedicated_connection(config, connector).await?;
    let applied = read_history(&client, HISTORY_TABLE).await?;
    let pending = EMBEDDED
        .iter()
        .filter(|e| !applied.iter().any(|a| a.version == e.version))
        .copied()
        .collect();
    Ok(MigrationStatus { applied, pending })
}

async fn read_history(client: &Client, table: &str) -> Result<Vec<AppliedMigration>> {
    let failed = |e: tokio_postgres::Error| {
        Error::migration("reading the migration history failed", Some(Box::new(e)))
    };
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(failed)?
        .try_get(0)
        .map_err(failed)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT version, name, applied_on FROM {table} ORDER BY version"),
            &[],
        )
        .await
        .map_err(failed)?;
    rows.iter()
        .map(|row| {
            Ok(AppliedMigration {
                version: row.try_get(0).map_err(failed)?,
                name: row
                    .try_get::<_, Option<String>>(1)
                    .map_err(failed)?
                    .unwrap_or_default(),
                applied_on: row
                    .try_get::<_, Option<String>>(2)
                    .map_err(failed)?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A connection outside the pool. Its driver task ends when the client is
/// dropped, which closes the session and frees any advisory lock it holds.
async fn dedicated_connection(config: &DbConfig, connector: &Connector) -> Result<Client> {
    // Through a transaction-mode pooler the advisory lock would be taken on
    // one server connection and the migration run on others: instances
    // would no longer take turns.
    config.require_session("migrating (the advisory lock that makes instances take turns)")?;
    let (client, connection) = connector
        .connect(config, &config.dedicated_pg_config())
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    Ok(client)
}

/// The oldest PostgreSQL the schema runs on, as `server_version_num`:
/// 13, the first with `gen_random_uuid()` built in (V1's key default).
pub const MIN_SERVER_VERSION_NUM: i32 = 13 * 10_000;

/// `Error::Config` naming both versions when a server reporting
/// `server_version_num` is older than [`MIN_SERVER_VERSION_NUM`].
pub fn check_server_version(server_version_num: i32) -> Result<()> {
    if server_version_num >= MIN_SERVER_VERSION_NUM {
        return Ok(());
    }
    Err(Error::config(format!(
        "PostgreSQL {} or newer is required; the server is {}",
        MIN_SERVER_VERSION_NUM / 10_000,
        display_server_version(server_version_num)
    )))
}

/// `server_version_num` as people write it: 150004 is 15.4, 90624 is 9.6.24.
fn display_server_version(num: i32) -> String {
    if num >= 100_000 {
        format!("{}.{}", num / 10_000, num % 10_000)
    } else {
        format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100)
    }
}

/// Why one attempt at a migration failed.
enum Failure {
    /// A statement waited longer than `lock_timeout` (55P03), or the server
    /// chose it to break a deadlock (40P01) with the sessions whose locks
    /// it waited for: rolled back, worth another attempt.
    Contention {
        /// `V{n}__{name}` of the migration.
        migration: String,
        /// A deadlock rather than a lock timeout.
        deadlock: bool,
        /// The error that reported it.
        source: BoxError,
    },
    /// Anything else: returned as it is.
    Other(Error),
}

impl Failure {
    fn from_pg(
        e: tokio_postgres::Error,
        migration: &str,
        message: impl FnOnce(&tokio_postgres::Error) -> String,
    ) -> Self {
        match contention(e.code()) {
            Some(deadlock) => Failure::Contention {
                migration: migration.to_owned(),
                deadlock,
                source: Box::new(e),
            },
            None => Failure::Other(Error::migration(message(&e), Some(Box::new(e)))),
        }
    }
}

/// `Some(deadlock)` when `code` says a statement lost to other sessions'
/// locks: a lock timeout (55P03), or a deadlock (40P01), which a migration
/// taking strong locks on several tables can meet with ordinary traffic
/// that takes them in another order.
fn contention(code: Option<&SqlState>) -> Option<bool> {
    match code {
        Some(code) if *code == SqlState::LOCK_NOT_AVAILABLE => Some(false),
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED => Some(true),
        _ => None,
    }
}

/// [`contention`] of `err` or the first of its sources that says.
fn caused_by_contention(err: &(dyn std::error::Error + 'static)) -> Option<bool> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(deadlock) = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|pg| contention(pg.code()))
        {
            return Some(deadlock);
        }
        current = e.source();
    }
    None
}

/// The migration connection, holding the advisory lock, with
/// `lock_timeout` set.
struct Session {
    client: Client,
    config: DbConfig,
    connector: Connector,
    /// The server process of `client`, watched by [`LockWatch`].
    pid: i32,
    watch: Option<LockWatch>,
}

impl Session {
    async fn open(config: &DbConfig, connector: &Connector) -> Result<Self> {
        config.validate()?;
        let client = dedicated_connection(config, connector).await?;
        let (pid, server_version) = client
            .query_one(
                "SELECT pg_backend_pid(), current_setting('server_version_num')::int4",
                &[],
            )
            .await
            .and_then(|row| Ok((row.try_get::<_, i32>(0)?, row.try_get::<_, i32>(1)?)))
            .map_err(|e| {
                Error::migration("preparing the migration session failed", Some(Box::new(e)))
            })?;
        // Before the lock and before any DDL: on an older server V1 would
        // fail half-way with an error about a missing function.
        check_server_version(server_version)?;
        acquire_migration_lock(&client).await?;
        let session = Session {
            client,
            config: config.clone(),
            connector: connector.clone(),
            pid,
            watch: None,
        };
        session.set_lock_timeout().await?;
        Ok(session)
    }

    /// (Re)sets the session's `lock_timeout`; a migration run outside a
    /// transaction may have changed it.
    async fn set_lock_timeout(&self) -> Result<()> {
        let millis = self.config.migration_lock_timeout.as_millis();
        self.client
            .batch_execute(&format!("SET lock_timeout = {millis}"))
            .await
            .map_err(|e| {
                Error::migration(
                    "setting the migration lock_timeout failed",
                    Some(Box::new(e)),
                )
            })
    }

    /// Starts looking for sessions that block this one, once there is
    /// something to migrate.
    fn watch_locks(&mut self) {
        if self.watch.is_none() {
            self.watch = Some(LockWatch::start(
                &self.config,
                &self.connector,
                self.pid,
                self.config.migration_lock_timeout,
            ));
        }
    }

    fn attempt_started(&self) {
        if let Some(watch) = &self.watch {
            watch.clear();
        }
    }

    /// After a failed attempt: `Ok` to try again (after the backoff), or
    /// the error to return.
    async fn after_failure(&self, failure: Failure, retry: &mut u32) -> Result<()> {
        let (migration, deadlock, source) = match failure {
            Failure::Other(e) => return Err(e),
            Failure::Contention {
                migration,
                deadlock,
                source,
            } => (migration, deadlock, source),
        };
        let lock_timeout = self.config.migration_lock_timeout;
        let blocker = self
            .watch
            .as_ref()
            .and_then(|w| w.recent(lock_timeout))
            .unwrap_or_else(|| {
                "a lock; the blocking session could not be identified (it may have ended meanwhile)"
                    .to_owned()
            });
        if *retry >= self.config.migration_retries && deadlock {
            let attempts = *retry + 1;
            return Err(Error::migration(
                format!(
                    "{migration} gave up after {}: {} chosen to break a deadlock with {blocker}",
                    if attempts == 1 {
                        "1 attempt".to_owned()
                    } else {
                        format!("{attempts} attempts")
                    },
                    if attempts == 1 { "it was" } else { "each was" },
                ),
                Some(source),
            ));
        }
        if *retry >= self.config.migration_retries {
            let attempts = *retry + 1;
            return Err(Error::migration(
                format!(
                    "{migration} gave up after {}: {} longer than lock_timeout ({lock_timeout:?}) for {blocker}",
                    if attempts == 1 {
                        "1 attempt".to_owned()
                    } else {
                        format!("{attempts} attempts")
                    },
                    if attempts == 1 {
                        "it waited"
                    } else {
                        "each waited"
                    },
                ),
                Some(Box::new(Error::Timeout {
                    kind: TimeoutKind::Lock,
                    source: Some(source),
                })),
            ));
        }
        *retry += 1;
        let delay = retry_backoff(lock_timeout, *retry);
        tracing::warn!(
            %migration,
            retry = *retry,
            of = self.config.migration_retries,
            ?delay,
            waited_for = %blocker,
            deadlock,
            "migration lost to other sessions' locks (lock_timeout or a deadlock); trying it again"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// refinery up to `target`, each migration in its own transaction;
    /// adds the versions it applied to `applied`.
    async fn run_refinery(
        &mut self,
        migrations: &[Migration],
        target: Target,
        table: &str,
        applied: &mut Vec<i32>,
    ) -> Result<()> {
        let mut retry = 0;
        loop {
            self.attempt_started();
            let mut runner = Runner::new(migrations)
                .set_abort_divergent(true)
                .set_abort_missing(true)
                .set_target(target);
            runner.set_migration_table_name(table);
            let failure = match runner.run_async(&mut self.client).await {
                Ok(report) => {
                    applied.extend(report.applied_migrations().iter().map(|m| m.version()));
                    return Ok(());
                }
                Err(e) => {
                    // Migrations before the failed one stay applied.
                    if let Some(report) = e.report() {
                        applied.extend(report.applied_migrations().iter().map(|m| m.version()));
                    }
                    if let Some(deadlock) = caused_by_contention(&e) {
                        // refinery stops at the first failure: the failed
                        // migration is the oldest one still pending.
                        let migration = match read_history(&self.client, table).await {
                            Ok(history) => migrations
                                .iter()
                                .find(|m| !history.iter().any(|a| a.version == m.version()))
                                .map_or_else(
                                    || "a migration".to_owned(),
                                    |m| format!("V{}__{}", m.version(), m.name()),
                                ),
                            Err(_) => "a migration".to_owned(),
                        };
                        Failure::Contention {
                            migration,
                            deadlock,
                            source: Box::new(e),
                        }
                    } else {
                        Failure::Other(Error::migration(e.to_string(), Some(Box::new(e))))
                    }
                }
            };
            self.after_failure(failure, &mut retry).await?;
        }
    }

    /// Runs `m` statement by statement in autocommit, then records it as
    /// refinery would. Retried from its first statement on a lock timeout.
    async fn run_without_transaction(
        &mut self,
        m: &EmbeddedMigration,
        migration: &Migration,
    ) -> Result<()> {
        let label = m.label();
        tracing::info!(migration = %label, "applying migration outside a transaction");
        let mut retry = 0;
        loop {
            self.attempt_started();
            let result = run_statements(&self.client, m.up, &label).await;
            // Leave any transaction the script opened and failed in, and
            // restore the session's lock_timeout if the script changed it.
            if result.is_err()
                && let Err(e) = self.client.batch_execute("ROLLBACK").await
            {
                tracing::debug!(error = %e, "rolling back after a failed statement failed");
            }
            self.set_lock_timeout().await?;
            match result {
                Ok(()) => break,
                Err(failure) => self.after_failure(failure, &mut retry).await?,
            }
        }
        let applied_on = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::migration("formatting applied_on failed", Some(Box::new(e))))?;
        self.client
            .execute(
                &format!(
                    "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
                ),
                &[
                    &migration.version(),
                    &migration.name(),
                    &applied_on,
                    &migration.checksum().to_string(),
                ],
            )
            .await
            .map_err(|e| {
                Error::migration(
                    format!("recording {label} in {HISTORY_TABLE} failed"),
                    Some(Box::new(e)),
                )
            })?;
        Ok(())
    }

    async fn close(self) {
        drop(self.watch);
        // Best effort: dropping the connection releases the lock anyway.
        if let Err(e) = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await
        {
            tracing::debug!(error = %e, "releasing the migration lock failed; closing the connection releases it");
        }
    }
}

/// Each statement of `sql` on its own, in autocommit.
async fn run_statements(client: &Client, sql: &str, label: &str) -> Result<(), Failure> {
    for statement in split_statements(sql) {
        client.batch_execute(statement.sql).await.map_err(|e| {
            Failure::from_pg(e, label, |e| {
                format!(
                    "applying {label} failed at its statement on line {}: {e}",
                    statement.line
                )
            })
        })?;
    }
    Ok(())
}

/// Takes the migration advisory lock, waiting as long as another session
/// holds it. Polls rather than blocks: see the module docs.
async fn acquire_migration_lock(client: &Client) -> Result<()> {
    let mut delay = Duration::from_millis(20);
    let mut waited = None;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| Error::migration("taking the migration lock failed", Some(Box::new(e))))?;
        if locked {
            if let Some(since) = waited {
                tracing::info!(waited = ?Instant::elapsed(&since), "took the migration lock");
            }
            return Ok(());
        }
        if waited.is_none() {
            tracing::info!("another session holds the migration lock; waiting for it");
            waited = Some(Instant::now());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Wait before retry `retry` (1-based) of a migration that hit the lock
/// timeout: between half and all of `min(lock_timeout, 1 s) × 2^(retry-1)`,
/// at most 10 s. The jitter keeps instances from retrying in step.
fn retry_backoff(lock_timeout: Duration, retry: u32) -> Duration {
    let base = lock_timeout.min(Duration::from_secs(1));
    let full = base
        .saturating_mul(1 << retry.clamp(1, 16).saturating_sub(1))
        .min(Duration::from_secs(10));
    let half = full / 2;
    let range = half.as_micros().max(1) as u64;
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % range;
    half + Duration::from_micros(jitter)
}

/// Watches the migration session from a second connection and remembers
/// what it last waited for: `lock_timeout` cancels the wait, after which the
/// server no longer shows it.
struct LockWatch {
    seen: Arc<Mutex<Option<(Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LockWatch {
    fn start(config: &DbConfig, connector: &Connector, pid: i32, lock_timeout: Duration) -> Self {
        let seen = Arc::new(Mutex::new(None));
        // A few looks per lock timeout, so a wait that lasts until the
        // timeout is seen at least once.
        let interval = (lock_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            let config = config.clone();
            let connector = connector.clone();
            async move {
                let client = match dedicated_connection(&config, &connector).await {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::debug!(error = %e, "the migration lock watcher cannot connect; lock timeouts will not name the blocker");
                        return;
                    }
                };
                loop {
                    tokio::time::sleep(interval).await;
                    match describe_lock_wait(&client, pid).await {
                        Ok(Some(description)) => {
                            *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some((Instant::now(), description));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "the migration lock watcher stopped");
                            return;
                        }
                    }
                }
            }
        });
        LockWatch { seen, task }
    }

    fn clear(&self) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// What the session waited for, if seen during the last wait.
    fn recent(&self, lock_timeout: Duration) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.as_ref()
            .filter(|(at, _)| at.elapsed() <= lock_timeout * 2 + Duration::from_secs(1))
            .map(|(_, description)| description.clone())
    }
}

impl Drop for LockWatch {
    fn drop(&mut self) {
        // Dropping the task's client closes its connection.
        self.task.abort();
    }
}

/// What the lock of session `pid` is waiting for and who holds it against
/// it, if it waits for a lock. Reads no query text of other sessions.
const LOCK_WAIT_SQL: &str = "\
SELECT w.locktype, w.mode, coalesce(w.relation, t.relation)::regclass::text, \
       w.transactionid::text, w.virtualxid, b.pid, a.application_name, a.state, \
       (SELECT string_agg(DISTINCT h.mode, ', ') FROM pg_locks h \
         WHERE h.pid = b.pid AND h.granted AND h.locktype = w.locktype \
           AND h.database IS NOT DISTINCT FROM w.database \
           AND h.relation IS NOT DISTINCT FROM w.relation \
           AND h.page IS NOT DISTINCT FROM w.page \
           AND h.tuple IS NOT DISTINCT FROM w.tuple \
           AND h.virtualxid IS NOT DISTINCT FROM w.virtualxid \
           AND h.transactionid IS NOT DISTINCT FROM w.transactionid \
           AND h.classid IS NOT DISTINCT FROM w.classid \
           AND h.objid IS NOT DISTINCT FROM w.objid \
           AND h.objsubid IS NOT DISTINCT FROM w.objsubid) \
FROM pg_locks w \
LEFT JOIN LATERAL (SELECT l.relation FROM pg_locks l \
                    WHERE l.pid = w.pid AND l.locktype = 'tuple' AND l.granted LIMIT 1) t \
       ON w.relation IS NULL \
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid) \
LEFT JOIN pg_stat_activity a ON a.pid = b.pid \
WHERE w.pid = $1 AND NOT w.granted \
ORDER BY b.pid";

async fn describe_lock_wait(
    client: &Client,
    pid: i32,
) -> Result<Option<String>, tokio_postgres::Error> {
    // Cheap first: pg_locks and pg_blocking_pids take the lock manager's
    // locks, so they are only asked while the session waits for a lock.
    let waiting: bool = client
        .query_one(
            "SELECT coalesce((SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1), false)",
            &[&pid],
        )
        .await?
        .try_get(0)?;
    if !waiting {
        return Ok(None);
    }
    let rows = client.query(LOCK_WAIT_SQL, &[&pid]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let locktype: String = first.try_get(0)?;
    let mode: String = first.try_get(1)?;
    let relation: Option<String> = first.try_get(2)?;
    let xid: Option<String> = first.try_get(3)?;
    let vxid: Option<String> = first.try_get(4)?;
    let object = match (locktype.as_str(), relation) {
        ("relation", Some(rel)) => format!("relation {rel}"),
        ("transactionid", Some(rel)) => format!(
            "transaction {} (a row of {rel} it locked)",
            xid.as_deref().unwrap_or("?")
        ),
        ("transactionid", None) => format!("transaction {}", xid.as_deref().unwrap_or("?")),
        ("tuple", Some(rel)) => format!("a row of {rel}"),
        ("virtualxid", _) => format!(
            "virtual transaction {} (an older transaction a concurrent index build waits for)",
            vxid.as_deref().unwrap_or("?")
        ),
        ("advisory", _) => "an advisory lock".to_owned(),
        (other, Some(rel)) => format!("a {other} lock on {rel}"),
        (other, None) => format!("a {other} lock"),
    };
    let blockers = rows
        .iter()
        .map(|row| {
            let pid: i32 = row.try_get(5)?;
            let application_name: Option<String> = row.try_get(6)?;
            let state: Option<String> = row.try_get(7)?;
            let held: Option<String> = row.try_get(8)?;
            Ok(format!(
                "pid {pid} (application_name {:?}, state {:?}, {})",
                application_name.as_deref().unwrap_or("unknown"),
                state.as_deref().unwrap_or("unknown"),
                match held {
                    Some(modes) => format!("holding {modes}"),
                    None => "queued ahead for a conflicting lock".to_owned(),
                }
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?
        .join(" and ");
    Ok(Some(format!("{mode} on {object}, blocked by {blockers}")))
}

/// One statement of a script, as [`split_statements`] found it.
#[derive(Debug, PartialEq, Eq)]
struct Statement<'a> {
    sql: &'a str,
    /// 1-based line of the statement's first character.
    line: usize,
}

/// Splits a script at its top-level semicolons, skipping what is only
/// whitespace and comments. Understands `--` and nested `/* */` comments,
/// `'…'` (and `E'…'` with backslash escapes), `"…"` and `$tag$…$tag$`;
/// not `BEGIN ATOMIC … END` bodies.
fn split_statements(sql: &str) -> Vec<Statement<'_>> {
    fn ident(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
    }
    fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
        let mut j = open + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' if backslash => j += 2,
                q if q == quote && bytes.get(j + 1) == Some(&quote) => j += 2,
                q if q == quote => return j + 1,
                _ => j += 1,
            }
        }
        bytes.len()
    }
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start: Option<usize> = None;
    let mut push = |start: usize, end: usize| {
        statements.push(Statement {
            sql: sql[start..end].trim_end(),
            line: sql[..start].matches('\n').count() + 1,
        });
    };
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == b'-' && next == Some(b'-') {
            i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            continue;
        }
        if c == b'/' && next == Some(b'*') {
            let mut depth = 0usize;
            while i < bytes.len() {
                if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c == b';' {
            if let Some(s) = start.take() {
                push(s, i);
            }
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        let after_ident = i > 0 && ident(bytes[i - 1]);
        i = match c {
            b'\'' => {
                let escape_string = after_ident
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && !(i > 1 && ident(bytes[i - 2]));
                skip_quoted(bytes, i, b'\'', escape_string)
            }
            b'"' => skip_quoted(bytes, i, b'"', false),
            b'$' if !after_ident => {
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80))
                    .map(|n| i + 1 + n)
                    .filter(|&j| bytes[j] == b'$' && !bytes[i + 1].is_ascii_digit());
                match tag_end {
                    Some(j) => {
                        let tag = &sql[i..=j];
                        sql[j + 1..]
                            .find(tag)
                            .map_or(bytes.len(), |n| j + 1 + n + tag.len())
                    }
                    None => i + 1,
                }
            }
            _ => i + 1,
        };
    }
    if let Some(s) = start {
        push(s, bytes.len());
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_13_are_refused_by_name() {
        assert!(check_server_version(130_000).is_ok());
        assert!(check_server_version(150_004).is_ok());
        assert!(check_server_version(i32::MAX).is_ok());
        for (num, shown) in [(120_017, "12.17"), (90_624, "9.6.24"), (0, "0.0.0")] {
            let err = check_server_version(num).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("PostgreSQL 13 or newer"), "{text}");
            assert!(text.contains(shown), "{text}");
        }
        assert!(check_server_version(-1).is_err());
    }

    #[test]
    fn embedded_migrations_are_ordered_and_reversible() {
        let all = embedded();
        assert!(!all.is_empty());
        assert_eq!(all[0].version, 1);
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        for m in all {
            assert!(!m.up.trim().is_empty(), "V{} up is empty", m.version);
            assert!(!m.down.trim().is_empty(), "V{} down is empty", m.version);
        }
        assert_eq!(latest_version(), all.last().unwrap().version);
    }

    #[test]
    fn history_table_is_not_refinerys_default() {
        assert_ne!(HISTORY_TABLE, "refinery_schema_history");
    }

    #[test]
    fn service_history_tables_are_checked() {
        for ok in ["svc_schema_history", "_x", "a1", "refinery_schema_history"] {
            assert!(validate_history_table(ok).is_ok(), "{ok}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "",
            HISTORY_TABLE,
            "Svc",
            "1svc",
            "svc-history",
            "public.svc",
            "svc\"; DROP TABLE tasks; --",
            "users",
            "task_executions",
            "pg_class",
            "s\u{e9}",
            too_long.as_str(),
        ] {
            let err = validate_history_table(bad).unwrap_err();
            assert!(err.is_validation(), "{bad}: {err}");
        }
        assert!(validate_history_table(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn only_marked_migrations_run_outside_a_transaction() {
        let v5 = embedded().iter().find(|m| m.version == 5).unwrap();
        assert!(!v5.runs_in_transaction());
        assert!(
            embedded()
                .iter()
                .filter(|m| m.version < 5)
                .all(EmbeddedMigration::runs_in_transaction)
        );
        let marked = |up: &'static str| EmbeddedMigration {
            version: 9,
            name: "x",
            up,
            down: "",
        };
        assert!(!marked("-- voidrunner:no-transaction\r\nSELECT 1;").runs_in_transaction());
        assert!(!marked("-- voidrunner:no-transaction  \n").runs_in_transaction());
        assert!(marked("\n-- voidrunner:no-transaction\n").runs_in_transaction());
        assert!(marked("-- voidrunner:no-transactions\n").runs_in_transaction());
        assert!(marked("").runs_in_transaction());
    }

    #[test]
    fn the_linter_knows_which_migrations_run_outside_a_transaction() {
        // CI lints with `assume_in_transaction`; a migration run outside one
        // must say so to squawk too (and only such a migration).
        for m in embedded() {
            assert_eq!(
                m.up.contains("-- squawk-disable-assume-in-transaction"),
                !m.runs_in_transaction(),
                "{}",
                m.label()
            );
        }
    }

    #[test]
    fn statements_split_at_top_level_semicolons() {
        let sql = "-- a comment; not a statement\n\
                   SELECT 1;\n\
                   /* block; /* nested; */ still; */ SELECT ';', 'it''s;', E'\\';', \"a;b\";\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n\
                   DO $$ BEGIN PERFORM 1; END $$;\n\
                   SELECT $1::int, a$b FROM t;;\n\
                   SELECT 'trailing, no semicolon'\n\
                   -- and a last comment";
        let got = split_statements(sql);
        let texts: Vec<&str> = got.iter().map(|s| s.sql).collect();
        assert_eq!(
            texts,
            [
                "SELECT 1",
                "SELECT ';', 'it''s;', E'\\';', \"a;b\"",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$",
                "DO $$ BEGIN PERFORM 1; END $$",
                "SELECT $1::int, a$b FROM t",
                "SELECT 'trailing, no semicolon'\n-- and a last comment",
            ]
        );
        assert_eq!(
            got.iter().map(|s| s.line).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6, 7]
        );
        assert!(split_statements("-- only\n/* comments */ ;\n").is_empty());
    }

    #[test]
    fn v5_runs_as_four_statements() {
        let v5 = embedded().iter().find(|m| m.version == 5).unwrap();
        let statements = split_statements(v5.up);
        let starts: Vec<String> = statements
            .iter()
            .map(|s| {
                s.sql
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            starts,
            [
                "ALTER TABLE task_executions",
                "WITH ranked AS",
                "DROP INDEX CONCURRENTLY",
                "CREATE UNIQUE INDEX",
            ]
        );
    }

    #[test]
    fn retry_backoff_grows_with_jitter_within_bounds() {
        let timeout = Duration::from_millis(200);
        for (retry, full) in [(1, 200), (2, 400), (3, 800), (4, 1600)] {
            for _ in 0..50 {
                let wait = retry_backoff(timeout, retry);
                assert!(
                    wait >= Duration::from_millis(full / 2) && wait <= Duration::from_millis(full),
                    "retry {retry}: {wait:?}"
                );
            }
        }
        // The base is capped at 1 s and the wait at 10 s.
        assert!(retry_backoff(Duration::from_secs(600), 1) <= Duration::from_secs(1));
        assert!(retry_backoff(Duration::from_secs(600), u32::MAX) <= Duration::from_secs(10));
        assert!(retry_backoff(Duration::from_millis(10), 0) <= Duration::from_millis(10));
    }
}
