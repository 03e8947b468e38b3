//! Batched completion and heartbeats: `complete_many` and the `Completer`,
//! `heartbeat_many`, `heartbeat_batch` and the `Heartbeater`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::{
    Completer, CompleterConfig, Completion, Error, ExecutionId, ExecutionQueue,
    ExecutionRepository, ExecutionStatus, Heartbeat, Heartbeater, HeartbeaterConfig,
    LeaseLostReason, Outcome, RescuePolicy, TaskExecution, TaskRepository, TaskStatus,
};

use crate::{LEASE, fixture, fixture_with};

#[tokio::test]
async fn a_mixed_batch_answers_each_completion_in_order() {
    let f = fixture().await;
    let queued = f.queued(5, |_| 0).await;
    let claimed = f.queue.claim("w1", 5, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let [ok, failed, stolen, cancelled, dup] = [0, 1, 2, 3, 4].map(|i| queued[i].id);
    f.queue.cancel(cancelled).await.unwrap();
    let unknown = ExecutionId::new();

    let results = f
        .queue
        .complete_many(vec![
            Completion::new(ok, "w1", Outcome::completed(0).output("out", "")),
            Completion::new(stolen, "w2", Outcome::completed(0)),
            Completion::new(unknown, "w1", Outcome::completed(0)),
            Completion::new(failed, "w1", Outcome::failed(3)),
            Completion::new(dup, "w1", Outcome::new(ExecutionStatus::Running)),
            Completion::new(cancelled, "w1", Outcome::completed(0)),
            Completion::new(dup, "w1", Outcome::completed(0)),
            Completion::new(dup, "w1", Outcome::failed(1)),
            Completion::new(ok, "w1", Outcome::failed(1)),
            Completion::new(stolen, "", Outcome::completed(0)),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 10);
    let done = |i: usize| results[i].as_ref().unwrap();
    let err = |i: usize| results[i].as_ref().unwrap_err();
    assert_eq!(
        (done(0).id, done(0).status),
        (ok, ExecutionStatus::Completed)
    );
    assert_eq!(done(0).stdout.as_deref(), Some("out"));
    assert_eq!(err(1).lease_lost_reason(), Some(LeaseLostReason::NotOwner));
    assert!(err(2).is_not_found(), "{:?}", err(2));
    assert_eq!(
        (done(3).id, done(3).status, done(3).return_code),
        (failed, ExecutionStatus::Failed, Some(3))
    );
    assert!(err(4).is_validation(), "running is no outcome");
    assert_eq!(err(5).lease_lost_reason(), Some(LeaseLostReason::Cancelled));
    // The first valid completion of `dup` is applied; later ones are
    // refused as duplicates.
    assert_eq!(
        (done(6).id, done(6).status),
        (dup, ExecutionStatus::Completed)
    );
    assert!(
        matches!(
            err(7),
            Error::Validation {
                field: "execution_id",
                ..
            }
        ),
        "{:?}",
        err(7)
    );
    assert!(matches!(
        err(8),
        Error::Validation {
            field: "execution_id",
            ..
        }
    ));
    assert!(err(9).is_validation(), "empty worker id");

    // The database agrees, and the tasks followed.
    let status = |id| {
        let executions = &f.executions;
        async move { executions.get(id).await.unwrap().status }
    };
    assert_eq!(status(ok).await, ExecutionStatus::Completed);
    assert_eq!(status(failed).await, ExecutionStatus::Failed);
    assert_eq!(status(stolen).await, ExecutionStatus::Running, "untouched");
    assert_eq!(status(cancelled).await, ExecutionStatus::Cancelled);
    assert_eq!(status(dup).await, ExecutionStatus::Completed);
    let task_status = |e: &TaskExecution| {
        let tasks = &f.tasks;
        let id = e.task_id;
        async move { tasks.get(id).await.unwrap().status }
    };
    assert_eq!(task_status(&queued[0]).await, TaskStatus::Completed);
    assert_eq!(task_status(&queued[1]).await, TaskStatus::Failed);
    assert_eq!(task_status(&queued[2]).await, TaskStatus::Running);
    assert_eq!(task_status(&queued[3]).await, TaskStatus::Cancelled);
    assert_eq!(task_status(&queued[4]).await, TaskStatus::Completed);

    // A second batch gets what a second `complete` would.
    let again = f
        .queue
        .complete_many(vec![Completion::new(ok, "w1", Outcome::completed(0))])
        .await
        .unwrap();
    assert_eq!(
        again[0].as_ref().unwrap_err().lease_lost_reason(),
        Some(LeaseLostReason::Finished)
    );
}

#[tokio::test]
async fn batch_bounds() {
    let f = fixture().await;
    assert!(f.queue.complete_many(Vec::new()).await.unwrap().is_empty());
    let too_many: Vec<Completion> = (0..=Completion::MAX_BATCH)
        .map(|_| Completion::new(ExecutionId::new(), "w", Outcome::completed(0)))
        .collect();
    let err = f.queue.complete_many(too_many).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "completions",
                ..
            }
        ),
        "{err:?}"
    );
    // Only invalid completions: no statement, every one answered.
    let results = f
        .queue
        .complete_many(vec![Completion::new(
            ExecutionId::new(),
            "w",
            Outcome::completed(999),
        )])
        .await
        .unwrap();
    assert!(results[0].as_ref().unwrap_err().is_validation());
}

