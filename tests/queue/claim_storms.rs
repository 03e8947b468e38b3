//! The claim raced on purpose against cancel, rescue and complete,
//! deletes, enqueues of the same tasks and a second application's row
//! locks and updates; and exactly-once under load with a Completer and a
//! rescuer. After each storm: no error outside each call's contract, no
//! deadlock, no execution claimed twice, the invariants hold and nothing is
//! stuck.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use voidrunner_db::{
    ClaimedExecution, Completer, CompleterConfig, ExecutionId, ExecutionQueue, ExecutionRepository,
    ExecutionStatus, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue, RescuePolicy,
    Result, TaskId, TaskRepository, TaskStatus, UserId, UserRepository,
};

use crate::claim_races::{contract, outside, violations};
use crate::{Fixture, LEASE, fixture_with};

/// Users created during a storm, each with its tasks.
type UsersAndTasks = Vec<(UserId, Vec<TaskId>)>;

// ---------------------------------------------------------- 6. races

#[derive(Default)]
struct Tally {
    claimed: HashSet<ExecutionId>,
    claimed_twice: Vec<ExecutionId>,
    completed_ok: HashSet<ExecutionId>,
    completed_twice: Vec<ExecutionId>,
    rescued: HashSet<ExecutionId>,
    unexpected: Vec<String>,
    ops: HashMap<(&'static str, &'static str), usize>,
}

type Shared = Arc<Mutex<Tally>>;

fn record<T: Debug>(tally: &Shared, op: &'static str, r: &Result<T>) {
    let mut t = tally.lock().unwrap();
    let outcome = match r {
        Ok(_) => "ok",
        Err(e) if contract(e) => "refused",
        // The documented answer of an enqueue whose tasks changed under
        // every one of its attempts (`FRESH_ATTEMPTS`): nothing written,
        // which the invariants after the storm check.
        Err(e)
            if op.starts_with("enqueue")
                && e.is_unavailable()
                && e.to_string().contains("kept changing") =>
        {
            "gave up"
        }
        Err(e) => {
            t.unexpected.push(format!("{op}: {e:?}"));
            "unexpected"
        }
    };
    *t.ops.entry((op, outcome)).or_default() += 1;
}

fn remember_claims(tally: &Shared, got: &[ClaimedExecution]) {
    let mut t = tally.lock().unwrap();
    for c in got {
        if !t.claimed.insert(c.execution.id) {
            t.claimed_twice.push(c.execution.id);
        }
    }
}

/// A claimer until `deadline`, handing what it claims to `sink` (when set).
#[allow(clippy::too_many_arguments)]
fn spawn_claimer(
    set: &mut tokio::task::JoinSet<()>,
    queue: PgExecutionQueue,
    tally: Shared,
    worker: String,
    limit: u32,
    lease: Duration,
    deadline: Instant,
    sink: Option<tokio::sync::mpsc::UnboundedSender<(ExecutionId, String)>>,
) {
    set.spawn(async move {
        while Instant::now() < deadline {
            let r = queue.claim(&worker, limit, lease).await;
            record(&tally, "claim", &r);
            let got = r.unwrap_or_default();
            remember_claims(&tally, &got);
            if let Some(sink) = &sink {
                for c in &got {
                    let _ = sink.send((c.execution.id, worker.clone()));
                }
            }
            if got.is_empty() {
                tokio::task::yield_now().await;
            }
        }
    });
}

/// After a storm: no call failed outside its contract, nothing claimed
/// twice, the invariants hold, and nothing is stuck (every pending
/// execution of a pending task whose run_after has come is claimable).
async fn check_after_storm(f: &Fixture, tally: &Shared, label: &str) {
    let t = std::mem::take(&mut *tally.lock().unwrap());
    let mut ops: Vec<_> = t.ops.iter().collect();
    ops.sort();
    println!("{label}: {ops:?}");
    assert!(
        t.unexpected.is_empty(),
        "{label}: {} errors outside the contract, e.g. {:?}",
        t.unexpected.len(),
        &t.unexpected[..t.unexpected.len().min(5)]
    );
    assert!(
        t.claimed_twice.is_empty(),
        "{label}: claimed twice {:?}",
        t.claimed_twice
    );
    assert!(
        t.completed_twice.is_empty(),
        "{label}: completed twice {:?}",
        t.completed_twice
    );
    let v = violations(f).await;
    assert!(
        v.is_empty(),
        "{label}: invariants broken:\n{}",
        v.join("\n")
    );
    // Nothing stuck.
    let mut drained = 0;
    loop {
        let got = f.queue.claim("drain", 1000, LEASE).await.unwrap();
        if got.is_empty() {
            break;
        }
        drained += got.len();
        for c in &got {
            assert!(
                !t.claimed.contains(&c.execution.id),
                "{label}: drained an execution claimed before"
            );
        }
    }
    let stuck: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
             WHERE e.status = 'pending' AND t.status = 'pending' AND e.run_after <= now()",
            &[],
        )
        .await;
    assert_eq!(stuck, 0, "{label}: eligible executions no claim takes");
    let v = violations(f).await;
    assert!(
        v.is_empty(),
        "{label}: invariants broken after drain:\n{}",
        v.join("\n")
    );
    println!(
        "{label}: drained {drained}, claimed {} during the storm",
        t.claimed.len()
    );
}

