//! [`ExecutionRepository`] on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{
    Columns, Conn, CursorKind, Keyset, ListSql, PageSpec, Param, RowReader, Source, Table,
};
use super::{repo_span, traced};
use std::sync::Arc;

use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{
    ExecutionId, ExecutionStatus, ExecutionUpdate, NewExecution, Page, PageRequest, TaskExecution,
    TaskId,
};
use crate::queries;
use crate::repo::ExecutionRepository;
use crate::tx::TxInner;
use crate::validate;

/// An execution's columns, to read executions with.
pub(super) static COLUMN_NAMES: Columns = Columns {
    entity: "execution",
    names: &queries::columns::EXECUTION,
};

pub(super) const TABLE: Table = Table {
    read: &COLUMN_NAMES,
    cursor: CursorKind::Execution,
    by_priority: false,
    get: queries::executions::GET,
};

pub(super) const LIST: ListSql = ListSql {
    first: queries::lists::EXECUTIONS_FIRST,
    after: queries::lists::EXECUTIONS_AFTER,
};
pub(super) const LIST_BY_TASK: ListSql = ListSql {
    first: queries::lists::EXECUTIONS_BY_TASK_FIRST,
    after: queries::lists::EXECUTIONS_BY_TASK_AFTER,
};
pub(super) const LIST_BY_STATUS: ListSql = ListSql {
    first: queries::lists::EXECUTIONS_BY_STATUS_FIRST,
    after: queries::lists::EXECUTIONS_BY_STATUS_AFTER,
};

/// Reads an execution, its fields in [`COLUMN_NAMES`]' order.
pub(super) fn read_execution(r: &mut RowReader<'_>) -> Result<TaskExecution> {
    Ok(TaskExecution {
        id: r.next()?,
        task_id: r.next()?,
        status: r.next()?,
        return_code: r.next()?,
        stdout: r.next()?,
        stderr: r.next()?,
        execution_time_ms: r.next()?,
        memory_usage_bytes: r.next()?,
        started_at: r.next()?,
        completed_at: r.next()?,
        created_at: r.next()?,
        priority: r.next()?,
        run_after: r.next()?,
        attempt: r.next()?,
        worker_id: r.next()?,
        lease_expires_at: r.next()?,
        heartbeat_at: r.next()?,
        updated_at: r.next()?,
    })
}

pub(super) fn execution_from_row(row: &Row) -> Result<TaskExecution> {
    COLUMN_NAMES.read_one(row, read_execution)
}

