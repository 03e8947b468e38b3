//! The client's own cost per repository call, for instruction counts under
//! callgrind (issue #11): everything the call runs on this process's one
//! thread — validation, SQL, encoding, the driver, decoding — and not the
//! server's work, which runs in another process.
//!
//! ```text
//! cargo build --release --bench overhead --no-default-features
//! valgrind --tool=callgrind --toggle-collect='*overhead::measured*' \
//!     target/release/deps/overhead-<hash> get 200
//! ```
//!
//! `<op> <n>`: `n` calls of `op` after one warm-up call (which prepares the
//! statement), all inside `measured`: the instruction total divided by `n`
//! is the per-call figure. Ops: `get` (one task), `create` (one task),
//! `list` (a page of 50 tasks), `create_many` (1000 tasks per call),
//! `import` (10,000 tasks by COPY per call). Each has a `raw_` twin: the
//! same SQL through tokio-postgres and deadpool with no crate in between
//! (cached statements, every column read into a struct, no validation),
//! the baseline the issue's targets are ratios of. Both check out through
//! `Database::client`, so both carry the pool-metrics cost of this build
//! (the dev-dependency turns the `metrics` feature on): the ratio is the
//! crate's own overhead on top of the driver's. The run also prints the
//! allocations and bytes allocated per call (a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, Type};
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    NewTask, NewUser, PageRequest, PasswordHash, PgTaskRepository, PgUserRepository, PoolerMode,
    ScriptType, TaskId, TaskRepository, TaskStatus, Timestamp, UserId, UserRepository,
};

