//! Execution logs (migration V13): appends, reads, searches.

use uuid::Uuid;
use voidrunner_db::{
    ExecutionId, ExecutionQueue, ExecutionRepository, LogRepository, LogScope, NewExecution,
    NewLogLine, Outcome, PageRequest, Task, TaskExecution, Timestamp, User,
};

use crate::{LEASE, Repos, repos};

/// A new execution of `task` (queued again after an end), claimed by
/// `worker` (only it is pending, so the claim takes it).
pub async fn running(r: &Repos, task: &Task, worker: &str) -> TaskExecution {
    let created = r.queue.enqueue(task.id, None).await.unwrap();
    let claimed = r.queue.claim(worker, 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].execution.id, created.id);
    claimed.into_iter().next().unwrap().execution
}

/// A task of `user` named `name` with an execution running under `worker`.
pub async fn running_task(r: &Repos, user: &User, name: &str, worker: &str) -> TaskExecution {
    let task = r.task(user, name).await;
    running(r, &task, worker).await
}

/// Lines `seqs` of standard output, each `"<word> line <seq>"`.
pub fn lines(seqs: std::ops::Range<u64>, word: &str) -> Vec<NewLogLine> {
    seqs.map(|i| NewLogLine::stdout(i, format!("{word} line {i}")))
        .collect()
}

/// Moves execution `id`'s creation to `at` with raw SQL, as another
/// application could: its lines go to the partition of `at`.
pub async fn set_created_at(r: &Repos, id: ExecutionId, at: Timestamp) {
    let n =
        r.db.raw_client()
            .await
            .unwrap()
            .execute(
                "UPDATE task_executions SET created_at = $2 WHERE id = $1",
                &[&id, &at],
            )
            .await
            .unwrap();
    assert_eq!(n, 1);
}

