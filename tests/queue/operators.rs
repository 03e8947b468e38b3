//! An operator at work under a running service: V8 and V7 migrated down and up
//! under load and against a reader in the crate's lock order, a schema of
//! its own through the URL (and renamed), non-superuser roles, a column's
//! type changed under cached statements (in and out of transactions), and
//! a claim in a transaction racing an edit-then-cancel. Roles and grants are
//! in `roles.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    Database, DbConfig, DownTarget, ExecutionQueue, ExecutionRepository, ExecutionStatus, NewTask,
    NewUser, Outcome, PageRequest, PasswordHash, PgExecutionQueue, PgExecutionRepository,
    PgTaskRepository, PgUserRepository, RescuePolicy, TaskRepository, TaskStatus, TaskUpdate,
    TransactionOptions, UserRepository,
};

use crate::{LEASE, fixture};

/// A second pool of `n` warm connections on the fixture's database.
async fn second_pool(f: &crate::Fixture, n: usize) -> Database {
    let mut config = f.db.config().await.unwrap();
    config.max_connections = n;
    config.min_connections = n;
    Database::connect(config).await.unwrap()
}

/// Operator: `ALTER TABLE tasks ALTER COLUMN name TYPE text` while a
/// service's pool has the list statements cached: lists in transactions
/// keep working. The page functions return declared types and cast to
/// them, so their result does not change with the table. (Functions that
/// returned the table's row type broke: PostgreSQL does not invalidate a
/// prepared call of one when the row type changes, and every transaction
/// that listed on that connection failed with 42804, which is not
/// retryable.)
#[tokio::test]
async fn list_in_transaction_after_column_type_change() {
    let f = fixture().await;
    for i in 0..3 {
        f.task(&format!("t{i}"), 1).await;
    }
    let db = second_pool(&f, 1).await;
    let user = f.user.id;
    // Warm: the list statement is cached on the pool's only connection.
    let page = db
        .transaction(|tx| async move { tx.tasks().list_by_user(user, PageRequest::first(2)).await })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE tasks ALTER COLUMN name TYPE text")
        .await
        .unwrap();
    let mut failures = Vec::new();
    for round in 0..3 {
        let result = db
            .transaction_with(TransactionOptions::default().retries(3), |tx| async move {
                tx.tasks().list_by_user(user, PageRequest::first(2)).await
            })
            .await;
        if let Err(e) = result {
            failures.push(format!(
                "round {round}: {e} (sqlstate {:?}, retryable {})",
                e.sqlstate().map(|s| s.code().to_owned()),
                e.is_retryable()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "list_by_user in a transaction after tasks.name varchar->text:\n{}",
        failures.join("\n")
    );
}

/// Same for `latest_for_task` (one of the page functions) after
/// `task_executions.worker_id varchar -> text`.
#[tokio::test]
async fn latest_for_task_in_transaction_after_column_type_change() {
    let f = fixture().await;
    let task = f.task("t", 1).await;
    f.queue.enqueue(task.id, None).await.unwrap();
    let db = second_pool(&f, 1).await;
    let id = task.id;
    db.transaction(|tx| async move { tx.executions().latest_for_task(id).await })
        .await
        .unwrap()
        .unwrap();
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE task_executions ALTER COLUMN worker_id TYPE text")
        .await
        .unwrap();
    let mut failures = Vec::new();
    for round in 0..3 {
        let result = db
            .transaction_with(TransactionOptions::default().retries(3), |tx| async move {
                tx.executions().latest_for_task(id).await
            })
            .await;
        if let Err(e) = result {
            failures.push(format!(
                "round {round}: {e} (sqlstate {:?}, retryable {})",
                e.sqlstate().map(|s| s.code().to_owned()),
                e.is_retryable()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "latest_for_task in a transaction after worker_id varchar->text:\n{}",
        failures.join("\n")
    );
}

/// Outside transactions the same type change heals, but each stale
/// connection that meets it closes every idle connection of the pool: a
/// warm pool of 4 should keep serving every call.
#[tokio::test]
async fn list_outside_transaction_after_column_type_change_heals() {
    let f = fixture().await;
    f.task("t", 1).await;
    let db = second_pool(&f, 4).await;
    let tasks = PgTaskRepository::new(db.clone());
    let executions = PgExecutionRepository::new(db.clone());
    // Warm all four connections with the list statements.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let tasks = tasks.clone();
            let user = f.user.id;
            tokio::spawn(async move {
                let mut tx = Vec::new();
                for _ in 0..5 {
                    tx.push(
                        tasks
                            .list_by_user(user, PageRequest::first(2))
                            .await
                            .unwrap(),
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE tasks ALTER COLUMN name TYPE text; \
             ALTER TABLE task_executions ALTER COLUMN worker_id TYPE text",
        )
        .await
        .unwrap();
    for round in 0..8 {
        tasks
            .list_by_user(f.user.id, PageRequest::first(2))
            .await
            .unwrap_or_else(|e| panic!("round {round}: tasks.list_by_user: {e}"));
        tasks
            .list(PageRequest::first(2))
            .await
            .unwrap_or_else(|e| panic!("round {round}: tasks.list: {e}"));
        executions
            .list(PageRequest::first(2))
            .await
            .unwrap_or_else(|e| panic!("round {round}: executions.list: {e}"));
    }
}

/// One worker round through `db`: user, task, enqueue, claim, heartbeat,
/// complete, lists, rescue, prune.
pub(crate) async fn round(db: &Database, tag: &str) -> Result<(), String> {
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let executions = PgExecutionRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let e = |what: &str, err: voidrunner_db::Error| format!("{tag}: {what}: {err}");
    let user = users
        .create(NewUser::new(
            format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple()),
            PasswordHash::new("h"),
        ))
        .await
        .map_err(|x| e("users.create", x))?;
    let task = tasks
        .create(NewTask::new(user.id, "t", "print(1)").priority(3))
        .await
        .map_err(|x| e("tasks.create", x))?;
    let queued = queue
        .enqueue(task.id, None)
        .await
        .map_err(|x| e("enqueue", x))?;
    let jobs = queue
        .claim(tag, 1000, LEASE)
        .await
        .map_err(|x| e("claim", x))?;
    // Other workers' rounds may claim it first (claim takes any work).
    let _ = queued;
    for j in &jobs {
        queue
            .heartbeat(j.execution.id, tag, LEASE)
            .await
            .map_err(|x| e("heartbeat", x))?;
        queue
            .complete(j.execution.id, tag, Outcome::completed(0))
            .await
            .map_err(|x| e("complete", x))?;
    }
    users
        .list(PageRequest::first(3))
        .await
        .map_err(|x| e("users.list", x))?;
    tasks
        .list(PageRequest::first(3))
        .await
        .map_err(|x| e("tasks.list", x))?;
    tasks
        .list_by_user(user.id, PageRequest::first(3))
        .await
        .map_err(|x| e("tasks.list_by_user", x))?;
    tasks
        .list_by_status(TaskStatus::Completed, PageRequest::first(3))
        .await
        .map_err(|x| e("tasks.list_by_status", x))?;
    executions
        .list(PageRequest::first(3))
        .await
        .map_err(|x| e("executions.list", x))?;
    executions
        .list_by_task(task.id, PageRequest::first(3))
        .await
        .map_err(|x| e("executions.list_by_task", x))?;
    executions
        .list_by_status(ExecutionStatus::Completed, PageRequest::first(3))
        .await
        .map_err(|x| e("executions.list_by_status", x))?;
    let latest = executions
        .latest_for_task(task.id)
        .await
        .map_err(|x| e("latest_for_task", x))?;
    if latest.is_none() {
        return Err(format!("{tag}: latest_for_task found no run"));
    }
    queue
        .rescue_expired(RescuePolicy::default())
        .await
        .map_err(|x| e("rescue", x))?;
    queue
        .prune(Duration::from_secs(3600), 100)
        .await
        .map_err(|x| e("prune", x))?;
    Ok(())
}

/// The invariants the domain promises, checked with SQL.
async fn consistent(client: &tokio_postgres::Client) -> Result<(), String> {
    let row = client
        .query_one(
            "SELECT \
               (SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
                 WHERE e.status = 'running' AND t.status <> 'running'), \
               (SELECT count(*) FROM task_executions e JOIN tasks t ON t.id = e.task_id \
                 WHERE e.status = 'pending' AND t.status <> 'pending'), \
               (SELECT count(*) FROM tasks t WHERE t.status = 'running' AND NOT EXISTS \
                 (SELECT 1 FROM task_executions e WHERE e.task_id = t.id AND e.status = 'running')), \
               (SELECT count(*) FROM task_executions WHERE status = 'running' AND lease_expires_at IS NULL)",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let v: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if v == (0, 0, 0, 0) {
        Ok(())
    } else {
        Err(format!("inconsistent: {v:?}"))
    }
}

/// Operator: V7 and every later version down to V6 and up again while 4
/// workers of another instance loop through whole rounds. Calls fail while
/// they are gone; after
/// the up, every call of the warm pool works again and the invariants
/// hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v7_and_v8_down_and_up_under_load() {
    let first = TestDatabase::new().await.unwrap();
    let mut config = first.config().await.unwrap();
    config.max_connections = 4;
    config.min_connections = 4;
    let second = Database::connect(config).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let db = second.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut ok = 0;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match round(&db, &format!("w{w}-{n}")).await {
                        Ok(()) => ok += 1,
                        Err(e) => errors.push(e),
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latest = voidrunner_db::migrate::latest_version();
    // Three down/up cycles; a migration that fails is run again (as a
    // restarted service would), and its error is recorded.
    let mut migration_errors = Vec::new();
    for cycle in 0..3 {
        loop {
            match first.migrate_down(DownTarget::ToVersion(6)).await {
                Ok(mut v) => {
                    v.sort();
                    assert_eq!(v, (7..=latest).collect::<Vec<_>>());
                    break;
                }
                Err(e) => migration_errors.push(format!("cycle {cycle} down: {e:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        loop {
            match first.migrate().await {
                Ok(v) => {
                    assert_eq!(v, (7..=latest).collect::<Vec<_>>());
                    break;
                }
                Err(e) => migration_errors.push(format!("cycle {cycle} up: {e:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut during = Vec::new();
    for w in workers {
        let (ok, errors) = w.await.unwrap();
        assert!(ok > 0);
        during.extend(errors);
    }
    eprintln!(
        "{} errors while V7 and V8 were down, e.g. {:?}",
        during.len(),
        during.iter().take(3).collect::<Vec<_>>()
    );
    // After the up: every call on every warm connection works.
    let rounds: Vec<_> = (0..8)
        .map(|i| {
            let db = second.clone();
            tokio::spawn(async move { round(&db, &format!("after-{i}")).await })
        })
        .collect();
    let mut after = Vec::new();
    for r in rounds {
        if let Err(e) = r.await.unwrap() {
            after.push(e);
        }
    }
    // Stuck work left by calls that failed mid-way: running executions
    // are leased, pending ones claimable.
    let client = first.raw_client().await.unwrap();
    consistent(&client).await.unwrap();
    assert!(after.is_empty(), "after the up: {after:?}");
    assert!(
        migration_errors.is_empty(),
        "{} migrations failed under load:\n{}",
        migration_errors.len(),
        migration_errors.join("\n")
    );
    // Nothing left pending that a claim cannot take, nothing running
    // without an owner.
    let queue = PgExecutionQueue::new(second.clone());
    let left = queue.claim("drain", 1000, LEASE).await.unwrap();
    for j in &left {
        queue
            .complete(j.execution.id, "drain", Outcome::completed(0))
            .await
            .unwrap();
    }
    let stuck: i64 = client
        .query_one(
            "SELECT count(*) FROM task_executions WHERE status = 'pending' \
               OR (status = 'running' AND worker_id IS NULL)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stuck, 0);
}

/// A schema of its own through the URL (`options=-c search_path=vr`):
/// migrations, then every call. Then the operator renames the schema
/// (`ALTER SCHEMA vr RENAME TO vr_blue`) and points the URL at the new
/// name: every call still works, the V7 and V8 functions included (they follow
/// the caller's search_path, as every statement of the crate does).
#[tokio::test]
async fn schema_through_the_url_and_renamed() {
    let empty = TestDatabase::empty().await.unwrap();
    empty
        .raw_client()
        .await
        .unwrap()
        .batch_execute("CREATE SCHEMA vr")
        .await
        .unwrap();
    // A pooler refuses `options` at connect (the crate says so with a
    // typed error); the schema setting is then the server's own, so
    // this test goes to the server directly in every mode.
    let base: DbConfig = empty.config().await.unwrap();
    let base = base.direct_config().unwrap_or(base);
    let with_path = |path: &str| {
        let mut config = base.clone();
        config
            .pg_config_mut()
            .options(format!("-c search_path={path}"));
        config.max_connections = 2;
        config.min_connections = 1;
        config
    };
    let db = Database::connect(with_path("vr")).await.unwrap();
    db.migrate().await.unwrap();
    let client = empty.raw_client().await.unwrap();
    let in_public: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tasks'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_public, 0);
    for i in 0..3 {
        round(&db, &format!("vr{i}")).await.unwrap();
    }
    // A caller with the schema later in its path works alike.
    let db2 = Database::connect(with_path("\"$user\",vr,public"))
        .await
        .unwrap();
    round(&db2, "vr-late").await.unwrap();
    db.close(Duration::from_secs(5)).await;
    db2.close(Duration::from_secs(5)).await;

    client
        .batch_execute("ALTER SCHEMA vr RENAME TO vr_blue")
        .await
        .unwrap();
    let blue = Database::connect(with_path("vr_blue")).await.unwrap();
    let result = round(&blue, "blue").await;
    let configs: Vec<String> = client
        .query(
            "SELECT DISTINCT array_to_string(proconfig, ',') FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'vr_blue' AND p.proconfig IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        result.is_ok(),
        "after the schema rename: {result:?}; functions still say {configs:?}"
    );
}

/// A claim in a `Database::transaction` that then queues a follow-up task,
/// racing a user's transaction that edits that task and cancels it (task
/// lock, then its execution: the crate's order): no deadlock. The claim
/// passes over the execution of the task the user holds without locking
/// it (a claim that locked the execution first, and kept it, deadlocked
/// here with 40P01).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_in_a_transaction_does_not_deadlock_with_an_edit_then_cancel() {
    claim_then_enqueue_vs_edit_then_cancel().await;
}

async fn claim_then_enqueue_vs_edit_then_cancel() {
    let f = fixture().await;
    let follow = f.task("follow-up", 10).await;
    let e1 = f.queue.enqueue(follow.id, None).await.unwrap();
    let (b_locked_tx, b_locked) = tokio::sync::oneshot::channel::<()>();
    let (a_claimed_tx, a_claimed) = tokio::sync::oneshot::channel::<()>();
    let b_locked_tx = std::sync::Mutex::new(Some(b_locked_tx));
    let a_claimed = std::sync::Mutex::new(Some(a_claimed));
    let db_b = f.db.db().clone();
    let follow_id = follow.id;
    // B: a user's request: rename the task, then cancel it.
    let b = tokio::spawn(async move {
        let b_locked_tx = &b_locked_tx;
        let a_claimed = &a_claimed;
        db_b.transaction(|tx| async move {
            tx.tasks()
                .update(
                    follow_id,
                    TaskUpdate {
                        name: Some("renamed".into()),
                        ..Default::default()
                    },
                )
                .await?;
            if let Some(s) = b_locked_tx.lock().unwrap().take() {
                let _ = s.send(());
            }
            let wait = a_claimed.lock().unwrap().take();
            if let Some(w) = wait {
                let _ = w.await;
            }
            tx.tasks()
                .update_status(follow_id, TaskStatus::Cancelled)
                .await
        })
        .await
    });
    b_locked.await.unwrap();
    let db_a = f.db.db().clone();
    let a_claimed_tx = std::sync::Mutex::new(Some(a_claimed_tx));
    // A: a scheduler's transaction: claim, then queue the follow-up
    // (idempotent: it is already queued).
    let a = tokio::spawn(async move {
        let a_claimed_tx = &a_claimed_tx;
        db_a.transaction(|tx| async move {
            let jobs = tx.queue().claim("sched", 10, LEASE).await?;
            if let Some(s) = a_claimed_tx.lock().unwrap().take() {
                let _ = s.send(());
            }
            // Let B's cancel reach its wait on the execution.
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.queue().enqueue(follow_id, None).await?;
            Ok(jobs.len())
        })
        .await
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    fn describe<T>(r: &Result<T, voidrunner_db::Error>) -> String {
        match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!(
                "{e} (sqlstate {:?})",
                e.sqlstate().map(|s| s.code().to_owned())
            ),
        }
    }
    let (da, db) = (describe(&a), describe(&b));
    let _ = e1;
    assert!(
        a.is_ok() && b.is_ok(),
        "claim+enqueue: {da}; rename+cancel: {db}"
    );
}

/// The V7 up migration locks users, tasks, then task_executions (DROP and
/// CREATE TRIGGER, one transaction) while a service transaction has read an
/// execution and then reads its task (task_executions, then tasks): a
/// deadlock. Whichever side the server picks to break it is tried again:
/// the migration (the migrator retries a deadlock as it retries a lock
/// timeout), or the service's transaction (40P01 is retryable). Both end
/// well.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_v7_migration_and_a_reader_in_the_other_order_both_end_well() {
    let first = TestDatabase::new().await.unwrap();
    let users = PgUserRepository::new(first.db().clone());
    let user = users
        .create(NewUser::new("dl@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let tasks = PgTaskRepository::new(first.db().clone());
    let task = tasks
        .create(NewTask::new(user.id, "t", "print(1)"))
        .await
        .unwrap();
    let queue = PgExecutionQueue::new(first.db().clone());
    let execution = queue.enqueue(task.id, None).await.unwrap();
    let latest = voidrunner_db::migrate::latest_version();
    first.migrate_down(DownTarget::ToVersion(6)).await.unwrap();

    let mut config = first.config().await.unwrap();
    config.max_connections = 2;
    config.min_connections = 1;
    let service = Database::connect(config).await.unwrap();
    let read = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Notify::new());
    let (eid, tid) = (execution.id, task.id);
    let reader = {
        let (read, go) = (read.clone(), go.clone());
        // The first attempt meets the migration; one the server chose to
        // break the deadlock with runs again (40P01 is retryable), without
        // the meeting.
        let first = Arc::new(AtomicBool::new(true));
        tokio::spawn(async move {
            service
                .transaction_with(TransactionOptions::default().retries(3), |tx| {
                    let (read, go, first) = (read.clone(), go.clone(), first.clone());
                    async move {
                        // By hand: the crate's statements need the latest
                        // schema (V9's scope check), and this is V6's.
                        let client = tx.client()?;
                        let e: Uuid = client
                            .query_one("SELECT id FROM task_executions WHERE id = $1", &[&eid])
                            .await?
                            .get(0);
                        if first.swap(false, Ordering::AcqRel) {
                            read.notify_one();
                            go.notified().await;
                        }
                        let t: Uuid = client
                            .query_one("SELECT id FROM tasks WHERE id = $1", &[&tid])
                            .await?
                            .get(0);
                        Ok((e, t))
                    }
                })
                .await
        })
    };
    read.notified().await;
    let migration = {
        let db = first.db().clone();
        tokio::spawn(async move { db.migrate().await })
    };
    // The migration waits for the reader's lock on task_executions; then
    // the reader asks for tasks, which the migration holds.
    let observer = first.raw_client().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the migration never waited"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(observer);
    go.notify_one();
    let reader = reader.await.unwrap();
    let migrated = migration.await.unwrap();
    assert!(
        migrated
            .as_ref()
            .is_ok_and(|v| *v == (7..=latest).collect::<Vec<_>>())
            && reader.is_ok(),
        "migrate: {migrated:?}\nreader: {:?}",
        reader.map(|_| ())
    );
}

/// Another caller runs `voidrunner_claim` itself (a script of the
/// operator's, a second application): a blank or missing claimer, a batch
/// below one and a lease that is not positive and finite are refused with
/// 22023 (invalid_parameter_value), naming the argument, and nothing is
/// claimed. The claim function of V7, which the previous release's
/// instances call during an upgrade, is still there after V8.
#[tokio::test]
async fn the_claim_function_refuses_bad_arguments_from_any_caller() {
    let f = fixture().await;
    let queued = f.queued(3, |_| 0).await;
    let client = f.db.raw_client().await.unwrap();
    // (the argument refused, claimer, max_rows, lease_seconds)
    type Case = (&'static str, Option<&'static str>, Option<i64>, Option<f64>);
    let cases: [Case; 9] = [
        ("claimer", None, Some(1), Some(30.0)),
        ("claimer", Some(""), Some(1), Some(30.0)),
        ("claimer", Some("  "), Some(1), Some(30.0)),
        ("max_rows", Some("w"), Some(0), Some(30.0)),
        ("max_rows", Some("w"), None, Some(30.0)),
        ("lease_seconds", Some("w"), Some(1), Some(-100.0)),
        ("lease_seconds", Some("w"), Some(1), Some(f64::NAN)),
        ("lease_seconds", Some("w"), Some(1), Some(f64::INFINITY)),
        ("lease_seconds", Some("w"), Some(1), None),
    ];
    for (argument, claimer, max_rows, lease) in cases {
        let err = client
            .query(
                "SELECT id FROM voidrunner_claim($1, $2, $3)",
                &[&claimer, &max_rows, &lease],
            )
            .await
            .expect_err(argument);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "22023", "{argument}: {db:?}");
        assert!(db.message().contains(argument), "{argument}: {db:?}");
    }
    let pending: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status = 'pending'",
            &[],
        )
        .await;
    assert_eq!(pending, queued.len() as i64, "nothing claimed");
    let old: i64 = f
        .scalar("SELECT count(*) FROM voidrunner_claim_next(1)", &[])
        .await;
    assert_eq!(old, 1, "V7's claim function still answers");
}
