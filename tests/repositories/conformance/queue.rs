//! The execution queue's contracts.

use voidrunner_db::{
    ClaimOrder, Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, Outcome, PageRequest,
    Result, TaskRepository, TaskStatus,
};

use super::{Set, contracts};
use crate::LEASE;

contracts! {
    enqueue_claim_heartbeat_complete => Ending::Clean,
    fair_claim_serves_each_user_within_their_cap => Ending::Clean,
}

async fn enqueue_claim_heartbeat_complete(s: &Set) -> Result<()> {
    let user = s.user("queue@example.com").await;
    let task = s.task(&user, "queued").await.id;
    let queued = s.queue.enqueue(task, None).await?;
    assert_eq!(queued.status, ExecutionStatus::Pending);
    let claimed = s.queue.claim("w", 10, LEASE).await?;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let job = &claimed[0];
    assert_eq!(job.execution.id, queued.id);
    assert_eq!(job.execution.worker_id.as_deref(), Some("w"));
    assert_eq!(s.tasks.get(task).await?.status, TaskStatus::Running);
    s.queue.heartbeat(queued.id, "w", LEASE).await?;
    let done = s
        .queue
        .complete(queued.id, "w", Outcome::completed(0))
        .await?;
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(s.tasks.get(task).await?.status, TaskStatus::Completed);
    let latest = s.executions.latest_for_task(task).await?.expect("latest");
    assert_eq!(latest.id, queued.id);
    let listed = s
        .executions
        .list_by_task(task, PageRequest::first(10))
        .await?;
    assert_eq!(listed.items.len(), 1);
    // Last: a completion of a finished execution is refused as lost.
    let err: Error = s
        .queue
        .complete(queued.id, "w", Outcome::completed(0))
        .await
        .expect_err("completed twice");
    assert!(err.is_lease_lost(), "{err:?}");
    // The crate's own refusal, no server error: nothing aborted.
    Ok(())
}

/// The fair claim (V15): one user's backlog does not keep the other's work
/// waiting, and a cap written on the mode's own connection (in a
/// transaction, the transaction's) holds; a second claim finds only the
/// capped user's work left, and leaves it.
async fn fair_claim_serves_each_user_within_their_cap(s: &Set) -> Result<()> {
    let capped = s.user("capped@example.com").await;
    let free = s.user("free@example.com").await;
    for (user, n) in [(&capped, 3), (&free, 2)] {
        for i in 0..n {
            let task = s.task(user, &format!("t{i}")).await.id;
            s.queue.enqueue(task, None).await?;
        }
    }
    s.execute(
        "INSERT INTO user_concurrency_limits (user_id, max_running) VALUES ($1, 1)",
        &[&capped.id],
    )
    .await;
    let fair = s.queue.clone().with_claim_order(ClaimOrder::Fair);
    assert_eq!(fair.claim_order(), ClaimOrder::Fair);
    let claimed = fair.claim("w", 10, LEASE).await?;
    let mut owners = Vec::new();
    for job in &claimed {
        assert_eq!(job.execution.worker_id.as_deref(), Some("w"));
        owners.push(s.tasks.get(job.execution.task_id).await?.user_id);
    }
    let of = |user| owners.iter().filter(|o| **o == user).count();
    assert_eq!((of(capped.id), of(free.id)), (1, 2), "{claimed:?}");
    assert!(fair.claim("w", 10, LEASE).await?.is_empty(), "at the cap");
    let running = s
        .query_one(
            "SELECT count(*) FROM task_executions WHERE user_id = $1 AND status = 'running'",
            &[&capped.id],
        )
        .await
        .get::<_, i64>(0);
    assert_eq!(running, 1);
    Ok(())
}
