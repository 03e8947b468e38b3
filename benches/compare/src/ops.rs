//! The five repository operations, each done three ways: through the crate,
//! through raw tokio-postgres + deadpool with the crate's SQL (as captured
//! from the server), and through sqlx with the same SQL; get and list also
//! through the crate's scoped view of the seeded user (`scoped`), to
//! compare with the crate's unscoped calls.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolCopyExt, PgPoolOptions};
use uuid::Uuid;
use voidrunner_db::deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use voidrunner_db::tokio_postgres::binary_copy::BinaryCopyInWriter;
use voidrunner_db::tokio_postgres::types::{Json, Type};
use voidrunner_db::tokio_postgres::{self, NoTls, Row};
use voidrunner_db::{
    DbConfig, NewTask, PageRequest, PgTaskRepository, PoolerMode, ScopedRepositories, ScriptType,
    TaskId, TaskRepository, TaskStatus, Timestamp, UserId,
};

pub type BoxError = Box<dyn StdError + Send + Sync>;

pub const OPS: [&str; 5] = ["get", "list", "create", "create_many", "import"];
pub const LIST_LIMIT: usize = 50;
pub const CREATE_MANY_ROWS: usize = 1_000;
pub const IMPORT_ROWS: usize = 10_000;
/// Marks the rows the write operations insert, so the driver can delete
/// them between rounds and every round sees the same table.
pub const WRITE_PREFIX: &str = "cmpw";

/// The input of every write, in every variant: the task the crate's own
/// overhead bench writes.
pub fn new_task(user: UserId, i: usize) -> NewTask {
    NewTask::new(
        user,
        format!("{WRITE_PREFIX} {i}"),
        "import os\nprint(sum(range(10)))\n",
    )
    .priority(i32::try_from(i % 10).unwrap_or(0))
    .metadata(serde_json::json!({
        "team": "bench",
        "serial": i,
        "ratio": 0.25,
        "tags": ["a", "b\"c", "é"],
        "owner": {"id": 7, "name": "x"},
    }))
}

fn tasks(user: UserId, n: usize) -> Vec<NewTask> {
    (0..n).map(|i| new_task(user, i)).collect()
}

