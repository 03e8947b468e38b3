//! The execution queue's contracts.

use voidrunner_db::{
    Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, Outcome, PageRequest, Result,
    TaskRepository, TaskStatus,
};

use super::{Set, contracts};
use crate::LEASE;

contracts! {
    enqueue_claim_heartbeat_complete => Ending::Clean,
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
