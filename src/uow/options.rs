//! How the bundles of repositories are configured: [`RepositoryOptions`],
//! given once to [`Database::unit_of_work`] (or to the bundle makers
//! [`Database::repositories_with`] and [`Transaction::repositories_with`]),
//! so that a service whose tasks validate with its own policy gets that
//! policy in every transaction, not the default one.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Repositories, UnitOfWork, Work, WorkError, WorkOutput};
use crate::db::Database;
use crate::model::ClaimOrder;
use crate::pg::{PgExecutionQueue, PgExecutionRepository, PgTaskRepository, PgUserRepository};
use crate::tx::{Transaction, TransactionOptions};
use crate::validate::ValidationPolicy;

/// How the repositories of a [`Repositories`] bundle are built: today the
/// [`ValidationPolicy`] tasks are checked with, and the order the queue
/// claims in. A plain value, built with
/// [`new`](Self::new) (or `default()`) and the `with_…` methods; more
/// settings may come in minor releases, with defaults that keep today's
/// behaviour (hence `#[non_exhaustive]`: read the fields, set them through
/// the methods).
///
/// ```
/// use voidrunner_db::RepositoryOptions;
/// use voidrunner_db::validate::ValidationPolicy;
///
/// let mut policy = ValidationPolicy::default();
/// policy.script.deny_patterns.push("os.system".into());
/// let options = RepositoryOptions::new().with_validation(policy.clone());
/// assert_eq!(options.validation, policy);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepositoryOptions {
    /// What tasks are validated against before they are written (script
    /// deny-list, metadata limits). Default [`ValidationPolicy::default`].
    pub validation: ValidationPolicy,
    /// The order the bundle's queue claims in. Default
    /// [`ClaimOrder::Fifo`]; [`ClaimOrder::Fair`] rotates between users and
    /// keeps their concurrency caps.
    pub claim_order: ClaimOrder,
}

impl RepositoryOptions {
    /// The defaults: what [`Database::repositories`],
    /// [`Transaction::repositories`] and the [`UnitOfWork`] of a
    /// [`Database`] use.
    pub fn new() -> Self {
        RepositoryOptions::default()
    }

    /// Validates tasks with `policy`.
    pub fn with_validation(mut self, policy: ValidationPolicy) -> Self {
        self.validation = policy;
        self
    }

    /// Claims in `order` (see [`PgExecutionQueue::with_claim_order`]).
    pub fn with_claim_order(mut self, order: ClaimOrder) -> Self {
        self.claim_order = order;
        self
    }
}

impl Database {
    /// The PostgreSQL repositories over the pool, as a [`Repositories`]
    /// bundle: each call checks out its own connection and commits on its
    /// own (no transaction spans calls; for that, see [`UnitOfWork`]).
    /// Tasks validate with the default policy; for another, see
    /// [`repositories_with`](Self::repositories_with).
    pub fn repositories(&self) -> Repositories {
        self.repositories_with(&RepositoryOptions::default())
    }

    /// [`repositories`](Self::repositories), built as `options` say (tasks
    /// validate with `options.validation`).
    pub fn repositories_with(&self, options: &RepositoryOptions) -> Repositories {
        let scoped = crate::pg::ScopedFactory::pooled(self.clone(), options.validation.clone());
        Repositories::new(
            Arc::new(PgUserRepository::new(self.clone())),
            Arc::new(PgTaskRepository::with_policy(
                self.clone(),
                options.validation.clone(),
            )),
            Arc::new(PgExecutionRepository::new(self.clone())),
            Arc::new(PgExecutionQueue::new(self.clone()).with_claim_order(options.claim_order)),
        )
        .with_scoped(move |user| scoped.bundle(user))
    }

