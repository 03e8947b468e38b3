//! The seam as a downstream service found it (#18), against PostgreSQL:
//! a validation policy of the service's own in every transaction
//! (`RepositoryOptions`, `Database::unit_of_work`),
//! `Database::transaction_with_error`, whose closure's error type is the
//! caller's, and one service call run inside another's transaction through
//! a `PassThroughUnitOfWork` over its bundle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use voidrunner_db::tokio_postgres::error::SqlState;
use voidrunner_db::validate::ValidationPolicy;
use voidrunner_db::{
    Error, ExecutionRepository, NewTask, PassThroughUnitOfWork, RepositoryOptions, Task,
    TaskExecution, TaskRepository, TransactionOptions, UnitOfWork, UnitOfWorkExt, UserId,
};

/// A script the default policy allows and the service's refuses.
const SHELL_OUT: &str = "import os; os.system('ls')";

/// The service's own policy: no shelling out.
fn strict() -> RepositoryOptions {
    let mut policy = ValidationPolicy::default();
    policy.script.deny_patterns.push("os.system".into());
    RepositoryOptions::new().with_validation(policy)
}

fn refused_by_the_policy(err: &Error) -> bool {
    err.is_validation() && err.field() == Some("script_content")
}

/// The service's own error.
#[derive(Debug)]
enum ServiceError {
    Mine(&'static str),
    Db(Error),
}

impl From<Error> for ServiceError {
    fn from(err: Error) -> Self {
        ServiceError::Db(err)
    }
}

#[tokio::test]
async fn a_unit_of_work_configured_once_validates_every_transaction_with_its_policy() {
    let r = crate::repos().await;
    let user = r.user("policy@example.com").await.id;
    let configured = r.db.db().unit_of_work(strict());
    assert_eq!(configured.options(), &strict());
    let uow: Arc<dyn UnitOfWork> = Arc::new(configured.clone());

    // Refused inside the transaction, after a first write: nothing stays.
    let err: Error = uow
        .run(|repos| async move {
            repos
                .tasks
                .create(NewTask::new(user, "fine", "print(1)"))
                .await?;
            repos
                .tasks
                .create(NewTask::new(user, "shell", SHELL_OUT))
                .await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(refused_by_the_policy(&err), "{err}");
    assert_eq!(r.count_rows("tasks").await, 0);
    // Every attempt of a repeatable unit too, and in bulk.
    let err: Error = uow
        .run_with(TransactionOptions::serializable(2), |repos| async move {
            repos
                .tasks
                .create_many(vec![NewTask::new(user, "shell", SHELL_OUT)])
                .await
        })
        .await
        .unwrap_err();
    assert!(refused_by_the_policy(&err), "{err}");

    // Its pooled bundle, and the bundle makers given the same options.
    let pooled = configured.repositories();
    let err = pooled
        .tasks
        .create(NewTask::new(user, "shell", SHELL_OUT))
        .await
        .unwrap_err();
    assert!(refused_by_the_policy(&err), "{err}");
    let err =
        r.db.db()
            .repositories_with(&strict())
            .tasks
            .create(NewTask::new(user, "shell", SHELL_OUT))
            .await
            .unwrap_err();
    assert!(refused_by_the_policy(&err), "{err}");
    r.db.db()
        .transaction(|tx| async move {
            let err = tx
                .repositories_with(&strict())
                .tasks
                .create(NewTask::new(user, "shell", SHELL_OUT))
                .await
                .unwrap_err();
            assert!(refused_by_the_policy(&err), "{err}");
            // The refusal sent nothing: the transaction goes on.
            tx.repositories()
                .tasks
                .create(NewTask::new(user, "default policy", SHELL_OUT))
                .await
        })
        .await
        .unwrap();
    assert_eq!(r.count_rows("tasks").await, 1);

    // The Database itself keeps the default policy.
    let default: &dyn UnitOfWork = r.db.db();
    let task = default
        .run(|repos| async move {
            repos
                .tasks
                .create(NewTask::new(user, "shell", SHELL_OUT))
                .await
        })
        .await
        .unwrap();
    assert_eq!(task.script_content, SHELL_OUT);
    assert_eq!(r.count_rows("tasks").await, 2);
}

#[tokio::test]
async fn transaction_with_error_hands_back_the_caller_s_error_after_a_rollback() {
    let r = crate::repos().await;
    let user = r.user("own-error@example.com").await.id;
    let err =
        r.db.db()
            .transaction_with_error(TransactionOptions::default(), |tx| async move {
                tx.tasks()
                    .create(NewTask::new(user, "written", "print(1)"))
                    .await?;
                if tx.tasks().count_by_user(user).await? > 0 {
                    return Err(ServiceError::Mine("quota"));
                }
                Ok(())
            })
            .await
            .unwrap_err();
    assert!(matches!(err, ServiceError::Mine("quota")), "{err:?}");
    assert_eq!(r.count_rows("tasks").await, 0);

    // A crate error arrives through From, rolled back as well.
    let err =
        r.db.db()
            .transaction_with_error(TransactionOptions::default(), |tx| async move {
                tx.tasks()
                    .create(NewTask::new(user, "written", "print(1)"))
                    .await?;
                tx.tasks()
                    .create(NewTask::new(UserId::new(), "orphan", "print(1)"))
                    .await?;
                Ok::<_, ServiceError>(())
            })
            .await
            .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Db(e) if e.is_foreign_key()),
        "{err:?}"
    );
    assert_eq!(r.count_rows("tasks").await, 0);

    // And Ok commits.
    let task =
        r.db.db()
            .transaction_with_error(TransactionOptions::default(), |tx| async move {
                Ok::<_, ServiceError>(
                    tx.tasks()
                        .create(NewTask::new(user, "kept", "print(1)"))
                        .await?,
                )
            })
            .await
            .unwrap();
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task);
}

