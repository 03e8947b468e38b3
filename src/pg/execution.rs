//! [`ExecutionRepository`] on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{CursorKind, Keyset, PageSpec, Source, Table, prefixed};
use std::sync::Arc;

use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{
    ExecutionId, ExecutionStatus, ExecutionUpdate, NewExecution, Page, PageRequest, TaskExecution,
    TaskId,
};
use crate::repo::ExecutionRepository;
use crate::tx::TxInner;
use crate::validate;

pub(super) const COLUMNS: &str = "id, task_id, status, return_code, stdout, stderr, \
    execution_time_ms, memory_usage_bytes, started_at, completed_at, created_at, priority, \
    run_after, attempt, worker_id, lease_expires_at, heartbeat_at, updated_at";

pub(super) const TABLE: Table = Table {
    table: "task_executions",
    entity: "execution",
    columns: COLUMNS,
    cursor: CursorKind::Execution,
    by_priority: false,
};

pub(super) fn execution_from_row(row: &Row) -> TaskExecution {
    TaskExecution {
        id: row.get("id"),
        task_id: row.get("task_id"),
        status: row.get("status"),
        return_code: row.get("return_code"),
        stdout: row.get("stdout"),
        stderr: row.get("stderr"),
        execution_time_ms: row.get("execution_time_ms"),
        memory_usage_bytes: row.get("memory_usage_bytes"),
        started_at: row.get("started_at"),
        completed_at: row.get("completed_at"),
        created_at: row.get("created_at"),
        priority: row.get("priority"),
        run_after: row.get("run_after"),
        attempt: row.get("attempt"),
        worker_id: row.get("worker_id"),
        lease_expires_at: row.get("lease_expires_at"),
        heartbeat_at: row.get("heartbeat_at"),
        updated_at: row.get("updated_at"),
    }
}

fn keyset(execution: &TaskExecution) -> Keyset {
    Keyset {
        priority: 0,
        created_at: execution.created_at,
        id: execution.id.as_uuid(),
    }
}

/// [`ExecutionRepository`] over the pool of a [`Database`].
#[derive(Debug, Clone)]
pub struct PgExecutionRepository {
    source: Source,
}

impl PgExecutionRepository {
    /// A repository over `db`'s pool.
    pub fn new(db: Database) -> Self {
        PgExecutionRepository {
            source: Source::Pool(db),
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>) -> Self {
        PgExecutionRepository {
            source: Source::Tx(tx),
        }
    }
}

/// The queries, over a pooled connection or a transaction.
pub(crate) mod sql {
    use super::*;

    pub(crate) async fn create(
        client: &impl GenericClient,
        execution: NewExecution,
    ) -> Result<TaskExecution> {
        let stmt = client
            .prepare_cached(&format!(
                // The task's priority, so claims need no join; a missing
                // task leaves 0 and the foreign key reports it.
                "INSERT INTO task_executions (id, task_id, priority) \
                 VALUES ($1, $2, COALESCE((SELECT priority FROM tasks WHERE id = $2), 0)) \
                 RETURNING {COLUMNS}"
            ))
            .await?;
        let row = client
            .query_one(&stmt, &[&ExecutionId::new(), &execution.task_id])
            .await?;
        Ok(execution_from_row(&row))
    }

    pub(crate) async fn get(client: &impl GenericClient, id: ExecutionId) -> Result<TaskExecution> {
        Ok(execution_from_row(&TABLE.get_row(client, id).await?))
    }

