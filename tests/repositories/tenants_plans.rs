//! The plans of the scoped paths as the application role: row-level
//! security's quals (V9's policies, for a member of `voidrunner_app`) must
//! not defeat the indexes. On `explain.rs`'s load (20,000 tasks, one user
//! with half of them, a task with 5,001 runs), in a session of a LOGIN
//! member of `voidrunner_app`, inside a transaction scoped to the owner of
//! the rows (`SET LOCAL voidrunner.user_id`), each statement the scoped view
//! runs (`voidrunner_db::__statement`) scans its index, no table
//! sequentially, and reads about as many index entries as it returns: with
//! fresh statistics and with statistics taken while the tables were empty
//! or held one row. Every run is checked to have returned the scope's rows
//! (a statement that row-level security left with nothing to read would
//! read little too).

use std::collections::BTreeSet;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::testing::{StatementProfile, profile_statement};
use voidrunner_db::{TaskStatus, Timestamp};

use crate::app_role::AppRole;
use crate::explain::LOAD;
use crate::{Repos, repos};

/// A task by its id: the primary key, or V9's unique `(id, user_id)`.
const TASK_BY_ID: &[&str] = &["tasks_pkey", "tasks_id_user_id_key"];

/// The rows of the load the statements are run on, read as the superuser.
struct Rows {
    /// The user with half the tasks: the long lists.
    big: Uuid,
    /// A task with 5,001 executions, and its owner.
    history: (Uuid, Uuid),
    /// A user with a handful of tasks, one of them with exactly one
    /// execution, and that execution.
    small: Uuid,
    task: Uuid,
    execution: Uuid,
    /// A pending task with its pending execution, and its owner.
    pending: (Uuid, Uuid),
    /// A failed task with one ended execution (queueable), and its owner.
    failed: (Uuid, Uuid),
}

