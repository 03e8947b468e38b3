//! Every list query is served by an index with no sort step, and metadata
//! search by the GIN index: asserted on the plans of the repositories' own
//! SQL, with enough rows and fresh statistics for the planner to choose.

use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::pg::__list_sql;
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

#[tokio::test]
async fn lists_are_index_scans_without_sorts_and_search_uses_gin() {
    let r = repos().await;
    let pooled = r.db.raw_client().await.unwrap();
    let client: &tokio_postgres::Client = &pooled;
    client
        // As the queue leaves them: one execution per task, in its task's
        // status (so at most one active, and running ones leased), and one
        // task with a long history of completed runs.
        .batch_execute(
            "INSERT INTO users (email, password_hash) \
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
               FROM generate_series(1, 5000), (SELECT id FROM tasks WHERE status = 'completed' LIMIT 1) t;",
        )
        .await
        .unwrap();
    // VACUUM, not just ANALYZE: GIN statistics are only refreshed by VACUUM.
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    // The plans that matter are those of long lists: a user with many
    // tasks, a task with many executions. (A list of four rows is as well
    // served by fetching and sorting them.)
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
    let (priority, at, id, limit) = (5i32, Timestamp::now(), Uuid::now_v7(), 21i64);
    // As in a real queue, few rows are running and most are done: the
    // status index serves the selective statuses.
    let status = TaskStatus::Running;

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
            Some(&status),
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
            Some(&status),
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
            let plan = plan(client, &sql, &params).await;
            assert!(
                plan.contains(&format!("Index Scan using {index}")),
                "{table} {filter_sql} after={after}:\n{plan}"
            );
            assert!(
                !plan.contains("Sort"),
                "{table} {filter_sql} after={after} sorts:\n{plan}"
            );
            if after {
                // The cursor is an index condition, not a filter on rows read.
                assert!(
                    plan.contains("Index Cond") && plan.contains("ROW("),
                    "{plan}"
                );
            }
        }
    }

    // Selective filters go through the GIN index: a scalar, a nested object,
    // an array element. (A filter most rows match is better served by
    // walking the ordered index until the page is full, and is.)
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
    let latest = plan(
        client,
        "SELECT id FROM task_executions WHERE task_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        &[&task],
    )
    .await;
    assert!(
        latest.contains("task_executions_task_id_created_at_id_idx") && !latest.contains("Sort"),
        "{latest}"
    );
    // Queueing a task looks up its active execution: one probe of the
    // partial unique index, however long the task's history.
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
