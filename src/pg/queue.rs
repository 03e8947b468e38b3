//! [`ExecutionQueue`] on PostgreSQL, and the one owner of execution status
//! changes.
//!
//! Every operation is one statement whose UPDATEs re-check the state they act
//! on, so a change that committed in between is never overwritten.
//!
//! # Lock order
//!
//! A user, then its tasks in id order, then their executions. Every
//! statement that writes an execution locks its task first (heartbeat and
//! `ExecutionRepository::update` too, so a transaction that records output
//! and then completes keeps the order); `enqueue_many` locks its tasks in id
//! order; deleting a user locks the user row, then its tasks in id order
//! (separate statements, so tasks created meanwhile cannot slip past the
//! order), then lets the cascade delete them. `claim` and `rescue_expired`
//! lock the execution and its task with SKIP LOCKED and never wait. No two
//! calls of the crate can therefore wait on each other in a cycle: no
//! deadlocks, deletes included.
//!
//! # One active execution per task
//!
//! A partial unique index allows one pending or running execution per task.
//! The statements that add an execution lock its task first and also update
//! it, so a statement holding the task lock whose snapshot shows the locked
//! version of the task sees every execution of that task (the `fresh` check
//! in [`ENQUEUE_SQL`]); otherwise it writes nothing and runs again.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;

use super::execution::{COLUMN_NAMES, COLUMNS, execution_from_row, read_execution};
use super::{Columns, Conn, RowReader, Source, execution, joined, prefixed};
use crate::db::Database;
use crate::error::{Error, LeaseLostReason, Result};
use crate::model::{
    ClaimedExecution, Completion, ExecutionId, ExecutionStatus, Heartbeat, Outcome, RescuePolicy,
    RescueReport, TaskExecution, TaskId, TaskStatus, Timestamp,
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

/// Task statuses from which a task may be queued again (the task state
/// machine of the [domain reference](crate::domain#state-machines): pending
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

/// The columns of a claimed row: the execution's, then its task's script
/// (see [`CLAIM_SQL`]), in `read_claimed`'s order.
static CLAIMED_COLUMNS: Columns = Columns {
    entity: "execution",
    names: &joined::<18, 3, 21>(
        execution::NAMES,
        ["script_content", "script_type", "timeout_seconds"],
    ),
};

/// The claim: `$1` worker, `$2` limit, `$3` lease in seconds.
///
/// `voidrunner_claim` (migration V8) does it all: it picks pending
/// executions whose run_after has come, in claim order, only those whose
/// task is pending (a cancelled task's work never runs), locks each task,
/// then its execution, skipping rows another transaction holds, and claims
/// them; their tasks move to running. It walks the claim index under
/// planner settings that leave no other plan, so a claim reads what it
/// takes, whatever the statistics say; and it never waits, so a claim can
/// take no part in a deadlock. The locks read the latest committed
/// versions of both rows, so a change committed after this statement's
/// snapshot is seen; so do the function's updates (this statement's own
/// snapshot could not update a row committed after it was taken, which is
/// why they are not made here).
static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {claimed}, c.script_content, c.script_type, c.timeout_seconds \
         FROM voidrunner_claim($1, $2, $3) c \
         ORDER BY c.priority DESC, c.run_after, c.id",
        claimed = prefixed("c", COLUMNS),
    )
});

/// The rescue: `$1` batch size, `$2` max attempts, `$3` ids for retries,
/// `$4` retry delay in seconds.
///
/// `voidrunner_expired_leases` (migration V7) locks each expired execution
/// and its task with SKIP LOCKED (never waiting, like the claim), skipping
/// rows a worker is completing right now, oldest expiry first, walking the
/// lease index whatever the statistics say. The lock rechecks status and
/// lease on the latest row version, so an execution completed or
/// heartbeaten after this statement's snapshot is left alone; holding the
/// lock, the updates need no condition but the primary key (one on status
/// would let the planner reach the rows through a status index instead). A
/// retry is queued only while the task is still running (a cancelled task is
/// never retried); the retried task goes straight back to pending (running →
/// timeout → pending, both legal).
const RESCUE_SQL: &str = "WITH expired AS MATERIALIZED ( \
                   SELECT x.execution_id, x.task_id, x.task_status \
                   FROM voidrunner_expired_leases($1) x \
                 ), timed_out AS ( \
                   UPDATE task_executions e \
                   SET status = 'timeout', completed_at = greatest(now(), e.started_at), \
                       updated_at = now() \
                   FROM expired x \
                   WHERE e.id = x.execution_id \
                   RETURNING e.id, e.task_id, e.priority, e.attempt, x.task_status \
                 ), numbered AS ( \
                   SELECT task_id, priority, attempt, row_number() OVER (ORDER BY id) AS n \
                   FROM timed_out WHERE attempt < $2 AND task_status = 'running' \
                 ), retried AS ( \
                   INSERT INTO task_executions (id, task_id, priority, attempt, run_after) \
                   SELECT ($3::uuid[])[n], task_id, priority, attempt, \
                          now() + make_interval(secs => $4) \
                   FROM numbered \
                   RETURNING id, task_id \
                 ), task_follow AS ( \
                   UPDATE tasks t \
                   SET status = CASE WHEN t.id IN (SELECT task_id FROM retried) \
                                     THEN 'pending' ELSE 'timeout' END, \
                       updated_at = now() \
                   FROM timed_out o WHERE t.id = o.task_id AND o.task_status = 'running' \
                 ) \
                 SELECT false AS retry, id FROM timed_out \
                 UNION ALL \
                 SELECT true, id FROM retried";