async fn one(client: &Client, sql: &str) -> Uuid {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn two(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> (Uuid, Uuid) {
    let row = client.query_one(sql, params).await.unwrap();
    (row.get(0), row.get(1))
}

/// One completed task with a single execution, not the big user's, made
/// failed (after the load, so stale statistics do not know of it either):
/// the task `queue.enqueue` queues.
// Grouped once, not counted per row: on stale statistics a correlated
// count per task can take long enough to meet the statement timeout on a
// busy machine.
const FAIL_ONE: &str = "UPDATE tasks SET status = 'failed' WHERE id = ( \
       WITH big AS (SELECT user_id FROM tasks GROUP BY user_id ORDER BY count(*) DESC LIMIT 1), \
            single AS (SELECT task_id FROM task_executions GROUP BY task_id HAVING count(*) = 1) \
       SELECT t.id FROM tasks t JOIN single s ON s.task_id = t.id \
       WHERE t.status = 'completed' AND t.user_id <> (SELECT user_id FROM big) \
       ORDER BY t.id DESC LIMIT 1)";

async fn rows(client: &Client) -> Rows {
    let big = one(
        client,
        "SELECT user_id FROM tasks GROUP BY user_id ORDER BY count(*) DESC LIMIT 1",
    )
    .await;
    let history = two(
        client,
        "SELECT e.task_id, t.user_id FROM task_executions e JOIN tasks t ON t.id = e.task_id \
         GROUP BY e.task_id, t.user_id ORDER BY count(*) DESC LIMIT 1",
        &[],
    )
    .await;
    let (task, small) = two(
        client,
        "WITH counts AS (SELECT user_id, count(*) AS n FROM tasks GROUP BY user_id), \
              single AS (SELECT t.id, t.user_id FROM tasks t JOIN task_executions e ON e.task_id = t.id \
                         WHERE t.status = 'completed' \
                         GROUP BY t.id, t.user_id HAVING count(*) = 1) \
         SELECT s.id, s.user_id FROM single s JOIN counts c ON c.user_id = s.user_id \
         ORDER BY c.n, s.id LIMIT 1",
        &[],
    )
    .await;
    let execution = client
        .query_one(
            "SELECT id FROM task_executions WHERE task_id = $1",
            &[&task],
        )
        .await
        .unwrap()
        .get(0);
    let pending = two(
        client,
        "SELECT id, user_id FROM tasks WHERE status = 'pending' AND user_id <> $1 \
         ORDER BY id LIMIT 1",
        &[&big],
    )
    .await;
    let failed = two(
        client,
        "SELECT id, user_id FROM tasks WHERE status = 'failed'",
        &[],
    )
    .await;
    Rows {
        big,
        history,
        small,
        task,
        execution,
        pending,
        failed,
    }
}

/// `sql` profiled (the second of two runs: the first compiles the page
/// functions) inside a transaction scoped to `user`: the transaction is
/// opened and scoped here, so `profile_statement`'s own `BEGIN` is a no-op
/// (a warning) and its `ROLLBACK` ends ours, scope and writes.
async fn profile_as(
    client: &Client,
    user: Uuid,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StatementProfile {
    let mut profile = None;
    for _ in 0..2 {
        client
            .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{user}'"))
            .await
            .unwrap();
        profile = Some(profile_statement(client, sql, params).await.unwrap());
    }
    // The scope ended with the transaction.
    let setting: Option<String> = client
        .query_one(
            "SELECT NULLIF(current_setting('voidrunner.user_id', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, None);
    profile.unwrap()
}

/// The rows the profiled run's plan returned (its top node's).
fn returned(p: &StatementProfile) -> i64 {
    let plan: serde_json::Value = serde_json::from_str(&p.plan).unwrap();
    plan["Actual Rows"].as_i64().unwrap()
}

/// The value `sql` (a count) has inside a transaction scoped to `user`.
async fn count_as(client: &Client, user: Uuid, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
    client
        .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{user}'"))
        .await
        .unwrap();
    let n = client.query_one(sql, params).await.unwrap().get(0);
    client.batch_execute("ROLLBACK").await.unwrap();
    n
}

/// One statement to check: run scoped to `user`, it must scan one of
/// `index` (the same rows by another key, e.g. a task by its primary key or
/// by V9's `(id, user_id)`), no table sequentially, return `rows` rows and
/// read at most `entries` index entries.
struct Case<'a> {
    name: &'static str,
    user: Uuid,
    params: Vec<&'a (dyn ToSql + Sync)>,
    index: &'static [&'static str],
    rows: i64,
    entries: i64,
}

fn check(case: &Case<'_>, p: &StatementProfile, stats: &str) {
    let name = case.name;
    assert!(
        case.index.iter().any(|index| p.scanned(index)),
        "{name} ({stats} statistics): none of {:?} scanned: {:?}\n{}",
        case.index,
        p.index_scans,
        p.plan
    );
    assert!(
        p.seq_scans.is_empty(),
        "{name} ({stats} statistics): sequential scans {:?}\n{}",
        p.seq_scans,
        p.plan
    );
    // A change of a task's status or owner also writes its counters (V12):
    // a probe of the writer's slot and the user's row, whatever the rows.
    let counters: i64 = p
        .index_entries_read
        .iter()
        .filter(|(index, _)| index.starts_with("task_counts"))
        .map(|(_, n)| n)
        .sum();
    assert!(counters <= 4, "{name}: {:?}", p.index_entries_read);
    assert!(
        p.entries_read() - counters <= case.entries,
        "{name} ({stats} statistics): read {} index entries {:?} for {} rows (at most {})\n{}",
        p.entries_read() - counters,
        p.index_entries_read,
        case.rows,
        case.entries,
        p.plan
    );
}

/// Every statement of the scoped view's lists, reads and writes that
/// names one row, profiled as the application role (`client`) scoped to
/// the rows' owner; `admin` is the superuser's session, which reads the
/// load. Returns the names checked.
async fn check_scoped(admin: &Client, client: &Client, stats: &str) -> BTreeSet<&'static str> {
    let rows = rows(admin).await;
    // The role is bound: scoped to nobody it sees nothing of the load.
    let unscoped: i64 = client
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unscoped, 0, "the application role is not bound");

    let (limit, priority, at, key) = (101i64, 10i32, Timestamp::now(), Uuid::max());
    let completed = TaskStatus::Completed;
    let none_text = None::<&str>;
    let none_int = None::<i32>;
    let none_json = None::<serde_json::Value>;
    let no = false;
    let new_id = Uuid::new_v4();
    let no_time = None::<Timestamp>;
    let to_cancelled: Vec<&str> = TaskStatus::ALL
        .into_iter()
        .filter(|s| s.can_transition_to(TaskStatus::Cancelled))
        .map(TaskStatus::as_str)
        .collect();
    let enqueueable: Vec<&str> = TaskStatus::ALL
        .into_iter()
        .filter(|s| s.can_transition_to(TaskStatus::Pending))
        .map(TaskStatus::as_str)
        .collect();
    let page = |name, user, params, index| Case {
        name,
        user,
        params,
        index,
        rows: limit,
        // The page and the row that tells whether more follow.
        entries: limit + 1,
    };
    let one_row = |name, user, params, index| Case {
        name,
        user,
        params,
        index,
        rows: 1,
        // The row, and a dead version of it the first, rolled-back run
        // may have left in the index.
        entries: 3,
    };
    // The sorted lists (V11), the scoped view's filters: the user, and the
    // user in one status (running: one run per task, so with latest
    // executions a page reads its tasks, one latest entry and one counted
    // entry each).
    let (by_name, by_updated, descending, ascending) = ("name", "updated_at", true, false);
    let (big_user, running) = (Some(rows.big), Some("running"));
    let no_status = None::<&str>;
    let (no_name, no_at, no_priority, no_id) =
        (None::<&str>, None::<Timestamp>, None::<i32>, None::<Uuid>);
    let (after_name, after_id) = (Some("zzzz"), Some(key));
    let cases = vec![
        page(
            "lists.tasks_sorted",
            rows.big,
            vec![
                &by_name,
                &descending,
                &big_user,
                &no_status,
                &after_name,
                &no_at,
                &no_priority,
                &after_id,
                &limit,
            ],
            &["tasks_user_id_name_id_idx"],
        ),
        Case {
            entries: 3 * limit + 1,
            ..page(
                "lists.tasks_sorted_with_latest",
                rows.big,
                vec![
                    &by_updated,
                    &ascending,
                    &big_user,
                    &running,
                    &no_name,
                    &no_at,
                    &no_priority,
                    &no_id,
                    &limit,
                ],
                &["tasks_user_id_status_updated_at_id_idx"],
            )
        },
        page(
            "lists.tasks_by_user_first",
            rows.big,
            vec![&rows.big, &limit],
            &["tasks_user_id_priority_created_at_id_idx"],
        ),
        page(
            "lists.tasks_by_user_after",
            rows.big,
            vec![&rows.big, &priority, &at, &key, &limit],
            &["tasks_user_id_priority_created_at_id_idx"],
        ),
        page(
            "lists.tasks_by_user_status_first",
            rows.big,
            vec![&rows.big, &completed, &limit],
            &["tasks_user_id_status_priority_created_at_id_idx"],
        ),
        page(
            "lists.tasks_by_user_status_after",
            rows.big,
            vec![&rows.big, &completed, &priority, &at, &key, &limit],
            &["tasks_user_id_status_priority_created_at_id_idx"],
        ),
        page(
            "lists.executions_by_user_first",
            rows.big,
            vec![&rows.big, &limit],
            &["task_executions_user_id_created_at_id_idx"],
        ),
        page(
            "lists.executions_by_user_after",
            rows.big,
            vec![&rows.big, &at, &key, &limit],
            &["task_executions_user_id_created_at_id_idx"],
        ),
        // The page, and the task's owner (one entry of tasks_pkey).
        Case {
            entries: limit + 2,
            ..page(
                "lists.executions_by_task_first",
                rows.history.1,
                vec![&rows.history.0, &limit],
                &["task_executions_task_id_created_at_id_idx"],
            )
        },
        // The newest run, and the task's owner: one entry of each index.
        Case {
            rows: 1,
            entries: 2,
            ..page(
                "executions.latest_for_task",
                rows.history.1,
                vec![&rows.history.0],
                &["task_executions_task_id_created_at_id_idx"],
            )
        },
        one_row("tasks.get", rows.small, vec![&rows.task], TASK_BY_ID),
        one_row(
            "executions.get",
            rows.small,
            vec![&rows.execution],
            &["task_executions_pkey"],
        ),
        one_row(
            "tasks.update",
            rows.small,
            vec![
                &rows.task, &"renamed", &no, &none_text, &none_text, &none_text, &none_int,
                &none_int, &none_json,
            ],
            TASK_BY_ID,
        ),
        // The queue's statements probe the task up to five times (lock,
        // version check, update, the execution's foreign keys), each probe
        // meeting at most the row and the dead versions the earlier,
        // rolled-back runs left (two, until pruned); and the active
        // execution's index once.
        Case {
            entries: 16,
            ..one_row(
                "queue.task_status",
                rows.pending.1,
                vec![&rows.pending.0, &"cancelled", &to_cancelled],
                TASK_BY_ID,
            )
        },
        Case {
            entries: 16,
            ..one_row(
                "queue.enqueue",
                rows.failed.1,
                vec![&rows.failed.0, &new_id, &no_time, &enqueueable],
                TASK_BY_ID,
            )
        },
    ];
    let mut covered = BTreeSet::new();
    for case in &cases {
        let sql = voidrunner_db::__statement(case.name).unwrap();
        let p = profile_as(client, case.user, sql, &case.params).await;
        assert_eq!(
            returned(&p),
            case.rows,
            "{} ({stats} statistics): rows returned\n{}",
            case.name,
            p.plan
        );
        check(case, &p, stats);
        covered.insert(case.name);
    }

    // The counts, for the small user (the big one's are half the table,
    // read whole by definition): its own rows, by index.
    let small_tasks: i64 = admin
        .query_one(
            "SELECT count(*) FROM tasks WHERE user_id = $1",
            &[&rows.small],
        )
        .await
        .unwrap()
        .get(0);
    let small_executions: i64 = admin
        .query_one(
            "SELECT count(*) FROM task_executions WHERE user_id = $1",
            &[&rows.small],
        )
        .await
        .unwrap()
        .get(0);
    // A count returns one row but reads the rows it counts: its bound is
    // theirs.
    let count = |name, params, index, n: i64| Case {
        name,
        user: rows.small,
        params,
        index,
        rows: n,
        entries: 3 * n + 10,
    };
    let counts = vec![count(
        "lists.executions_by_user_count",
        vec![&rows.small],
        &["task_executions_user_id_created_at_id_idx"],
        small_executions,
    )];
    for case in &counts {
        let sql = voidrunner_db::__statement(case.name).unwrap();
        assert!(
            case.rows > 0,
            "{}: the small user has no rows to count",
            case.name
        );
        assert_eq!(
            count_as(client, case.user, sql, &case.params).await,
            case.rows,
            "{}",
            case.name
        );
        let p = profile_as(client, case.user, sql, &case.params).await;
        check(case, &p, stats);
        covered.insert(case.name);
    }

    // The tasks' counts (every count of the scoped view) read the user's
    // counter rows (V12), a handful whatever their tasks, never a task: for
    // the big user as for the small one.
    for (user, expected) in [
        (rows.small, small_tasks),
        (rows.big, big_tasks(admin, rows.big).await),
    ] {
        let case = Case {
            name: "counts.tasks_by_user",
            user,
            params: vec![&user],
            index: &["task_counts_by_user_pkey"],
            rows: 1,
            entries: 64,
        };
        let sql = voidrunner_db::__statement(case.name).unwrap();
        client
            .batch_execute(&format!("BEGIN; SET LOCAL voidrunner.user_id = '{user}'"))
            .await
            .unwrap();
        let row = client.query_one(sql, &case.params).await.unwrap();
        client.batch_execute("ROLLBACK").await.unwrap();
        let sum: i64 = (0..6).map(|i| row.get::<_, i64>(i)).sum();
        assert_eq!(sum, expected, "{} ({stats} statistics)", case.name);
        let p = profile_as(client, case.user, sql, &case.params).await;
        check(&case, &p, stats);
        assert!(
            p.index_scans.keys().all(|i| i.starts_with("task_counts")),
            "{:?}",
            p.index_scans
        );
        covered.insert(case.name);
    }
    covered
}

