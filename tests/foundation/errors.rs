//! Errors that say what happened (issue #8 §3): the server's message and
//! SQLSTATE in every message, precise classification, inputs the server
//! would refuse caught before any SQL, cursors bound to their list.

use std::time::Duration;

use serde_json::json;
use time::macros::datetime;
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    DbConfig, Error, ExecutionQueue, ExecutionRepository, ExecutionUpdate, NewTask, NewUser,
    PageRequest, PasswordHash, PgExecutionQueue, PgExecutionRepository, PgTaskRepository,
    PgUserRepository, TaskRepository, TimeoutKind, Timestamp, UserRepository,
};

#[tokio::test]
async fn database_errors_carry_the_servers_message_and_sqlstate() {
    let db = TestDatabase::new().await.unwrap();
    let client = db.client().await.unwrap();
    let err: Error = client
        .batch_execute("SELECT no_such_column FROM users")
        .await
        .unwrap_err()
        .into();
    let text = err.to_string();
    assert!(
        text.contains("column \"no_such_column\" does not exist") && text.contains("42703"),
        "{text}"
    );
    let err: Error = client.batch_execute("SELECT 1/0").await.unwrap_err().into();
    assert!(text_has(&err, &["division by zero", "22012"]), "{err}");
    // A hint is carried too.
    let err: Error = client
        .batch_execute("SELECT * FROM tasks t JOIN users u ON u.id = t.user_id WHERE t.nme = 'x'")
        .await
        .unwrap_err()
        .into();
    assert!(text_has(&err, &["42703", "hint"]), "{err}");
}

fn text_has(err: &Error, parts: &[&str]) -> bool {
    let text = err.to_string();
    parts.iter().all(|p| text.contains(p))
}

#[tokio::test]
async fn an_unreachable_server_says_why() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config =
        DbConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/x")).unwrap();
    config.connect_timeout = Duration::from_secs(2);
    let err = voidrunner_db::Database::connect(config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("refused"),
        "the message names the cause: {err}"
    );
}

#[tokio::test]
async fn a_cancelled_statement_is_not_a_timeout_but_a_statement_timeout_is() {
    let db = TestDatabase::new().await.unwrap();
    let victim = db.client().await.unwrap();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let killer = db.client().await.unwrap();
    let sleeping = tokio::spawn(async move {
        let result = victim.batch_execute("SELECT pg_sleep(30)").await;
        result.map_err(Error::from)
    });
    // Cancel once the sleep is running.
    for _ in 0..500 {
        let running: bool = killer
            .query_one(
                "SELECT coalesce((SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1), false)",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killer
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = sleeping.await.unwrap().unwrap_err();
    assert!(!err.is_timeout(), "a cancel is not a timeout: {err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(text_has(&err, &["57014", "user request"]), "{err}");

    let err: Error = killer
        .batch_execute("SET statement_timeout = '50ms'; SELECT pg_sleep(5)")
        .await
        .unwrap_err()
        .into();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Statement), "{err:?}");
    assert!(text_has(&err, &["statement timeout", "57014"]), "{err}");
    killer
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lock_timeout_is_retryable() {
    let db = TestDatabase::new().await.unwrap();
    let holder = db.client().await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiter = db.client().await.unwrap();
    let err: Error = waiter
        .batch_execute("SET lock_timeout = '50ms'; SELECT count(*) FROM users")
        .await
        .unwrap_err()
        .into();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Lock), "{err:?}");
    assert!(err.is_retryable());
    holder.batch_execute("ROLLBACK").await.unwrap();
    waiter.batch_execute("RESET lock_timeout").await.unwrap();
}

