//! What the second attack review of the execution logs found (#21), each
//! turned into a test of what holds now: a REPEATABLE READ or SERIALIZABLE
//! delete of a task whose snapshot predates an append leaves those lines
//! behind (the snapshot cannot see them) but nobody is served them; an
//! execution's created_at that no partition can hold is refused; a table
//! left by hand under a partition's name does not stop maintenance; a
//! search of an alternative with only a negation is refused; a follower of
//! an execution deleted or given to another user ends.

use std::sync::Arc;

use voidrunner_db::{
    ExecutionRepository, IsolationLevel, LogRepository, LogScope, NewExecution, NewLogLine,
    PageRequest, ScopedLogRepository, Task, TaskExecution, TaskRepository, TransactionOptions,
    User,
};

use crate::{Repos, repos_with_pool};

async fn running(r: &Repos, email: &str, worker: &str) -> (User, Task, TaskExecution) {
    let user = r.user(email).await;
    let task = r.task(&user, "t").await;
    r.executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    let execution = r.claim(worker, 1).await.remove(0);
    (user, task, execution)
}

fn lines(seqs: std::ops::Range<u64>, text: &str) -> Vec<NewLogLine> {
    seqs.map(|i| NewLogLine::stdout(i, format!("{text} {i}")))
        .collect()
}

