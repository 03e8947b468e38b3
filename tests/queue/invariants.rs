//! The queue's invariants under random and concurrent use (issue #7).
//!
//! - [`random_operations_match_the_model`] drives the queue, the task
//!   status API and the deletes from a seeded PRNG over a handful of tasks,
//!   predicts the outcome of every call with a small in-memory model, and
//!   after every step checks the database against the model and against the
//!   queue's invariants (raw SQL).
//! - [`mixed_load_never_deadlocks`] runs the same operations from eight
//!   workers while two more tokio tasks delete tasks and users, all on the same
//!   few rows, and fails on any deadlock or any error outside each call's
//!   contract.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use voidrunner_db::{
    Database, Error, ExecutionId, ExecutionQueue, ExecutionRepository, ExecutionStatus,
    LeaseLostReason, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue,
    PgExecutionRepository, PgTaskRepository, PgUserRepository, RescuePolicy, Result, TaskExecution,
    TaskId, TaskRepository, TaskStatus, Timestamp, UserId, UserRepository,
};

use crate::{Fixture, LEASE, fixture, fixture_with};

/// Seed of both tests unless `VOIDRUNNER_MODEL_SEED` is set.
const DEFAULT_SEED: u64 = 0x7e57_0007;
/// Steps of the model test unless `VOIDRUNNER_MODEL_STEPS` is set.
const DEFAULT_STEPS: u64 = 400;
/// Length of the deadlock test unless `VOIDRUNNER_DEADLOCK_SECS` is set.
const DEFAULT_DEADLOCK_SECS: u64 = 20;

/// Leases of the model test: longer than any run, so a lease only expires
/// when the test expires it by SQL.
const MODEL_LEASE: Duration = Duration::from_secs(3600);
const WORKERS: [&str; 2] = ["w1", "w2"];
/// Live tasks the model test keeps.
const TASKS: usize = 5;
/// Deleted tasks and executions the model test remembers, to call with.
const GONE: usize = 12;

/// Every invariant of the queue that holds between calls, as one statement
/// returning a line per violation.
const INVARIANTS_SQL: &str = "\
    SELECT 'task ' || task_id || ' has ' || count(*) || ' active executions' \
    FROM task_executions WHERE status IN ('pending', 'running') \
    GROUP BY task_id HAVING count(*) > 1 \
    UNION ALL \
    SELECT 'task ' || t.id || ' is ' || t.status || ' but its execution ' || e.id \
           || ' is ' || e.status \
    FROM tasks t JOIN task_executions e ON e.task_id = t.id \
    WHERE e.status IN ('pending', 'running') AND t.status::text <> e.status::text \
    UNION ALL \
    SELECT 'running task ' || t.id || ' has ' || r.n || ' running executions' \
    FROM tasks t CROSS JOIN LATERAL ( \
      SELECT count(*) AS n FROM task_executions e \
      WHERE e.task_id = t.id AND e.status = 'running') r \
    WHERE t.status = 'running' AND r.n <> 1 \
    UNION ALL \
    SELECT 'running execution ' || id || ' lacks a lease, a worker or a start time' \
    FROM task_executions WHERE status = 'running' \
      AND (lease_expires_at IS NULL OR worker_id IS NULL OR started_at IS NULL) \
    UNION ALL \
    SELECT 'ended execution ' || id || ' has no completed_at' FROM task_executions \
    WHERE status IN ('completed', 'failed', 'timeout', 'cancelled') AND completed_at IS NULL \
    UNION ALL \
    SELECT 'execution ' || e.id || ' of missing task ' || e.task_id FROM task_executions e \
    WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.task_id) \
    UNION ALL \
    SELECT 'task ' || t.id || ' of missing user ' || t.user_id FROM tasks t \
    WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id)";

async fn invariant_violations(db: &Database) -> Vec<String> {
    // Unnamed: runs through a transaction pooler too.
    db.client()
        .await
        .unwrap()
        .query_typed(INVARIANTS_SQL, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
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

/// SplitMix64: tiny, and good enough to pick operations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` > 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn outcome(&mut self) -> Outcome {
        match self.below(3) {
            0 => Outcome::completed(0),
            1 => Outcome::failed(1),
            _ => Outcome::timed_out(),
        }
    }
}

fn task_status_of(status: ExecutionStatus) -> TaskStatus {
    match status {
        ExecutionStatus::Pending => TaskStatus::Pending,
        ExecutionStatus::Running => TaskStatus::Running,
        ExecutionStatus::Completed => TaskStatus::Completed,
        ExecutionStatus::Failed => TaskStatus::Failed,
        ExecutionStatus::Timeout => TaskStatus::Timeout,
        ExecutionStatus::Cancelled => TaskStatus::Cancelled,
    }
}

fn is_active(status: ExecutionStatus) -> bool {
    matches!(status, ExecutionStatus::Pending | ExecutionStatus::Running)
}

// ---------------------------------------------------------------------------
// The model test
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ModelTask {
    id: TaskId,
    user: UserId,
    status: TaskStatus,
    priority: i32,
}

#[derive(Debug, Clone)]
struct ModelExecution {
    id: ExecutionId,
    task: TaskId,
    status: ExecutionStatus,
    worker: Option<String>,
    attempt: i32,
    /// `lease_expires_at` is set.
    leased: bool,
    /// The test expired the lease by SQL (meaningful while running).
    expired: bool,
    priority: i32,
    run_after: Timestamp,
}

/// What the database must hold, kept in creation order so a seed replays
/// the same choices.
#[derive(Debug, Default)]
struct Model {
    users: Vec<UserId>,
    tasks: Vec<ModelTask>,
    executions: Vec<ModelExecution>,
    gone_tasks: Vec<TaskId>,
    gone_executions: Vec<ExecutionId>,
    gone_users: Vec<UserId>,
    /// Every execution ever claimed, cancelled, or ended by its worker.
    claimed: HashSet<ExecutionId>,
    cancelled: HashSet<ExecutionId>,
    reported: HashSet<ExecutionId>,
    /// Executions the rescuer timed out, and the retries it queued.
    rescued: usize,
    retried: usize,
    /// Short names for logs: U1, T1, E1…
    names: HashMap<uuid::Uuid, String>,
    created: usize,
}

/// A row to call with: live in the model, or deleted.
#[derive(Debug, Clone, Copy)]
enum Target<T> {
    Live(T),
    Gone(T),
}

impl<T: Copy> Target<T> {
    fn id(self) -> T {
        match self {
            Target::Live(id) | Target::Gone(id) => id,
        }
    }
}

/// The outcome the model predicts for an enqueue of one task.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Enqueue {
    Existing(ExecutionId),
    New,
    NotFound,
    Invalid(TaskStatus),
}

impl Model {
    fn name(&mut self, prefix: char, id: uuid::Uuid) -> String {
        let next = self.names.len() + 1;
        self.names
            .entry(id)
            .or_insert_with(|| format!("{prefix}{next}"))
            .clone()
    }

