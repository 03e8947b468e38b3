//! The plans of the sorted task lists (V11), called by `explain.rs` on its
//! load with fresh and with stale statistics: every order, direction and
//! filter, first page and after a cursor, walks its own index for the rows
//! it returns and scans no table; with latest executions, each task's
//! latest is one probe of its index, not a walk of its history (the load
//! has a task with 5,001 runs), and the count reads that task's entries
//! only.

use std::collections::BTreeSet;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::testing::{StatementProfile, profile_statement};
use voidrunner_db::{SortDirection, TaskSort, TaskSortField, TaskStatus, Timestamp};

/// The second of two runs (the first plans the page function).
async fn profile(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StatementProfile {
    profile_statement(client, sql, params).await.unwrap();
    profile_statement(client, sql, params).await.unwrap()
}

/// The index an order under a filter walks.
fn index(field: TaskSortField, user: bool, status: bool) -> String {
    let filter = match (user, status) {
        (false, false) => "",
        (true, false) => "user_id_",
        (false, true) => "status_",
        (true, true) => "user_id_status_",
    };
    let key = match field {
        TaskSortField::CreatedAt => "created_at_id",
        TaskSortField::UpdatedAt => "updated_at_id",
        TaskSortField::Name => "name_id",
        TaskSortField::Priority => "priority_created_at_id",
        _ => unreachable!("a new order: add its index here"),
    };
    format!("tasks_{filter}{key}_idx")
}

/// The parameters of `voidrunner_tasks_sorted_page` for a page of `rows`.
struct Call {
    field: &'static str,
    descending: bool,
    user: Option<Uuid>,
    status: Option<&'static str>,
    name: Option<String>,
    at: Option<Timestamp>,
    priority: Option<i32>,
    id: Option<Uuid>,
    rows: i64,
}

impl Call {
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.field,
            &self.descending,
            &self.user,
            &self.status,
            &self.name,
            &self.at,
            &self.priority,
            &self.id,
            &self.rows,
        ]
    }

    /// A cursor before every row of the order: the walk reads from its
    /// start, the longest page.
    fn after_everything(mut self) -> Self {
        let descending = self.descending;
        self.name = Some(if descending { "\u{10ffff}" } else { "" }.to_owned());
        self.at = Some(if descending {
            Timestamp::from_unix_micros(4_000_000_000_000_000).unwrap()
        } else {
            Timestamp::from_unix_micros(0).unwrap()
        });
        self.priority = Some(if descending { 11 } else { -1 });
        self.id = Some(if descending { Uuid::max() } else { Uuid::nil() });
        self
    }
}

/// What one run of `sql` returned: the sum of its execution counts (0
/// without latest executions) and how many rows.
async fn run(client: &Client, sql: &str, call: &Call, latest: bool) -> (i64, usize) {
    let rows = client.query(sql, &call.params()).await.unwrap();
    let counts = if latest {
        rows.iter()
            .map(|r| r.get::<_, i64>("execution_count"))
            .sum()
    } else {
        0
    };
    (counts, rows.len())
}

/// Every order x direction x filter x first/after page of both sorted
/// statements; returns their names.
pub async fn check_sorted(client: &Client) -> BTreeSet<String> {
    let user: Uuid = client
        .query_one(
            "SELECT user_id FROM tasks GROUP BY user_id ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A rare status: a walk that checked the status of each row instead of
    // seeking would read twenty times the page.
    let running = TaskStatus::Running.as_str();
    let limit = 101i64;
    let mut covered = BTreeSet::new();
    for (name, latest) in [
        ("lists.tasks_sorted", false),
        ("lists.tasks_sorted_with_latest", true),
    ] {
        let sql = voidrunner_db::__statement(name).unwrap();
        for sort in TaskSort::all() {
            for (by_user, by_status) in [(false, false), (true, false), (false, true), (true, true)]
            {
                for after in [false, true] {
                    let mut call = Call {
                        field: sort.field.as_str(),
                        descending: sort.direction == SortDirection::Descending,
                        user: by_user.then_some(user),
                        status: by_status.then_some(running),
                        name: None,
                        at: None,
                        priority: None,
                        id: None,
                        rows: limit,
                    };
                    if after {
                        call = call.after_everything();
                    }
                    let what =
                        format!("{name} {sort:?} user {by_user} status {by_status} after {after}");
                    let p = profile(client, sql, &call.params()).await;
                    let (counts, rows) = run(client, sql, &call, latest).await;
                    assert_eq!(rows as i64, limit, "{what}: a full page");
                    let expected = index(sort.field, by_user, by_status);
                    assert!(
                        p.scanned(&expected),
                        "{what}: {expected} not scanned: {:?}",
                        p.index_scans
                    );
                    assert!(p.seq_scans.is_empty(), "{what}: {:?}", p.seq_scans);
                    let page_entries = p.index_entries_read.get(&expected).copied().unwrap_or(0);
                    assert!(
                        page_entries <= limit + 1,
                        "{what}: {page_entries} entries of {expected}"
                    );
                    // With latest: one entry of the latest index per task,
                    // and the count's range of each task's own entries.
                    let bound = if latest {
                        2 * limit + counts + 1
                    } else {
                        limit + 1
                    };
                    assert!(
                        p.entries_read() <= bound,
                        "{what}: read {} index entries, {bound} at most: {:?}",
                        p.entries_read(),
                        p.index_entries_read
                    );
                    if latest {
                        assert!(
                            p.scanned("task_executions_task_id_created_at_id_idx"),
                            "{what}: {:?}",
                            p.index_scans
                        );
                    }
                }
            }
        }
        covered.insert(name.to_owned());
    }
    check_long_history(client).await;
    covered
}

/// A page that holds the task with 5,001 runs: its latest is one probe, so
/// the page reads its history once (the count), not twice.
async fn check_long_history(client: &Client) {
    let row = client
        .query_one(
            "WITH h AS (SELECT task_id, count(*) AS n FROM task_executions \
                        GROUP BY task_id ORDER BY n DESC LIMIT 1) \
             SELECT t.created_at, t.id, h.n, \
                    (SELECT p.id FROM tasks p WHERE (p.created_at, p.id) < (t.created_at, t.id) \
                     ORDER BY p.created_at DESC, p.id DESC LIMIT 1) \
             FROM tasks t JOIN h ON h.task_id = t.id",
            &[],
        )
        .await
        .unwrap();
    let (at, history, runs, before): (Timestamp, Uuid, i64, Option<Uuid>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(runs > 5000);
    let sort = TaskSort::ascending(TaskSortField::CreatedAt);
    let call = Call {
        field: sort.field.as_str(),
        descending: false,
        user: None,
        status: None,
        name: None,
        at: Some(at),
        priority: None,
        id: Some(before.unwrap_or(Uuid::nil())),
        rows: 21,
    };
    let sql = voidrunner_db::__statement("lists.tasks_sorted_with_latest").unwrap();
    let rows = client.query(sql, &call.params()).await.unwrap();
    assert_eq!(
        rows[0].get::<_, Uuid>(0),
        history,
        "the page starts with it"
    );
    let counts: i64 = rows
        .iter()
        .map(|r| r.get::<_, i64>("execution_count"))
        .sum();
    let p = profile(client, sql, &call.params()).await;
    assert!(
        p.entries_read() <= 2 * 21 + counts + 1 && p.entries_read() < 2 * runs,
        "read {} entries for a page with a history of {runs}: {:?}",
        p.entries_read(),
        p.index_entries_read
    );
}
