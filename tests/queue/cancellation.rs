//! Futures dropped at every await point (issue #7 §1): a connection whose
//! transaction state is unknown is closed, never pooled, so a later
//! acknowledged write can never be rolled back with somebody else's
//! transaction.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_postgres::NoTls;
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{NewTask, NewUser, PasswordHash, TaskRepository, UserRepository};

/// How many times the transaction future is polled before it is dropped
/// cycles through 1..=MAX_POLLS (past its last await point it completes);
/// every (MAX_POLLS + 1)th round uses `timeout(0)` instead.
const MAX_POLLS: usize = 12;
const ROUNDS: usize = 1000;

#[tokio::test]
async fn a_dropped_transaction_never_poisons_the_pool() {
    let app = format!("vr-cancel-{}", std::process::id());
    let db = TestDatabase::with_config(|c| {
        // Two connections, so the one a dropped transaction leaves behind is
        // the one the next write gets.
        c.max_connections = 2;
        c.min_connections = 1;
        c.application_name = app.clone();
    })
    .await
    .unwrap();
    let users = voidrunner_db::PgUserRepository::new(db.db().clone());

    // A connection outside the pool, to see what is committed.
    let (observer, connection) = db
        .config()
        .await
        .unwrap()
        .pg_config()
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    let mut completed = 0;
    for round in 0..ROUNDS {
        let polls = round % (MAX_POLLS + 1) + 1;
        let transaction = db.transaction(|tx| async move {
            let user = tx
                .users()
                .create(NewUser::new(
                    format!("in-tx-{round}@example.com"),
                    PasswordHash::new("h"),
                ))
                .await?;
            tx.tasks()
                .create(NewTask::new(user.id, "t", "print(1)"))
                .await?;
            Ok(())
        });
        if polls > MAX_POLLS {
            let _ = tokio::time::timeout(Duration::ZERO, transaction).await;
        } else {
            let mut transaction = pin!(transaction);
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if let Poll::Ready(result) = transaction.as_mut().poll(&mut cx) {
                    result.unwrap();
                    completed += 1;
                    break;
                }
                // Let the connection tasks move the exchange along, so the
                // next poll finds the future at its next await point.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }

        // A plain write through the same pool must be committed for real.
        let email = format!("after-{round}@example.com");
        users
            .create(NewUser::new(email.clone(), PasswordHash::new("h")))
            .await
            .unwrap_or_else(|e| panic!("round {round} ({polls} polls): {e}"));
        let seen: i64 = observer
            .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 1, "round {round} ({polls} polls): write not visible");
        assert_no_open_transaction(&observer, &app, round).await;
    }
    // The rounds reached every await point, including the end.
    assert!(completed > 0, "no transaction ever completed");
    // Each transaction committed whole or not at all.
    let row = observer
        .query_one(
            "SELECT (SELECT count(*) FROM users WHERE email LIKE 'in-tx-%'), \
                    (SELECT count(*) FROM tasks t JOIN users u ON u.id = t.user_id \
                     WHERE u.email LIKE 'in-tx-%')",
            &[],
        )
        .await
        .unwrap();
    let (tx_users, tx_tasks): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(tx_users, tx_tasks);
    assert!(tx_users >= completed, "{tx_users} < {completed}");
}

/// No session of the pool is left inside a transaction. A closed
/// connection's backend may take a moment to exit, so this waits briefly.
async fn assert_no_open_transaction(observer: &tokio_postgres::Client, app: &str, round: usize) {
    for _ in 0..200 {
        let open: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("round {round}: a session of the pool stays idle in transaction");
}

#[tokio::test]
async fn a_dropped_import_never_poisons_the_pool() {
    let db = TestDatabase::with_config(|c| {
        c.max_connections = 1;
        c.min_connections = 1;
    })
    .await
    .unwrap();
    let users = voidrunner_db::PgUserRepository::new(db.db().clone());
    let tasks = voidrunner_db::PgTaskRepository::new(db.db().clone());
    let owner = users
        .create(NewUser::new("importer@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let batch: Vec<NewTask> = (0..2000)
        .map(|i| NewTask::new(owner.id, format!("t{i}"), "print(1)"))
        .collect();
    for polls in 1..=8i64 {
        {
            let mut import = pin!(tasks.import(batch.clone()));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if import.as_mut().poll(&mut cx).is_ready() {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        } // the import future is dropped here
        // The pool's one connection (or its replacement) answers at once.
        let count = tokio::time::timeout(Duration::from_secs(10), tasks.count_by_user(owner.id))
            .await
            .unwrap_or_else(|_| panic!("{polls} polls: the next call hangs"))
            .unwrap();
        let imported = count - (polls - 1);
        assert_eq!(
            imported % 2000,
            0,
            "{polls} polls: {count} rows, a partial import"
        );
        tasks
            .create(NewTask::new(owner.id, "after", "print(1)"))
            .await
            .unwrap();
    }
}
