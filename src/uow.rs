//! The unit of work: one seam for services written against the repository
//! traits, so that the same service function runs in a PostgreSQL
//! transaction in production and over mocks in a unit test.
//!
//! - [`Repositories`] bundles the four traits as `Arc<dyn …>`.
//!   [`Database::repositories`] hands out the pooled implementations (each
//!   call on its own connection),
//!   [`Transaction::repositories`](crate::Transaction::repositories) those
//!   of an open transaction, and a test builds one from mocks. Their
//!   `…_with` siblings build them as [`RepositoryOptions`] say (a
//!   validation policy of the service's own).
//! - [`UnitOfWork`] runs a closure over such a bundle. It is object-safe:
//!   a service holds an `Arc<dyn UnitOfWork>` (or takes `&dyn UnitOfWork`).
//!   [`Database`] implements it with a transaction, exactly as
//!   [`Database::transaction_with`]: commit on `Ok`, rollback on `Err`, the
//!   connection closed if the closure panics or its future is dropped,
//!   retries of serialization failures and deadlocks when asked; so does
//!   [`DatabaseUnitOfWork`] ([`Database::unit_of_work`]), whose bundles are
//!   built with the options it was given.
//!   [`PassThroughUnitOfWork`] runs the closure over the bundle it was
//!   given, without a transaction of its own: over an open transaction's
//!   bundle, so that one service call runs another inside its
//!   transaction, or over mocks in a unit test.
//! - [`UnitOfWorkExt`] is what callers use: [`run`](UnitOfWorkExt::run)
//!   takes an `FnOnce` closure and runs it once;
//!   [`run_with`](UnitOfWorkExt::run_with) takes [`TransactionOptions`] and
//!   an `FnMut` closure, called again for each retry. The closure's error
//!   type is the caller's own, any `E: From<voidrunner_db::Error>`, and
//!   comes back unchanged; errors of the transaction itself (checkout,
//!   `BEGIN`, `COMMIT`) reach the caller converted with that `From`.
//!
//! [`Work`], [`WorkOutput`] and [`WorkError`] are the type-erased closure
//! and results that keep [`UnitOfWork`] object-safe; only an
//! implementation of the trait sees them.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::db::Database;
use crate::error::Error;
use crate::model::UserId;
use crate::repo::{ExecutionQueue, ExecutionRepository, TaskRepository, UserRepository};
use crate::scope::ScopedRepositories;
use crate::tx::TransactionOptions;

mod options;
mod pass_through;

pub use options::{DatabaseUnitOfWork, RepositoryOptions};
pub use pass_through::PassThroughUnitOfWork;

/// The four repositories a service works with, as trait objects. Cheap to
/// clone (four `Arc`s).
///
/// From [`Database::repositories`] (outside any transaction),
/// [`Transaction::repositories`](crate::Transaction::repositories) (inside
/// one), their `…_with` siblings (built with [`RepositoryOptions`]), the
/// closure of a [`UnitOfWork`], or built from anything that implements the
/// traits:
///
/// ```
/// # #[cfg(feature = "mock")] {
/// use voidrunner_db::{MockTaskRepository, Repositories};
///
/// let mut tasks = MockTaskRepository::new();
/// tasks.expect_count().returning(|| Ok(0));
/// // With the `mock` feature: the other three are mocks without
/// // expectations, and any call to them fails the test.
/// let repos = Repositories::mocked().with_tasks(tasks);
/// # let _ = repos;
/// # }
/// ```
#[derive(Clone)]
pub struct Repositories {
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Tasks.
    pub tasks: Arc<dyn TaskRepository>,
    /// Executions.
    pub executions: Arc<dyn ExecutionRepository>,
    /// The execution queue.
    pub queue: Arc<dyn ExecutionQueue>,
    /// Makes the scoped view of one user ([`scoped`](Self::scoped)), when
    /// the bundle has one.
    scoper: Option<Scoper>,
}

