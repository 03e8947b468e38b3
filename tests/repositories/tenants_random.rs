//! Randomized tenant isolation: six users with tasks and executions in
//! every state (and one with none), then a few hundred random calls of
//! every method of both scoped traits, each for a random user, with ids of
//! other users' rows most often, ids that never existed (or were deleted)
//! sometimes, the user's own the rest of the time. After every step, with
//! raw SQL:
//!
//! - nothing of another user was changed: each other user's tasks and
//!   executions (`md5` of their rows as text), and every users row, are
//!   byte for byte as before; a call that read, or failed, changed the
//!   scope's user's rows neither;
//! - nothing of another user was read: every task and execution returned is
//!   the scope's user's; every list, walked page by page, is exactly that
//!   user's rows in the list's order, and every count is theirs;
//! - another user's id answers as a missing one: `NotFound` (its message
//!   the same as for an id that never existed), `None`, an empty page, 0;
//!   and the user's own ids work (never `NotFound`; a refused status change
//!   is `InvalidTransition`).
//!
//! Pooled, pooled as the application role (a LOGIN member of
//! `voidrunner_app`, bound by row-level security), and inside one
//! transaction (where the raw SQL reads through the transaction's own
//! connection, so it sees what the scoped calls did).
//! `VOIDRUNNER_TENANT_SEED` (decimal or `0x…`) replays a run, whose seed is
//! printed with the last steps when it fails; `VOIDRUNNER_TENANT_STEPS`
//! makes it longer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;

use serde_json::json;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewTask, Page,
    PageRequest, PgExecutionRepository, PgTaskRepository, ScopedRepositories, TaskId,
    TaskRepository, TaskStatus, TaskUpdate, Timestamp, UserId,
};

use crate::app_role::AppRole;
use crate::tenants::owned;
use crate::{Repos, repos};

/// Steps of the pooled run, and of the run inside a transaction.
const POOLED_STEPS: u64 = 400;
const TRANSACTION_STEPS: u64 = 300;

/// SplitMix64: small, and good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

/// Every method of both scoped traits (but `user_id`, which is checked
/// once per step), with its weight in the deck the steps are dealt from:
/// each round of the deck calls every method at least once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    CreateMany,
    Get,
    Update,
    UpdateStatus,
    Delete,
    List,
    ListByStatus,
    Search,
    Count,
    CountByStatus,
    Enqueue,
    EnqueueMany,
    ExecutionGet,
    ExecutionList,
    ListByTask,
    LatestForTask,
    Cancel,
    ExecutionCount,
    CountByTask,
}

const DECK: [(Op, usize); 20] = [
    (Op::Create, 2),
    (Op::CreateMany, 2),
    (Op::Get, 3),
    (Op::Update, 3),
    (Op::UpdateStatus, 3),
    (Op::Delete, 2),
    (Op::List, 1),
    (Op::ListByStatus, 1),
    (Op::Search, 1),
    (Op::Count, 1),
    (Op::CountByStatus, 1),
    (Op::Enqueue, 3),
    (Op::EnqueueMany, 3),
    (Op::ExecutionGet, 3),
    (Op::ExecutionList, 1),
    (Op::ListByTask, 2),
    (Op::LatestForTask, 2),
    (Op::Cancel, 3),
    (Op::ExecutionCount, 1),
    (Op::CountByTask, 2),
];

/// Whose id a step passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Whose {
    Own,
    Foreign,
    /// Never existed, or deleted.
    Missing,
}

/// The database as raw SQL reads it: the users (by email), each user's
/// tasks and executions in creation order (so a seed replays the same
/// choices), and each user's checksums.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    users: Vec<UserId>,
    emails: Vec<String>,
    tasks: Vec<Vec<TaskId>>,
    executions: Vec<Vec<ExecutionId>>,
    /// Per user: md5 of the users row, of their tasks, of their executions.
    sums: Vec<(String, Option<String>, Option<String>)>,
}