/// One prune batch: `$1` age in seconds, `$2` batch size. The candidates
/// come from `voidrunner_prunable` (migration V7), which walks the prune
/// index oldest first whatever the statistics say, and are deleted by
/// primary key.
const PRUNE_SQL: &str = "DELETE FROM task_executions e \
                 USING voidrunner_prunable(now() - make_interval(secs => $1), $2) p \
                 WHERE e.id = p.execution_id";

/// The enqueue of one task: `$1` task, `$2` new execution id, `$3`
/// run_after, `$4` task statuses that may move to pending.
///
/// The task is locked first. `fresh` compares the locked row version with
/// the one this statement's snapshot sees: every writer that adds an
/// execution also updates its task, so when they are the same version, the
/// snapshot sees every execution of the task and `active` is exact. When
/// they differ (another transaction changed the task after the snapshot was
/// taken), nothing is written and the caller runs the statement again with
/// a new snapshot. A task that has an active execution gets that execution
/// back (enqueue is idempotent); otherwise a new one is queued and the task
/// moves to pending (a pending task is still updated, to mark the change).
static ENQUEUE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH task AS MATERIALIZED ( \
           SELECT id, status, priority, xmin AS version FROM tasks WHERE id = $1 FOR NO KEY UPDATE \
         ), fresh AS ( \
           SELECT task.version = (SELECT xmin FROM tasks WHERE id = $1) AS ok FROM task \
         ), active AS ( \
           SELECT {COLUMNS} FROM task_executions \
           WHERE task_id = $1 AND status IN ('pending', 'running') \
         ), go AS ( \
           SELECT task.id, task.priority FROM task, fresh \
           WHERE fresh.ok AND task.status = ANY($4) AND NOT EXISTS (SELECT 1 FROM active) \
         ), moved AS ( \
           UPDATE tasks t SET status = 'pending', updated_at = now() FROM go WHERE t.id = go.id \
         ), queued AS ( \
           INSERT INTO task_executions (id, task_id, priority, run_after) \
           SELECT $2, go.id, go.priority, COALESCE($3, now()) FROM go \
           RETURNING {COLUMNS} \
         ), result AS ( \
           SELECT {COLUMNS} FROM queued UNION ALL SELECT {COLUMNS} FROM active \
         ) \
         SELECT task.status AS task_status, fresh.ok AS fresh, r.id IS NOT NULL AS found, {result} \
         FROM task CROSS JOIN fresh LEFT JOIN result r ON true",
        result = prefixed("r", COLUMNS),
    )
});

/// [`ENQUEUE_SQL`] for many tasks, all or nothing: `$1` task ids, `$2` new
/// execution ids, `$3` run_after, `$4` task statuses that may move to
/// pending. Tasks are locked in id order, so concurrent batches cannot
/// deadlock. A task named twice is queued once.
static ENQUEUE_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH req AS ( \
           SELECT task_id, execution_id, ord \
           FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(task_id, execution_id, ord) \
         ), task AS MATERIALIZED ( \
           SELECT id, status, priority, xmin AS version FROM tasks \
           WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE \
         ), snap AS ( \
           SELECT id, xmin AS version FROM tasks WHERE id = ANY($1::uuid[]) \
         ), active AS ( \
           SELECT {COLUMNS} FROM task_executions \
           WHERE task_id = ANY($1::uuid[]) AND status IN ('pending', 'running') \
         ), ok AS ( \
           SELECT NOT EXISTS ( \
                    SELECT 1 FROM task LEFT JOIN snap ON snap.id = task.id \
                    WHERE snap.version IS NULL OR NOT task.version = snap.version \
                  ) AS fresh, \
                  (SELECT count(DISTINCT task_id) FROM req) = ( \
                    SELECT count(*) FROM task \
                    WHERE status = ANY($4) OR id IN (SELECT task_id FROM active) \
                  ) AS all_ok \
         ), go AS ( \
           SELECT DISTINCT ON (req.task_id) req.task_id, req.execution_id, task.priority, req.ord \
           FROM req JOIN task ON task.id = req.task_id, ok \
           WHERE ok.fresh AND ok.all_ok \
             AND NOT EXISTS (SELECT 1 FROM active a WHERE a.task_id = req.task_id) \
           ORDER BY req.task_id, req.ord \
         ), moved AS ( \
           UPDATE tasks t SET status = 'pending', updated_at = now() \
           FROM go WHERE t.id = go.task_id \
         ), queued AS ( \
           INSERT INTO task_executions (id, task_id, priority, run_after) \
           SELECT execution_id, task_id, priority, COALESCE($3, now()) FROM go ORDER BY ord \
           RETURNING {COLUMNS} \
         ), result AS ( \
           SELECT {COLUMNS} FROM queued UNION ALL SELECT {COLUMNS} FROM active \
         ) \
         SELECT req.task_id AS requested, task.status AS task_status, ok.fresh, ok.all_ok, \
                r.id IS NOT NULL AS found, {result} \
         FROM req CROSS JOIN ok \
         LEFT JOIN task ON task.id = req.task_id \
         LEFT JOIN result r ON r.task_id = req.task_id \
         ORDER BY req.ord",
        result = prefixed("r", COLUMNS),
    )
});