/// Makes a bundle's scoped view of one user.
type Scoper = Arc<dyn Fn(UserId) -> ScopedRepositories + Send + Sync>;

impl Repositories {
    /// A bundle of the four given repositories.
    pub fn new(
        users: Arc<dyn UserRepository>,
        tasks: Arc<dyn TaskRepository>,
        executions: Arc<dyn ExecutionRepository>,
        queue: Arc<dyn ExecutionQueue>,
    ) -> Self {
        Repositories {
            users,
            tasks,
            executions,
            queue,
            scoper: None,
        }
    }

    /// The view of `user_id`'s rows alone that goes with this bundle (see
    /// the [tenants guide](crate::docs::tenants)): over the same pool, or
    /// inside the same transaction, validating tasks with the same policy.
    /// What a request handler acting for one user should use.
    ///
    /// The bundles of [`Database::repositories`],
    /// [`Transaction::repositories`](crate::Transaction::repositories), their
    /// `…_with` siblings and a [`UnitOfWork`] of the crate have one, and so
    /// has [`mocked`](Self::mocked) (mocks without expectations); one built
    /// by [`new`](Self::new) has one only once given with
    /// [`with_scoped`](Self::with_scoped). Without one,
    /// [`Error::Config`](crate::Error::Config).
    pub fn scoped(&self, user_id: UserId) -> crate::Result<ScopedRepositories> {
        match &self.scoper {
            Some(scoper) => Ok(scoper(user_id)),
            None => Err(Error::config(
                "this Repositories bundle has no scoped view: give it one with \
                 Repositories::with_scoped",
            )),
        }
    }

    /// Gives the bundle its scoped view: `scoped(user)` returns what
    /// `make(user)` does. A unit test scripts the view of the user its
    /// handler should act for, and any other is a failure of the test:
    ///
    /// ```
    /// # #[cfg(feature = "mock")] {
    /// use voidrunner_db::{MockScopedTaskRepository, Repositories, ScopedRepositories, UserId};
    ///
    /// let alice = UserId::new();
    /// let repos = Repositories::mocked().with_scoped(move |user| {
    ///     assert_eq!(user, alice, "the handler acted for someone else");
    ///     let mut tasks = MockScopedTaskRepository::new();
    ///     tasks.expect_count().returning(|| Ok(2));
    ///     ScopedRepositories::mocked(user).with_tasks(tasks)
    /// });
    /// # let _ = repos;
    /// # }
    /// ```
    pub fn with_scoped(
        mut self,
        make: impl Fn(UserId) -> ScopedRepositories + Send + Sync + 'static,
    ) -> Self {
        self.scoper = Some(Arc::new(make));
        self
    }

    /// Replaces the users repository.
    pub fn with_users(mut self, users: impl UserRepository + 'static) -> Self {
        self.users = Arc::new(users);
        self
    }

    /// Replaces the tasks repository.
    pub fn with_tasks(mut self, tasks: impl TaskRepository + 'static) -> Self {
        self.tasks = Arc::new(tasks);
        self
    }

    /// Replaces the executions repository.
    pub fn with_executions(mut self, executions: impl ExecutionRepository + 'static) -> Self {
        self.executions = Arc::new(executions);
        self
    }

    /// Replaces the execution queue.
    pub fn with_queue(mut self, queue: impl ExecutionQueue + 'static) -> Self {
        self.queue = Arc::new(queue);
        self
    }

    /// Four mockall mocks without expectations: a call to any of them panics
    /// ("no matching expectation"), failing the test. Replace the ones a
    /// test scripts with [`with_users`](Self::with_users) and its siblings.
    #[cfg(feature = "mock")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
    pub fn mocked() -> Self {
        Repositories::new(
            Arc::new(crate::repo::MockUserRepository::new()),
            Arc::new(crate::repo::MockTaskRepository::new()),
            Arc::new(crate::repo::MockExecutionRepository::new()),
            Arc::new(crate::repo::MockExecutionQueue::new()),
        )
        .with_scoped(ScopedRepositories::mocked)
    }
}

