//! What the attack review of the execution logs found (#21), each turned
//! into a test of the fix: retention never counts from a later time than
//! the server's; an append that meets a task moving to another user, or a
//! partition being attached, still lands; searches with negations and long
//! chunks; forged chunks, undecodable times and moved executions from
//! another writer; partitions read directly by a granted role.

use std::time::Duration;

use tokio_postgres::Client;
use voidrunner_db::{
    ExecutionRepository, LogRepository, LogScope, NewExecution, NewLogLine, PageRequest, Task,
    TaskExecution, Timestamp, User,
};

use crate::{Repos, repos, repos_with_pool};

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

/// Waits until some session of this database waits on a lock.
async fn until_a_lock_waiter(observer: &Client) {
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn making_a_coming_periods_partitions_drops_nothing_current() {
    let r = repos().await;
    let (_, _, e) = running(&r, "future@example.com", "w").await;
    let logs = r.db.db().logs();
    assert_eq!(logs.append(e.id, "w", lines(0..10, "x")).await.unwrap(), 10);
    let in_40_days =
        Timestamp::from_unix_micros(Timestamp::now().unix_micros() + 40 * 86_400_000_000).unwrap();
    let report =
        r.db.db()
            .maintain_log_partitions_at(&Default::default(), Some(in_40_days))
            .await
            .unwrap();
    assert!(report.dropped.is_empty(), "{report:?}");
    assert_eq!(
        report.created.len(),
        6,
        "three days ahead, both tables: {report:?}"
    );
    assert_eq!(logs.tail(e.id, 100).await.unwrap().len(), 10);
}

#[tokio::test]
async fn an_append_that_meets_a_task_moving_to_another_user_lands_with_the_new_owner() {
    let r = repos_with_pool(4).await;
    let (_, task, e) = running(&r, "mover-a@example.com", "w").await;
    let b = r.user("mover-b@example.com").await;
    let logs = r.db.db().logs();
    assert_eq!(logs.append(e.id, "w", lines(0..2, "x")).await.unwrap(), 2);
    let mover = r.db.raw_client().await.unwrap();
    mover.batch_execute("BEGIN").await.unwrap();
    mover
        .execute(
            "UPDATE tasks SET user_id = $1 WHERE id = $2",
            &[&b.id.as_uuid(), &task.id.as_uuid()],
        )
        .await
        .unwrap();
    let pending = tokio::spawn({
        let logs = logs.clone();
        async move { logs.append(e.id, "w", lines(2..4, "y")).await }
    });
    until_a_lock_waiter(&r.db.raw_client().await.unwrap()).await;
    mover.batch_execute("COMMIT").await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), 2);
    let owners: Vec<uuid::Uuid> =
        r.db.raw_client()
            .await
            .unwrap()
            .query("SELECT DISTINCT user_id FROM task_execution_logs", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    assert_eq!(owners, [b.id.as_uuid()]);
}

#[tokio::test]
async fn an_append_that_meets_its_partition_being_attached_lands_in_it() {
    let r = repos_with_pool(4).await;
    let admin = r.db.raw_client().await.unwrap();
    // Today's partitions dropped by hand: today's executions wait in DEFAULT.
    for parent in ["task_execution_logs", "task_execution_log_chunks"] {
        for row in admin
            .query(
                "SELECT partition::text FROM voidrunner_log_partitions($1::text::regclass) \
                 WHERE lower_bound <= now() AND upper_bound > now()",
                &[&parent],
            )
            .await
            .unwrap()
        {
            let name: String = row.get(0);
            admin
                .batch_execute(&format!("DROP TABLE {name}"))
                .await
                .unwrap();
        }
    }
    let (_, _, e) = running(&r, "attach@example.com", "w").await;
    let logs = r.db.db().logs();
    assert_eq!(logs.append(e.id, "w", lines(0..5, "x")).await.unwrap(), 5);
    assert_eq!(r.count_rows("task_execution_logs_default").await, 5);
    let maintenance = r.db.raw_client().await.unwrap();
    maintenance.batch_execute("BEGIN").await.unwrap();
    let made = maintenance
        .query(
            "SELECT * FROM voidrunner_log_partition_ensure('day', now())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 2);
    let pending = tokio::spawn({
        let logs = logs.clone();
        async move { logs.append(e.id, "w", lines(5..10, "y")).await }
    });
    until_a_lock_waiter(&admin).await;
    maintenance.batch_execute("COMMIT").await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), 5);
    assert_eq!(r.count_rows("task_execution_logs_default").await, 0);
    assert_eq!(logs.tail(e.id, 100).await.unwrap().len(), 10);
}

