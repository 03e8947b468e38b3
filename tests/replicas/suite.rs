//! The repositories' reads with every read answered by a replica: a
//! read-your-writes handle with a long `replica_wait` reads everything it
//! wrote, on the replica, and each answer equals the primary's (the
//! default handle's) answer to the same call. The primary answers none of
//! the routed reads.
//!
//! Not the conformance suite of `tests/repositories` included as a
//! module: its contracts are private functions whose `contracts!` tables
//! generate tests of their own against the shared test server (and
//! PgBouncer), and their own SQL goes through a `TestDatabase`.

use std::fmt::Debug;
use std::time::Duration;

use serde_json::json;
use voidrunner_db::{
    Database, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewExecution, NewTask, NewUser,
    Outcome, Page, PageRequest, PasswordHash, PgExecutionQueue, PgExecutionRepository,
    PgTaskRepository, PgUserRepository, Result, TaskRepository, TaskStatus, UserRepository,
};

use crate::harness::{Cluster, all_up, reads_of};

/// Every page of a list, following the cursors.
async fn all_pages<T, F, Fut>(limit: u32, mut page: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut request = PageRequest::first(limit);
    loop {
        let got = page(request.clone()).await.unwrap();
        assert!(got.items.len() <= limit as usize);
        items.extend(got.items);
        match got.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return items,
        }
    }
}