impl fmt::Debug for Repositories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repositories").finish_non_exhaustive()
    }
}

/// A type-erased value.
type Erased = Box<dyn Any + Send>;

/// The future of one attempt of a [`Work`], its value and error erased.
type AttemptFuture<'a> = Pin<Box<dyn Future<Output = Result<Erased, Erased>> + Send + 'a>>;

enum Closure<'a> {
    /// From [`UnitOfWorkExt::run`]; `None` once called.
    Once(Option<Box<dyn FnOnce(Repositories) -> AttemptFuture<'a> + Send + 'a>>),
    /// From [`UnitOfWorkExt::run_with`].
    Repeatable(Box<dyn FnMut(Repositories) -> AttemptFuture<'a> + Send + 'a>),
}

/// The caller's closure, as a [`UnitOfWork`] implementation receives it:
/// its value and error types erased, so that the trait stays object-safe.
///
/// Built by [`UnitOfWorkExt::run`] (a closure that may be called once) and
/// [`UnitOfWorkExt::run_with`] (one that may be called again for each
/// retry); an implementation calls [`attempt`](Self::attempt) and returns
/// what it gives.
pub struct Work<'a> {
    closure: Closure<'a>,
}

impl<'a> Work<'a> {
    fn once<T, E, F, Fut>(f: F) -> Self
    where
        F: FnOnce(Repositories) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
        T: Send + 'static,
        E: Send + 'static,
    {
        Work {
            closure: Closure::Once(Some(Box::new(move |repos| erase(f(repos))))),
        }
    }

    fn repeatable<T, E, F, Fut>(mut f: F) -> Self
    where
        F: FnMut(Repositories) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
        T: Send + 'static,
        E: Send + 'static,
    {
        Work {
            closure: Closure::Repeatable(Box::new(move |repos| erase(f(repos)))),
        }
    }

    /// Whether the closure may be called more than once: true for the
    /// `FnMut` closure of [`UnitOfWorkExt::run_with`], false for the
    /// `FnOnce` closure of [`UnitOfWorkExt::run`].
    pub fn is_repeatable(&self) -> bool {
        matches!(self.closure, Closure::Repeatable(_))
    }

    /// Calls the closure with `repos` and returns its future. Calling
    /// `attempt` more than once is allowed only for a
    /// [repeatable](Self::is_repeatable) work, at most
    /// `1 + options.max_retries` times in all.
    ///
    /// # Panics
    ///
    /// When called a second time on a work that is not repeatable: the
    /// implementation of [`UnitOfWork`] broke its contract.
    pub fn attempt(
        &mut self,
        repos: Repositories,
    ) -> impl Future<Output = Result<WorkOutput, WorkError>> + Send + use<'a> {
        let future = match &mut self.closure {
            Closure::Once(f) => {
                let f = f.take().expect(
                    "UnitOfWork implementation error: the closure of UnitOfWorkExt::run is \
                     FnOnce, and Work::attempt was called on it twice",
                );
                f(repos)
            }
            Closure::Repeatable(f) => f(repos),
        };
        async move {
            match future.await {
                Ok(value) => Ok(WorkOutput(value)),
                Err(err) => Err(WorkError(Failure::Work(err))),
            }
        }
    }
}

impl fmt::Debug for Work<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("repeatable", &self.is_repeatable())
            .finish_non_exhaustive()
    }
}

fn erase<'a, T, E>(future: impl Future<Output = Result<T, E>> + Send + 'a) -> AttemptFuture<'a>
where
    T: Send + 'static,
    E: Send + 'static,
{
    Box::pin(async move {
        match future.await {
            Ok(value) => Ok(Box::new(value) as Erased),
            Err(err) => Err(Box::new(err) as Erased),
        }
    })
}

/// The value the closure of a [`Work`] returned, type-erased; an
/// implementation of [`UnitOfWork`] returns it as it is.
pub struct WorkOutput(Erased);