/// Retries see a retryable `Error` when the closure's error type is the
/// crate's own; one hand-made inside an error of the caller's type, with no
/// statement failing, is not seen (as documented).
#[tokio::test]
async fn transaction_with_error_retries_what_it_can_see() {
    let r = crate::repos().await;
    let serialization = || Error::database(SqlState::T_R_SERIALIZATION_FAILURE, "simulated");
    let attempts = AtomicU32::new(0);
    let value =
        r.db.db()
            .transaction_with_error(TransactionOptions::default().retries(3), |_| {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        return Err(serialization());
                    }
                    Ok(n)
                }
            })
            .await
            .unwrap();
    assert_eq!((value, attempts.load(Ordering::SeqCst)), (1, 2));

    let attempts = AtomicU32::new(0);
    let err =
        r.db.db()
            .transaction_with_error(TransactionOptions::default().retries(3), |_| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), _>(ServiceError::Db(serialization())) }
            })
            .await
            .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Db(e) if e.is_retryable()),
        "{err:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

/// A real serialization failure inside the transaction is retried whatever
/// the closure made of it: the transaction noted the failed statement.
#[tokio::test]
async fn transaction_with_error_retries_a_failed_statement_in_the_caller_s_type() {
    let r = crate::repos().await;
    let user = r.user("skew-own@example.com").await.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let run = |name: &'static str| {
        let db = r.db.db().clone();
        let (barrier, attempts) = (barrier.clone(), attempts.clone());
        tokio::spawn(async move {
            let mut first = true;
            db.transaction_with_error(TransactionOptions::serializable(10), move |tx| {
                let barrier = barrier.clone();
                let wait = std::mem::replace(&mut first, false);
                attempts.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Both read before either writes: write skew.
                    let seen = tx.tasks().count_by_user(user).await?;
                    if wait {
                        barrier.wait().await;
                    }
                    tx.tasks()
                        .create(NewTask::new(user, format!("{name} saw {seen}"), "x"))
                        .await
                        .map_err(|e| {
                            ServiceError::Mine(if e.is_retryable() {
                                "retryable"
                            } else {
                                "other"
                            })
                        })?;
                    Ok::<_, ServiceError>(seen)
                }
            })
            .await
        })
    };
    let (a, b) = (run("a"), run("b"));
    let mut seen = [a.await.unwrap().unwrap(), b.await.unwrap().unwrap()];
    seen.sort();
    assert_eq!(seen, [0, 1], "the retried one saw the other's row");
    assert!(attempts.load(Ordering::SeqCst) >= 3, "one was retried");
    assert_eq!(r.tasks.count_by_user(user).await.unwrap(), 2);
}

// Composition: service call B, written against `&dyn UnitOfWork`, run by
// service call A inside A's transaction.

