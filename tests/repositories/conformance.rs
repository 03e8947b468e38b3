//! One suite, every connection mode: each contract below runs on the pool,
//! inside `Database::transaction`, and through a PgBouncer in transaction
//! mode that the test starts in front of the same database (as River runs
//! its driver tests on an executor inside a transaction). A repository
//! behaves the same whichever way its statements go out; a new feature's
//! contract plugs in here and runs all three ways.
//!
//! Each contract writes rows of its own (fresh emails), so the three runs
//! share one database. A contract that checks a refused write makes it
//! last and says so ([`Ending::OnARefusal`]): in a transaction the refusal
//! aborts it, and the crate then answers the commit with
//! `TransactionAborted` rather than `Ok`, which the harness checks too.

use std::future::Future;
use std::pin::Pin;

use voidrunner_db::testing::{PgBouncer, TestDatabase};
use voidrunner_db::{
    Database, Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewTask, NewUser,
    Outcome, PageRequest, PasswordHash, PgExecutionQueue, PgExecutionRepository, PgTaskRepository,
    PgUserRepository, Result, TaskId, TaskRepository, TaskStatus, TaskUpdate, UserId,
    UserRepository, UserUpdate,
};

use crate::LEASE;

/// The repositories of one connection mode.
#[derive(Clone)]
struct Set {
    mode: &'static str,
    users: PgUserRepository,
    tasks: PgTaskRepository,
    executions: PgExecutionRepository,
    queue: PgExecutionQueue,
}

impl Set {
    fn over(mode: &'static str, db: &Database) -> Set {
        Set {
            mode,
            users: PgUserRepository::new(db.clone()),
            tasks: PgTaskRepository::new(db.clone()),
            executions: PgExecutionRepository::new(db.clone()),
            queue: PgExecutionQueue::new(db.clone()),
        }
    }

    fn in_transaction(tx: &voidrunner_db::Transaction) -> Set {
        Set {
            mode: "in a transaction",
            users: tx.users(),
            tasks: tx.tasks(),
            executions: tx.executions(),
            queue: tx.queue(),
        }
    }

    async fn user(&self) -> Result<UserId> {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let user = self
            .users
            .create(NewUser::new(email, PasswordHash::new("$argon2id$v=19$h")))
            .await?;
        Ok(user.id)
    }

    async fn task(&self, user: UserId, name: &str) -> Result<TaskId> {
        Ok(self
            .tasks
            .create(NewTask::new(user, name, "print(1)"))
            .await?
            .id)
    }
}

/// How a contract ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Every call succeeded.
    Clean,
    /// Its last call was a write the server refused (and the contract
    /// checked the error): a transaction it ran in is aborted.
    OnARefusal,
}

type Run<'a> = Pin<Box<dyn Future<Output = Result<Ending>> + Send + 'a>>;
type Contract = for<'a> fn(&'a Set) -> Run<'a>;

/// Runs `contract` pooled, in a transaction, and through a PgBouncer in
/// transaction mode, each on a pool of its own over one fresh database.
async fn three_ways(contract: Contract) {
    let test_db = TestDatabase::new().await.expect("test database");
    let db = test_db.db();

    let pooled = Set::over("pooled", db);
    let ending = contract(&pooled).await.expect("pooled");

    let in_tx = db
        .transaction(|tx| async move { contract(&Set::in_transaction(&tx)).await })
        .await;
    match ending {
        Ending::Clean => assert_eq!(in_tx.expect("in a transaction"), Ending::Clean),
        Ending::OnARefusal => assert!(
            matches!(in_tx, Err(Error::TransactionAborted)),
            "in a transaction: {in_tx:?}"
        ),
    }

    // The database's own server, not a pooler the harness may already
    // have put in front of it.
    let config = test_db.config().await.expect("config");
    let server = config.direct_config().unwrap_or(config);
    let bouncer = PgBouncer::start(&server).await.expect("pgbouncer");
    let behind = Database::connect(bouncer.route(&server))
        .await
        .expect("connect through pgbouncer");
    let through = contract(&Set::over("through pgbouncer", &behind))
        .await
        .expect("through pgbouncer");
    assert_eq!(through, ending, "through pgbouncer");
    assert!(behind.close(std::time::Duration::from_secs(30)).await);
}

