//! Every list page walks its index for the rows it returns, with fresh
//! statistics and with statistics taken while the tables were empty;
//! metadata search uses the GIN index for selective filters; every other
//! statement of the users, tasks and executions (`src/queries/`) reads the
//! rows it names and no more. Asserted on the repositories' own SQL
//! (`voidrunner_db::__statements`) with `testing::profile_statement`, which
//! counts the index and sequential scans inside the V7 page functions too;
//! the statements of those files that no check covers fail the test. The
//! sorted lists' checks are `sorted_plans.rs`'s, run here on the same load.

use std::collections::BTreeSet;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use voidrunner_db::testing::{StatementProfile, profile_statement};
use voidrunner_db::{TaskStatus, Timestamp};

use crate::repos;

async fn plan(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), params)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The second of two runs (the first compiles the page function in this
/// session).
async fn profile(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StatementProfile {
    profile_statement(client, sql, params).await.unwrap();
    profile_statement(client, sql, params).await.unwrap()
}

/// As the queue leaves them: one execution per task, in its task's status
/// (so at most one active, and running ones leased), one user with half
/// the tasks, and one task with a long history of completed runs. One user
/// in ten has a concurrency cap of their own (V15), and a lock row of the
/// fair claim (V15's `queue_user_locks`, made at a capped user's first
/// claim): a deleted user's go by the foreign keys' cascade, which plans a
/// scan of the whole table when the statistics say it is empty (then free:
/// no page to read).
pub(crate) const LOAD: &str = "INSERT INTO users (email, password_hash) \
       SELECT 'u' || g || '@example.com', 'h' FROM generate_series(1, 5000) g; \
     INSERT INTO user_concurrency_limits (user_id, max_running) \
       SELECT id, 4 FROM users WHERE email LIKE '%0@example.com'; \
     INSERT INTO queue_user_locks (user_id) \
       SELECT id FROM users WHERE email LIKE '%0@example.com'; \
     INSERT INTO tasks (user_id, name, script_content, priority, status, metadata) \
       SELECT CASE WHEN g % 2 = 0 THEN u.ids[1] ELSE u.ids[g % 5000 + 1] END, 'n', 'x', g % 11, CASE g % 20 WHEN 0 THEN 'running' WHEN 1 THEN 'pending' ELSE 'completed' END, \
              jsonb_build_object('serial', g, 'job', jsonb_build_object('owner', jsonb_build_object('id', g)), \
                                 'tags', jsonb_build_array('x' || g, 'common')) \
       FROM generate_series(1, 20000) g, (SELECT array_agg(id) AS ids FROM users) u; \
     INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id, lease_expires_at) \
       SELECT id, status, \
              CASE WHEN status <> 'pending' THEN now() END, \
              CASE WHEN status = 'completed' THEN now() END, \
              CASE WHEN status <> 'pending' THEN 'w' END, \
              CASE WHEN status = 'running' THEN now() + interval '5 minutes' END \
       FROM tasks; \
     INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
       SELECT t.id, 'completed', now(), now(), 'w' \
       FROM generate_series(1, 5000), (SELECT id FROM tasks WHERE status = 'completed' LIMIT 1) t;";

/// Every list, first page and a page after a cursor, 100 rows (the most a
/// page holds) plus the one that tells whether more follow: its own index
/// scanned, no table scanned, and no more index entries read than the
/// page returns (and the cursor's row).
async fn check_lists(client: &tokio_postgres::Client) -> BTreeSet<String> {
    // The lists that matter are the long ones: a user with many tasks, a
    // task with many executions.
    let user: Uuid = client
        .query_one(
            "SELECT user_id FROM tasks GROUP BY user_id ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let task: Uuid = client
        .query_one(
            "SELECT task_id FROM task_executions GROUP BY task_id ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (priority, at, id, limit) = (10i32, Timestamp::now(), Uuid::max(), 101i64);
    let completed = TaskStatus::Completed;

    // (list, filter values, index expected)
    let cases: Vec<(&str, Vec<&(dyn ToSql + Sync)>, &str)> = vec![
        ("users", vec![], "users_created_at_id_idx"),
        ("tasks", vec![], "tasks_priority_created_at_id_idx"),
        (
            "tasks_by_user",
            vec![&user],
            "tasks_user_id_priority_created_at_id_idx",
        ),
        (
            "tasks_by_status",
            vec![&completed],
            "tasks_status_priority_created_at_id_idx",
        ),
        (
            "tasks_by_user_status",
            vec![&user, &completed],
            "tasks_user_id_status_priority_created_at_id_idx",
        ),
        ("executions", vec![], "task_executions_created_at_id_idx"),
        (
            "executions_by_task",
            vec![&task],
            "task_executions_task_id_created_at_id_idx",
        ),
        (
            "executions_by_status",
            vec![&completed],
            "task_executions_status_created_at_id_idx",
        ),
        (
            "executions_by_user",
            vec![&user],
            "task_executions_user_id_created_at_id_idx",
        ),
    ];
    let mut covered = BTreeSet::new();
    for (list, filters, index) in cases {
        for page in ["first", "after"] {
            let name = format!("lists.{list}_{page}");
            let sql = voidrunner_db::__statement(&name).unwrap();
            let mut params: Vec<&(dyn ToSql + Sync)> = filters.clone();
            if page == "after" {
                if list.starts_with("tasks") {
                    params.push(&priority);
                }
                params.extend([&at as &(dyn ToSql + Sync), &id]);
            }
            params.push(&limit);
            let p = profile(client, sql, &params).await;
            assert!(
                p.scanned(index),
                "{name}: {index} not scanned: {:?}\n{}",
                p.index_scans,
                p.plan
            );
            assert!(
                p.seq_scans.is_empty(),
                "{name}: {:?}\n{}",
                p.seq_scans,
                p.plan
            );
            assert!(
                p.entries_read() <= limit + 1,
                "{name}: read {} index entries for a page of {limit}",
                p.entries_read()
            );
            covered.insert(name);
        }
    }

    // The newest execution of a task: the same page function for a page
    // of one, one entry of its index.
    let latest = voidrunner_db::__statement("executions.latest_for_task").unwrap();
    let p = profile(client, latest, &[&task]).await;
    assert!(
        p.scanned("task_executions_task_id_created_at_id_idx") && p.entries_read() <= 1,
        "{p:?}"
    );
    covered.insert("executions.latest_for_task".to_owned());
    covered
}

/// The files whose statements this binary's checks cover; the queue's,
/// the events' and the server's are `tests/queue/plans.rs`'s.
/// (The execution logs' statements, `logs.`, are `logs_plans.rs`'s, on a
/// load of log lines of their own; it fails on any it does not cover.)
const FILES: [&str; 6] = [
    "users.",
    "tasks.",
    "executions.",
    "lists.",
    "counts.",
    "limits.",
];

/// Not profiled, on purpose: the bulk load is a COPY (no plan; it writes
/// the rows it is given); the unfiltered counts of users and executions
/// read every row of their table, and a status's count every row in that
/// status, by definition (what `count()` documents), by index or table as
/// the planner finds cheaper; the recount of tasks reads every task, which
/// is what it is for. (The tasks' counts read counters: [`check_counts`].)
const UNBOUNDED: [&str; 5] = [
    "tasks.import",
    "lists.users_count",
    "lists.executions_count",
    "lists.executions_by_status_count",
    "counts.recount_tasks",
];

async fn one(client: &tokio_postgres::Client, sql: &str) -> Uuid {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Every statement of [`FILES`] but the lists' pages ([`check_lists`]) and
/// the [`UNBOUNDED`] ones, profiled on the loaded tables: no table scanned,
/// and a handful of index entries for each row it names. The metadata
/// search's plan is the statistics' (it depends on how many rows match), so
/// it is checked only when they are `fresh`. Returns the names checked.
async fn check_statements(client: &tokio_postgres::Client, fresh: bool) -> BTreeSet<String> {
    // A user with the fewest tasks (one of the many; the one that owns half
    // the table is read whole, as it should be), a task with one execution,
    // and that execution.
    let user = one(
        client,
        "SELECT user_id FROM tasks GROUP BY user_id ORDER BY count(*), user_id LIMIT 1",
    )
    .await;
    let task = one(
        client,
        "SELECT task_id FROM task_executions GROUP BY task_id HAVING count(*) = 1 \
         ORDER BY task_id LIMIT 1",
    )
    .await;
    let execution: Uuid = client
        .query_one(
            "SELECT id FROM task_executions WHERE task_id = $1",
            &[&task],
        )
        .await
        .unwrap()
        .get(0);
    let none_text = None::<&str>;
    let none_int = None::<i32>;
    let none_long = None::<i64>;
    let none_at = None::<Timestamp>;
    let none_json = None::<serde_json::Value>;
    let no = false;
    let n = 5usize;
    let new_ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let users = vec![user; n];
    let names = vec!["n"; n];
    let descriptions = vec![None::<&str>; n];
    let scripts = vec!["x"; n];
    let types = vec!["python"; n];
    let priorities = vec![1i32; n];
    let timeouts = vec![60i32; n];
    let metadata = vec![serde_json::json!({}); n];
    let new_id = Uuid::new_v4();
    let filter = serde_json::json!({"serial": 4242});
    let (priority, at, key, limit) = (10i32, Timestamp::now(), Uuid::max(), 21i64);
    // (statement, parameters, rows it may touch)
    let mut cases: Vec<(&str, Vec<&(dyn ToSql + Sync)>, i64)> = vec![
        (
            "users.create",
            vec![&new_id, &"fresh@example.com", &"h", &"Fresh"],
            1,
        ),
        ("users.get", vec![&user], 1),
        ("users.get_by_email", vec![&"u1@example.com"], 1),
        (
            "users.update",
            vec![&user, &none_text, &"h2", &"Renamed"],
            1,
        ),
        ("users.lock", vec![&user], 1),
        ("users.lock_tasks", vec![&user], 10),
        // Its tasks and their executions go with it.
        ("users.delete", vec![&user], 10),
        (
            "tasks.create",
            vec![
                &new_id,
                &user,
                &"n",
                &none_text,
                &"x",
                &"python",
                &1i32,
                &60i32,
                &metadata[0],
            ],
            1,
        ),
        (
            "tasks.create_many",
            vec![
                &new_ids,
                &users,
                &names,
                &descriptions,
                &scripts,
                &types,
                &priorities,
                &timeouts,
                &metadata,
            ],
            n as i64,
        ),
        ("tasks.get", vec![&task], 1),
        (
            "tasks.update",
            vec![
                &task, &"renamed", &no, &none_text, &none_text, &none_text, &none_int, &none_int,
                &none_json,
            ],
            1,
        ),
        ("tasks.delete", vec![&task], 3),
        ("executions.get", vec![&execution], 1),
        (
            "executions.update",
            vec![
                &execution, &none_int, &"out", &none_text, &none_int, &none_long, &none_at,
                &none_at,
            ],
            1,
        ),
        ("lists.executions_by_task_count", vec![&task], 1),
        ("lists.tasks_by_metadata_first", vec![&filter, &limit], 1),
        (
            "lists.tasks_by_metadata_after",
            vec![&filter, &priority, &at, &key, &limit],
            1,
        ),
        // The scoped lists' counts and search (V9), for the same user.
        ("lists.executions_by_user_count", vec![&user], 10),
        (
            "lists.tasks_by_user_metadata_first",
            vec![&user, &filter, &limit],
            1,
        ),
        (
            "lists.tasks_by_user_metadata_after",
            vec![&user, &filter, &priority, &at, &key, &limit],
            1,
        ),
    ];
    let mut covered = BTreeSet::new();
    // The estimates read the catalog when the statistics know the table
    // (fresh), and count it exactly when they do not (their documented
    // fallback), so they are checked on fresh statistics only.
    cases.extend([
        ("counts.users_estimate", vec![], 1),
        ("counts.executions_estimate", vec![], 1),
    ]);
    // The reads first: the writes' runs are rolled back, but leave dead
    // index entries of the user's, which a bitmap scan of the user's
    // tasks would count until an index scan marks them dead.
    cases.sort_by_key(|(name, _, _)| !name.starts_with("lists."));
    for (name, params, rows) in cases {
        if !fresh
            && (name.starts_with("lists.tasks_by_metadata")
                || name.starts_with("lists.tasks_by_user_metadata")
                || name.ends_with("_estimate"))
        {
            continue;
        }
        let sql = voidrunner_db::__statement(name).unwrap_or_else(|| panic!("no {name}"));
        let p = profile(client, sql, &params).await;
        assert!(
            p.seq_scans.is_empty(),
            "{name}: {:?}\n{}",
            p.seq_scans,
            p.plan
        );
        assert!(
            p.entries_read() <= 3 * rows + 10,
            "{name}: read {} index entries for {rows} rows\n{}",
            p.entries_read(),
            p.plan
        );
        covered.insert(name.to_owned());
    }
    covered
}

/// The tasks' counts (`counts.tasks`, `counts.tasks_by_user`: every
/// count of tasks, scoped ones included) read V12's counter rows by their
/// key and never a task, for the user with half the tasks as for one with
/// a handful, and agree with `count(*)`. Returns the names checked.
async fn check_counts(client: &tokio_postgres::Client) -> BTreeSet<String> {
    let mut covered = BTreeSet::new();
    let users: Vec<(Uuid, i64)> = client
        .query(
            "(SELECT user_id, count(*) FROM tasks GROUP BY user_id ORDER BY count(*) DESC LIMIT 1) \
             UNION ALL \
             (SELECT user_id, count(*) FROM tasks GROUP BY user_id ORDER BY count(*), user_id LIMIT 1)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total: i64 = client
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .unwrap()
        .get(0);
    let mut cases: Vec<(&str, Vec<&(dyn ToSql + Sync)>, &str, i64)> =
        vec![("counts.tasks", vec![], "task_counts_pkey", total)];
    for (user, n) in &users {
        cases.push((
            "counts.tasks_by_user",
            vec![user],
            "task_counts_by_user_pkey",
            *n,
        ));
    }
    for (name, params, index, expected) in cases {
        let sql = voidrunner_db::__statement(name).unwrap();
        let row = client.query_one(sql, &params).await.unwrap();
        let sum: i64 = (0..6).map(|i| row.get::<_, i64>(i)).sum();
        assert_eq!(sum, expected, "{name}");
        let p = profile(client, sql, &params).await;
        assert!(p.scanned(index), "{name}: {:?}\n{}", p.index_scans, p.plan);
        assert!(p.seq_scans.is_empty(), "{name}: {:?}", p.seq_scans);
        // At most the 64 slots' rows (and a probe or two of the planner's),
        // whatever the tasks.
        assert!(
            p.entries_read() <= 66 && p.index_scans.keys().all(|i| i.starts_with("task_counts")),
            "{name}: {:?} {:?}",
            p.index_scans,
            p.index_entries_read
        );
        covered.insert(name.to_owned());
    }
    covered
}

/// The concurrency caps' statements (V15) for the user with half the
/// tasks: 1,000 of their executions running among 10,000 of history.
/// `limits.user_get` counts the running ones through V14's index of
/// running executions by user and reads no more entries than there are
/// running rows; the others read a row or two. Returns the names checked.
async fn check_limits(client: &tokio_postgres::Client) -> BTreeSet<String> {
    let (user, running): (Uuid, i64) = {
        let row = client
            .query_one(
                "SELECT user_id, count(*) FILTER (WHERE status = 'running') FROM task_executions \
                 GROUP BY user_id ORDER BY count(*) DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(running, 1000, "the load's running executions of the user");
    let cap = Some(3i32);
    // (statement, parameters, index entries it may read, index it must scan)
    type Case<'a> = (&'a str, Vec<&'a (dyn ToSql + Sync)>, i64, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("limits.default_get", vec![], 2, None),
        ("limits.default_set", vec![&cap], 4, None),
        (
            "limits.user_get",
            vec![&user],
            running + 10,
            Some("task_executions_user_running_idx"),
        ),
        ("limits.user_set", vec![&user, &cap], 6, None),
        ("limits.user_clear", vec![&user], 6, None),
    ];
    let mut covered = BTreeSet::new();
    for (name, params, entries, index) in cases {
        let sql = voidrunner_db::__statement(name).unwrap_or_else(|| panic!("no {name}"));
        let p = profile(client, sql, &params).await;
        // The settings' table holds one row (its key can only be true):
        // a scan of it reads its one page, as its primary key would.
        assert!(
            p.seq_scans.keys().all(|table| table == "queue_settings"),
            "{name}: {:?}\n{}",
            p.seq_scans,
            p.plan
        );
        assert!(
            p.entries_read() <= entries,
            "{name}: read {} index entries {:?}, at most {entries}\n{}",
            p.entries_read(),
            p.index_entries_read,
            p.plan
        );
        if let Some(index) = index {
            assert!(p.scanned(index), "{name}: {:?}\n{}", p.index_scans, p.plan);
        }
        covered.insert(name.to_owned());
    }
    // The count is the user's running executions, whatever the history.
    let sql = voidrunner_db::__statement("limits.user_get").unwrap();
    let row = client.query_one(sql, &[&user]).await.unwrap();
    assert_eq!(row.get::<_, i64>("running"), running);
    covered
}

/// The statements of [`FILES`] that neither [`check_lists`] nor
/// [`check_statements`] nor [`check_counts`] nor [`check_limits`]
/// covered, nor [`UNBOUNDED`] names.
fn uncovered(covered: &BTreeSet<String>) -> Vec<&'static str> {
    voidrunner_db::__statements()
        .map(|(name, _)| name)
        .filter(|name| FILES.iter().any(|file| name.starts_with(file)))
        .filter(|name| !covered.contains(*name) && !UNBOUNDED.contains(name))
        .collect()
}

#[tokio::test]
async fn lists_walk_their_index_and_search_uses_gin() {
    let r = repos().await;
    let pooled = r.db.raw_client().await.unwrap();
    let client: &tokio_postgres::Client = &pooled;
    client.batch_execute(LOAD).await.unwrap();
    // VACUUM, not just ANALYZE: GIN statistics are only refreshed by VACUUM.
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    let mut covered = check_lists(client).await;
    covered.extend(check_statements(client, true).await);
    covered.extend(crate::sorted_plans::check_sorted(client).await);
    covered.extend(check_counts(client).await);
    covered.extend(check_limits(client).await);
    assert_eq!(
        uncovered(&covered),
        Vec::<&str>::new(),
        "statements no plan check covers"
    );

    // Selective filters go through the GIN index: a scalar, a nested object,
    // an array element. (A filter most rows match is better served by
    // walking the ordered index until the page is full, and is: search is
    // the one list whose plan is left to the statistics.)
    let limit = 21i64;
    let sql = voidrunner_db::__statement("lists.tasks_by_metadata_first").unwrap();
    for filter in [
        serde_json::json!({"serial": 4242}),
        serde_json::json!({"job": {"owner": {"id": 4242}}}),
        serde_json::json!({"tags": ["x4242"]}),
    ] {
        let search = plan(client, sql, &[&filter, &limit]).await;
        assert!(
            search.contains("Bitmap Index Scan on tasks_metadata_idx"),
            "{filter}:\n{search}"
        );
    }
    let common = serde_json::json!({"tags": ["common"]});
    let search = plan(client, sql, &[&common, &limit]).await;
    assert!(search.contains("Index Scan"), "{search}");

    let by_email = plan(
        client,
        "SELECT id FROM users WHERE email = $1",
        &[&"u1@example.com"],
    )
    .await;
    assert!(by_email.contains("users_email_key"), "{by_email}");
    // Queueing a task looks up its active execution: one probe of the
    // partial unique index, however long the task's history.
    let task: Uuid = client
        .query_one(
            "SELECT task_id FROM task_executions GROUP BY task_id ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let active = plan(
        client,
        "SELECT id FROM task_executions WHERE task_id = $1 AND status IN ('pending', 'running')",
        &[&task],
    )
    .await;
    assert!(
        active.contains("task_executions_one_active_per_task_idx"),
        "{active}"
    );
}

/// Statistics taken while the tables were empty, or held one user with one
/// task and its execution (so every filter looks like it matches every
/// row), autovacuum off, then the rows loaded: a page still reads only its
/// own.
#[tokio::test]
async fn lists_walk_their_index_on_stale_statistics() {
    for seed in [
        "",
        "INSERT INTO users (email, password_hash) VALUES ('first@example.com', 'h'); \
         INSERT INTO tasks (user_id, name, script_content, status) \
           SELECT id, 'first', 'x', 'completed' FROM users; \
         INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
           SELECT id, 'completed', now(), now(), 'w' FROM tasks;",
    ] {
        let r = repos().await;
        let pooled = r.db.raw_client().await.unwrap();
        let client: &tokio_postgres::Client = &pooled;
        client
            .batch_execute(&format!(
                "ALTER TABLE users SET (autovacuum_enabled = off); \
                 ALTER TABLE tasks SET (autovacuum_enabled = off); \
                 ALTER TABLE task_executions SET (autovacuum_enabled = off); \
                 ALTER TABLE task_counts_by_user SET (autovacuum_enabled = off); \
                 {seed} ANALYZE users; ANALYZE tasks; ANALYZE task_executions; \
                 ANALYZE task_counts; ANALYZE task_counts_by_user;"
            ))
            .await
            .unwrap();
        client.batch_execute(LOAD).await.unwrap();
        check_lists(client).await;
        check_statements(client, false).await;
        crate::sorted_plans::check_sorted(client).await;
        check_counts(client).await;
        check_limits(client).await;
    }
}