/// The end of a running execution reported by its worker: `$1` execution,
/// `$2` worker, `$3` status, `$4`–`$8` the outcome.
///
/// Locks the task, then the execution (the crate's one lock order), and
/// re-checks status and owner on the locked row. The lease need not still be
/// in the future: until the rescuer has timed the execution out, nobody else
/// can own it, and the result is worth keeping. After the rescue, the status
/// check refuses it.
static COMPLETE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH task AS MATERIALIZED ( \
           SELECT t.id, t.status FROM tasks t \
           WHERE t.id = (SELECT task_id FROM task_executions WHERE id = $1) \
           FOR NO KEY UPDATE \
         ), current AS MATERIALIZED ( \
           SELECT e.id, e.status, e.worker_id, e.lease_expires_at \
           FROM task_executions e JOIN task ON task.id = e.task_id \
           WHERE e.id = $1 FOR NO KEY UPDATE OF e \
         ), done AS ( \
           UPDATE task_executions e \
           SET status = $3, return_code = $4, stdout = $5, stderr = $6, \
               execution_time_ms = $7, memory_usage_bytes = $8, \
               completed_at = greatest(now(), e.started_at), lease_expires_at = NULL, \
               updated_at = now() \
           FROM current c \
           WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = $2 \
           RETURNING {returning} \
         ), task_done AS ( \
           UPDATE tasks t SET status = $3, updated_at = now() FROM done, task k \
           WHERE t.id = done.task_id AND k.id = done.task_id AND k.status = 'running' \
         ) \
         SELECT c.status AS current_status, c.worker_id AS current_worker, \
                c.lease_expires_at IS NOT NULL AS leased, done.id IS NOT NULL AS done, {done} \
         FROM current c LEFT JOIN done ON true",
        returning = prefixed("e", COLUMNS),
        done = prefixed("done", COLUMNS),
    )
});

/// [`COMPLETE_SQL`] for many executions: `$1` executions (no id twice),
/// `$2` workers, `$3` statuses, `$4`–`$8` the outcomes, one array element
/// per completion.
///
/// Locks every named execution's task, in task id order, then the
/// executions in id order (the crate's lock order, and one order for every
/// concurrent batch, so batches cannot deadlock), and re-checks status and
/// owner of each locked row against its own completion, as
/// [`COMPLETE_SQL`] does for one. One row per completion, in input order;
/// `current_status` is NULL for an execution that does not exist.
static COMPLETE_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH req AS ( \
           SELECT id, worker_id, status, return_code, stdout, stderr, execution_time_ms, \
                  memory_usage_bytes, ord \
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], \
                                $6::text[], $7::int4[], $8::int8[]) \
             WITH ORDINALITY AS r(id, worker_id, status, return_code, stdout, stderr, \
                                  execution_time_ms, memory_usage_bytes, ord) \
         ), task AS MATERIALIZED ( \
           SELECT t.id, t.status FROM tasks t \
           WHERE t.id IN (SELECT x.task_id FROM task_executions x WHERE x.id = ANY($1::uuid[])) \
           ORDER BY t.id FOR NO KEY UPDATE \
         ), current AS MATERIALIZED ( \
           SELECT e.id, e.status, e.worker_id, e.lease_expires_at \
           FROM task_executions e JOIN task ON task.id = e.task_id \
           WHERE e.id = ANY($1::uuid[]) ORDER BY e.id FOR NO KEY UPDATE OF e \
         ), done AS ( \
           UPDATE task_executions e \
           SET status = r.status, return_code = r.return_code, stdout = r.stdout, \
               stderr = r.stderr, execution_time_ms = r.execution_time_ms, \
               memory_usage_bytes = r.memory_usage_bytes, \
               completed_at = greatest(now(), e.started_at), lease_expires_at = NULL, \
               updated_at = now() \
           FROM current c JOIN req r ON r.id = c.id \
           WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = r.worker_id \
           RETURNING {returning} \
         ), task_done AS ( \
           UPDATE tasks t SET status = done.status, updated_at = now() \
           FROM done JOIN task k ON k.id = done.task_id \
           WHERE t.id = done.task_id AND k.status = 'running' \
         ) \
         SELECT r.ord, c.status AS current_status, c.worker_id AS current_worker, \
                c.lease_expires_at IS NOT NULL AS leased, done.id IS NOT NULL AS done, {done} \
         FROM req r LEFT JOIN current c ON c.id = r.id LEFT JOIN done ON done.id = r.id \
         ORDER BY r.ord",
        returning = prefixed("e", COLUMNS),
        done = prefixed("done", COLUMNS),
    )
});

/// The heartbeat of one execution: `$1` execution, `$2` worker, `$3`
/// lease in seconds. The task is locked first even though a heartbeat
/// changes no status: a worker's transaction that heartbeats and then
/// completes must take its locks in the crate's one order.
const HEARTBEAT_SQL: &str = "WITH task AS MATERIALIZED ( \
                   SELECT t.id FROM tasks t \
                   WHERE t.id = (SELECT task_id FROM task_executions WHERE id = $1) \
                   FOR NO KEY UPDATE \
                 ), current AS MATERIALIZED ( \
                   SELECT e.id, e.status, e.worker_id, e.lease_expires_at \
                   FROM task_executions e JOIN task ON task.id = e.task_id \
                   WHERE e.id = $1 FOR NO KEY UPDATE OF e \
                 ), beat AS ( \
                   UPDATE task_executions e \
                   SET lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now(), \
                       updated_at = now() \
                   FROM current c \
                   WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = $2 \
                   RETURNING e.lease_expires_at \
                 ) \
                 SELECT c.status, c.worker_id, c.lease_expires_at IS NOT NULL AS leased, \
                        beat.lease_expires_at AS new_lease \
                 FROM current c LEFT JOIN beat ON true";