    fn t(&self, id: TaskId) -> String {
        self.names
            .get(&id.as_uuid())
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn e(&self, id: ExecutionId) -> String {
        self.names
            .get(&id.as_uuid())
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn es(&self, ids: &[ExecutionId]) -> Vec<String> {
        ids.iter().map(|id| self.e(*id)).collect()
    }

    fn want(&self, want: Enqueue) -> String {
        match want {
            Enqueue::Existing(id) => format!("existing {}", self.e(id)),
            Enqueue::New => "new".to_owned(),
            Enqueue::NotFound => "not found".to_owned(),
            Enqueue::Invalid(from) => format!("invalid from {from}"),
        }
    }

    fn task(&self, id: TaskId) -> Option<&ModelTask> {
        self.tasks.iter().find(|t| t.id == id)
    }

    fn task_mut(&mut self, id: TaskId) -> &mut ModelTask {
        self.tasks.iter_mut().find(|t| t.id == id).unwrap()
    }

    fn execution(&self, id: ExecutionId) -> Option<&ModelExecution> {
        self.executions.iter().find(|e| e.id == id)
    }

    fn execution_mut(&mut self, id: ExecutionId) -> &mut ModelExecution {
        self.executions.iter_mut().find(|e| e.id == id).unwrap()
    }

    fn active_of(&self, task: TaskId) -> Option<&ModelExecution> {
        self.executions
            .iter()
            .find(|e| e.task == task && is_active(e.status))
    }

    fn pick_task(&self, rng: &mut Rng) -> Target<TaskId> {
        if !self.gone_tasks.is_empty() && rng.chance(8) {
            Target::Gone(rng.pick(&self.gone_tasks))
        } else {
            Target::Live(self.tasks[rng.below(self.tasks.len())].id)
        }
    }

    /// An execution to call with, mostly running ones when `running`.
    fn pick_execution(&self, rng: &mut Rng, running: bool) -> Option<Target<ExecutionId>> {
        if !self.gone_executions.is_empty() && rng.chance(8) {
            return Some(Target::Gone(rng.pick(&self.gone_executions)));
        }
        let wanted: Vec<ExecutionId> = self
            .executions
            .iter()
            .filter(|e| {
                if running {
                    e.status == ExecutionStatus::Running
                } else {
                    is_active(e.status)
                }
            })
            .map(|e| e.id)
            .collect();
        if !wanted.is_empty() && rng.chance(70) {
            return Some(Target::Live(rng.pick(&wanted)));
        }
        if self.executions.is_empty() {
            return None;
        }
        Some(Target::Live(
            self.executions[rng.below(self.executions.len())].id,
        ))
    }

    fn enqueue_expectation(&self, task: TaskId) -> Enqueue {
        let Some(t) = self.task(task) else {
            return Enqueue::NotFound;
        };
        if let Some(active) = self.active_of(task) {
            return Enqueue::Existing(active.id);
        }
        if t.status.can_transition_to(TaskStatus::Pending) {
            Enqueue::New
        } else {
            Enqueue::Invalid(t.status)
        }
    }

    fn add_execution(&mut self, e: &TaskExecution) {
        self.name('E', e.id.as_uuid());
        self.executions.push(ModelExecution {
            id: e.id,
            task: e.task_id,
            status: e.status,
            worker: e.worker_id.clone(),
            attempt: e.attempt,
            leased: e.lease_expires_at.is_some(),
            expired: false,
            priority: e.priority,
            run_after: e.run_after,
        });
    }

    /// An execution ended by its worker or by hand: the lease is cleared and
    /// the task follows.
    fn end_execution(&mut self, id: ExecutionId, to: ExecutionStatus) {
        let e = self.execution_mut(id);
        e.status = to;
        e.leased = false;
        e.expired = false;
        let task = e.task;
        if to == ExecutionStatus::Cancelled {
            self.cancelled.insert(id);
        }
        let t = self.task_mut(task);
        match t.status {
            TaskStatus::Pending | TaskStatus::Running if to == ExecutionStatus::Cancelled => {
                t.status = TaskStatus::Cancelled;
            }
            TaskStatus::Running => t.status = task_status_of(to),
            _ => {}
        }
    }

    fn cancel_task(&mut self, id: TaskId) {
        self.task_mut(id).status = TaskStatus::Cancelled;
        if let Some(active) = self.active_of(id).map(|e| e.id) {
            let e = self.execution_mut(active);
            e.status = ExecutionStatus::Cancelled;
            e.leased = false;
            e.expired = false;
            self.cancelled.insert(active);
        }
    }

    fn remove_task(&mut self, id: TaskId) {
        self.tasks.retain(|t| t.id != id);
        self.gone_tasks.push(id);
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.executions)
            .into_iter()
            .partition(|e| e.task == id);
        self.executions = kept;
        self.gone_executions.extend(gone.iter().map(|e| e.id));
        if self.gone_tasks.len() > GONE {
            self.gone_tasks.remove(0);
        }
        while self.gone_executions.len() > GONE {
            self.gone_executions.remove(0);
        }
    }

    /// The reason a worker's heartbeat or completion must be refused with,
    /// or `None` when the worker owns the running execution.
    fn lease_refusal(&self, id: ExecutionId, worker: &str) -> Option<LeaseLostReason> {
        let e = self.execution(id).unwrap();
        let owner = e.worker.as_deref() == Some(worker);
        if e.status == ExecutionStatus::Running && owner {
            return None;
        }
        let reason = match e.status {
            ExecutionStatus::Cancelled => return Some(LeaseLostReason::Cancelled),
            // The rescuer keeps the expired lease; every other end clears it.
            ExecutionStatus::Timeout if e.leased => LeaseLostReason::Expired,
            s if s.is_terminal() => LeaseLostReason::Finished,
            _ => LeaseLostReason::NotOwner,
        };
        Some(if owner {
            reason
        } else {
            LeaseLostReason::NotOwner
        })
    }
}

/// The steps taken so far; printed with the seed when the test fails.
struct Trail {
    seed: u64,
    steps: u64,
    step: u64,
    lines: VecDeque<String>,
}

impl Trail {
    fn log(&mut self, line: String) {
        if self.lines.len() == 40 {
            self.lines.pop_front();
        }
        self.lines.push_back(format!("#{} {line}", self.step));
    }

    fn last(&mut self, suffix: &str) {
        if let Some(line) = self.lines.back_mut() {
            line.push_str(suffix);
        }
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\nmodel test failed: replay with VOIDRUNNER_MODEL_SEED={:#x} \
                 VOIDRUNNER_MODEL_STEPS={} cargo test --test queue invariants -- --nocapture\n\
                 last steps (newest last):",
                self.seed, self.steps
            );
            for line in &self.lines {
                eprintln!("  {line}");
            }
        }
    }
}

fn summary<T: Debug>(result: &Result<T>) -> String {
    match result {
        Ok(_) => " -> ok".to_owned(),
        Err(e) => format!(" -> {e}"),
    }
}

#[track_caller]
fn expect_ok<T: Debug>(op: &str, result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{op}: expected success, got {e:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: Debug>(op: &str, result: Result<T>) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "{op}: expected NotFound, got {result:?}"
    );
}