/// Counts what is allocated while `measured` runs, to print per call.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
/// Allocations of 1 KiB or more, which glibc serves from its slower bins.
static LARGE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            if layout.size() >= 1024 {
                LARGE.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The crate's task columns, in its order (src/pg/task.rs); a macro so
/// the raw statements are built at compile time, as the crate's are.
macro_rules! columns {
    () => {
        "id, user_id, name, description, script_content, script_type, status, \
         priority, timeout_seconds, metadata, created_at, updated_at"
    };
}

/// What a raw caller reads a task into: every column, by index.
#[allow(dead_code)]
struct RawTask {
    id: TaskId,
    user_id: UserId,
    name: String,
    description: Option<String>,
    script_content: String,
    script_type: ScriptType,
    status: TaskStatus,
    priority: i32,
    timeout_seconds: i32,
    metadata: Json<serde_json::Value>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl RawTask {
    fn from_row(row: &Row) -> Self {
        RawTask {
            id: row.get(0),
            user_id: row.get(1),
            name: row.get(2),
            description: row.get(3),
            script_content: row.get(4),
            script_type: row.get(5),
            status: row.get(6),
            priority: row.get(7),
            timeout_seconds: row.get(8),
            metadata: row.get(9),
            created_at: row.get(10),
            updated_at: row.get(11),
        }
    }
}

fn new_task(user: UserId, i: usize) -> NewTask {
    NewTask::new(
        user,
        format!("bench {i}"),
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

struct Bench {
    db: TestDatabase,
    repo: PgTaskRepository,
    user: UserId,
    task: TaskId,
}

impl Bench {
    async fn call(&self, op: &str) {
        match op {
            "get" => {
                self.repo.get(self.task).await.expect("get");
            }
            "create" => {
                self.repo
                    .create(new_task(self.user, 1))
                    .await
                    .expect("create");
            }
            "list" => {
                let page = self.repo.list(PageRequest::first(50)).await.expect("list");
                assert_eq!(page.items.len(), 50);
            }
            "create_many" => {
                let tasks = (0..1000).map(|i| new_task(self.user, i)).collect();
                self.repo.create_many(tasks).await.expect("create_many");
            }
            "import" => {
                let tasks = (0..10_000).map(|i| new_task(self.user, i)).collect();
                self.repo.import(tasks).await.expect("import");
            }
            raw => self.raw(raw).await,
        }
    }

    /// The `raw_` ops: the crate's SQL on a connection of the same pool.
    async fn raw(&self, op: &str) {
        let client = self.db.raw_client().await.expect("client");
        match op {
            "raw_get" => {
                let sql = concat!("SELECT ", columns!(), " FROM tasks WHERE id = $1");
                let stmt = client.prepare_cached(sql).await.expect("prepare");
                let row = client.query_one(&stmt, &[&self.task]).await.expect("get");
                RawTask::from_row(&row);
            }
            "raw_create" => {
                let sql = concat!(
                    "INSERT INTO tasks (id, user_id, name, description, script_content, \
                     script_type, priority, timeout_seconds, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
                    columns!()
                );
                let stmt = client.prepare_cached(sql).await.expect("prepare");
                let t = new_task(self.user, 1);
                let row = client
                    .query_one(
                        &stmt,
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
                    .await
                    .expect("create");
                RawTask::from_row(&row);
            }
            "raw_list" => {
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM tasks WHERE TRUE \
                     ORDER BY priority DESC, created_at DESC, id DESC LIMIT $1"
                );
                let stmt = client.prepare_cached(sql).await.expect("prepare");
                let rows = client.query(&stmt, &[&51i64]).await.expect("list");
                let tasks: Vec<RawTask> = rows.iter().take(50).map(RawTask::from_row).collect();
                assert_eq!(tasks.len(), 50);
            }
            "raw_create_many" => {
                let sql = concat!(
                    "WITH input AS (SELECT id, user_id, name, description, script_content, \
                       script_type, priority, timeout_seconds, metadata, ord \
                     FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                       $6::text[], $7::int4[], $8::int4[], $9::jsonb[]) WITH ORDINALITY \
                       AS input(id, user_id, name, description, script_content, script_type, \
                       priority, timeout_seconds, metadata, ord)), \
                     created AS (INSERT INTO tasks (id, user_id, name, description, \
                       script_content, script_type, priority, timeout_seconds, metadata) \
                       SELECT id, user_id, name, description, script_content, script_type, \
                       priority, timeout_seconds, metadata FROM input RETURNING ",
                    columns!(),
                    ") SELECT created.id, created.user_id, created.name, created.description, \
                     created.script_content, created.script_type, created.status, \
                     created.priority, created.timeout_seconds, created.metadata, \
                     created.created_at, created.updated_at \
                     FROM created JOIN input ON input.id = created.id ORDER BY input.ord"
                );
                let stmt = client.prepare_cached(sql).await.expect("prepare");
                let tasks: Vec<NewTask> = (0..1000).map(|i| new_task(self.user, i)).collect();
                let ids: Vec<TaskId> = tasks.iter().map(|_| TaskId::new()).collect();
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
                            &tasks.iter().map(|t| Json(&t.metadata)).collect::<Vec<_>>(),
                        ],
                    )
                    .await
                    .expect("create_many");
                let created: Vec<RawTask> = rows.iter().map(RawTask::from_row).collect();
                assert_eq!(created.len(), 1000);
            }
            "raw_import" => {
                let tasks: Vec<NewTask> = (0..10_000).map(|i| new_task(self.user, i)).collect();
                let sink = client
                    .copy_in(
                        "COPY tasks (id, user_id, name, description, script_content, \
                         script_type, priority, timeout_seconds, metadata) FROM STDIN BINARY",
                    )
                    .await
                    .expect("copy");
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
                        .await
                        .expect("row");
                }
                writer.finish().await.expect("import");
            }
            other => panic!("unknown op {other}"),
        }
    }
}

/// The calls whose instructions are counted (`--toggle-collect`).
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, bench: &Bench, op: &str, n: usize) {
    COUNTING.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for _ in 0..n {
            bench.call(op).await;
        }
    });
    COUNTING.store(false, Ordering::Relaxed);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "get".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bench = rt.block_on(async {
        let db = TestDatabase::with_config(|c| {
            c.max_connections = 1;
            c.min_connections = 1;
            c.pooler = PoolerMode::Direct;
        })
        .await
        .expect("test database");
        let user = PgUserRepository::new(db.db().clone())
            .create(NewUser::new("bench@example.com", PasswordHash::new("h")))
            .await
            .expect("user")
            .id;
        let repo = PgTaskRepository::new(db.db().clone());
        let task = repo.create(new_task(user, 0)).await.expect("task");
        for i in 0..60 {
            repo.create(new_task(user, i)).await.expect("task");
        }
        let bench = Bench {
            db,
            repo,
            user,
            task: task.id,
        };
        bench.call(&op).await;
        bench
    });
    measured(&rt, &bench, &op, n);
    let per_call = |counter: &AtomicUsize| counter.load(Ordering::Relaxed) as f64 / n as f64;
    println!(
        "{op} x{n}: {:.1} allocations, {:.0} bytes, {:.1} of 1 KiB or more per call",
        per_call(&ALLOCATIONS),
        per_call(&BYTES),
        per_call(&LARGE)
    );
}