/// The heartbeats of many executions, of one worker or many: `$1`
/// executions, `$2` their workers, `$3` their leases in seconds, one array
/// element per heartbeat (an execution twice only with the same worker and
/// lease, as `heartbeat_many` sends it).
///
/// Same lock order and re-check as the heartbeat of one execution: every
/// named execution's task in task id order, then the executions in id
/// order, each checked against its own worker on the locked row. One row
/// per heartbeat, in input order; `status` is NULL for an execution that
/// does not exist.
const HEARTBEAT_BATCH_SQL: &str = "WITH req AS ( \
                   SELECT id, worker_id, lease_secs, ord \
                   FROM unnest($1::uuid[], $2::text[], $3::float8[]) \
                     WITH ORDINALITY AS r(id, worker_id, lease_secs, ord) \
                 ), task AS MATERIALIZED ( \
                   SELECT t.id FROM tasks t \
                   WHERE t.id IN (SELECT x.task_id FROM task_executions x \
                                  WHERE x.id = ANY($1::uuid[])) \
                   ORDER BY t.id FOR NO KEY UPDATE \
                 ), current AS MATERIALIZED ( \
                   SELECT e.id, e.status, e.worker_id, e.lease_expires_at \
                   FROM task_executions e JOIN task ON task.id = e.task_id \
                   WHERE e.id = ANY($1::uuid[]) ORDER BY e.id FOR NO KEY UPDATE OF e \
                 ), beat AS ( \
                   UPDATE task_executions e \
                   SET lease_expires_at = now() + make_interval(secs => r.lease_secs), \
                       heartbeat_at = now(), updated_at = now() \
                   FROM current c JOIN req r ON r.id = c.id \
                   WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = r.worker_id \
                   RETURNING e.id, e.lease_expires_at \
                 ) \
                 SELECT c.status, c.worker_id, c.lease_expires_at IS NOT NULL AS leased, \
                        beat.lease_expires_at AS new_lease \
                 FROM req r LEFT JOIN current c ON c.id = r.id LEFT JOIN beat ON beat.id = r.id \
                 ORDER BY r.ord";

/// An execution ended by hand (cancelled, or
/// [`ExecutionRepository::update_status`](crate::ExecutionRepository::update_status)
/// to an end state): `$1` execution, `$2` the end status, `$3` statuses it
/// may come from.
///
/// Same lock order and re-check as [`COMPLETE_SQL`]. `now()` is when the
/// statement started: a claim that committed while this statement waited
/// for the task lock may have started the execution later than that, so
/// `completed_at` is never earlier than `started_at`. The task follows: a
/// cancelled execution cancels its pending or running task; a running
/// execution ended otherwise ends its running task the same way.
static FINISH_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH task AS MATERIALIZED ( \
           SELECT t.id, t.status FROM tasks t \
           WHERE t.id = (SELECT task_id FROM task_executions WHERE id = $1) \
           FOR NO KEY UPDATE \
         ), current AS MATERIALIZED ( \
           SELECT e.id, e.status FROM task_executions e JOIN task ON task.id = e.task_id \
           WHERE e.id = $1 FOR NO KEY UPDATE OF e \
         ), ended AS ( \
           UPDATE task_executions e \
           SET status = $2, \
               completed_at = COALESCE(e.completed_at, greatest(now(), e.started_at)), \
               lease_expires_at = NULL, updated_at = now() \
           FROM current c WHERE e.id = c.id AND c.status = ANY($3) \
           RETURNING {returning} \
         ), task_follows AS ( \
           UPDATE tasks t SET status = $2, updated_at = now() FROM ended x, task k \
           WHERE t.id = x.task_id AND k.id = x.task_id \
             AND (k.status = 'running' OR (k.status = 'pending' AND $2 = 'cancelled')) \
         ) \
         SELECT c.status AS current_status, x.id IS NOT NULL AS ended, {ended} \
         FROM current c LEFT JOIN ended x ON true",
        returning = prefixed("e", COLUMNS),
        ended = prefixed("x", COLUMNS),
    )
});

/// The delete of an execution: `$1` execution. Same lock order as
/// [`FINISH_SQL`]; deleting an active execution cancels its task, which
/// would otherwise be left pending or running with nothing to run.
const DELETE_SQL: &str = "WITH task AS MATERIALIZED ( \
                   SELECT t.id, t.status FROM tasks t \
                   WHERE t.id = (SELECT task_id FROM task_executions WHERE id = $1) \
                   FOR NO KEY UPDATE \
                 ), gone AS ( \
                   DELETE FROM task_executions e USING task \
                   WHERE e.id = $1 AND e.task_id = task.id \
                   RETURNING e.task_id, e.status \
                 ), task_follows AS ( \
                   UPDATE tasks t SET status = 'cancelled', updated_at = now() FROM gone g, task k \
                   WHERE t.id = g.task_id AND k.id = g.task_id AND g.status IN ('pending', 'running') \
                     AND k.status IN ('pending', 'running') \
                 ) \
                 SELECT count(*) FROM gone";

/// The statements of the queue, for the plan tests: `claim`, `rescue`,
/// `prune`, `enqueue`, `enqueue_many`, `heartbeat`, `heartbeat_batch`,
/// `complete`, `complete_many`, `finish` (cancel, and an end status set by
/// hand) and `delete`. Not part of the API.
#[doc(hidden)]
pub fn __queue_sql(name: &str) -> Option<String> {
    Some(match name {
        "claim" => CLAIM_SQL.clone(),
        "rescue" => RESCUE_SQL.to_owned(),
        "prune" => PRUNE_SQL.to_owned(),
        "enqueue" => ENQUEUE_SQL.clone(),
        "enqueue_many" => ENQUEUE_MANY_SQL.clone(),
        "heartbeat" => HEARTBEAT_SQL.to_owned(),
        "heartbeat_batch" => HEARTBEAT_BATCH_SQL.to_owned(),
        "complete" => COMPLETE_SQL.clone(),
        "complete_many" => COMPLETE_MANY_SQL.clone(),
        "finish" => FINISH_SQL.clone(),
        "delete" => DELETE_SQL.to_owned(),
        _ => return None,
    })
}

