//! How a downstream service unit-tests against the exported mocks: the
//! service holds `Arc<dyn TaskRepository>`, the test injects
//! `MockTaskRepository` (feature `mock`). No database is involved: what is
//! tested is the service's logic, not the repository.

use std::sync::Arc;

use mockall::predicate::eq;
use voidrunner_db::{
    Error, MockTaskRepository, ScriptType, Task, TaskId, TaskRepository, TaskStatus, Timestamp,
    UserId,
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

fn task_with(status: TaskStatus) -> Task {
    let now = Timestamp::now();
    Task {
        id: TaskId::new(),
        user_id: UserId::new(),
        name: "nightly".into(),
        description: None,
        script_content: "print(1)".into(),
        script_type: ScriptType::Python,
        status,
        priority: 0,
        timeout_seconds: 10,
        metadata: serde_json::json!({}),
        created_at: now,
        updated_at: now,
    }
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
