//! Every list page walks its index for the rows it returns, with fresh
//! statistics and with statistics taken while the tables were empty;
//! metadata search uses the GIN index for selective filters. Asserted on
//! the repositories' own SQL (`pg::__list_sql`) with
//! `testing::profile_statement`, which counts the index and sequential
//! scans inside the V7 page functions too.

use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::pg::__list_sql;
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
/// the tasks, and one task with a long history of completed runs.
const LOAD: &str = "INSERT INTO users (email, password_hash) \
       SELECT 'u' || g || '@example.com', 'h' FROM generate_series(1, 5000) g; \
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
async fn check_lists(client: &tokio_postgres::Client) {
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

    // (table, filter, filter value, index expected)
    let cases: Vec<(&str, &str, Option<&(dyn ToSql + Sync)>, &str)> = vec![
        ("users", "TRUE", None, "users_created_at_id_idx"),
        ("tasks", "TRUE", None, "tasks_priority_created_at_id_idx"),
        (
            "tasks",
            "user_id = $1",
            Some(&user),
            "tasks_user_id_priority_created_at_id_idx",
        ),
        (
            "tasks",
            "status = $1",
            Some(&completed),
            "tasks_status_priority_created_at_id_idx",
        ),
        (
            "task_executions",
            "TRUE",
            None,
            "task_executions_created_at_id_idx",
        ),
        (
            "task_executions",
            "task_id = $1",
            Some(&task),
            "task_executions_task_id_created_at_id_idx",
        ),
        (
            "task_executions",
            "status = $1",
            Some(&completed),
            "task_executions_status_created_at_id_idx",
        ),
    ];
    for (table, filter_sql, filter, index) in cases {
        for after in [false, true] {
            let sql = __list_sql(table, filter_sql, after).unwrap();
            let mut params: Vec<&(dyn ToSql + Sync)> = filter.into_iter().collect();
            if after {
                if table == "tasks" {
                    params.push(&priority);
                }
                params.extend([&at as &(dyn ToSql + Sync), &id]);
            }
            params.push(&limit);
            let p = profile(client, &sql, &params).await;
            let case = format!("{table} {filter_sql} after={after}");
            assert!(
                p.scanned(index),
                "{case}: {index} not scanned: {:?}\n{}",
                p.index_scans,
                p.plan
            );
            assert!(
                p.seq_scans.is_empty(),
                "{case}: {:?}\n{}",
                p.seq_scans,
                p.plan
            );
            assert!(
                p.entries_read() <= limit + 1,
                "{case}: read {} index entries for a page of {limit}",
                p.entries_read()
            );
        }
    }

    // The newest execution of a task (latest_for_task runs the same page
    // function for a page of one): one entry of its index.
    let latest = __list_sql("task_executions", "task_id = $1", false).unwrap();
    let p = profile(client, &latest, &[&task, &1i64]).await;
    assert!(
        p.scanned("task_executions_task_id_created_at_id_idx") && p.entries_read() <= 1,
        "{p:?}"
    );
}

#[tokio::test]
async fn lists_walk_their_index_and_search_uses_gin() {
    let r = repos().await;
    let pooled = r.db.raw_client().await.unwrap();
    let client: &tokio_postgres::Client = &pooled;
    client.batch_execute(LOAD).await.unwrap();
    // VACUUM, not just ANALYZE: GIN statistics are only refreshed by VACUUM.
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    check_lists(client).await;

    // Selective filters go through the GIN index: a scalar, a nested object,
    // an array element. (A filter most rows match is better served by
    // walking the ordered index until the page is full, and is: search is
    // the one list whose plan is left to the statistics.)
    let limit = 21i64;
    let sql = __list_sql("tasks", "metadata @> $1", false).unwrap();
    for filter in [
        serde_json::json!({"serial": 4242}),
        serde_json::json!({"job": {"owner": {"id": 4242}}}),
        serde_json::json!({"tags": ["x4242"]}),
    ] {
        let search = plan(client, &sql, &[&filter, &limit]).await;
        assert!(
            search.contains("Bitmap Index Scan on tasks_metadata_idx"),
            "{filter}:\n{search}"
        );
    }
    let common = serde_json::json!({"tags": ["common"]});
    let search = plan(client, &sql, &[&common, &limit]).await;
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
                 {seed} ANALYZE users; ANALYZE tasks; ANALYZE task_executions;"
            ))
            .await
            .unwrap();
        client.batch_execute(LOAD).await.unwrap();
        check_lists(client).await;
    }
}
