//! Execution logs behind a transaction pooler: a `LogWriter`'s batches
//! through it, and a follower that listens through the direct URL or,
//! without one, polls through the pooler.

use std::sync::Arc;
use std::time::Duration;

use voidrunner_db::{
    Database, Error, ExecutionId, ExecutionQueue, FollowMode, FollowOptions, LogFollow, LogWriter,
    NewLogLine, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue, PgTaskRepository,
    PgUserRepository, TaskRepository, UserRepository,
};

use crate::pooled_database;

const LEASE: Duration = Duration::from_secs(30);

/// A new task's execution, claimed by worker `w`.
async fn running(db: &Database, email: &str) -> ExecutionId {
    let user = PgUserRepository::new(db.clone())
        .create(NewUser::new(email, PasswordHash::new("h")))
        .await
        .unwrap();
    let task = PgTaskRepository::new(db.clone())
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .unwrap();
    let queue = PgExecutionQueue::new(db.clone());
    queue.enqueue(task.id, None).await.unwrap();
    let claimed = queue.claim("w", 1, LEASE).await.unwrap();
    claimed[0].execution.id
}

/// Writes `lines` lines through a `LogWriter` in appends of ten, completes
/// the execution, and checks that `follow` yields them all in order, then
/// ends.
async fn write_and_follow(db: &Database, execution: ExecutionId, mut follow: LogFollow) {
    let writer = LogWriter::new(Arc::new(db.logs())).unwrap();
    let appends: Vec<_> = (0..10u64)
        .map(|chunk| {
            let lines = (chunk * 10..chunk * 10 + 10)
                .map(|seq| NewLogLine::stdout(seq, format!("line {seq}")))
                .collect();
            writer.append(execution, "w", lines)
        })
        .collect();
    for append in appends {
        assert_eq!(append.await.unwrap(), 10);
    }
    writer.shutdown().await;
    for seq in 0..100 {
        let line = tokio::time::timeout(Duration::from_secs(30), follow.next())
            .await
            .expect("a line within 30 s")
            .unwrap()
            .unwrap();
        assert_eq!((line.seq, line.text), (seq, format!("line {seq}")));
    }
    PgExecutionQueue::new(db.clone())
        .complete(execution, "w", Outcome::completed(0))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(30), follow.next())
        .await
        .expect("the end within 30 s");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn a_follower_listens_through_the_direct_url() {
    let test_db = pooled_database(4).await;
    let db = test_db.db();
    let execution = running(db, "listen@example.com").await;
    let follow = db
        .follow_logs(execution, FollowOptions::default())
        .await
        .unwrap();
    assert!(follow.listens());
    write_and_follow(db, execution, follow).await;
}

#[tokio::test]
async fn without_a_direct_url_a_follower_polls_and_listening_is_a_clear_error() {
    let test_db = pooled_database(4).await;
    let mut config = test_db.db().config().clone();
    config.clear_direct_url();
    let db = Database::connect(config).await.unwrap();
    let execution = running(&db, "poll@example.com").await;
    let listen = FollowOptions {
        mode: FollowMode::Listen,
        ..Default::default()
    };
    let err = db.follow_logs(execution, listen).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("VOIDRUNNER_DB_DIRECT_URL"),
        "{err}"
    );
    let follow = db
        .follow_logs(
            execution,
            FollowOptions {
                poll_interval: Some(Duration::from_millis(20)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!follow.listens());
    write_and_follow(&db, execution, follow).await;
    db.close(Duration::from_secs(5)).await;
}
