//! [`TaskRepository`] on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{CursorKind, Keyset, PageSpec, Source, Table, prefixed};
use std::sync::Arc;

use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{NewTask, Page, PageRequest, Task, TaskId, TaskStatus, TaskUpdate, UserId};
use crate::repo::TaskRepository;
use crate::tx::TxInner;
use crate::validate::{self, ValidationPolicy};

const COLUMNS: &str = "id, user_id, name, description, script_content, script_type, status, \
                       priority, timeout_seconds, metadata, created_at, updated_at";

pub(super) const TABLE: Table = Table {
    table: "tasks",
    entity: "task",
    columns: COLUMNS,
    cursor: CursorKind::Task,
    by_priority: true,
};

fn task_from_row(row: &Row) -> Task {
    Task {
        id: row.get("id"),
        user_id: row.get("user_id"),
        name: row.get("name"),
        description: row.get("description"),
        script_content: row.get("script_content"),
        script_type: row.get("script_type"),
        status: row.get("status"),
        priority: row.get("priority"),
        timeout_seconds: row.get("timeout_seconds"),
        metadata: row.get("metadata"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

fn keyset(task: &Task) -> Keyset {
    Keyset {
        priority: task.priority,
        created_at: task.created_at,
        id: task.id.as_uuid(),
    }
}

/// [`TaskRepository`] over the pool of a [`Database`].
#[derive(Debug, Clone)]
pub struct PgTaskRepository {
    source: Source,
    policy: ValidationPolicy,
}

impl PgTaskRepository {
    /// A repository with the default [`ValidationPolicy`].
    pub fn new(db: Database) -> Self {
        Self::with_policy(db, ValidationPolicy::default())
    }

    /// A repository validating with `policy` (script deny-list, metadata
    /// limits).
    pub fn with_policy(db: Database, policy: ValidationPolicy) -> Self {
        PgTaskRepository {
            source: Source::Pool(db),
            policy,
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>, policy: ValidationPolicy) -> Self {
        PgTaskRepository {
            source: Source::Tx(tx),
            policy,
        }
    }
}

/// The queries, over a pooled connection or a transaction.
pub(crate) mod sql {
    use super::*;

    pub(crate) async fn create(client: &impl GenericClient, task: &NewTask) -> Result<Task> {
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO tasks (id, user_id, name, description, script_content, script_type, \
                 priority, timeout_seconds, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
            ))
            .await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &TaskId::new(),
                    &task.user_id,
                    &task.name,
                    &task.description,
                    &task.script_content,
                    &task.script_type,
                    &task.priority,
                    &task.timeout_seconds,
                    &task.metadata,
                ],
            )
            .await?;
        Ok(task_from_row(&row))
    }

    pub(crate) async fn create_many(
        client: &impl GenericClient,
        tasks: &[NewTask],
    ) -> Result<Vec<Task>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<TaskId> = tasks.iter().map(|_| TaskId::new()).collect();
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO tasks (id, user_id, name, description, script_content, script_type, \
                 priority, timeout_seconds, metadata) \
                 SELECT id, user_id, name, description, script_content, script_type, \
                        priority, timeout_seconds, metadata \
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                             $6::text[], $7::int4[], $8::int4[], $9::jsonb[]) \
                   AS input(id, user_id, name, description, script_content, script_type, \
                            priority, timeout_seconds, metadata) \
                 RETURNING {COLUMNS}"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &ids,
                    &tasks.iter().map(|t| t.user_id).collect::<Vec<_>>(),
                    &tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                    &tasks
                        .iter()
                        .map(|t| t.description.as_deref())
                        .collect::<Vec<_>>(),
                    &tasks
                        .iter()
                        .map(|t| t.script_content.as_str())
                        .collect::<Vec<_>>(),
                    &tasks.iter().map(|t| t.script_type).collect::<Vec<_>>(),
                    &tasks.iter().map(|t| t.priority).collect::<Vec<_>>(),
                    &tasks.iter().map(|t| t.timeout_seconds).collect::<Vec<_>>(),
                    &tasks.iter().map(|t| &t.metadata).collect::<Vec<_>>(),
                ],
            )
            .await?;
        // Input order, whatever order RETURNING used.
        let mut created: Vec<Task> = rows.iter().map(task_from_row).collect();
        created.sort_by_key(|t| ids.iter().position(|id| *id == t.id));
        Ok(created)
    }

    pub(crate) async fn import(client: &tokio_postgres::Client, tasks: &[NewTask]) -> Result<u64> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;

        let sink = client
            .copy_in(
                "COPY tasks (id, user_id, name, description, script_content, script_type, \
                 priority, timeout_seconds, metadata) FROM STDIN BINARY",
            )
            .await?;
        let types = [
            Type::UUID,
            Type::UUID,
            Type::VARCHAR,
            Type::TEXT,
            Type::TEXT,
            Type::VARCHAR,
            Type::INT4,
            Type::INT4,
            Type::JSONB,
        ];
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for task in tasks {
            writer
                .as_mut()
                .write(&[
                    &TaskId::new(),
                    &task.user_id,
                    &task.name,
                    &task.description,
                    &task.script_content,
                    &task.script_type,
                    &task.priority,
                    &task.timeout_seconds,
                    &task.metadata,
                ])
                .await?;
        }
        Ok(writer.finish().await?)
    }

    pub(crate) async fn get(client: &impl GenericClient, id: TaskId) -> Result<Task> {
        Ok(task_from_row(&TABLE.get_row(client, id).await?))
    }

    pub(crate) async fn update(
        client: &impl GenericClient,
        id: TaskId,
        update: &TaskUpdate,
    ) -> Result<Task> {
        if update.is_empty() {
            return get(client, id).await;
        }
        // NULL means "leave as is"; description needs a flag, since NULL is
        // also a value it can be set to.
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE tasks SET \
                   name = COALESCE($2, name), \
                   description = CASE WHEN $3 THEN $4 ELSE description END, \
                   script_content = COALESCE($5, script_content), \
                   script_type = COALESCE($6, script_type), \
                   priority = COALESCE($7, priority), \
                   timeout_seconds = COALESCE($8, timeout_seconds), \
                   metadata = COALESCE($9, metadata) \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ))
            .await?;
        let set_description = update.description.is_some();
        let description = update.description.clone().flatten();
        client
            .query_opt(
                &stmt,
                &[
                    &id,
                    &update.name,
                    &set_description,
                    &description,
                    &update.script_content,
                    &update.script_type,
                    &update.priority,
                    &update.timeout_seconds,
                    &update.metadata,
                ],
            )
            .await?
            .map(|row| task_from_row(&row))
            .ok_or_else(|| Error::not_found("task", id))
    }

    pub(crate) async fn update_status(
        client: &impl GenericClient,
        id: TaskId,
        to: TaskStatus,
    ) -> Result<Task> {
        // `current` locks the row and, under READ COMMITTED, sees the latest
        // committed version of it, so the transition is checked against the
        // real current status and nobody can change it in between. The second
        // branch returns the locked row when nothing changed: a no-op, or a
        // refused transition with the status to report.
        let stmt = client
            .prepare_cached(&format!(
                "WITH current AS ( \
                   SELECT {COLUMNS} FROM tasks WHERE id = $1 FOR NO KEY UPDATE \
                 ), changed AS ( \
                   UPDATE tasks t SET status = $2 FROM current c \
                   WHERE t.id = c.id AND c.status = ANY($3) AND c.status <> $2 \
                   RETURNING {returning} \
                 ) \
                 SELECT true AS changed, {COLUMNS} FROM changed \
                 UNION ALL \
                 SELECT false, {COLUMNS} FROM current WHERE NOT EXISTS (SELECT 1 FROM changed)",
                returning = prefixed("t", COLUMNS),
            ))
            .await?;
        let from: Vec<&str> = TaskStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(to))
            .map(TaskStatus::as_str)
            .collect();
        let row = client
            .query_opt(&stmt, &[&id, &to, &from])
            .await?
            .ok_or_else(|| Error::not_found("task", id))?;
        let task = task_from_row(&row);
        if row.get::<_, bool>("changed") || task.status == to {
            return Ok(task);
        }
        Err(Error::InvalidTransition {
            entity: "task",
            from: task.status.as_str(),
            to: to.as_str(),
        })
    }

    pub(crate) async fn delete(client: &impl GenericClient, id: TaskId) -> Result<()> {
        TABLE.delete(client, id).await
    }

    pub(crate) async fn list(
        client: &impl GenericClient,
        filter_sql: &'static str,
        filter: Option<&(dyn ToSql + Sync)>,
        page: &PageSpec,
    ) -> Result<Page<Task>> {
        TABLE
            .page(client, filter_sql, filter, page, task_from_row, keyset)
            .await
    }
}