impl Snapshot {
    async fn read(client: &Client) -> Snapshot {
        let rows = client
            .query_typed(
                "SELECT u.id, u.email::text, md5(u::text), \
                        (SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) \
                         FROM tasks t WHERE t.user_id = u.id), \
                        (SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) \
                         FROM task_executions e WHERE e.user_id = u.id) \
                 FROM users u ORDER BY u.email",
                &[],
            )
            .await
            .unwrap();
        let users: Vec<UserId> = rows.iter().map(|r| r.get(0)).collect();
        let index: BTreeMap<UserId, usize> =
            users.iter().enumerate().map(|(i, u)| (*u, i)).collect();
        let mut tasks = vec![Vec::new(); users.len()];
        for row in client
            .query_typed(
                "SELECT id, user_id FROM tasks ORDER BY created_at, name, id",
                &[],
            )
            .await
            .unwrap()
        {
            tasks[index[&row.get::<_, UserId>(1)]].push(row.get(0));
        }
        let mut executions = vec![Vec::new(); users.len()];
        for row in client
            .query_typed(
                "SELECT e.id, e.user_id FROM task_executions e JOIN tasks t ON t.id = e.task_id \
                 ORDER BY t.created_at, t.name, t.id, e.created_at, e.id",
                &[],
            )
            .await
            .unwrap()
        {
            executions[index[&row.get::<_, UserId>(1)]].push(row.get(0));
        }
        Snapshot {
            emails: rows.iter().map(|r| r.get(1)).collect(),
            sums: rows
                .iter()
                .map(|r| (r.get(2), r.get(3), r.get(4)))
                .collect(),
            users,
            tasks,
            executions,
        }
    }

    fn foreign_tasks(&self, user: usize) -> Vec<TaskId> {
        (0..self.users.len())
            .filter(|v| *v != user)
            .flat_map(|v| self.tasks[v].iter().copied())
            .collect()
    }

    fn foreign_executions(&self, user: usize) -> Vec<ExecutionId> {
        (0..self.users.len())
            .filter(|v| *v != user)
            .flat_map(|v| self.executions[v].iter().copied())
            .collect()
    }
}

/// Where a run's calls go: the scoped view of a user, the unscoped
/// repositories to compare single rows with, and the connection the raw
/// SQL reads through; all over the pool, or all in one transaction.
struct Ctx<'a> {
    client: &'a Client,
    scoped: &'a dyn Fn(UserId) -> ScopedRepositories,
    tasks: PgTaskRepository,
    executions: PgExecutionRepository,
}

/// The steps taken so far; printed with the seed when the test fails.
struct Trail {
    seed: u64,
    run: &'static str,
    lines: VecDeque<String>,
}

impl Trail {
    fn log(&mut self, line: String) {
        if self.lines.len() == 30 {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\nrandomized tenant test ({}) failed: replay with VOIDRUNNER_TENANT_SEED={:#x} \
                 cargo test --all-features --test repositories tenants_random\n\
                 last steps (newest last):",
                self.run, self.seed
            );
            for line in &self.lines {
                eprintln!("  {line}");
            }
        }
    }
}

/// What a step did, for the checks after it.
#[derive(Debug, Default)]
struct Effect {
    /// The call may have changed the scope's user's rows (a write that
    /// succeeded); otherwise they are checked unchanged too.
    wrote: bool,
}

/// What a run did: calls per method, per kind of id, and how the calls
/// with the user's own ids ended. Asserted on at the end, so a run that
/// never reached some path does not pass unnoticed.
#[derive(Debug, Default)]
struct Stats {
    ops: BTreeMap<Op, u64>,
    ids: BTreeMap<Whose, u64>,
    own_writes: u64,
    refused_transitions: u64,
    /// The `NotFound` message of each method for a foreign or missing id,
    /// the id masked: both kinds must give the same.
    not_found: BTreeMap<Op, (Whose, String)>,
    /// The kinds of id each method answered `NotFound` for.
    not_found_for: BTreeSet<(Op, Whose)>,
}

#[track_caller]
fn ok<T>(what: &str, result: voidrunner_db::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: expected success, got {e:?}"))
}

/// Records and checks a `NotFound` for a foreign or missing id: the
/// message, with the ids the call was given masked, is the same for both.
#[track_caller]
fn not_found<T: Debug>(
    stats: &mut Stats,
    op: Op,
    whose: Whose,
    ids: &[String],
    result: voidrunner_db::Result<T>,
) {
    let err = match result {
        Err(err @ Error::NotFound { .. }) => err,
        other => panic!("{op:?} with a {whose:?} id: expected NotFound, got {other:?}"),
    };
    stats.not_found_for.insert((op, whose));
    let mut text = err.to_string();
    for id in ids {
        text = text.replace(id.as_str(), "<id>");
    }
    match stats.not_found.get(&op) {
        Some((seen, earlier)) if *earlier != text => {
            panic!(
                "{op:?}: NotFound for a {seen:?} id says `{earlier}`, for a {whose:?} id `{text}`"
            )
        }
        Some(_) => {}
        None => {
            stats.not_found.insert(op, (whose, text));
        }
    }
}

