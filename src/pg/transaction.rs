//! The repositories of a [`Transaction`]: each runs on the transaction's
//! connection. Here, beside the repositories, so that the transaction
//! engine (`crate::tx`) needs nothing of them.

use crate::pg::{
    PgExecutionQueue, PgExecutionRepository, PgLogRepository, PgScopedLogRepository,
    PgTaskRepository, PgUserRepository,
};
use crate::tx::Transaction;
use crate::validate::ValidationPolicy;

impl Transaction {
    /// Users, inside this transaction.
    pub fn users(&self) -> PgUserRepository {
        PgUserRepository::in_transaction(self.inner.clone())
    }

    /// Tasks, inside this transaction, with the default validation policy.
    pub fn tasks(&self) -> PgTaskRepository {
        self.tasks_with_policy(ValidationPolicy::default())
    }

    /// Tasks, inside this transaction, validating with `policy`.
    pub fn tasks_with_policy(&self, policy: ValidationPolicy) -> PgTaskRepository {
        PgTaskRepository::in_transaction(self.inner.clone(), policy)
    }

    /// Executions, inside this transaction.
    pub fn executions(&self) -> PgExecutionRepository {
        PgExecutionRepository::in_transaction(self.inner.clone())
    }

    /// The execution logs, inside this transaction.
    pub fn logs(&self) -> PgLogRepository {
        PgLogRepository::in_transaction(self.inner.clone())
    }

    /// `user`'s execution logs, inside this transaction.
    pub fn scoped_logs(&self, user: crate::model::UserId) -> PgScopedLogRepository {
        PgScopedLogRepository::in_transaction(self.inner.clone(), user)
    }

    /// The execution queue, inside this transaction.
    pub fn queue(&self) -> PgExecutionQueue {
        PgExecutionQueue::in_transaction(self.inner.clone())
    }
}
