//! The execution logs' contracts (#21): appends lease-checked and
//! idempotent, pages, tails, reads and searches, the scoped view.

use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionStatus, LeaseLostReason, LogAppend, LogRepository,
    LogScope, LogStream, NewLogLine, Outcome, PageRequest, Result,
};

use super::{Set, contracts};

contracts! {
    appends_are_idempotent_and_read_back_in_order => Ending::Clean,
    appends_need_the_lease => Ending::Clean,
    append_many_answers_each_execution => Ending::Clean,
    searches_and_the_scoped_view => Ending::Clean,
}

fn lines(seqs: std::ops::Range<u64>, text: &str) -> Vec<NewLogLine> {
    seqs.map(|i| NewLogLine::stdout(i, format!("{text} {i}")))
        .collect()
}

async fn appends_are_idempotent_and_read_back_in_order(s: &Set) -> Result<()> {
    let user = s.user("logs@example.com").await;
    let task = s.task(&user, "t").await;
    let execution = s.start(task.id, "w").await;
    assert_eq!(
        s.logs
            .append(execution.id, "w", lines(0..3, "line"))
            .await?,
        3
    );
    // The same batch again adds nothing; one that overlaps adds the rest.
    assert_eq!(
        s.logs
            .append(execution.id, "w", lines(0..3, "line"))
            .await?,
        0
    );
    assert_eq!(
        s.logs
            .append(execution.id, "w", lines(1..5, "line"))
            .await?,
        2
    );
    let stderr = NewLogLine::new(5, LogStream::Stderr, "oops");
    assert_eq!(s.logs.append(execution.id, "w", vec![stderr]).await?, 1);
    assert_eq!(s.count_rows("task_execution_logs").await, 6);

    let first = s.logs.page(execution.id, PageRequest::first(4)).await?;
    let seqs: Vec<u64> = first.items.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(first.items[2].text, "line 2");
    let rest = s
        .logs
        .page(execution.id, PageRequest::first(4).next(&first).unwrap())
        .await?;
    assert_eq!(rest.items.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(rest.items[1].stream, LogStream::Stderr);
    assert!(rest.next_cursor.is_none());

    let tail = s.logs.tail(execution.id, 2).await?;
    assert_eq!(tail.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 5]);
    let read = s.logs.read_after(execution.id, Some(3), 10).await?;
    assert_eq!(read.status, ExecutionStatus::Running);
    assert_eq!(read.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 5]);
    let read = s.logs.read_after(execution.id, None, 1).await?;
    assert_eq!(read.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [0]);

    let missing = ExecutionId::new();
    let err = s.logs.tail(missing, 5).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // A cursor of another execution's page is refused.
    let other = s.task(&user, "u").await;
    let second = s.start(other.id, "w").await;
    s.logs.append(second.id, "w", lines(0..3, "x")).await?;
    let cursor = s.logs.page(second.id, PageRequest::first(1)).await?;
    let err = s
        .logs
        .page(execution.id, PageRequest::first(1).next(&cursor).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "cursor",
                ..
            }
        ),
        "{err:?}"
    );
    Ok(())
}

