//! Who holds the lock a migration waits for: named in its error.

use super::*;

/// Watches the migration session from a second connection and remembers
/// what it last waited for: `lock_timeout` cancels the wait, after which the
/// server no longer shows it.
pub(super) struct LockWatch {
    pub(super) seen: Arc<Mutex<Option<(Instant, String)>>>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl LockWatch {
    pub(super) fn start(
        config: &DbConfig,
        connector: &Connector,
        pid: i32,
        lock_timeout: Duration,
    ) -> Self {
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

    pub(super) fn clear(&self) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// What the session waited for, if seen during the last wait.
    pub(super) fn recent(&self, lock_timeout: Duration) -> Option<String> {
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
pub(super) const LOCK_WAIT_SQL: &str = "\
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

pub(super) async fn describe_lock_wait(
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