#[tokio::test]
async fn times_the_server_cannot_store_are_validation_errors() {
    let db = TestDatabase::new().await.unwrap();
    let users = PgUserRepository::new(db.db().clone());
    let tasks = PgTaskRepository::new(db.db().clone());
    let queue = PgExecutionQueue::new(db.db().clone());
    let executions = PgExecutionRepository::new(db.db().clone());
    let user = users
        .create(NewUser::new("t@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let task = tasks
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .unwrap();
    let ancient = Timestamp::from(datetime!(-7537-01-01 00:00 UTC));
    let err = queue.enqueue(task.id, Some(ancient)).await.unwrap_err();
    assert_eq!(err.field(), Some("run_after"), "{err:?}");
    let err = queue
        .enqueue_many(vec![task.id], Some(ancient))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("run_after"), "{err:?}");
    assert_eq!(executions.count_by_task(task.id).await.unwrap(), 0);

    let execution = queue.enqueue(task.id, None).await.unwrap();
    let err = executions
        .update(
            execution.id,
            ExecutionUpdate {
                started_at: Some(ancient),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("started_at"), "{err:?}");

    // A start after the stored end is a validation error, not the CHECK's.
    let end = Timestamp::from(datetime!(2026-01-01 00:00 UTC));
    executions
        .update(
            execution.id,
            ExecutionUpdate {
                completed_at: Some(end),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = executions
        .update(
            execution.id,
            ExecutionUpdate {
                started_at: Some(Timestamp::from(datetime!(2026-06-01 00:00 UTC))),
                stdout: Some("kept out".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("started_at"), "{err:?}");
    let stored = executions.get(execution.id).await.unwrap();
    assert_eq!((stored.started_at, stored.stdout), (None, None));
}

#[tokio::test]
async fn a_cursor_is_refused_by_any_other_list() {
    let db = TestDatabase::new().await.unwrap();
    let users = PgUserRepository::new(db.db().clone());
    let tasks = PgTaskRepository::new(db.db().clone());
    let a = users
        .create(NewUser::new("a@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let b = users
        .create(NewUser::new("b@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    for user in [&a, &b] {
        for i in 0..3 {
            tasks
                .create(
                    NewTask::new(user.id, format!("t{i}"), "print(1)")
                        .metadata(json!({"team": "x"})),
                )
                .await
                .unwrap();
        }
    }
    let first = tasks
        .list_by_user(a.id, PageRequest::first(1))
        .await
        .unwrap();
    let cursor = first.next_cursor.clone().unwrap();
    let request = PageRequest::after(cursor.clone(), 1);
    // Its own list takes it.
    assert_eq!(
        tasks
            .list_by_user(a.id, request.clone())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    for err in [
        tasks.list_by_user(b.id, request.clone()).await.unwrap_err(),
        tasks.list(request.clone()).await.unwrap_err(),
        tasks
            .search_by_metadata(json!({"team": "x"}), request.clone())
            .await
            .unwrap_err(),
        tasks
            .list_by_status(voidrunner_db::TaskStatus::Pending, request.clone())
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.field(), Some("cursor"), "{err:?}");
    }
    // The same metadata filter walks on; another one does not.
    let search = tasks
        .search_by_metadata(json!({"team": "x"}), PageRequest::first(1))
        .await
        .unwrap();
    let next = PageRequest::after(search.next_cursor.unwrap(), 1);
    tasks
        .search_by_metadata(json!({"team": "x"}), next.clone())
        .await
        .unwrap();
    let err = tasks
        .search_by_metadata(json!({"team": "y"}), next)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("cursor"));
}

#[tokio::test]
async fn a_session_ended_for_idling_in_a_transaction_is_that_timeout() {
    let db = TestDatabase::with_config(|c| {
        c.idle_in_transaction_timeout = Some(Duration::from_millis(200))
    })
    .await
    .unwrap();
    let err = db
        .transaction(|tx| async move {
            tx.users()
                .create(NewUser::new("first@example.com", PasswordHash::new("h")))
                .await?;
            // The caller wanders off while the transaction is open.
            tokio::time::sleep(Duration::from_millis(800)).await;
            tx.users()
                .create(NewUser::new("second@example.com", PasswordHash::new("h")))
                .await
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.timeout_kind(),
        Some(TimeoutKind::IdleInTransaction),
        "{err:?}"
    );
    let users = PgUserRepository::new(db.db().clone());
    assert_eq!(users.count().await.unwrap(), 0, "nothing was committed");
}

#[tokio::test]
async fn a_constraint_violation_never_carries_the_rows_values() {
    let db = TestDatabase::new().await.unwrap();
    // Another application's rule on the users table.
    db.client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE users ADD CONSTRAINT other_app_rule \
             CHECK (password_hash NOT LIKE '%TOPSECRETHASH%')",
        )
        .await
        .unwrap();
    let users = PgUserRepository::new(db.db().clone());
    let err = users
        .create(NewUser::new(
            "s@example.com",
            PasswordHash::new("$argon2$TOPSECRETHASH$x"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.constraint(), Some("other_app_rule"), "{err:?}");
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("23514"));
    // Not in its message, its Debug, nor anywhere down its source chain.
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        texts.push(format!("{cause:?}"));
        source = cause.source();
    }
    for text in texts {
        assert!(!text.contains("TOPSECRETHASH"), "{text}");
    }
}