async fn appends_need_the_lease(s: &Set) -> Result<()> {
    let user = s.user("lease@example.com").await;
    let task = s.task(&user, "t").await;
    let execution = s.start(task.id, "w").await;
    let err = s
        .logs
        .append(execution.id, "intruder", lines(0..2, "x"))
        .await
        .unwrap_err();
    assert_eq!(
        err.lease_lost_reason(),
        Some(LeaseLostReason::NotOwner),
        "{err:?}"
    );
    let err = s
        .logs
        .append(ExecutionId::new(), "w", lines(0..2, "x"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    s.logs.append(execution.id, "w", lines(0..2, "x")).await?;
    s.queue
        .complete(execution.id, "w", Outcome::completed(0))
        .await?;
    let err = s
        .logs
        .append(execution.id, "w", lines(2..4, "late"))
        .await
        .unwrap_err();
    assert_eq!(
        err.lease_lost_reason(),
        Some(LeaseLostReason::Finished),
        "{err:?}"
    );
    let err = s
        .logs
        .append(execution.id, "w", vec![NewLogLine::stdout(9, "a\0b")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Validation { field: "text", .. }),
        "{err:?}"
    );
    assert_eq!(s.count_rows("task_execution_logs").await, 2);
    let read = s.logs.read_after(execution.id, None, 10).await?;
    assert_eq!(read.status, ExecutionStatus::Completed);
    assert_eq!(read.lines.len(), 2);
    Ok(())
}

async fn append_many_answers_each_execution(s: &Set) -> Result<()> {
    let user = s.user("many@example.com").await;
    let held = s.start(s.task(&user, "a").await.id, "w").await;
    let other = s.start(s.task(&user, "b").await.id, "v").await;
    let results = s
        .logs
        .append_many(vec![
            LogAppend::new(other.id, "w", lines(0..2, "not mine")),
            LogAppend::new(held.id, "w", lines(0..3, "mine")),
            LogAppend::new(ExecutionId::new(), "w", lines(0..1, "nobody's")),
        ])
        .await?;
    assert_eq!(results.len(), 3);
    assert!(
        results[0].as_ref().unwrap_err().is_lease_lost(),
        "{results:?}"
    );
    assert_eq!(*results[1].as_ref().unwrap(), 3);
    assert!(
        results[2].as_ref().unwrap_err().is_not_found(),
        "{results:?}"
    );
    assert_eq!(s.count_rows("task_execution_logs").await, 3);
    Ok(())
}

async fn searches_and_the_scoped_view(s: &Set) -> Result<()> {
    let alice = s.user("alice@example.com").await;
    let bob = s.user("bob@example.com").await;
    let a = s.task(&alice, "a").await;
    let b = s.task(&bob, "b").await;
    let ea = s.start(a.id, "w").await;
    let eb = s.start(b.id, "w").await;
    s.logs
        .append(
            ea.id,
            "w",
            vec![
                NewLogLine::stdout(0, "connecting to db"),
                NewLogLine::stderr(1, "error: connection refused"),
                NewLogLine::stdout(2, "retrying"),
            ],
        )
        .await?;
    s.logs
        .append(
            eb.id,
            "w",
            vec![NewLogLine::stderr(0, "Connection refused by peer")],
        )
        .await?;

    let found = s
        .logs
        .search(
            LogScope::User(alice.id),
            "\"connection refused\"",
            PageRequest::first(10),
        )
        .await?;
    assert_eq!(found.items.len(), 1, "{found:?}");
    assert_eq!((found.items[0].task_id, found.items[0].line.seq), (a.id, 1));
    let found = s
        .logs
        .search(LogScope::Task(b.id), "refused", PageRequest::first(10))
        .await?;
    assert_eq!(found.items.len(), 1, "{found:?}");
    assert_eq!(found.items[0].line.execution_id, eb.id);
    // Paging a search: newest first, then the next page.
    let page = s
        .logs
        .search(
            LogScope::User(alice.id),
            "connecting or retrying",
            PageRequest::first(1),
        )
        .await?;
    assert_eq!(page.items[0].line.seq, 2);
    let next = s
        .logs
        .search(
            LogScope::User(alice.id),
            "connecting or retrying",
            PageRequest::first(1).next(&page).unwrap(),
        )
        .await?;
    assert_eq!(
        next.items.iter().map(|m| m.line.seq).collect::<Vec<_>>(),
        [0]
    );
    assert!(next.next_cursor.is_none());

    let scoped = s.scoped(alice.id);
    let err = scoped.logs.tail(eb.id, 10).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(scoped.logs.tail(ea.id, 10).await?.len(), 3);
    let found = scoped
        .logs
        .search("refused", PageRequest::first(10))
        .await?;
    assert_eq!(found.items.len(), 1, "{found:?}");
    assert!(
        scoped
            .logs
            .search_task(b.id, "refused", PageRequest::first(10))
            .await?
            .items
            .is_empty()
    );
    Ok(())
}