async fn big_tasks(admin: &Client, user: Uuid) -> i64 {
    admin
        .query_one("SELECT count(*) FROM tasks WHERE user_id = $1", &[&user])
        .await
        .unwrap()
        .get(0)
}

/// The statements the scoped view runs that this file checks. (The scoped
/// log reads and searches are `logs_plans.rs`'s, as the application role
/// too.)
const SCOPED: [&str; 17] = [
    "counts.tasks_by_user",
    "executions.get",
    "executions.latest_for_task",
    "lists.executions_by_task_first",
    "lists.executions_by_user_after",
    "lists.executions_by_user_count",
    "lists.executions_by_user_first",
    "lists.tasks_by_user_after",
    "lists.tasks_by_user_first",
    "lists.tasks_by_user_status_after",
    "lists.tasks_by_user_status_first",
    "lists.tasks_sorted",
    "lists.tasks_sorted_with_latest",
    "queue.enqueue",
    "queue.task_status",
    "tasks.get",
    "tasks.update",
];

/// The test database loaded, the application role, and a session as it.
async fn loaded(before_load: &str) -> (Repos, AppRole, Client) {
    let r = repos().await;
    let admin = r.db.raw_client().await.unwrap();
    admin.batch_execute(before_load).await.unwrap();
    admin.batch_execute(LOAD).await.unwrap();
    admin.batch_execute(FAIL_ONE).await.unwrap();
    drop(admin);
    let role = AppRole::create(&r.db).await;
    let session = role.session().await;
    (r, role, session)
}

