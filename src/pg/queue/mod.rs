//! [`ExecutionQueue`] on PostgreSQL, and the one owner of execution status
//! changes.
//!
//! Every operation is one statement whose UPDATEs re-check the state they act
//! on, so a change that committed in between is never overwritten.
//!
//! # Lock order
//!
//! Every statement here takes its locks in the crate's one order, written
//! down once in the [domain reference](crate::domain#lock-order); the SQL
//! takes it through the lock fragments of `src/queries/executions.sql`.
//!
//! # One active execution per task
//!
//! A partial unique index allows one pending or running execution per task.
//! The statements that add an execution lock its task first and also update
//! it, so a statement holding the task lock whose snapshot shows the locked
//! version of the task sees every execution of that task (the `fresh` check
//! in `queue.enqueue`, `src/queries/queue.sql`); otherwise it writes nothing and runs again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::execution::{COLUMN_NAMES, execution_from_row, read_execution};
use super::{Columns, Conn, RowReader, Source, counted, limited, queue_span, traced};
use crate::db::{ClaimRotation, Database};
use crate::error::{Error, LeaseLostReason, Result};
use crate::model::{
    ClaimOrder, ClaimedExecution, Completion, ExecutionId, ExecutionStatus, Heartbeat, Outcome,
    RescuePolicy, RescueReport, TaskExecution, TaskId, TaskStatus, Timestamp, UserId,
};
use crate::queries;
use crate::repo::ExecutionQueue;
use crate::tx::TxInner;
use crate::validate;

pub(crate) mod sql;
mod statements;

use statements::*;

/// [`ExecutionQueue`] over the pool of a [`Database`].
///
/// Claims in [`ClaimOrder::Fifo`] unless set otherwise with
/// [`with_claim_order`](Self::with_claim_order).
#[derive(Debug, Clone)]
pub struct PgExecutionQueue {
    source: Source,
    order: ClaimOrder,
    rotation: Arc<ClaimRotation>,
}

