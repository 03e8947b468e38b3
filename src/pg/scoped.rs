//! [`ScopedTaskRepository`] and [`ScopedExecutionRepository`] on
//! PostgreSQL: the statements of the unscoped repositories, run on a scoped
//! connection ([`Source::scoped_conn`]), and the lists of the scope's user.
//!
//! The scope is enforced twice. Every statement on one task or execution
//! checks `voidrunner_in_scope` (migration V9) against the transaction's
//! setting, so another user's row is missing to it whatever role the pool
//! connects as; the lists are the user's own lists (`tasks_by_user`,
//! `executions_by_user`, …). And for a role bound by row-level security
//! (the application role of the roles script, `voidrunner_db::roles`), the
//! database itself shows the transaction no other user's row.

use std::sync::Arc;

use async_trait::async_trait;

use super::jsonb::Jsonb;
use super::sorted::SortedSpec;
use super::{ListSql, PageSpec, Source, execution, task, traced};
use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{
    ExecutionId, ExecutionStatus, NewTask, Page, PageRequest, Task, TaskExecution, TaskFilter,
    TaskId, TaskSort, TaskStatus, TaskStatusCounts, TaskUpdate, TaskWithLatest, Timestamp, UserId,
};
use crate::queries;
use crate::repo::{ScopedExecutionRepository, ScopedTaskRepository};
use crate::tx::TxInner;
use crate::validate::{self, DenyList, ValidationPolicy};

const TASKS_BY_USER_STATUS: ListSql = ListSql {
    first: queries::lists::TASKS_BY_USER_STATUS_FIRST,
    after: queries::lists::TASKS_BY_USER_STATUS_AFTER,
};
const TASKS_BY_USER_METADATA: ListSql = ListSql {
    first: queries::lists::TASKS_BY_USER_METADATA_FIRST,
    after: queries::lists::TASKS_BY_USER_METADATA_AFTER,
};
const EXECUTIONS_BY_USER: ListSql = ListSql {
    first: queries::lists::EXECUTIONS_BY_USER_FIRST,
    after: queries::lists::EXECUTIONS_BY_USER_AFTER,
};

/// The span of one scoped call: the repository call's
/// (`voidrunner_db.repo`), marked `scoped`.
fn scoped_span(entity: &'static str, op: &'static str) -> tracing::Span {
    tracing::info_span!(
        "voidrunner_db.repo",
        entity,
        op,
        scoped = true,
        count = tracing::field::Empty
    )
}

/// The bytes a scoped list's cursors are bound to: the user, then the
/// list's own filter, so a cursor of one user's list is refused by
/// another's.
fn scope_bytes(user: UserId, filter: &[u8]) -> Vec<u8> {
    let mut bytes = user.as_uuid().as_bytes().to_vec();
    bytes.extend_from_slice(filter);
    bytes
}

/// `Validation` unless `task` is the scope's user's.
fn owned(user: UserId, task: &NewTask, index: Option<usize>) -> Result<()> {
    if task.user_id == user {
        return Ok(());
    }
    let which = index.map_or_else(String::new, |i| format!("task {i}: "));
    Err(Error::validation(
        "user_id",
        format!("{which}names another user than the one this view is scoped to"),
    ))
}

/// [`ScopedTaskRepository`] on PostgreSQL: over the pool of a [`Database`]
/// (each call its own one-statement transaction) or inside a
/// [`Transaction`](crate::Transaction).
#[derive(Debug, Clone)]
pub struct PgScopedTaskRepository {
    source: Source,
    user: UserId,
    policy: ValidationPolicy,
    deny: Arc<DenyList>,
}

/// Makes the scoped repositories of any user over one source, with one
/// validation policy compiled once: what a bundle's
/// [`scoped`](crate::Repositories::scoped) calls per request.
#[derive(Debug, Clone)]
pub(crate) struct ScopedFactory {
    source: Source,
    policy: ValidationPolicy,
    deny: Arc<DenyList>,
}

impl ScopedFactory {
    pub(crate) fn pooled(db: Database, policy: ValidationPolicy) -> Self {
        Self::on(Source::Pool(db), policy)
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>, policy: ValidationPolicy) -> Self {
        Self::on(Source::Tx(tx), policy)
    }

    fn on(source: Source, policy: ValidationPolicy) -> Self {
        ScopedFactory {
            source,
            deny: DenyList::shared(&policy.script),
            policy,
        }
    }

    pub(crate) fn tasks(&self, user: UserId) -> PgScopedTaskRepository {
        PgScopedTaskRepository {
            source: self.source.clone(),
            user,
            policy: self.policy.clone(),
            deny: Arc::clone(&self.deny),
        }
    }

    pub(crate) fn logs(&self, user: UserId) -> super::PgScopedLogRepository {
        super::PgScopedLogRepository::on(self.source.clone(), user)
    }

    pub(crate) fn executions(&self, user: UserId) -> PgScopedExecutionRepository {
        PgScopedExecutionRepository {
            source: self.source.clone(),
            user,
        }
    }
}