fn storm_secs() -> u64 {
    std::env::var("VOIDRUNNER_RB_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn task_pool(f: &Fixture, n: usize) -> Vec<TaskId> {
    f.queued(n, |i| (i % 11) as i32)
        .await
        .iter()
        .map(|e| e.task_id)
        .collect()
}

/// Claimers (batches of 1 and 100) against cancel, task cancel and
/// re-queue of the same tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_claim_vs_cancel_and_task_cancel() {
    let f = fixture_with(|c| c.max_connections = 20).await;
    let tasks = Arc::new(task_pool(&f, 300).await);
    let tally: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(storm_secs());
    let mut set = tokio::task::JoinSet::new();
    for (i, limit) in [1u32, 1, 100, 100].into_iter().enumerate() {
        spawn_claimer(
            &mut set,
            f.queue.clone(),
            tally.clone(),
            format!("w{i}"),
            limit,
            LEASE,
            deadline,
            None,
        );
    }
    for a in 0..4u64 {
        let (queue, repo, execs, tasks, tally) = (
            f.queue.clone(),
            f.tasks.clone(),
            f.executions.clone(),
            tasks.clone(),
            tally.clone(),
        );
        set.spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (a + 1));
            while Instant::now() < deadline {
                let t = tasks[rng.below(tasks.len())];
                match rng.below(4) {
                    0 => {
                        if let Ok(Some(e)) = execs.latest_for_task(t).await {
                            let r = queue.cancel(e.id).await;
                            record(&tally, "cancel", &r);
                        }
                    }
                    1 => {
                        let r = repo.update_status(t, TaskStatus::Cancelled).await;
                        record(&tally, "update_status(cancelled)", &r);
                    }
                    2 => {
                        let r = repo.update_status(t, TaskStatus::Pending).await;
                        record(&tally, "update_status(pending)", &r);
                    }
                    _ => {
                        let r = queue.enqueue(t, None).await;
                        record(&tally, "enqueue", &r);
                    }
                }
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.unwrap();
    }
    check_after_storm(&f, &tally, "claim vs cancel").await;
}

