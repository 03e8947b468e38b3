//! The sorted task lists (`list_sorted`, `list_with_latest`): every order,
//! direction and filter walked page by page equals the same `ORDER BY`
//! written by hand, scoped views included; each task's latest execution
//! and count equal the hand-written ones; a cursor of one list is refused
//! by every other; names of every kind of Unicode, written by another
//! application, page through their cursors.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::{
    Error, ExecutionRepository, PageRequest, Result, SortDirection, TaskFilter, TaskId,
    TaskRepository, TaskSort, TaskSortField, TaskStatus, User, UserId,
};

use super::{Set, contracts};

contracts! {
    every_order_direction_and_filter_pages_like_order_by => Ending::Clean,
    scoped_views_page_their_user_s_tasks_in_every_order => Ending::Clean,
    latest_execution_and_count_are_the_task_s_own => Ending::Clean,
    a_cursor_of_one_list_is_refused_by_every_other => Ending::Clean,
    odd_names_written_by_another_application_page_through_their_cursors => Ending::Clean,
}

/// The `ORDER BY` of `sort`, written by hand.
pub fn order_by(sort: TaskSort) -> String {
    let dir = match sort.direction {
        SortDirection::Ascending => "ASC",
        SortDirection::Descending => "DESC",
    };
    let columns: &[&str] = match sort.field {
        TaskSortField::CreatedAt => &["created_at", "id"],
        TaskSortField::UpdatedAt => &["updated_at", "id"],
        TaskSortField::Priority => &["priority", "created_at", "id"],
        TaskSortField::Name => &["name", "id"],
        _ => unreachable!("a new order: add it here"),
    };
    columns
        .iter()
        .map(|c| format!("{c} {dir}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ids `filter` selects in the order `sort`, by hand.
pub async fn reference(s: &Set, filter: TaskFilter, sort: TaskSort) -> Vec<TaskId> {
    let (user, status) = (
        filter.user().map(|u| u.as_uuid()),
        filter.status().map(|s| s.as_str().to_owned()),
    );
    let sql = format!(
        "SELECT id FROM tasks WHERE ($1::uuid IS NULL OR user_id = $1) \
         AND ($2::text IS NULL OR status = $2) ORDER BY {}",
        order_by(sort)
    );
    let params: [&(dyn ToSql + Sync); 2] = [&user, &status];
    s.query(&sql, &params)
        .await
        .iter()
        .map(|r| TaskId::from(r.get::<_, Uuid>(0)))
        .collect()
}

/// Every page of the unscoped sorted list, `limit` rows at a time.
pub async fn walk(
    tasks: &dyn TaskRepository,
    filter: TaskFilter,
    sort: TaskSort,
    limit: u32,
) -> Vec<TaskId> {
    let mut seen = Vec::new();
    let mut request = PageRequest::first(limit);
    loop {
        let page = tasks
            .list_sorted(filter, sort, request.clone())
            .await
            .unwrap_or_else(|e| panic!("{filter:?} {sort:?}: {e}"));
        assert!(page.items.len() <= limit as usize);
        seen.extend(page.items.iter().map(|t| t.id));
        match request.next(&page) {
            Some(next) => request = next,
            None => return seen,
        }
    }
}

/// Two users' tasks with every priority, many ties on created_at, on
/// updated_at and on name (names differing by case, accents and spacing),
/// in three statuses.
async fn load(s: &Set) -> (User, User) {
    let (a, b) = (s.user("a@example.com").await, s.user("b@example.com").await);
    let names = [
        "alpha", "Alpha", "alpha ", "álpha", "beta", "beta", "Ω", "zeta", "Zeta", "10", "9", "a b",
        "a-b", "名前", "🦀",
    ];
    s.execute(
        "INSERT INTO tasks (id, user_id, name, script_content, priority, status, created_at, updated_at) \
         SELECT gen_random_uuid(), CASE WHEN g % 3 = 0 THEN $2::uuid ELSE $1::uuid END, ($3::text[])[g % 15 + 1], 'x', g % 4, \
                (ARRAY['pending', 'failed', 'completed'])[g % 5 % 3 + 1], \
                timestamptz '2026-01-01' + (g % 7) * interval '1 second', \
                timestamptz '2026-01-02' + (g % 5) * interval '1 minute' \
         FROM generate_series(1, 60) g",
        &[&a.id, &b.id, &names.to_vec()],
    )
    .await;
    (a, b)
}

fn filters(a: UserId) -> [TaskFilter; 4] {
    [
        TaskFilter::All,
        TaskFilter::User(a),
        TaskFilter::Status(TaskStatus::Failed),
        TaskFilter::UserStatus(a, TaskStatus::Pending),
    ]
}

async fn every_order_direction_and_filter_pages_like_order_by(s: &Set) -> Result<()> {
    let (a, _) = load(s).await;
    for filter in filters(a.id) {
        for sort in TaskSort::all() {
            let expected = reference(s, filter, sort).await;
            assert!(!expected.is_empty(), "{filter:?}");
            for limit in [7, 100] {
                let seen = walk(&s.tasks, filter, sort, limit).await;
                assert_eq!(seen, expected, "{filter:?} {sort:?} by {limit}");
            }
            // With latest: the same tasks, in the same order, and the same
            // cursors.
            let first = s
                .tasks
                .list_with_latest(filter, sort, PageRequest::first(7))
                .await?;
            let ids: Vec<TaskId> = first.items.iter().map(|t| t.task.id).collect();
            assert_eq!(ids, expected[..ids.len()], "{filter:?} {sort:?}");
            let next = PageRequest::first(7).next(&first).unwrap();
            let second = s.tasks.list_sorted(filter, sort, next).await?;
            assert_eq!(second.items[0].id, expected[7], "{filter:?} {sort:?}");
        }
    }
    // The default order is the unsorted list's.
    let listed = s.tasks.list(PageRequest::first(100)).await?;
    let sorted = s
        .tasks
        .list_sorted(
            TaskFilter::All,
            TaskSort::default(),
            PageRequest::first(100),
        )
        .await?;
    assert_eq!(sorted.items, listed.items);
    Ok(())
}

async fn scoped_views_page_their_user_s_tasks_in_every_order(s: &Set) -> Result<()> {
    let (a, b) = load(s).await;
    for user in [&a, &b] {
        let view = s.scoped(user.id);
        for status in [None, Some(TaskStatus::Pending)] {
            let filter = TaskFilter::of(Some(user.id), status);
            for sort in TaskSort::all() {
                let expected = reference(s, filter, sort).await;
                let mut seen = Vec::new();
                let mut request = PageRequest::first(6);
                loop {
                    let page = view
                        .tasks
                        .list_sorted(status, sort, request.clone())
                        .await?;
                    assert!(page.items.iter().all(|t| t.user_id == user.id));
                    seen.extend(page.items.iter().map(|t| t.id));
                    // A scoped page's cursor is the unscoped list's of its
                    // user, and the other way round.
                    if let Some(cursor) = &page.next_cursor {
                        let unscoped = s
                            .tasks
                            .list_sorted(filter, sort, PageRequest::after(cursor.clone(), 1))
                            .await?;
                        let scoped = view
                            .tasks
                            .list_with_latest(status, sort, PageRequest::after(cursor.clone(), 1))
                            .await?;
                        assert_eq!(unscoped.items[0].id, scoped.items[0].task.id);
                    }
                    match request.next(&page) {
                        Some(next) => request = next,
                        None => break,
                    }
                }
                assert_eq!(seen, expected, "{} {status:?} {sort:?}", user.email);
            }
        }
        // Another user's cursor is refused by this view.
        let other = if user.id == a.id { &b } else { &a };
        let theirs = s
            .tasks
            .list_sorted(
                TaskFilter::User(other.id),
                TaskSort::default(),
                PageRequest::first(1),
            )
            .await?
            .next_cursor
            .unwrap();
        let err = view
            .tasks
            .list_sorted(None, TaskSort::default(), PageRequest::after(theirs, 5))
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("cursor"), "{err}");
    }
    Ok(())
}

async fn latest_execution_and_count_are_the_task_s_own(s: &Set) -> Result<()> {
    let (a, _) = load(s).await;
    // Up to six ended runs per task, some with equal created_at (the id
    // decides), and one task's pending run.
    s.execute(
        "INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id, created_at) \
         SELECT t.id, 'completed', now(), now(), 'w', \
                timestamptz '2026-02-01' + (g % 3) * interval '1 hour' \
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM tasks) t, \
              generate_series(1, 6) g \
         WHERE g <= t.n % 7",
        &[],
    )
    .await;
    for filter in [TaskFilter::All, TaskFilter::User(a.id)] {
        for sort in [
            TaskSort::default(),
            TaskSort::ascending(TaskSortField::Name),
        ] {
            let mut request = PageRequest::first(9);
            let mut seen = 0;
            loop {
                let page = s
                    .tasks
                    .list_with_latest(filter, sort, request.clone())
                    .await?;
                for item in &page.items {
                    let row = s
                        .query_one(
                            "SELECT (SELECT id FROM task_executions WHERE task_id = $1 \
                                     ORDER BY created_at DESC, id DESC LIMIT 1), \
                                    (SELECT count(*) FROM task_executions WHERE task_id = $1)",
                            &[&item.task.id],
                        )
                        .await;
                    let latest: Option<Uuid> = row.get(0);
                    assert_eq!(
                        item.latest_execution.as_ref().map(|e| e.id.as_uuid()),
                        latest
                    );
                    assert_eq!(item.execution_count, row.get::<_, i64>(1));
                    if let Some(latest) = &item.latest_execution {
                        assert_eq!(latest.task_id, item.task.id);
                        assert_eq!(s.executions.get(latest.id).await?, *latest, "read whole");
                    }
                    assert_eq!(s.tasks.get(item.task.id).await?, item.task);
                }
                seen += page.items.len();
                match request.next(&page) {
                    Some(next) => request = next,
                    None => break,
                }
            }
            assert_eq!(seen, reference(s, filter, sort).await.len());
        }
    }
    let none = s
        .tasks
        .list_with_latest(
            TaskFilter::All,
            TaskSort::default(),
            PageRequest::first(100),
        )
        .await?;
    assert!(
        none.items
            .iter()
            .any(|t| t.latest_execution.is_none() && t.execution_count == 0)
    );
    Ok(())
}

fn is_cursor_refusal(err: &Error) -> bool {
    err.is_validation() && err.field() == Some("cursor")
}

async fn a_cursor_of_one_list_is_refused_by_every_other(s: &Set) -> Result<()> {
    let (a, b) = load(s).await;
    let mut filters = filters(a.id).to_vec();
    filters.extend([
        TaskFilter::User(b.id),
        TaskFilter::Status(TaskStatus::Pending),
        TaskFilter::UserStatus(a.id, TaskStatus::Failed),
    ]);
    let mut cursors: HashMap<(TaskFilter, TaskSort), String> = HashMap::new();
    for &filter in &filters {
        for sort in TaskSort::all() {
            let page = s
                .tasks
                .list_sorted(filter, sort, PageRequest::first(1))
                .await?;
            cursors.insert((filter, sort), page.next_cursor.unwrap());
        }
    }
    for (&(filter, sort), cursor) in &cursors {
        for &other_filter in &filters {
            for other_sort in TaskSort::all() {
                let request = PageRequest::after(cursor.clone(), 5);
                let result = s.tasks.list_sorted(other_filter, other_sort, request).await;
                if (other_filter, other_sort) == (filter, sort) {
                    result?;
                } else {
                    let err = result.unwrap_err();
                    assert!(is_cursor_refusal(&err), "{err}");
                }
            }
        }
        // Nor do the unsorted lists take it.
        let request = PageRequest::after(cursor.clone(), 5);
        assert!(is_cursor_refusal(
            &s.tasks.list(request.clone()).await.unwrap_err()
        ));
        assert!(is_cursor_refusal(
            &s.tasks.list_by_user(a.id, request).await.unwrap_err()
        ));
    }
    // Nor a sorted list theirs (version 2), which go on working.
    let listed = s.tasks.list(PageRequest::first(2)).await?;
    let old = PageRequest::first(2).next(&listed).unwrap();
    assert_eq!(s.tasks.list(old.clone()).await?.items.len(), 2);
    for sort in TaskSort::all() {
        let err = s
            .tasks
            .list_sorted(TaskFilter::All, sort, old.clone())
            .await
            .unwrap_err();
        assert!(is_cursor_refusal(&err), "{err}");
    }
    // Hostile cursors: huge, not hex, not ASCII.
    for hostile in ["ff".repeat(5_000_000), "zz".repeat(40), "é".repeat(40)] {
        let err = s
            .tasks
            .list_with_latest(
                TaskFilter::All,
                TaskSort::default(),
                PageRequest::after(hostile, 5),
            )
            .await
            .unwrap_err();
        assert!(is_cursor_refusal(&err), "{err}");
    }
    let err = s
        .tasks
        .list_sorted(TaskFilter::All, TaskSort::default(), PageRequest::first(0))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("limit"));
    Ok(())
}

/// Names another application wrote: every kind of Unicode a `varchar`
/// holds (combining marks, bidi controls, joiners, non-characters, astral
/// planes, the longest the column takes), and look-alikes that differ only
/// there.
pub const ODD_NAMES: [&str; 14] = [
    "e\u{301}",
    "\u{e9}",
    "\u{202e}txt.exe",
    "\u{200b}x",
    "👩\u{200d}👩\u{200d}👧",
    "\u{fffe}\u{ffff}",
    "\u{10ffff}",
    "𝕏",
    "a",
    " ",
    "\t\nx",
    "\\x00'\"--;",
    "ǅ",
    "ß",
];

async fn odd_names_written_by_another_application_page_through_their_cursors(
    s: &Set,
) -> Result<()> {
    let user = s.user("odd@example.com").await;
    let mut names: Vec<String> = ODD_NAMES.iter().map(|n| (*n).to_owned()).collect();
    // The longest name the column takes, of 4-byte characters.
    names.push("🦀".repeat(255));
    // Every name twice: the id breaks the tie.
    names.extend(names.clone());
    // Raw SQL, past the crate's validation: a blank name is refused by the
    // table's constraint, not by the crate, so those are skipped.
    for name in &names {
        let blank = name.trim().is_empty() || name.chars().all(char::is_whitespace);
        if !blank {
            s.execute(
                "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, $2, 'x')",
                &[&user.id, name],
            )
            .await;
        }
    }
    for direction in SortDirection::ALL {
        let sort = TaskSort::new(TaskSortField::Name, direction);
        let filter = TaskFilter::User(user.id);
        let expected = reference(s, filter, sort).await;
        assert!(expected.len() >= 20);
        assert_eq!(walk(&s.tasks, filter, sort, 1).await, expected, "{sort:?}");
        assert_eq!(walk(&s.tasks, filter, sort, 3).await, expected, "{sort:?}");
    }
    Ok(())
}