/// B: creates a task unless its name is taken by the user; a unit of work
/// of its own when called alone (serializable, retried).
async fn create_unique(uow: &dyn UnitOfWork, task: NewTask) -> Result<Task, ServiceError> {
    uow.run_with(TransactionOptions::serializable(3), move |repos| {
        let task = task.clone();
        async move {
            let created = repos.tasks.create(task.clone()).await?;
            let same_name = repos
                .tasks
                .list_by_user(task.user_id, Default::default())
                .await?
                .items
                .iter()
                .filter(|t| t.name == task.name)
                .count();
            if same_name > 1 {
                return Err(ServiceError::Mine("name taken"));
            }
            Ok(created)
        }
    })
    .await
}

/// A: B, then the first run queued, in one transaction; fails after B when
/// `fail_after` says so.
async fn submit(
    uow: &dyn UnitOfWork,
    task: NewTask,
    fail_after: bool,
) -> Result<(TaskExecution, Vec<TransactionOptions>), ServiceError> {
    uow.run(move |repos| async move {
        let nested = PassThroughUnitOfWork::new(repos.clone());
        let task = create_unique(&nested, task).await?;
        let execution = repos.queue.enqueue(task.id, None).await?;
        if fail_after {
            return Err(ServiceError::Mine("after"));
        }
        Ok((execution, nested.runs()))
    })
    .await
}

#[tokio::test]
async fn a_service_call_runs_another_inside_its_transaction() {
    let r = crate::repos().await;
    let user = r.user("compose@example.com").await.id;
    let uow: &dyn UnitOfWork = r.db.db();

    // Both commit together; B's unit of work was one run, with its options.
    let (execution, nested_runs) = submit(uow, NewTask::new(user, "nightly", "print(1)"), false)
        .await
        .unwrap();
    assert_eq!(nested_runs, [TransactionOptions::serializable(3)]);
    assert_eq!(r.executions.get(execution.id).await.unwrap(), execution);
    assert_eq!(r.count_rows("tasks").await, 1);

    // A fails after B succeeded: B's task goes with A's rollback.
    let err = submit(uow, NewTask::new(user, "weekly", "print(1)"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Mine("after")), "{err:?}");
    assert_eq!(r.count_rows("tasks").await, 1);
    assert_eq!(r.count_rows("task_executions").await, 1);

    // B fails after its write and A passes the error on: all rolled back,
    // B's error unchanged.
    let err = submit(uow, NewTask::new(user, "nightly", "print(2)"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Mine("name taken")), "{err:?}");
    assert_eq!(r.count_rows("tasks").await, 1);

    // B alone is a unit of work of its own.
    create_unique(uow, NewTask::new(user, "alone", "print(1)"))
        .await
        .unwrap();
    assert_eq!(r.count_rows("tasks").await, 2);
}

#[tokio::test]
async fn a_nested_call_shares_the_enclosing_transaction_and_its_options() {
    let r = crate::repos().await;
    let user = r.user("nested@example.com").await.id;

    // Over a `Transaction`'s bundle: B's write is visible to the rest of
    // the transaction and to no one else before COMMIT.
    let outside = r.db.db().clone();
    let task = r
        .db
        .db()
        .transaction_with_error(TransactionOptions::default(), |tx| {
            let outside = outside.clone();
            async move {
                let nested = PassThroughUnitOfWork::new(tx.repositories());
                let task = create_unique(&nested, NewTask::new(user, "in tx", "print(1)")).await?;
                assert_eq!(tx.tasks().get(task.id).await?, task);
                assert!(
                    outside
                        .repositories()
                        .tasks
                        .get(task.id)
                        .await
                        .unwrap_err()
                        .is_not_found()
                );
                Ok::<_, ServiceError>(task)
            }
        })
        .await
        .unwrap();
    assert_eq!(r.tasks.get(task.id).await.unwrap(), task);

    // Under a configured unit of work, the nested call validates with the
    // enclosing unit's policy: it is handed that unit's repositories.
    let strict_uow = r.db.db().unit_of_work(strict());
    let err = submit(&strict_uow, NewTask::new(user, "shell", SHELL_OUT), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Db(e) if refused_by_the_policy(e)),
        "{err:?}"
    );
    assert_eq!(r.count_rows("tasks").await, 1);
}
