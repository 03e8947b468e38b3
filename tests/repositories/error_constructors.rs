//! Errors a mock can return (issue #10 §2): each public constructor of
//! `Error` answers the predicates and accessors exactly as the error the
//! crate returns for the same failure from a real server, and its message
//! says the same thing (the variant's prefix, the constraint, the SQLSTATE).

use std::time::Duration;

use voidrunner_db::error::SqlState;
use voidrunner_db::{
    Error, ExecutionQueue, LeaseLostReason, NewTask, NewUser, PasswordHash, TaskRepository,
    TaskStatus, TimeoutKind, UserId, UserRepository,
};

use crate::{LEASE, repos};

/// Everything a caller can branch on.
#[derive(Debug, PartialEq)]
struct Answers {
    not_found: bool,
    conflict: bool,
    foreign_key: bool,
    check_violation: bool,
    validation: bool,
    invalid_transition: bool,
    lease_lost: bool,
    retryable: bool,
    timeout: bool,
    lock_timeout: bool,
    unavailable: bool,
    decode: bool,
    constraint: Option<String>,
    field: Option<&'static str>,
    sqlstate: Option<SqlState>,
    timeout_kind: Option<TimeoutKind>,
    lease_lost_reason: Option<LeaseLostReason>,
}

fn answers(err: &Error) -> Answers {
    Answers {
        not_found: err.is_not_found(),
        conflict: err.is_conflict(),
        foreign_key: err.is_foreign_key(),
        check_violation: err.is_check_violation(),
        validation: err.is_validation(),
        invalid_transition: err.is_invalid_transition(),
        lease_lost: err.is_lease_lost(),
        retryable: err.is_retryable(),
        timeout: err.is_timeout(),
        lock_timeout: err.is_lock_timeout(),
        unavailable: err.is_unavailable(),
        decode: err.is_decode(),
        constraint: err.constraint().map(str::to_owned),
        field: err.field(),
        sqlstate: err.sqlstate().cloned(),
        timeout_kind: err.timeout_kind(),
        lease_lost_reason: err.lease_lost_reason(),
    }
}