impl fmt::Debug for WorkOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkOutput").finish_non_exhaustive()
    }
}

/// Why a unit of work failed: the error the closure of its [`Work`]
/// returned (type-erased; it reaches the caller unchanged), or an [`Error`]
/// of the unit of work itself (`From<Error>`: a checkout, `BEGIN` or
/// `COMMIT` that failed), which reaches the caller through its
/// `From<voidrunner_db::Error>`.
pub struct WorkError(Failure);

enum Failure {
    /// The closure's own error.
    Work(Erased),
    /// The unit of work's.
    Db(Error),
}

impl WorkError {
    /// The crate's error, if that is what this is: an error of the unit of
    /// work itself, or the closure's error when the closure's error type is
    /// [`Error`]. `None` for an error of the caller's own type.
    pub fn as_db_error(&self) -> Option<&Error> {
        match &self.0 {
            Failure::Db(err) => Some(err),
            Failure::Work(err) => err.downcast_ref::<Error>(),
        }
    }

    /// Whether the error came from the closure (`true`) or from the unit of
    /// work itself (`false`).
    pub fn is_from_closure(&self) -> bool {
        matches!(self.0, Failure::Work(_))
    }
}

impl From<Error> for WorkError {
    fn from(err: Error) -> Self {
        WorkError(Failure::Db(err))
    }
}

impl fmt::Debug for WorkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_db_error() {
            Some(err) => f.debug_tuple("WorkError").field(err).finish(),
            None => f.write_str("WorkError(<the closure's error>)"),
        }
    }
}

/// Runs a closure over a [`Repositories`] bundle as one unit: all of its
/// writes or none. Object-safe; services hold an `Arc<dyn UnitOfWork>` and
/// call [`UnitOfWorkExt::run`] or [`UnitOfWorkExt::run_with`] on it.
///
/// Implemented by [`Database`] (a PostgreSQL transaction, see
/// [`Database::transaction_with`]), by [`DatabaseUnitOfWork`] (the same,
/// with [`RepositoryOptions`] of a service's own) and by
/// [`PassThroughUnitOfWork`] (over a given bundle: an enclosing
/// transaction's, or mocks); `&U` and `Arc<U>` implement it when `U` does.
///
/// ```no_run
/// use std::sync::Arc;
/// use voidrunner_db::{
///     Database, ExecutionQueue, NewTask, TaskExecution, TaskRepository, UnitOfWork,
///     UnitOfWorkExt,
/// };
///
/// #[derive(Debug)]
/// enum SubmitError {
///     Db(voidrunner_db::Error),
/// }
///
/// impl From<voidrunner_db::Error> for SubmitError {
///     fn from(err: voidrunner_db::Error) -> Self {
///         SubmitError::Db(err)
///     }
/// }
///
/// async fn submit(uow: &dyn UnitOfWork, task: NewTask) -> Result<TaskExecution, SubmitError> {
///     uow.run(|repos| async move {
///         let task = repos.tasks.create(task).await?;
///         Ok(repos.queue.enqueue(task.id, None).await?)
///     })
///     .await
/// }
///
/// # async fn production(db: Database, task: NewTask) -> Result<(), SubmitError> {
/// let uow: Arc<dyn UnitOfWork> = Arc::new(db);
/// let execution = submit(&*uow, task).await?;
/// # Ok(()) }
/// ```
///
/// # Implementing it
///
/// [`run_work`](Self::run_work) receives the caller's closure as a
/// [`Work`]: call [`Work::attempt`] with the repositories of the unit of
/// work, at most once unless [`Work::is_repeatable`] (then at most
/// `1 + options.max_retries` times), and return what the last attempt gave,
/// or a [`WorkError`] made `From` an [`Error`] of your own. (Returning the
/// output or error of another run's [`Work`] is a broken implementation:
/// [`UnitOfWorkExt::run`] then panics rather than hand the caller a value of
/// the wrong type.)
#[async_trait]
pub trait UnitOfWork: Send + Sync {
    /// Runs `work` once (or, when it is repeatable, up to
    /// `1 + options.max_retries` times) over the unit's repositories.
    /// Callers use [`UnitOfWorkExt::run`] and [`UnitOfWorkExt::run_with`],
    /// which build the [`Work`] and give back the closure's own types.
    async fn run_work<'a>(
        &self,
        options: TransactionOptions,
        work: Work<'a>,
    ) -> Result<WorkOutput, WorkError>;
}