#[track_caller]
fn expect_invalid<T: Debug>(op: &str, result: Result<T>, from: &str) {
    match &result {
        Err(Error::InvalidTransition { from: actual, .. }) if *actual == from => {}
        _ => panic!("{op}: expected InvalidTransition from {from}, got {result:?}"),
    }
}

#[track_caller]
fn expect_validation<T: Debug>(op: &str, result: Result<T>) {
    assert!(
        matches!(result, Err(Error::Validation { .. })),
        "{op}: expected Validation, got {result:?}"
    );
}

#[track_caller]
fn expect_lease_lost<T: Debug>(
    op: &str,
    result: Result<T>,
    id: ExecutionId,
    reason: LeaseLostReason,
) {
    match &result {
        Err(Error::LeaseLost {
            execution,
            reason: actual,
        }) if *execution == id && *actual == reason => {}
        _ => panic!("{op}: expected LeaseLost({reason:?}), got {result:?}"),
    }
}

/// Random operations against the model; the database is checked after
/// every step. The default run is a few hundred steps; the long run is
///
/// ```text
/// VOIDRUNNER_MODEL_STEPS=10000 cargo test --test queue invariants -- --nocapture
/// ```
///
/// and `VOIDRUNNER_MODEL_SEED` (decimal or `0x…`) picks another sequence.
/// A failure prints the seed and the last steps. Replays take the same
/// choices, except where two executions queued by one `enqueue_many` with
/// the same priority tie and the claim order falls back to their UUIDs,
/// which differ from run to run.
#[tokio::test]
async fn random_operations_match_the_model() {
    let seed = env_u64("VOIDRUNNER_MODEL_SEED").unwrap_or(DEFAULT_SEED);
    let steps = env_u64("VOIDRUNNER_MODEL_STEPS").unwrap_or(DEFAULT_STEPS);
    let mut trail = Trail {
        seed,
        steps,
        step: 0,
        lines: VecDeque::new(),
    };
    let started = std::time::Instant::now();
    let mut f = fixture().await;
    // The model predicts each claim's rows in the FIFO order across all
    // users (priority, then age): under the fair pass
    // (`VOIDRUNNER_TEST_CLAIM_ORDER=fair`) claims rotate between its users
    // and take other rows by design, so this test keeps the FIFO claim.
    f.queue = voidrunner_db::PgExecutionQueue::new(f.db.db().clone());
    let mut rng = Rng(seed);
    let mut m = Model::default();
    m.name('U', f.user.id.as_uuid());
    m.users.push(f.user.id);
    let second = new_user(&f, &mut m).await;
    m.users.push(second);
    refill(&f, &mut m, &mut rng).await;
    check_database(&f, &m).await;

    let mut ops: BTreeMap<&'static str, u64> = BTreeMap::new();
    for step in 0..steps {
        trail.step = step;
        let op = run_step(&f, &mut m, &mut rng, &mut trail).await;
        *ops.entry(op).or_default() += 1;
        check_database(&f, &m).await;
    }
    println!(
        "model test: seed {seed:#x}, {steps} steps in {:.1?}; {} executions claimed, \
         {} cancelled, {} reported by workers, {} rescued ({} retried); operations {ops:?}",
        started.elapsed(),
        m.claimed.len(),
        m.cancelled.len(),
        m.reported.len(),
        m.rescued,
        m.retried,
    );
    // Not vacuous: the default run reaches every kind of end.
    if steps >= DEFAULT_STEPS {
        assert!(m.claimed.len() > 10 && m.cancelled.len() > 5 && m.reported.len() > 5);
        assert!(m.rescued > 0 && m.retried > 0);
    }
}

async fn new_user(f: &Fixture, m: &mut Model) -> UserId {
    m.created += 1;
    let user = f
        .users
        .create(NewUser::new(
            format!("model-{}@example.com", m.created),
            PasswordHash::new("h"),
        ))
        .await
        .unwrap();
    m.name('U', user.id.as_uuid());
    user.id
}

/// Keeps [`TASKS`] tasks alive.
async fn refill(f: &Fixture, m: &mut Model, rng: &mut Rng) {
    while m.tasks.len() < TASKS {
        m.created += 1;
        let user = rng.pick(&m.users);
        let priority = rng.below(3) as i32;
        let task = f
            .tasks
            .create(
                NewTask::new(user, format!("model-{}", m.created), "print(1)").priority(priority),
            )
            .await
            .unwrap();
        assert_eq!(task.status, TaskStatus::Pending);
        m.name('T', task.id.as_uuid());
        m.tasks.push(ModelTask {
            id: task.id,
            user,
            status: task.status,
            priority,
        });
    }
}

/// One random operation; returns its name.
async fn run_step(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) -> &'static str {
    match rng.below(100) {
        0..14 => {
            step_enqueue(f, m, rng, trail).await;
            "enqueue"
        }
        14..21 => {
            step_enqueue_many(f, m, rng, trail).await;
            "enqueue_many"
        }
        21..35 => {
            step_claim(f, m, rng, trail).await;
            "claim"
        }
        35..42 => {
            step_heartbeat(f, m, rng, trail).await;
            "heartbeat"
        }
        42..55 => {
            step_complete(f, m, rng, trail).await;
            "complete"
        }
        55..61 => {
            step_cancel(f, m, rng, trail).await;
            "cancel"
        }
        61..66 => {
            step_execution_status(f, m, rng, trail).await;
            "execution_status"
        }
        66..72 => {
            step_cancel_task(f, m, rng, trail).await;
            "cancel_task"
        }
        72..78 => {
            step_retry_task(f, m, rng, trail).await;
            "retry_task"
        }
        78..79 => {
            step_task_status_by_hand(f, m, rng, trail).await;
            "task_status_refused"
        }
        79..88 => {
            step_expire(f, m, rng, trail).await;
            "expire"
        }
        88..94 => {
            step_rescue(f, m, rng, trail).await;
            "rescue"
        }
        94..99 => {
            step_delete_task(f, m, rng, trail).await;
            "delete_task"
        }
        _ => {
            step_delete_user(f, m, rng, trail).await;
            "delete_user"
        }
    }
}

async fn step_enqueue(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let task = m.pick_task(rng).id();
    let want = m.enqueue_expectation(task);
    trail.log(format!("enqueue {} (expect {})", m.t(task), m.want(want)));
    let got = f.queue.enqueue(task, None).await;
    trail.last(&summary(&got));
    match want {
        Enqueue::NotFound => expect_not_found("enqueue", got),
        Enqueue::Invalid(from) => expect_invalid("enqueue", got, from.as_str()),
        Enqueue::Existing(id) => {
            let got = expect_ok("enqueue", got);
            assert_eq!(
                m.e(got.id),
                m.e(id),
                "enqueue of a task with an active execution returns it"
            );
            assert_eq!(got.status, m.execution(id).unwrap().status);
        }
        Enqueue::New => {
            let got = expect_ok("enqueue", got);
            check_new_execution(m, &got, task);
            m.add_execution(&got);
            m.task_mut(task).status = TaskStatus::Pending;
            trail.last(&format!(" {}", m.e(got.id)));
        }
    }
}