async fn orphan_lines(r: &Repos) -> i64 {
    r.db.raw_client()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM task_execution_logs l \
             WHERE NOT EXISTS (SELECT 1 FROM task_executions e WHERE e.id = l.execution_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A task deleted in a REPEATABLE READ (or SERIALIZABLE) transaction whose
/// snapshot predates an append that committed meanwhile: the delete
/// trigger's DELETE reads the transaction's snapshot and misses the new
/// lines, which stay behind without their execution, and a search of the
/// user still returns them, under a task that no longer exists.
async fn delete_in_snapshot_after_an_append(isolation: IsolationLevel, email: &str) {
    let r = repos_with_pool(4).await;
    let (user, task, e) = running(&r, email, "w").await;
    let logs = r.db.db().logs();
    assert_eq!(
        logs.append(e.id, "w", lines(0..2, "before")).await.unwrap(),
        2
    );
    let appended = Arc::new(tokio::sync::Mutex::new(false));
    let options = TransactionOptions::default().isolation(isolation);
    r.db.db()
        .transaction_with(options, |tx| {
            let logs = logs.clone();
            let appended = Arc::clone(&appended);
            async move {
                // The snapshot is taken here.
                tx.tasks().get(task.id).await?;
                let mut appended = appended.lock().await;
                if !*appended {
                    // Another worker's append, committed on the pool.
                    assert_eq!(logs.append(e.id, "w", lines(2..4, "needle")).await?, 2);
                    *appended = true;
                }
                tx.tasks().delete(task.id).await
            }
        })
        .await
        .unwrap();
    let found = logs
        .search(LogScope::User(user.id), "needle", PageRequest::default())
        .await
        .unwrap();
    // The lines committed after the deleting transaction's snapshot are
    // left behind (documented: they go with their partition), never
    // served: the search checks each chunk's execution, and every read
    // goes through the execution.
    assert!(found.items.is_empty(), "{isolation:?}: {:?}", found.items);
    assert_eq!(orphan_lines(&r).await, 2, "{isolation:?}");
    let err = logs.tail(e.id, 10).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_delete_serves_no_line_left_behind() {
    delete_in_snapshot_after_an_append(IsolationLevel::RepeatableRead, "rr-del@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_delete_serves_no_line_left_behind() {
    delete_in_snapshot_after_an_append(IsolationLevel::Serializable, "ser-del@example.com").await;
}

/// The same for a task moved to another user in a REPEATABLE READ
/// transaction: the owner trigger's UPDATE misses the lines appended after
/// the snapshot, which keep the old owner's user_id: the new owner's read of
/// the execution lacks them, the old owner's search still finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_move_takes_every_line_along() {
    let r = repos_with_pool(4).await;
    let (a, task, e) = running(&r, "rr-move-a@example.com", "w").await;
    let b = r.user("rr-move-b@example.com").await;
    let logs = r.db.db().logs();
    assert_eq!(
        logs.append(e.id, "w", lines(0..2, "before")).await.unwrap(),
        2
    );
    let appended = Arc::new(tokio::sync::Mutex::new(false));
    let options = TransactionOptions::default().isolation(IsolationLevel::RepeatableRead);
    r.db.db()
        .transaction_with(options, |tx| {
            let logs = logs.clone();
            let appended = Arc::clone(&appended);
            let (b, task) = (b.id, task.id);
            async move {
                tx.tasks().get(task).await?;
                let mut appended = appended.lock().await;
                if !*appended {
                    assert_eq!(logs.append(e.id, "w", lines(2..4, "needle")).await?, 2);
                    *appended = true;
                }
                tx.client()?
                    .execute(
                        "UPDATE tasks SET user_id = $1 WHERE id = $2",
                        &[&b.as_uuid(), &task.as_uuid()],
                    )
                    .await?;
                Ok(())
            }
        })
        .await
        .unwrap();
    let as_b = r.db.db().scoped_logs(b.id).tail(e.id, 100).await.unwrap();
    let a_search =
        r.db.db()
            .scoped_logs(a.id)
            .search("needle", PageRequest::default())
            .await
            .unwrap();
    assert!(
        as_b.len() == 4 && a_search.items.is_empty(),
        "the new owner reads {} of 4 lines; the old owner's search finds {} lines of the moved task",
        as_b.len(),
        a_search.items.len()
    );
}

/// `needle or -foo` matches a line `needle here` (the line check says so),
/// but its chunk query is NULL (querytree 'T'), so the search finds nothing:
/// a silent false negative for a query that is not "only negations".
#[tokio::test]
async fn an_alternative_of_a_negation_is_refused_or_answered_right() {
    let r = repos_with_pool(2).await;
    let (user, _, e) = running(&r, "or-neg@example.com", "w").await;
    let logs = r.db.db().logs();
    assert_eq!(
        logs.append(e.id, "w", vec![NewLogLine::stdout(0, "needle here")])
            .await
            .unwrap(),
        1
    );
    let plain = logs
        .search(LogScope::User(user.id), "needle", PageRequest::default())
        .await
        .unwrap();
    assert_eq!(plain.items.len(), 1);
    let found = logs
        .search(
            LogScope::User(user.id),
            "needle or -foo",
            PageRequest::default(),
        )
        .await;
    assert!(
        matches!(&found, Ok(p) if p.items.len() == 1)
            || matches!(&found, Err(e) if e.is_validation()),
        "`needle or -foo` should find the line (or be refused), got {found:?}"
    );
}

/// A tenant (raw SQL as `voidrunner_app`, scoped to itself: see
/// probes/p5_tenant_breaks_maintenance.sql, its UPDATE passes row-level
/// security) sets its own execution's `created_at` to `infinity`; the
/// SECURITY DEFINER owner trigger moves its lines into the DEFAULT
/// partitions, and from then on every maintenance run fails on that one
/// waiting range before it drops anything: retention stops for everyone.
/// (Done here through the owner's connection; the app role's UPDATE is the
/// same statement.)
async fn maintenance_survives_a_created_at(created_at: &str, email: &str) {
    let r = repos_with_pool(2).await;
    let (_, _, e) = running(&r, email, "w").await;
    let logs = r.db.db().logs();
    assert_eq!(logs.append(e.id, "w", lines(0..2, "x")).await.unwrap(), 2);
    let admin = r.db.raw_client().await.unwrap();
    let err = admin
        .execute(
            &format!("UPDATE task_executions SET created_at = '{created_at}' WHERE id = $1"),
            &[&e.id.as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().and_then(|db| db.constraint()),
        Some("task_executions_created_at_range"),
        "{err:?}"
    );
    let result = r.db.db().maintain_log_partitions(&Default::default()).await;
    assert!(result.is_ok(), "created_at {created_at}: {result:?}");
}

#[tokio::test]
async fn an_infinite_created_at_is_refused_and_maintenance_goes_on() {
    maintenance_survives_a_created_at("infinity", "inf@example.com").await;
}

#[tokio::test]
async fn a_five_digit_year_created_at_is_refused_and_maintenance_goes_on() {
    maintenance_survives_a_created_at("200000-01-01 00:00+00", "y200k@example.com").await;
}

/// A table left by hand under the name make would give a waiting range's
/// partition's suffix (make counts `LIKE name%` rather than looking for a
/// free name): that range's ensure fails with 42P07 on every run, and the
/// run stops there, before retention.
#[tokio::test]
async fn a_hand_made_table_does_not_stop_maintenance() {
    let r = repos_with_pool(2).await;
    let (_, _, e) = running(&r, "clash@example.com", "w").await;
    let admin = r.db.raw_client().await.unwrap();
    // The execution's lines wait in DEFAULT for a day long past.
    admin
        .execute(
            "UPDATE task_executions SET created_at = '2001-02-03 04:05+00' WHERE id = $1",
            &[&e.id.as_uuid()],
        )
        .await
        .unwrap();
    let logs = r.db.db().logs();
    assert_eq!(logs.append(e.id, "w", lines(0..2, "x")).await.unwrap(), 2);
    admin
        .batch_execute(
            "CREATE TABLE task_execution_logs_p20010203_0000 (LIKE task_execution_logs); \
             CREATE TABLE task_execution_logs_p20010203_0000_2 (LIKE task_execution_logs);",
        )
        .await
        .unwrap();
    let result = r.db.db().maintain_log_partitions(&Default::default()).await;
    assert!(result.is_ok(), "{result:?}");
}

async fn next_within(
    follow: &mut voidrunner_db::LogFollow,
    secs: u64,
) -> Option<voidrunner_db::Result<voidrunner_db::LogLine>> {
    tokio::time::timeout(std::time::Duration::from_secs(secs), follow.next())
        .await
        .expect("the follower hung")
}

/// A follower whose execution is deleted mid-follow says NotFound and ends.
#[tokio::test]
async fn a_follower_of_a_deleted_execution_ends_with_not_found() {
    for mode in [
        voidrunner_db::FollowMode::Listen,
        voidrunner_db::FollowMode::Poll,
    ] {
        let r = repos_with_pool(3).await;
        let (_, _, e) = running(&r, &format!("del-follow-{mode:?}@example.com"), "w").await;
        let logs = r.db.db().logs();
        logs.append(e.id, "w", lines(0..1, "x")).await.unwrap();
        let options = voidrunner_db::FollowOptions {
            mode,
            ..Default::default()
        };
        let mut follow = r.db.db().follow_logs(e.id, options).await.unwrap();
        assert_eq!(next_within(&mut follow, 5).await.unwrap().unwrap().seq, 0);
        r.db.raw_client()
            .await
            .unwrap()
            .execute(
                "DELETE FROM task_executions WHERE id = $1",
                &[&e.id.as_uuid()],
            )
            .await
            .unwrap();
        let err = next_within(&mut follow, 5).await.unwrap().unwrap_err();
        assert!(err.is_not_found(), "{mode:?}: {err:?}");
        assert!(next_within(&mut follow, 5).await.is_none(), "{mode:?}");
    }
}

/// A scoped follower of A's execution whose task moves to B mid-follow
/// yields none of the lines B's worker writes afterwards.
#[tokio::test]
async fn a_scoped_follower_stops_when_the_task_changes_owner() {
    let r = repos_with_pool(3).await;
    let (a, task, e) = running(&r, "scoped-move-a@example.com", "w").await;
    let b = r.user("scoped-move-b@example.com").await;
    let logs = r.db.db().logs();
    logs.append(e.id, "w", lines(0..1, "a's")).await.unwrap();
    let mut follow =
        r.db.db()
            .follow_scoped_logs(a.id, e.id, Default::default())
            .await
            .unwrap();
    assert_eq!(next_within(&mut follow, 5).await.unwrap().unwrap().seq, 0);
    r.db.raw_client()
        .await
        .unwrap()
        .execute(
            "UPDATE tasks SET user_id = $1 WHERE id = $2",
            &[&b.id.as_uuid(), &task.id.as_uuid()],
        )
        .await
        .unwrap();
    logs.append(e.id, "w", lines(1..3, "b's secret"))
        .await
        .unwrap();
    match next_within(&mut follow, 5).await {
        Some(Err(err)) => assert!(err.is_not_found(), "{err:?}"),
        other => panic!("A's follower got {other:?} after the task became B's"),
    }
    assert!(next_within(&mut follow, 5).await.is_none());
}
