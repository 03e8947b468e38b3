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

mod lock;
mod session;
mod split;
#[cfg(test)]
mod tests;

use lock::*;
use session::*;
use split::*;

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
    take_role(&client, config).await?;
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

/// Takes [`DbConfig::role`] on a dedicated session: the objects a
/// migration creates are then the role's (the schema owner's, see
/// `crate::roles`), and the history is read with the role's privileges.
/// The lock watcher's session keeps the login's, which may see more of
/// `pg_stat_activity`.
async fn take_role(client: &Client, config: &DbConfig) -> Result<()> {
    let Some(sql) = config.set_role_sql() else {
        return Ok(());
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| config.role_refused(Error::from(e)))
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
