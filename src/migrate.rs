//! Embedded, reversible, lock-protected schema migrations.
//!
//! The up scripts (`migrations/V{n}__{name}.sql`) are applied by refinery;
//! their down scripts (`migrations/down/V{n}__{name}.down.sql`) are run by
//! this module, since refinery is forward-only. Both are compiled into the
//! library (see `build.rs`).
//!
//! Every operation runs on a dedicated connection (never a pooled one) that
//! first takes a PostgreSQL advisory lock, so service instances starting
//! together against an empty database queue up and exactly one applies each
//! migration. The connection is closed afterwards, which releases the lock
//! even when a step failed half-way.

use std::fmt;

use refinery::{Migration, Runner};
use tokio_postgres::{Client, NoTls};
use tracing::Instrument as _;

use crate::config::DbConfig;
use crate::error::{Error, Result};

/// The history table. Not refinery's default name, so a host application
/// using refinery for its own schema in the same database never collides.
pub const HISTORY_TABLE: &str = "voidrunner_db_schema_history";

/// Key of the session advisory lock held while migrating ("voidrun" + 1).
pub const MIGRATION_LOCK_KEY: i64 = 0x766F_6964_7275_6E01;

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
pub(crate) async fn up(config: &DbConfig) -> Result<Vec<i32>> {
    let span = tracing::info_span!("voidrunner_db.migrate", direction = "up");
    async {
        let mut client = locked_connection(config).await?;
        let result = apply(&mut client).await;
        release(&client).await;
        let applied = result?;
        tracing::info!(?applied, "migrations applied");
        Ok(applied)
    }
    .instrument(span)
    .await
}

async fn apply(client: &mut Client) -> Result<Vec<i32>> {
    let migrations = EMBEDDED
        .iter()
        .map(|m| {
            Migration::unapplied(&format!("V{}__{}", m.version, m.name), m.up).map_err(|e| {
                Error::migration(
                    format!("embedded migration V{} is malformed", m.version),
                    Some(Box::new(e)),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Each migration runs in its own transaction together with its history
    // row (refinery's non-grouped mode); a migration edited after it was
    // applied aborts the run instead of being silently skipped.
    let mut runner = Runner::new(&migrations)
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    let report = runner
        .run_async(client)
        .await
        .map_err(|e| Error::migration(e.to_string(), Some(Box::new(e))))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect())
}

/// Runs down scripts, newest first, each in a transaction together with the
/// removal of its history row. Returns the versions reverted.
pub(crate) async fn down(config: &DbConfig, target: DownTarget) -> Result<Vec<i32>> {
    let span = tracing::info_span!("voidrunner_db.migrate", direction = "down", ?target);
    async {
        let mut client = locked_connection(config).await?;
        let result = revert(&mut client, target).await;
        release(&client).await;
        let reverted = result?;
        tracing::info!(?reverted, "migrations reverted");
        Ok(reverted)
    }
    .instrument(span)
    .await
}

async fn revert(client: &mut Client, target: DownTarget) -> Result<Vec<i32>> {
    let applied = read_history(client).await?;
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
                .map(|e| (m.version, e.down))
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
    let delete = format!("DELETE FROM {HISTORY_TABLE} WHERE version = $1");
    let mut reverted = Vec::with_capacity(scripts.len());
    for (version, down_sql) in scripts {
        let failed = |e: tokio_postgres::Error| {
            Error::migration(format!("reverting V{version} failed"), Some(Box::new(e)))
        };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(down_sql).await.map_err(failed)?;
        tx.execute(&delete, &[&version]).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        reverted.push(version);
    }
    Ok(reverted)
}

/// Lists applied and pending migrations. Takes no lock: a concurrent
/// migration shows up as applied or pending, never half-way.
pub(crate) async fn status(config: &DbConfig) -> Result<MigrationStatus> {
    let client = dedicated_connection(config).await?;
    let applied = read_history(&client).await?;
    let pending = EMBEDDED
        .iter()
        .filter(|e| !applied.iter().any(|a| a.version == e.version))
        .copied()
        .collect();
    Ok(MigrationStatus { applied, pending })
}

async fn read_history(client: &Client) -> Result<Vec<AppliedMigration>> {
    let failed = |e: tokio_postgres::Error| {
        Error::migration("reading the migration history failed", Some(Box::new(e)))
    };
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await
        .map_err(failed)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT version, name, applied_on FROM {HISTORY_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .map_err(failed)?;
    Ok(rows
        .iter()
        .map(|row| AppliedMigration {
            version: row.get(0),
            name: row.get::<_, Option<String>>(1).unwrap_or_default(),
            applied_on: row.get::<_, Option<String>>(2).unwrap_or_default(),
        })
        .collect())
}

/// A connection outside the pool. Its driver task ends when the client is
/// dropped, which closes the session and frees any advisory lock it holds.
async fn dedicated_connection(config: &DbConfig) -> Result<Client> {
    let (client, connection) = config.dedicated_pg_config().connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    Ok(client)
}

async fn locked_connection(config: &DbConfig) -> Result<Client> {
    let client = dedicated_connection(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| Error::migration("taking the migration lock failed", Some(Box::new(e))))?;
    Ok(client)
}

async fn release(client: &Client) {
    // Best effort: dropping the connection releases the lock anyway.
    if let Err(e) = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
    {
        tracing::debug!(error = %e, "releasing the migration lock failed; closing the connection releases it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