pub(super) fn keyset(execution: &TaskExecution) -> Keyset {
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

    /// The one way an execution is created: the enqueue of its task, so the
    /// task follows and at most one execution of a task is ever active.
    pub(crate) async fn create(c: &Conn<'_>, execution: NewExecution) -> Result<TaskExecution> {
        crate::pg::queue::sql::enqueue(c, execution.task_id, None).await
    }

    pub(crate) async fn get(c: &Conn<'_>, id: ExecutionId) -> Result<TaskExecution> {
        execution_from_row(&TABLE.get_row(c, id).await?)
    }

    pub(crate) async fn latest_for_task(
        c: &Conn<'_>,
        task_id: TaskId,
    ) -> Result<Option<TaskExecution>> {
        c.query_opt(&queries::executions::LATEST_FOR_TASK, &[&task_id])
            .await?
            .map(|row| execution_from_row(&row))
            .transpose()
    }

    pub(crate) async fn update(
        c: &Conn<'_>,
        id: ExecutionId,
        update: &ExecutionUpdate,
    ) -> Result<TaskExecution> {
        if update.is_empty() {
            return get(c, id).await;
        }
        let row = c
            .query_opt(
                &queries::executions::UPDATE,
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
            .ok_or_else(|| Error::not_found("execution", id))?;
        if row.try_get::<_, bool>("updated")? {
            return execution_from_row(&row);
        }
        let field = if update.started_at.is_some() {
            "started_at"
        } else {
            "completed_at"
        };
        Err(Error::validation(
            field,
            "would put completed_at before started_at, counting the times already stored",
        ))
    }

    pub(crate) async fn update_status(
        c: &Conn<'_>,
        id: ExecutionId,
        to: ExecutionStatus,
    ) -> Result<TaskExecution> {
        if to.is_terminal() {
            return crate::pg::queue::sql::finish(c, id, to).await;
        }
        // Pending is only ever the first status, and running is entered only
        // through the claim, which sets the lease the rescuer relies on.
        let current = get(c, id).await?;
        if to == ExecutionStatus::Running && current.status == ExecutionStatus::Pending {
            return Err(Error::validation(
                "status",
                "an execution starts running only when a worker claims it \
                 (ExecutionQueue::claim), which sets its lease",
            ));
        }
        Err(Error::InvalidTransition {
            entity: "execution",
            from: current.status.as_str(),
            to: to.as_str(),
        })
    }

    pub(crate) async fn delete(c: &Conn<'_>, id: ExecutionId) -> Result<()> {
        crate::pg::queue::sql::delete(c, id).await
    }

    pub(crate) async fn list(
        c: &Conn<'_>,
        list: &ListSql,
        filters: &[&dyn Param],
        page: &PageSpec,
    ) -> Result<Page<TaskExecution>> {
        TABLE
            .page(c, list, filters, page, read_execution, keyset)
            .await
    }

    pub(crate) async fn count(
        c: &Conn<'_>,
        count: &queries::Query,
        filters: &[&dyn Param],
    ) -> Result<i64> {
        TABLE.count(c, count, filters).await
    }
}

#[async_trait]
impl ExecutionRepository for PgExecutionRepository {
    async fn create(&self, execution: NewExecution) -> Result<TaskExecution> {
        traced(repo_span("execution", "create"), async move {
            sql::create(&self.source.conn().await?, execution).await
        })
        .await
    }

    async fn get(&self, id: ExecutionId) -> Result<TaskExecution> {
        traced(repo_span("execution", "get"), async move {
            sql::get(&self.source.read_conn().await?, id).await
        })
        .await
    }

    async fn list(&self, page: PageRequest) -> Result<Page<TaskExecution>> {
        traced(repo_span("execution", "list"), async move {
            let page = PageSpec::parse(TABLE.scope("list", &[]), &page)?;
            sql::list(&self.source.read_conn().await?, &LIST, &[], &page).await
        })
        .await
    }

    async fn list_by_task(
        &self,
        task_id: TaskId,
        page: PageRequest,
    ) -> Result<Page<TaskExecution>> {
        traced(repo_span("execution", "list_by_task"), async move {
            let page = PageSpec::parse(
                TABLE.scope("list_by_task", task_id.as_uuid().as_bytes()),
                &page,
            )?;
            sql::list(
                &self.source.read_conn().await?,
                &LIST_BY_TASK,
                &[&task_id],
                &page,
            )
            .await
        })
        .await
    }

    async fn list_by_status(
        &self,
        status: ExecutionStatus,
        page: PageRequest,
    ) -> Result<Page<TaskExecution>> {
        traced(repo_span("execution", "list_by_status"), async move {
            let page = PageSpec::parse(
                TABLE.scope("list_by_status", status.as_str().as_bytes()),
                &page,
            )?;
            sql::list(
                &self.source.read_conn().await?,
                &LIST_BY_STATUS,
                &[&status],
                &page,
            )
            .await
        })
        .await
    }

    async fn latest_for_task(&self, task_id: TaskId) -> Result<Option<TaskExecution>> {
        traced(repo_span("execution", "latest_for_task"), async move {
            sql::latest_for_task(&self.source.read_conn().await?, task_id).await
        })
        .await
    }

    async fn update(&self, id: ExecutionId, mut update: ExecutionUpdate) -> Result<TaskExecution> {
        traced(repo_span("execution", "update"), async move {
            validate::execution_update(&update)?;
            let max = self.source.max_output_bytes();
            for output in [&mut update.stdout, &mut update.stderr]
                .into_iter()
                .flatten()
            {
                validate::truncate_output(output, max);
            }
            sql::update(&self.source.conn().await?, id, &update).await
        })
        .await
    }

    async fn update_status(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
    ) -> Result<TaskExecution> {
        traced(repo_span("execution", "update_status"), async move {
            sql::update_status(&self.source.conn().await?, id, status).await
        })
        .await
    }

    async fn delete(&self, id: ExecutionId) -> Result<()> {
        traced(repo_span("execution", "delete"), async move {
            sql::delete(&self.source.conn().await?, id).await
        })
        .await
    }

    async fn count(&self) -> Result<i64> {
        traced(repo_span("execution", "count"), async move {
            sql::count(
                &self.source.read_conn().await?,
                &queries::lists::EXECUTIONS_COUNT,
                &[],
            )
            .await
        })
        .await
    }

    async fn estimated_count(&self) -> Result<i64> {
        traced(repo_span("execution", "estimated_count"), async move {
            let conn = self.source.read_conn().await?;
            sql::count(&conn, &queries::counts::EXECUTIONS_ESTIMATE, &[]).await
        })
        .await
    }

    async fn count_by_task(&self, task_id: TaskId) -> Result<i64> {
        traced(repo_span("execution", "count_by_task"), async move {
            let count = &queries::lists::EXECUTIONS_BY_TASK_COUNT;
            sql::count(&self.source.read_conn().await?, count, &[&task_id]).await
        })
        .await
    }

    async fn count_by_status(&self, status: ExecutionStatus) -> Result<i64> {
        traced(repo_span("execution", "count_by_status"), async move {
            let count = &queries::lists::EXECUTIONS_BY_STATUS_COUNT;
            sql::count(&self.source.read_conn().await?, count, &[&status]).await
        })
        .await
    }
}
