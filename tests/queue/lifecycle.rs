use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionRepository, ExecutionStatus, LeaseLostReason,
    Outcome, RescuePolicy, TaskId, TaskRepository, TaskStatus,
};

use crate::{LEASE, fixture, fixture_with};

fn reason(err: &Error) -> Option<LeaseLostReason> {
    err.lease_lost_reason()
}

#[tokio::test]
async fn enqueue_follows_the_task_state_machine() {
    let f = fixture().await;
    let task = f.task("t", 4).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    assert_eq!(
        (e.status, e.priority, e.attempt),
        (ExecutionStatus::Pending, 4, 0)
    );
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );

    // Enqueue is idempotent: while the task has an active execution, that
    // execution is what enqueue returns, pending or running.
    assert_eq!(f.queue.enqueue(task.id, None).await.unwrap().id, e.id);
    f.queue.claim("w", 1, LEASE).await.unwrap();
    let again = f.queue.enqueue(task.id, None).await.unwrap();
    assert_eq!((again.id, again.status), (e.id, ExecutionStatus::Running));
    assert_eq!(f.executions.count_by_task(task.id).await.unwrap(), 1);
    f.queue
        .complete(e.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Failed
    );

    // A failed task is retried: back to pending, with a new execution.
    let retry = f.queue.enqueue(task.id, None).await.unwrap();
    assert_ne!(retry.id, e.id);
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );
    f.queue.claim("w", 1, LEASE).await.unwrap();
    f.queue
        .complete(retry.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let err = f.queue.enqueue(task.id, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: "completed",
                ..
            }
        ),
        "{err:?}"
    );

    assert!(
        f.queue
            .enqueue(TaskId::new(), None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(f.executions.count_by_task(task.id).await.unwrap(), 2);
}

#[tokio::test]
async fn heartbeat_extends_only_the_owners_lease() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    let err = f.queue.heartbeat(e.id, "w", LEASE).await.unwrap_err();
    assert_eq!(
        reason(&err),
        Some(LeaseLostReason::NotOwner),
        "pending: nobody owns it"
    );

    let claimed = f
        .queue
        .claim("w", 1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0)
        .execution;
    let extended = f
        .queue
        .heartbeat(e.id, "w", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(extended > claimed.lease_expires_at.unwrap());
    let stored = f.executions.get(e.id).await.unwrap();
    assert_eq!(stored.lease_expires_at, Some(extended));
    assert!(stored.heartbeat_at.unwrap() >= claimed.heartbeat_at.unwrap());

    let err = f
        .queue
        .heartbeat(e.id, "intruder", LEASE)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), Some(LeaseLostReason::NotOwner));
    assert_eq!(
        f.executions.get(e.id).await.unwrap().lease_expires_at,
        Some(extended),
        "unchanged"
    );
    assert!(
        f.queue
            .heartbeat(ExecutionId::new(), "w", LEASE)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn complete_records_the_outcome_and_the_task_follows() {
    let f = fixture().await;
    let ok_task = f.task("ok", 0).await;
    let bad_task = f.task("bad", 0).await;
    let ok = f.queue.enqueue(ok_task.id, None).await.unwrap();
    let bad = f.queue.enqueue(bad_task.id, None).await.unwrap();
    f.queue.claim("w", 2, LEASE).await.unwrap();

    let refused = f
        .queue
        .complete(
            ok.id,
            "w",
            Outcome::new(ExecutionStatus::Cancelled).return_code(0),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.field(), Some("status"));
    let err = f
        .queue
        .complete(ok.id, "other", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), Some(LeaseLostReason::NotOwner));

    let done = f
        .queue
        .complete(
            ok.id,
            "w",
            Outcome::completed(0).output("hi\n", "").usage(12, 2048),
        )
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.return_code, done.stdout.as_deref()),
        (ExecutionStatus::Completed, Some(0), Some("hi\n"))
    );
    assert_eq!(
        (
            done.execution_time_ms,
            done.memory_usage_bytes,
            done.lease_expires_at
        ),
        (Some(12), Some(2048), None)
    );
    assert!(done.completed_at.unwrap() >= done.started_at.unwrap());
    assert_eq!(
        f.tasks.get(ok_task.id).await.unwrap().status,
        TaskStatus::Completed
    );

    f.queue
        .complete(bad.id, "w", Outcome::failed(3))
        .await
        .unwrap();
    assert_eq!(
        f.tasks.get(bad_task.id).await.unwrap().status,
        TaskStatus::Failed
    );

    // Completing twice is refused and changes nothing.
    let again = f
        .queue
        .complete(ok.id, "w", Outcome::failed(9))
        .await
        .unwrap_err();
    assert_eq!(reason(&again), Some(LeaseLostReason::Finished));
    assert_eq!(f.executions.get(ok.id).await.unwrap(), done);
}