impl PgExecutionQueue {
    /// A queue over `db`'s pool, claiming in [`ClaimOrder::Fifo`].
    pub fn new(db: Database) -> Self {
        PgExecutionQueue {
            rotation: db.claim_rotation(),
            source: Source::Pool(db),
            order: ClaimOrder::Fifo,
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>) -> Self {
        PgExecutionQueue {
            rotation: Arc::clone(&tx.claim_rotation),
            source: Source::Tx(tx),
            order: ClaimOrder::Fifo,
        }
    }

    /// This queue claiming in `order`: [`ClaimOrder::Fair`] rotates claims
    /// between users and keeps their concurrency caps
    /// ([`ConcurrencyLimits`](crate::ConcurrencyLimits)). Every handle of
    /// one [`Database`] (clones, transactions) shares one rotation.
    pub fn with_claim_order(mut self, order: ClaimOrder) -> Self {
        self.order = order;
        self
    }

    /// The order this queue claims in.
    pub fn claim_order(&self) -> ClaimOrder {
        self.order
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

/// Why a batch statement could not act on execution `id` for `worker`, from
/// the execution's row of its answer (`current_status`, `leased`,
/// `current_worker`, read from the locked row): `NotFound` when it does not
/// exist, else the lease the worker lost. The error it returns is the
/// refusal; an `Err` is a row that could not be read.
pub(super) fn refusal(row: &tokio_postgres::Row, id: ExecutionId, worker: &str) -> Result<Error> {
    Ok(
        match row.try_get::<_, Option<ExecutionStatus>>("current_status")? {
            None => Error::not_found("execution", id),
            Some(status) => lease_lost(
                id,
                status,
                row.try_get("leased")?,
                row.try_get::<_, Option<&str>>("current_worker")?,
                worker,
            ),
        },
    )
}

/// Why a worker's heartbeat or completion was refused, from the locked row.
pub(super) fn lease_lost(
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
    async fn enqueue(
        &self,
        task_id: TaskId,
        run_after: Option<Timestamp>,
    ) -> Result<TaskExecution> {
        traced(queue_span("enqueue"), async move {
            if let Some(at) = run_after {
                validate::timestamp("run_after", at)?;
            }
            sql::enqueue(&self.source.conn().await?, task_id, run_after).await
        })
        .await
    }

    async fn enqueue_many(
        &self,
        task_ids: Vec<TaskId>,
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>> {
        traced(
            counted(queue_span("enqueue_many"), task_ids.len()),
            async move {
                validate::batch_size("task_ids", task_ids.len())?;
                if let Some(at) = run_after {
                    validate::timestamp("run_after", at)?;
                }
                sql::enqueue_many(&self.source.conn().await?, &task_ids, run_after).await
            },
        )
        .await
    }

    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedExecution>> {
        traced(limited(queue_span("claim"), limit), async move {
            validate::worker_id(worker_id)?;
            validate::claim_limit(limit)?;
            validate::lease(lease)?;
            let c = self.source.conn().await?;
            match self.order {
                ClaimOrder::Fifo => sql::claim(&c, worker_id, limit, lease).await,
                ClaimOrder::Fair => {
                    let after = self.rotation.position();
                    let (claimed, last) =
                        sql::claim_fair(&c, worker_id, limit, lease, after).await?;
                    if let Some(last) = last {
                        self.rotation.advance(last);
                    }
                    Ok(claimed)
                }
            }
        })
        .await
    }

    async fn heartbeat(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Timestamp> {
        traced(queue_span("heartbeat"), async move {
            validate::worker_id(worker_id)?;
            validate::lease(lease)?;
            sql::heartbeat(&self.source.conn().await?, execution_id, worker_id, lease).await
        })
        .await
    }

    async fn heartbeat_many(
        &self,
        worker_id: &str,
        execution_ids: Vec<ExecutionId>,
        lease: Duration,
    ) -> Result<Vec<Result<Timestamp>>> {
        traced(
            counted(queue_span("heartbeat_many"), execution_ids.len()),
            async move {
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
                sql::heartbeat_many(&self.source.conn().await?, &execution_ids, worker_id, lease)
                    .await
            },
        )
        .await
    }

    async fn heartbeat_batch(&self, heartbeats: Vec<Heartbeat>) -> Result<Vec<Result<Timestamp>>> {
        traced(
            counted(queue_span("heartbeat_batch"), heartbeats.len()),
            async move {
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
                let mut plan: Vec<std::result::Result<usize, Error>> =
                    Vec::with_capacity(heartbeats.len());
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
            },
        )
        .await
    }

    async fn complete(
        &self,
        execution_id: ExecutionId,
        worker_id: &str,
        mut outcome: Outcome,
    ) -> Result<TaskExecution> {
        traced(queue_span("complete"), async move {
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
        })
        .await
    }

    async fn complete_many(
        &self,
        mut completions: Vec<Completion>,
    ) -> Result<Vec<Result<TaskExecution>>> {
        traced(
            counted(queue_span("complete_many"), completions.len()),
            async move {
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
            },
        )
        .await
    }

    async fn cancel(&self, execution_id: ExecutionId) -> Result<TaskExecution> {
        traced(queue_span("cancel"), async move {
            sql::finish(
                &self.source.conn().await?,
                execution_id,
                ExecutionStatus::Cancelled,
            )
            .await
        })
        .await
    }

    async fn rescue_expired(&self, policy: RescuePolicy) -> Result<RescueReport> {
        traced(queue_span("rescue_expired"), async move {
            if policy.batch_size == 0 || policy.batch_size > validate::MAX_CLAIM {
                return Err(Error::validation(
                    "batch_size",
                    format!("must be between 1 and {}", validate::MAX_CLAIM),
                ));
            }
            if policy.max_attempts < 0 {
                return Err(Error::validation("max_attempts", "must not be negative"));
            }
            validate::duration_at_most(
                "retry_delay",
                policy.retry_delay,
                validate::MAX_RETRY_DELAY,
            )?;
            let report = sql::rescue_expired(&self.source.conn().await?, &policy).await?;
            if !report.timed_out.is_empty() {
                tracing::info!(
                    timed_out = report.timed_out.len(),
                    retried = report.retried.len(),
                    "rescued expired executions"
                );
            }
            Ok(report)
        })
        .await
    }

    async fn prune(&self, older_than: Duration, batch_size: u32) -> Result<u64> {
        traced(queue_span("prune"), async move {
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
        })
        .await
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