#[track_caller]
fn check_new_execution(m: &Model, e: &TaskExecution, task: TaskId) {
    assert!(
        m.execution(e.id).is_none(),
        "a new execution reused the id of {}",
        m.e(e.id)
    );
    assert_eq!(e.task_id, task);
    assert_eq!(e.status, ExecutionStatus::Pending);
    assert_eq!(e.priority, m.task(task).unwrap().priority);
    assert_eq!(
        (e.attempt, e.worker_id.as_deref(), e.lease_expires_at),
        (0, None, None)
    );
}

async fn step_enqueue_many(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let n = 1 + rng.below(3);
    let ids: Vec<TaskId> = (0..n).map(|_| m.pick_task(rng).id()).collect();
    let wants: Vec<Enqueue> = ids.iter().map(|id| m.enqueue_expectation(*id)).collect();
    let names: Vec<String> = ids.iter().map(|id| m.t(*id)).collect();
    let expect: Vec<String> = wants.iter().map(|w| m.want(*w)).collect();
    trail.log(format!("enqueue_many {names:?} (expect {expect:?})"));
    let got = f.queue.enqueue_many(ids.clone(), None).await;
    trail.last(&summary(&got));
    // The first task that cannot be queued, in input order, names the error
    // and nothing is queued.
    if let Some((i, bad)) = wants
        .iter()
        .enumerate()
        .find(|(_, w)| matches!(w, Enqueue::NotFound | Enqueue::Invalid(_)))
    {
        match bad {
            Enqueue::NotFound => match &got {
                Err(Error::NotFound { key, .. }) if *key == ids[i].to_string() => {}
                _ => panic!(
                    "enqueue_many: expected NotFound for {}, got {got:?}",
                    names[i]
                ),
            },
            Enqueue::Invalid(from) => expect_invalid("enqueue_many", got, from.as_str()),
            _ => unreachable!(),
        }
        return;
    }
    let got = expect_ok("enqueue_many", got);
    assert_eq!(got.len(), ids.len(), "one execution per requested task");
    let mut queued: HashMap<TaskId, ExecutionId> = HashMap::new();
    for ((task, want), e) in ids.iter().zip(&wants).zip(&got) {
        assert_eq!(e.task_id, *task, "executions come back in input order");
        match want {
            Enqueue::Existing(id) => assert_eq!(m.e(e.id), m.e(*id)),
            Enqueue::New => match queued.get(task) {
                Some(first) => assert_eq!(e.id, *first, "a task named twice is queued once"),
                None => {
                    check_new_execution(m, e, *task);
                    queued.insert(*task, e.id);
                    m.add_execution(e);
                    m.task_mut(*task).status = TaskStatus::Pending;
                }
            },
            _ => unreachable!(),
        }
    }
    let names: Vec<String> = got.iter().map(|e| m.e(e.id)).collect();
    trail.last(&format!(" {names:?}"));
}

async fn step_claim(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let worker = rng.pick(&WORKERS);
    let n = 1 + rng.below(3);
    // Highest priority, then oldest run_after, then id.
    let mut pending: Vec<&ModelExecution> = m
        .executions
        .iter()
        .filter(|e| e.status == ExecutionStatus::Pending)
        .collect();
    pending.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.run_after.cmp(&b.run_after))
            .then(a.id.cmp(&b.id))
    });
    let predicted: Vec<ExecutionId> = pending.iter().take(n).map(|e| e.id).collect();
    trail.log(format!(
        "claim {worker} {n} (expect {:?})",
        m.es(&predicted)
    ));
    let got = expect_ok("claim", f.queue.claim(worker, n as u32, MODEL_LEASE).await);
    let ids: Vec<ExecutionId> = got.iter().map(|c| c.execution.id).collect();
    trail.last(&format!(" -> {:?}", m.es(&ids)));
    // Safety first: nothing cancelled, nothing whose task is not pending,
    // nothing twice.
    for c in &got {
        let id = c.execution.id;
        let e = m
            .execution(id)
            .unwrap_or_else(|| panic!("claimed an execution the model does not know: {id}"));
        assert!(!m.cancelled.contains(&id), "claimed cancelled {}", m.e(id));
        let task = m.task(e.task).unwrap();
        assert_eq!(
            task.status,
            TaskStatus::Pending,
            "claimed {} whose task {} is {}",
            m.e(id),
            m.t(task.id),
            task.status
        );
        assert!(!m.claimed.contains(&id), "claimed {} twice", m.e(id));
    }
    assert_eq!(m.es(&ids), m.es(&predicted), "claim order or count");
    for c in got {
        let x = &c.execution;
        let before = m.execution(x.id).unwrap().clone();
        assert_eq!(x.status, ExecutionStatus::Running);
        assert_eq!(x.worker_id.as_deref(), Some(worker));
        assert_eq!(x.attempt, before.attempt + 1);
        assert!(x.lease_expires_at.is_some() && x.started_at.is_some());
        assert_eq!(c.script_content, "print(1)");
        m.claimed.insert(x.id);
        let e = m.execution_mut(x.id);
        e.status = ExecutionStatus::Running;
        e.worker = Some(worker.to_owned());
        e.attempt += 1;
        e.leased = true;
        e.expired = false;
        m.task_mut(before.task).status = TaskStatus::Running;
    }
}

async fn step_heartbeat(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let Some(target) = m.pick_execution(rng, true) else {
        trail.log("heartbeat: no execution yet".to_owned());
        return;
    };
    let worker = rng.pick(&WORKERS);
    let id = target.id();
    trail.log(format!("heartbeat {} by {worker}", m.e(id)));
    let got = f.queue.heartbeat(id, worker, MODEL_LEASE).await;
    trail.last(&summary(&got));
    match target {
        Target::Gone(_) => expect_not_found("heartbeat", got),
        Target::Live(_) => match m.lease_refusal(id, worker) {
            None => {
                expect_ok("heartbeat", got);
                m.execution_mut(id).expired = false;
            }
            Some(reason) => expect_lease_lost("heartbeat", got, id, reason),
        },
    }
}

async fn step_complete(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let Some(target) = m.pick_execution(rng, true) else {
        trail.log("complete: no execution yet".to_owned());
        return;
    };
    let worker = rng.pick(&WORKERS);
    let outcome = rng.outcome();
    let status = outcome.status;
    let id = target.id();
    trail.log(format!("complete {} by {worker} as {status}", m.e(id)));
    let got = f.queue.complete(id, worker, outcome).await;
    trail.last(&summary(&got));
    match target {
        Target::Gone(_) => expect_not_found("complete", got),
        Target::Live(_) => match m.lease_refusal(id, worker) {
            None => {
                let got = expect_ok("complete", got);
                assert_eq!(got.status, status);
                assert!(got.lease_expires_at.is_none() && got.completed_at.is_some());
                assert!(m.reported.insert(id), "{} completed twice", m.e(id));
                m.end_execution(id, status);
            }
            Some(reason) => expect_lease_lost("complete", got, id, reason),
        },
    }
}

