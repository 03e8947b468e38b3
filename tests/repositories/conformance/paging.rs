//! Keyset pages walked to the end: each row once, in order, while rows
//! are inserted; the default and the cap of a page's size.

use std::collections::HashSet;

use voidrunner_db::{NewTask, PageRequest, Result, Task, TaskId, TaskRepository};

use super::{Set, contracts};

contracts! {
    walking_1000_tasks_by_7_sees_each_once_while_inserts_happen => Ending::Clean,
    search_pages_walk_too => Ending::Clean,
    limits_default_and_cap => Ending::Clean,
}

/// (priority, created_at, id) descending: the task list order.
fn assert_sorted(seen: &[Task]) {
    for pair in seen.windows(2) {
        let key = |t: &Task| (t.priority, t.created_at, t.id);
        assert!(
            key(&pair[0]) > key(&pair[1]),
            "out of order: {:?} then {:?}",
            key(&pair[0]),
            key(&pair[1])
        );
    }
}

async fn walking_1000_tasks_by_7_sees_each_once_while_inserts_happen(s: &Set) -> Result<()> {
    let user = s.user("pager@example.com").await;
    // 1,000 tasks with every priority and many equal timestamps (one
    // statement, so ties on created_at must be broken by id).
    let originals: HashSet<TaskId> = s
        .query(
            "INSERT INTO tasks (id, user_id, name, script_content, priority, created_at) \
             SELECT gen_random_uuid(), $1, 'bulk ' || g, 'print(1)', g % 11, \
                    now() - (g % 50) * interval '1 second' \
             FROM generate_series(1, 1000) g RETURNING id",
            &[&user.id],
        )
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(originals.len(), 1000);

    for list_by_user in [false, true] {
        let mut seen: Vec<Task> = Vec::new();
        let mut request = PageRequest::first(7);
        let mut pages = 0;
        loop {
            let page = if list_by_user {
                s.tasks
                    .list_by_user(user.id, request.clone())
                    .await
                    .unwrap()
            } else {
                s.tasks.list(request.clone()).await.unwrap()
            };
            assert!(page.items.len() <= 7);
            pages += 1;
            seen.extend(page.items.iter().cloned());
            // Inserts between pages, at the top, the bottom and the middle
            // of the order.
            for priority in [10, 0, 5] {
                s.tasks
                    .create(NewTask::new(user.id, format!("late {pages}"), "x").priority(priority))
                    .await
                    .unwrap();
            }
            match request.next(&page) {
                Some(next) => request = next,
                None => break,
            }
        }
        let ids: Vec<TaskId> = seen.iter().map(|t| t.id).collect();
        let unique: HashSet<TaskId> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "a row was returned twice");
        assert!(
            originals.is_subset(&unique),
            "{} of 1000 rows missed",
            originals.difference(&unique).count()
        );
        assert_sorted(&seen);
        assert!(pages >= 1000 / 7);
    }
    Ok(())
}

async fn search_pages_walk_too(s: &Set) -> Result<()> {
    let user = s.user("s@example.com").await;
    for i in 0..25 {
        let metadata = if i % 2 == 0 {
            serde_json::json!({"kind": "even", "i": i})
        } else {
            serde_json::json!({"kind": "odd"})
        };
        s.tasks
            .create(
                NewTask::new(user.id, format!("t{i}"), "x")
                    .priority(i % 3)
                    .metadata(metadata),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut request = PageRequest::first(4);
    loop {
        let page = s
            .tasks
            .search_by_metadata(serde_json::json!({"kind": "even"}), request.clone())
            .await
            .unwrap();
        seen.extend(page.items.iter().cloned());
        match request.next(&page) {
            Some(next) => request = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 13);
    assert!(seen.iter().all(|t| t.metadata["kind"] == "even"));
    assert_sorted(&seen);
    Ok(())
}

async fn limits_default_and_cap(s: &Set) -> Result<()> {
    let user = s.user("l@example.com").await;
    let inserted = s
        .execute(
            "INSERT INTO tasks (user_id, name, script_content) \
             SELECT $1, 'n', 'x' FROM generate_series(1, 150)",
            &[&user.id],
        )
        .await;
    assert_eq!(inserted, 150);
    let default = s.tasks.list(PageRequest::default()).await.unwrap();
    assert_eq!(default.items.len(), 20);
    assert!(default.next_cursor.is_some());
    let capped = s.tasks.list(PageRequest::first(1000)).await.unwrap();
    assert_eq!(capped.items.len(), 100);
    let rest = s
        .tasks
        .list(PageRequest::first(1000).next(&capped).unwrap())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 50);
    assert_eq!(rest.next_cursor, None);
    Ok(())
}