impl PgScopedTaskRepository {
    /// `user`'s tasks over the pool, validating with the default policy.
    pub fn new(db: Database, user: UserId) -> Self {
        Self::with_policy(db, user, ValidationPolicy::default())
    }

    /// `user`'s tasks over the pool, validating with `policy`.
    pub fn with_policy(db: Database, user: UserId, policy: ValidationPolicy) -> Self {
        ScopedFactory::pooled(db, policy).tasks(user)
    }
}

#[async_trait]
impl ScopedTaskRepository for PgScopedTaskRepository {
    fn user_id(&self) -> UserId {
        self.user
    }

    async fn create(&self, new: NewTask) -> Result<Task> {
        traced(scoped_span("task", "create"), async move {
            owned(self.user, &new, None)?;
            validate::new_task_with(&new, &self.policy, &self.deny)?;
            task::sql::create(&self.source.scoped_conn(self.user).await?, &new).await
        })
        .await
    }

    async fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Task>> {
        let span = super::counted(scoped_span("task", "create_many"), tasks.len());
        traced(span, async move {
            validate::batch_size("tasks", tasks.len())?;
            for (i, new) in tasks.iter().enumerate() {
                owned(self.user, new, Some(i))?;
            }
            validate::new_tasks_with(&tasks, &self.policy, &self.deny)?;
            task::sql::create_many(&self.source.scoped_conn(self.user).await?, &tasks).await
        })
        .await
    }

    async fn get(&self, id: TaskId) -> Result<Task> {
        traced(scoped_span("task", "get"), async move {
            task::sql::get(&self.source.scoped_read_conn(self.user).await?, id).await
        })
        .await
    }

    async fn update(&self, id: TaskId, update: TaskUpdate) -> Result<Task> {
        traced(scoped_span("task", "update"), async move {
            validate::task_update_with(&update, &self.policy, &self.deny)?;
            task::sql::update(&self.source.scoped_conn(self.user).await?, id, &update).await
        })
        .await
    }