/// Every column of a task, decoded into the crate's own column types, so
/// the peers do the work the crate's `Task` needs (the struct itself is
/// `#[non_exhaustive]`, so it cannot be built here).
#[allow(dead_code)]
pub struct TaskRow {
    id: TaskId,
    user_id: UserId,
    name: String,
    description: Option<String>,
    script_content: String,
    script_type: ScriptType,
    status: TaskStatus,
    priority: i32,
    timeout_seconds: i32,
    metadata: serde_json::Value,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl TaskRow {
    fn from_pg(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(TaskRow {
            id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            name: row.try_get(2)?,
            description: row.try_get(3)?,
            script_content: row.try_get(4)?,
            script_type: row.try_get(5)?,
            status: row.try_get(6)?,
            priority: row.try_get(7)?,
            timeout_seconds: row.try_get(8)?,
            metadata: row.try_get(9)?,
            created_at: row.try_get(10)?,
            updated_at: row.try_get(11)?,
        })
    }

    fn from_sqlx(row: &sqlx::postgres::PgRow) -> Result<Self, BoxError> {
        let script_type: &str = row.try_get(5)?;
        let status: &str = row.try_get(6)?;
        Ok(TaskRow {
            id: row.try_get::<Uuid, _>(0)?.into(),
            user_id: row.try_get::<Uuid, _>(1)?.into(),
            name: row.try_get(2)?,
            description: row.try_get(3)?,
            script_content: row.try_get(4)?,
            script_type: script_type.parse()?,
            status: status.parse()?,
            priority: row.try_get(7)?,
            timeout_seconds: row.try_get(8)?,
            metadata: row.try_get(9)?,
            created_at: row.try_get::<time::OffsetDateTime, _>(10)?.into(),
            updated_at: row.try_get::<time::OffsetDateTime, _>(11)?.into(),
        })
    }
}

/// The crate's SQL of each operation, as the server saw it.
pub type SqlMap = HashMap<String, String>;

/// One variant's client, connected.
pub enum Client {
    Crate(PgTaskRepository),
    /// The scoped view, made for the seeded user at the first call (as a
    /// handler makes it once per request, outside the measured call).
    Scoped(
        voidrunner_db::Database,
        std::sync::OnceLock<ScopedRepositories>,
    ),
    Raw(Pool, &'static SqlMap),
    Sqlx(PgPool, &'static SqlMap),
}

/// How many parameters the crate's statement of `op` takes: what the peers
/// bind. A different count means the crate's SQL changed shape, and the
/// peers would no longer run the same statement: stop rather than compare.
fn expected_params(op: &str) -> usize {
    match op {
        "get" | "list" => 1,
        "create" | "create_many" => 9,
        _ => 0,
    }
}

impl Client {
    pub async fn connect(variant: &str, url: &str, pool: usize, sql: &'static SqlMap) -> Self {
        match variant {
            "crate" | "scoped" => {
                let mut config = DbConfig::from_url(url).expect("url");
                config.max_connections = pool;
                config.min_connections = pool;
                config.pooler = PoolerMode::Direct;
                let db = voidrunner_db::Database::connect(config)
                    .await
                    .expect("connect");
                if variant == "scoped" {
                    Client::Scoped(db, std::sync::OnceLock::new())
                } else {
                    Client::Crate(PgTaskRepository::new(db))
                }
            }
            "raw" => {
                let config: tokio_postgres::Config = url.parse().expect("url");
                let manager = Manager::from_config(
                    config,
                    NoTls,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Fast,
                    },
                );
                let pool = Pool::builder(manager).max_size(pool).build().expect("pool");
                Client::Raw(pool, sql)
            }
            "sqlx" => {
                let pool = PgPoolOptions::new()
                    .max_connections(u32::try_from(pool).expect("pool size"))
                    .min_connections(u32::try_from(pool).expect("pool size"))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await
                    .expect("sqlx connect");
                Client::Sqlx(pool, sql)
            }
            other => panic!("unknown variant {other}"),
        }
    }

    /// One call of `op`; returns the rows it read or wrote.
    pub async fn call(&self, op: &str, task: TaskId, user: UserId, i: usize) -> usize {
        let result = match self {
            Client::Crate(repo) => crate_call(repo, op, task, user, i).await,
            Client::Scoped(db, view) => {
                scoped_call(view.get_or_init(|| db.scoped(user)), op, task).await
            }
            Client::Raw(pool, sql) => raw_call(pool, sql, op, task, user, i).await,
            Client::Sqlx(pool, sql) => sqlx_call(pool, sql, op, task, user, i).await,
        };
        result.unwrap_or_else(|e| panic!("{op}: {e}"))
    }
}

async fn crate_call(
    repo: &PgTaskRepository,
    op: &str,
    task: TaskId,
    user: UserId,
    i: usize,
) -> Result<usize, BoxError> {
    Ok(match op {
        "get" => {
            std::hint::black_box(repo.get(task).await?);
            1
        }
        "list" => {
            let page = repo.list(PageRequest::first(LIST_LIMIT as u32)).await?;
            assert_eq!(page.items.len(), LIST_LIMIT);
            std::hint::black_box(page).items.len()
        }
        "create" => {
            std::hint::black_box(repo.create(new_task(user, i)).await?);
            1
        }
        "create_many" => repo.create_many(tasks(user, CREATE_MANY_ROWS)).await?.len(),
        "import" => usize::try_from(repo.import(tasks(user, IMPORT_ROWS)).await?)?,
        other => panic!("unknown op {other}"),
    })
}

/// get and list through the scoped view: the same task, and a page of the
/// same length (of the user's tasks, where the unscoped list pages through
/// every task; the seeded tasks are all the user's).
async fn scoped_call(view: &ScopedRepositories, op: &str, task: TaskId) -> Result<usize, BoxError> {
    Ok(match op {
        "get" => {
            std::hint::black_box(view.tasks.get(task).await?);
            1
        }
        "list" => {
            let page = view
                .tasks
                .list(PageRequest::first(LIST_LIMIT as u32))
                .await?;
            assert_eq!(page.items.len(), LIST_LIMIT);
            std::hint::black_box(page).items.len()
        }
        other => panic!("the scoped variant has no {other}"),
    })
}

fn check_params(op: &str, sql: &str, got: usize) -> Result<(), BoxError> {
    let want = expected_params(op);
    if got != want {
        return Err(format!(
            "the crate's SQL of {op} now takes {got} parameters, this comparison binds {want}: \
             update benches/compare/src/ops.rs to the new statement: {sql}"
        )
        .into());
    }
    Ok(())
}

fn sql_of<'a>(sql: &'a SqlMap, op: &str) -> &'a str {
    sql.get(op)
        .unwrap_or_else(|| panic!("no captured SQL for {op}"))
}

