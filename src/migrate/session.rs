//! One migration session: its dedicated connection, the advisory lock,
//! `lock_timeout` and the retries of a migration that met contention.

use super::*;

/// Why one attempt at a migration failed.
pub(super) enum Failure {
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
    pub(super) fn from_pg(
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
pub(super) fn contention(code: Option<&SqlState>) -> Option<bool> {
    match code {
        Some(code) if *code == SqlState::LOCK_NOT_AVAILABLE => Some(false),
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED => Some(true),
        _ => None,
    }
}

/// [`contention`] of `err` or the first of its sources that says.
pub(super) fn caused_by_contention(err: &(dyn std::error::Error + 'static)) -> Option<bool> {
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
pub(super) struct Session {
    pub(super) client: Client,
    pub(super) config: DbConfig,
    pub(super) connector: Connector,
    /// The server process of `client`, watched by [`LockWatch`].
    pub(super) pid: i32,
    pub(super) watch: Option<LockWatch>,
}

impl Session {
    pub(super) async fn open(config: &DbConfig, connector: &Connector) -> Result<Self> {
        config.validate()?;
        let client = dedicated_connection(config, connector).await?;
        take_role(&client, config).await?;
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
    pub(super) async fn set_lock_timeout(&self) -> Result<()> {
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
    pub(super) fn watch_locks(&mut self) {
        if self.watch.is_none() {
            self.watch = Some(LockWatch::start(
                &self.config,
                &self.connector,
                self.pid,
                self.config.migration_lock_timeout,
            ));
        }
    }

    pub(super) fn attempt_started(&self) {
        if let Some(watch) = &self.watch {
            watch.clear();
        }
    }

    /// After a failed attempt: `Ok` to try again (after the backoff), or
    /// the error to return.
    pub(super) async fn after_failure(&self, failure: Failure, retry: &mut u32) -> Result<()> {
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
    pub(super) async fn run_refinery(
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
    pub(super) async fn run_without_transaction(
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

    pub(super) async fn close(self) {
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
pub(super) async fn run_statements(client: &Client, sql: &str, label: &str) -> Result<(), Failure> {
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
pub(super) async fn acquire_migration_lock(client: &Client) -> Result<()> {
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
pub(super) fn retry_backoff(lock_timeout: Duration, retry: u32) -> Duration {
    let base = lock_timeout.min(Duration::from_secs(1));
    let full = base
        .saturating_mul(1 << retry.clamp(1, 16).saturating_sub(1))
        .min(Duration::from_secs(10));
    let half = full / 2;
    let range = half.as_micros().max(1) as u64;
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % range;
    half + Duration::from_micros(jitter)
}
