//! [`ExecutionQueue`] on PostgreSQL.
//!
//! Every operation is one statement whose CTEs lock rows in a fixed order —
//! executions first, then their tasks sorted by id — so concurrent workers
//! never deadlock, and whose UPDATEs re-check the state they act on, so a
//! change that committed in between is never overwritten.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::execution::{COLUMNS, execution_from_row};
use super::{Source, prefixed};
use crate::db::Database;
use crate::error::{Error, LeaseLostReason, Result};
use crate::model::{
    ClaimedExecution, ExecutionId, ExecutionStatus, Outcome, RescuePolicy, RescueReport,
    TaskExecution, TaskId, TaskStatus, Timestamp,
};
use crate::repo::ExecutionQueue;
use crate::tx::TxInner;
use crate::validate;

/// [`ExecutionQueue`] over the pool of a [`Database`].
#[derive(Debug, Clone)]
pub struct PgExecutionQueue {
    source: Source,
}

impl PgExecutionQueue {
    /// A queue over `db`'s pool.
    pub fn new(db: Database) -> Self {
        PgExecutionQueue {
            source: Source::Pool(db),
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>) -> Self {
        PgExecutionQueue {
            source: Source::Tx(tx),
        }
    }
}

/// Task statuses from which a task may be queued again (SPEC §3: pending
/// stays, failed | timeout | cancelled → pending).
fn enqueueable() -> Vec<&'static str> {
    TaskStatus::ALL
        .into_iter()
        .filter(|s| s.can_transition_to(TaskStatus::Pending))
        .map(TaskStatus::as_str)
        .collect()
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Why a worker's heartbeat or completion was refused, from the locked row.
fn lease_lost(
    execution: ExecutionId,
    status: ExecutionStatus,
    rescued: bool,
    owner: Option<&str>,
    worker: &str,
) -> Error {
    let reason = match status {
        ExecutionStatus::Cancelled => LeaseLostReason::Cancelled,
        // The rescuer keeps the expired lease on the row; a worker's own
        // timeout report clears it.
        ExecutionStatus::Timeout if rescued => LeaseLostReason::Expired,
        s if s.is_terminal() => LeaseLostReason::Finished,
        _ => LeaseLostReason::NotOwner,
    };
    let reason = if owner != Some(worker) && reason != LeaseLostReason::Cancelled {
        LeaseLostReason::NotOwner
    } else {
        reason
    };
    Error::LeaseLost { execution, reason }
}

/// The claim: `$1` worker, `$2` limit, `$3` lease in seconds.
///
/// `next` is a CTE so the LIMIT applies before the lock and the planner
/// cannot lock more rows than it returns; SKIP LOCKED lets concurrent
/// claimers pass each other instead of queueing. Tasks are locked in id
/// order after their executions, as everywhere else.
static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH next AS ( \
         SELECT id FROM task_executions \
         WHERE status = 'pending' AND run_after <= now() \
         ORDER BY priority DESC, run_after, id \
         LIMIT $2 \
         FOR UPDATE SKIP LOCKED \
       ), claimed AS ( \
         UPDATE task_executions e \
         SET status = 'running', started_at = now(), attempt = e.attempt + 1, \
             worker_id = $1, lease_expires_at = now() + make_interval(secs => $3), \
             heartbeat_at = now() \
         FROM next WHERE e.id = next.id AND e.status = 'pending' \
         RETURNING {returning} \
       ), task_locks AS ( \
         SELECT id FROM tasks \
         WHERE id IN (SELECT task_id FROM claimed) AND status = 'pending' \
         ORDER BY id FOR NO KEY UPDATE \
       ), started AS ( \
         UPDATE tasks t SET status = 'running' FROM task_locks l WHERE t.id = l.id \
       ) \
       SELECT {claimed}, t.script_content, t.script_type, t.timeout_seconds \
       FROM claimed c JOIN tasks t ON t.id = c.task_id \
       ORDER BY c.priority DESC, c.run_after, c.id",
        returning = prefixed("e", COLUMNS),
        claimed = prefixed("c", COLUMNS),
    )
});