/// Walks every page of a list, pages of a random size; the items in order.
async fn walk<T, F, Fut>(rng: &mut Rng, what: &str, mut fetch: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = voidrunner_db::Result<Page<T>>>,
{
    let size = 1 + rng.below(8) as u32;
    let mut request = PageRequest::first(size);
    let mut items = Vec::new();
    for _ in 0..500 {
        let page = ok(what, fetch(request.clone()).await);
        assert!(
            page.items.len() <= size as usize,
            "{what}: page over {size}"
        );
        items.extend(page.items);
        match page.next_cursor {
            Some(cursor) => request = PageRequest::after(cursor, size),
            None => return items,
        }
    }
    panic!("{what}: more than 500 pages");
}

async fn ids<T: tokio_postgres::types::FromSqlOwned>(
    client: &Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Vec<T> {
    client
        .query_typed(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn scalar(client: &Client, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> i64 {
    client
        .query_typed_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The owner of execution `id`, read with raw SQL.
async fn execution_owner(client: &Client, id: ExecutionId) -> Option<UserId> {
    client
        .query_typed_opt(
            "SELECT user_id FROM task_executions WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// The status of task `id`, and whether it has an active (pending or
/// running) execution, read with raw SQL.
async fn task_state(client: &Client, id: TaskId) -> (TaskStatus, bool) {
    let row = client
        .query_typed_one(
            "SELECT t.status, EXISTS (SELECT 1 FROM task_executions e \
                                      WHERE e.task_id = t.id AND e.status IN ('pending', 'running')) \
             FROM tasks t WHERE t.id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Whether queueing the user's task `id` is refused (`InvalidTransition`):
/// it cannot go back to pending and has no active execution to return.
async fn enqueue_refused(client: &Client, id: TaskId) -> bool {
    let (status, active) = task_state(client, id).await;
    !active && !status.can_transition_to(TaskStatus::Pending)
}

async fn execution_status(client: &Client, id: ExecutionId) -> ExecutionStatus {
    client
        .query_typed_one(
            "SELECT status FROM task_executions WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .unwrap()
        .get(0)
}

const TASK_ORDER: &str = "ORDER BY priority DESC, created_at DESC, id DESC";
const EXECUTION_ORDER: &str = "ORDER BY created_at DESC, id DESC";
const KINDS: [&str; 10] = [
    "idle",
    "pending",
    "running",
    "completed",
    "failed",
    "timeout",
    "cancelled",
    "extra",
    "made",
    "updated",
];

struct Run<'a, 'c> {
    ctx: &'a Ctx<'c>,
    rng: Rng,
    stats: Stats,
    /// Ids of rows that were deleted: missing ids, as are new ones.
    gone_tasks: Vec<TaskId>,
    gone_executions: Vec<ExecutionId>,
    step: u64,
}

impl Run<'_, '_> {
    fn whose(&mut self) -> Whose {
        match self.rng.below(100) {
            0..50 => Whose::Foreign,
            50..65 => Whose::Missing,
            _ => Whose::Own,
        }
    }

    /// A task id of the kind drawn (a missing one when there is no row of
    /// that kind).
    fn task_id(&mut self, snap: &Snapshot, user: usize) -> (TaskId, Whose) {
        let whose = self.whose();
        let found = match whose {
            Whose::Own => self.rng.pick(&snap.tasks[user]).copied(),
            Whose::Foreign => self.rng.pick(&snap.foreign_tasks(user)).copied(),
            Whose::Missing => None,
        };
        let (id, whose) = match found {
            Some(id) => (id, whose),
            None if self.rng.percent(50) => match self.rng.pick(&self.gone_tasks) {
                Some(id) => (*id, Whose::Missing),
                None => (TaskId::new(), Whose::Missing),
            },
            None => (TaskId::new(), Whose::Missing),
        };
        *self.stats.ids.entry(whose).or_default() += 1;
        (id, whose)
    }

    fn execution_id(&mut self, snap: &Snapshot, user: usize) -> (ExecutionId, Whose) {
        let whose = self.whose();
        let found = match whose {
            Whose::Own => self.rng.pick(&snap.executions[user]).copied(),
            Whose::Foreign => self.rng.pick(&snap.foreign_executions(user)).copied(),
            Whose::Missing => None,
        };
        let (id, whose) = match found {
            Some(id) => (id, whose),
            None if self.rng.percent(50) => match self.rng.pick(&self.gone_executions) {
                Some(id) => (*id, Whose::Missing),
                None => (ExecutionId::new(), Whose::Missing),
            },
            None => (ExecutionId::new(), Whose::Missing),
        };
        *self.stats.ids.entry(whose).or_default() += 1;
        (id, whose)
    }

    fn new_task(&mut self, snap: &Snapshot, user: usize, name: String) -> NewTask {
        NewTask::new(snap.users[user], name, "print(1)")
            .priority(self.rng.below(11) as i32)
            .metadata(json!({ "kind": "made", "owner": snap.emails[user], "step": self.step }))
    }

    fn update(&mut self, snap: &Snapshot) -> TaskUpdate {
        let mut update = TaskUpdate::default();
        if self.rng.percent(50) {
            update.priority = Some(self.rng.below(11) as i32);
        }
        if self.rng.percent(30) {
            update.description = Some(self.rng.percent(50).then(|| format!("d{}", self.step)));
        }
        if self.rng.percent(30) {
            let owner = self.rng.pick(&snap.emails).unwrap().clone();
            update.metadata = Some(json!({ "kind": "updated", "owner": owner }));
        }
        if self.rng.percent(20) {
            update.timeout_seconds = Some(1 + self.rng.below(3600) as i32);
        }
        if self.rng.percent(20) {
            update.script_content = Some(format!("print({})", self.step));
        }
        update
    }

    /// One call of `op` for user `user` (index in `snap`), checked; what it
    /// did, and a line for the trail.
    async fn call(&mut self, snap: &Snapshot, user: usize, op: Op) -> (Effect, String) {
        let ctx = self.ctx;
        let client = ctx.client;
        let me = snap.users[user];
        let s = (ctx.scoped)(me);
        assert_eq!(s.tasks.user_id(), me);
        assert_eq!(s.executions.user_id(), me);
        let by_me: &[(&(dyn ToSql + Sync), Type)] = &[(&me, Type::UUID)];
        let mut effect = Effect::default();
        let line = match op {
            Op::Create => {
                if self.rng.percent(80) {
                    let new = self.new_task(snap, user, format!("s{}", self.step));
                    let task = ok("create", s.tasks.create(new).await);
                    assert_eq!(task.user_id, me);
                    assert_eq!(ok("unscoped get", ctx.tasks.get(task.id).await), task);
                    effect.wrote = true;
                    self.stats.own_writes += 1;
                    "create own".to_owned()
                } else {
                    let other =
                        (user + 1 + self.rng.below(snap.users.len() - 1)) % snap.users.len();
                    let new = self.new_task(snap, other, format!("s{}", self.step));
                    let err = s.tasks.create(new).await.unwrap_err();
                    assert!(err.is_validation(), "create for another user: {err:?}");
                    "create for another user".to_owned()
                }
            }
            Op::CreateMany => {
                let n = 1 + self.rng.below(3);
                let mut tasks: Vec<NewTask> = (0..n)
                    .map(|i| self.new_task(snap, user, format!("s{}-{i}", self.step)))
                    .collect();
                if self.rng.percent(25) {
                    let other =
                        (user + 1 + self.rng.below(snap.users.len() - 1)) % snap.users.len();
                    let at = self.rng.below(n + 1);
                    let planted = self.new_task(snap, other, format!("s{}-x", self.step));
                    tasks.insert(at, planted);
                    let err = s.tasks.create_many(tasks).await.unwrap_err();
                    assert!(
                        err.is_validation(),
                        "create_many with another user's: {err:?}"
                    );
                    format!("create_many {n} + another user's")
                } else {
                    let created = ok("create_many", s.tasks.create_many(tasks).await);
                    assert_eq!(created.len(), n);
                    assert!(created.iter().all(|t| t.user_id == me));
                    effect.wrote = true;
                    self.stats.own_writes += 1;
                    format!("create_many {n}")
                }
            }
            Op::Get => {
                let (id, whose) = self.task_id(snap, user);
                let result = s.tasks.get(id).await;
                if whose == Whose::Own {
                    let task = ok("get", result);
                    assert_eq!(task.user_id, me);
                    assert_eq!(ok("unscoped get", ctx.tasks.get(id).await), task);
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("get {whose:?}")
            }
            Op::Update => {
                let (id, whose) = self.task_id(snap, user);
                let update = self.update(snap);
                let result = s.tasks.update(id, update.clone()).await;
                if whose == Whose::Own {
                    let task = ok("update", result);
                    assert_eq!((task.id, task.user_id), (id, me));
                    assert_eq!(ok("unscoped get", ctx.tasks.get(id).await), task);
                    effect.wrote = true;
                    self.stats.own_writes += 1;
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("update {whose:?} {update:?}")
            }
            Op::UpdateStatus => {
                let (id, whose) = self.task_id(snap, user);
                let status = if self.rng.percent(50) {
                    TaskStatus::Pending
                } else {
                    TaskStatus::Cancelled
                };
                let from = match whose {
                    Whose::Own => Some(task_state(client, id).await.0),
                    _ => None,
                };
                let result = s.tasks.update_status(id, status).await;
                if let Some(from) = from {
                    match result {
                        Ok(task) if from.can_transition_to(status) => {
                            assert_eq!((task.id, task.user_id, task.status), (id, me, status));
                            effect.wrote = true;
                            self.stats.own_writes += 1;
                        }
                        Err(e) if e.is_invalid_transition() && !from.can_transition_to(status) => {
                            self.stats.refused_transitions += 1;
                        }
                        other => {
                            panic!("update_status {from:?} -> {status:?} of an own task: {other:?}")
                        }
                    }
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("update_status {whose:?} {status:?}")
            }
            Op::Delete => {
                let (id, whose) = self.task_id(snap, user);
                let result = s.tasks.delete(id).await;
                if whose == Whose::Own {
                    ok("delete", result);
                    assert!(ctx.tasks.get(id).await.unwrap_err().is_not_found());
                    effect.wrote = true;
                    self.stats.own_writes += 1;
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("delete {whose:?}")
            }
            Op::List => {
                let listed = walk(&mut self.rng, "list", |p| s.tasks.list(p)).await;
                assert!(listed.iter().all(|t| t.user_id == me));
                let listed: Vec<TaskId> = listed.iter().map(|t| t.id).collect();
                let sql = format!("SELECT id FROM tasks WHERE user_id = $1 {TASK_ORDER}");
                assert_eq!(listed, ids::<TaskId>(client, &sql, by_me).await, "list");
                format!("list ({})", listed.len())
            }
            Op::ListByStatus => {
                let status = *self.rng.pick(&TaskStatus::ALL).unwrap();
                let listed = walk(&mut self.rng, "list_by_status", |p| {
                    s.tasks.list_by_status(status, p)
                })
                .await;
                assert!(listed.iter().all(|t| t.user_id == me && t.status == status));
                let listed: Vec<TaskId> = listed.iter().map(|t| t.id).collect();
                let sql =
                    format!("SELECT id FROM tasks WHERE user_id = $1 AND status = $2 {TASK_ORDER}");
                let params: &[(&(dyn ToSql + Sync), Type)] =
                    &[(&me, Type::UUID), (&status.as_str(), Type::TEXT)];
                assert_eq!(
                    listed,
                    ids::<TaskId>(client, &sql, params).await,
                    "list_by_status"
                );
                format!("list_by_status {status:?} ({})", listed.len())
            }
            Op::Search => {
                let kind = *self.rng.pick(&KINDS).unwrap();
                let email = self.rng.pick(&snap.emails).unwrap().clone();
                let filter = match self.rng.below(3) {
                    0 => json!({ "kind": kind }),
                    1 => json!({ "owner": email }),
                    _ => json!({ "kind": kind, "owner": email }),
                };
                let found = walk(&mut self.rng, "search_by_metadata", |p| {
                    s.tasks.search_by_metadata(filter.clone(), p)
                })
                .await;
                assert!(found.iter().all(|t| t.user_id == me));
                let found: Vec<TaskId> = found.iter().map(|t| t.id).collect();
                let sql = format!(
                    "SELECT id FROM tasks WHERE user_id = $1 AND metadata @> $2 {TASK_ORDER}"
                );
                let params: &[(&(dyn ToSql + Sync), Type)] =
                    &[(&me, Type::UUID), (&filter, Type::JSONB)];
                assert_eq!(found, ids::<TaskId>(client, &sql, params).await, "search");
                format!("search {filter} ({})", found.len())
            }
            Op::Count => {
                let n = ok("count", s.tasks.count().await);
                let sql = "SELECT count(*) FROM tasks WHERE user_id = $1";
                assert_eq!(n, scalar(client, sql, by_me).await, "count");
                format!("count ({n})")
            }
            Op::CountByStatus => {
                let status = *self.rng.pick(&TaskStatus::ALL).unwrap();
                let n = ok("count_by_status", s.tasks.count_by_status(status).await);
                let sql = "SELECT count(*) FROM tasks WHERE user_id = $1 AND status = $2";
                let params: &[(&(dyn ToSql + Sync), Type)] =
                    &[(&me, Type::UUID), (&status.as_str(), Type::TEXT)];
                assert_eq!(n, scalar(client, sql, params).await, "count_by_status");
                format!("count_by_status {status:?} ({n})")
            }
            Op::Enqueue => {
                let (id, whose) = self.task_id(snap, user);
                let run_after = self.rng.percent(30).then(Timestamp::now);
                let refused = whose == Whose::Own && enqueue_refused(client, id).await;
                let result = s.executions.enqueue(id, run_after).await;
                if whose == Whose::Own {
                    match result {
                        Ok(e) if !refused => {
                            assert_eq!(e.task_id, id);
                            assert_eq!(execution_owner(client, e.id).await, Some(me));
                            effect.wrote = true;
                            self.stats.own_writes += 1;
                        }
                        Err(e) if e.is_invalid_transition() && refused => {
                            self.stats.refused_transitions += 1;
                        }
                        other => panic!("enqueue of an own task (refused: {refused}): {other:?}"),
                    }
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("enqueue {whose:?}")
            }
            Op::EnqueueMany => {
                let n = 1 + self.rng.below(3);
                let picked: Vec<(TaskId, Whose)> =
                    (0..n).map(|_| self.task_id(snap, user)).collect();
                let task_ids: Vec<TaskId> = picked.iter().map(|(id, _)| *id).collect();
                // The first task that fails decides, in input order:
                // another user's or a missing one is NotFound, one of the
                // user's that cannot be queued InvalidTransition.
                let mut fails = None;
                for (id, whose) in &picked {
                    if *whose != Whose::Own {
                        fails = Some(*whose);
                        break;
                    }
                    if enqueue_refused(client, *id).await {
                        fails = Some(Whose::Own);
                        break;
                    }
                }
                let result = s.executions.enqueue_many(task_ids.clone(), None).await;
                match fails {
                    None => {
                        let queued = ok("enqueue_many of own tasks", result);
                        assert_eq!(queued.len(), n);
                        for (e, id) in queued.iter().zip(&task_ids) {
                            assert_eq!(e.task_id, *id);
                            assert_eq!(execution_owner(client, e.id).await, Some(me));
                        }
                        effect.wrote = true;
                        self.stats.own_writes += 1;
                    }
                    Some(Whose::Own) => {
                        // All or nothing (checked by the user's checksum).
                        let err = result.unwrap_err();
                        assert!(err.is_invalid_transition(), "{err:?}");
                        self.stats.refused_transitions += 1;
                    }
                    Some(whose) => {
                        // All or nothing: the user's own tasks are not
                        // queued either (checked by the user's checksum).
                        let named: Vec<String> = task_ids.iter().map(ToString::to_string).collect();
                        not_found(&mut self.stats, op, whose, &named, result);
                    }
                }
                let kinds: Vec<Whose> = picked.iter().map(|(_, w)| *w).collect();
                format!("enqueue_many {kinds:?}")
            }
            Op::ExecutionGet => {
                let (id, whose) = self.execution_id(snap, user);
                let result = s.executions.get(id).await;
                if whose == Whose::Own {
                    let e = ok("execution get", result);
                    assert_eq!(ok("unscoped get", ctx.executions.get(id).await), e);
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("execution get {whose:?}")
            }
            Op::ExecutionList => {
                let listed = walk(&mut self.rng, "executions list", |p| s.executions.list(p)).await;
                let listed: Vec<ExecutionId> = listed.iter().map(|e| e.id).collect();
                let sql =
                    format!("SELECT id FROM task_executions WHERE user_id = $1 {EXECUTION_ORDER}");
                assert_eq!(
                    listed,
                    ids::<ExecutionId>(client, &sql, by_me).await,
                    "list"
                );
                format!("executions list ({})", listed.len())
            }
            Op::ListByTask => {
                let (id, whose) = self.task_id(snap, user);
                let listed = walk(&mut self.rng, "list_by_task", |p| {
                    s.executions.list_by_task(id, p)
                })
                .await;
                assert!(listed.iter().all(|e| e.task_id == id));
                let listed: Vec<ExecutionId> = listed.iter().map(|e| e.id).collect();
                let sql = format!(
                    "SELECT id FROM task_executions WHERE task_id = $1 AND user_id = $2 \
                     {EXECUTION_ORDER}"
                );
                let params: &[(&(dyn ToSql + Sync), Type)] =
                    &[(&id, Type::UUID), (&me, Type::UUID)];
                let expected = ids::<ExecutionId>(client, &sql, params).await;
                assert_eq!(listed, expected, "list_by_task");
                if whose != Whose::Own {
                    assert!(listed.is_empty());
                }
                format!("list_by_task {whose:?} ({})", listed.len())
            }
            Op::LatestForTask => {
                let (id, whose) = self.task_id(snap, user);
                let latest = ok("latest_for_task", s.executions.latest_for_task(id).await);
                let sql = format!(
                    "SELECT id FROM task_executions WHERE task_id = $1 AND user_id = $2 \
                     {EXECUTION_ORDER} LIMIT 1"
                );
                let params: &[(&(dyn ToSql + Sync), Type)] =
                    &[(&id, Type::UUID), (&me, Type::UUID)];
                let expected = ids::<ExecutionId>(client, &sql, params).await;
                assert_eq!(
                    latest.as_ref().map(|e| e.id),
                    expected.first().copied(),
                    "latest_for_task"
                );
                if whose != Whose::Own {
                    assert_eq!(latest, None);
                }
                format!("latest_for_task {whose:?}")
            }
            Op::Cancel => {
                let (id, whose) = self.execution_id(snap, user);
                let from = match whose {
                    Whose::Own => Some(execution_status(client, id).await),
                    _ => None,
                };
                let result = s.executions.cancel(id).await;
                if let Some(from) = from {
                    let allowed = from.can_transition_to(ExecutionStatus::Cancelled);
                    match result {
                        Ok(e) if allowed => {
                            assert_eq!((e.id, e.status), (id, ExecutionStatus::Cancelled));
                            effect.wrote = true;
                            self.stats.own_writes += 1;
                        }
                        Err(e) if e.is_invalid_transition() && !allowed => {
                            self.stats.refused_transitions += 1;
                        }
                        other => panic!("cancel of an own {from:?} execution: {other:?}"),
                    }
                } else {
                    not_found(&mut self.stats, op, whose, &[id.to_string()], result);
                }
                format!("cancel {whose:?}")
            }
            Op::ExecutionCount => {
                let n = ok("executions count", s.executions.count().await);
                let sql = "SELECT count(*) FROM task_executions WHERE user_id = $1";
                assert_eq!(n, scalar(client, sql, by_me).await, "executions count");
                format!("executions count ({n})")
            }
            Op::CountByTask => {
                let (id, whose) = self.task_id(snap, user);
                let n = ok("count_by_task", s.executions.count_by_task(id).await);
                let sql =
                    "SELECT count(*) FROM task_executions WHERE task_id = $1 AND user_id = $2";
                let params: &[(&(dyn ToSql + Sync), Type)] =
                    &[(&id, Type::UUID), (&me, Type::UUID)];
                assert_eq!(n, scalar(client, sql, params).await, "count_by_task");
                if whose != Whose::Own {
                    assert_eq!(n, 0);
                }
                format!("count_by_task {whose:?} ({n})")
            }
        };
        (effect, line)
    }
}

/// `steps` random calls through `ctx`, each checked, then the whole run.
async fn random_calls(ctx: &Ctx<'_>, seed: u64, steps: u64, run: &'static str) {
    let mut trail = Trail {
        seed,
        run,
        lines: VecDeque::new(),
    };
    let started = std::time::Instant::now();
    let mut r = Run {
        ctx,
        rng: Rng(seed),
        stats: Stats::default(),
        gone_tasks: Vec::new(),
        gone_executions: Vec::new(),
        step: 0,
    };
    let deck: Vec<Op> = DECK
        .iter()
        .flat_map(|(op, n)| std::iter::repeat_n(*op, *n))
        .collect();
    let mut hand: Vec<Op> = Vec::new();
    let mut before = Snapshot::read(ctx.client).await;
    for step in 0..steps {
        r.step = step;
        if hand.is_empty() {
            hand = deck.clone();
        }
        let op = hand.swap_remove(r.rng.below(hand.len()));
        let user = r.rng.below(before.users.len());
        *r.stats.ops.entry(op).or_default() += 1;
        trail.log(format!("#{step} {}: {op:?}", before.emails[user]));
        let (effect, line) = r.call(&before, user, op).await;
        trail.log(format!("#{step} {}: {line}", before.emails[user]));

        let after = Snapshot::read(ctx.client).await;
        assert_eq!(after.users, before.users, "users came or went");
        for v in 0..before.users.len() {
            let (was, is) = (&before.sums[v], &after.sums[v]);
            assert_eq!(was.0, is.0, "the users row of {} changed", before.emails[v]);
            if v != user || !effect.wrote {
                assert_eq!(
                    was, is,
                    "{}'s rows changed by {line} for {}",
                    before.emails[v], before.emails[user]
                );
            }
        }
        for id in before.tasks.iter().flatten() {
            if !after.tasks.iter().flatten().any(|t| t == id) {
                r.gone_tasks.push(*id);
            }
        }
        for id in before.executions.iter().flatten() {
            if !after.executions.iter().flatten().any(|e| e == id) {
                r.gone_executions.push(*id);
            }
        }
        before = after;
    }

    let stats = &r.stats;
    println!(
        "randomized tenant test ({run}): seed {seed:#x}, {steps} steps in {:.1?}; ids {:?}, \
         {} own writes, {} refused transitions; calls {:?}",
        started.elapsed(),
        stats.ids,
        stats.own_writes,
        stats.refused_transitions,
        stats.ops
    );
    let ops: BTreeSet<Op> = stats.ops.keys().copied().collect();
    assert_eq!(
        ops.len(),
        DECK.len(),
        "methods never called: {:?}",
        stats.ops
    );
    for whose in [Whose::Own, Whose::Foreign, Whose::Missing] {
        assert!(
            stats.ids.get(&whose).is_some_and(|n| *n > 0),
            "no {whose:?} id"
        );
    }
    assert!(stats.own_writes > 0, "no write of the user's own rows");
    // Eight methods answer NotFound; most of them met both kinds of id.
    let both = stats
        .not_found
        .keys()
        .filter(|op| {
            stats.not_found_for.contains(&(**op, Whose::Foreign))
                && stats.not_found_for.contains(&(**op, Whose::Missing))
        })
        .count();
    assert!(
        both >= 5,
        "too few methods answered NotFound for both foreign and missing ids: {:?}",
        stats.not_found_for
    );
}

/// Six users with rows in every state (`tenants::owned`: a task without
/// executions, and one with each status of an execution), some with more
/// tasks and a retried one (two executions), and one user with nothing.
async fn users(r: &Repos, rng: &mut Rng) {
    let mut all = Vec::new();
    for k in 0..6 {
        all.push(owned(r, &format!("u{k}@example.com"), &format!("w{k}")).await);
    }
    r.user("u6-empty@example.com").await;
    // After every user's claims, so they do not take each other's work.
    for o in &all {
        for i in 0..rng.below(4) {
            let new = NewTask::new(o.user.id, format!("extra{i}"), "print(2)")
                .priority(rng.below(11) as i32)
                .metadata(json!({ "kind": "extra", "owner": o.user.email }));
            let task = r.tasks.create(new).await.unwrap();
            if rng.percent(50) {
                r.queue.enqueue(task.id, None).await.unwrap();
            }
        }
        if rng.percent(50) {
            let failed = o.tasks.iter().find(|t| t.name == "failed").unwrap();
            r.queue.enqueue(failed.id, None).await.unwrap();
        }
    }
}

fn seed() -> u64 {
    env_u64("VOIDRUNNER_TENANT_SEED").unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0)
}

fn steps(default: u64) -> u64 {
    env_u64("VOIDRUNNER_TENANT_STEPS").unwrap_or(default)
}

#[tokio::test]
async fn random_scoped_calls_never_cross_users_pooled() {
    let seed = seed();
    println!("randomized tenant test (pooled): seed {seed:#x}");
    let r = repos().await;
    users(&r, &mut Rng(seed ^ 0x5eed)).await;
    let raw = r.db.raw_client().await.unwrap();
    let db = r.db.db().clone();
    let scoped = move |user| db.scoped(user);
    let ctx = Ctx {
        client: &raw,
        scoped: &scoped,
        tasks: r.tasks.clone(),
        executions: r.executions.clone(),
    };
    random_calls(&ctx, seed, steps(POOLED_STEPS), "pooled").await;
}

/// The pooled run with the scoped calls' pool connecting as a LOGIN member
/// of `voidrunner_app`, which row-level security binds; the raw SQL and the
/// unscoped reads it is compared with stay the superuser's.
#[tokio::test]
async fn random_scoped_calls_never_cross_users_as_the_application_role() {
    let seed = seed();
    println!("randomized tenant test (application role): seed {seed:#x}");
    let r = repos().await;
    users(&r, &mut Rng(seed ^ 0x5eed)).await;
    let role = AppRole::create(&r.db).await;
    let app = role.database().await;
    let raw = r.db.raw_client().await.unwrap();
    let db = app.db().clone();
    let scoped = move |user| db.scoped(user);
    let ctx = Ctx {
        client: &raw,
        scoped: &scoped,
        tasks: r.tasks.clone(),
        executions: r.executions.clone(),
    };
    random_calls(&ctx, seed, steps(POOLED_STEPS), "application role").await;
}

#[tokio::test]
async fn random_scoped_calls_never_cross_users_in_a_transaction() {
    let seed = seed();
    println!("randomized tenant test (transaction): seed {seed:#x}");
    let r = repos().await;
    users(&r, &mut Rng(seed ^ 0x5eed)).await;
    r.db.db()
        .transaction(|tx| async move {
            let scoped = |user| tx.scoped(user);
            let ctx = Ctx {
                client: tx.client()?,
                scoped: &scoped,
                tasks: tx.tasks(),
                executions: tx.executions(),
            };
            random_calls(&ctx, seed, steps(TRANSACTION_STEPS), "transaction").await;
            Ok(())
        })
        .await
        .unwrap();
}