async fn step_cancel(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let Some(target) = m.pick_execution(rng, false) else {
        trail.log("cancel: no execution yet".to_owned());
        return;
    };
    let id = target.id();
    trail.log(format!("cancel {}", m.e(id)));
    let got = f.queue.cancel(id).await;
    trail.last(&summary(&got));
    match target {
        Target::Gone(_) => expect_not_found("cancel", got),
        Target::Live(_) => {
            let current = m.execution(id).unwrap().status;
            if is_active(current) {
                let got = expect_ok("cancel", got);
                assert_eq!(got.status, ExecutionStatus::Cancelled);
                m.end_execution(id, ExecutionStatus::Cancelled);
            } else {
                expect_invalid("cancel", got, current.as_str());
            }
        }
    }
}

async fn step_execution_status(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let Some(target) = m.pick_execution(rng, false) else {
        trail.log("execution update_status: no execution yet".to_owned());
        return;
    };
    let to = rng.pick(&ExecutionStatus::ALL);
    let id = target.id();
    trail.log(format!("executions.update_status {} -> {to}", m.e(id)));
    let got = f.executions.update_status(id, to).await;
    trail.last(&summary(&got));
    let Target::Live(_) = target else {
        return expect_not_found("executions.update_status", got);
    };
    let current = m.execution(id).unwrap().status;
    if to.is_terminal() && current.can_transition_to(to) {
        let got = expect_ok("executions.update_status", got);
        assert_eq!(got.status, to);
        m.end_execution(id, to);
    } else if to == ExecutionStatus::Running && current == ExecutionStatus::Pending {
        // Only a claim starts a run (it sets the lease).
        expect_validation("executions.update_status", got);
    } else {
        expect_invalid("executions.update_status", got, current.as_str());
    }
}

async fn step_cancel_task(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let target = m.pick_task(rng);
    let id = target.id();
    trail.log(format!("tasks.update_status {} -> cancelled", m.t(id)));
    let got = f.tasks.update_status(id, TaskStatus::Cancelled).await;
    trail.last(&summary(&got));
    let Some(task) = m.task(id) else {
        return expect_not_found("cancel task", got);
    };
    match task.status {
        TaskStatus::Pending | TaskStatus::Running | TaskStatus::Cancelled => {
            let got = expect_ok("cancel task", got);
            assert_eq!(got.status, TaskStatus::Cancelled);
            m.cancel_task(id);
        }
        from => expect_invalid("cancel task", got, from.as_str()),
    }
}

async fn step_retry_task(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let id = m.pick_task(rng).id();
    trail.log(format!("tasks.update_status {} -> pending", m.t(id)));
    let got = f.tasks.update_status(id, TaskStatus::Pending).await;
    trail.last(&summary(&got));
    let Some(task) = m.task(id) else {
        return expect_not_found("retry task", got);
    };
    match task.status {
        TaskStatus::Pending | TaskStatus::Failed | TaskStatus::Timeout | TaskStatus::Cancelled => {
            let got = expect_ok("retry task", got);
            assert_eq!(got.status, TaskStatus::Pending);
            // A retry queues nothing: the next enqueue does.
            m.task_mut(id).status = TaskStatus::Pending;
        }
        from => expect_invalid("retry task", got, from.as_str()),
    }
}

async fn step_task_status_by_hand(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let id = m.pick_task(rng).id();
    let to = rng.pick(&[
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Timeout,
    ]);
    trail.log(format!("tasks.update_status {} -> {to}", m.t(id)));
    let got = f.tasks.update_status(id, to).await;
    trail.last(&summary(&got));
    // Those follow the execution; setting them by hand is refused up front.
    expect_validation("tasks.update_status by hand", got);
}

/// A worker vanishes: its lease is made to have expired.
async fn step_expire(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let running: Vec<ExecutionId> = m
        .executions
        .iter()
        .filter(|e| e.status == ExecutionStatus::Running && !e.expired)
        .map(|e| e.id)
        .collect();
    if running.is_empty() {
        trail.log("expire: nothing running".to_owned());
        return;
    }
    let id = rng.pick(&running);
    trail.log(format!("expire the lease of {}", m.e(id)));
    let updated =
        f.db.raw_client()
            .await
            .unwrap()
            .execute(
                "UPDATE task_executions SET lease_expires_at = now() - interval '1 s' \
             WHERE id = $1 AND status = 'running'",
                &[&id],
            )
            .await
            .unwrap();
    assert_eq!(updated, 1, "{} is running", m.e(id));
    m.execution_mut(id).expired = true;
}

async fn step_rescue(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let max_attempts = 1 + rng.below(3) as i32;
    let expired: Vec<ModelExecution> = m
        .executions
        .iter()
        .filter(|e| e.status == ExecutionStatus::Running && e.expired)
        .cloned()
        .collect();
    let retried_tasks: BTreeSet<TaskId> = expired
        .iter()
        .filter(|e| e.attempt < max_attempts)
        .map(|e| e.task)
        .collect();
    trail.log(format!(
        "rescue max_attempts {max_attempts} (expect timeouts {:?}, {} retries)",
        m.es(&expired.iter().map(|e| e.id).collect::<Vec<_>>()),
        retried_tasks.len()
    ));
    let report = expect_ok(
        "rescue",
        f.queue
            .rescue_expired(RescuePolicy {
                max_attempts,
                ..RescuePolicy::default()
            })
            .await,
    );
    trail.last(&format!(
        " -> timed out {:?}, retried {}",
        m.es(&report.timed_out),
        report.retried.len()
    ));
    let timed_out: BTreeSet<ExecutionId> = report.timed_out.iter().copied().collect();
    let want: BTreeSet<ExecutionId> = expired.iter().map(|e| e.id).collect();
    assert_eq!(
        m.es(&timed_out.into_iter().collect::<Vec<_>>()),
        m.es(&want.into_iter().collect::<Vec<_>>()),
        "rescue times out exactly the running executions whose lease expired"
    );
    let mut retries: BTreeMap<TaskId, TaskExecution> = BTreeMap::new();
    for id in &report.retried {
        let e = expect_ok("get retried", f.executions.get(*id).await);
        assert!(
            retries.insert(e.task_id, e).is_none(),
            "two retries for one task"
        );
    }
    assert_eq!(
        retries.keys().copied().collect::<BTreeSet<_>>(),
        retried_tasks,
        "a retry for each timed out execution below max_attempts"
    );
    m.rescued += expired.len();
    m.retried += retries.len();
    for old in &expired {
        let e = m.execution_mut(old.id);
        // The rescuer keeps the expired lease and the worker on the row.
        e.status = ExecutionStatus::Timeout;
        e.expired = false;
        match retries.get(&old.task) {
            Some(retry) => {
                assert_eq!(retry.status, ExecutionStatus::Pending);
                assert_eq!(
                    (retry.attempt, retry.priority),
                    (old.attempt, old.priority),
                    "a retry keeps the attempt count and the priority"
                );
                m.add_execution(retry);
                m.task_mut(old.task).status = TaskStatus::Pending;
            }
            None => m.task_mut(old.task).status = TaskStatus::Timeout,
        }
    }
}