    /// A [`UnitOfWork`] whose transactions hand out repositories built as
    /// `options` say, configured once for every transaction of a service:
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use voidrunner_db::validate::ValidationPolicy;
    /// use voidrunner_db::{Database, RepositoryOptions, UnitOfWork};
    ///
    /// # fn service(db: Database) {
    /// let mut policy = ValidationPolicy::default();
    /// policy.metadata.max_bytes = 4096;
    /// let uow: Arc<dyn UnitOfWork> =
    ///     Arc::new(db.unit_of_work(RepositoryOptions::new().with_validation(policy)));
    /// # let _ = uow; }
    /// ```
    ///
    /// The `Database` itself is the unit of work with the default options.
    pub fn unit_of_work(&self, options: RepositoryOptions) -> DatabaseUnitOfWork {
        DatabaseUnitOfWork {
            db: self.clone(),
            options,
        }
    }
}

impl Transaction {
    /// This transaction's repositories ([`users`](Self::users),
    /// [`tasks`](Self::tasks) with the default validation policy,
    /// [`executions`](Self::executions), [`queue`](Self::queue)) as a
    /// [`Repositories`] bundle: every call runs on the transaction's
    /// connection, and fails with
    /// [`Error::TransactionEnded`](crate::Error::TransactionEnded) once it
    /// has been committed or rolled back.
    pub fn repositories(&self) -> Repositories {
        self.repositories_with(&RepositoryOptions::default())
    }

    /// [`repositories`](Self::repositories), built as `options` say (tasks
    /// validate with `options.validation`, as
    /// [`tasks_with_policy`](Self::tasks_with_policy)).
    pub fn repositories_with(&self, options: &RepositoryOptions) -> Repositories {
        let scoped = crate::pg::ScopedFactory::in_transaction(
            self.inner.clone(),
            options.validation.clone(),
        );
        Repositories::new(
            Arc::new(self.users()),
            Arc::new(self.tasks_with_policy(options.validation.clone())),
            Arc::new(self.executions()),
            Arc::new(self.queue().with_claim_order(options.claim_order)),
        )
        .with_scoped(move |user| scoped.bundle(user))
    }
}

/// The [`UnitOfWork`] of [`Database::unit_of_work`]: a PostgreSQL
/// transaction per unit of work, exactly as the `Database`'s own (see its
/// implementation of [`UnitOfWork`]: commit, rollback, retries), whose
/// closures get repositories built with its [`RepositoryOptions`]. Cheap to
/// clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct DatabaseUnitOfWork {
    db: Database,
    options: RepositoryOptions,
}

impl DatabaseUnitOfWork {
    /// The database its transactions run on.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// What its repositories are built with.
    pub fn options(&self) -> &RepositoryOptions {
        &self.options
    }

    /// The same repositories outside any transaction, over the pool (each
    /// call commits on its own): [`Database::repositories_with`] with these
    /// options, for the reads of a service that need no unit of work.
    pub fn repositories(&self) -> Repositories {
        self.db.repositories_with(&self.options)
    }
}

#[async_trait]
impl UnitOfWork for DatabaseUnitOfWork {
    async fn run_work<'a>(
        &self,
        options: TransactionOptions,
        work: Work<'a>,
    ) -> Result<WorkOutput, WorkError> {
        in_transaction(&self.db, &self.options, options, work).await
    }
}

/// One unit of work in a transaction of `db`, its closure given repositories
/// built with `repos`: the engine of both the `Database`'s and
/// [`DatabaseUnitOfWork`]'s implementations.
pub(super) async fn in_transaction(
    db: &Database,
    repos: &RepositoryOptions,
    options: TransactionOptions,
    mut work: Work<'_>,
) -> Result<WorkOutput, WorkError> {
    // An FnOnce closure cannot be called again, whatever the options ask.
    let options = if work.is_repeatable() {
        options
    } else {
        options.retries(0)
    };
    db.run_transaction(
        options,
        |tx| work.attempt(tx.repositories_with(repos)),
        WorkError::as_db_error,
        false,
    )
    .await
}
