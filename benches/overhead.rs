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
//! `list` (a page of 50 tasks), `create_many` (1000 tasks per call).

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    NewTask, NewUser, PageRequest, PasswordHash, PgTaskRepository, PgUserRepository, PoolerMode,
    TaskId, TaskRepository, UserId, UserRepository,
};

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
            other => panic!("unknown op {other}"),
        }
    }
}

/// The calls whose instructions are counted (`--toggle-collect`).
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, bench: &Bench, op: &str, n: usize) {
    rt.block_on(async {
        for _ in 0..n {
            bench.call(op).await;
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "get".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_db, bench) = rt.block_on(async {
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
            repo,
            user,
            task: task.id,
        };
        bench.call(&op).await;
        (db, bench)
    });
    measured(&rt, &bench, &op, n);
    println!("{op} x{n} done");
}