/// The replica's answer equals the primary's.
fn same<T: PartialEq + Debug>(what: &str, replica: T, primary: T) -> T {
    assert_eq!(replica, primary, "{what}: the replica's answer differs");
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_answered_by_the_replica() {
    let cluster = Cluster::start(1).await;
    let mut config = cluster.config();
    config.replica_wait = Duration::from_secs(10);
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let request = db.read_your_writes(None);
    let (users, p_users) = (
        PgUserRepository::new(request.clone()),
        PgUserRepository::new(db.clone()),
    );
    let (tasks, p_tasks) = (
        PgTaskRepository::new(request.clone()),
        PgTaskRepository::new(db.clone()),
    );
    let (executions, p_executions) = (
        PgExecutionRepository::new(request.clone()),
        PgExecutionRepository::new(db.clone()),
    );
    let queue = PgExecutionQueue::new(request.clone());
    let (primary_before, replica_before) = (reads_of(&db, 0), reads_of(&db, 1));

    // Users.
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            users
                .create(NewUser::new(
                    format!("u{i}@example.com"),
                    PasswordHash::new("h"),
                ))
                .await
                .unwrap(),
        );
    }
    let (alice, bob) = (made[0].clone(), made[1].clone());
    assert_eq!(
        same(
            "get",
            users.get(alice.id).await.unwrap(),
            p_users.get(alice.id).await.unwrap()
        ),
        alice
    );
    same(
        "get_by_email",
        users.get_by_email("u1@example.com").await.unwrap(),
        bob.clone(),
    );
    let listed = same(
        "users list",
        all_pages(2, |p| users.list(p)).await,
        all_pages(2, |p| p_users.list(p)).await,
    );
    assert_eq!(listed.len(), 5);
    assert_eq!(
        same(
            "count",
            users.count().await.unwrap(),
            p_users.count().await.unwrap()
        ),
        5
    );
    assert!(
        users
            .get_by_email("nobody@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Tasks: 25 of alice's, 5 of bob's, some tagged, some cancelled.
    let mut batch = Vec::new();
    for i in 0..25 {
        let tag = if i % 5 == 0 { "gpu" } else { "cpu" };
        batch.push(
            NewTask::new(alice.id, format!("a{i}"), "print(1)").metadata(json!({"kind": tag})),
        );
    }
    let alices = tasks.create_many(batch).await.unwrap();
    let mut bobs = Vec::new();
    for i in 0..5 {
        bobs.push(
            tasks
                .create(NewTask::new(bob.id, format!("b{i}"), "print(2)"))
                .await
                .unwrap(),
        );
    }
    for task in &alices[..3] {
        tasks
            .update_status(task.id, TaskStatus::Cancelled)
            .await
            .unwrap();
    }
    let fresh = same(
        "get",
        tasks.get(alices[0].id).await.unwrap(),
        p_tasks.get(alices[0].id).await.unwrap(),
    );
    assert_eq!(fresh.status, TaskStatus::Cancelled, "the update is seen");
    let all = same(
        "tasks list",
        all_pages(7, |p| tasks.list(p)).await,
        all_pages(7, |p| p_tasks.list(p)).await,
    );
    assert_eq!(all.len(), 30);
    let by_alice = same(
        "list_by_user",
        all_pages(10, |p| tasks.list_by_user(alice.id, p)).await,
        all_pages(10, |p| p_tasks.list_by_user(alice.id, p)).await,
    );
    assert_eq!(by_alice.len(), 25);
    let cancelled = same(
        "list_by_status",
        all_pages(2, |p| tasks.list_by_status(TaskStatus::Cancelled, p)).await,
        all_pages(2, |p| p_tasks.list_by_status(TaskStatus::Cancelled, p)).await,
    );
    assert_eq!(cancelled.len(), 3);
    let gpu = same(
        "search_by_metadata",
        all_pages(2, |p| tasks.search_by_metadata(json!({"kind": "gpu"}), p)).await,
        all_pages(2, |p| p_tasks.search_by_metadata(json!({"kind": "gpu"}), p)).await,
    );
    assert_eq!(gpu.len(), 5);
    assert_eq!(tasks.count().await.unwrap(), 30);
    assert_eq!(tasks.count_by_user(bob.id).await.unwrap(), 5);
    assert_eq!(
        tasks.count_by_status(TaskStatus::Pending).await.unwrap(),
        27
    );

    // Executions: queued, claimed, completed, through the queue (writes,
    // on the primary) and read back on the replica.
    let target = &alices[10];
    let first = executions
        .create(NewExecution::new(target.id))
        .await
        .unwrap();
    let claimed = queue.claim("w", 1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].execution.id, first.id);
    let done = queue
        .complete(first.id, "w", Outcome::failed(1))
        .await
        .unwrap();
    let second = executions
        .create(NewExecution::new(target.id))
        .await
        .unwrap();
    let other = executions
        .create(NewExecution::new(bobs[0].id))
        .await
        .unwrap();
    assert_eq!(
        same(
            "execution get",
            executions.get(first.id).await.unwrap(),
            p_executions.get(first.id).await.unwrap()
        ),
        done
    );
    let listed = same(
        "executions list",
        all_pages(2, |p| executions.list(p)).await,
        all_pages(2, |p| p_executions.list(p)).await,
    );
    assert_eq!(listed.len(), 3);
    let of_target = same(
        "list_by_task",
        all_pages(1, |p| executions.list_by_task(target.id, p)).await,
        all_pages(1, |p| p_executions.list_by_task(target.id, p)).await,
    );
    assert_eq!(of_target.len(), 2);
    let pending = same(
        "executions list_by_status",
        all_pages(5, |p| {
            executions.list_by_status(ExecutionStatus::Pending, p)
        })
        .await,
        all_pages(5, |p| {
            p_executions.list_by_status(ExecutionStatus::Pending, p)
        })
        .await,
    );
    assert_eq!(pending.len(), 2);
    assert_eq!(
        executions.latest_for_task(target.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        executions.latest_for_task(alices[20].id).await.unwrap(),
        None
    );
    assert_eq!(executions.count().await.unwrap(), 3);
    assert_eq!(executions.count_by_task(target.id).await.unwrap(), 2);
    assert_eq!(
        executions
            .count_by_status(ExecutionStatus::Failed)
            .await
            .unwrap(),
        1
    );
    same(
        "the task of the executions",
        tasks.get(target.id).await.unwrap(),
        p_tasks.get(target.id).await.unwrap(),
    );

    // The scoped views of the handle.
    let scoped = request.scoped(alice.id);
    let p_scoped = db.scoped(alice.id);
    let mine = scoped
        .tasks
        .create(NewTask::new(alice.id, "scoped", "print(3)"))
        .await
        .unwrap();
    assert_eq!(scoped.tasks.get(mine.id).await.unwrap(), mine);
    assert!(
        scoped
            .tasks
            .get(bobs[0].id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let listed = same(
        "scoped list",
        all_pages(4, |p| scoped.tasks.list(p)).await,
        all_pages(4, |p| p_scoped.tasks.list(p)).await,
    );
    assert_eq!(listed.len(), 26);
    same(
        "scoped list_by_status",
        all_pages(4, |p| scoped.tasks.list_by_status(TaskStatus::Cancelled, p)).await,
        cancelled.clone(),
    );
    assert_eq!(
        all_pages(4, |p| scoped
            .tasks
            .search_by_metadata(json!({"kind": "gpu"}), p))
        .await
        .len(),
        5
    );
    assert_eq!(scoped.tasks.count().await.unwrap(), 26);
    assert_eq!(
        scoped
            .tasks
            .count_by_status(TaskStatus::Cancelled)
            .await
            .unwrap(),
        3
    );
    let enqueued = scoped.executions.enqueue(mine.id, None).await.unwrap();
    assert_eq!(scoped.executions.get(enqueued.id).await.unwrap(), enqueued);
    assert!(
        scoped
            .executions
            .get(other.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    same(
        "scoped executions list",
        all_pages(2, |p| scoped.executions.list(p)).await,
        all_pages(2, |p| p_scoped.executions.list(p)).await,
    );
    assert_eq!(
        all_pages(2, |p| scoped.executions.list_by_task(mine.id, p))
            .await
            .len(),
        1
    );
    assert_eq!(
        scoped.executions.latest_for_task(mine.id).await.unwrap(),
        Some(enqueued)
    );
    assert_eq!(scoped.executions.count().await.unwrap(), 3);
    assert_eq!(scoped.executions.count_by_task(target.id).await.unwrap(), 2);

    // Every routed read was the replica's.
    let nodes = db.nodes();
    let (primary, replica) = (
        nodes[0].reads - primary_before,
        nodes[1].reads - replica_before,
    );
    println!("routed reads: primary {primary}, replica {replica}");
    assert_eq!(primary, 0, "{nodes:?}");
    assert!(replica > 50, "{nodes:?}");
    assert!(request.read_in_recovery().await.unwrap());
}