/// How often a statement that found its task changed after its snapshot is
/// run again. Each rerun means another transaction committed a change of
/// that very task in between, so this many in a row means a task under a
/// storm of changes; the caller gets an [`Error::Unavailable`] saying so.
/// Shared by every statement with such a check (`pg::task` too).
pub(super) const FRESH_ATTEMPTS: usize = 16;

fn changed_meanwhile(entity: &'static str) -> Error {
    Error::unavailable(
        format!("the {entity} kept changing while it was being queued; nothing was written"),
        None,
    )
}

pub(crate) mod sql {
    use super::*;

    pub(crate) async fn enqueue(
        c: &Conn<'_>,
        task_id: TaskId,
        run_after: Option<Timestamp>,
    ) -> Result<TaskExecution> {
        let execution_id = ExecutionId::new();
        let from = enqueueable();
        for _ in 0..FRESH_ATTEMPTS {
            let row = c
                .query_opt(&ENQUEUE_SQL, &[&task_id, &execution_id, &run_after, &from])
                .await?
                .ok_or_else(|| Error::not_found("task", task_id))?;
            if !row.try_get::<_, bool>("fresh")? {
                continue;
            }
            if row.try_get::<_, bool>("found")? {
                return execution_from_row(&row);
            }
            let status: TaskStatus = row.try_get("task_status")?;
            return Err(Error::InvalidTransition {
                entity: "task",
                from: status.as_str(),
                to: TaskStatus::Pending.as_str(),
            });
        }
        Err(changed_meanwhile("task"))
    }

    pub(crate) async fn enqueue_many(
        c: &Conn<'_>,
        task_ids: &[TaskId],
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let execution_ids: Vec<ExecutionId> = task_ids.iter().map(|_| ExecutionId::new()).collect();
        let from = enqueueable();
        for _ in 0..FRESH_ATTEMPTS {
            let rows = c
                .query(
                    &ENQUEUE_MANY_SQL,
                    &[&task_ids, &execution_ids, &run_after, &from],
                )
                .await?;
            let Some(first) = rows.first() else {
                return Err(Error::validation("task_ids", "no rows came back"));
            };
            if !first.try_get::<_, bool>("fresh")? {
                continue;
            }
            if first.try_get::<_, bool>("all_ok")? {
                let start = COLUMN_NAMES.locate(first)?;
                let mut executions = Vec::with_capacity(rows.len());
                for row in &rows {
                    if !row.try_get::<_, bool>("found")? {
                        return Err(changed_meanwhile("batch"));
                    }
                    executions.push(read_execution(&mut COLUMN_NAMES.reader(row, start))?);
                }
                return Ok(executions);
            }
            for row in &rows {
                match row.try_get::<_, Option<TaskStatus>>("task_status")? {
                    None => {
                        return Err(Error::not_found(
                            "task",
                            row.try_get::<_, TaskId>("requested")?,
                        ));
                    }
                    Some(status)
                        if !row.try_get::<_, bool>("found")?
                            && !status.can_transition_to(TaskStatus::Pending) =>
                    {
                        return Err(Error::InvalidTransition {
                            entity: "task",
                            from: status.as_str(),
                            to: TaskStatus::Pending.as_str(),
                        });
                    }
                    Some(_) => {}
                }
            }
            return Err(changed_meanwhile("batch"));
        }
        Err(changed_meanwhile("batch"))
    }

    pub(crate) async fn claim(
        c: &Conn<'_>,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedExecution>> {
        let rows = c
            .query(
                &CLAIM_SQL,
                &[&worker_id, &i64::from(limit), &seconds(lease)],
            )
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let start = match rows.first() {
            Some(first) => CLAIMED_COLUMNS.locate(first)?,
            None => return Ok(claimed),
        };
        for row in &rows {
            match read_claimed(&mut CLAIMED_COLUMNS.reader(row, start)) {
                Ok(job) => claimed.push(job),
                Err(err) => {
                    // Claimed, but it cannot be handed to the worker: end it
                    // as failed (the task follows) so it is neither leased to
                    // nobody nor claimed again forever. Another application
                    // wrote the row; the error names it.
                    tracing::error!(error = %err, "claimed an execution that cannot be decoded; failing it");
                    let id: ExecutionId = row.try_get("id")?;
                    fail_undecodable(c, id).await?;
                }
            }
        }
        Ok(claimed)
    }

    /// Ends a claimed execution as failed through [`FINISH_SQL`] without
    /// decoding the row it returns (which is the row that could not be
    /// decoded). If this fails too, the lease expires and the rescuer takes
    /// the execution back.
    async fn fail_undecodable(c: &Conn<'_>, id: ExecutionId) -> Result<()> {
        let failed = ExecutionStatus::Failed;
        c.query_opt(&FINISH_SQL, &[&id, &failed, &vec!["running"]])
            .await?;
        Ok(())
    }

    /// Reads a claimed execution, its fields in [`CLAIMED_COLUMNS`]' order.
    fn read_claimed(r: &mut RowReader<'_>) -> Result<ClaimedExecution> {
        Ok(ClaimedExecution {
            execution: read_execution(r)?,
            script_content: r.next()?,
            script_type: r.next()?,
            timeout_seconds: r.next()?,
        })
    }