async fn step_delete_task(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    let target = m.pick_task(rng);
    let id = target.id();
    trail.log(format!("tasks.delete {}", m.t(id)));
    let got = f.tasks.delete(id).await;
    trail.last(&summary(&got));
    match target {
        Target::Gone(_) => expect_not_found("tasks.delete", got),
        Target::Live(_) => {
            expect_ok("tasks.delete", got);
            m.remove_task(id);
            refill(f, m, rng).await;
        }
    }
}

async fn step_delete_user(f: &Fixture, m: &mut Model, rng: &mut Rng, trail: &mut Trail) {
    if !m.gone_users.is_empty() && rng.chance(20) {
        let id = rng.pick(&m.gone_users);
        trail.log(format!("users.delete {} (deleted)", m.names[&id.as_uuid()]));
        let got = f.users.delete(id).await;
        trail.last(&summary(&got));
        return expect_not_found("users.delete", got);
    }
    let slot = rng.below(m.users.len());
    let id = m.users[slot];
    trail.log(format!("users.delete {}", m.names[&id.as_uuid()]));
    let got = f.users.delete(id).await;
    trail.last(&summary(&got));
    expect_ok("users.delete", got);
    let theirs: Vec<TaskId> = m
        .tasks
        .iter()
        .filter(|t| t.user == id)
        .map(|t| t.id)
        .collect();
    for task in theirs {
        m.remove_task(task);
    }
    m.gone_users.push(id);
    m.users[slot] = new_user(f, m).await;
    refill(f, m, rng).await;
}

#[derive(Debug, PartialEq)]
struct ExecutionRow {
    task: String,
    status: ExecutionStatus,
    worker: Option<String>,
    attempt: i32,
    leased: bool,
    expired: bool,
    priority: i32,
}

/// Lines of `a` that differ from `b`.
fn differences<K: Ord + Clone, V: PartialEq + Debug>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    name: impl Fn(&K) -> String,
) -> Vec<String> {
    let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(k) != b.get(k))
        .map(|k| format!("{}: db {:?}, model {:?}", name(k), a.get(k), b.get(k)))
        .collect()
}

/// The invariants, then every row against the model.
async fn check_database(f: &Fixture, m: &Model) {
    let violations = invariant_violations(f.db.db()).await;
    assert!(
        violations.is_empty(),
        "invariants broken:\n{}",
        violations.join("\n")
    );
    let client = f.db.raw_client().await.unwrap();

    let users: BTreeSet<UserId> = client
        .query("SELECT id FROM users", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, m.users.iter().copied().collect(), "users");

    let db_tasks: BTreeMap<TaskId, (UserId, TaskStatus)> = client
        .query("SELECT id, user_id, status FROM tasks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let model_tasks: BTreeMap<TaskId, (UserId, TaskStatus)> =
        m.tasks.iter().map(|t| (t.id, (t.user, t.status))).collect();
    let diff = differences(&db_tasks, &model_tasks, |id| m.t(*id));
    assert!(diff.is_empty(), "tasks differ:\n{}", diff.join("\n"));

    let db_executions: BTreeMap<ExecutionId, ExecutionRow> = client
        .query(
            "SELECT id, task_id, status, worker_id, attempt, lease_expires_at IS NOT NULL, \
                    status = 'running' AND lease_expires_at < now(), priority \
             FROM task_executions",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                ExecutionRow {
                    task: m.t(r.get(1)),
                    status: r.get(2),
                    worker: r.get(3),
                    attempt: r.get(4),
                    leased: r.get(5),
                    expired: r.get(6),
                    priority: r.get(7),
                },
            )
        })
        .collect();
    let model_executions: BTreeMap<ExecutionId, ExecutionRow> = m
        .executions
        .iter()
        .map(|e| {
            (
                e.id,
                ExecutionRow {
                    task: m.t(e.task),
                    status: e.status,
                    worker: e.worker.clone(),
                    attempt: e.attempt,
                    leased: e.leased,
                    expired: e.status == ExecutionStatus::Running && e.expired,
                    priority: e.priority,
                },
            )
        })
        .collect();
    let diff = differences(&db_executions, &model_executions, |id| m.e(*id));
    assert!(diff.is_empty(), "executions differ:\n{}", diff.join("\n"));
}

// ---------------------------------------------------------------------------
// The deadlock test
// ---------------------------------------------------------------------------

const TASK_POOL: usize = 6;
/// Longer than any lock wait can be without a deadlock or a hang.
const CALL_LIMIT: Duration = Duration::from_secs(60);

type Allowed = &'static [&'static str];
const NONE: Allowed = &[];
const NOT_FOUND: Allowed = &["NotFound"];
const NOT_FOUND_OR_INVALID: Allowed = &["NotFound", "InvalidTransition"];
const NOT_FOUND_OR_LEASE: Allowed = &["NotFound", "LeaseLost"];
/// A task created for a user another task just deleted.
const FOREIGN_KEY: Allowed = &["ForeignKey"];

fn kind(err: &Error) -> &'static str {
    match err {
        Error::NotFound { .. } => "NotFound",
        Error::InvalidTransition { .. } => "InvalidTransition",
        Error::LeaseLost { .. } => "LeaseLost",
        Error::Validation { .. } => "Validation",
        Error::ForeignKey { .. } => "ForeignKey",
        Error::Conflict { .. } => "Conflict",
        Error::CheckViolation { .. } => "CheckViolation",
        Error::Timeout { .. } => "Timeout",
        Error::Unavailable { .. } => "Unavailable",
        _ => "other",
    }
}

fn is_deadlock(err: &Error) -> bool {
    err.sqlstate() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        || format!("{err} {err:?}").to_lowercase().contains("deadlock")
}

#[derive(Debug, Default)]
struct Shared {
    users: Vec<UserId>,
    tasks: Vec<(TaskId, UserId)>,
    executions: VecDeque<ExecutionId>,
    created: u64,
}

#[derive(Debug, Default)]
struct Tally {
    outcomes: BTreeMap<(&'static str, &'static str), u64>,
    deadlocks: Vec<String>,
    unexpected: Vec<String>,
    claimed: HashSet<ExecutionId>,
    claimed_twice: Vec<ExecutionId>,
    reported: HashSet<ExecutionId>,
    reported_twice: Vec<ExecutionId>,
}

struct Load {
    db: Database,
    users: PgUserRepository,
    tasks: PgTaskRepository,
    executions: PgExecutionRepository,
    queue: PgExecutionQueue,
    deadline: Instant,
    shared: Mutex<Shared>,
    tally: Mutex<Tally>,
}

