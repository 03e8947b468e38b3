use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use voidrunner_db::migrate::{self, HISTORY_TABLE, MIGRATION_LOCK_KEY};
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::tokio_postgres::{self, NoTls};
use voidrunner_db::{Database, DownTarget, Error};

use crate::raw;

/// Everything migrations create in `public`, as sorted text lines: tables,
/// columns with types, defaults and nullability, constraints, indexes,
/// triggers and functions.
async fn catalog(db: &Database) -> BTreeSet<String> {
    let client = raw(db).await;
    let queries = [
        "SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')",
        "SELECT format('column %s.%s %s default=%s notnull=%s', table_name, column_name, \
         format_type(a.atttypid, a.atttypmod), column_default, is_nullable) \
         FROM information_schema.columns ic \
         JOIN pg_attribute a ON a.attrelid = format('public.%I', ic.table_name)::regclass \
          AND a.attname = ic.column_name WHERE table_schema = 'public'",
        "SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid)) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
         WHERE c.relnamespace = 'public'::regnamespace",
        "SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal",
        "SELECT 'function ' || p.proname || ': ' || pg_get_functiondef(p.oid) FROM pg_proc p \
         WHERE p.pronamespace = 'public'::regnamespace",
    ];
    let mut lines = BTreeSet::new();
    for q in queries {
        for row in client.query(q, &[]).await.expect(q) {
            lines.insert(row.get::<_, String>(0));
        }
    }
    lines
}

/// The versions above `version`, oldest first: what migrating up from it
/// applies.
fn above(version: i32) -> Vec<i32> {
    (version + 1..=migrate::latest_version()).collect()
}

/// The versions above `version`, newest first: what reverting to it undoes.
fn above_desc(version: i32) -> Vec<i32> {
    above(version).into_iter().rev().collect()
}

#[tokio::test]
async fn up_down_up_leaves_the_catalog_of_a_single_up() {
    let test_db = TestDatabase::empty().await.unwrap();
    let applied = test_db.migrate().await.unwrap();
    assert_eq!(
        applied,
        migrate::embedded()
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>()
    );
    let once = catalog(&test_db).await;
    assert!(once.iter().any(|l| l == "table tasks"), "{once:#?}");
    assert!(
        once.iter()
            .any(|l| l.starts_with("trigger CREATE TRIGGER tasks_set_updated_at"))
    );

    let reverted = test_db
        .migrate_down(DownTarget::ToVersion(0))
        .await
        .unwrap();
    assert_eq!(reverted, applied.iter().rev().copied().collect::<Vec<_>>());
    // Only the history table is left: the down scripts removed everything
    // else the up scripts added.
    let empty = catalog(&test_db).await;
    assert!(
        empty.iter().all(|l| l.contains(HISTORY_TABLE)),
        "left behind after down: {empty:#?}"
    );
    let status = test_db.migration_status().await.unwrap();
    assert!(status.applied.is_empty());
    assert_eq!(status.pending.len(), migrate::embedded().len());

    test_db.migrate().await.unwrap();
    let twice = catalog(&test_db).await;
    assert_eq!(once, twice);

    // And the template-cloned databases tests use have the same catalog.
    let cloned = TestDatabase::new().await.unwrap();
    assert_eq!(catalog(&cloned).await, once);
}