/// A PostgreSQL transaction per unit of work, with all the guarantees of
/// [`Database::transaction_with`]: commit on `Ok` (an `Ok` after a failed
/// statement whose error the closure handled becomes
/// [`Error::TransactionAborted`]), rollback on `Err`, the connection closed
/// rather than pooled if the closure panics or the future is dropped.
/// `options` set the isolation level and read-only mode; a repeatable work
/// ([`UnitOfWorkExt::run_with`]) is retried up to `options.max_retries`
/// times when the attempt failed with a retryable error, or after a
/// statement in it did (a serialization failure or deadlock aborts the
/// whole transaction, whatever error the closure then returned). A work
/// that is not repeatable ([`UnitOfWorkExt::run`]) runs once.
///
/// The closure's repositories are built with the default
/// [`RepositoryOptions`] (tasks validate with the default policy); a
/// service with options of its own uses [`Database::unit_of_work`].
#[async_trait]
impl UnitOfWork for Database {
    async fn run_work<'a>(
        &self,
        options: TransactionOptions,
        work: Work<'a>,
    ) -> Result<WorkOutput, WorkError> {
        options::in_transaction(self, &RepositoryOptions::default(), options, work).await
    }
}

#[async_trait]
impl<U: UnitOfWork + ?Sized> UnitOfWork for &U {
    async fn run_work<'a>(
        &self,
        options: TransactionOptions,
        work: Work<'a>,
    ) -> Result<WorkOutput, WorkError> {
        (**self).run_work(options, work).await
    }
}

#[async_trait]
impl<U: UnitOfWork + ?Sized> UnitOfWork for Arc<U> {
    async fn run_work<'a>(
        &self,
        options: TransactionOptions,
        work: Work<'a>,
    ) -> Result<WorkOutput, WorkError> {
        (**self).run_work(options, work).await
    }
}

/// How callers run a [`UnitOfWork`], implemented for every one (trait
/// objects included): the closure gets the unit's [`Repositories`], and its
/// value and error come back with their own types.
///
/// The closure's error type `E` is the caller's, for instance a service's
/// own error enum: it needs `From<voidrunner_db::Error>`, so that `?` works
/// on the repositories' calls inside the closure and so that the unit of
/// work's own failures (checkout, `BEGIN`, `COMMIT`) reach the caller.
pub trait UnitOfWorkExt: UnitOfWork {
    /// Runs `f` once as one unit, with the default [`TransactionOptions`]
    /// (read committed, no retries): on a [`Database`], commits if it
    /// returns `Ok`, rolls back if it returns `Err` and returns that error
    /// unchanged.
    fn run<'a, T, E, F, Fut>(&'a self, f: F) -> impl Future<Output = Result<T, E>> + Send + 'a
    where
        F: FnOnce(Repositories) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let work = Work::once(f);
        async move { restore(self.run_work(TransactionOptions::default(), work).await) }
    }

    /// Like [`run`](Self::run), with an isolation level, read-only mode and
    /// retries: on a [`Database`], `f` is called again for each retry of a
    /// serialization failure or deadlock (see [`Database::transaction_with`]),
    /// so it is `FnMut` and must not have effects outside the database that
    /// cannot be repeated.
    fn run_with<'a, T, E, F, Fut>(
        &'a self,
        options: TransactionOptions,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'a
    where
        F: FnMut(Repositories) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let work = Work::repeatable(f);
        async move { restore(self.run_work(options, work).await) }
    }
}