/// `constructed` answers as `real`, and both messages start with the same
/// words (up to the server's own wording, which only `real` has) and name
/// the SQLSTATE, if any.
fn assert_answers_as(real: &Error, constructed: &Error, prefix: &str) {
    assert_eq!(answers(constructed), answers(real), "{real:?}");
    assert_eq!(
        std::mem::discriminant(constructed),
        std::mem::discriminant(real),
        "same variant: {real:?} / {constructed:?}"
    );
    for err in [real, constructed] {
        let text = err.to_string();
        assert!(text.starts_with(prefix), "{text:?} starts with {prefix:?}");
        if let Some(state) = real.sqlstate() {
            assert!(
                text.contains(&format!("SQLSTATE {}", state.code())),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn conflict_answers_as_a_duplicate_email() {
    let r = repos().await;
    r.user("taken@example.com").await;
    let real = r
        .users
        .create(NewUser::new("taken@example.com", PasswordHash::new("h")))
        .await
        .unwrap_err();
    let constructed = Error::conflict("users_email_key");
    assert_answers_as(&real, &constructed, "conflict: users_email_key: ");
    assert_eq!(constructed.sqlstate(), Some(&SqlState::UNIQUE_VIOLATION));
    // The real one carries the server's words; neither keeps the driver's
    // error, whose detail lists the row's values (a password hash among
    // them, for users).
    assert!(real.to_string().contains("duplicate key value"), "{real}");
    assert!(std::error::Error::source(&real).is_none());
    assert!(std::error::Error::source(&constructed).is_none());
}

#[tokio::test]
async fn foreign_key_answers_as_a_missing_user() {
    let r = repos().await;
    let real = r
        .tasks
        .create(NewTask::new(UserId::new(), "orphan", "print(1)"))
        .await
        .unwrap_err();
    let constructed = Error::foreign_key("tasks_user_id_fkey");
    assert_answers_as(
        &real,
        &constructed,
        "foreign key violation: tasks_user_id_fkey: ",
    );
    assert_eq!(real.sqlstate(), Some(&SqlState::FOREIGN_KEY_VIOLATION));
}

#[tokio::test]
async fn check_and_not_null_violations_answer_as_raw_sqls() {
    let r = repos().await;
    let user = r.user("check@example.com").await;
    let client = r.db.raw_client().await.unwrap();
    let real: Error = client
        .execute(
            "INSERT INTO tasks (user_id, name, script_content, priority) \
             VALUES ($1, 'x', 'print(1)', 99)",
            &[&user.id],
        )
        .await
        .unwrap_err()
        .into();
    let constructed = Error::check_violation("tasks_priority_range");
    assert_answers_as(
        &real,
        &constructed,
        "check violation: tasks_priority_range: ",
    );
    assert_eq!(real.sqlstate(), Some(&SqlState::CHECK_VIOLATION));

    let real: Error = client
        .execute(
            "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'x', NULL)",
            &[&user.id],
        )
        .await
        .unwrap_err()
        .into();
    let constructed = Error::not_null_violation("script_content");
    assert_answers_as(&real, &constructed, "check violation: script_content: ");
    assert_eq!(real.sqlstate(), Some(&SqlState::NOT_NULL_VIOLATION));
}

#[tokio::test]
async fn database_answers_as_any_other_server_error() {
    let r = repos().await;
    let client = r.db.raw_client().await.unwrap();
    let real: Error = client.batch_execute("SELECT 1/0").await.unwrap_err().into();
    let constructed = Error::database(SqlState::DIVISION_BY_ZERO, "division by zero");
    assert_answers_as(&real, &constructed, "database error: division by zero");
    // No detail or hint: the messages are the same.
    assert_eq!(real.to_string(), constructed.to_string());
}

#[tokio::test]
async fn timeouts_answer_as_the_servers() {
    let r = repos().await;
    let holder = r.db.raw_client().await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiter = r.db.raw_client().await.unwrap();
    let real: Error = waiter
        .batch_execute("SET lock_timeout = '50ms'; SELECT count(*) FROM users")
        .await
        .unwrap_err()
        .into();
    assert_answers_as(&real, &Error::timeout(TimeoutKind::Lock), "lock timeout");
    // Classifying the server's code and message gives the same answers.
    let classified = Error::database(
        SqlState::LOCK_NOT_AVAILABLE,
        "canceling statement due to lock timeout",
    );
    assert_answers_as(&real, &classified, "lock timeout: ");
    holder.batch_execute("ROLLBACK").await.unwrap();
    waiter.batch_execute("RESET lock_timeout").await.unwrap();

    let real: Error = waiter
        .batch_execute("SET statement_timeout = '50ms'; SELECT pg_sleep(5)")
        .await
        .unwrap_err()
        .into();
    assert_answers_as(
        &real,
        &Error::timeout(TimeoutKind::Statement),
        "statement timeout",
    );
    let classified = Error::database(
        SqlState::QUERY_CANCELED,
        "canceling statement due to statement timeout",
    );
    assert_answers_as(&real, &classified, "statement timeout: ");
    assert_eq!(real.to_string(), classified.to_string());
    waiter
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_crates_own_refusals_answer_as_their_constructors() {
    let r = repos().await;
    let missing = UserId::new();
    let real = r.users.get(missing).await.unwrap_err();
    let constructed = Error::not_found("user", missing);
    assert_answers_as(&real, &constructed, "user not found");
    assert_eq!(real.to_string(), constructed.to_string());

    let user = r.user("states@example.com").await;
    let task = r.task(&user, "t").await;
    r.queue.enqueue(task.id, None).await.unwrap();
    let claimed = r.queue.claim("w", 1, LEASE).await.unwrap();
    let execution = claimed[0].execution.id;

    let real = r
        .tasks
        .update_status(task.id, TaskStatus::Pending)
        .await
        .unwrap_err();
    let constructed = Error::invalid_transition(
        "task",
        TaskStatus::Running.as_str(),
        TaskStatus::Pending.as_str(),
    );
    assert_answers_as(&real, &constructed, "invalid task status transition");
    assert_eq!(real.to_string(), constructed.to_string());

    let real = r
        .queue
        .heartbeat(execution, "someone-else", Duration::from_secs(30))
        .await
        .unwrap_err();
    let constructed = Error::lease_lost(execution, LeaseLostReason::NotOwner);
    assert_answers_as(&real, &constructed, "lease on execution");
    assert_eq!(real.to_string(), constructed.to_string());
}