#[tokio::test]
async fn eight_instances_migrating_at_once_apply_each_version_once() {
    let test_db = TestDatabase::empty().await.unwrap();
    let config = test_db.config().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut config = config.clone();
        config.min_connections = 0;
        tasks.spawn(async move {
            // Each "instance" has its own pool, as separate services would.
            let db = Database::connect_lazy(config).unwrap();
            db.migrate().await
        });
    }
    let mut applied_by_anyone = Vec::new();
    while let Some(result) = tasks.join_next().await {
        applied_by_anyone.extend(result.unwrap().expect("every instance succeeds"));
    }
    applied_by_anyone.sort();
    let expected: Vec<i32> = migrate::embedded().iter().map(|m| m.version).collect();
    assert_eq!(
        applied_by_anyone, expected,
        "each version applied by exactly one instance"
    );

    let client = raw(&test_db).await;
    let rows = client
        .query(
            &format!(
                "SELECT version, count(*) FROM {HISTORY_TABLE} GROUP BY version ORDER BY version"
            ),
            &[],
        )
        .await
        .unwrap();
    let history: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        history,
        expected.iter().map(|v| (*v, 1)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn status_and_stepwise_down() {
    let test_db = TestDatabase::empty().await.unwrap();
    let before = test_db.migration_status().await.unwrap();
    assert_eq!(before.current_version(), 0);
    assert!(before.applied.is_empty());

    test_db.migrate().await.unwrap();
    let after = test_db.migration_status().await.unwrap();
    assert_eq!(after.current_version(), migrate::latest_version());
    assert!(after.pending.is_empty());
    assert_eq!(after.applied[0].name, "initial_schema");
    assert!(after.to_string().contains("applied  V1__initial_schema"));

    // A second run applies nothing.
    assert!(test_db.migrate().await.unwrap().is_empty());

    let latest = migrate::latest_version();
    assert_eq!(
        test_db.migrate_down(DownTarget::Steps(1)).await.unwrap(),
        vec![latest]
    );
    let status = test_db.migration_status().await.unwrap();
    assert_eq!(status.pending.last().map(|m| m.version), Some(latest));
    test_db
        .migrate_down(DownTarget::ToVersion(0))
        .await
        .unwrap();
    assert!(
        test_db
            .migrate_down(DownTarget::Steps(1))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_failed_migration_releases_the_lock_and_applies_nothing() {
    let test_db = TestDatabase::empty().await.unwrap();
    // A table in the way makes V1 fail half-way through its transaction.
    raw(&test_db)
        .await
        .batch_execute("CREATE TABLE task_executions (id int)")
        .await
        .unwrap();
    let err = test_db.migrate().await.unwrap_err();
    assert!(
        matches!(err, voidrunner_db::Error::Migration { .. }),
        "{err:?}"
    );

    let client = raw(&test_db).await;
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap()
        .get(0);
    assert!(free, "the migration lock is still held after a failure");
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();
    let users: Option<String> = client
        .query_one("SELECT to_regclass('public.users')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, None, "V1 was rolled back");
    assert_eq!(
        test_db.migration_status().await.unwrap().current_version(),
        0
    );
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let test_db = TestDatabase::new().await.unwrap();
    raw(&test_db)
        .await
        .execute(
            &format!("UPDATE {HISTORY_TABLE} SET checksum = '1' WHERE version = 1"),
            &[],
        )
        .await
        .unwrap();
    let err = test_db.migrate().await.unwrap_err();
    assert!(
        matches!(err, voidrunner_db::Error::Migration { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn migrating_in_process_clears_cached_statements() {
    // One connection, so the statement cached before is the one reused after.
    let test_db = TestDatabase::with_config(|c| {
        c.max_connections = 1;
        c.min_connections = 1;
    })
    .await
    .unwrap();
    let query = "SELECT id, email FROM users";
    {
        let client = raw(&test_db).await;
        let stmt = client.prepare_cached(query).await.unwrap();
        client.query(&stmt, &[]).await.unwrap();
        assert_eq!(client.statement_cache.size(), 1);
    }
    test_db
        .migrate_down(DownTarget::ToVersion(0))
        .await
        .unwrap();
    test_db.migrate().await.unwrap();
    let client = raw(&test_db).await;
    assert_eq!(
        client.statement_cache.size(),
        0,
        "migrate cleared the cache"
    );
    let stmt = client.prepare_cached(query).await.unwrap();
    client
        .query(&stmt, &[])
        .await
        .expect("the stale plan of the dropped table was forgotten");
}

#[tokio::test]
async fn v2_backfills_pending_executions_of_a_v1_database() {
    let test_db = TestDatabase::new().await.unwrap();
    test_db
        .migrate_down(DownTarget::ToVersion(1))
        .await
        .unwrap();
    let client = raw(&test_db).await;
    client
        .batch_execute(
            "INSERT INTO users (id, email, password_hash) \
               VALUES ('00000000-0000-0000-0000-000000000001', 'v1@example.com', 'h'); \
             INSERT INTO tasks (id, user_id, name, script_content, priority) \
               VALUES ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 't', 'x', 7); \
             INSERT INTO task_executions (task_id, status, created_at) VALUES \
               ('00000000-0000-0000-0000-000000000002', 'pending', now() - interval '1 hour'), \
               ('00000000-0000-0000-0000-000000000002', 'completed', now() - interval '2 hours');",
        )
        .await
        .unwrap();
    drop(client);
    let applied = test_db.migrate().await.unwrap();
    assert_eq!(applied.first(), Some(&2), "{applied:?}");
    let rows = raw(&test_db)
        .await
        .query(
            "SELECT status, priority, run_after = created_at, attempt FROM task_executions ORDER BY status DESC",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, bool, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pending".to_owned(), 7, true, 0),
            ("completed".to_owned(), 0, false, 0),
        ]
    );
}

/// Bounds a call that must give up by itself, so that a regression fails
/// the test instead of hanging it.
async fn within<T>(limit: Duration, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, call)
        .await
        .expect("the migration kept waiting for the lock instead of giving up")
}

/// A connection of its own (outside the pool) named `application_name`.
async fn session(test_db: &TestDatabase, application_name: &str) -> tokio_postgres::Client {
    let mut pg = test_db.config().await.unwrap().pg_config().clone();
    pg.application_name(application_name);
    let (client, connection) = pg.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

const ONE_ACTIVE_IDX: &str = "task_executions_one_active_per_task_idx";

/// `(valid, unique)` of an index, `None` when it does not exist.
async fn index_state(db: &Database, name: &str) -> Option<(bool, bool)> {
    raw(db)
        .await
        .query_opt(
            "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = to_regclass($1)::oid",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

/// One user and a task `0…0a{n}` for each `n` in `tasks`.
async fn seed_tasks(db: &Database, tasks: &[u8]) {
    let mut sql = String::from(
        "INSERT INTO users (id, email, password_hash) \
         VALUES ('00000000-0000-0000-0000-000000000001', 'm@example.com', 'h');",
    );
    for n in tasks {
        sql.push_str(&format!(
            "INSERT INTO tasks (id, user_id, name, script_content) \
             VALUES ('00000000-0000-0000-0000-0000000000a{n}', '00000000-0000-0000-0000-000000000001', 't{n}', 'x');"
        ));
    }
    raw(db).await.batch_execute(&sql).await.unwrap();
}

#[tokio::test]
async fn a_blocked_migration_gives_up_without_stalling_the_table_and_applies_later() {
    let lock_timeout = Duration::from_millis(250);
    let test_db = TestDatabase::with_config(|c| {
        c.migration_lock_timeout = lock_timeout;
        c.migration_retries = 2;
    })
    .await
    .unwrap();
    assert_eq!(
        test_db
            .migrate_down(DownTarget::ToVersion(3))
            .await
            .unwrap(),
        above_desc(3)
    );
    seed_tasks(&test_db, &[1]).await;
    // An ended execution, which V4's backfill leaves alone: the holder's row
    // lock and its ROW SHARE table lock block only V4's ALTER TABLE.
    raw(&test_db)
        .await
        .batch_execute(
            "INSERT INTO task_executions (id, task_id, status, started_at, completed_at) \
             VALUES ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000a1', \
                     'completed', now(), now())",
        )
        .await
        .unwrap();
    let holder = session(&test_db, "vrdb-test-lock-holder").await;
    let holder_pid = backend_pid(&holder).await;
    holder
        .batch_execute(
            "BEGIN; SELECT id /* holder-private-query */ FROM task_executions \
             WHERE id = '00000000-0000-0000-0000-0000000000e1' FOR UPDATE",
        )
        .await
        .unwrap();

    // A third session keeps reading the table while the migration tries to
    // get its ACCESS EXCLUSIVE lock; reads queue behind that request.
    let reader = session(&test_db, "vrdb-test-reader").await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                reader
                    .query_one("SELECT count(*) FROM task_executions", &[])
                    .await
                    .unwrap();
                latencies.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies
        }
    });

    let started = Instant::now();
    let err = within(Duration::from_secs(30), test_db.migrate())
        .await
        .unwrap_err();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let latencies = reads.await.unwrap();

    assert!(err.is_lock_timeout(), "{err:?}");
    assert!(matches!(err, Error::Migration { .. }), "{err:?}");
    let message = err.to_string();
    for needle in [
        "V4__running_needs_lease gave up after 3 attempts",
        "lock_timeout (250ms)",
        "AccessExclusiveLock on relation task_executions",
        &format!("pid {holder_pid} "),
        "\"vrdb-test-lock-holder\"",
        "\"idle in transaction\"",
        "holding RowShareLock",
    ] {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
    assert!(!message.contains("holder-private-query"), "{message}");
    // Three waits of one lock_timeout and two backoffs (at least 125 ms and
    // 250 ms), with a generous upper bound for a loaded machine.
    assert!(
        took >= lock_timeout * 3 + Duration::from_millis(375),
        "{took:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let worst = *latencies.iter().max().unwrap();
    assert!(
        worst >= Duration::from_millis(50),
        "no read ever queued behind the migration ({worst:?}): the test blocked nothing"
    );
    assert!(
        worst < lock_timeout + Duration::from_millis(750),
        "a read waited {worst:?}, far longer than one lock_timeout, though the migration \
         kept trying for {took:?}"
    );
    assert_eq!(
        test_db.migration_status().await.unwrap().current_version(),
        3,
        "V4 was rolled back"
    );

    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(test_db.migrate().await.unwrap(), above(3));
}

#[tokio::test]
async fn a_blocked_down_migration_gives_up_too() {
    let test_db = TestDatabase::with_config(|c| {
        c.migration_lock_timeout = Duration::from_millis(100);
        c.migration_retries = 0;
    })
    .await
    .unwrap();
    // V5 is the one under test (V6 takes the same lock, a step earlier).
    assert_eq!(
        test_db
            .migrate_down(DownTarget::ToVersion(5))
            .await
            .unwrap(),
        above_desc(5)
    );
    let holder = session(&test_db, "vrdb-test-reader-in-tx").await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM task_executions")
        .await
        .unwrap();
    let err = within(
        Duration::from_secs(30),
        test_db.migrate_down(DownTarget::Steps(1)),
    )
    .await
    .unwrap_err();
    assert!(err.is_lock_timeout(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("V5__one_active_execution gave up after 1 attempt:"),
        "{message}"
    );
    assert!(
        message.contains("holding AccessShareLock") && message.contains("vrdb-test-reader-in-tx"),
        "{message}"
    );
    assert_eq!(
        test_db.migration_status().await.unwrap().current_version(),
        5
    );
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((true, true))
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        test_db.migrate_down(DownTarget::Steps(1)).await.unwrap(),
        vec![5]
    );
}

#[tokio::test]
async fn v5_runs_outside_a_transaction_and_is_recorded_as_refinery_would() {
    let test_db = TestDatabase::new().await.unwrap();
    let v5 = migrate::embedded().iter().find(|m| m.version == 5).unwrap();
    assert!(!v5.runs_in_transaction());
    assert!(v5.up.contains("CREATE UNIQUE INDEX CONCURRENTLY"));

    assert_eq!(
        test_db
            .migrate_down(DownTarget::ToVersion(4))
            .await
            .unwrap(),
        above_desc(4)
    );
    assert_eq!(index_state(&test_db, ONE_ACTIVE_IDX).await, None);
    assert_eq!(test_db.migrate().await.unwrap(), above(4));
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((true, true)),
        "valid and unique"
    );

    let client = raw(&test_db).await;
    let rows = client
        .query(
            &format!(
                "SELECT version, name, applied_on, checksum FROM {HISTORY_TABLE} \
                 WHERE version IN (4, 5) ORDER BY version"
            ),
            &[],
        )
        .await
        .unwrap();
    let expected = voidrunner_db::migrate::embedded()
        .iter()
        .find(|m| m.version == 5)
        .unwrap();
    let checksum = refinery::Migration::unapplied("V5__one_active_execution", expected.up)
        .unwrap()
        .checksum()
        .to_string();
    assert_eq!(rows[1].get::<_, i32>(0), 5);
    assert_eq!(rows[1].get::<_, String>(1), "one_active_execution");
    assert_eq!(rows[1].get::<_, String>(3), checksum);
    // applied_on in the RFC 3339 form refinery writes and parses, as in the
    // V4 row refinery wrote itself.
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    for (index, row) in rows.iter().enumerate() {
        let applied_on: String = row.get(2);
        let at = time::OffsetDateTime::parse(&applied_on, rfc3339).expect(&applied_on);
        assert!(applied_on.ends_with('Z'), "{applied_on}");
        // Only V5 was applied by this test; V4's row may come from a
        // template database migrated long before.
        if index == 1 {
            assert!(time::OffsetDateTime::now_utc() - at < time::Duration::hours(1));
        }
    }

    // refinery takes the row for its own: nothing to do, nothing divergent.
    assert!(test_db.migrate().await.unwrap().is_empty());
    // ...and checks its checksum like any other.
    client
        .execute(
            &format!("UPDATE {HISTORY_TABLE} SET checksum = '1' WHERE version = 5"),
            &[],
        )
        .await
        .unwrap();
    let err = test_db.migrate().await.unwrap_err();
    assert!(
        matches!(err, Error::Migration { .. }) && err.to_string().contains("V5"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_interrupted_v5_is_repeated_from_the_top() {
    let test_db = TestDatabase::new().await.unwrap();
    test_db
        .migrate_down(DownTarget::ToVersion(4))
        .await
        .unwrap();
    seed_tasks(&test_db, &[1]).await;
    let client = raw(&test_db).await;
    client
        .batch_execute(
            "INSERT INTO task_executions (task_id, status) VALUES \
               ('00000000-0000-0000-0000-0000000000a1', 'pending'), \
               ('00000000-0000-0000-0000-0000000000a1', 'pending')",
        )
        .await
        .unwrap();
    // A run stopped half-way: its first statement committed, and its
    // concurrent build failed (here on the duplicates), which leaves an
    // INVALID index of that name behind.
    client
        .batch_execute(
            "ALTER TABLE task_executions VALIDATE CONSTRAINT task_executions_running_has_lease",
        )
        .await
        .unwrap();
    let failed = client
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {ONE_ACTIVE_IDX} ON task_executions (task_id) \
             WHERE status IN ('pending', 'running')"
        ))
        .await
        .unwrap_err();
    assert_eq!(
        failed.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((false, true)),
        "left INVALID"
    );

    assert_eq!(test_db.migrate().await.unwrap(), above(4));
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((true, true))
    );
    let active: i64 = client
        .query_one(
            "SELECT count(*) FROM task_executions WHERE status IN ('pending', 'running')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 1);

    // A run that got as far as building the index but not recording it.
    test_db
        .migrate_down(DownTarget::ToVersion(4))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {ONE_ACTIVE_IDX} ON task_executions (task_id) \
             WHERE status IN ('pending', 'running')"
        ))
        .await
        .unwrap();
    assert_eq!(test_db.migrate().await.unwrap(), above(4));
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((true, true))
    );
}

#[tokio::test]
async fn a_concurrent_index_build_waiting_for_an_old_transaction_gives_up_and_is_retried_cleanly() {
    let test_db = TestDatabase::with_config(|c| {
        c.migration_lock_timeout = Duration::from_millis(200);
        c.migration_retries = 1;
    })
    .await
    .unwrap();
    test_db
        .migrate_down(DownTarget::ToVersion(4))
        .await
        .unwrap();
    // A transaction with a snapshot older than the build: CREATE INDEX
    // CONCURRENTLY waits for it to end, under lock_timeout.
    let old = session(&test_db, "vrdb-test-old-snapshot").await;
    let old_pid = backend_pid(&old).await;
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();

    let err = within(Duration::from_secs(30), test_db.migrate())
        .await
        .unwrap_err();
    assert!(err.is_lock_timeout(), "{err:?}");
    let message = err.to_string();
    for needle in [
        "V5__one_active_execution gave up after 2 attempts",
        "virtual transaction",
        &format!("pid {old_pid} "),
        "\"vrdb-test-old-snapshot\"",
    ] {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
    assert_eq!(
        test_db.migration_status().await.unwrap().current_version(),
        4,
        "not recorded"
    );
    // The last failed build left its INVALID index; the next run drops it.
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((false, true))
    );

    old.batch_execute("COMMIT").await.unwrap();
    assert_eq!(test_db.migrate().await.unwrap(), above(4));
    assert_eq!(
        index_state(&test_db, ONE_ACTIVE_IDX).await,
        Some((true, true))
    );
}

#[tokio::test]
async fn v5_keeps_one_active_execution_per_task_and_cancels_the_rest() {
    let test_db = TestDatabase::new().await.unwrap();
    test_db
        .migrate_down(DownTarget::ToVersion(4))
        .await
        .unwrap();
    seed_tasks(&test_db, &[1, 2, 3, 4]).await;
    let client = raw(&test_db).await;
    // Duplicates a retried enqueue could make before V5, written as raw SQL.
    client
        .batch_execute(
            "INSERT INTO task_executions \
               (id, task_id, status, created_at, started_at, completed_at, worker_id, lease_expires_at) VALUES \
             ('00000000-0000-0000-0000-000000000a11', '00000000-0000-0000-0000-0000000000a1', 'pending', now() - interval '3 hours', NULL, NULL, NULL, NULL), \
             ('00000000-0000-0000-0000-000000000a12', '00000000-0000-0000-0000-0000000000a1', 'pending', now() - interval '2 hours', NULL, NULL, NULL, NULL), \
             ('00000000-0000-0000-0000-000000000a13', '00000000-0000-0000-0000-0000000000a1', 'running', now() - interval '4 hours', now() - interval '1 hour', NULL, 'w1', now() + interval '1 minute'), \
             ('00000000-0000-0000-0000-000000000a14', '00000000-0000-0000-0000-0000000000a1', 'completed', now() - interval '5 hours', now() - interval '5 hours', now() - interval '5 hours', NULL, NULL), \
             ('00000000-0000-0000-0000-000000000a21', '00000000-0000-0000-0000-0000000000a2', 'pending', now() - interval '2 hours', NULL, NULL, NULL, NULL), \
             ('00000000-0000-0000-0000-000000000a22', '00000000-0000-0000-0000-0000000000a2', 'pending', now() - interval '1 hour', NULL, NULL, NULL, NULL), \
             ('00000000-0000-0000-0000-000000000a31', '00000000-0000-0000-0000-0000000000a3', 'pending', now(), NULL, NULL, NULL, NULL), \
             ('00000000-0000-0000-0000-000000000a41', '00000000-0000-0000-0000-0000000000a4', 'running', now(), now(), NULL, 'w2', now() + interval '1 minute')",
        )
        .await
        .unwrap();

    assert_eq!(test_db.migrate().await.unwrap(), above(4));

    let rows = client
        .query(
            "SELECT right(id::text, 3), status, completed_at IS NOT NULL, lease_expires_at IS NULL \
             FROM task_executions ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, bool, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let row = |id: &str, status: &str, completed: bool, no_lease: bool| {
        (id.to_owned(), status.to_owned(), completed, no_lease)
    };
    assert_eq!(
        got,
        vec![
            // Task 1: the running one stays; both pending ones are cancelled.
            row("a11", "cancelled", true, true),
            row("a12", "cancelled", true, true),
            row("a13", "running", false, false),
            row("a14", "completed", true, true),
            // Task 2: the newer pending one stays.
            row("a21", "cancelled", true, true),
            row("a22", "pending", false, true),
            // Tasks 3 and 4 had one each.
            row("a31", "pending", false, true),
            row("a41", "running", false, false),
        ]
    );
    // From now on the index refuses a second active execution.
    let dup = client
        .execute(
            "INSERT INTO task_executions (task_id) VALUES ('00000000-0000-0000-0000-0000000000a3')",
            &[],
        )
        .await
        .unwrap_err();
    let dup = Error::from(dup);
    assert!(dup.is_conflict(), "{dup:?}");
    assert_eq!(dup.constraint(), Some(ONE_ACTIVE_IDX));
}