/// Claimers with 20 ms leases, a rescuer retrying (max 1000 attempts, no
/// delay) and a completer racing it: no execution claimed twice, no
/// completion accepted for an execution the rescuer timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_claim_vs_rescue_vs_complete() {
    let f = fixture_with(|c| c.max_connections = 20).await;
    task_pool(&f, 300).await;
    let tally: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(storm_secs());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut set = tokio::task::JoinSet::new();
    for (i, limit) in [1u32, 10, 100, 1000].into_iter().enumerate() {
        spawn_claimer(
            &mut set,
            f.queue.clone(),
            tally.clone(),
            format!("w{i}"),
            limit,
            Duration::from_millis(20),
            deadline,
            Some(tx.clone()),
        );
    }
    drop(tx);
    {
        let (queue, tally) = (f.queue.clone(), tally.clone());
        set.spawn(async move {
            while Instant::now() < deadline {
                let r = queue
                    .rescue_expired(RescuePolicy {
                        max_attempts: 1000,
                        retry_delay: Duration::ZERO,
                        batch_size: 50,
                    })
                    .await;
                record(&tally, "rescue", &r);
                if let Ok(report) = r {
                    let mut t = tally.lock().unwrap();
                    t.rescued.extend(report.timed_out);
                }
            }
        });
    }
    {
        let (queue, tally) = (f.queue.clone(), tally.clone());
        set.spawn(async move {
            let mut batch = Vec::new();
            while let Some(item) = rx.recv().await {
                batch.push(item);
                while let Ok(item) = rx.try_recv() {
                    batch.push(item);
                }
                // Half one by one, half in one complete_many.
                let mut many: Vec<_> = batch.split_off(batch.len() / 2);
                if many.len() > 1000 {
                    batch.extend(many.split_off(1000));
                }
                for (id, w) in batch.drain(..) {
                    let r = queue.complete(id, &w, Outcome::failed(1)).await;
                    record(&tally, "complete", &r);
                    if r.is_ok() {
                        let mut t = tally.lock().unwrap();
                        if !t.completed_ok.insert(id) {
                            t.completed_twice.push(id);
                        }
                    }
                }
                if !many.is_empty() {
                    let completions = many
                        .iter()
                        .map(|(id, w)| {
                            voidrunner_db::Completion::new(*id, w.clone(), Outcome::failed(2))
                        })
                        .collect();
                    let r = queue.complete_many(completions).await;
                    record(&tally, "complete_many", &r);
                    for ((id, _), one) in many.iter().zip(r.unwrap_or_default()) {
                        record(&tally, "complete_many item", &one);
                        if one.is_ok() {
                            let mut t = tally.lock().unwrap();
                            if !t.completed_ok.insert(*id) {
                                t.completed_twice.push(*id);
                            }
                        }
                    }
                }
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.unwrap();
    }
    {
        let t = tally.lock().unwrap();
        let both: Vec<_> = t.completed_ok.intersection(&t.rescued).collect();
        assert!(both.is_empty(), "completed and rescued: {both:?}");
        assert!(
            !t.rescued.is_empty() && !t.completed_ok.is_empty(),
            "not vacuous"
        );
    }
    // Rescue what is left, so the drain sees a settled queue.
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let r = f
            .queue
            .rescue_expired(RescuePolicy {
                max_attempts: 1000,
                retry_delay: Duration::ZERO,
                batch_size: 1000,
            })
            .await
            .unwrap();
        if r.timed_out.is_empty() {
            break;
        }
    }
    check_after_storm(&f, &tally, "claim vs rescue vs complete").await;
}

/// Claimers against deletes of tasks and of whole users, while new users
/// and tasks keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_claim_vs_delete_task_and_user() {
    let f = fixture_with(|c| c.max_connections = 20).await;
    let tally: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(storm_secs());
    let mut set = tokio::task::JoinSet::new();
    for (i, limit) in [1u32, 7, 100].into_iter().enumerate() {
        spawn_claimer(
            &mut set,
            f.queue.clone(),
            tally.clone(),
            format!("w{i}"),
            limit,
            LEASE,
            deadline,
            None,
        );
    }
    let users: Arc<Mutex<UsersAndTasks>> = Arc::default();
    for a in 0..2u64 {
        let (userrepo, repo, queue, users, tally) = (
            f.users.clone(),
            f.tasks.clone(),
            f.queue.clone(),
            users.clone(),
            tally.clone(),
        );
        set.spawn(async move {
            let mut rng = Rng(0x1234_5678 ^ (a + 7));
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                match rng.below(3) {
                    0 => {
                        let u = userrepo
                            .create(NewUser::new(
                                format!("u{a}-{n}@example.com"),
                                PasswordHash::new("h"),
                            ))
                            .await
                            .unwrap();
                        let new: Vec<NewTask> = (0..20)
                            .map(|i| {
                                NewTask::new(u.id, format!("t{i}"), "print(1)").priority(i % 11)
                            })
                            .collect();
                        let ts: Vec<TaskId> = repo
                            .create_many(new)
                            .await
                            .unwrap()
                            .iter()
                            .map(|t| t.id)
                            .collect();
                        let r = queue.enqueue_many(ts.clone(), None).await;
                        record(&tally, "enqueue_many", &r);
                        users.lock().unwrap().push((u.id, ts));
                    }
                    1 => {
                        let pick = {
                            let us = users.lock().unwrap();
                            if us.is_empty() {
                                None
                            } else {
                                let (_, ts) = &us[rng.below(us.len())];
                                if ts.is_empty() {
                                    None
                                } else {
                                    Some(ts[rng.below(ts.len())])
                                }
                            }
                        };
                        if let Some(t) = pick {
                            let r = repo.delete(t).await;
                            record(&tally, "tasks.delete", &r);
                        }
                    }
                    _ => {
                        let pick = {
                            let mut us = users.lock().unwrap();
                            if us.len() < 3 {
                                None
                            } else {
                                let i = rng.below(us.len());
                                Some(us.swap_remove(i).0)
                            }
                        };
                        if let Some(u) = pick {
                            let r = userrepo.delete(u).await;
                            record(&tally, "users.delete", &r);
                        }
                    }
                }
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.unwrap();
    }
    check_after_storm(&f, &tally, "claim vs delete").await;
}

/// Claimers against enqueue and enqueue_many of the same tasks (batches
/// overlapping, in different orders), a completer failing what is claimed
/// so the tasks can be queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_claim_vs_enqueue_many_of_the_same_tasks() {
    let f = fixture_with(|c| c.max_connections = 20).await;
    let tasks = Arc::new(task_pool(&f, 200).await);
    let tally: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(storm_secs());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut set = tokio::task::JoinSet::new();
    for (i, limit) in [1u32, 3, 50, 1000].into_iter().enumerate() {
        spawn_claimer(
            &mut set,
            f.queue.clone(),
            tally.clone(),
            format!("w{i}"),
            limit,
            LEASE,
            deadline,
            Some(tx.clone()),
        );
    }
    drop(tx);
    for a in 0..3u64 {
        let (queue, tasks, tally) = (f.queue.clone(), tasks.clone(), tally.clone());
        set.spawn(async move {
            let mut rng = Rng(0xabcdef ^ (a + 3));
            while Instant::now() < deadline {
                if rng.below(2) == 0 {
                    let n = 1 + rng.below(80);
                    let pick: Vec<TaskId> = (0..n).map(|_| tasks[rng.below(tasks.len())]).collect();
                    let r = queue.enqueue_many(pick, None).await;
                    record(&tally, "enqueue_many", &r);
                } else {
                    let r = queue.enqueue(tasks[rng.below(tasks.len())], None).await;
                    record(&tally, "enqueue", &r);
                }
            }
        });
    }
    {
        let (queue, tally) = (f.queue.clone(), tally.clone());
        set.spawn(async move {
            while let Some((id, w)) = rx.recv().await {
                let r = queue.complete(id, &w, Outcome::failed(1)).await;
                record(&tally, "complete", &r);
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.unwrap();
    }
    check_after_storm(&f, &tally, "claim vs enqueue_many").await;
}

/// A second application locking rows (tasks FOR UPDATE / FOR SHARE,
/// executions FOR UPDATE) in open transactions while the crate claims:
/// claims never wait for those rows and never claim what is held; cancels
/// (which do wait) still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_claim_vs_second_application_row_locks() {
    let f = fixture_with(|c| c.max_connections = 20).await;
    let tasks = Arc::new(task_pool(&f, 400).await);
    let tally: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(storm_secs());
    let slow_claim = Arc::new(AtomicBool::new(false));
    let held_claimed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut set = tokio::task::JoinSet::new();
    for a in 0..3u64 {
        let other = outside(&f).await;
        let (tasks, held_claimed) = (tasks.clone(), held_claimed.clone());
        set.spawn(async move {
            let mut rng = Rng(0x5151 ^ (a + 11));
            while Instant::now() < deadline {
                let pick: Vec<uuid::Uuid> = (0..20)
                    .map(|_| tasks[rng.below(tasks.len())].as_uuid())
                    .collect();
                other.batch_execute("BEGIN").await.unwrap();
                let sql = match rng.below(3) {
                    0 => "SELECT id FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    1 => "SELECT id FROM tasks WHERE id = ANY($1) ORDER BY id FOR SHARE",
                    _ => {
                        "SELECT e.id FROM task_executions e WHERE e.task_id = ANY($1) \
                          AND e.status = 'pending' ORDER BY e.id FOR UPDATE"
                    }
                };
                // A lock wait here is the crate's claim holding the row: fine.
                let rows = other.query(sql, &[&pick]).await.unwrap();
                let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.get(0)).collect();
                // Hold them a while, then check nothing held changed status
                // under the lock.
                let before: Vec<(uuid::Uuid, String)> = other
                    .query(
                        "SELECT e.id, e.status FROM task_executions e \
                         WHERE e.task_id = ANY($1) OR e.id = ANY($1) ORDER BY e.id",
                        &[&ids],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                tokio::time::sleep(Duration::from_millis(30)).await;
                let after: Vec<(uuid::Uuid, String)> = other
                    .query(
                        "SELECT e.id, e.status FROM task_executions e \
                         WHERE e.task_id = ANY($1) OR e.id = ANY($1) ORDER BY e.id",
                        &[&ids],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                if sql.contains("FOR UPDATE") && before != after {
                    held_claimed
                        .lock()
                        .unwrap()
                        .push(format!("{sql}: {before:?} -> {after:?}"));
                }
                other.batch_execute("COMMIT").await.unwrap();
            }
        });
    }
    // A fourth session updates tasks and pending executions by plain SQL
    // (no locks first, no updated_at): renames, reprioritises, reschedules,
    // while they are being claimed.
    {
        let other = outside(&f).await;
        let tasks = tasks.clone();
        set.spawn(async move {
            let mut rng = Rng(0x7777);
            while Instant::now() < deadline {
                let pick: Vec<uuid::Uuid> = (0..10)
                    .map(|_| tasks[rng.below(tasks.len())].as_uuid())
                    .collect();
                let p = rng.below(11) as i32;
                let secs = rng.below(5) as f64;
                other
                    .execute(
                        "UPDATE tasks SET name = name || '.', priority = $2 WHERE id IN ( \
                           SELECT id FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE)",
                        &[&pick, &p],
                    )
                    .await
                    .unwrap();
                other
                    .execute(
                        "UPDATE task_executions SET priority = $2, \
                           run_after = now() - make_interval(secs => $3) \
                         WHERE id IN (SELECT id FROM task_executions WHERE task_id = ANY($1) \
                           AND status = 'pending' ORDER BY id FOR UPDATE)",
                        &[&pick, &p, &secs],
                    )
                    .await
                    .unwrap();
            }
        });
    }
    for (i, limit) in [1u32, 5, 100, 1000].into_iter().enumerate() {
        let (queue, tally, slow) = (f.queue.clone(), tally.clone(), slow_claim.clone());
        set.spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let r = queue.claim(&format!("w{i}"), limit, LEASE).await;
                if started.elapsed() > Duration::from_secs(5) {
                    slow.store(true, Ordering::SeqCst);
                }
                record(&tally, "claim", &r);
                let got = r.unwrap_or_default();
                remember_claims(&tally, &got);
                // Put a few back for more claims: re-queue after cancel.
                for c in got.iter().take(3) {
                    let _ = queue.cancel(c.execution.id).await;
                    let _ = queue.enqueue(c.execution.task_id, None).await;
                }
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.unwrap();
    }
    assert!(
        !slow_claim.load(Ordering::SeqCst),
        "a claim waited for a held row"
    );
    let held = held_claimed.lock().unwrap().clone();
    assert!(
        held.is_empty(),
        "rows changed under another session's lock: {held:?}"
    );
    check_after_storm(&f, &tally, "claim vs row locks").await;
}

// ------------------------------------------------ 7. exactly once, load

/// 16 claimers, a Completer with 4 batches in flight, a rescuer with short
/// leases and retries; workers "run" 0..40 ms so some leases expire. Every
/// execution is claimed at most once, every accepted completion is the
/// only one of its execution and of a row the rescuer did not time out,
/// each task ends with at most one completed execution, and the database
/// agrees with what the callers were told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_load_with_completer_and_rescuer() {
    let f = fixture_with(|c| {
        c.max_connections = 24;
        c.min_connections = 8;
    })
    .await;
    task_pool(&f, 1500).await;
    let tally: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(storm_secs() + 4);
    let completer = Completer::with_config(
        Arc::new(f.queue.clone()),
        CompleterConfig {
            flush_interval: Duration::from_millis(2),
            max_batch: 32,
            max_in_flight: 4,
        },
    )
    .unwrap();
    let accepted: Arc<Mutex<HashMap<ExecutionId, (String, ExecutionStatus)>>> = Arc::default();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let (queue, tally, completer, accepted) = (
            f.queue.clone(),
            tally.clone(),
            completer.clone(),
            accepted.clone(),
        );
        set.spawn(async move {
            let worker = format!("w{w}");
            let mut rng = Rng(0x77 ^ ((w + 1) * 0x9e37_79b9));
            let mut calls = tokio::task::JoinSet::new();
            while Instant::now() < deadline {
                let r = queue
                    .claim(&worker, 1 + rng.below(8) as u32, Duration::from_millis(60))
                    .await;
                record(&tally, "claim", &r);
                let got = r.unwrap_or_default();
                remember_claims(&tally, &got);
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                for c in got {
                    let (completer, worker, tally, accepted) = (
                        completer.clone(),
                        worker.clone(),
                        tally.clone(),
                        accepted.clone(),
                    );
                    let run = Duration::from_millis(rng.below(40) as u64);
                    let outcome = if rng.below(2) == 0 {
                        Outcome::completed(0)
                    } else {
                        Outcome::failed(3)
                    };
                    calls.spawn(async move {
                        tokio::time::sleep(run).await;
                        let r = completer.complete(c.execution.id, &worker, outcome).await;
                        record(&tally, "completer.complete", &r);
                        if let Err(e) = &r {
                            let why: &'static str = match e.lease_lost_reason() {
                                Some(voidrunner_db::LeaseLostReason::Expired) => "lost: expired",
                                Some(voidrunner_db::LeaseLostReason::NotOwner) => "lost: not owner",
                                Some(voidrunner_db::LeaseLostReason::Finished) => "lost: finished",
                                Some(voidrunner_db::LeaseLostReason::Cancelled) => {
                                    "lost: cancelled"
                                }
                                _ => "other",
                            };
                            let late = Instant::now() > deadline;
                            let mut t = tally.lock().unwrap();
                            *t.ops
                                .entry((why, if late { "after deadline" } else { "during" }))
                                .or_default() += 1;
                        }
                        if let Ok(e) = &r {
                            assert_eq!(e.id, c.execution.id);
                            let prev = accepted
                                .lock()
                                .unwrap()
                                .insert(e.id, (worker.clone(), e.status));
                            if prev.is_some() {
                                tally.lock().unwrap().completed_twice.push(e.id);
                            }
                        }
                    });
                }
            }
            while let Some(j) = calls.join_next().await {
                j.unwrap();
            }
        });
    }
    {
        let (queue, tally) = (f.queue.clone(), tally.clone());
        set.spawn(async move {
            while Instant::now() < deadline {
                let r = queue
                    .rescue_expired(RescuePolicy {
                        max_attempts: 4,
                        retry_delay: Duration::ZERO,
                        batch_size: 100,
                    })
                    .await;
                record(&tally, "rescue", &r);
                if let Ok(report) = r {
                    tally.lock().unwrap().rescued.extend(report.timed_out);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.unwrap();
    }
    completer.shutdown().await;

    let accepted = accepted.lock().unwrap().clone();
    let raw = f.db.raw_client().await.unwrap();
    // What the callers were told agrees with the rows.
    let rows = raw
        .query(
            "SELECT id, status, worker_id FROM task_executions \
             WHERE status IN ('completed', 'failed') AND return_code IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let in_db: HashMap<uuid::Uuid, (String, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get::<_, String>(1), r.get::<_, String>(2))))
        .collect();
    assert_eq!(
        in_db.len(),
        accepted.len(),
        "accepted completions vs ended rows"
    );
    for (id, (worker, status)) in &accepted {
        let (s, w) = in_db
            .get(&id.as_uuid())
            .expect("accepted completion in the table");
        assert_eq!((s.as_str(), w), (status.as_str(), worker));
    }
    {
        let t = tally.lock().unwrap();
        let both: Vec<_> = accepted
            .keys()
            .filter(|id| t.rescued.contains(id))
            .collect();
        assert!(
            both.is_empty(),
            "completed after the rescuer timed them out: {both:?}"
        );
        assert!(
            !t.rescued.is_empty(),
            "no lease expired: not the race intended"
        );
    }
    let twice: i64 = raw
        .query_one(
            "SELECT count(*) FROM (SELECT task_id FROM task_executions WHERE status = 'completed' \
             GROUP BY task_id HAVING count(*) > 1) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(twice, 0, "a task completed twice");
    let attempts: i64 = raw
        .query_one(
            "SELECT count(*) FROM task_executions WHERE attempt > 4 OR attempt < 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 0);
    // Rescue the rest and check the queue is settled and consistent.
    loop {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let r = f
            .queue
            .rescue_expired(RescuePolicy {
                max_attempts: 4,
                retry_delay: Duration::ZERO,
                batch_size: 1000,
            })
            .await
            .unwrap();
        if r.timed_out.is_empty() {
            break;
        }
    }
    check_after_storm(&f, &tally, "exactly once under load").await;
}
