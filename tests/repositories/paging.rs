use std::collections::HashSet;

use voidrunner_db::{NewTask, PageRequest, Task, TaskId, TaskRepository};

use crate::repos;

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

#[tokio::test]
async fn walking_1000_tasks_by_7_sees_each_once_while_inserts_happen() {
    let r = repos().await;
    let user = r.user("pager@example.com").await;
    // 1,000 tasks with every priority and many equal timestamps (one
    // statement, so ties on created_at must be broken by id).
    let originals: HashSet<TaskId> =
        r.db.raw_client()
            .await
            .unwrap()
            .query(
                "INSERT INTO tasks (id, user_id, name, script_content, priority, created_at) \
             SELECT gen_random_uuid(), $1, 'bulk ' || g, 'print(1)', g % 11, \
                    now() - (g % 50) * interval '1 second' \
             FROM generate_series(1, 1000) g RETURNING id",
                &[&user.id],
            )
            .await
            .unwrap()
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
                r.tasks
                    .list_by_user(user.id, request.clone())
                    .await
                    .unwrap()
            } else {
                r.tasks.list(request.clone()).await.unwrap()
            };
            assert!(page.items.len() <= 7);
            pages += 1;
            seen.extend(page.items.iter().cloned());
            // Inserts between pages, at the top, the bottom and the middle
            // of the order.
            for priority in [10, 0, 5] {
                r.tasks
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
}

#[tokio::test]
async fn search_pages_walk_too() {
    let r = repos().await;
    let user = r.user("s@example.com").await;
    for i in 0..25 {
        let metadata = if i % 2 == 0 {
            serde_json::json!({"kind": "even", "i": i})
        } else {
            serde_json::json!({"kind": "odd"})
        };
        r.tasks
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
        let page = r
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
}

#[tokio::test]
async fn limits_default_and_cap() {
    let r = repos().await;
    let user = r.user("l@example.com").await;
    r.db.raw_client().await.unwrap()
        .execute(
            "INSERT INTO tasks (user_id, name, script_content) SELECT $1, 'n', 'x' FROM generate_series(1, 150)",
            &[&user.id],
        )
        .await
        .unwrap();
    let default = r.tasks.list(PageRequest::default()).await.unwrap();
    assert_eq!(default.items.len(), 20);
    assert!(default.next_cursor.is_some());
    let capped = r.tasks.list(PageRequest::first(1000)).await.unwrap();
    assert_eq!(capped.items.len(), 100);
    let rest = r
        .tasks
        .list(PageRequest::first(1000).next(&capped).unwrap())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 50);
    assert_eq!(rest.next_cursor, None);
}
