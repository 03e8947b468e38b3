//! [`TaskRepository`] on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::jsonb::Jsonb;
use super::sorted::SortedSpec;
use super::{
    Columns, Conn, CursorKind, Keyset, ListSql, PageSpec, Param, RowReader, Source, Table,
};
use super::{counted, repo_span, traced};
use std::sync::Arc;

use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{
    NewTask, Page, PageRequest, Task, TaskFilter, TaskId, TaskSort, TaskStatus, TaskStatusCounts,
    TaskUpdate, TaskWithLatest, UserId,
};
use crate::queries;
use crate::repo::TaskRepository;
use crate::tx::TxInner;
use crate::validate::{self, DenyList, ValidationPolicy};

/// A task's columns, in `read_task`'s order.
pub(super) static COLUMN_NAMES: Columns = Columns {
    entity: "task",
    names: &queries::columns::TASK,
};

pub(super) const TABLE: Table = Table {
    read: &COLUMN_NAMES,
    cursor: CursorKind::Task,
    by_priority: true,
    get: queries::tasks::GET,
};

pub(super) const LIST: ListSql = ListSql {
    first: queries::lists::TASKS_FIRST,
    after: queries::lists::TASKS_AFTER,
};
pub(super) const LIST_BY_USER: ListSql = ListSql {
    first: queries::lists::TASKS_BY_USER_FIRST,
    after: queries::lists::TASKS_BY_USER_AFTER,
};
pub(super) const LIST_BY_STATUS: ListSql = ListSql {
    first: queries::lists::TASKS_BY_STATUS_FIRST,
    after: queries::lists::TASKS_BY_STATUS_AFTER,
};
pub(super) const SEARCH_BY_METADATA: ListSql = ListSql {
    first: queries::lists::TASKS_BY_METADATA_FIRST,
    after: queries::lists::TASKS_BY_METADATA_AFTER,
};

/// Reads a task, its fields in [`COLUMN_NAMES`]' order.
pub(super) fn read_task(r: &mut RowReader<'_>) -> Result<Task> {
    Ok(Task {
        id: r.next()?,
        user_id: r.next()?,
        name: r.next()?,
        description: r.next()?,
        script_content: r.next()?,
        script_type: r.next()?,
        status: r.next()?,
        priority: r.next()?,
        timeout_seconds: r.next()?,
        metadata: r.next()?,
        created_at: r.next()?,
        updated_at: r.next()?,
    })
}

pub(super) fn task_from_row(row: &Row) -> Result<Task> {
    COLUMN_NAMES.read_one(row, read_task)
}

pub(super) fn keyset(task: &Task) -> Keyset {
    Keyset {
        priority: task.priority,
        created_at: task.created_at,
        id: task.id.as_uuid(),
    }
}

/// [`TaskRepository`] over the pool of a [`Database`].
#[derive(Debug, Clone)]
pub struct PgTaskRepository {
    pub(super) source: Source,
    pub(super) policy: ValidationPolicy,
    /// `policy`'s deny-list, compiled once for every call.
    pub(super) deny: Arc<DenyList>,
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
            deny: DenyList::shared(&policy.script),
            policy,
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>, policy: ValidationPolicy) -> Self {
        PgTaskRepository {
            source: Source::Tx(tx),
            deny: DenyList::shared(&policy.script),
            policy,
        }
    }
}

/// The queries, over a pooled connection or a transaction.
pub(crate) mod sql {
    use super::*;

    pub(crate) async fn create(c: &Conn<'_>, task: &NewTask) -> Result<Task> {
        let row = c
            .query_one(
                &queries::tasks::CREATE,
                &[
                    &TaskId::new(),
                    &task.user_id,
                    &task.name,
                    &task.description,
                    &task.script_content,
                    &task.script_type,
                    &task.priority,
                    &task.timeout_seconds,
                    &Jsonb(&task.metadata),
                ],
            )
            .await?;
        task_from_row(&row)
    }