async fn raw_call(
    pool: &Pool,
    sql: &SqlMap,
    op: &str,
    task: TaskId,
    user: UserId,
    i: usize,
) -> Result<usize, BoxError> {
    let client = pool.get().await?;
    let text = sql_of(sql, op);
    if op == "import" {
        let tasks = tasks(user, IMPORT_ROWS);
        let sink = client.copy_in(text).await?;
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
        for t in &tasks {
            writer
                .as_mut()
                .write(&[
                    &TaskId::new(),
                    &t.user_id,
                    &t.name,
                    &t.description,
                    &t.script_content,
                    &t.script_type,
                    &t.priority,
                    &t.timeout_seconds,
                    &Json(&t.metadata),
                ])
                .await?;
        }
        return Ok(usize::try_from(writer.finish().await?)?);
    }
    let statement = client.prepare_cached(text).await?;
    check_params(op, text, statement.params().len())?;
    Ok(match op {
        "get" => {
            let row = client.query_one(&statement, &[&task]).await?;
            std::hint::black_box(TaskRow::from_pg(&row)?);
            1
        }
        "list" => {
            let fetch = (LIST_LIMIT + 1) as i64;
            let rows = client.query(&statement, &[&fetch]).await?;
            let mut items = rows
                .iter()
                .map(TaskRow::from_pg)
                .collect::<Result<Vec<_>, _>>()?;
            items.truncate(LIST_LIMIT);
            assert_eq!(items.len(), LIST_LIMIT);
            std::hint::black_box(items).len()
        }
        "create" => {
            let t = new_task(user, i);
            let row = client
                .query_one(
                    &statement,
                    &[
                        &TaskId::new(),
                        &t.user_id,
                        &t.name,
                        &t.description,
                        &t.script_content,
                        &t.script_type,
                        &t.priority,
                        &t.timeout_seconds,
                        &Json(&t.metadata),
                    ],
                )
                .await?;
            std::hint::black_box(TaskRow::from_pg(&row)?);
            1
        }
        "create_many" => {
            let tasks = tasks(user, CREATE_MANY_ROWS);
            let ids: Vec<TaskId> = tasks.iter().map(|_| TaskId::new()).collect();
            let rows = client
                .query(
                    &statement,
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
                        &tasks.iter().map(|t| Json(&t.metadata)).collect::<Vec<_>>(),
                    ],
                )
                .await?;
            rows.iter()
                .map(TaskRow::from_pg)
                .collect::<Result<Vec<_>, _>>()?
                .len()
        }
        other => panic!("unknown op {other}"),
    })
}