#[tokio::test]
async fn an_expired_lease_is_rescued_and_the_late_worker_changes_nothing() {
    let f = fixture().await;
    let task = f.task("t", 6).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue
        .claim("slow", 1, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let report = f
        .queue
        .rescue_expired(RescuePolicy::default())
        .await
        .unwrap();
    assert_eq!(report.timed_out, vec![e.id]);
    assert!(report.retried.is_empty(), "max_attempts 1: no retry");
    let rescued = f.executions.get(e.id).await.unwrap();
    assert_eq!(rescued.status, ExecutionStatus::Timeout);
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Timeout
    );

    let late = f
        .queue
        .complete(e.id, "slow", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(reason(&late), Some(LeaseLostReason::Expired), "{late:?}");
    let beat = f.queue.heartbeat(e.id, "slow", LEASE).await.unwrap_err();
    assert_eq!(reason(&beat), Some(LeaseLostReason::Expired));
    assert_eq!(
        f.executions.get(e.id).await.unwrap(),
        rescued,
        "nothing changed"
    );
    assert!(
        f.queue
            .rescue_expired(RescuePolicy::default())
            .await
            .unwrap()
            .timed_out
            .is_empty()
    );
}

#[tokio::test]
async fn rescue_retries_below_max_attempts() {
    let f = fixture().await;
    let task = f.task("t", 8).await;
    let first = f.queue.enqueue(task.id, None).await.unwrap();
    let policy = RescuePolicy {
        max_attempts: 2,
        ..RescuePolicy::default()
    };

    f.queue
        .claim("w", 1, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = f.queue.rescue_expired(policy).await.unwrap();
    assert_eq!(report.timed_out, vec![first.id]);
    assert_eq!(report.retried.len(), 1);
    let retry = f.executions.get(report.retried[0]).await.unwrap();
    assert_eq!(
        (retry.status, retry.priority, retry.attempt, retry.task_id),
        (ExecutionStatus::Pending, 8, 1, task.id)
    );
    assert_eq!(retry.id.as_uuid().get_version_num(), 7);
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );

    // The retry is the second attempt; after it expires, no third.
    let claimed = f
        .queue
        .claim("w", 1, Duration::from_millis(1))
        .await
        .unwrap()
        .remove(0)
        .execution;
    assert_eq!((claimed.id, claimed.attempt), (retry.id, 2));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = f.queue.rescue_expired(policy).await.unwrap();
    assert_eq!((report.timed_out, report.retried), (vec![retry.id], vec![]));
    assert_eq!(
        f.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Timeout
    );
}

#[tokio::test]
async fn a_heartbeat_keeps_the_rescuer_away() {
    let f = fixture().await;
    let task = f.task("t", 0).await;
    let e = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue
        .claim("w", 1, Duration::from_millis(300))
        .await
        .unwrap();
    f.queue.heartbeat(e.id, "w", LEASE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        f.queue
            .rescue_expired(RescuePolicy::default())
            .await
            .unwrap()
            .timed_out
            .is_empty()
    );
    f.queue
        .complete(e.id, "w", Outcome::completed(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_rescue_complete_race_never_loses_a_completion() {
    const N: usize = 1000;
    let f = fixture_with(|c| c.max_connections = 12).await;
    let queued = crate::queued_with_expired_leases(&f, N).await;

    let queue = Arc::new(f.queue.clone());
    // Ten completers against a rescuer running as fast as it can.
    let mut completers = tokio::task::JoinSet::new();
    for chunk in queued.chunks(N / 10) {
        let ids: Vec<ExecutionId> = chunk.iter().map(|e| e.id).collect();
        let queue = queue.clone();
        completers.spawn(async move {
            let mut results = Vec::new();
            for id in ids {
                results.push((id, queue.complete(id, "racer", Outcome::completed(0)).await));
            }
            results
        });
    }
    let rescuer = crate::spawn_rescuer(f.queue.clone());
    let mut outcomes: HashMap<ExecutionId, bool> = HashMap::new();
    while let Some(joined) = completers.join_next().await {
        for (id, result) in joined.unwrap() {
            match result {
                Ok(e) => {
                    assert_eq!(e.status, ExecutionStatus::Completed);
                    outcomes.insert(id, true);
                }
                Err(err) => {
                    assert_eq!(reason(&err), Some(LeaseLostReason::Expired), "{err:?}");
                    outcomes.insert(id, false);
                }
            }
        }
    }
    let rescued = rescuer.await.unwrap();
    // What the database holds matches what each side was told.
    let rows =
        f.db.raw_client()
            .await
            .unwrap()
            .query("SELECT id, status, return_code FROM task_executions", &[])
            .await
            .unwrap();
    assert_eq!(rows.len(), N);
    for row in rows {
        let id: ExecutionId = row.get(0);
        let status: ExecutionStatus = row.get(1);
        let completed = outcomes[&id];
        if completed {
            assert_eq!(
                (status, row.get::<_, Option<i32>>(2)),
                (ExecutionStatus::Completed, Some(0)),
                "a completion was lost"
            );
            assert!(
                !rescued.contains(&id),
                "{id} reported both completed and rescued"
            );
        } else {
            assert_eq!(status, ExecutionStatus::Timeout);
            assert!(rescued.contains(&id));
        }
    }
    assert_eq!(outcomes.len(), N);
}

#[tokio::test]
async fn cancel_pending_and_running() {
    let f = fixture().await;
    let pending_task = f.task("p", 0).await;
    let running_task = f.task("r", 9).await;
    let pending = f.queue.enqueue(pending_task.id, None).await.unwrap();
    let running = f.queue.enqueue(running_task.id, None).await.unwrap();
    let claimed = f.queue.claim("w", 1, LEASE).await.unwrap();
    assert_eq!(claimed[0].execution.id, running.id, "priority 9 first");

    let cancelled = f.queue.cancel(pending.id).await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(
        f.tasks.get(pending_task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    assert!(
        f.queue.claim("w", 10, LEASE).await.unwrap().is_empty(),
        "a cancelled execution is never claimed"
    );

    let stopped = f.queue.cancel(running.id).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Cancelled);
    assert_eq!(
        f.tasks.get(running_task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    // The worker learns it at its next heartbeat, and cannot complete.
    let beat = f.queue.heartbeat(running.id, "w", LEASE).await.unwrap_err();
    assert_eq!(reason(&beat), Some(LeaseLostReason::Cancelled));
    let done = f
        .queue
        .complete(running.id, "w", Outcome::completed(0))
        .await
        .unwrap_err();
    assert_eq!(reason(&done), Some(LeaseLostReason::Cancelled));
    assert_eq!(f.executions.get(running.id).await.unwrap(), stopped);

    let err = f.queue.cancel(running.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                entity: "execution",
                from: "cancelled",
                to: "cancelled"
            }
        ),
        "{err:?}"
    );
    assert!(
        f.queue
            .cancel(ExecutionId::new())
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn prune_deletes_only_old_ended_executions() {
    let f = fixture().await;
    let executions = f.queued(12, |_| 0).await;
    // Seven end (five of them long ago), two stay running, three pending.
    let claimed = f.queue.claim("w", 7, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 7);
    for (i, c) in claimed.iter().enumerate() {
        let outcome = if i % 2 == 0 {
            Outcome::completed(0)
        } else {
            Outcome::failed(1)
        };
        f.queue
            .complete(c.execution.id, "w", outcome)
            .await
            .unwrap();
    }
    let ended: Vec<ExecutionId> = claimed.iter().map(|c| c.execution.id).collect();
    let old: Vec<uuid::Uuid> = ended[..5].iter().map(|id| id.as_uuid()).collect();
    let client = f.db.raw_client().await.unwrap();
    client
        .execute(
            "UPDATE task_executions SET started_at = now() - interval '3 days', completed_at = now() - interval '2 days' WHERE id = ANY($1)",
            &[&old],
        )
        .await
        .unwrap();
    // Two more claims, left running, with an old start.
    let still_running = f.queue.claim("w", 2, LEASE).await.unwrap();
    assert_eq!(still_running.len(), 2);
    let running_ids: Vec<uuid::Uuid> = still_running
        .iter()
        .map(|c| c.execution.id.as_uuid())
        .collect();
    client
        .execute("UPDATE task_executions SET created_at = now() - interval '9 days', started_at = now() - interval '9 days' WHERE id = ANY($1)", &[&running_ids])
        .await
        .unwrap();

    let deleted = f.queue.prune(Duration::from_secs(86_400), 2).await.unwrap();
    assert_eq!(deleted, 5, "the five old ended rows, in batches of two");
    let left: i64 = f.scalar("SELECT count(*) FROM task_executions", &[]).await;
    assert_eq!(left, 12 - 5);
    let statuses: Vec<(String, i64)> = client
        .query(
            "SELECT status, count(*) FROM task_executions GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total_pending = executions.len() as i64 - 9;
    assert!(
        statuses.contains(&("pending".into(), total_pending)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&("running".into(), 2)), "{statuses:?}");
    assert_eq!(
        f.queue.prune(Duration::from_secs(86_400), 2).await.unwrap(),
        0
    );
    assert_eq!(
        f.queue.prune(Duration::ZERO, 100).await.unwrap(),
        2,
        "recent ended rows go with age 0"
    );
    assert_eq!(
        f.queue.prune(Duration::ZERO, 0).await.unwrap_err().field(),
        Some("batch_size")
    );
}

#[tokio::test]
async fn output_beyond_the_configured_cap_is_truncated_with_a_marker() {
    let f = crate::fixture_with(|c| c.max_output_bytes = 1024).await;
    let task = f.task("loud", 0).await;
    let execution = f.queue.enqueue(task.id, None).await.unwrap();
    f.queue.claim("w", 1, LEASE).await.unwrap();
    // 700 two-byte characters: 1,400 bytes, cut on a character boundary.
    let stdout = "é".repeat(700);
    let done = f
        .queue
        .complete(
            execution.id,
            "w",
            Outcome::completed(0).output(stdout.clone(), "short"),
        )
        .await
        .unwrap();
    let stored = f.executions.get(execution.id).await.unwrap();
    assert_eq!(stored.stdout, done.stdout);
    let kept = stored.stdout.unwrap();
    assert!(kept.starts_with(&"é".repeat(512)), "{kept}");
    assert!(
        kept.ends_with("\n[voidrunner-db: output truncated: 1024 of 1400 bytes kept]"),
        "{kept}"
    );
    assert_eq!(stored.stderr.as_deref(), Some("short"));

    // The same cap for results recorded by hand.
    let update = voidrunner_db::ExecutionUpdate {
        stderr: Some("x".repeat(5000)),
        ..Default::default()
    };
    let updated = f.executions.update(execution.id, update).await.unwrap();
    assert!(
        updated
            .stderr
            .unwrap()
            .ends_with("[voidrunner-db: output truncated: 1024 of 5000 bytes kept]")
    );
}