    pub(crate) async fn create_many(c: &Conn<'_>, tasks: &[NewTask]) -> Result<Vec<Task>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<TaskId> = tasks.iter().map(|_| TaskId::new()).collect();
        let rows = c
            .query(
                &queries::tasks::CREATE_MANY,
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
                    &tasks.iter().map(|t| Jsonb(&t.metadata)).collect::<Vec<_>>(),
                ],
            )
            .await?;
        COLUMN_NAMES.read_all(&rows, read_task)
    }

    pub(crate) async fn import(client: &tokio_postgres::Client, tasks: &[NewTask]) -> Result<u64> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;

        let sink = client.copy_in(queries::tasks::IMPORT.text).await?;
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
                    &Jsonb(&task.metadata),
                ])
                .await?;
        }
        Ok(writer.finish().await?)
    }

    pub(crate) async fn get(c: &Conn<'_>, id: TaskId) -> Result<Task> {
        task_from_row(&TABLE.get_row(c, id).await?)
    }

    pub(crate) async fn update(c: &Conn<'_>, id: TaskId, update: &TaskUpdate) -> Result<Task> {
        if update.is_empty() {
            return get(c, id).await;
        }
        c.query_opt(
            &queries::tasks::UPDATE,
            &[
                &id,
                &update.name,
                &update.description.is_some(),
                &update.description.as_ref().and_then(|d| d.as_deref()),
                &update.script_content,
                &update.script_type,
                &update.priority,
                &update.timeout_seconds,
                &update.metadata.as_ref().map(Jsonb),
            ],
        )
        .await?
        .map(|row| task_from_row(&row))
        .transpose()?
        .ok_or_else(|| Error::not_found("task", id))
    }

    pub(crate) async fn delete(c: &Conn<'_>, id: TaskId) -> Result<()> {
        match c.execute(&queries::tasks::DELETE, &[&id]).await? {
            0 => Err(Error::not_found("task", id)),
            _ => Ok(()),
        }
    }

    /// The counts of every task (`None`) or of one user's, from V12's
    /// counters: columns in [`TaskStatus::ALL`]'s order.
    pub(crate) async fn status_counts(
        c: &Conn<'_>,
        user: Option<UserId>,
    ) -> Result<TaskStatusCounts> {
        let row = match &user {
            Some(user) => {
                c.query_one(&queries::counts::TASKS_BY_USER, &[user])
                    .await?
            }
            None => c.query_one(&queries::counts::TASKS, &[]).await?,
        };
        let mut counts = TaskStatusCounts::default();
        for (i, status) in TaskStatus::ALL.into_iter().enumerate() {
            counts = counts.with(status, row.try_get(i)?);
        }
        Ok(counts)
    }

    pub(crate) async fn list(
        c: &Conn<'_>,
        list: &ListSql,
        filters: &[&dyn Param],
        page: &PageSpec,
    ) -> Result<Page<Task>> {
        TABLE.page(c, list, filters, page, read_task, keyset).await
    }
}

/// The bulk load (`tasks.import`) on one connection, through the
/// executor like any statement.
async fn copy(conn: &Conn<'_>, tasks: &[NewTask]) -> Result<u64> {
    conn.exchange(&queries::tasks::IMPORT, |client| sql::import(client, tasks))
        .await
}

#[async_trait]
impl TaskRepository for PgTaskRepository {
    async fn create(&self, task: NewTask) -> Result<Task> {
        traced(repo_span("task", "create"), async move {
            validate::new_task_with(&task, &self.policy, &self.deny)?;
            sql::create(&self.source.conn().await?, &task).await
        })
        .await
    }

    async fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Task>> {
        traced(
            counted(repo_span("task", "create_many"), tasks.len()),
            async move {
                validate::batch_size("tasks", tasks.len())?;
                validate::new_tasks_with(&tasks, &self.policy, &self.deny)?;
                sql::create_many(&self.source.conn().await?, &tasks).await
            },
        )
        .await
    }

    async fn import(&self, tasks: Vec<NewTask>) -> Result<u64> {
        traced(
            counted(repo_span("task", "import"), tasks.len()),
            async move {
                validate::new_tasks_with(&tasks, &self.policy, &self.deny)?;
                if tasks.is_empty() {
                    return Ok(0);
                }
                // Behind a transaction-mode pooler, COPY runs in a transaction of
                // its own: the driver prepares it as a named statement and runs it
                // in two more exchanges, which must all reach one server
                // connection, and only a transaction keeps one. The driver closes
                // that statement as soon as COPY starts (the Close is queued behind
                // the data), so it is gone before COMMIT hands the server connection
                // to someone else.
                if let Source::Pool(db) = &self.source
                    && !db.config().pooler.named_statements()
                {
                    let tasks = &tasks;
                    return self
                        .source
                        .transaction(
                            |source| async move { copy(&source.conn().await?, tasks).await },
                        )
                        .await;
                }
                copy(&self.source.conn().await?, &tasks).await
            },
        )
        .await
    }

    async fn get(&self, id: TaskId) -> Result<Task> {
        traced(repo_span("task", "get"), async move {
            sql::get(&self.source.read_conn().await?, id).await
        })
        .await
    }

    async fn update(&self, id: TaskId, update: TaskUpdate) -> Result<Task> {
        traced(repo_span("task", "update"), async move {
            validate::task_update_with(&update, &self.policy, &self.deny)?;
            sql::update(&self.source.conn().await?, id, &update).await
        })
        .await
    }

