//! The queue's operations on one connection, pooled or in a transaction:
//! each sends its statement (`src/queries/queue.sql`) and reads what it
//! returns.
//! The executions repository calls `enqueue`, `finish` and `delete` here
//! too, so every status write of an execution goes through this module.

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
            .query_opt(
                &queries::queue::ENQUEUE,
                &[&task_id, &execution_id, &run_after, &from],
            )
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
                &queries::queue::ENQUEUE_MANY,
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
            &queries::queue::CLAIM,
            &[&worker_id, &i64::from(limit), &seconds(lease)],
        )
        .await?;
    read_claims(c, &rows).await
}

/// The fair claim (`queue.claim_fair`), after user `after` in the
/// rotation: the claimed executions in claim order, and the user of the
/// last one (where the next claim starts).
pub(crate) async fn claim_fair(
    c: &Conn<'_>,
    worker_id: &str,
    limit: u32,
    lease: Duration,
    after: Option<UserId>,
) -> Result<(Vec<ClaimedExecution>, Option<UserId>)> {
    let rows = c
        .query(
            &queries::queue::CLAIM_FAIR,
            // A process's first fair claim starts anywhere (see V15).
            &[
                &worker_id,
                &i64::from(limit),
                &seconds(lease),
                &after,
                &after.is_none(),
            ],
        )
        .await?;
    // A first row without an execution says where a walk cut short at its
    // bound stopped (V15): the next claim starts there. Otherwise the
    // user of the last row claimed.
    let (rows, last) = match rows.split_first() {
        Some((first, rest)) if first.try_get::<_, Option<ExecutionId>>("id")?.is_none() => {
            (rest, first.try_get::<_, Option<UserId>>("claimed_user")?)
        }
        _ => match rows.last() {
            Some(row) => (&rows[..], row.try_get::<_, Option<UserId>>("claimed_user")?),
            None => (&rows[..], None),
        },
    };
    Ok((read_claims(c, rows).await?, last))
}

/// The claimed executions of a claim's `rows`, in their order. A row that
/// cannot be decoded is failed (see below) and left out.
async fn read_claims(c: &Conn<'_>, rows: &[tokio_postgres::Row]) -> Result<Vec<ClaimedExecution>> {
    let mut claimed = Vec::with_capacity(rows.len());
    let start = match rows.first() {
        Some(first) => CLAIMED_COLUMNS.locate(first)?,
        None => return Ok(claimed),
    };
    for row in rows {
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

/// Ends a claimed execution as failed through `queue.finish` without
/// decoding the row it returns (which is the row that could not be
/// decoded). If this fails too, the lease expires and the rescuer takes
/// the execution back.
async fn fail_undecodable(c: &Conn<'_>, id: ExecutionId) -> Result<()> {
    let failed = ExecutionStatus::Failed;
    c.query_opt(&queries::queue::FINISH, &[&id, &failed, &vec!["running"]])
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
        .query_opt(
            &queries::queue::HEARTBEAT,
            &[&id, &worker_id, &seconds(lease)],
        )
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

/// One worker's heartbeats of `ids` through `queue.heartbeat_batch`;
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

/// Runs `queue.heartbeat_batch` for `heartbeats` (valid, no execution
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

/// `queue.heartbeat_batch` for the three parallel arrays; `call` names
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
        .query(&queries::queue::HEARTBEAT_BATCH, &[&ids, &workers, &leases])
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

/// One heartbeat's answer from its row of `queue.heartbeat_batch`: the
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
            &queries::queue::COMPLETE,
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

/// Runs `queue.complete_many` for `completions` (valid, no execution
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
            &queries::queue::COMPLETE_MANY,
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
            Err(refusal(row, id, &completion.worker_id)?)
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
        .query_opt(&queries::queue::FINISH, &[&id, &to, &from])
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

/// Deletes an execution; see `queue.delete`.
pub(crate) async fn delete(c: &Conn<'_>, id: ExecutionId) -> Result<()> {
    let row = c.query_one(&queries::queue::DELETE, &[&id]).await?;
    match row.try_get::<_, i64>(0)? {
        0 => Err(Error::not_found("execution", id)),
        _ => Ok(()),
    }
}

pub(crate) async fn rescue_expired(c: &Conn<'_>, policy: &RescuePolicy) -> Result<RescueReport> {
    let retry_ids: Vec<ExecutionId> = (0..policy.batch_size).map(|_| ExecutionId::new()).collect();
    let rows = c
        .query(
            &queries::queue::RESCUE,
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
    c.execute(
        &queries::queue::PRUNE,
        &[&seconds(older_than), &i64::from(batch_size)],
    )
    .await
}

/// A task's status set by hand ([`TaskRepository::update_status`](crate::TaskRepository::update_status)):
/// pending or cancelled, the latter cancelling its active execution too.
pub(crate) async fn set_task_status(
    c: &Conn<'_>,
    id: TaskId,
    to: TaskStatus,
) -> Result<crate::model::Task> {
    let from: Vec<&str> = TaskStatus::ALL
        .into_iter()
        .filter(|from| from.can_transition_to(to))
        .map(TaskStatus::as_str)
        .collect();
    for _ in 0..FRESH_ATTEMPTS {
        let row = c
            .query_opt(&queries::queue::TASK_STATUS, &[&id, &to, &from])
            .await?
            .ok_or_else(|| Error::not_found("task", id))?;
        if !row.try_get::<_, bool>("fresh")? {
            continue;
        }
        let task = crate::pg::task::task_from_row(&row)?;
        if row.try_get::<_, bool>("changed")? || task.status == to {
            return Ok(task);
        }
        return Err(Error::InvalidTransition {
            entity: "task",
            from: task.status.as_str(),
            to: to.as_str(),
        });
    }
    Err(Error::unavailable(
        format!("task {id} kept changing while its status was being set; nothing was written"),
        None,
    ))
}