#[async_trait]
impl TaskRepository for PgTaskRepository {
    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "create")
    )]
    async fn create(&self, task: NewTask) -> Result<Task> {
        validate::new_task(&task, &self.policy)?;
        sql::create(&*self.source.conn().await?, &task).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "create_many", count = tasks.len())
    )]
    async fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Task>> {
        validate::new_tasks(&tasks, &self.policy)?;
        sql::create_many(&*self.source.conn().await?, &tasks).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "import", count = tasks.len())
    )]
    async fn import(&self, tasks: Vec<NewTask>) -> Result<u64> {
        validate::new_tasks(&tasks, &self.policy)?;
        if tasks.is_empty() {
            return Ok(0);
        }
        let conn = self.source.conn().await?;
        sql::import(&conn, &tasks).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "get")
    )]
    async fn get(&self, id: TaskId) -> Result<Task> {
        sql::get(&*self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "update")
    )]
    async fn update(&self, id: TaskId, update: TaskUpdate) -> Result<Task> {
        validate::task_update(&update, &self.policy)?;
        sql::update(&*self.source.conn().await?, id, &update).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "update_status")
    )]
    async fn update_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        sql::update_status(&*self.source.conn().await?, id, status).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "delete")
    )]
    async fn delete(&self, id: TaskId) -> Result<()> {
        sql::delete(&*self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "list")
    )]
    async fn list(&self, page: PageRequest) -> Result<Page<Task>> {
        let page = PageSpec::parse(CursorKind::Task, &page)?;
        sql::list(&*self.source.conn().await?, "TRUE", None, &page).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "list_by_user")
    )]
    async fn list_by_user(&self, user_id: UserId, page: PageRequest) -> Result<Page<Task>> {
        let page = PageSpec::parse(CursorKind::Task, &page)?;
        sql::list(
            &*self.source.conn().await?,
            "user_id = $1",
            Some(&user_id),
            &page,
        )
        .await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "list_by_status")
    )]
    async fn list_by_status(&self, status: TaskStatus, page: PageRequest) -> Result<Page<Task>> {
        let page = PageSpec::parse(CursorKind::Task, &page)?;
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
        fields(entity = "task", op = "search_by_metadata")
    )]
    async fn search_by_metadata(
        &self,
        filter: serde_json::Value,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        validate::metadata_filter(&filter, &self.policy.metadata)?;
        let page = PageSpec::parse(CursorKind::Task, &page)?;
        sql::list(
            &*self.source.conn().await?,
            "metadata @> $1",
            Some(&filter),
            &page,
        )
        .await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "count")
    )]
    async fn count(&self) -> Result<i64> {
        TABLE.count(&*self.source.conn().await?, "TRUE", None).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "count_by_user")
    )]
    async fn count_by_user(&self, user_id: UserId) -> Result<i64> {
        TABLE
            .count(&*self.source.conn().await?, "user_id = $1", Some(&user_id))
            .await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "task", op = "count_by_status")
    )]
    async fn count_by_status(&self, status: TaskStatus) -> Result<i64> {
        TABLE
            .count(&*self.source.conn().await?, "status = $1", Some(&status))
            .await
    }
}