impl<U: UnitOfWork + ?Sized> UnitOfWorkExt for U {}

/// The closure's own types back from a unit of work's result.
fn restore<T, E>(result: Result<WorkOutput, WorkError>) -> Result<T, E>
where
    T: 'static,
    E: From<Error> + 'static,
{
    const FOREIGN: &str = "UnitOfWork implementation error: run_work returned a result that is \
                           not its own work's";
    match result {
        Ok(WorkOutput(value)) => Ok(*value.downcast::<T>().expect(FOREIGN)),
        Err(WorkError(Failure::Db(err))) => Err(E::from(err)),
        Err(WorkError(Failure::Work(err))) => Err(*err.downcast::<E>().expect(FOREIGN)),
    }
}

#[cfg(all(test, feature = "mock"))]
mod tests {
    use super::*;

    /// Mocks without expectations: the closures below never call them.
    fn repos() -> Repositories {
        Repositories::mocked()
    }

    /// A minimal implementation: what a downstream double looks like.
    struct Twice;

    #[async_trait]
    impl UnitOfWork for Twice {
        async fn run_work<'a>(
            &self,
            options: TransactionOptions,
            mut work: Work<'a>,
        ) -> Result<WorkOutput, WorkError> {
            let mut result = work.attempt(repos()).await;
            if work.is_repeatable() && options.max_retries > 0 {
                result = work.attempt(repos()).await;
            }
            result
        }
    }

    #[derive(Debug, PartialEq)]
    enum MyError {
        Mine(u32),
        Db(String),
    }

    impl From<Error> for MyError {
        fn from(err: Error) -> Self {
            MyError::Db(err.to_string())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn values_and_errors_come_back_with_their_own_types() {
        let uow: Arc<dyn UnitOfWork> = Arc::new(Twice);
        let value: Result<(u8, String), MyError> =
            uow.run(|_| async { Ok((7, "seven".to_owned())) }).await;
        assert_eq!(value, Ok((7, "seven".to_owned())));
        let err: Result<(), MyError> = uow.run(|_| async { Err(MyError::Mine(3)) }).await;
        assert_eq!(err, Err(MyError::Mine(3)));
        let db: Result<(), MyError> = uow
            .run(|_| async { Err(Error::not_found("task", "x"))? })
            .await;
        assert!(matches!(db, Err(MyError::Db(_))), "{db:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn repeatable_work_is_called_per_attempt_and_borrows_are_allowed() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let calls_ref = &calls;
        let n: Result<u32, Error> = Twice
            .run_with(TransactionOptions::default().retries(1), |_| async move {
                Ok(calls_ref.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
            })
            .await;
        assert_eq!(n.unwrap(), 1);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn work_errors_expose_the_crate_error() {
        let own = WorkError::from(Error::TransactionAborted);
        assert!(!own.is_from_closure());
        assert!(matches!(own.as_db_error(), Some(Error::TransactionAborted)));
        let theirs = WorkError(Failure::Work(Box::new(Error::TransactionEnded)));
        assert!(theirs.is_from_closure());
        assert!(matches!(
            theirs.as_db_error(),
            Some(Error::TransactionEnded)
        ));
        let foreign = WorkError(Failure::Work(Box::new(5_u8)));
        assert!(foreign.as_db_error().is_none());
        assert_eq!(format!("{foreign:?}"), "WorkError(<the closure's error>)");
    }

    #[test]
    #[should_panic(expected = "FnOnce")]
    fn a_once_work_refuses_a_second_attempt() {
        let mut work = Work::once(|_| async { Ok::<_, Error>(()) });
        drop(work.attempt(repos()));
        drop(work.attempt(repos()));
    }

    #[test]
    fn objects_are_usable_across_tasks() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn UnitOfWork>();
        assert_send_sync::<Repositories>();
        fn assert_send<T: Send>() {}
        assert_send::<Work<'static>>();
        assert_send::<WorkError>();
    }
}