/// The rescue: `$1` batch size, `$2` max attempts, `$3` ids for retries,
/// `$4` retry delay in seconds.
///
/// `expired` skips rows a worker is completing right now; the UPDATE
/// re-checks status and lease on the locked, latest row version, so an
/// execution completed or heartbeaten after this statement's snapshot is
/// left alone. A retried task goes straight back to pending (running →
/// timeout → pending, both legal).
const RESCUE_SQL: &str = "WITH expired AS ( \
                   SELECT id FROM task_executions \
                   WHERE status = 'running' AND lease_expires_at < now() \
                   ORDER BY lease_expires_at LIMIT $1 \
                   FOR UPDATE SKIP LOCKED \
                 ), timed_out AS ( \
                   UPDATE task_executions e SET status = 'timeout', completed_at = now() \
                   FROM expired x \
                   WHERE e.id = x.id AND e.status = 'running' AND e.lease_expires_at < now() \
                   RETURNING e.id, e.task_id, e.priority, e.attempt \
                 ), numbered AS ( \
                   SELECT task_id, priority, attempt, row_number() OVER (ORDER BY id) AS n \
                   FROM timed_out WHERE attempt < $2 \
                 ), retried AS ( \
                   INSERT INTO task_executions (id, task_id, priority, attempt, run_after) \
                   SELECT ($3::uuid[])[n], task_id, priority, attempt, \
                          now() + make_interval(secs => $4) \
                   FROM numbered \
                   RETURNING id, task_id \
                 ), task_locks AS ( \
                   SELECT id FROM tasks \
                   WHERE id IN (SELECT task_id FROM timed_out) AND status = 'running' \
                   ORDER BY id FOR NO KEY UPDATE \
                 ), task_follow AS ( \
                   UPDATE tasks t \
                   SET status = CASE WHEN t.id IN (SELECT task_id FROM retried) \
                                     THEN 'pending' ELSE 'timeout' END \
                   FROM task_locks l WHERE t.id = l.id \
                 ) \
                 SELECT false AS retry, id FROM timed_out \
                 UNION ALL \
                 SELECT true, id FROM retried";

/// One prune batch: `$1` age in seconds, `$2` batch size.
const PRUNE_SQL: &str = "DELETE FROM task_executions WHERE id IN ( \
                   SELECT id FROM task_executions \
                   WHERE status IN ('completed', 'failed', 'timeout', 'cancelled') \
                     AND completed_at < now() - make_interval(secs => $1) \
                   ORDER BY completed_at LIMIT $2 \
                   FOR UPDATE SKIP LOCKED \
                 )";

/// The statements of the queue whose plans tests check: `claim`, `rescue`,
/// `prune`. Not part of the API.
#[doc(hidden)]
pub fn __queue_sql(name: &str) -> Option<String> {
    match name {
        "claim" => Some(CLAIM_SQL.clone()),
        "rescue" => Some(RESCUE_SQL.to_owned()),
        "prune" => Some(PRUNE_SQL.to_owned()),
        _ => None,
    }
}

pub(crate) mod sql {
    use super::*;

