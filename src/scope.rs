//! The tenant-scoped view: [`ScopedRepositories`], what a request handler
//! acting for one user works with.

use std::fmt;
use std::sync::Arc;

use crate::db::Database;
use crate::model::UserId;
use crate::pg::ScopedFactory;
use crate::repo::{ScopedExecutionRepository, ScopedLogRepository, ScopedTaskRepository};
use crate::tx::Transaction;
use crate::validate::ValidationPolicy;

/// One user's tasks, executions and logs, as trait objects: the view a request
/// handler should work with (see the [tenants guide](crate::docs::tenants)).
/// Cheap to clone.
///
/// From [`Database::scoped`] (each call on its own pooled connection, in a
/// one-statement transaction), [`Transaction::scoped`] (inside one),
/// [`Repositories::scoped`](crate::Repositories::scoped) (inside a unit of
/// work), or built from mocks in a unit test:
///
/// ```
/// # #[cfg(feature = "mock")] {
/// use voidrunner_db::{MockScopedTaskRepository, ScopedRepositories, UserId};
///
/// let user = UserId::new();
/// let mut tasks = MockScopedTaskRepository::new();
/// tasks.expect_count().returning(|| Ok(3));
/// let scoped = ScopedRepositories::mocked(user).with_tasks(tasks);
/// # let _ = scoped;
/// # }
/// ```
#[derive(Clone)]
pub struct ScopedRepositories {
    /// The user every call is scoped to.
    pub user_id: UserId,
    /// The user's tasks.
    pub tasks: Arc<dyn ScopedTaskRepository>,
    /// The user's executions, and the queue operations a user may ask for.
    pub executions: Arc<dyn ScopedExecutionRepository>,
    /// The logs of the user's executions.
    pub logs: Arc<dyn ScopedLogRepository>,
}

impl ScopedRepositories {
    /// A bundle of the given repositories for `user_id`.
    pub fn new(
        user_id: UserId,
        tasks: Arc<dyn ScopedTaskRepository>,
        executions: Arc<dyn ScopedExecutionRepository>,
        logs: Arc<dyn ScopedLogRepository>,
    ) -> Self {
        ScopedRepositories {
            user_id,
            tasks,
            executions,
            logs,
        }
    }

    /// Replaces the tasks repository.
    pub fn with_tasks(mut self, tasks: impl ScopedTaskRepository + 'static) -> Self {
        self.tasks = Arc::new(tasks);
        self
    }

    /// Replaces the executions repository.
    pub fn with_executions(mut self, executions: impl ScopedExecutionRepository + 'static) -> Self {
        self.executions = Arc::new(executions);
        self
    }

    /// Replaces the logs repository.
    pub fn with_logs(mut self, logs: impl ScopedLogRepository + 'static) -> Self {
        self.logs = Arc::new(logs);
        self
    }

    /// Three mockall mocks for `user_id` without expectations but
    /// [`user_id`](ScopedTaskRepository::user_id): any other call panics,
    /// failing the test. Replace the ones a test scripts with
    /// [`with_tasks`](Self::with_tasks),
    /// [`with_executions`](Self::with_executions) and
    /// [`with_logs`](Self::with_logs).
    #[cfg(feature = "mock")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
    pub fn mocked(user_id: UserId) -> Self {
        let mut tasks = crate::repo::MockScopedTaskRepository::new();
        tasks.expect_user_id().return_const(user_id);
        let mut executions = crate::repo::MockScopedExecutionRepository::new();
        executions.expect_user_id().return_const(user_id);
        let logs = crate::repo::MockScopedLogRepository::new();
        ScopedRepositories::new(
            user_id,
            Arc::new(tasks),
            Arc::new(executions),
            Arc::new(logs),
        )
    }
}

impl fmt::Debug for ScopedRepositories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedRepositories")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl ScopedFactory {
    /// The bundle of `user_id`'s scoped repositories.
    pub(crate) fn bundle(&self, user_id: UserId) -> ScopedRepositories {
        ScopedRepositories::new(
            user_id,
            Arc::new(self.tasks(user_id)),
            Arc::new(self.executions(user_id)),
            Arc::new(self.logs(user_id)),
        )
    }
}

impl Database {
    /// `user_id`'s view of tasks and executions over the pool, validating
    /// tasks with the default policy: each call checks out its own
    /// connection and runs as a transaction of its own, scoped to the user
    /// (one round trip). No call of it reads or changes another user's rows.
    pub fn scoped(&self, user_id: UserId) -> ScopedRepositories {
        self.scoped_with_policy(user_id, ValidationPolicy::default())
    }

    /// [`scoped`](Self::scoped), validating tasks with `policy`.
    pub fn scoped_with_policy(
        &self,
        user_id: UserId,
        policy: ValidationPolicy,
    ) -> ScopedRepositories {
        ScopedFactory::pooled(self.clone(), policy).bundle(user_id)
    }
}

impl Transaction {
    /// `user_id`'s view of tasks and executions inside this transaction,
    /// validating tasks with the default policy. Each call is scoped on its
    /// own: the scope is set before its statement and reset after it, so
    /// the transaction's other calls are not scoped by it.
    pub fn scoped(&self, user_id: UserId) -> ScopedRepositories {
        self.scoped_with_policy(user_id, ValidationPolicy::default())
    }

    /// [`scoped`](Self::scoped), validating tasks with `policy`.
    pub fn scoped_with_policy(
        &self,
        user_id: UserId,
        policy: ValidationPolicy,
    ) -> ScopedRepositories {
        ScopedFactory::in_transaction(self.inner.clone(), policy).bundle(user_id)
    }
}
