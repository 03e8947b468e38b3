//! Plans of the execution logs' statements (issue #21 §7), on 200,000
//! lines of 400 executions over four daily partitions: with fresh
//! statistics, with statistics taken while the log tables were empty (then
//! loaded, autovacuum off), and as the application role under row-level
//! security. A page, a read after a line and a tail read one partition's
//! key index for about the lines they return; a search finds its chunks by
//! their GIN index and their lines by the lines' key. Every statement of
//! `logs.sql` is covered here or named in [`UNPROFILED`].

use std::collections::BTreeSet;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::Timestamp;
use voidrunner_db::testing::{StatementProfile, profile_statement};

use crate::app_role::AppRole;
use crate::{Repos, repos};

/// The partitions of today and the three days before, 20 users with 20
/// tasks each, one completed execution per task (created on one of the
/// four days), 500 lines each (chunks of 50, as appends of 50 lines make),
/// the word `needle` in line 250 of every tenth task's execution; and one
/// running execution (worker `w`) to append to.
const LOAD: &str = "SELECT voidrunner_log_partition_ensure('day', date_trunc('day', now(), 'UTC') \
                          - make_interval(days => k)) FROM generate_series(0, 3) k; \
     INSERT INTO users (email, password_hash) \
       SELECT 'lp' || g || '@example.com', 'h' FROM generate_series(1, 20) g; \
     INSERT INTO tasks (user_id, name, script_content, status) \
       SELECT u.ids[g % 20 + 1], 'n' || g, 'x', 'completed' \
       FROM generate_series(1, 400) g, (SELECT array_agg(id ORDER BY id) AS ids FROM users) u; \
     INSERT INTO task_executions (task_id, status, created_at, started_at, completed_at, worker_id) \
       SELECT id, 'completed', d, d, d + interval '1 minute', 'w' \
       FROM (SELECT id, date_trunc('day', now(), 'UTC') \
                        - make_interval(days => substr(name, 2)::int % 4) + interval '1 hour' AS d \
             FROM tasks) t; \
     INSERT INTO task_execution_logs \
       (execution_id, execution_created_at, user_id, seq, stream, logged_at, line) \
       SELECT e.id, e.created_at, e.user_id, s, 'stdout', e.created_at, \
              'line ' || s || ' w' || (s % 97) \
              || CASE WHEN s = 250 AND substr(t.name, 2)::int % 10 = 0 THEN ' needle' ELSE '' END \
       FROM task_executions e JOIN tasks t ON t.id = e.task_id, generate_series(0, 499) s; \
     INSERT INTO task_execution_log_chunks (execution_id, execution_created_at, user_id, task_id, \
                                            first_seq, last_seq, document) \
       SELECT l.execution_id, l.execution_created_at, l.user_id, e.task_id, min(l.seq), \
              max(l.seq), to_tsvector('simple', string_agg(l.line, E'\\n' ORDER BY l.seq)) \
       FROM task_execution_logs l JOIN task_executions e ON e.id = l.execution_id \
       GROUP BY l.execution_id, l.execution_created_at, l.user_id, e.task_id, l.seq / 50; \
     INSERT INTO tasks (user_id, name, script_content, status) \
       SELECT id, 'appender', 'x', 'running' FROM users ORDER BY id LIMIT 1; \
     INSERT INTO task_executions (task_id, status, started_at, worker_id, lease_expires_at) \
       SELECT id, 'running', now(), 'w', now() + interval '5 minutes' FROM tasks \
       WHERE name = 'appender';";

/// Statistics of the log tables and every partition taken while empty,
/// autovacuum off for them, so the load is unknown to the planner.
const STALE: &str = "SELECT voidrunner_log_partition_ensure('day', date_trunc('day', now(), 'UTC') \
                          - make_interval(days => k)) FROM generate_series(0, 3) k; \
     DO $$ DECLARE p regclass; BEGIN \
       FOR p IN SELECT inhrelid::regclass FROM pg_inherits \
                WHERE inhparent IN ('task_execution_logs'::regclass, \
                                    'task_execution_log_chunks'::regclass) LOOP \
         EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', p); \
         EXECUTE format('ANALYZE %s', p); \
       END LOOP; END $$; \
     ANALYZE task_execution_logs; ANALYZE task_execution_log_chunks;";