impl Load {
    /// Runs one call; counts its outcome and files a deadlock, a hang or an
    /// error outside `allowed` (kinds as [`kind`] names them).
    async fn call<T>(
        &self,
        op: &'static str,
        allowed: Allowed,
        call: impl Future<Output = Result<T>>,
    ) -> std::result::Result<T, &'static str> {
        let result = tokio::time::timeout(CALL_LIMIT, call).await;
        let mut tally = self.tally.lock().unwrap();
        let outcome = match result {
            Err(_) => {
                tally
                    .unexpected
                    .push(format!("{op}: no answer within {CALL_LIMIT:?}"));
                Err("hung")
            }
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let k = kind(&err);
                if is_deadlock(&err) {
                    tally.deadlocks.push(format!("{op}: {err} ({err:?})"));
                } else if err.is_retryable() || !allowed.contains(&k) {
                    tally.unexpected.push(format!(
                        "{op}: {k} {err} (sqlstate {:?}; {err:?})",
                        err.sqlstate().map(SqlState::code)
                    ));
                }
                Err(k)
            }
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(k) => k,
        };
        *tally.outcomes.entry((op, label)).or_default() += 1;
        outcome
    }

    fn some_task(&self, rng: &mut Rng) -> Option<TaskId> {
        let shared = self.shared.lock().unwrap();
        (!shared.tasks.is_empty()).then(|| shared.tasks[rng.below(shared.tasks.len())].0)
    }

    fn some_tasks(&self, rng: &mut Rng, n: usize) -> Vec<TaskId> {
        (0..n).filter_map(|_| self.some_task(rng)).collect()
    }

    fn forget_task(&self, id: TaskId) {
        self.shared.lock().unwrap().tasks.retain(|(t, _)| *t != id);
    }

    fn some_execution(&self, rng: &mut Rng) -> Option<ExecutionId> {
        let shared = self.shared.lock().unwrap();
        (!shared.executions.is_empty())
            .then(|| shared.executions[rng.below(shared.executions.len())])
    }

    fn remember(&self, id: ExecutionId) {
        let mut shared = self.shared.lock().unwrap();
        if shared.executions.len() == 32 {
            shared.executions.pop_front();
        }
        shared.executions.push_back(id);
    }

    fn claimed(&self, id: ExecutionId) {
        let mut tally = self.tally.lock().unwrap();
        if !tally.claimed.insert(id) {
            tally.claimed_twice.push(id);
        }
    }

    fn reported(&self, id: ExecutionId) {
        let mut tally = self.tally.lock().unwrap();
        if !tally.reported.insert(id) {
            tally.reported_twice.push(id);
        }
    }

    async fn create_user(&self) {
        let n = {
            let mut shared = self.shared.lock().unwrap();
            shared.created += 1;
            shared.created
        };
        let email = format!("load-{n}@example.com");
        if let Ok(user) = self
            .call(
                "users.create",
                NONE,
                self.users
                    .create(NewUser::new(email, PasswordHash::new("h"))),
            )
            .await
        {
            self.shared.lock().unwrap().users.push(user.id);
        }
    }

    async fn create_task(&self, rng: &mut Rng) {
        let (user, n) = {
            let mut shared = self.shared.lock().unwrap();
            if shared.users.is_empty() {
                return;
            }
            shared.created += 1;
            (shared.users[rng.below(shared.users.len())], shared.created)
        };
        let task =
            NewTask::new(user, format!("load-{n}"), "print(1)").priority(rng.below(3) as i32);
        if let Ok(task) = self
            .call("tasks.create", FOREIGN_KEY, self.tasks.create(task))
            .await
        {
            self.shared.lock().unwrap().tasks.push((task.id, user));
        }
    }
}

/// Mostly one of the worker's own executions (taken out of `held`),
/// sometimes anybody's.
fn mine(load: &Load, held: &mut Vec<ExecutionId>, rng: &mut Rng) -> Option<ExecutionId> {
    if !held.is_empty() && rng.chance(80) {
        Some(held.swap_remove(rng.below(held.len())))
    } else {
        load.some_execution(rng)
    }
}

/// Claims, completes, cancels, retries and rescues on the shared tasks.
async fn worker(load: Arc<Load>, i: usize, seed: u64) {
    let me = format!("worker-{i}");
    let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut held: Vec<ExecutionId> = Vec::new();
    let rescue = RescuePolicy {
        max_attempts: 2,
        ..RescuePolicy::default()
    };
    while Instant::now() < load.deadline {
        match rng.below(100) {
            0..14 => {
                let Some(task) = load.some_task(&mut rng) else {
                    tokio::task::yield_now().await;
                    continue;
                };
                match load
                    .call(
                        "enqueue",
                        NOT_FOUND_OR_INVALID,
                        load.queue.enqueue(task, None),
                    )
                    .await
                {
                    Ok(e) => load.remember(e.id),
                    Err("NotFound") => load.forget_task(task),
                    Err(_) => {}
                }
            }
            14..20 => {
                let n = 2 + rng.below(2);
                let tasks = load.some_tasks(&mut rng, n);
                if let Ok(queued) = load
                    .call(
                        "enqueue_many",
                        NOT_FOUND_OR_INVALID,
                        load.queue.enqueue_many(tasks, None),
                    )
                    .await
                {
                    for e in queued {
                        load.remember(e.id);
                    }
                }
            }
            20..38 => {
                let n = 1 + rng.below(2) as u32;
                if let Ok(claimed) = load
                    .call("claim", NONE, load.queue.claim(&me, n, LEASE))
                    .await
                {
                    for c in claimed {
                        load.claimed(c.execution.id);
                        held.push(c.execution.id);
                    }
                }
            }
            38..54 => {
                let Some(id) = mine(&load, &mut held, &mut rng) else {
                    continue;
                };
                let outcome = rng.outcome();
                if load
                    .call(
                        "complete",
                        NOT_FOUND_OR_LEASE,
                        load.queue.complete(id, &me, outcome),
                    )
                    .await
                    .is_ok()
                {
                    load.reported(id);
                }
            }
            54..60 => {
                let Some(id) = mine(&load, &mut held, &mut rng) else {
                    continue;
                };
                if load
                    .call(
                        "heartbeat",
                        NOT_FOUND_OR_LEASE,
                        load.queue.heartbeat(id, &me, LEASE),
                    )
                    .await
                    .is_ok()
                {
                    held.push(id);
                }
            }
            60..68 => {
                let Some(id) = load.some_execution(&mut rng) else {
                    continue;
                };
                let _ = load
                    .call("cancel", NOT_FOUND_OR_INVALID, load.queue.cancel(id))
                    .await;
            }
            68..72 => {
                let Some(id) = load.some_execution(&mut rng) else {
                    continue;
                };
                let to = rng.pick(&[ExecutionStatus::Failed, ExecutionStatus::Cancelled]);
                let _ = load
                    .call(
                        "executions.update_status",
                        NOT_FOUND_OR_INVALID,
                        load.executions.update_status(id, to),
                    )
                    .await;
            }
            72..90 => {
                let Some(task) = load.some_task(&mut rng) else {
                    continue;
                };
                let (op, to) = if rng.chance(50) {
                    ("tasks.update_status(cancelled)", TaskStatus::Cancelled)
                } else {
                    ("tasks.update_status(pending)", TaskStatus::Pending)
                };
                if let Err("NotFound") = load
                    .call(op, NOT_FOUND_OR_INVALID, load.tasks.update_status(task, to))
                    .await
                {
                    load.forget_task(task);
                }
            }
            90..95 => {
                // This worker vanishes from one of its executions.
                let Some(id) = held.pop() else { continue };
                let expire = async {
                    // Unnamed, with the parameter's type declared: runs
                    // through a transaction pooler too.
                    load.db
                        .client()
                        .await?
                        .execute_typed(
                            "UPDATE task_executions \
                             SET lease_expires_at = now() - interval '1 s' \
                             WHERE id = $1 AND status = 'running'",
                            &[(&id, tokio_postgres::types::Type::UUID)],
                        )
                        .await
                        .map_err(Error::from)
                };
                let _ = load.call("expire (SQL)", NONE, expire).await;
            }
            _ => {
                let _ = load
                    .call("rescue_expired", NONE, load.queue.rescue_expired(rescue))
                    .await;
            }
        }
    }
}

