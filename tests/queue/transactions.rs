use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use voidrunner_db::{
    Error, NewTask, NewUser, PasswordHash, TaskRepository, TransactionOptions, UserId,
    UserRepository,
};

use crate::fixture;

#[tokio::test]
async fn commit_on_ok_across_repositories() {
    let f = fixture().await;
    let (user, execution) =
        f.db.transaction(|tx| async move {
            let user = tx
                .users()
                .create(NewUser::new("tx@example.com", PasswordHash::new("h")))
                .await?;
            let task = tx.tasks().create(NewTask::new(user.id, "t", "x")).await?;
            let execution =
                voidrunner_db::ExecutionQueue::enqueue(&tx.queue(), task.id, None).await?;
            Ok((user, execution))
        })
        .await
        .unwrap();
    assert_eq!(f.users.get(user.id).await.unwrap(), user);
    assert_eq!(
        voidrunner_db::ExecutionRepository::get(&f.executions, execution.id)
            .await
            .unwrap(),
        execution
    );
}

#[tokio::test]
async fn a_failure_in_the_third_statement_leaves_no_trace_of_the_first_two() {
    let f = fixture().await;
    let err =
        f.db.transaction(|tx| async move {
            let user = tx
                .users()
                .create(NewUser::new("gone@example.com", PasswordHash::new("h")))
                .await?;
            tx.tasks()
                .create(NewTask::new(user.id, "first", "x"))
                .await?;
            // A task of a user that does not exist: the server refuses it.
            tx.tasks()
                .create(NewTask::new(UserId::new(), "third", "x"))
                .await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(err.is_foreign_key(), "{err:?}");
    assert!(
        f.users
            .get_by_email("gone@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let tasks: i64 = f.scalar("SELECT count(*) FROM tasks", &[]).await;
    assert_eq!(tasks, 0);
}

#[tokio::test]
async fn a_panic_rolls_back_and_the_connection_never_returns_mid_transaction() {
    let f = fixture().await;
    let db = f.db.db().clone();
    let joined = tokio::spawn(async move {
        db.transaction(|tx| async move {
            tx.users()
                .create(NewUser::new("panic@example.com", PasswordHash::new("h")))
                .await?;
            panic!("the closure panics after a write");
            #[allow(unreachable_code)]
            Ok::<(), Error>(())
        })
        .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert!(
        f.users
            .get_by_email("panic@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );
    // No session is left inside a transaction: the panicking closure's
    // connection was closed, not pooled, and its server session rolls back
    // and ends once the server notices (at once on an idle machine, a
    // moment later on a busy one).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stuck: i64 = f
            .scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await;
        if stuck == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{stuck} sessions stayed inside a transaction"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Every connection the pool can hand out, held at once.
    let mut held = Vec::new();
    for _ in 0..f.db.db().config().max_connections {
        held.push(f.db.client().await.unwrap());
    }
    for client in &held {
        // The panicked transaction wrote, so it had a transaction id; a
        // connection still inside it would report one.
        // Unnamed (no parameters to declare): the statement runs through a
        // transaction pooler too.
        let in_tx: bool = client
            .query_typed_one("SELECT pg_current_xact_id_if_assigned() IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!in_tx, "a pooled connection is inside a transaction");
    }
}

#[tokio::test]
async fn serialization_failures_are_retried_when_asked() {
    let f = fixture().await;
    let attempts = Arc::new(AtomicU32::new(0));
    let raise_once = |attempts: Arc<AtomicU32>| {
        move |tx: voidrunner_db::Transaction| {
            let attempts = attempts.clone();
            async move {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                tx.users()
                    .create(NewUser::new(
                        format!("r{n}@example.com"),
                        PasswordHash::new("h"),
                    ))
                    .await?;
                if n == 0 {
                    // A real 40001 from the server.
                    tx.client()?
                        .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
                        .await?;
                }
                Ok(n)
            }
        }
    };
    let err =
        f.db.transaction(raise_once(attempts.clone()))
            .await
            .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "no retry unless asked");

    attempts.store(0, Ordering::SeqCst);
    let n =
        f.db.transaction_with(
            TransactionOptions::default().retries(3),
            raise_once(attempts.clone()),
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "the second attempt committed");
    assert!(
        f.users
            .get_by_email("r0@example.com")
            .await
            .unwrap_err()
            .is_not_found(),
        "the failed attempt left nothing"
    );
    f.users.get_by_email("r1@example.com").await.unwrap();
}

#[tokio::test]
async fn serializable_write_skew_is_retried_to_success() {
    let f = fixture().await;
    let user = f.user.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let run = |name: &'static str| {
        let db = f.db.db().clone();
        let barrier = barrier.clone();
        let attempts = attempts.clone();
        tokio::spawn(async move {
            let mut first = true;
            db.transaction_with(TransactionOptions::serializable(10), move |tx| {
                let barrier = barrier.clone();
                let wait = std::mem::replace(&mut first, false);
                attempts.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Both read before either writes: classic write skew.
                    let seen = tx.tasks().count_by_user(user).await?;
                    if wait {
                        barrier.wait().await;
                    }
                    tx.tasks()
                        .create(NewTask::new(user, format!("{name} saw {seen}"), "x"))
                        .await?;
                    Ok(seen)
                }
            })
            .await
        })
    };
    let (a, b) = (run("a"), run("b"));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let mut seen = [a, b];
    seen.sort();
    assert_eq!(seen, [0, 1], "the retried transaction saw the other's row");
    assert!(
        attempts.load(Ordering::SeqCst) >= 3,
        "one of them was retried"
    );
    assert_eq!(f.tasks.count_by_user(user).await.unwrap(), 2);
}

#[tokio::test]
async fn a_transaction_handle_is_dead_after_its_closure() {
    let f = fixture().await;
    let leaked =
        f.db.transaction(|tx| async move { Ok(tx.clone()) })
            .await
            .unwrap();
    let err = leaked.users().count().await.unwrap_err();
    assert!(matches!(err, Error::TransactionEnded), "{err:?}");
    assert!(matches!(
        leaked.client().unwrap_err(),
        Error::TransactionEnded
    ));
}
