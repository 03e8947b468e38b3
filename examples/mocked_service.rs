//! How a service is written against the repository traits, and how its unit
//! tests inject the mockall mocks (feature `mock`) instead of PostgreSQL.
//!
//! ```text
//! cargo run --example mocked_service
//! ```
//!
//! In a downstream crate:
//!
//! ```toml
//! [dependencies]
//! voidrunner-db = "0.1"
//!
//! [dev-dependencies]
//! voidrunner-db = { version = "0.1", features = ["mock"] }
//! ```

use std::sync::Arc;

use voidrunner_db::{
    Error, ExecutionRepository, ExecutionStatus, MockExecutionRepository, MockTaskRepository,
    NewExecution, ScriptType, Task, TaskExecution, TaskId, TaskRepository, TaskStatus, Timestamp,
    UserId,
};

/// The service: starts a run of a task. It sees only the traits, so
/// production passes the `Pg*Repository` structs and tests pass mocks.
struct Scheduler {
    tasks: Arc<dyn TaskRepository>,
    executions: Arc<dyn ExecutionRepository>,
}

impl Scheduler {
    /// Refuses completed tasks; otherwise records a pending execution.
    async fn schedule(&self, task_id: TaskId) -> Result<TaskExecution, Error> {
        let task = self.tasks.get(task_id).await?;
        if task.status == TaskStatus::Completed {
            return Err(Error::validation(
                "task",
                "a completed task is not run again",
            ));
        }
        self.executions.create(NewExecution::new(task_id)).await
    }
}

fn task(status: TaskStatus) -> Task {
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

fn pending_execution(task_id: TaskId) -> TaskExecution {
    let now = Timestamp::now();
    TaskExecution {
        id: voidrunner_db::ExecutionId::new(),
        task_id,
        status: ExecutionStatus::Pending,
        return_code: None,
        stdout: None,
        stderr: None,
        execution_time_ms: None,
        memory_usage_bytes: None,
        started_at: None,
        completed_at: None,
        created_at: now,
        priority: 0,
        run_after: now,
        attempt: 0,
        worker_id: None,
        lease_expires_at: None,
        heartbeat_at: None,
        updated_at: now,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // What a unit test of the service does: script the mocks, inject them,
    // check the behaviour.
    let id = TaskId::new();
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_get()
        .withf(move |asked| *asked == id)
        .returning(|_| Ok(task(TaskStatus::Pending)));
    let mut executions = MockExecutionRepository::new();
    executions
        .expect_create()
        .times(1)
        .returning(|new| Ok(pending_execution(new.task_id)));
    let scheduler = Scheduler {
        tasks: Arc::new(tasks),
        executions: Arc::new(executions),
    };
    let execution = scheduler.schedule(id).await.expect("scheduled");
    assert_eq!(execution.task_id, id);
    println!("pending task: scheduled execution {}", execution.id);

    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_get()
        .returning(|_| Ok(task(TaskStatus::Completed)));
    let mut executions = MockExecutionRepository::new();
    executions.expect_create().never();
    let scheduler = Scheduler {
        tasks: Arc::new(tasks),
        executions: Arc::new(executions),
    };
    let refused = scheduler.schedule(id).await.unwrap_err();
    assert!(refused.is_validation());
    println!("completed task: refused ({refused})");
}