    pub(crate) async fn heartbeat(
        c: &Conn<'_>,
        id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Timestamp> {
        let row = c
            .query_opt(HEARTBEAT_SQL, &[&id, &worker_id, &seconds(lease)])
            .await?
            .ok_or_else(|| Error::not_found("execution", id))?;
        match row.try_get::<_, Option<Timestamp>>("new_lease")? {
            Some(lease) => Ok(lease),
            None => Err(lease_lost(
                id,
                row.try_get("status")?,
                row.try_get("leased")?,
                row.try_get::<_, Option<&str>>("worker_id")?,
                worker_id,
            )),
        }
    }

    /// One worker's heartbeats of `ids` through [`HEARTBEAT_BATCH_SQL`];
    /// one result per id, in their order.
    pub(crate) async fn heartbeat_many(
        c: &Conn<'_>,
        ids: &[ExecutionId],
        worker_id: &str,
        lease: Duration,
    ) -> Result<Vec<Result<Timestamp>>> {
        let workers = vec![worker_id; ids.len()];
        let leases = vec![seconds(lease); ids.len()];
        heartbeats(c, "heartbeat_many", ids, &workers, &leases).await
    }

    /// Runs [`HEARTBEAT_BATCH_SQL`] for `heartbeats` (valid, no execution
    /// twice); one result per heartbeat, in their order.
    pub(crate) async fn heartbeat_batch(
        c: &Conn<'_>,
        heartbeats: &[Heartbeat],
    ) -> Result<Vec<Result<Timestamp>>> {
        let ids: Vec<ExecutionId> = heartbeats.iter().map(|h| h.execution_id).collect();
        let workers: Vec<&str> = heartbeats.iter().map(|h| h.worker_id.as_str()).collect();
        let leases: Vec<f64> = heartbeats.iter().map(|h| seconds(h.lease)).collect();
        self::heartbeats(c, "heartbeat_batch", &ids, &workers, &leases).await
    }

    /// [`HEARTBEAT_BATCH_SQL`] for the three parallel arrays; `call` names
    /// the public call in an error.
    async fn heartbeats(
        c: &Conn<'_>,
        call: &str,
        ids: &[ExecutionId],
        workers: &[&str],
        leases: &[f64],
    ) -> Result<Vec<Result<Timestamp>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = c
            .query(HEARTBEAT_BATCH_SQL, &[&ids, &workers, &leases])
            .await?;
        if rows.len() != ids.len() {
            return Err(Error::unavailable(
                format!(
                    "{call} sent {} heartbeats and got {} rows back",
                    ids.len(),
                    rows.len()
                ),
                None,
            ));
        }
        ids.iter()
            .zip(workers)
            .zip(&rows)
            .map(|((&id, worker_id), row)| beat_from_row(row, id, worker_id))
            .collect()
    }

    /// One heartbeat's answer from its row of [`HEARTBEAT_BATCH_SQL`]: the
    /// new end of the lease, or why there is
    /// none. The outer error is a row that cannot be read at all.
    fn beat_from_row(
        row: &tokio_postgres::Row,
        id: ExecutionId,
        worker_id: &str,
    ) -> Result<Result<Timestamp>> {
        Ok(match row.try_get::<_, Option<Timestamp>>("new_lease")? {
            Some(lease) => Ok(lease),
            None => match row.try_get::<_, Option<ExecutionStatus>>("status")? {
                None => Err(Error::not_found("execution", id)),
                Some(status) => Err(lease_lost(
                    id,
                    status,
                    row.try_get("leased")?,
                    row.try_get::<_, Option<&str>>("worker_id")?,
                    worker_id,
                )),
            },
        })
    }