async fn sqlx_call(
    pool: &PgPool,
    sql: &'static SqlMap,
    op: &str,
    task: TaskId,
    user: UserId,
    i: usize,
) -> Result<usize, BoxError> {
    let text = sql_of(sql, op);
    Ok(match op {
        "get" => {
            let row = sqlx::query(text)
                .bind(Uuid::from(task))
                .fetch_one(pool)
                .await?;
            std::hint::black_box(TaskRow::from_sqlx(&row)?);
            1
        }
        "list" => {
            let rows = sqlx::query(text)
                .bind((LIST_LIMIT + 1) as i64)
                .fetch_all(pool)
                .await?;
            let mut items = rows
                .iter()
                .map(TaskRow::from_sqlx)
                .collect::<Result<Vec<_>, _>>()?;
            items.truncate(LIST_LIMIT);
            assert_eq!(items.len(), LIST_LIMIT);
            std::hint::black_box(items).len()
        }
        "create" => {
            let t = new_task(user, i);
            let row = sqlx::query(text)
                .bind(Uuid::from(TaskId::new()))
                .bind(Uuid::from(t.user_id))
                .bind(&t.name)
                .bind(&t.description)
                .bind(&t.script_content)
                .bind(t.script_type.as_str())
                .bind(t.priority)
                .bind(t.timeout_seconds)
                .bind(sqlx::types::Json(&t.metadata))
                .fetch_one(pool)
                .await?;
            std::hint::black_box(TaskRow::from_sqlx(&row)?);
            1
        }
        "create_many" => {
            let tasks = tasks(user, CREATE_MANY_ROWS);
            let rows = sqlx::query(text)
                .bind(
                    tasks
                        .iter()
                        .map(|_| Uuid::from(TaskId::new()))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    tasks
                        .iter()
                        .map(|t| Uuid::from(t.user_id))
                        .collect::<Vec<_>>(),
                )
                .bind(tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.description.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.script_content.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    tasks
                        .iter()
                        .map(|t| t.script_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(tasks.iter().map(|t| t.priority).collect::<Vec<_>>())
                .bind(tasks.iter().map(|t| t.timeout_seconds).collect::<Vec<_>>())
                .bind(
                    tasks
                        .iter()
                        .map(|t| sqlx::types::Json(&t.metadata))
                        .collect::<Vec<_>>(),
                )
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(TaskRow::from_sqlx)
                .collect::<Result<Vec<_>, _>>()?
                .len()
        }
        "import" => {
            // sqlx has no binary COPY encoder: the rows are written in
            // PostgreSQL's binary COPY format by hand, as a sqlx user would.
            let tasks = tasks(user, IMPORT_ROWS);
            let mut copy = pool.copy_in_raw(text).await?;
            let mut buf = Vec::with_capacity(64 * 1024);
            buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            buf.extend_from_slice(&0i32.to_be_bytes());
            buf.extend_from_slice(&0i32.to_be_bytes());
            for t in &tasks {
                buf.extend_from_slice(&9i16.to_be_bytes());
                field(&mut buf, Uuid::from(TaskId::new()).as_bytes());
                field(&mut buf, Uuid::from(t.user_id).as_bytes());
                field(&mut buf, t.name.as_bytes());
                match &t.description {
                    Some(d) => field(&mut buf, d.as_bytes()),
                    None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
                }
                field(&mut buf, t.script_content.as_bytes());
                field(&mut buf, t.script_type.as_str().as_bytes());
                field(&mut buf, &t.priority.to_be_bytes());
                field(&mut buf, &t.timeout_seconds.to_be_bytes());
                let json = serde_json::to_vec(&t.metadata)?;
                buf.extend_from_slice(&i32::try_from(json.len() + 1)?.to_be_bytes());
                buf.push(1);
                buf.extend_from_slice(&json);
                if buf.len() >= 60 * 1024 {
                    copy.send(std::mem::take(&mut buf)).await?;
                    buf.reserve(64 * 1024);
                }
            }
            buf.extend_from_slice(&(-1i16).to_be_bytes());
            copy.send(buf).await?;
            usize::try_from(copy.finish().await?)?
        }
        other => panic!("unknown op {other}"),
    })
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(
        &i32::try_from(bytes.len())
            .expect("field size")
            .to_be_bytes(),
    );
    buf.extend_from_slice(bytes);
}
