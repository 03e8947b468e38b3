//! Execution logs (migration V13): appends, reads, searches.

use voidrunner_db::{
    ExecutionQueue, ExecutionRepository, LogRepository, LogScope, NewExecution, NewLogLine,
    Outcome, PageRequest,
};

use crate::repos;

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