#[tokio::test]
async fn negations_and_phrases_are_the_lines_own() {
    let r = repos().await;
    let (user, _, e) = running(&r, "chunks@example.com", "w").await;
    let logs = r.db.db().logs();
    let mut all = vec![
        NewLogLine::stdout(0, "alpha needle"),
        NewLogLine::stdout(1, "alpha plain"),
    ];
    // 20,000 words before the phrase, in the same chunk.
    all.extend((0..200u64).map(|i| NewLogLine::stdout(2 + i, "x ".repeat(100))));
    all.push(NewLogLine::stdout(202, "connection refused by peer"));
    logs.append(e.id, "w", all).await.unwrap();
    let seqs = |query: &'static str| {
        let logs = logs.clone();
        async move {
            logs.search(LogScope::User(user.id), query, PageRequest::first(10))
                .await
                .unwrap()
                .items
                .iter()
                .map(|m| m.line.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(seqs("alpha -needle").await, [1]);
    assert_eq!(seqs("\"connection refused\"").await, [202]);
    assert_eq!(seqs("\"refused connection\"").await, Vec::<u64>::new());
    assert_eq!(seqs("alpha or peer").await, [202, 1, 0]);
    // Nothing to look up (a negation alone, or an alternative of one):
    // refused, not answered by reading every line.
    for query in ["-needle", "plain or -needle"] {
        let err = logs
            .search(LogScope::User(user.id), query, PageRequest::first(10))
            .await
            .unwrap_err();
        assert!(
            matches!(err, voidrunner_db::Error::Validation { field: "query", .. }),
            "{query}: {err:?}"
        );
    }
}

#[tokio::test]
async fn another_writers_chunks_and_times_must_match() {
    let r = repos().await;
    let (a, ta, _) = running(&r, "chunk-a@example.com", "wa").await;
    let (b, _, eb) = running(&r, "chunk-b@example.com", "wb").await;
    let logs = r.db.db().logs();
    logs.append(eb.id, "wb", vec![NewLogLine::stdout(0, "secret hunter2")])
        .await
        .unwrap();
    let client = r.db.raw_client().await.unwrap();
    let forged = client
        .execute(
            "INSERT INTO task_execution_log_chunks (execution_id, execution_created_at, user_id, \
             task_id, first_seq, last_seq, document) \
             VALUES ($1, $2, $3, $4, 1, 10, to_tsvector('simple', 'hunter2'))",
            &[
                &eb.id.as_uuid(),
                &eb.created_at,
                &a.id.as_uuid(),
                &ta.id.as_uuid(),
            ],
        )
        .await
        .unwrap_err();
    let db = forged.as_db_error().unwrap();
    assert_eq!(
        db.constraint(),
        Some("task_execution_log_chunks_execution_match")
    );
    let found = logs
        .search(LogScope::User(a.id), "hunter2", PageRequest::first(10))
        .await
        .unwrap();
    assert!(found.items.is_empty(), "{found:?}");
    for time in ["infinity", "-infinity", "20000-01-01"] {
        let err = client
            .execute(
                &format!(
                    "INSERT INTO task_execution_logs (execution_id, execution_created_at, \
                     user_id, seq, stream, logged_at, line) \
                     VALUES ($1, $2, $3, 9, 'stdout', '{time}', 'bad')"
                ),
                &[&eb.id.as_uuid(), &eb.created_at, &b.id.as_uuid()],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.as_db_error().unwrap().constraint(),
            Some("task_execution_logs_logged_at_range"),
            "{time}"
        );
    }
    // An execution given another created_at (and so another partition)
    // takes its lines along.
    client
        .execute(
            "UPDATE task_executions SET created_at = created_at - interval '3 days' WHERE id = $1",
            &[&eb.id.as_uuid()],
        )
        .await
        .unwrap();
    let read = logs.read_after(eb.id, None, 10).await.unwrap();
    assert_eq!(read.lines.len(), 1);
    let moved: i64 = client
        .query_one(
            "SELECT count(*) FROM task_execution_logs l JOIN task_executions e \
             ON e.id = l.execution_id AND e.created_at = l.execution_created_at",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved, 1);
}

#[tokio::test]
async fn a_role_granted_a_partition_directly_reads_none_of_it() {
    let r = repos().await;
    let (_, _, e) = running(&r, "partition@example.com", "w").await;
    r.db.db()
        .logs()
        .append(e.id, "w", lines(0..3, "x"))
        .await
        .unwrap();
    let client = r.db.raw_client().await.unwrap();
    let role = format!("logs_reader_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
        ))
        .await
        .unwrap();
    let partition: String = client
        .query_one(
            "SELECT tableoid::regclass::text FROM task_execution_logs LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}"))
        .await
        .unwrap();
    let seen: i64 = client
        .query_one(&format!("SELECT count(*) FROM {partition}"), &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "ROLLBACK; REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; DROP ROLE {role}"
        ))
        .await
        .unwrap();
    assert_eq!(seen, 0);
}

/// The consistency triggers find task_executions in the firing table's
/// schema: a temporary table of that name (searched first by default)
/// does not let a mismatched line in, and a session with an empty
/// search_path (a data-only restore) can still write a matching one.
#[tokio::test]
async fn the_checks_cannot_be_shadowed_and_need_no_search_path() {
    let r = repos().await;
    let (a, _, _) = running(&r, "shadow-a@example.com", "wa").await;
    let (_, _, eb) = running(&r, "shadow-b@example.com", "wb").await;
    let client = r.db.raw_client().await.unwrap();
    client
        .batch_execute(
            "CREATE TEMP TABLE task_executions (id uuid, created_at timestamptz, \
             user_id uuid, task_id uuid)",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO pg_temp.task_executions VALUES ($1, $2, $3, NULL)",
            &[&eb.id.as_uuid(), &eb.created_at, &a.id.as_uuid()],
        )
        .await
        .unwrap();
    let err = client
        .execute(
            "INSERT INTO public.task_execution_logs (execution_id, execution_created_at, \
             user_id, seq, stream, logged_at, line) \
             VALUES ($1, $2, $3, 0, 'stdout', now(), 'under a')",
            &[&eb.id.as_uuid(), &eb.created_at, &a.id.as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().and_then(|db| db.constraint()),
        Some("task_execution_logs_execution_match")
    );
    client
        .batch_execute("DROP TABLE pg_temp.task_executions; SET search_path = ''")
        .await
        .unwrap();
    let owner: uuid::Uuid = client
        .query_one(
            "SELECT user_id FROM public.task_executions WHERE id = $1",
            &[&eb.id.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO public.task_execution_logs (execution_id, execution_created_at, \
             user_id, seq, stream, logged_at, line) \
             VALUES ($1, $2, $3, 0, 'stdout', now(), 'fine')",
            &[&eb.id.as_uuid(), &eb.created_at, &owner],
        )
        .await
        .unwrap();
}