    pub(crate) async fn enqueue(
        client: &impl GenericClient,
        task_id: TaskId,
        run_after: Option<Timestamp>,
    ) -> Result<TaskExecution> {
        // The task row is locked first, so enqueues and status changes of
        // one task take turns; the INSERT happens only from a status that may
        // move to pending.
        // Built once: this runs on every call of a worker's hot path.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH task AS ( \
                   SELECT id, status, priority FROM tasks WHERE id = $1 FOR NO KEY UPDATE \
                 ), moved AS ( \
                   UPDATE tasks t SET status = 'pending' FROM task \
                   WHERE t.id = task.id AND task.status <> 'pending' AND task.status = ANY($4) \
                 ), queued AS ( \
                   INSERT INTO task_executions (id, task_id, priority, run_after) \
                   SELECT $2, task.id, task.priority, COALESCE($3, now()) FROM task \
                   WHERE task.status = ANY($4) \
                   RETURNING {COLUMNS} \
                 ) \
                 SELECT task.status AS task_status, queued.id IS NOT NULL AS queued, {queued} \
                 FROM task LEFT JOIN queued ON true",
                queued = prefixed("queued", COLUMNS),
            )
        });
        let stmt = client.prepare_cached(&SQL).await?;
        let row = client
            .query_opt(
                &stmt,
                &[&task_id, &ExecutionId::new(), &run_after, &enqueueable()],
            )
            .await?
            .ok_or_else(|| Error::not_found("task", task_id))?;
        if row.get::<_, bool>("queued") {
            return Ok(execution_from_row(&row));
        }
        let status: TaskStatus = row.get("task_status");
        Err(Error::InvalidTransition {
            entity: "task",
            from: status.as_str(),
            to: TaskStatus::Pending.as_str(),
        })
    }

    pub(crate) async fn enqueue_many(
        client: &impl GenericClient,
        task_ids: &[TaskId],
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let execution_ids: Vec<ExecutionId> = task_ids.iter().map(|_| ExecutionId::new()).collect();
        // All or nothing in one statement: `ok` holds only if every requested
        // task exists and may be queued, and both writes depend on it. Tasks
        // are locked in id order, so concurrent batches cannot deadlock.
        // Built once: this runs on every call of a worker's hot path.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH req AS ( \
                   SELECT task_id, execution_id, ord \
                   FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(task_id, execution_id, ord) \
                 ), task AS ( \
                   SELECT id, status, priority FROM tasks \
                   WHERE id IN (SELECT task_id FROM req) ORDER BY id FOR NO KEY UPDATE \
                 ), ok AS ( \
                   SELECT count(*) = (SELECT count(*) FROM req) AS all_ok \
                   FROM req JOIN task ON task.id = req.task_id WHERE task.status = ANY($4) \
                 ), moved AS ( \
                   UPDATE tasks t SET status = 'pending' FROM task, ok \
                   WHERE ok.all_ok AND t.id = task.id AND task.status <> 'pending' \
                 ), queued AS ( \
                   INSERT INTO task_executions (id, task_id, priority, run_after) \
                   SELECT req.execution_id, task.id, task.priority, COALESCE($3, now()) \
                   FROM req JOIN task ON task.id = req.task_id, ok \
                   WHERE ok.all_ok ORDER BY req.ord \
                   RETURNING {COLUMNS} \
                 ) \
                 SELECT req.task_id AS requested, task.status AS task_status, \
                        queued.id IS NOT NULL AS queued, {queued} \
                 FROM req LEFT JOIN task ON task.id = req.task_id \
                 LEFT JOIN queued ON queued.id = req.execution_id \
                 ORDER BY req.ord",
                queued = prefixed("queued", COLUMNS),
            )
        });
        let stmt = client.prepare_cached(&SQL).await?;
        let rows = client
            .query(
                &stmt,
                &[&task_ids, &execution_ids, &run_after, &enqueueable()],
            )
            .await?;
        if rows.iter().all(|r| r.get::<_, bool>("queued")) {
            return Ok(rows.iter().map(execution_from_row).collect());
        }
        for row in &rows {
            match row.get::<_, Option<TaskStatus>>("task_status") {
                None => return Err(Error::not_found("task", row.get::<_, TaskId>("requested"))),
                Some(status) if !status.can_transition_to(TaskStatus::Pending) => {
                    return Err(Error::InvalidTransition {
                        entity: "task",
                        from: status.as_str(),
                        to: TaskStatus::Pending.as_str(),
                    });
                }
                Some(_) => {}
            }
        }
        // Unreachable while the tasks stay locked; answered as retryable
        // rather than trusted.
        Err(Error::unavailable(
            "the batch changed while it was being queued; nothing was queued",
            None,
        ))
    }

    pub(crate) async fn claim(
        client: &impl GenericClient,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedExecution>> {
        let stmt = client.prepare_cached(&CLAIM_SQL).await?;
        let rows = client
            .query(&stmt, &[&worker_id, &i64::from(limit), &seconds(lease)])
            .await?;
        Ok(rows
            .iter()
            .map(|row| ClaimedExecution {
                execution: execution_from_row(row),
                script_content: row.get("script_content"),
                script_type: row.get("script_type"),
                timeout_seconds: row.get("timeout_seconds"),
            })
            .collect())
    }

    pub(crate) async fn heartbeat(
        client: &impl GenericClient,
        id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Timestamp> {
        let stmt = client
            .prepare_cached(
                "WITH current AS ( \
                   SELECT id, status, worker_id, lease_expires_at FROM task_executions \
                   WHERE id = $1 FOR NO KEY UPDATE \
                 ), beat AS ( \
                   UPDATE task_executions e \
                   SET lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now() \
                   FROM current c \
                   WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = $2 \
                   RETURNING e.lease_expires_at \
                 ) \
                 SELECT c.status, c.worker_id, c.lease_expires_at IS NOT NULL AS leased, \
                        beat.lease_expires_at AS new_lease \
                 FROM current c LEFT JOIN beat ON true",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&id, &worker_id, &seconds(lease)])
            .await?
            .ok_or_else(|| Error::not_found("execution", id))?;
        match row.get::<_, Option<Timestamp>>("new_lease") {
            Some(lease) => Ok(lease),
            None => Err(refusal(id, &row, worker_id)),
        }
    }

    fn refusal(id: ExecutionId, row: &Row, worker_id: &str) -> Error {
        lease_lost(
            id,
            row.get("status"),
            row.get("leased"),
            row.get::<_, Option<&str>>("worker_id"),
            worker_id,
        )
    }

    pub(crate) async fn complete(
        client: &impl GenericClient,
        id: ExecutionId,
        worker_id: &str,
        outcome: &Outcome,
    ) -> Result<TaskExecution> {
        // The lease need not still be in the future: until the rescuer has
        // timed the execution out, nobody else can own it, and the result is
        // worth keeping. After the rescue, the status check refuses it.
        // Built once: this runs on every call of a worker's hot path.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH current AS ( \
                   SELECT id, status, worker_id, lease_expires_at FROM task_executions \
                   WHERE id = $1 FOR NO KEY UPDATE \
                 ), done AS ( \
                   UPDATE task_executions e \
                   SET status = $3, return_code = $4, stdout = $5, stderr = $6, \
                       execution_time_ms = $7, memory_usage_bytes = $8, \
                       completed_at = now(), lease_expires_at = NULL \
                   FROM current c \
                   WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = $2 \
                   RETURNING {returning} \
                 ), task_done AS ( \
                   UPDATE tasks t SET status = $3 FROM done \
                   WHERE t.id = done.task_id AND t.status = 'running' \
                 ) \
                 SELECT c.status AS current_status, c.worker_id AS current_worker, \
                        c.lease_expires_at IS NOT NULL AS leased, done.id IS NOT NULL AS done, {done} \
                 FROM current c LEFT JOIN done ON true",
                returning = prefixed("e", COLUMNS),
                done = prefixed("done", COLUMNS),
            )
        });
        let stmt = client.prepare_cached(&SQL).await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &id,
                    &worker_id,
                    &outcome.status,
                    &outcome.return_code,
                    &outcome.stdout,
                    &outcome.stderr,
                    &outcome.execution_time_ms,
                    &outcome.memory_usage_bytes,
                ],
            )
            .await?
            .ok_or_else(|| Error::not_found("execution", id))?;
        if row.get::<_, bool>("done") {
            return Ok(execution_from_row(&row));
        }
        Err(lease_lost(
            id,
            row.get("current_status"),
            row.get("leased"),
            row.get::<_, Option<&str>>("current_worker"),
            worker_id,
        ))
    }

    pub(crate) async fn cancel(
        client: &impl GenericClient,
        id: ExecutionId,
    ) -> Result<TaskExecution> {
        // Built once: this runs on every call of a worker's hot path.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH current AS ( \
                   SELECT id, status FROM task_executions WHERE id = $1 FOR NO KEY UPDATE \
                 ), cancelled AS ( \
                   UPDATE task_executions e SET status = 'cancelled', completed_at = now() \
                   FROM current c WHERE e.id = c.id AND c.status IN ('pending', 'running') \
                   RETURNING {returning} \
                 ), task_cancelled AS ( \
                   UPDATE tasks t SET status = 'cancelled' FROM cancelled x \
                   WHERE t.id = x.task_id AND t.status IN ('pending', 'running') \
                 ) \
                 SELECT c.status AS current_status, x.id IS NOT NULL AS cancelled, {cancelled} \
                 FROM current c LEFT JOIN cancelled x ON true",
                returning = prefixed("e", COLUMNS),
                cancelled = prefixed("x", COLUMNS),
            )
        });
        let stmt = client.prepare_cached(&SQL).await?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await?
            .ok_or_else(|| Error::not_found("execution", id))?;
        if row.get::<_, bool>("cancelled") {
            return Ok(execution_from_row(&row));
        }
        let status: ExecutionStatus = row.get("current_status");
        Err(Error::InvalidTransition {
            entity: "execution",
            from: status.as_str(),
            to: ExecutionStatus::Cancelled.as_str(),
        })
    }

    pub(crate) async fn rescue_expired(
        client: &impl GenericClient,
        policy: &RescuePolicy,
    ) -> Result<RescueReport> {
        let retry_ids: Vec<ExecutionId> =
            (0..policy.batch_size).map(|_| ExecutionId::new()).collect();
        let stmt = client.prepare_cached(RESCUE_SQL).await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &i64::from(policy.batch_size),
                    &policy.max_attempts,
                    &retry_ids,
                    &seconds(policy.retry_delay),
                ],
            )
            .await?;
        let mut report = RescueReport::default();
        for row in rows {
            let id: ExecutionId = row.get("id");
            if row.get("retry") {
                report.retried.push(id);
            } else {
                report.timed_out.push(id);
            }
        }
        Ok(report)
    }

    /// One batch of [`ExecutionQueue::prune`].
    pub(crate) async fn prune_batch(
        client: &impl GenericClient,
        older_than: Duration,
        batch_size: u32,
    ) -> Result<u64> {
        let stmt = client.prepare_cached(PRUNE_SQL).await?;
        Ok(client
            .execute(&stmt, &[&seconds(older_than), &i64::from(batch_size)])
            .await?)
    }
}