    async fn update_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        traced(scoped_span("task", "update_status"), async move {
            validate::task_status_by_hand(status)?;
            let conn = self.source.scoped_conn(self.user).await?;
            super::queue::sql::set_task_status(&conn, id, status).await
        })
        .await
    }

    async fn delete(&self, id: TaskId) -> Result<()> {
        traced(scoped_span("task", "delete"), async move {
            task::sql::delete(&self.source.scoped_conn(self.user).await?, id).await
        })
        .await
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Task>> {
        traced(scoped_span("task", "list"), async move {
            // The cursors of `TaskRepository::list_by_user` of the same user:
            // the same list.
            let scope = task::TABLE.scope("list_by_user", self.user.as_uuid().as_bytes());
            let page = PageSpec::parse(scope, &page)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            task::sql::list(&conn, &task::LIST_BY_USER, &[&self.user], &page).await
        })
        .await
    }

    async fn list_by_status(&self, status: TaskStatus, page: PageRequest) -> Result<Page<Task>> {
        traced(scoped_span("task", "list_by_status"), async move {
            let bytes = scope_bytes(self.user, status.as_str().as_bytes());
            let page = PageSpec::parse(task::TABLE.scope("scoped.list_by_status", &bytes), &page)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            let filters: [&dyn super::Param; 2] = [&self.user, &status];
            task::sql::list(&conn, &TASKS_BY_USER_STATUS, &filters, &page).await
        })
        .await
    }

    async fn search_by_metadata(
        &self,
        filter: serde_json::Value,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        traced(scoped_span("task", "search_by_metadata"), async move {
            validate::metadata_filter(&filter, &self.policy.metadata)?;
            // serde_json writes an object's keys in a fixed order, so equal
            // filters give equal bytes.
            let json = serde_json::to_vec(&filter)
                .map_err(|e| Error::validation("filter", format!("cannot be serialised: {e}")))?;
            let bytes = scope_bytes(self.user, &json);
            let scope = task::TABLE.scope("scoped.search_by_metadata", &bytes);
            let page = PageSpec::parse(scope, &page)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            let filters: [&dyn super::Param; 2] = [&self.user, &Jsonb(&filter)];
            task::sql::list(&conn, &TASKS_BY_USER_METADATA, &filters, &page).await
        })
        .await
    }

    async fn count(&self) -> Result<i64> {
        traced(scoped_span("task", "count"), async move {
            Ok(self.counts().await?.total())
        })
        .await
    }

    async fn count_by_status(&self, status: TaskStatus) -> Result<i64> {
        traced(scoped_span("task", "count_by_status"), async move {
            Ok(self.counts().await?.get(status))
        })
        .await
    }

    async fn list_sorted(
        &self,
        status: Option<TaskStatus>,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        traced(scoped_span("task", "list_sorted"), async move {
            let filter = TaskFilter::of(Some(self.user), status);
            let spec = SortedSpec::parse(filter, sort, &page)?;
            spec.tasks(&self.source.scoped_read_conn(self.user).await?)
                .await
        })
        .await
    }

    async fn list_with_latest(
        &self,
        status: Option<TaskStatus>,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<TaskWithLatest>> {
        traced(scoped_span("task", "list_with_latest"), async move {
            let filter = TaskFilter::of(Some(self.user), status);
            let spec = SortedSpec::parse(filter, sort, &page)?;
            spec.with_latest(&self.source.scoped_read_conn(self.user).await?)
                .await
        })
        .await
    }

    async fn status_counts(&self) -> Result<TaskStatusCounts> {
        traced(scoped_span("task", "status_counts"), self.counts()).await
    }
}

impl PgScopedTaskRepository {
    /// The scope's user's counters, read in a transaction scoped to them.
    async fn counts(&self) -> Result<TaskStatusCounts> {
        let conn = self.source.scoped_read_conn(self.user).await?;
        task::sql::status_counts(&conn, Some(self.user)).await
    }
}

/// [`ScopedExecutionRepository`] on PostgreSQL, over the pool of a
/// [`Database`] or inside a [`Transaction`](crate::Transaction).
#[derive(Debug, Clone)]
pub struct PgScopedExecutionRepository {
    source: Source,
    user: UserId,
}

impl PgScopedExecutionRepository {
    /// `user`'s executions over the pool.
    pub fn new(db: Database, user: UserId) -> Self {
        PgScopedExecutionRepository {
            source: Source::Pool(db),
            user,
        }
    }
}

#[async_trait]
impl ScopedExecutionRepository for PgScopedExecutionRepository {
    fn user_id(&self) -> UserId {
        self.user
    }

    async fn enqueue(
        &self,
        task_id: TaskId,
        run_after: Option<Timestamp>,
    ) -> Result<TaskExecution> {
        traced(scoped_span("execution", "enqueue"), async move {
            if let Some(at) = run_after {
                validate::timestamp("run_after", at)?;
            }
            let conn = self.source.scoped_conn(self.user).await?;
            super::queue::sql::enqueue(&conn, task_id, run_after).await
        })
        .await
    }

    async fn enqueue_many(
        &self,
        task_ids: Vec<TaskId>,
        run_after: Option<Timestamp>,
    ) -> Result<Vec<TaskExecution>> {
        let span = super::counted(scoped_span("execution", "enqueue_many"), task_ids.len());
        traced(span, async move {
            validate::batch_size("task_ids", task_ids.len())?;
            if let Some(at) = run_after {
                validate::timestamp("run_after", at)?;
            }
            let conn = self.source.scoped_conn(self.user).await?;
            super::queue::sql::enqueue_many(&conn, &task_ids, run_after).await
        })
        .await
    }

    async fn get(&self, id: ExecutionId) -> Result<TaskExecution> {
        traced(scoped_span("execution", "get"), async move {
            execution::sql::get(&self.source.scoped_read_conn(self.user).await?, id).await
        })
        .await
    }

    async fn list(&self, page: PageRequest) -> Result<Page<TaskExecution>> {
        traced(scoped_span("execution", "list"), async move {
            let bytes = scope_bytes(self.user, &[]);
            let page = PageSpec::parse(execution::TABLE.scope("scoped.list", &bytes), &page)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            execution::sql::list(&conn, &EXECUTIONS_BY_USER, &[&self.user], &page).await
        })
        .await
    }

    async fn list_by_task(
        &self,
        task_id: TaskId,
        page: PageRequest,
    ) -> Result<Page<TaskExecution>> {
        traced(scoped_span("execution", "list_by_task"), async move {
            let bytes = scope_bytes(self.user, task_id.as_uuid().as_bytes());
            let scope = execution::TABLE.scope("scoped.list_by_task", &bytes);
            let page = PageSpec::parse(scope, &page)?;
            let conn = self.source.scoped_read_conn(self.user).await?;
            execution::sql::list(&conn, &execution::LIST_BY_TASK, &[&task_id], &page).await
        })
        .await
    }

    async fn latest_for_task(&self, task_id: TaskId) -> Result<Option<TaskExecution>> {
        traced(scoped_span("execution", "latest_for_task"), async move {
            let conn = self.source.scoped_read_conn(self.user).await?;
            execution::sql::latest_for_task(&conn, task_id).await
        })
        .await
    }

    async fn cancel(&self, id: ExecutionId) -> Result<TaskExecution> {
        traced(scoped_span("execution", "cancel"), async move {
            let conn = self.source.scoped_conn(self.user).await?;
            super::queue::sql::finish(&conn, id, ExecutionStatus::Cancelled).await
        })
        .await
    }

    async fn count(&self) -> Result<i64> {
        traced(scoped_span("execution", "count"), async move {
            let conn = self.source.scoped_read_conn(self.user).await?;
            execution::sql::count(
                &conn,
                &queries::lists::EXECUTIONS_BY_USER_COUNT,
                &[&self.user],
            )
            .await
        })
        .await
    }

    async fn count_by_task(&self, task_id: TaskId) -> Result<i64> {
        traced(scoped_span("execution", "count_by_task"), async move {
            let conn = self.source.scoped_read_conn(self.user).await?;
            let count = &queries::lists::EXECUTIONS_BY_TASK_COUNT;
            execution::sql::count(&conn, count, &[&task_id]).await
        })
        .await
    }
}