/// Not profiled, on purpose: the partition maintenance's calls make or
/// drop tables (DDL, no plan to speak of), `partitions_waiting` reads the
/// DEFAULT partitions whole (empty but for lines of an execution whose
/// range had no partition yet, which it exists to find), `now` reads no
/// table.
const UNPROFILED: [&str; 4] = [
    "logs.now",
    "logs.partition_drop_expired",
    "logs.partition_ensure",
    "logs.partitions_waiting",
];

/// The second of two runs, as `user` when given (the application role's
/// session, in a transaction scoped to them) or as the superuser.
async fn profile(
    client: &Client,
    user: Option<Uuid>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StatementProfile {
    let mut profile = None;
    for _ in 0..2 {
        if let Some(user) = user {
            // profile_statement's BEGIN is then a no-op and its ROLLBACK
            // ends this transaction, scope and writes.
            client
                .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{user}'"))
                .await
                .unwrap();
        }
        profile = Some(profile_statement(client, sql, params).await.unwrap());
    }
    profile.unwrap()
}

/// Index entries read from the indexes whose names start with `prefix`.
fn entries(p: &StatementProfile, prefix: &str) -> i64 {
    p.index_entries_read
        .iter()
        .filter(|(index, _)| index.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

/// The indexes scanned whose names start with `prefix`.
fn scanned(p: &StatementProfile, prefix: &str) -> Vec<String> {
    p.index_scans
        .keys()
        .filter(|index| index.starts_with(prefix))
        .cloned()
        .collect()
}

/// What the checks need from the load.
struct Load {
    /// An execution, its lines' partition.
    execution: Uuid,
    partition: String,
    /// A user and a task with `needle` lines, and how many each has.
    user: Uuid,
    user_needles: i64,
    task: Uuid,
    /// The running execution.
    running: Uuid,
}

async fn load_facts(admin: &Client) -> Load {
    let row = admin
        .query_one(
            "SELECT l.execution_id, l.tableoid::regclass::text FROM task_execution_logs l \
             JOIN task_executions e ON e.id = l.execution_id \
             JOIN tasks t ON t.id = e.task_id WHERE t.name = 'n7' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (execution, partition) = (row.get(0), row.get(1));
    let row = admin
        .query_one(
            "SELECT user_id, count(*) FROM task_execution_logs WHERE line LIKE '%needle' \
             GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (user, user_needles) = (row.get(0), row.get(1));
    let task = admin
        .query_one("SELECT id FROM tasks WHERE name = 'n20'", &[])
        .await
        .unwrap()
        .get(0);
    let running = admin
        .query_one(
            "SELECT id FROM task_executions WHERE status = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    Load {
        execution,
        partition,
        user,
        user_needles,
        task,
        running,
    }
}

/// The owner of `execution`.
async fn owner(admin: &Client, execution: Uuid) -> Uuid {
    admin
        .query_one(
            "SELECT user_id FROM task_executions WHERE id = $1",
            &[&execution],
        )
        .await
        .unwrap()
        .get(0)
}

/// No table with rows scanned sequentially. A partition that holds none
/// (the DEFAULT one, those made ahead) may be: its scan reads no page, and
/// the planner rightly finds it cheaper than an index.
async fn no_seq_scans(admin: &Client, name: &str, stats: &str, p: &StatementProfile) {
    for table in p.seq_scans.keys() {
        let rows: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            rows, 0,
            "{name} ({stats}): sequential scans {:?}\n{}",
            p.seq_scans, p.plan
        );
    }
}

/// Every statement of `logs.sql` but [`UNPROFILED`], as the superuser
/// (`as_app` None) or as the application role scoped to each row's owner.
/// Returns the names checked.
async fn check(admin: &Client, client: &Client, as_app: bool, stats: &str) -> BTreeSet<String> {
    let load = load_facts(admin).await;
    let mut covered = BTreeSet::new();
    let exec_owner = owner(admin, load.execution).await;
    let scope = |user: Uuid| as_app.then_some(user);

    // A page or a follower's read: from the start and from the middle,
    // 100 lines and the one that tells whether more follow.
    let sql = voidrunner_db::__statement("logs.after").unwrap();
    for after in [-1i64, 250] {
        let limit = 101i64;
        let p = profile(
            client,
            scope(exec_owner),
            sql,
            &[&load.execution, &after, &limit],
        )
        .await;
        let name = format!("logs.after {after}");
        no_seq_scans(admin, &name, stats, &p).await;
        assert_eq!(
            scanned(&p, "task_execution_log"),
            [format!("{}_pkey", load.partition)],
            "{name} ({stats}): one partition's key\n{}",
            p.plan
        );
        assert!(
            entries(&p, "task_execution_log") <= limit,
            "{name} ({stats}): {:?}\n{}",
            p.index_entries_read,
            p.plan
        );
        assert!(
            p.entries_read() <= limit + 5,
            "{name}: {:?}",
            p.index_entries_read
        );
    }
    covered.insert("logs.after".to_owned());

    let sql = voidrunner_db::__statement("logs.tail").unwrap();
    let limit = 100i64;
    let p = profile(client, scope(exec_owner), sql, &[&load.execution, &limit]).await;
    no_seq_scans(admin, "logs.tail", stats, &p).await;
    assert_eq!(
        scanned(&p, "task_execution_log"),
        [format!("{}_pkey", load.partition)],
        "logs.tail ({stats})\n{}",
        p.plan
    );
    assert!(
        p.entries_read() <= limit + 5,
        "logs.tail ({stats}): {:?}\n{}",
        p.index_entries_read,
        p.plan
    );
    covered.insert("logs.tail".to_owned());

    // Searches of a rare word: its chunks by the GIN index or by their
    // owner's index (the scope's chunks; under row-level security the only
    // one: `@@` is not leakproof), their lines by the key; no more chunks
    // read than the word's or the scope's, no more lines than the matching
    // chunks hold.
    let task_owner: Uuid = admin
        .query_one("SELECT user_id FROM tasks WHERE id = $1", &[&load.task])
        .await
        .unwrap()
        .get(0);
    let none_at: Option<Timestamp> = None;
    let (none_id, none_seq): (Option<Uuid>, Option<i64>) = (None, None);
    let fetch = 101i64;
    for (name, owner, user, needles, scope_chunks) in [
        (
            "logs.search_user",
            load.user,
            load.user,
            load.user_needles,
            200,
        ),
        ("logs.search_task", load.task, task_owner, 1, 10),
    ] {
        let sql = voidrunner_db::__statement(name).unwrap();
        let p = profile(
            client,
            scope(user),
            sql,
            &[&owner, &"needle", &none_at, &none_id, &none_seq, &fetch],
        )
        .await;
        no_seq_scans(admin, name, stats, &p).await;
        let plan: serde_json::Value = serde_json::from_str(&p.plan).unwrap();
        assert_eq!(
            plan["Actual Rows"].as_i64(),
            Some(needles),
            "{name}\n{}",
            p.plan
        );
        let chunk_indexes = scanned(&p, "task_execution_log_chunks");
        assert!(
            !chunk_indexes.is_empty()
                && chunk_indexes.iter().all(|index| {
                    index.ends_with("_document_idx") || index.ends_with("_user_id_task_id_idx")
                }),
            "{name} ({stats}): the chunks' GIN or owner index: {:?}\n{}",
            p.index_scans,
            p.plan
        );
        if as_app {
            assert!(
                chunk_indexes
                    .iter()
                    .all(|i| i.ends_with("_user_id_task_id_idx")),
                "{name} ({stats}): {chunk_indexes:?}"
            );
        }
        assert!(
            scanned(&p, "task_execution_logs")
                .iter()
                .all(|index| index.ends_with("_pkey")),
            "{name} ({stats}): {:?}",
            p.index_scans
        );
        // The load's 40 needle chunks from the GIN index and the scope's
        // chunks from the owner's, at most; the 50 lines of each of the
        // scope's needle chunks.
        let chunks = entries(&p, "task_execution_log_chunks");
        assert!(
            chunks <= 40 + scope_chunks,
            "{name} ({stats}): read {:?} (at most {})\n{}",
            p.index_entries_read,
            40 + scope_chunks,
            p.plan
        );
        let lines = entries(&p, "task_execution_logs");
        assert!(
            lines <= needles * 50,
            "{name} ({stats}): read {:?} (at most {} lines)\n{}",
            p.index_entries_read,
            needles * 50,
            p.plan
        );
    }
    covered.insert("logs.search_user".to_owned());
    covered.insert("logs.search_task".to_owned());

    // An append of 100 lines (as the worker; the application role does
    // not append): the execution and its task by their keys, nothing
    // scanned.
    if !as_app {
        let sql = voidrunner_db::__statement("logs.append").unwrap();
        let ids = vec![load.running];
        let workers = vec!["w"];
        let line_ids = vec![load.running; 100];
        let seqs: Vec<i64> = (0..100).collect();
        let streams = vec!["stdout"; 100];
        let times = vec![Timestamp::now(); 100];
        let texts: Vec<String> = (0..100).map(|i| format!("appended {i}")).collect();
        let p = profile(
            client,
            None,
            sql,
            &[&ids, &workers, &line_ids, &seqs, &streams, &times, &texts],
        )
        .await;
        no_seq_scans(admin, "logs.append", stats, &p).await;
        let plan: serde_json::Value = serde_json::from_str(&p.plan).unwrap();
        assert_eq!(plan["Actual Rows"].as_i64(), Some(1), "{}", p.plan);
        // The execution and its task by their keys; the lines' key probed
        // for each line's conflict (the first of the two runs, rolled back,
        // left dead entries of the same keys for the second to pass).
        let logs = entries(&p, "task_execution_log");
        assert!(
            p.entries_read() - logs <= 10 && logs <= 100,
            "logs.append ({stats}): {:?}\n{}",
            p.index_entries_read,
            p.plan
        );
        covered.insert("logs.append".to_owned());
    }
    covered
}

/// The statements of `logs.sql` neither checked nor [`UNPROFILED`].
fn uncovered(covered: &BTreeSet<String>) -> Vec<&'static str> {
    voidrunner_db::__statements()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("logs."))
        .filter(|name| !covered.contains(*name) && !UNPROFILED.contains(name))
        .collect()
}

async fn loaded(before: &str) -> Repos {
    let r = repos().await;
    let admin = r.db.raw_client().await.unwrap();
    admin.batch_execute(before).await.unwrap();
    admin.batch_execute(LOAD).await.unwrap();
    assert_eq!(
        admin
            .query_one("SELECT count(*) FROM task_execution_logs", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        200_000
    );
    drop(admin);
    r
}

#[tokio::test]
async fn log_reads_use_one_partitions_key_and_searches_an_index() {
    let r = loaded("").await;
    let admin = r.db.raw_client().await.unwrap();
    admin.batch_execute("VACUUM ANALYZE").await.unwrap();
    let covered = check(&admin, &admin, false, "fresh").await;
    assert_eq!(uncovered(&covered), Vec::<&str>::new());
}

#[tokio::test]
async fn log_reads_use_one_partitions_key_on_stale_statistics() {
    let r = loaded(STALE).await;
    let admin = r.db.raw_client().await.unwrap();
    // The other tables' statistics are explain.rs's concern: fresh here.
    admin
        .batch_execute("ANALYZE users; ANALYZE tasks; ANALYZE task_executions;")
        .await
        .unwrap();
    check(&admin, &admin, false, "empty").await;
}

#[tokio::test]
async fn log_reads_use_one_partitions_key_as_the_application_role() {
    for (before, stats) in [("", "fresh"), (STALE, "empty")] {
        let r = loaded(before).await;
        let admin = r.db.raw_client().await.unwrap();
        if stats == "fresh" {
            admin.batch_execute("VACUUM ANALYZE").await.unwrap();
        } else {
            admin
                .batch_execute("ANALYZE users; ANALYZE tasks; ANALYZE task_executions;")
                .await
                .unwrap();
        }
        let role = AppRole::create(&r.db).await;
        admin
            .batch_execute(&format!(
                "ALTER TABLE task_execution_logs ENABLE ROW LEVEL SECURITY; \
                 ALTER TABLE task_execution_log_chunks ENABLE ROW LEVEL SECURITY; \
                 GRANT SELECT ON task_execution_logs, task_execution_log_chunks TO {};",
                role.name
            ))
            .await
            .unwrap();
        let app = role.session().await;
        check(&admin, &app, true, stats).await;
    }
}