#[tokio::test]
async fn scoped_statements_use_their_index_as_the_application_role() {
    let (r, _role, app) = loaded("").await;
    let admin = r.db.raw_client().await.unwrap();
    admin.batch_execute("VACUUM ANALYZE").await.unwrap();
    let covered = check_scoped(&admin, &app, "fresh").await;
    assert_eq!(covered, BTreeSet::from(SCOPED));
}

/// Autovacuum off and statistics taken on the tables as `seed` leaves them,
/// then the rows loaded: statistics that know nothing of them.
async fn stale(seed: &str, stats: &str) {
    let (r, _role, app) = loaded(&format!(
        "ALTER TABLE users SET (autovacuum_enabled = off); \
         ALTER TABLE tasks SET (autovacuum_enabled = off); \
         ALTER TABLE task_executions SET (autovacuum_enabled = off); \
         ALTER TABLE task_counts_by_user SET (autovacuum_enabled = off); \
         {seed} ANALYZE users; ANALYZE tasks; ANALYZE task_executions; \
         ANALYZE task_counts_by_user;"
    ))
    .await;
    let admin = r.db.raw_client().await.unwrap();
    let covered = check_scoped(&admin, &app, stats).await;
    assert_eq!(covered, BTreeSet::from(SCOPED));
}

