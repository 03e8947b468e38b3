//! A unit of work that opens nothing: the closure runs over a bundle it was
//! given. Over mocks it is a unit test's; over the bundle of an open
//! transaction it lets one service call run another inside its own
//! transaction.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{Repositories, UnitOfWork, Work, WorkError, WorkOutput};
use crate::tx::TransactionOptions;

/// A [`UnitOfWork`] that runs the closure over the [`Repositories`] it was
/// given, once, and returns what the closure returned. Two uses:
///
/// - **Composing service calls in one transaction.** A service function
///   that takes `&dyn UnitOfWork` runs inside the transaction of its
///   caller when given a pass-through over the caller's bundle: the
///   `repos` of the caller's own unit of work, or
///   [`Transaction::repositories`](crate::Transaction::repositories).
///   Its writes commit or roll back with the caller's.
/// - **Unit tests** (with the `mock` feature): over
///   [`Repositories::mocked`] and its `with_…` replacements, a service runs
///   without a database, and [`runs`](Self::runs) tells how many units of
///   work it ran, with which options.
///
/// It has no transaction of its own, so it **cannot roll back**: what the
/// closure did before it failed stays done until the enclosing transaction
/// ends (with mocks: the calls were made, and their expectations count
/// them). It is not a savepoint: a caller that swallows the error of a
/// nested call and returns `Ok` commits that call's writes, as far as they
/// went (unless a statement failed, which makes the whole transaction end
/// in [`Error::TransactionAborted`](crate::Error::TransactionAborted)).
/// The options a nested call asks for are recorded, not applied: its
/// statements run at the enclosing transaction's isolation, and it is never
/// retried on its own; a serialization failure in it aborts the enclosing
/// transaction, which its own unit of work retries if asked to (running
/// the nested call again). It never fails on its own: every error is the
/// closure's.
///
/// ```no_run
/// use voidrunner_db::{
///     Database, Error, ExecutionQueue, NewTask, PassThroughUnitOfWork, Task, TaskExecution,
///     TaskRepository, UnitOfWork, UnitOfWorkExt,
/// };
///
/// /// Service call B, a unit of work of its own when called alone.
/// async fn create(uow: &dyn UnitOfWork, task: NewTask) -> Result<Task, Error> {
///     uow.run(|repos| async move { repos.tasks.create(task).await }).await
/// }
///
/// /// Service call A runs B inside its own transaction: both or neither.
/// async fn submit(uow: &dyn UnitOfWork, task: NewTask) -> Result<TaskExecution, Error> {
///     uow.run(|repos| async move {
///         let task = create(&PassThroughUnitOfWork::new(repos.clone()), task).await?;
///         repos.queue.enqueue(task.id, None).await
///     })
///     .await
/// }
///
/// # async fn production(db: Database, task: NewTask) -> Result<(), Error> {
/// submit(&db, task).await?;
/// # Ok(()) }
/// ```
///
/// In a unit test:
///
/// ```
/// # #[cfg(feature = "mock")] {
/// use voidrunner_db::{
///     MockTaskRepository, PassThroughUnitOfWork, Repositories, TaskRepository,
///     UnitOfWorkExt,
/// };
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut tasks = MockTaskRepository::new();
/// tasks.expect_count().times(1).returning(|| Ok(3));
/// let uow = PassThroughUnitOfWork::new(Repositories::mocked().with_tasks(tasks));
///
/// let count = uow
///     .run(|repos| async move { repos.tasks.count().await })
///     .await
///     .unwrap();
/// assert_eq!(count, 3);
/// assert_eq!(uow.runs().len(), 1);
/// # });
/// # }
/// ```
#[derive(Debug)]
pub struct PassThroughUnitOfWork {
    repos: Repositories,
    runs: Mutex<Vec<TransactionOptions>>,
}

impl PassThroughUnitOfWork {
    /// A unit of work whose closures get `repos`.
    pub fn new(repos: Repositories) -> Self {
        PassThroughUnitOfWork {
            repos,
            runs: Mutex::new(Vec::new()),
        }
    }

    /// The repositories the closures get.
    pub fn repositories(&self) -> &Repositories {
        &self.repos
    }

    /// The options of every unit of work run so far, oldest first
    /// ([`UnitOfWorkExt::run`](super::UnitOfWorkExt::run) records the
    /// default options): how many units of work a service used, and with
    /// which isolation and retries. One entry per run, kept as long as the
    /// pass-through lives: make one per enclosing unit of work, not one for
    /// a process.
    pub fn runs(&self) -> Vec<TransactionOptions> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl UnitOfWork for PassThroughUnitOfWork {
    async fn run_work<'a>(
        &self,
        options: TransactionOptions,
        mut work: Work<'a>,
    ) -> Result<WorkOutput, WorkError> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(options);
        work.attempt(self.repos.clone()).await
    }
}