    pub(crate) async fn complete(
        c: &Conn<'_>,
        id: ExecutionId,
        worker_id: &str,
        outcome: &Outcome,
    ) -> Result<TaskExecution> {
        let row = c
            .query_opt(
                &COMPLETE_SQL,
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
        if row.try_get::<_, bool>("done")? {
            return execution_from_row(&row);
        }
        Err(lease_lost(
            id,
            row.try_get("current_status")?,
            row.try_get("leased")?,
            row.try_get::<_, Option<&str>>("current_worker")?,
            worker_id,
        ))
    }

    /// Runs [`COMPLETE_MANY_SQL`] for `completions` (valid, no execution
    /// twice) and returns one result per completion, in their order.
    pub(crate) async fn complete_many(
        c: &Conn<'_>,
        completions: &[Completion],
    ) -> Result<Vec<Result<TaskExecution>>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ExecutionId> = completions.iter().map(|x| x.execution_id).collect();
        let workers: Vec<&str> = completions.iter().map(|x| x.worker_id.as_str()).collect();
        let statuses: Vec<ExecutionStatus> = completions.iter().map(|x| x.outcome.status).collect();
        let codes: Vec<Option<i32>> = completions.iter().map(|x| x.outcome.return_code).collect();
        let stdouts: Vec<Option<&str>> = completions
            .iter()
            .map(|x| x.outcome.stdout.as_deref())
            .collect();
        let stderrs: Vec<Option<&str>> = completions
            .iter()
            .map(|x| x.outcome.stderr.as_deref())
            .collect();
        let times: Vec<Option<i32>> = completions
            .iter()
            .map(|x| x.outcome.execution_time_ms)
            .collect();
        let memory: Vec<Option<i64>> = completions
            .iter()
            .map(|x| x.outcome.memory_usage_bytes)
            .collect();
        let rows = c
            .query(
                &COMPLETE_MANY_SQL,
                &[
                    &ids, &workers, &statuses, &codes, &stdouts, &stderrs, &times, &memory,
                ],
            )
            .await?;
        if rows.len() != completions.len() {
            return Err(Error::unavailable(
                format!(
                    "complete_many sent {} completions and got {} rows back",
                    completions.len(),
                    rows.len()
                ),
                None,
            ));
        }
        let mut results = Vec::with_capacity(rows.len());
        let start = match rows.first() {
            Some(first) => COLUMN_NAMES.locate(first)?,
            None => return Ok(results),
        };
        for (completion, row) in completions.iter().zip(&rows) {
            let id = completion.execution_id;
            let result = if row.try_get::<_, bool>("done")? {
                // A row that cannot be decoded is that completion's error;
                // the execution did end.
                read_execution(&mut COLUMN_NAMES.reader(row, start))
            } else {
                match row.try_get::<_, Option<ExecutionStatus>>("current_status")? {
                    None => Err(Error::not_found("execution", id)),
                    Some(status) => Err(lease_lost(
                        id,
                        status,
                        row.try_get("leased")?,
                        row.try_get::<_, Option<&str>>("current_worker")?,
                        &completion.worker_id,
                    )),
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    /// Ends an execution by hand: cancel, or an end status set through
    /// [`ExecutionRepository::update_status`](crate::ExecutionRepository::update_status).
    /// The one writer of those changes, so the task always follows.
    pub(crate) async fn finish(
        c: &Conn<'_>,
        id: ExecutionId,
        to: ExecutionStatus,
    ) -> Result<TaskExecution> {
        debug_assert!(to.is_terminal());
        let from: Vec<&str> = ExecutionStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(to))
            .map(ExecutionStatus::as_str)
            .collect();
        let row = c
            .query_opt(&FINISH_SQL, &[&id, &to, &from])
            .await?
            .ok_or_else(|| Error::not_found("execution", id))?;
        if row.try_get::<_, bool>("ended")? {
            return execution_from_row(&row);
        }
        let status: ExecutionStatus = row.try_get("current_status")?;
        Err(Error::InvalidTransition {
            entity: "execution",
            from: status.as_str(),
            to: to.as_str(),
        })
    }

    /// Deletes an execution; see [`DELETE_SQL`].
    pub(crate) async fn delete(c: &Conn<'_>, id: ExecutionId) -> Result<()> {
        let row = c.query_one(DELETE_SQL, &[&id]).await?;
        match row.try_get::<_, i64>(0)? {
            0 => Err(Error::not_found("execution", id)),
            _ => Ok(()),
        }
    }

    pub(crate) async fn rescue_expired(
        c: &Conn<'_>,
        policy: &RescuePolicy,
    ) -> Result<RescueReport> {
        let retry_ids: Vec<ExecutionId> =
            (0..policy.batch_size).map(|_| ExecutionId::new()).collect();
        let rows = c
            .query(
                RESCUE_SQL,
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
            let id: ExecutionId = row.try_get("id")?;
            if row.try_get("retry")? {
                report.retried.push(id);
            } else {
                report.timed_out.push(id);
            }
        }
        Ok(report)
    }

    /// One batch of [`ExecutionQueue::prune`].
    pub(crate) async fn prune_batch(
        c: &Conn<'_>,
        older_than: Duration,
        batch_size: u32,
    ) -> Result<u64> {
        c.execute(PRUNE_SQL, &[&seconds(older_than), &i64::from(batch_size)])
            .await
    }
}

/// The answers of a batch in input order: each item's validation error
/// from `plan`, or the result of the statement for the item `plan` sent at
/// that place. `results` holds one result per item sent, in order.
fn merge_plan<T>(
    plan: Vec<std::result::Result<usize, Error>>,
    results: Vec<Result<T>>,
) -> Vec<Result<T>> {
    let mut results = results.into_iter();
    // Sent items are numbered in input order, so the statement's results
    // come out in the same order as the plan asks for them.
    plan.into_iter()
        .map(|p| match p {
            Ok(_) => results.next().unwrap_or_else(|| {
                Err(Error::unavailable(
                    "the statement answered fewer items than were sent",
                    None,
                ))
            }),
            Err(err) => Err(err),
        })
        .collect()
}

#[async_trait]
impl ExecutionQueue for PgExecutionQueue {
    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "enqueue"))]
    async fn enqueue(
        &self,
        task_id: TaskId,
        run_after: Option<Timestamp>,
    ) -> Result<TaskExecution> {
        if let Some(at) = run_after {
            validate::timestamp("run_after", at)?;
        }
        sql::enqueue(&self.source.conn().await?, task_id, run_after).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "enqueue_many", count = task_ids.len()))]
    async fn enqueue_many(
        &self,
        task_ids: Vec<TaskId>,
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>> {
        validate::batch_size("task_ids", task_ids.len())?;
        if let Some(at) = run_after {
            validate::timestamp("run_after", at)?;
        }
        sql::enqueue_many(&self.source.conn().await?, &task_ids, run_after).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "claim", limit))]
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedExecution>> {
        validate::worker_id(worker_id)?;
        validate::claim_limit(limit)?;
        validate::lease(lease)?;
        sql::claim(&self.source.conn().await?, worker_id, limit, lease).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "heartbeat"))]
    async fn heartbeat(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Timestamp> {
        validate::worker_id(worker_id)?;
        validate::lease(lease)?;
        sql::heartbeat(&self.source.conn().await?, execution_id, worker_id, lease).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "heartbeat_many", count = execution_ids.len()))]
    async fn heartbeat_many(
        &self,
        worker_id: &str,
        execution_ids: Vec<ExecutionId>,
        lease: Duration,
    ) -> Result<Vec<Result<Timestamp>>> {
        validate::worker_id(worker_id)?;
        validate::lease(lease)?;
        if execution_ids.len() > validate::MAX_CLAIM as usize {
            return Err(Error::validation(
                "execution_ids",
                format!(
                    "holds {} ids, more than the {} one call takes",
                    execution_ids.len(),
                    validate::MAX_CLAIM
                ),
            ));
        }
        sql::heartbeat_many(&self.source.conn().await?, &execution_ids, worker_id, lease).await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "heartbeat_batch", count = heartbeats.len()))]
    async fn heartbeat_batch(&self, heartbeats: Vec<Heartbeat>) -> Result<Vec<Result<Timestamp>>> {
        if heartbeats.len() > validate::MAX_CLAIM as usize {
            return Err(Error::validation(
                "heartbeats",
                format!(
                    "holds {} heartbeats, more than the {} one call takes",
                    heartbeats.len(),
                    validate::MAX_CLAIM
                ),
            ));
        }
        // Per heartbeat: its validation error, or its place among the ones
        // sent.
        let mut seen = HashSet::with_capacity(heartbeats.len());
        let mut plan: Vec<std::result::Result<usize, Error>> = Vec::with_capacity(heartbeats.len());
        let mut sent = Vec::with_capacity(heartbeats.len());
        for heartbeat in heartbeats {
            let checked = validate::worker_id(&heartbeat.worker_id)
                .and_then(|()| validate::lease(heartbeat.lease));
            if let Err(err) = checked {
                plan.push(Err(err));
                continue;
            }
            if !seen.insert(heartbeat.execution_id) {
                plan.push(Err(Error::validation(
                    "execution_id",
                    format!(
                        "execution {} is heartbeaten earlier in the same batch",
                        heartbeat.execution_id
                    ),
                )));
                continue;
            }
            plan.push(Ok(sent.len()));
            sent.push(heartbeat);
        }
        let results = if sent.is_empty() {
            Vec::new()
        } else {
            sql::heartbeat_batch(&self.source.conn().await?, &sent).await?
        };
        Ok(merge_plan(plan, results))
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "complete"))]
    async fn complete(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        mut outcome: Outcome,
    ) -> Result<TaskExecution> {
        validate::worker_id(worker_id)?;
        validate::outcome(&outcome)?;
        let max = self.source.max_output_bytes();
        for output in [&mut outcome.stdout, &mut outcome.stderr]
            .into_iter()
            .flatten()
        {
            validate::truncate_output(output, max);
        }
        sql::complete(
            &self.source.conn().await?,
            execution_id,
            worker_id,
            &outcome,
        )
        .await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "complete_many", count = completions.len()))]
    async fn complete_many(
        &self,
        mut completions: Vec<Completion>,
    ) -> Result<Vec<Result<TaskExecution>>> {
        if completions.len() > Completion::MAX_BATCH {
            return Err(Error::validation(
                "completions",
                format!(
                    "holds {} completions, more than the {} one call takes",
                    completions.len(),
                    Completion::MAX_BATCH
                ),
            ));
        }
        // Per completion: its validation error, or its place among the ones
        // sent.
        let max = self.source.max_output_bytes();
        let mut seen = HashSet::with_capacity(completions.len());
        let mut plan: Vec<std::result::Result<usize, Error>> =
            Vec::with_capacity(completions.len());
        let mut sent = Vec::with_capacity(completions.len());
        for mut completion in completions.drain(..) {
            let checked = validate::worker_id(&completion.worker_id)
                .and_then(|()| validate::outcome(&completion.outcome));
            if let Err(err) = checked {
                plan.push(Err(err));
                continue;
            }
            if !seen.insert(completion.execution_id) {
                plan.push(Err(Error::validation(
                    "execution_id",
                    format!(
                        "execution {} is completed earlier in the same batch",
                        completion.execution_id
                    ),
                )));
                continue;
            }
            for output in [
                &mut completion.outcome.stdout,
                &mut completion.outcome.stderr,
            ]
            .into_iter()
            .flatten()
            {
                validate::truncate_output(output, max);
            }
            plan.push(Ok(sent.len()));
            sent.push(completion);
        }
        let results = if sent.is_empty() {
            Vec::new()
        } else {
            sql::complete_many(&self.source.conn().await?, &sent).await?
        };
        Ok(merge_plan(plan, results))
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "cancel"))]
    async fn cancel(&self, execution_id: ExecutionId) -> Result<TaskExecution> {
        sql::finish(
            &self.source.conn().await?,
            execution_id,
            ExecutionStatus::Cancelled,
        )
        .await
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "rescue_expired"))]
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
        let report = sql::rescue_expired(&self.source.conn().await?, &policy).await?;
        if !report.timed_out.is_empty() {
            tracing::info!(
                timed_out = report.timed_out.len(),
                retried = report.retried.len(),
                "rescued expired executions"
            );
        }
        Ok(report)
    }

    #[tracing::instrument(name = "voidrunner_db.queue", skip_all, err(level = tracing::Level::DEBUG), fields(op = "prune"))]
    async fn prune(&self, older_than: Duration, batch_size: u32) -> Result<u64> {
        if batch_size == 0 {
            return Err(Error::validation("batch_size", "must be at least 1"));
        }
        validate::duration_at_most("older_than", older_than, validate::MAX_PRUNE_AGE)?;
        let mut total = 0;
        loop {
            // A connection per batch: between batches, others get the pool.
            let deleted =
                sql::prune_batch(&self.source.conn().await?, older_than, batch_size).await?;
            total += deleted;
            if deleted < u64::from(batch_size) {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claimed row is read as an execution, then its script: the
    /// execution's columns must lead, in their order.
    #[test]
    fn claimed_columns_start_with_the_execution_columns() {
        let (execution, script) = CLAIMED_COLUMNS.names.split_at(COLUMN_NAMES.names.len());
        assert_eq!(execution, COLUMN_NAMES.names);
        assert_eq!(script, ["script_content", "script_type", "timeout_seconds"]);
    }
}