/// Statistics taken while the tables were empty.
#[tokio::test]
async fn scoped_statements_use_their_index_on_empty_statistics_as_the_application_role() {
    stale("", "empty").await;
}

/// Statistics taken while the tables held one user with one task and its
/// execution (so every filter looks like it matches every row).
#[tokio::test]
async fn scoped_statements_use_their_index_on_one_row_statistics_as_the_application_role() {
    stale(
        "INSERT INTO users (email, password_hash) VALUES ('first@example.com', 'h'); \
         INSERT INTO tasks (user_id, name, script_content, status) \
           SELECT id, 'first', 'x', 'completed' FROM users; \
         INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
           SELECT id, 'completed', now(), now(), 'w' FROM tasks;",
        "one-row",
    )
    .await;
}

/// Deleting one of the big user's tasks (one execution) through the scoped
/// view on statistics taken while the tables were empty: the delete and its
/// cascades read the task's rows only. V9's owner key
/// (`task_executions_task_owner_fkey`, `ON DELETE CASCADE`) cascades with
/// `DELETE FROM ONLY task_executions WHERE $1 = task_id AND $2 = user_id`,
/// which V9's index on both columns serves; without it, such statistics
/// made it a `BitmapAnd` of the task's index and the user's, reading every
/// execution of the user to delete one.
#[tokio::test]
async fn scoped_delete_reads_only_the_tasks_rows_on_stale_statistics() {
    let (r, _role, app) = loaded(
        "ALTER TABLE users SET (autovacuum_enabled = off); \
         ALTER TABLE tasks SET (autovacuum_enabled = off); \
         ALTER TABLE task_executions SET (autovacuum_enabled = off); \
         ANALYZE users; ANALYZE tasks; ANALYZE task_executions;",
    )
    .await;
    let admin = r.db.raw_client().await.unwrap();
    let rows = rows(&admin).await;
    let task = one(
        &admin,
        &format!(
            "SELECT t.id FROM tasks t \
             JOIN (SELECT task_id FROM task_executions GROUP BY task_id HAVING count(*) = 1) s \
               ON s.task_id = t.id \
             WHERE t.user_id = '{}' ORDER BY t.id LIMIT 1",
            rows.big
        ),
    )
    .await;
    let visible = "SELECT count(*) FROM tasks WHERE id = $1";
    assert_eq!(count_as(&app, rows.big, visible, &[&task]).await, 1);
    let case = Case {
        name: "tasks.delete",
        user: rows.big,
        params: vec![&task],
        index: TASK_BY_ID,
        // The task and its execution, through both foreign keys.
        rows: 3,
        entries: 3 * 3 + 10,
    };
    let sql = voidrunner_db::__statement(case.name).unwrap();
    let p = profile_as(&app, case.user, sql, &case.params).await;
    check(&case, &p, "empty");
}
