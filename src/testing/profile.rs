//! What one statement reads, for plan tests: its buffers, and the index
//! and sequential scans it ran, those inside the functions it calls
//! included.

use std::collections::BTreeMap;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::error::{Error, Result};

/// What [`profile_statement`] measured of one run of a statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementProfile {
    /// Shared buffers the run touched (hit or read) while executing, the
    /// functions it called included; planning the statement itself is not
    /// counted.
    pub buffers: u64,
    /// Index scans the run started, by index name (scans inside functions
    /// included); indexes it did not scan are absent.
    pub index_scans: BTreeMap<String, i64>,
    /// Index entries those scans returned, by index name.
    pub index_entries_read: BTreeMap<String, i64>,
    /// Sequential scans the run started, by table name; tables it did not
    /// scan so are absent.
    pub seq_scans: BTreeMap<String, i64>,
    /// The statement's plan, as `EXPLAIN (ANALYZE, BUFFERS)` shows it, for
    /// assertion messages (a function's own queries are not in it; the
    /// counts above are).
    pub plan: String,
}

impl StatementProfile {
    /// Index entries read across every index.
    pub fn entries_read(&self) -> i64 {
        self.index_entries_read.values().sum()
    }

    /// Whether the run scanned the index `name`.
    pub fn scanned(&self, name: &str) -> bool {
        self.index_scans.get(name).is_some_and(|n| *n > 0)
    }
}

/// Runs `sql` once under `EXPLAIN (ANALYZE, BUFFERS)` in a transaction that
/// is rolled back, and reports what that run read: buffers from the plan,
/// index and sequential scans from the session's statistics counters of the
/// transaction (`pg_stat_get_xact_numscans` and `pg_stat_xact_user_tables`),
/// which count the scans of functions the statement calls too. The run's
/// writes are undone; `client` must be a session of its own (not inside a
/// transaction), such as [`TestDatabase::raw_client`](super::TestDatabase::raw_client).
///
/// A function's first call in a session compiles and plans it, reading the
/// catalogs; call this twice and keep the second profile to measure the
/// statement alone.
pub async fn profile_statement(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<StatementProfile> {
    client.batch_execute("BEGIN").await?;
    let measured = measure(client, sql, params).await;
    // Rolled back whatever happened: the run's writes, and an aborted
    // transaction after a failure.
    let rolled_back = client.batch_execute("ROLLBACK").await;
    let profile = measured?;
    rolled_back?;
    Ok(profile)
}

async fn measure(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<StatementProfile> {
    // Counters inside one transaction only grow (the session reports them
    // when it is idle outside a transaction), so the difference is this run.
    let before = counters(client).await?;
    let explained: serde_json::Value = client
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
            params,
        )
        .await?
        .try_get(0)?;
    let after = counters(client).await?;
    let plan = explained
        .get(0)
        .and_then(|p| p.get("Plan"))
        .ok_or_else(|| Error::validation("sql", "EXPLAIN returned no plan"))?;
    let blocks = |key: &str| {
        plan.get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let mut profile = StatementProfile {
        buffers: blocks("Shared Hit Blocks") + blocks("Shared Read Blocks"),
        plan: serde_json::to_string_pretty(plan).unwrap_or_default(),
        ..StatementProfile::default()
    };
    for ((kind, name), value) in after {
        let delta = value - before.get(&(kind, name.clone())).copied().unwrap_or(0);
        if delta <= 0 {
            continue;
        }
        let into = match kind {
            Counter::IndexScans => &mut profile.index_scans,
            Counter::IndexEntries => &mut profile.index_entries_read,
            Counter::SeqScans => &mut profile.seq_scans,
        };
        into.insert(name, delta);
    }
    Ok(profile)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Counter {
    IndexScans,
    IndexEntries,
    SeqScans,
}

async fn counters(client: &Client) -> Result<BTreeMap<(Counter, String), i64>> {
    let mut all = BTreeMap::new();
    for row in client
        .query(
            // pg_stat_xact_user_indexes does not exist; these are the
            // functions pg_stat_user_indexes reads, for this transaction.
            "SELECT c.relname::text, pg_stat_get_xact_numscans(c.oid), \
                    pg_stat_get_xact_tuples_returned(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await?
    {
        let name: String = row.try_get(0)?;
        all.insert((Counter::IndexScans, name.clone()), row.try_get(1)?);
        all.insert((Counter::IndexEntries, name), row.try_get(2)?);
    }
    for row in client
        .query(
            "SELECT relname::text, seq_scan FROM pg_stat_xact_user_tables",
            &[],
        )
        .await?
    {
        all.insert((Counter::SeqScans, row.try_get(0)?), row.try_get(1)?);
    }
    Ok(all)
}