#[tokio::test]
async fn an_expired_but_unrescued_lease_still_completes_in_a_batch() {
    let f = fixture().await;
    let queued = f.queued(2, |_| 0).await;
    f.queue
        .claim("slow", 2, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.queue
        .rescue_expired(RescuePolicy {
            batch_size: 1,
            ..RescuePolicy::default()
        })
        .await
        .unwrap();
    let results = f
        .queue
        .complete_many(
            queued
                .iter()
                .map(|e| Completion::new(e.id, "slow", Outcome::completed(0)))
                .collect(),
        )
        .await
        .unwrap();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let expired = results
        .iter()
        .filter(|r| {
            r.as_ref().err().and_then(Error::lease_lost_reason) == Some(LeaseLostReason::Expired)
        })
        .count();
    assert_eq!((ok, expired), (1, 1), "{results:?}");
}

/// The rescue/complete race of `lifecycle.rs`, with completions sent in
/// batches of 25 by ten completers: every execution ends exactly once, and
/// what each side was told matches the database.
#[tokio::test]
async fn the_rescue_complete_many_race_never_loses_a_completion() {
    const N: usize = 1000;
    let f = fixture_with(|c| c.max_connections = 12).await;
    let queued = crate::queued_with_expired_leases(&f, N).await;

    let queue = Arc::new(f.queue.clone());
    let mut completers = tokio::task::JoinSet::new();
    for chunk in queued.chunks(N / 10) {
        let ids: Vec<ExecutionId> = chunk.iter().map(|e| e.id).collect();
        let queue = queue.clone();
        completers.spawn(async move {
            let mut results = Vec::new();
            for batch in ids.chunks(25) {
                let answers = queue
                    .complete_many(
                        batch
                            .iter()
                            .map(|&id| Completion::new(id, "racer", Outcome::completed(0)))
                            .collect(),
                    )
                    .await
                    .unwrap();
                results.extend(batch.iter().copied().zip(answers));
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
                    assert_eq!((e.id, e.status), (id, ExecutionStatus::Completed));
                    assert!(outcomes.insert(id, true).is_none());
                }
                Err(err) => {
                    assert_eq!(
                        err.lease_lost_reason(),
                        Some(LeaseLostReason::Expired),
                        "{err:?}"
                    );
                    assert!(outcomes.insert(id, false).is_none());
                }
            }
        }
    }
    let rescued: HashSet<ExecutionId> = rescuer.await.unwrap().into_iter().collect();
    let rows =
        f.db.raw_client()
            .await
            .unwrap()
            .query(
                "SELECT e.id, e.status, e.return_code, t.status \
                 FROM task_executions e JOIN tasks t ON t.id = e.task_id",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(rows.len(), N);
    for row in rows {
        let id: ExecutionId = row.get(0);
        let status: ExecutionStatus = row.get(1);
        let task_status: TaskStatus = row.get(3);
        if outcomes[&id] {
            assert_eq!(
                (status, row.get::<_, Option<i32>>(2), task_status),
                (ExecutionStatus::Completed, Some(0), TaskStatus::Completed),
                "a completion was lost"
            );
            assert!(!rescued.contains(&id), "{id} completed and rescued");
        } else {
            assert_eq!(
                (status, task_status),
                (ExecutionStatus::Timeout, TaskStatus::Timeout)
            );
            assert!(rescued.contains(&id));
        }
    }
    assert_eq!(outcomes.len(), N);
}

#[tokio::test]
async fn the_completer_answers_each_caller_and_flushes_on_shutdown() {
    let f = fixture().await;
    let queued = f.queued(200, |_| 0).await;
    let mut claimed = Vec::new();
    for w in 0..4 {
        for job in f.queue.claim(&format!("w{w}"), 50, LEASE).await.unwrap() {
            claimed.push((job.execution.id, format!("w{w}")));
        }
    }
    assert_eq!(claimed.len(), 200);
    let completer = Completer::with_config(
        Arc::new(f.queue.clone()),
        CompleterConfig {
            flush_interval: Duration::from_millis(2),
            max_batch: 16,
            ..CompleterConfig::default()
        },
    )
    .unwrap();

    // 150 completions from many tasks at once; every 10th by the wrong
    // worker.
    let mut callers = tokio::task::JoinSet::new();
    for (i, (id, worker)) in claimed.iter().take(150).cloned().enumerate() {
        let completer = completer.clone();
        callers.spawn(async move {
            let worker = if i % 10 == 0 {
                "intruder".to_owned()
            } else {
                worker
            };
            (
                i,
                id,
                completer.complete(id, &worker, Outcome::completed(0)).await,
            )
        });
    }
    while let Some(joined) = callers.join_next().await {
        let (i, id, result) = joined.unwrap();
        if i % 10 == 0 {
            assert_eq!(
                result.unwrap_err().lease_lost_reason(),
                Some(LeaseLostReason::NotOwner)
            );
        } else {
            let e = result.unwrap();
            assert_eq!((e.id, e.status), (id, ExecutionStatus::Completed));
        }
    }

    // The same execution twice: one batch each, so the second is told it
    // already ended, as a second `complete` would be.
    let (id, worker) = claimed[150].clone();
    let first = completer.complete(id, &worker, Outcome::completed(0));
    let second = completer.complete(id, &worker, Outcome::failed(1));
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap().status, ExecutionStatus::Completed);
    assert_eq!(
        second.unwrap_err().lease_lost_reason(),
        Some(LeaseLostReason::Finished)
    );

    // Handed over, then dropped unpolled, then shut down: still completed.
    for (id, worker) in &claimed[151..] {
        drop(completer.complete(*id, worker, Outcome::failed(2)));
    }
    completer.shutdown().await;
    for (id, _) in &claimed[151..] {
        assert_eq!(
            f.executions.get(*id).await.unwrap().status,
            ExecutionStatus::Failed,
            "a dropped completion was lost"
        );
    }
    let late = completer
        .complete(claimed[0].0, &claimed[0].1, Outcome::completed(0))
        .await
        .unwrap_err();
    assert!(late.is_unavailable(), "{late:?}");
    completer.shutdown().await; // twice is fine
    let unfinished: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status = 'running'",
            &[],
        )
        .await;
    assert_eq!(unfinished, 15, "only the intruders' executions still run");
    assert_eq!(queued.len(), 200);
}