    async fn update_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        traced(repo_span("task", "update_status"), async move {
            validate::task_status_by_hand(status)?;
            crate::pg::queue::sql::set_task_status(&self.source.conn().await?, id, status).await
        })
        .await
    }

    async fn delete(&self, id: TaskId) -> Result<()> {
        traced(repo_span("task", "delete"), async move {
            sql::delete(&self.source.conn().await?, id).await
        })
        .await
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Task>> {
        traced(repo_span("task", "list"), async move {
            let page = PageSpec::parse(TABLE.scope("list", &[]), &page)?;
            sql::list(&self.source.read_conn().await?, &LIST, &[], &page).await
        })
        .await
    }

    async fn list_by_user(&self, user_id: UserId, page: PageRequest) -> Result<Page<Task>> {
        traced(repo_span("task", "list_by_user"), async move {
            let page = PageSpec::parse(
                TABLE.scope("list_by_user", user_id.as_uuid().as_bytes()),
                &page,
            )?;
            sql::list(
                &self.source.read_conn().await?,
                &LIST_BY_USER,
                &[&user_id],
                &page,
            )
            .await
        })
        .await
    }

    async fn list_by_status(&self, status: TaskStatus, page: PageRequest) -> Result<Page<Task>> {
        traced(repo_span("task", "list_by_status"), async move {
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

    async fn search_by_metadata(
        &self,
        filter: serde_json::Value,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        traced(repo_span("task", "search_by_metadata"), async move {
            validate::metadata_filter(&filter, &self.policy.metadata)?;
            // serde_json writes an object's keys in a fixed order, so equal
            // filters give equal bytes.
            let filter_bytes = serde_json::to_vec(&filter)
                .map_err(|e| Error::validation("filter", format!("cannot be serialised: {e}")))?;
            let page = PageSpec::parse(TABLE.scope("search_by_metadata", &filter_bytes), &page)?;
            sql::list(
                &self.source.read_conn().await?,
                &SEARCH_BY_METADATA,
                &[&Jsonb(&filter)],
                &page,
            )
            .await
        })
        .await
    }

    async fn count(&self) -> Result<i64> {
        traced(repo_span("task", "count"), async move {
            let conn = self.source.read_conn().await?;
            Ok(sql::status_counts(&conn, None).await?.total())
        })
        .await
    }

    async fn count_by_user(&self, user_id: UserId) -> Result<i64> {
        traced(repo_span("task", "count_by_user"), async move {
            let conn = self.source.read_conn().await?;
            Ok(sql::status_counts(&conn, Some(user_id)).await?.total())
        })
        .await
    }

    async fn count_by_status(&self, status: TaskStatus) -> Result<i64> {
        traced(repo_span("task", "count_by_status"), async move {
            let conn = self.source.read_conn().await?;
            Ok(sql::status_counts(&conn, None).await?.get(status))
        })
        .await
    }

    async fn status_counts(&self) -> Result<TaskStatusCounts> {
        traced(repo_span("task", "status_counts"), async move {
            sql::status_counts(&self.source.read_conn().await?, None).await
        })
        .await
    }

    async fn status_counts_by_user(&self, user_id: UserId) -> Result<TaskStatusCounts> {
        traced(repo_span("task", "status_counts_by_user"), async move {
            sql::status_counts(&self.source.read_conn().await?, Some(user_id)).await
        })
        .await
    }

    async fn list_sorted(
        &self,
        filter: TaskFilter,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        traced(repo_span("task", "list_sorted"), async move {
            let spec = SortedSpec::parse(filter, sort, &page)?;
            spec.tasks(&self.source.read_conn().await?).await
        })
        .await
    }

    async fn list_with_latest(
        &self,
        filter: TaskFilter,
        sort: TaskSort,
        page: PageRequest,
    ) -> Result<Page<TaskWithLatest>> {
        traced(repo_span("task", "list_with_latest"), async move {
            let spec = SortedSpec::parse(filter, sort, &page)?;
            spec.with_latest(&self.source.read_conn().await?).await
        })
        .await
    }
}

impl Database {
    /// Counts the tasks again, from the table, into the counters that
    /// answer every count of tasks (migration V12), and returns how many
    /// there are. The counters are kept by triggers in the transaction of
    /// every change, so this is needed only after writes that ran with
    /// triggers off: another writer under `session_replication_role =
    /// replica` (a logical replication apply, a data-only `pg_restore
    /// --disable-triggers`), `ALTER TABLE tasks DISABLE TRIGGER`, or
    /// counter rows changed by hand. Writes to tasks wait while it counts
    /// (one read of the table); reads go on. It waits at most 2 s for its
    /// lock (writes queue behind a waiting lock, so it gives up rather than
    /// stall them behind a long transaction): then it fails with SQLSTATE
    /// `55P03` (`lock_not_available`) and changes nothing; run it again. Needs the tables' owner's
    /// privileges (it rewrites the counters): run it as the role that
    /// migrates.
    pub async fn recount_tasks(&self) -> Result<i64> {
        traced(repo_span("task", "recount"), async move {
            let conn = Source::Pool(self.clone());
            let conn = conn.conn().await?;
            let row = conn.query_one(&queries::counts::RECOUNT_TASKS, &[]).await?;
            Ok(row.try_get(0)?)
        })
        .await
    }
}