/// Execution `id`'s stored lines and search chunks, read with raw SQL
/// (every partition, the DEFAULT one included).
pub async fn stored(r: &Repos, id: ExecutionId) -> (i64, i64) {
    let raw = r.db.raw_client().await.unwrap();
    let row = raw
        .query_one(
            "SELECT (SELECT count(*) FROM task_execution_logs WHERE execution_id = $1), \
                    (SELECT count(*) FROM task_execution_log_chunks WHERE execution_id = $1)",
            &[&id.as_uuid()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The seqs execution `id`'s log holds, in order, read through the crate.
pub async fn seqs(r: &Repos, id: ExecutionId) -> Vec<u64> {
    r.db.db()
        .logs()
        .read_after(id, None, 10_000)
        .await
        .unwrap()
        .lines
        .iter()
        .map(|l| l.seq)
        .collect()
}

/// A random execution id nothing has.
pub fn missing_execution() -> ExecutionId {
    ExecutionId::from(Uuid::new_v4())
}

#[tokio::test]
async fn smoke_append_read_search() {
    let r = repos().await;
    let user = r.user("logs@example.com").await;
    let task = r.task(&user, "t").await;
    r.executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    let execution = r.claim("w", 1).await.remove(0);
    let logs = r.db.db().logs();
    let lines: Vec<NewLogLine> = (0..5)
        .map(|i| NewLogLine::stdout(i, format!("hello line {i} connection refused")))
        .collect();
    assert_eq!(
        logs.append(execution.id, "w", lines.clone()).await.unwrap(),
        5
    );
    assert_eq!(logs.append(execution.id, "w", lines).await.unwrap(), 0);
    let page = logs
        .page(execution.id, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let next = logs
        .page(
            execution.id,
            PageRequest::after(page.next_cursor.unwrap(), 10),
        )
        .await
        .unwrap();
    assert_eq!(
        next.items.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let tail = logs.tail(execution.id, 2).await.unwrap();
    assert_eq!(tail.iter().map(|l| l.seq).collect::<Vec<_>>(), [3, 4]);
    let found = logs
        .search(
            LogScope::User(user.id),
            "\"line 3\"",
            PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1, "{found:?}");
    let found = logs
        .search(LogScope::Task(task.id), "refused", PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        found.items.iter().map(|m| m.line.seq).collect::<Vec<_>>(),
        [4, 3]
    );
    r.queue
        .complete(execution.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let err = logs
        .append(execution.id, "w", vec![NewLogLine::stdout(9, "late")])
        .await
        .unwrap_err();
    assert!(err.is_lease_lost(), "{err:?}");
    let report =
        r.db.db()
            .maintain_log_partitions(&Default::default())
            .await
            .unwrap();
    assert!(report.dropped.is_empty(), "{report:?}");
}

/// Another application's lines must name their execution as it is: a
/// line with another user_id (it would show to the wrong tenant), another
/// created_at (it would escape the key in another partition) or a missing
/// execution is refused, the whole statement.
#[tokio::test]
async fn another_writers_lines_must_match_their_execution() {
    let r = repos().await;
    let user = r.user("writer@example.com").await;
    let task = r.task(&user, "t").await;
    r.executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    let execution = r.claim("w", 1).await.remove(0);
    let client = r.db.raw_client().await.unwrap();
    let insert = "INSERT INTO task_execution_logs (execution_id, execution_created_at, user_id, \
                  seq, stream, logged_at, line) VALUES ($1, $2, $3, $4, 'stdout', now(), 'x')";
    let stranger = uuid::Uuid::new_v4();
    let created = execution.created_at;
    let earlier =
        voidrunner_db::Timestamp::from_unix_micros(created.unix_micros() - 86_400_000_000).unwrap();
    let (id, user_id) = (execution.id, user.id);
    for (what, execution_id, at, owner) in [
        ("another user", id.as_uuid(), created, stranger),
        (
            "another created_at",
            id.as_uuid(),
            earlier,
            user_id.as_uuid(),
        ),
        ("no such execution", stranger, created, user_id.as_uuid()),
    ] {
        let err = client
            .execute(insert, &[&execution_id, &at, &owner, &0_i64])
            .await
            .expect_err(what);
        let db = err.as_db_error().expect(what);
        assert_eq!(db.code().code(), "23503", "{what}: {db:?}");
        assert_eq!(
            db.constraint(),
            Some("task_execution_logs_execution_match"),
            "{what}"
        );
    }
    client
        .execute(
            insert,
            &[&id.as_uuid(), &created, &user_id.as_uuid(), &0_i64],
        )
        .await
        .expect("a line that matches its execution");
    assert_eq!(r.count_rows("task_execution_logs").await, 1);
}

/// Every match of a search, walked in pages of 7 across executions of one
/// created_at and of others, some lines retried (two chunks holding them),
/// and the executions' lines moved out of DEFAULT in the middle of the
/// walk: each match once, in order (newest execution first, last line
/// first), the same as read with raw SQL.
#[tokio::test]
async fn search_and_page_walks_return_every_line_once_in_order() {
    let r = repos().await;
    let db = r.db.db();
    let logs = db.logs();
    let user = r.user("walk@example.com").await;
    let task = r.task(&user, "t").await;
    let mut executions = Vec::new();
    let same = Timestamp::from(time::macros::datetime!(2031-02-03 04:05 UTC));
    for i in 0..4 {
        let worker = format!("w{i}");
        let e = running(&r, &task, &worker).await;
        // Two executions share a created_at; all wait in DEFAULT.
        let at = if i < 2 {
            same
        } else {
            Timestamp::from(time::macros::datetime!(2031-02-01 00:00 UTC))
        };
        set_created_at(&r, e.id, at).await;
        let batch: Vec<NewLogLine> = (0..30)
            .map(|s| {
                NewLogLine::stdout(
                    s,
                    if s % 3 == 0 {
                        format!("match {i} {s}")
                    } else {
                        format!("other {i} {s}")
                    },
                )
            })
            .collect();
        logs.append(e.id, &worker, batch[..20].to_vec())
            .await
            .unwrap();
        // A retry that overlaps the first batch.
        logs.append(e.id, &worker, batch[15..].to_vec())
            .await
            .unwrap();
        r.queue
            .complete(e.id, &worker, Outcome::failed(1))
            .await
            .unwrap();
        executions.push(e);
    }
    let expected: Vec<(Uuid, i64)> =
        r.db.raw_client()
            .await
            .unwrap()
            .query(
                "SELECT execution_id, seq FROM task_execution_logs \
             WHERE to_tsvector('simple', line) @@ websearch_to_tsquery('simple', 'match') \
             ORDER BY execution_created_at DESC, execution_id DESC, seq DESC",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    assert_eq!(expected.len(), 40);
    for scope in [LogScope::Task(task.id), LogScope::User(user.id)] {
        let mut got = Vec::new();
        let mut request = PageRequest::first(7);
        let mut pages = 0;
        loop {
            let page = logs.search(scope, "match", request.clone()).await.unwrap();
            got.extend(
                page.items
                    .iter()
                    .map(|m| (m.line.execution_id.as_uuid(), m.line.seq as i64)),
            );
            pages += 1;
            if pages == 3 && matches!(scope, LogScope::Task(_)) {
                // The lines leave DEFAULT mid-walk.
                let report = db
                    .maintain_log_partitions_at(
                        &Default::default(),
                        Some(Timestamp::from(
                            time::macros::datetime!(2031-02-02 00:00 UTC),
                        )),
                    )
                    .await
                    .unwrap();
                assert!(report.moved > 0, "{report:?}");
            }
            match request.next(&page) {
                Some(next) => request = next,
                None => break,
            }
        }
        assert_eq!(got, expected, "{scope:?}");
    }
    for e in &executions {
        let mut got = Vec::new();
        let mut request = PageRequest::first(7);
        loop {
            let page = logs.page(e.id, request.clone()).await.unwrap();
            got.extend(page.items.iter().map(|l| l.seq));
            match request.next(&page) {
                Some(next) => request = next,
                None => break,
            }
        }
        assert_eq!(got, (0..30).collect::<Vec<_>>());
    }
}