fn users_contract(s: &Set) -> Run<'_> {
    Box::pin(async move {
        let id = s.user().await?;
        let got = s.users.get(id).await?;
        assert_eq!(s.users.get_by_email(&got.email).await?.id, id, "{}", s.mode);
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let updated = s
            .users
            .update(
                id,
                UserUpdate {
                    email: Some(email.clone()),
                    ..Default::default()
                },
            )
            .await?;
        assert_eq!(updated.email, email, "{}", s.mode);
        let page = s.users.list(PageRequest::first(100)).await?;
        assert!(page.items.iter().any(|u| u.id == id), "{}", s.mode);
        s.users.delete(id).await?;
        let gone = s.users.get(id).await.expect_err("deleted");
        assert!(gone.is_not_found(), "{}: {gone:?}", s.mode);
        // Last: a refused write aborts a transaction.
        let other = s.user().await?;
        let taken = s.users.get(other).await?.email;
        let err = s
            .users
            .create(NewUser::new(taken, PasswordHash::new("$argon2id$v=19$h")))
            .await
            .expect_err("duplicate email");
        assert!(err.is_conflict(), "{}: {err:?}", s.mode);
        assert_eq!(err.constraint(), Some("users_email_key"), "{}", s.mode);
        Ok(Ending::OnARefusal)
    })
}

fn tasks_contract(s: &Set) -> Run<'_> {
    Box::pin(async move {
        let user = s.user().await?;
        let id = s.task(user, "first").await?;
        let second = s.task(user, "second").await?;
        let renamed = s
            .tasks
            .update(
                id,
                TaskUpdate {
                    name: Some("renamed".into()),
                    priority: Some(7),
                    ..Default::default()
                },
            )
            .await?;
        assert_eq!((renamed.name.as_str(), renamed.priority), ("renamed", 7));
        let page = s.tasks.list_by_user(user, PageRequest::first(10)).await?;
        let order: Vec<TaskId> = page.items.iter().map(|t| t.id).collect();
        assert_eq!(order, vec![id, second], "{}: priority first", s.mode);
        assert_eq!(s.tasks.count_by_user(user).await?, 2, "{}", s.mode);
        let cancelled = s.tasks.update_status(second, TaskStatus::Cancelled).await?;
        assert_eq!(cancelled.status, TaskStatus::Cancelled, "{}", s.mode);
        let imported = s
            .tasks
            .import(vec![NewTask::new(user, "copied", "print(2)")])
            .await?;
        assert_eq!(imported, 1, "{}", s.mode);
        s.tasks.delete(id).await?;
        assert!(
            s.tasks.get(id).await.unwrap_err().is_not_found(),
            "{}",
            s.mode
        );
        // Last: a task of nobody is a foreign-key error.
        let err = s
            .tasks
            .create(NewTask::new(UserId::new(), "orphan", "print(1)"))
            .await
            .expect_err("no such user");
        assert!(err.is_foreign_key(), "{}: {err:?}", s.mode);
        Ok(Ending::OnARefusal)
    })
}

fn queue_contract(s: &Set) -> Run<'_> {
    Box::pin(async move {
        let user = s.user().await?;
        let task = s.task(user, "queued").await?;
        let queued = s.queue.enqueue(task, None).await?;
        assert_eq!(queued.status, ExecutionStatus::Pending, "{}", s.mode);
        let worker = format!("w-{}", uuid::Uuid::new_v4().simple());
        // Other contracts' rows may be pending in this database: claim until
        // this one comes, completing what else this worker takes.
        let mut mine = None;
        for _ in 0..50 {
            for job in s.queue.claim(&worker, 10, LEASE).await? {
                if job.execution.id == queued.id {
                    mine = Some(job);
                } else {
                    s.queue
                        .complete(job.execution.id, &worker, Outcome::completed(0))
                        .await?;
                }
            }
            if mine.is_some() {
                break;
            }
        }
        let job = mine.expect("the queued execution was claimed");
        assert_eq!(job.execution.worker_id.as_deref(), Some(worker.as_str()));
        assert_eq!(s.tasks.get(task).await?.status, TaskStatus::Running);
        s.queue.heartbeat(queued.id, &worker, LEASE).await?;
        let done = s
            .queue
            .complete(queued.id, &worker, Outcome::completed(0))
            .await?;
        assert_eq!(done.status, ExecutionStatus::Completed, "{}", s.mode);
        assert_eq!(s.tasks.get(task).await?.status, TaskStatus::Completed);
        let latest = s.executions.latest_for_task(task).await?.expect("latest");
        assert_eq!(latest.id, queued.id, "{}", s.mode);
        let listed = s
            .executions
            .list_by_task(task, PageRequest::first(10))
            .await?;
        assert_eq!(listed.items.len(), 1, "{}", s.mode);
        // Last: a completion of a finished execution is refused as lost.
        let err: Error = s
            .queue
            .complete(queued.id, &worker, Outcome::completed(0))
            .await
            .expect_err("completed twice");
        assert!(err.is_lease_lost(), "{}: {err:?}", s.mode);
        // The crate's own refusal, no server error: nothing aborted.
        Ok(Ending::Clean)
    })
}

#[tokio::test]
async fn users_behave_alike_in_every_mode() {
    three_ways(users_contract).await;
}

#[tokio::test]
async fn tasks_behave_alike_in_every_mode() {
    three_ways(tasks_contract).await;
}

#[tokio::test]
async fn the_queue_behaves_alike_in_every_mode() {
    three_ways(queue_contract).await;
}
