//! The counts of tasks read from V12's counters: exact after every kind of
//! write (the repositories', the queue's, cascades, another application's
//! raw SQL, concurrent writers), undone with the transaction that made them
//! (rolled back or killed), never waiting between writers, bound to the
//! scope for the application role; the recount after writes the triggers
//! did not see; the estimates.
//!
//! `VOIDRUNNER_COUNTS_SEED` (decimal) replays a randomized run, whose seed
//! is printed when it fails.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::Client;
use uuid::Uuid;
use voidrunner_db::{
    ExecutionQueue, ExecutionRepository, NewTask, Outcome, RescuePolicy, TaskRepository,
    TaskStatus, TaskStatusCounts, UserId, UserRepository,
};

use crate::app_role::AppRole;
use crate::{Repos, repos, repos_with_pool};

/// The counts by user and status, as `count(*)` finds them.
async fn truth(client: &Client) -> BTreeMap<Uuid, TaskStatusCounts> {
    let mut counts: BTreeMap<Uuid, TaskStatusCounts> = BTreeMap::new();
    for row in client
        .query(
            "SELECT user_id, status::text, count(*) FROM tasks GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap()
    {
        let status: TaskStatus = row.get::<_, String>(1).parse().unwrap();
        let entry = counts.entry(row.get(0)).or_default();
        *entry = entry.with(status, row.get(2));
    }
    counts
}

/// Every count the repository answers, for every user that exists or
/// existed, against `count(*)`; and no counter row left of a deleted user.
async fn assert_exact(r: &Repos, users: &[UserId], step: &str) {
    let client = r.db.raw_client().await.unwrap();
    let truth = truth(&client).await;
    let mut all = TaskStatusCounts::default();
    for counts in truth.values() {
        for status in TaskStatus::ALL {
            all = all.with(status, all.get(status) + counts.get(status));
        }
    }
    assert_eq!(
        r.tasks.status_counts().await.unwrap(),
        all,
        "{step}: global"
    );
    assert_eq!(r.tasks.count().await.unwrap(), all.total(), "{step}");
    for status in TaskStatus::ALL {
        assert_eq!(
            r.tasks.count_by_status(status).await.unwrap(),
            all.get(status),
            "{step}: {status}"
        );
    }
    for user in users {
        let expected = truth.get(&user.as_uuid()).copied().unwrap_or_default();
        assert_eq!(
            r.tasks.status_counts_by_user(*user).await.unwrap(),
            expected,
            "{step}: user {user}"
        );
        assert_eq!(
            r.tasks.count_by_user(*user).await.unwrap(),
            expected.total(),
            "{step}: user {user}"
        );
    }
    let orphans: i64 = client
        .query_one(
            "SELECT count(*) FROM task_counts_by_user c \
             WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "{step}: counter rows of deleted users");
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn new_user(r: &Repos, n: &mut u32) -> UserId {
    *n += 1;
    r.user(&format!("c{n}@example.com")).await.id
}

/// One random task id of the table (raw SQL: it may be anyone's).
async fn some_task(client: &Client, rng: &mut Rng) -> Option<Uuid> {
    let ids: Vec<Uuid> = client
        .query("SELECT id FROM tasks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
}

/// Random writes of every kind, `count(*)` compared after each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_stay_exact_under_random_writes() {
    let seed = std::env::var("VOIDRUNNER_COUNTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Uuid::new_v4().as_u64_pair().0);
    let r = repos_with_pool(8).await;
    let client = r.db.raw_client().await.unwrap();
    let mut rng = Rng(seed);
    let mut n = 0;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(new_user(&r, &mut n).await);
    }
    let mut live: Vec<UserId> = users.clone();
    for step in 0..160 {
        if live.len() < 2 {
            let u = new_user(&r, &mut n).await;
            users.push(u);
            live.push(u);
        }
        let user = live[rng.below(live.len())];
        let op = rng.below(13);
        let label = format!("seed {seed} step {step} op {op}");
        match op {
            0 => {
                r.tasks
                    .create(NewTask::new(user, "t", "print(1)"))
                    .await
                    .unwrap();
            }
            1 => {
                // Across users, in one statement.
                let batch = (0..1 + rng.below(6))
                    .map(|_| NewTask::new(live[rng.below(live.len())], "m", "print(1)"))
                    .collect();
                r.tasks.create_many(batch).await.unwrap();
            }
            2 => {
                r.tasks
                    .import(vec![NewTask::new(user, "i", "print(1)"); 3])
                    .await
                    .unwrap();
            }
            3 => {
                if let Some(id) = some_task(&client, &mut rng).await {
                    let to = [TaskStatus::Pending, TaskStatus::Cancelled][rng.below(2)];
                    // Refused transitions change nothing, and count nothing.
                    let _ = r.tasks.update_status(id.into(), to).await;
                }
            }
            4 => {
                if let Some(id) = some_task(&client, &mut rng).await {
                    let _ = r.tasks.delete(id.into()).await;
                }
            }
            5 => {
                // A user's deletion cascades to their tasks.
                r.users.delete(user).await.unwrap();
                live.retain(|u| *u != user);
            }
            6 => {
                if let Some(id) = some_task(&client, &mut rng).await {
                    let _ = r.queue.enqueue(id.into(), None).await;
                }
            }
            7 => {
                for e in r.claim("w", 1 + rng.below(4) as u32).await {
                    let outcome = match rng.below(3) {
                        0 => Outcome::completed(0),
                        1 => Outcome::failed(1),
                        _ => Outcome::timed_out(),
                    };
                    if rng.below(4) == 0 {
                        r.queue.cancel(e.id).await.unwrap();
                    } else {
                        r.queue.complete(e.id, "w", outcome).await.unwrap();
                    }
                }
            }
            8 => {
                // Leases that expire, then the rescuer.
                client
                    .batch_execute(
                        "UPDATE task_executions SET lease_expires_at = now() - interval '1 second' \
                         WHERE status = 'running'",
                    )
                    .await
                    .unwrap();
                let policy = RescuePolicy {
                    max_attempts: 2,
                    ..Default::default()
                };
                r.queue.rescue_expired(policy).await.unwrap();
            }
            9 => {
                // Another application: rows in any status, a status changed
                // and an owner changed behind the crate's back, a delete.
                let other = live[rng.below(live.len())];
                client
                    .execute(
                        "INSERT INTO tasks (user_id, name, script_content, status) \
                         SELECT $1, 'raw', 'x', (ARRAY['pending','running','completed','failed','timeout','cancelled'])[1 + g % 6] \
                         FROM generate_series(1, 4) g",
                        &[&user.as_uuid()],
                    )
                    .await
                    .unwrap();
                client
                    .execute(
                        "UPDATE tasks SET status = 'failed' WHERE id IN \
                           (SELECT id FROM tasks WHERE user_id = $1 AND status = 'completed' LIMIT 2)",
                        &[&user.as_uuid()],
                    )
                    .await
                    .unwrap();
                client
                    .execute(
                        "UPDATE tasks SET user_id = $2 WHERE id IN \
                           (SELECT id FROM tasks WHERE user_id = $1 ORDER BY id LIMIT 1) \
                           AND NOT EXISTS (SELECT 1 FROM task_executions e WHERE e.task_id = tasks.id)",
                        &[&user.as_uuid(), &other.as_uuid()],
                    )
                    .await
                    .unwrap();
                client
                    .execute(
                        "DELETE FROM tasks WHERE id IN \
                           (SELECT id FROM tasks WHERE user_id = $1 AND status = 'timeout' LIMIT 1)",
                        &[&other.as_uuid()],
                    )
                    .await
                    .unwrap();
            }
            10 => {
                // Concurrent writers: creates for one user, and a status
                // change, a delete and a create_many across users at once.
                let mut calls = Vec::new();
                for i in 0..8 {
                    let tasks = r.tasks.clone();
                    let owner = if i % 2 == 0 {
                        user
                    } else {
                        live[rng.below(live.len())]
                    };
                    calls.push(tokio::spawn(async move {
                        tasks
                            .create_many(vec![NewTask::new(owner, "c", "print(1)"); 2])
                            .await
                            .unwrap();
                    }));
                }
                if let Some(id) = some_task(&client, &mut rng).await {
                    let tasks = r.tasks.clone();
                    calls.push(tokio::spawn(async move {
                        let _ = tasks.delete(id.into()).await;
                    }));
                }
                for call in calls {
                    call.await.unwrap();
                }
            }
            11 => {
                // A transaction of many statements, committed or rolled back.
                let commit = rng.below(2) == 0;
                let result =
                    r.db.transaction(|tx| async move {
                        let tasks = tx.tasks();
                        let t = tasks.create(NewTask::new(user, "tx", "print(1)")).await?;
                        tasks.update_status(t.id, TaskStatus::Cancelled).await?;
                        tasks.create(NewTask::new(user, "tx2", "print(1)")).await?;
                        if commit {
                            Ok(())
                        } else {
                            Err(voidrunner_db::Error::validation("test", "roll back"))
                        }
                    })
                    .await;
                assert_eq!(result.is_ok(), commit, "{label}");
            }
            _ => {
                // A user with no task deleted; a new one.
                let u = new_user(&r, &mut n).await;
                users.push(u);
                if rng.below(2) == 0 {
                    r.users.delete(u).await.unwrap();
                } else {
                    live.push(u);
                }
            }
        }
        assert_exact(&r, &users, &label).await;
    }
}

/// The executions of the queue move tasks through every status: the
/// counts follow each claim, completion, cancel and rescue.
#[tokio::test]
async fn the_queue_moves_the_counts() {
    let r = repos().await;
    let user = r.user("q@example.com").await;
    let tasks: Vec<_> = r
        .tasks
        .create_many(vec![NewTask::new(user.id, "q", "print(1)"); 4])
        .await
        .unwrap();
    for t in &tasks {
        r.queue.enqueue(t.id, None).await.unwrap();
    }
    let claimed = r.claim("w", 3).await;
    let counts = r.tasks.status_counts_by_user(user.id).await.unwrap();
    assert_eq!((counts.pending, counts.running), (1, 3), "{counts:?}");
    r.queue
        .complete(claimed[0].id, "w", Outcome::completed(0))
        .await
        .unwrap();
    r.queue.cancel(claimed[1].id).await.unwrap();
    let counts = r.tasks.status_counts_by_user(user.id).await.unwrap();
    assert_eq!(
        counts,
        TaskStatusCounts::default()
            .with(TaskStatus::Pending, 1)
            .with(TaskStatus::Running, 1)
            .with(TaskStatus::Completed, 1)
            .with(TaskStatus::Cancelled, 1)
    );
    assert_exact(&r, &[user.id], "queue").await;
}

/// A transaction killed half-way (its backend terminated) and a dropped
/// call leave the counts as if they never ran.
#[tokio::test]
async fn a_killed_transaction_leaves_the_counts_exact() {
    let r = repos().await;
    let user = r.user("k@example.com").await;
    r.task(&user, "kept").await;
    let config = r.db.config().await.unwrap();
    let config = config.direct_config().unwrap_or(config);
    let (victim, connection) = config
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    victim
        .batch_execute(&format!(
            "BEGIN; INSERT INTO tasks (user_id, name, script_content) \
             SELECT '{}', 'doomed', 'x' FROM generate_series(1, 50);",
            user.id.as_uuid()
        ))
        .await
        .unwrap();
    let admin = r.db.raw_client().await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    assert!(victim.batch_execute("COMMIT").await.is_err());
    let _ = connection.await;
    // A call dropped while its statement runs: it commits or not, whole.
    let slow = r
        .tasks
        .create_many(vec![NewTask::new(user.id, "dropped", "print(1)"); 500]);
    let _ = tokio::time::timeout(Duration::from_millis(1), slow).await;
    // The dropped call's connection may still finish it: wait until no
    // statement of this database other than ours runs.
    idle(&admin).await;
    assert_exact(&r, &[user.id], "after the kill").await;
}

/// Until no other session of this database is running a statement.
pub async fn idle(admin: &Client) {
    for _ in 0..500 {
        let busy: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sessions still busy");
}

/// Opens a session of its own to the test database, as the harness's user.
pub(crate) async fn session(r: &Repos) -> Client {
    let config = r.db.config().await.unwrap();
    let config = config.direct_config().unwrap_or(config);
    let (client, connection) = config
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Two transactions that start from the same slot (`voidrunner.count_slot`,
/// as two backends whose pids are equal modulo 64 would), each of many
/// statements, each holding a task the other then wants: neither waits on a
/// counter (the second takes the next free slot), so the only wait is the
/// task's, and no deadlock. Counting on one row per slot that a writer
/// waited for would deadlock here: A holds task X and slot 7, B holds task
/// Y and waits for slot 7, A waits for Y.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_of_one_slot_neither_wait_nor_deadlock() {
    let r = repos().await;
    let user = r.user("s@example.com").await;
    let x = r.task(&user, "x").await.id;
    let y = r.task(&user, "y").await.id;
    let a = session(&r).await;
    let b = session(&r).await;
    for s in [&a, &b] {
        // A wait on a counter would fail the statement instead of hanging.
        s.batch_execute(
            "BEGIN; SET LOCAL voidrunner.count_slot = 7; SET LOCAL lock_timeout = '5s'; \
             SET LOCAL deadlock_timeout = '100ms';",
        )
        .await
        .unwrap();
    }
    let cancel = "UPDATE tasks SET status = 'cancelled' WHERE id = $1";
    a.execute(cancel, &[&x.as_uuid()]).await.unwrap();
    // B starts from slot 7 too, which A holds: it counts in another slot,
    // at once, and then creates a task (counted again) of the same user.
    b.execute(cancel, &[&y.as_uuid()]).await.unwrap();
    b.execute(
        "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'b', 'x')",
        &[&user.id.as_uuid()],
    )
    .await
    .unwrap();
    let slots: Vec<i16> = a
        .query(
            "SELECT slot FROM task_counts_by_user WHERE user_id = $1 ORDER BY slot",
            &[&user.id.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(slots.contains(&7), "A counts in its slot: {slots:?}");
    // A now wants Y, which B holds: A waits for B's commit, and only that.
    let a_wants_y = tokio::spawn(async move {
        let result = a
            .execute("UPDATE tasks SET name = 'a' WHERE id = $1", &[&y.as_uuid()])
            .await;
        let commit = a.batch_execute("COMMIT").await;
        (result.map(|_| ()), commit)
    });
    b.batch_execute("COMMIT").await.unwrap();
    let (result, commit) = a_wants_y.await.unwrap();
    result.unwrap();
    commit.unwrap();
    let client = r.db.raw_client().await.unwrap();
    let used: Vec<i16> = client
        .query(
            "SELECT slot FROM task_counts_by_user WHERE user_id = $1 ORDER BY slot",
            &[&user.id.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        used.contains(&7) && used.len() >= 2,
        "two transactions of one slot counted in two: {used:?}"
    );
    assert_exact(&r, &[user.id], "one slot").await;
}

/// Many concurrent creates for one user all commit, with the counts
/// exact: they do not queue behind one counter row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_user_count_exactly() {
    let r = repos_with_pool(16).await;
    let user = r.user("c16@example.com").await;
    let mut calls = Vec::new();
    for _ in 0..16 {
        let tasks = r.tasks.clone();
        calls.push(tokio::spawn(async move {
            for _ in 0..10 {
                tasks
                    .create(NewTask::new(user.id, "c", "print(1)"))
                    .await
                    .unwrap();
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(r.tasks.count_by_user(user.id).await.unwrap(), 160);
    assert_exact(&r, &[user.id], "c=16").await;
}

/// As the application role: the scoped view counts its user's tasks, raw
/// SQL scoped to a user sees only that user's counter rows, unscoped none
/// (and no global row), and the counters cannot be written.
#[tokio::test]
async fn the_application_role_sees_only_its_scopes_counters() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    r.tasks
        .create_many(vec![NewTask::new(a.id, "a", "print(1)"); 3])
        .await
        .unwrap();
    r.tasks
        .create_many(vec![NewTask::new(b.id, "b", "print(1)"); 5])
        .await
        .unwrap();
    let role = AppRole::create(&r.db).await;
    let app = role.database().await;
    let scoped = app.db().scoped(a.id);
    assert_eq!(scoped.tasks.count().await.unwrap(), 3);
    assert_eq!(scoped.tasks.status_counts().await.unwrap().pending, 3);
    assert_eq!(
        scoped
            .tasks
            .count_by_status(TaskStatus::Pending)
            .await
            .unwrap(),
        3
    );
    assert_eq!(app.db().scoped(b.id).tasks.count().await.unwrap(), 5);
    // Unscoped, the role counts nothing, as it sees no task.
    let unscoped = voidrunner_db::PgTaskRepository::new(app.db().clone());
    assert_eq!(unscoped.count().await.unwrap(), 0);
    assert_eq!(unscoped.count_by_user(a.id).await.unwrap(), 0);

    let session = role.session().await;
    let rows = "SELECT count(*) FROM task_counts_by_user";
    let seen: i64 = session.query_one(rows, &[]).await.unwrap().get(0);
    assert_eq!(seen, 0, "unscoped");
    session
        .batch_execute(&format!(
            "BEGIN; SET LOCAL voidrunner.user_id = '{}'",
            a.id.as_uuid()
        ))
        .await
        .unwrap();
    let owners: Vec<Uuid> = session
        .query("SELECT DISTINCT user_id FROM task_counts_by_user", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![a.id.as_uuid()]);
    let global: i64 = session
        .query_one("SELECT count(*) FROM task_counts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(global, 0, "the global rows are not a tenant's");
    let err = session
        .execute("UPDATE task_counts_by_user SET pending = 1000", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    session.batch_execute("ROLLBACK").await.unwrap();
    // Its own writes are counted (the triggers write as the owner).
    scoped
        .tasks
        .create(NewTask::new(a.id, "mine", "print(1)"))
        .await
        .unwrap();
    assert_eq!(scoped.tasks.count().await.unwrap(), 4);
    drop(app);
    assert_exact(&r, &[a.id, b.id], "app role").await;
}

/// Writes the triggers did not see (another writer under
/// `session_replication_role = replica`) and counters changed by hand
/// make the counts wrong until `Database::recount_tasks`; TRUNCATE resets
/// them.
#[tokio::test]
async fn recount_repairs_what_the_triggers_did_not_see() {
    let r = repos().await;
    let user = r.user("h@example.com").await;
    r.task(&user, "seen").await;
    let client = r.db.raw_client().await.unwrap();
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             INSERT INTO tasks (user_id, name, script_content, status) \
             SELECT '{}', 'unseen', 'x', 'completed' FROM generate_series(1, 7); \
             RESET session_replication_role; \
             UPDATE task_counts SET running = running + 100 WHERE slot = 3;",
            user.id.as_uuid()
        ))
        .await
        .unwrap();
    assert_eq!(r.tasks.count_by_user(user.id).await.unwrap(), 1);
    assert_eq!(r.tasks.count().await.unwrap(), 101);
    assert_eq!(r.db.recount_tasks().await.unwrap(), 8);
    assert_exact(&r, &[user.id], "recounted").await;
    // Later writes count on top of the recount.
    r.task(&user, "after").await;
    assert_eq!(r.tasks.count_by_user(user.id).await.unwrap(), 9);
    client
        .batch_execute("TRUNCATE users CASCADE")
        .await
        .unwrap();
    assert_eq!(r.tasks.count().await.unwrap(), 0);
    assert_exact(&r, &[user.id], "truncated").await;
}

/// The estimates: the table's rows once analyzed, scaled to its pages as
/// they grow; exact while it was never analyzed.
#[tokio::test]
async fn estimates_follow_the_statistics() {
    let r = repos().await;
    let user = r.user("e@example.com").await;
    let client = r.db.raw_client().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE users SET (autovacuum_enabled = off); \
             ALTER TABLE task_executions SET (autovacuum_enabled = off); \
             INSERT INTO users (email, password_hash) \
             SELECT 'e' || g || '@example.com', 'h' FROM generate_series(1, 999) g;",
        )
        .await
        .unwrap();
    // Never analyzed: counted.
    assert_eq!(r.users.estimated_count().await.unwrap(), 1000);
    assert_eq!(r.executions.estimated_count().await.unwrap(), 0);
    client.batch_execute("ANALYZE users").await.unwrap();
    assert_eq!(r.users.estimated_count().await.unwrap(), 1000);
    // Loaded after the ANALYZE: scaled by the pages, within a few percent.
    client
        .batch_execute(
            "INSERT INTO users (email, password_hash) \
             SELECT 'f' || g || '@example.com', 'h' FROM generate_series(1, 3000) g",
        )
        .await
        .unwrap();
    let estimate = r.users.estimated_count().await.unwrap();
    assert!(
        (3600..=4400).contains(&estimate),
        "{estimate} for 4000 rows"
    );
    // Executions alike.
    let task = r.task(&user, "t").await;
    client
        .batch_execute(&format!(
            "INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
             SELECT '{}', 'completed', now(), now(), 'w' FROM generate_series(1, 500); \
             ANALYZE task_executions;",
            task.id.as_uuid()
        ))
        .await
        .unwrap();
    assert_eq!(r.executions.estimated_count().await.unwrap(), 500);
}