/// Deletes tasks and users on the rows the workers use, and creates new
/// ones so there is always work.
async fn deleter(load: Arc<Load>, i: usize, seed: u64) {
    let mut rng = Rng(seed ^ (i as u64 + 101).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    while Instant::now() < load.deadline {
        if rng.chance(75) {
            if let Some(task) = load.some_task(&mut rng)
                && let Ok(()) | Err("NotFound") = load
                    .call("tasks.delete", NOT_FOUND, load.tasks.delete(task))
                    .await
            {
                load.forget_task(task);
            }
        } else {
            let user = {
                let shared = load.shared.lock().unwrap();
                (!shared.users.is_empty()).then(|| shared.users[rng.below(shared.users.len())])
            };
            if let Some(user) = user
                && let Ok(()) | Err("NotFound") = load
                    .call("users.delete", NOT_FOUND, load.users.delete(user))
                    .await
            {
                let mut shared = load.shared.lock().unwrap();
                shared.users.retain(|u| *u != user);
                shared.tasks.retain(|(_, u)| *u != user);
            }
        }
        if load.shared.lock().unwrap().users.len() < 3 {
            load.create_user().await;
        }
        while load.shared.lock().unwrap().tasks.len() < TASK_POOL {
            if Instant::now() >= load.deadline {
                break;
            }
            load.create_task(&mut rng).await;
        }
        // Let the workers at the new tasks before they go again.
        tokio::time::sleep(Duration::from_millis(rng.below(8) as u64)).await;
    }
}

async fn deadlocks_counted(config: voidrunner_db::DbConfig) -> i64 {
    let db = Database::connect(config).await.unwrap();
    let n = db
        .client()
        .await
        .unwrap()
        .query_typed_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.close(Duration::from_secs(5)).await;
    n
}

/// Issue #7 §3: eight workers and two deleters on the same few rows for
/// `VOIDRUNNER_DEADLOCK_SECS` (default 20) seconds. No call may deadlock
/// (SQLSTATE 40P01, also looked for in the message and in the server's
/// statistics), hang, or fail other than its contract says: NotFound for
/// rows deleted meanwhile, InvalidTransition for a status that moved on,
/// LeaseLost for a worker that lost its execution, ForeignKey for a task
/// created for a user deleted meanwhile. Afterwards the invariants hold and
/// nothing was claimed or reported twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_never_deadlocks() {
    let secs = env_u64("VOIDRUNNER_DEADLOCK_SECS").unwrap_or(DEFAULT_DEADLOCK_SECS);
    let seed = env_u64("VOIDRUNNER_MODEL_SEED").unwrap_or(DEFAULT_SEED);
    let f = fixture_with(|c| {
        c.max_connections = 20;
        c.min_connections = 10;
    })
    .await;
    let stats_config = {
        let mut c = f.db.config().await.unwrap();
        c.max_connections = 1;
        c.min_connections = 1;
        c
    };
    let deadlocks_before = deadlocks_counted(stats_config.clone()).await;

    let load = Arc::new(Load {
        db: f.db.db().clone(),
        users: f.users.clone(),
        tasks: f.tasks.clone(),
        executions: f.executions.clone(),
        queue: f.queue.clone(),
        deadline: Instant::now() + Duration::from_secs(secs),
        shared: Mutex::new(Shared {
            users: vec![f.user.id],
            ..Shared::default()
        }),
        tally: Mutex::new(Tally::default()),
    });
    let mut rng = Rng(seed);
    for _ in 0..2 {
        load.create_user().await;
    }
    for _ in 0..TASK_POOL {
        load.create_task(&mut rng).await;
    }

    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        set.spawn(worker(load.clone(), i, seed));
    }
    for i in 0..2 {
        set.spawn(deleter(load.clone(), i, seed));
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap();
    }

    let tally = std::mem::take(&mut *load.tally.lock().unwrap());
    let calls: u64 = tally.outcomes.values().sum();
    println!(
        "deadlock test: {secs} s, {calls} calls, {} executions claimed, {} reported",
        tally.claimed.len(),
        tally.reported.len()
    );
    for ((op, outcome), n) in &tally.outcomes {
        println!("  {op:32} {outcome:18} {n}");
    }
    let violations = invariant_violations(f.db.db()).await;
    // A deadlock the crate retried internally would still be counted by
    // the server. Backends report their statistics when they exit, so close
    // the pool first.
    f.db.close(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_deadlocks = deadlocks_counted(stats_config).await - deadlocks_before;

    assert!(
        tally.deadlocks.is_empty(),
        "{} deadlocks, e.g.:\n{}",
        tally.deadlocks.len(),
        tally.deadlocks[..tally.deadlocks.len().min(10)].join("\n")
    );
    assert_eq!(
        server_deadlocks, 0,
        "the server counted {server_deadlocks} deadlocks"
    );
    assert!(
        tally.unexpected.is_empty(),
        "{} errors outside the contract, e.g.:\n{}",
        tally.unexpected.len(),
        tally.unexpected[..tally.unexpected.len().min(10)].join("\n")
    );
    assert!(
        tally.claimed_twice.is_empty(),
        "claimed twice: {:?}",
        tally.claimed_twice
    );
    assert!(
        tally.reported_twice.is_empty(),
        "completed twice: {:?}",
        tally.reported_twice
    );
    assert!(
        violations.is_empty(),
        "invariants broken after the load:\n{}",
        violations.join("\n")
    );
    // Not vacuous: every kind of call got through on these rows.
    for op in [
        "enqueue",
        "enqueue_many",
        "complete",
        "cancel",
        "tasks.update_status(cancelled)",
        "tasks.update_status(pending)",
        "tasks.delete",
        "users.delete",
    ] {
        assert!(
            tally.outcomes.get(&(op, "ok")).copied().unwrap_or(0) > 0,
            "no {op} succeeded"
        );
    }
    assert!(!tally.claimed.is_empty(), "nothing was claimed");
}
