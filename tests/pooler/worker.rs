//! The worker example's flow through a transaction pooler: 2,000 tasks, 8
//! workers, every execution ended exactly once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voidrunner_db::{
    ExecutionQueue, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue, PgTaskRepository,
    PgUserRepository, TaskRepository, UserRepository,
};

use crate::pooled_database;

const TASKS: usize = 2_000;
const WORKERS: usize = 8;
const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn two_thousand_tasks_eight_workers_every_execution_ends_once() {
    let test_db = pooled_database(WORKERS + 2).await;
    let db = test_db.db().clone();
    let owner = PgUserRepository::new(db.clone())
        .create(NewUser::new("fleet@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let tasks = PgTaskRepository::new(db.clone());
    let queue = Arc::new(PgExecutionQueue::new(db.clone()));
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(1_000) {
        let created = tasks
            .create_many(
                chunk
                    .iter()
                    .map(|i| NewTask::new(owner.id, format!("job {i}"), "print(1)"))
                    .collect(),
            )
            .await
            .unwrap();
        queue
            .enqueue_many(created.iter().map(|t| t.id).collect(), None)
            .await
            .unwrap();
    }

    let ended: Arc<Mutex<HashSet<_>>> = Arc::default();
    let mut fleet = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (queue, ended) = (queue.clone(), ended.clone());
        fleet.spawn(async move {
            let worker = format!("worker-{w}");
            let mut twice = 0;
            loop {
                let claimed = queue.claim(&worker, 10, LEASE).await?;
                if claimed.is_empty() {
                    if ended.lock().unwrap().len() >= TASKS {
                        return Ok::<usize, voidrunner_db::Error>(twice);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                for job in claimed {
                    let id = job.execution.id;
                    queue.heartbeat(id, &worker, LEASE).await?;
                    queue
                        .complete(id, &worker, Outcome::completed(0).output("ok", ""))
                        .await?;
                    if !ended.lock().unwrap().insert(id) {
                        twice += 1;
                    }
                }
            }
        });
    }
    let run = async {
        let mut twice = 0;
        while let Some(joined) = fleet.join_next().await {
            twice += joined.unwrap().unwrap();
        }
        twice
    };
    let twice = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the fleet finished within 600 s");
    assert_eq!(twice, 0, "an execution ended twice");
    assert_eq!(ended.lock().unwrap().len(), TASKS);

    let row = db
        .client()
        .await
        .unwrap()
        .query_typed_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'completed'), \
                    count(DISTINCT task_id), count(*) FILTER (WHERE attempt <> 1) \
             FROM task_executions",
            &[],
        )
        .await
        .unwrap();
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(counts, (TASKS as i64, TASKS as i64, TASKS as i64, 0));
}