#[tokio::test]
async fn completer_settings_out_of_range_are_config_errors() {
    let f = fixture().await;
    let queue: Arc<dyn ExecutionQueue> = Arc::new(f.queue.clone());
    for config in [
        CompleterConfig {
            flush_interval: Duration::ZERO,
            ..CompleterConfig::default()
        },
        CompleterConfig {
            max_batch: Completion::MAX_BATCH + 1,
            ..CompleterConfig::default()
        },
    ] {
        let err = Completer::with_config(queue.clone(), config).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn heartbeat_many_answers_each_id_in_order() {
    let f = fixture().await;
    let queued = f.queued(4, |_| 0).await;
    let mine = f.queue.claim("w1", 2, LEASE).await.unwrap();
    f.queue.claim("w2", 1, LEASE).await.unwrap();
    let [a, b, theirs, pending] = [0, 1, 2, 3].map(|i| queued[i].id);
    assert_eq!(mine.len(), 2);
    f.queue.cancel(b).await.unwrap();
    let unknown = ExecutionId::new();
    let before = f.executions.get(a).await.unwrap().lease_expires_at.unwrap();
    let results = f
        .queue
        .heartbeat_many(
            "w1",
            vec![a, b, theirs, unknown, pending, a],
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 6);
    let new = *results[0].as_ref().unwrap();
    assert!(new > before, "the lease was extended");
    assert_eq!(results[5].as_ref().unwrap(), &new, "the same answer twice");
    assert_eq!(
        f.executions.get(a).await.unwrap().lease_expires_at,
        Some(new)
    );
    let reason = |i: usize| results[i].as_ref().unwrap_err().lease_lost_reason();
    assert_eq!(reason(1), Some(LeaseLostReason::Cancelled));
    assert_eq!(reason(2), Some(LeaseLostReason::NotOwner));
    assert!(results[3].as_ref().unwrap_err().is_not_found());
    assert_eq!(
        reason(4),
        Some(LeaseLostReason::NotOwner),
        "pending: not owned"
    );
    assert!(
        f.queue
            .heartbeat_many("w1", Vec::new(), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let too_many = vec![a; 1001];
    assert!(
        f.queue
            .heartbeat_many("w1", too_many, LEASE)
            .await
            .unwrap_err()
            .is_validation()
    );
    assert!(
        f.queue
            .heartbeat_many("", vec![a], LEASE)
            .await
            .unwrap_err()
            .is_validation()
    );
}

#[tokio::test]
async fn heartbeat_batch_answers_each_heartbeat_of_any_worker_in_order() {
    let f = fixture().await;
    f.queued(6, |_| 0).await;
    let take = |claimed: Vec<voidrunner_db::ClaimedExecution>| {
        claimed
            .into_iter()
            .map(|c| c.execution.id)
            .collect::<Vec<_>>()
    };
    let w1 = take(f.queue.claim("w1", 2, LEASE).await.unwrap());
    let w2 = take(f.queue.claim("w2", 2, LEASE).await.unwrap());
    let w3 = take(
        f.queue
            .claim("w3", 1, Duration::from_millis(1))
            .await
            .unwrap(),
    );
    let w4 = take(f.queue.claim("w4", 1, LEASE).await.unwrap());
    assert_eq!((w1.len(), w2.len(), w3.len(), w4.len()), (2, 2, 1, 1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rescued = f
        .queue
        .rescue_expired(RescuePolicy::default())
        .await
        .unwrap();
    assert_eq!(rescued.timed_out, w3, "w3's lease expired");
    f.queue
        .complete(w2[1], "w2", Outcome::completed(0))
        .await
        .unwrap();
    f.queue.cancel(w4[0]).await.unwrap();
    let unknown = ExecutionId::new();
    let executions = &f.executions;
    let lease_of = |id| async move { executions.get(id).await.unwrap().lease_expires_at.unwrap() };
    let stolen_before = lease_of(w1[1]).await;

    let long = Duration::from_secs(3600);
    let short = Duration::from_secs(60);
    let results = f
        .queue
        .heartbeat_batch(vec![
            Heartbeat::new(w1[0], "w1", long),
            Heartbeat::new(w2[0], "w2", short),
            Heartbeat::new(w1[1], "w2", long),
            Heartbeat::new(w3[0], "w3", long),
            Heartbeat::new(w2[1], "w2", long),
            Heartbeat::new(unknown, "w1", long),
            Heartbeat::new(w4[0], "w4", long),
            Heartbeat::new(w2[0], "", long),
            Heartbeat::new(w2[0], "w2", Duration::ZERO),
            Heartbeat::new(w1[0], "w1", short),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 10);
    let beat = |i: usize| *results[i].as_ref().unwrap();
    let err = |i: usize| results[i].as_ref().unwrap_err();
    // Each heartbeat gets its own lease, from the same statement's now().
    assert_eq!(
        beat(0).unix_micros() - beat(1).unix_micros(),
        (long - short).as_micros() as i64
    );
    assert_eq!(lease_of(w1[0]).await, beat(0));
    assert_eq!(lease_of(w2[0]).await, beat(1));
    assert_eq!(err(2).lease_lost_reason(), Some(LeaseLostReason::NotOwner));
    assert_eq!(lease_of(w1[1]).await, stolen_before, "not w2's to renew");
    assert_eq!(err(3).lease_lost_reason(), Some(LeaseLostReason::Expired));
    assert_eq!(err(4).lease_lost_reason(), Some(LeaseLostReason::Finished));
    assert!(err(5).is_not_found(), "{:?}", err(5));
    assert_eq!(err(6).lease_lost_reason(), Some(LeaseLostReason::Cancelled));
    assert!(
        matches!(
            err(7),
            Error::Validation {
                field: "worker_id",
                ..
            }
        ),
        "{:?}",
        err(7)
    );
    assert!(
        matches!(err(8), Error::Validation { field: "lease", .. }),
        "{:?}",
        err(8)
    );
    // w1[0] was heartbeaten earlier in the batch: refused, and its lease is
    // the first one's.
    assert!(
        matches!(
            err(9),
            Error::Validation {
                field: "execution_id",
                ..
            }
        ),
        "{:?}",
        err(9)
    );
    assert_eq!(lease_of(w1[0]).await, beat(0));
    // Nothing ran, finished or was cancelled by a heartbeat.
    for (id, status) in [
        (w3[0], ExecutionStatus::Timeout),
        (w2[1], ExecutionStatus::Completed),
        (w4[0], ExecutionStatus::Cancelled),
        (w1[1], ExecutionStatus::Running),
    ] {
        assert_eq!(f.executions.get(id).await.unwrap().status, status);
    }
}

#[tokio::test]
async fn heartbeat_batch_bounds() {
    let f = fixture().await;
    f.queued(1, |_| 0).await;
    let claimed = f.queue.claim("w", 1, LEASE).await.unwrap();
    let id = claimed[0].execution.id;
    let before = f.executions.get(id).await.unwrap();
    assert!(
        f.queue
            .heartbeat_batch(Vec::new())
            .await
            .unwrap()
            .is_empty()
    );

    // Over the cap: refused as a whole, nothing sent.
    let too_many = vec![
        Heartbeat::new(id, "w", Duration::from_secs(3600));
        voidrunner_db::validate::MAX_CLAIM as usize + 1
    ];
    let err = f.queue.heartbeat_batch(too_many).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "heartbeats",
                ..
            }
        ),
        "{err:?}"
    );
    let after = f.executions.get(id).await.unwrap();
    assert_eq!(
        (after.lease_expires_at, after.heartbeat_at),
        (before.lease_expires_at, before.heartbeat_at),
        "nothing changed"
    );

    // Only invalid ones: each its own error, no statement needed.
    let results = f
        .queue
        .heartbeat_batch(vec![
            Heartbeat::new(id, "w\0", LEASE),
            Heartbeat::new(
                id,
                "w",
                voidrunner_db::validate::MAX_LEASE + Duration::from_secs(1),
            ),
        ])
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().is_validation())
    );

    // Exactly the cap is one call.
    let at_cap = vec![Heartbeat::new(id, "w", LEASE); voidrunner_db::validate::MAX_CLAIM as usize];
    let results = f.queue.heartbeat_batch(at_cap).await.unwrap();
    assert!(results[0].is_ok());
    assert!(
        results[1..]
            .iter()
            .all(|r| r.as_ref().unwrap_err().is_validation())
    );
}

#[tokio::test]
async fn the_heartbeater_answers_each_caller_under_concurrency() {
    let f = fixture().await;
    f.queued(120, |_| 0).await;
    let mut claimed = Vec::new();
    for w in 0..4 {
        for job in f.queue.claim(&format!("w{w}"), 30, LEASE).await.unwrap() {
            claimed.push((job.execution.id, format!("w{w}")));
        }
    }
    assert_eq!(claimed.len(), 120);
    let heartbeater = Heartbeater::with_config(
        Arc::new(f.queue.clone()),
        HeartbeaterConfig {
            flush_interval: Duration::from_millis(2),
            max_batch: 16,
            ..HeartbeaterConfig::default()
        },
    )
    .unwrap();

    // 100 heartbeats from many tasks at once, each with its own lease;
    // every 10th by the wrong worker.
    let mut callers = tokio::task::JoinSet::new();
    for (i, (id, worker)) in claimed.iter().take(100).cloned().enumerate() {
        let heartbeater = heartbeater.clone();
        callers.spawn(async move {
            let worker = if i % 10 == 0 {
                "intruder".to_owned()
            } else {
                worker
            };
            let lease = Duration::from_secs(100 + i as u64);
            (i, id, heartbeater.heartbeat(id, &worker, lease).await)
        });
    }
    let mut renewed = HashMap::new();
    while let Some(joined) = callers.join_next().await {
        let (i, id, result) = joined.unwrap();
        if i % 10 == 0 {
            assert_eq!(
                result.unwrap_err().lease_lost_reason(),
                Some(LeaseLostReason::NotOwner)
            );
        } else {
            renewed.insert(id, (i, result.unwrap()));
        }
    }
    assert_eq!(renewed.len(), 90);
    for (id, (i, lease)) in &renewed {
        let execution = f.executions.get(*id).await.unwrap();
        assert_eq!(execution.lease_expires_at, Some(*lease), "caller {i}");
        let asked = (100 + *i as i64) * 1_000_000;
        let heartbeat_at = execution.heartbeat_at.unwrap().unix_micros();
        assert_eq!(
            lease.unix_micros() - heartbeat_at,
            asked,
            "caller {i}'s own lease"
        );
    }

    // The same execution twice at once: two batches, both renew.
    let (id, worker) = claimed[100].clone();
    let (first, second) = tokio::join!(
        heartbeater.heartbeat(id, &worker, LEASE),
        heartbeater.heartbeat(id, &worker, LEASE)
    );
    assert!(second.unwrap() >= first.unwrap());

    // Handed over, then dropped unpolled, then shut down: still sent.
    let long = Duration::from_secs(7200);
    for (id, worker) in &claimed[101..] {
        drop(heartbeater.heartbeat(*id, worker, long));
    }
    heartbeater.shutdown().await;
    let far: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions \
             WHERE lease_expires_at > now() + interval '1 hour'",
            &[],
        )
        .await;
    assert_eq!(far, 19, "a dropped heartbeat was lost");
    let late = heartbeater
        .heartbeat(claimed[1].0, &claimed[1].1, LEASE)
        .await
        .unwrap_err();
    assert!(late.is_unavailable(), "{late:?}");
    heartbeater.shutdown().await; // twice is fine
}
