//! Executions beyond the contracts of `conformance/executions.rs`: racing
//! claims and ends of one execution.

use std::sync::Arc;

use voidrunner_db::{Error, ExecutionRepository, ExecutionStatus, NewExecution, TaskRepository};

use crate::{ids_of, repos_with_pool};

#[tokio::test]
async fn concurrent_starts_and_ends_of_one_execution_have_one_winner() {
    let r = Arc::new(repos_with_pool(10).await);
    let user = r.user("w@example.com").await;
    let ends = [
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
    ];
    for round in 0..5 {
        let task = r.task(&user, &format!("t{round}")).await;
        let e = r
            .executions
            .create(NewExecution::new(task.id))
            .await
            .unwrap();

        // Ten workers claim at once: one gets the execution, the others
        // nothing.
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let r = r.clone();
            let barrier = barrier.clone();
            racers.spawn(async move {
                let worker = format!("w{i}");
                barrier.wait().await;
                let claimed = r.claim(&worker, 1).await;
                (worker, claimed)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = racers.join_next().await {
            let (worker, claimed) = joined.unwrap();
            if !claimed.is_empty() {
                assert_eq!(ids_of(claimed), vec![e.id], "round {round}");
                winners.push(worker);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one worker starts it"
        );
        let running = r.executions.get(e.id).await.unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert_eq!(running.worker_id.as_ref(), Some(&winners[0]));
        assert_eq!(running.attempt, 1, "round {round}: claimed once");

        // Ten callers end it at once, in different ways: one wins, the
        // others are refused naming the winner's status, and the task
        // follows the winner.
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let r = r.clone();
            let barrier = barrier.clone();
            let to = ends[i % ends.len()];
            racers.spawn(async move {
                barrier.wait().await;
                (to, r.executions.update_status(e.id, to).await)
            });
        }
        let final_status = {
            let mut results = Vec::new();
            while let Some(joined) = racers.join_next().await {
                results.push(joined.unwrap());
            }
            let ended = r.executions.get(e.id).await.unwrap();
            let mut won = 0;
            for (to, result) in results {
                match result {
                    Ok(x) => {
                        won += 1;
                        assert_eq!((x.status, &x), (to, &ended), "round {round}");
                    }
                    Err(Error::InvalidTransition {
                        entity: "execution",
                        from,
                        to: wanted,
                    }) => {
                        assert_eq!(wanted, to.as_str());
                        assert_eq!(
                            from,
                            ended.status.as_str(),
                            "round {round}: losers see the winner's status"
                        );
                    }
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }
            assert_eq!(won, 1, "round {round}: exactly one end got through");
            ended.status
        };
        assert_eq!(
            r.tasks.get(task.id).await.unwrap().status.as_str(),
            final_status.as_str(),
            "round {round}: the task follows the execution"
        );
    }
}