    pub(crate) async fn latest_for_task(
        client: &impl GenericClient,
        task_id: TaskId,
    ) -> Result<Option<TaskExecution>> {
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM task_executions WHERE task_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ))
            .await?;
        Ok(client
            .query_opt(&stmt, &[&task_id])
            .await?
            .map(|row| execution_from_row(&row)))
    }

    pub(crate) async fn update(
        client: &impl GenericClient,
        id: ExecutionId,
        update: &ExecutionUpdate,
    ) -> Result<TaskExecution> {
        if update.is_empty() {
            return get(client, id).await;
        }
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE task_executions SET \
                   return_code = COALESCE($2, return_code), \
                   stdout = COALESCE($3, stdout), \
                   stderr = COALESCE($4, stderr), \
                   execution_time_ms = COALESCE($5, execution_time_ms), \
                   memory_usage_bytes = COALESCE($6, memory_usage_bytes), \
                   started_at = COALESCE($7, started_at), \
                   completed_at = COALESCE($8, completed_at) \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ))
            .await?;
        client
            .query_opt(
                &stmt,
                &[
                    &id,
                    &update.return_code,
                    &update.stdout,
                    &update.stderr,
                    &update.execution_time_ms,
                    &update.memory_usage_bytes,
                    &update.started_at,
                    &update.completed_at,
                ],
            )
            .await?
            .map(|row| execution_from_row(&row))
            .ok_or_else(|| Error::not_found("execution", id))
    }

    pub(crate) async fn update_status(
        client: &impl GenericClient,
        id: ExecutionId,
        to: ExecutionStatus,
    ) -> Result<TaskExecution> {
        // As for tasks: `current` locks the latest version of the row, the
        // UPDATE checks the transition against it, and the second branch
        // reports the locked row when the transition was refused.
        let stmt = client
            .prepare_cached(&format!(
                "WITH current AS ( \
                   SELECT {COLUMNS} FROM task_executions WHERE id = $1 FOR NO KEY UPDATE \
                 ), changed AS ( \
                   UPDATE task_executions e SET status = $2, \
                     started_at = CASE WHEN $4 THEN COALESCE(e.started_at, now()) ELSE e.started_at END, \
                     completed_at = CASE WHEN $5 THEN COALESCE(e.completed_at, now()) ELSE e.completed_at END \
                   FROM current c \
                   WHERE e.id = c.id AND c.status = ANY($3) \
                   RETURNING {returning} \
                 ) \
                 SELECT true AS changed, {COLUMNS} FROM changed \
                 UNION ALL \
                 SELECT false, {COLUMNS} FROM current WHERE NOT EXISTS (SELECT 1 FROM changed)",
                returning = prefixed("e", COLUMNS),
            ))
            .await?;
        let from: Vec<&str> = ExecutionStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(to))
            .map(ExecutionStatus::as_str)
            .collect();
        let starts = to == ExecutionStatus::Running;
        let ends = to.is_terminal();
        let row = client
            .query_opt(&stmt, &[&id, &to, &from, &starts, &ends])
            .await?
            .ok_or_else(|| Error::not_found("execution", id))?;
        let execution = execution_from_row(&row);
        if row.get::<_, bool>("changed") {
            return Ok(execution);
        }
        Err(Error::InvalidTransition {
            entity: "execution",
            from: execution.status.as_str(),
            to: to.as_str(),
        })
    }

    pub(crate) async fn delete(client: &impl GenericClient, id: ExecutionId) -> Result<()> {
        TABLE.delete(client, id).await
    }

    pub(crate) async fn list(
        client: &impl GenericClient,
        filter_sql: &'static str,
        filter: Option<&(dyn ToSql + Sync)>,
        page: &PageSpec,
    ) -> Result<Page<TaskExecution>> {
        TABLE
            .page(client, filter_sql, filter, page, execution_from_row, keyset)
            .await
    }

    pub(crate) async fn count(
        client: &impl GenericClient,
        filter_sql: &'static str,
        filter: Option<&(dyn ToSql + Sync)>,
    ) -> Result<i64> {
        TABLE.count(client, filter_sql, filter).await
    }
}

#[async_trait]
impl ExecutionRepository for PgExecutionRepository {
    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "create")
    )]
    async fn create(&self, execution: NewExecution) -> Result<TaskExecution> {
        sql::create(&*self.source.conn().await?, execution).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "get")
    )]
    async fn get(&self, id: ExecutionId) -> Result<TaskExecution> {
        sql::get(&*self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "list")
    )]
    async fn list(&self, page: PageRequest) -> Result<Page<TaskExecution>> {
        let page = PageSpec::parse(CursorKind::Execution, &page)?;
        sql::list(&*self.source.conn().await?, "TRUE", None, &page).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "list_by_task")
    )]
    async fn list_by_task(
        &self,
        task_id: TaskId,
        page: PageRequest,
    ) -> Result<Page<TaskExecution>> {
        let page = PageSpec::parse(CursorKind::Execution, &page)?;
        sql::list(
            &*self.source.conn().await?,
            "task_id = $1",
            Some(&task_id),
            &page,
        )
        .await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "list_by_status")
    )]
    async fn list_by_status(
        &self,
        status: ExecutionStatus,
        page: PageRequest,
    ) -> Result<Page<TaskExecution>> {
        let page = PageSpec::parse(CursorKind::Execution, &page)?;
        sql::list(
            &*self.source.conn().await?,
            "status = $1",
            Some(&status),
            &page,
        )
        .await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "latest_for_task")
    )]
    async fn latest_for_task(&self, task_id: TaskId) -> Result<Option<TaskExecution>> {
        sql::latest_for_task(&*self.source.conn().await?, task_id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "update")
    )]
    async fn update(&self, id: ExecutionId, update: ExecutionUpdate) -> Result<TaskExecution> {
        validate::execution_update(&update)?;
        sql::update(&*self.source.conn().await?, id, &update).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "update_status")
    )]
    async fn update_status(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
    ) -> Result<TaskExecution> {
        sql::update_status(&*self.source.conn().await?, id, status).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "delete")
    )]
    async fn delete(&self, id: ExecutionId) -> Result<()> {
        sql::delete(&*self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "count")
    )]
    async fn count(&self) -> Result<i64> {
        sql::count(&*self.source.conn().await?, "TRUE", None).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "count_by_task")
    )]
    async fn count_by_task(&self, task_id: TaskId) -> Result<i64> {
        sql::count(&*self.source.conn().await?, "task_id = $1", Some(&task_id)).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "execution", op = "count_by_status")
    )]
    async fn count_by_status(&self, status: ExecutionStatus) -> Result<i64> {
        sql::count(&*self.source.conn().await?, "status = $1", Some(&status)).await
    }
}
