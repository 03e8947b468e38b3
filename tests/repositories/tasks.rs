//! Tasks beyond the contracts of `conformance/tasks.rs`: a repository
//! with a policy of its own, and racing status updates.

use std::sync::Arc;

use voidrunner_db::{
    Error, ExecutionRepository, ExecutionStatus, NewExecution, NewTask, PgTaskRepository, TaskId,
    TaskRepository, TaskStatus,
};

use crate::{Repos, repos, repos_with_pool};

/// Queues `task` and claims its execution as `worker`: the task is running.
async fn start(r: &Repos, task: TaskId, worker: &str) -> voidrunner_db::TaskExecution {
    let queued = r.executions.create(NewExecution::new(task)).await.unwrap();
    let claimed = r.claim(worker, 1).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, queued.id);
    claimed.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_repository_with_a_policy_of_its_own_applies_its_deny_list() {
    let r = repos().await;
    let user = r.user("v@example.com").await;
    let policy = voidrunner_db::validate::ValidationPolicy {
        script: voidrunner_db::validate::ScriptPolicy {
            deny_patterns: vec!["curl".into()],
        },
        ..Default::default()
    };
    let custom = PgTaskRepository::with_policy(r.db.db().clone(), policy);
    assert!(
        custom
            .create(NewTask::new(user.id, "n", "rm -rf /tmp/x"))
            .await
            .is_ok()
    );
    assert_eq!(
        custom
            .create(NewTask::new(user.id, "n", "CURL x"))
            .await
            .unwrap_err()
            .field(),
        Some("script_content")
    );
}

#[tokio::test]
async fn concurrent_status_updates_have_one_winner() {
    let r = Arc::new(repos_with_pool(10).await);
    let user = r.user("c@example.com").await;
    for round in 0..5 {
        let task = r.task(&user, &format!("t{round}")).await;
        let e = start(&r, task.id, "w").await;
        // Cancels of the task race ends of its running execution.
        let ends = [
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
            ExecutionStatus::Timeout,
        ];
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let r = r.clone();
            let barrier = barrier.clone();
            racers.spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    let result = r.tasks.update_status(task.id, TaskStatus::Cancelled).await;
                    ("cancelled", result.map(|t| t.status.as_str()))
                } else {
                    let to = ends[i / 2 % ends.len()];
                    let result = r.executions.update_status(e.id, to).await;
                    (to.as_str(), result.map(|x| x.status.as_str()))
                }
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = racers.join_next().await {
            results.push(joined.unwrap());
        }
        // One racer ended the run; the task and its execution agree on how,
        // and that end is final for the others: every loser got
        // InvalidTransition naming the winner's status.
        let final_status = r.tasks.get(task.id).await.unwrap().status.as_str();
        assert_eq!(
            r.executions.get(e.id).await.unwrap().status.as_str(),
            final_status,
            "round {round}"
        );
        assert_ne!(final_status, "running", "round {round}");
        let mut succeeded = 0;
        for (to, result) in results {
            match result {
                Ok(status) => {
                    assert_eq!(
                        (to, status),
                        (final_status, final_status),
                        "round {round}: a second transition got through"
                    );
                    succeeded += 1;
                }
                Err(Error::InvalidTransition {
                    from, to: wanted, ..
                }) => {
                    assert_eq!(wanted, to);
                    assert_eq!(
                        from, final_status,
                        "round {round}: losers see the winner's status"
                    );
                }
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        // A winning cancel makes the other four cancels no-ops; a winning
        // end leaves no other racer a success.
        let expected = if final_status == "cancelled" { 5 } else { 1 };
        assert_eq!(succeeded, expected, "round {round}: {final_status}");
    }
}