#[async_trait]
impl ExecutionQueue for PgExecutionQueue {
    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "enqueue"))]
    async fn enqueue(
        &self,
        task_id: TaskId,
        run_after: Option<Timestamp>,
    ) -> Result<TaskExecution> {
        sql::enqueue(&*self.source.conn().await?, task_id, run_after).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "enqueue_many", count = task_ids.len()))]
    async fn enqueue_many(
        &self,
        task_ids: Vec<TaskId>,
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>> {
        sql::enqueue_many(&*self.source.conn().await?, &task_ids, run_after).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "claim", limit))]
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedExecution>> {
        validate::worker_id(worker_id)?;
        validate::claim_limit(limit)?;
        validate::lease(lease)?;
        sql::claim(&*self.source.conn().await?, worker_id, limit, lease).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "heartbeat"))]
    async fn heartbeat(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Timestamp> {
        validate::worker_id(worker_id)?;
        validate::lease(lease)?;
        sql::heartbeat(&*self.source.conn().await?, execution_id, worker_id, lease).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "complete"))]
    async fn complete(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        outcome: Outcome,
    ) -> Result<TaskExecution> {
        validate::worker_id(worker_id)?;
        validate::outcome(&outcome)?;
        sql::complete(
            &*self.source.conn().await?,
            execution_id,
            worker_id,
            &outcome,
        )
        .await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "cancel"))]
    async fn cancel(&self, execution_id: ExecutionId) -> Result<TaskExecution> {
        sql::cancel(&*self.source.conn().await?, execution_id).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "rescue_expired"))]
    async fn rescue_expired(&self, policy: RescuePolicy) -> Result<RescueReport> {
        if policy.batch_size == 0 || policy.batch_size > validate::MAX_CLAIM {
            return Err(Error::validation(
                "batch_size",
                format!("must be between 1 and {}", validate::MAX_CLAIM),
            ));
        }
        if policy.max_attempts < 0 {
            return Err(Error::validation("max_attempts", "must not be negative"));
        }
        validate::duration_at_most("retry_delay", policy.retry_delay, validate::MAX_RETRY_DELAY)?;
        let report = sql::rescue_expired(&*self.source.conn().await?, &policy).await?;
        if !report.timed_out.is_empty() {
            tracing::info!(
                timed_out = report.timed_out.len(),
                retried = report.retried.len(),
                "rescued expired executions"
            );
        }
        Ok(report)
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, fields(op = "prune"))]
    async fn prune(&self, older_than: Duration, batch_size: u32) -> Result<u64> {
        if batch_size == 0 {
            return Err(Error::validation("batch_size", "must be at least 1"));
        }
        validate::duration_at_most("older_than", older_than, validate::MAX_PRUNE_AGE)?;
        let mut total = 0;
        loop {
            // A connection per batch: between batches, others get the pool.
            let deleted =
                sql::prune_batch(&*self.source.conn().await?, older_than, batch_size).await?;
            total += deleted;
            if deleted < u64::from(batch_size) {
                return Ok(total);
            }
        }
    }
}
