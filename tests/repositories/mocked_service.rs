//! How a downstream service unit-tests against the exported mocks: the
//! service holds `Arc<dyn TaskRepository>`, the test injects
//! `MockTaskRepository` (feature `mock`). No database is involved: what is
//! tested is the service's logic, not the repository.

use std::sync::Arc;

use voidrunner_db::mockall::predicate::eq;
use voidrunner_db::{
    Error, MockTaskRepository, Task, TaskId, TaskRepository, TaskStatus, fixtures,
};

/// A service with one rule: retry a task only if it failed or timed out.
struct RetryService {
    tasks: Arc<dyn TaskRepository>,
}

impl RetryService {
    async fn retry(&self, id: TaskId) -> Result<TaskStatus, Error> {
        let task = self.tasks.get(id).await?;
        match task.status {
            TaskStatus::Failed | TaskStatus::Timeout => Ok(self
                .tasks
                .update_status(id, TaskStatus::Pending)
                .await?
                .status),
            other => Err(Error::validation(
                "status",
                format!("a {other} task is not retried"),
            )),
        }
    }
}

/// The task the mock returns: `Task` is `#[non_exhaustive]`, so a test
/// builds it with `voidrunner_db::fixtures` (feature `mock`).
fn task_with(status: TaskStatus) -> Task {
    fixtures::task().name("nightly").status(status).build()
}

#[tokio::test]
async fn retry_service_retries_failed_tasks_through_the_mock() {
    let id = TaskId::new();
    let mut mock = MockTaskRepository::new();
    mock.expect_get()
        .with(eq(id))
        .times(1)
        .returning(|_| Ok(task_with(TaskStatus::Failed)));
    mock.expect_update_status()
        .with(eq(id), eq(TaskStatus::Pending))
        .times(1)
        .returning(|_, status| Ok(task_with(status)));
    let service = RetryService {
        tasks: Arc::new(mock),
    };
    assert_eq!(service.retry(id).await.unwrap(), TaskStatus::Pending);
}

#[tokio::test]
async fn retry_service_leaves_completed_tasks_alone() {
    let id = TaskId::new();
    let mut mock = MockTaskRepository::new();
    mock.expect_get()
        .returning(|_| Ok(task_with(TaskStatus::Completed)));
    mock.expect_update_status().never();
    let service = RetryService {
        tasks: Arc::new(mock),
    };
    assert!(service.retry(id).await.unwrap_err().is_validation());
}

#[tokio::test]
async fn repository_errors_pass_through() {
    let id = TaskId::new();
    let mut mock = MockTaskRepository::new();
    mock.expect_get()
        .returning(move |id| Err(Error::not_found("task", id)));
    let service = RetryService {
        tasks: Arc::new(mock),
    };
    assert!(service.retry(id).await.unwrap_err().is_not_found());
}

/// A worker loop written against `Arc<dyn ExecutionQueue>`, tested with
/// `MockExecutionQueue`: it must report LeaseLost by stopping, not retrying.
mod worker {
    use std::sync::Arc;

    use voidrunner_db::{
        Error, ExecutionId, ExecutionQueue, LeaseLostReason, MockExecutionQueue, Outcome,
    };

    async fn finish(queue: Arc<dyn ExecutionQueue>, id: ExecutionId) -> Result<bool, Error> {
        match queue.complete(id, "w", Outcome::completed(0)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_lease_lost() => Ok(false),
            Err(e) => Err(e),
        }
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_worker_quietly() {
        let id = ExecutionId::new();
        let mut queue = MockExecutionQueue::new();
        queue
            .expect_complete()
            .times(1)
            .returning(|execution, _, _| {
                Err(Error::LeaseLost {
                    execution,
                    reason: LeaseLostReason::Cancelled,
                })
            });
        queue.expect_heartbeat().never();
        assert!(!finish(Arc::new(queue), id).await.unwrap());
    }
}
