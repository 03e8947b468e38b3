//! The sorted task lists under load: a page of 50 tasks with their latest
//! executions is one statement (counted on the crate's statement spans,
//! which would show an N+1); every order walked in both directions while
//! rows are inserted, updated and deleted returns no row twice and every
//! row that existed throughout once, with what the guide promises for
//! `updated_at`, whose rows move while they change; and a walk inside a
//! REPEATABLE READ transaction is exactly its snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use voidrunner_db::{
    ExecutionRepository, IsolationLevel, NewExecution, NewTask, PageRequest, PgTaskRepository,
    SortDirection, Task, TaskFilter, TaskId, TaskRepository, TaskSort, TaskSortField, TaskUpdate,
    TransactionOptions, User,
};

use crate::{Repos, repos, repos_with_pool};

/// Counts the crate's statements (`voidrunner_db.statement` spans, one per
/// statement sent) by name.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

struct Name(String);

impl tracing::field::Visit for Name {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "statement" {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "statement" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Statements {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        if attrs.metadata().name() == "voidrunner_db.statement" {
            let mut name = Name(String::new());
            attrs.record(&mut name);
            self.0.lock().unwrap().push(name.0);
        }
    }
}

impl Statements {
    /// The statements `call` sends, on this thread.
    async fn during<T>(&self, call: impl Future<Output = T>) -> (T, Vec<String>) {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        self.0.lock().unwrap().clear();
        let out = call.await;
        drop(guard);
        (out, std::mem::take(&mut *self.0.lock().unwrap()))
    }
}

/// `n` tasks of `user`, each with a few ended runs.
async fn tasks_with_history(r: &Repos, user: &User, n: i64) {
    let client = r.db.raw_client().await.unwrap();
    client
        .execute(
            "INSERT INTO tasks (user_id, name, script_content, status) \
             SELECT $1, 'task ' || g, 'x', 'completed' FROM generate_series(1, $2::int8) g",
            &[&user.id, &n],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
             SELECT id, 'completed', now(), now(), 'w' FROM tasks, generate_series(1, 3)",
            &[],
        )
        .await
        .unwrap();
}

// Current-thread: the statements' spans are all made on the test's thread,
// where the counting subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn a_page_of_50_with_latest_executions_is_one_statement() {
    let r = repos().await;
    let user = r.user("many@example.com").await;
    tasks_with_history(&r, &user, 60).await;
    let statements = Statements::default();

    let filter = TaskFilter::User(user.id);
    for sort in TaskSort::all() {
        let (page, sent) = statements
            .during(
                r.tasks
                    .list_with_latest(filter, sort, PageRequest::first(50)),
            )
            .await;
        let page = page.unwrap();
        assert_eq!(page.items.len(), 50);
        assert!(
            page.items
                .iter()
                .all(|t| t.execution_count == 3 && t.latest_execution.is_some())
        );
        assert_eq!(sent, ["lists.tasks_sorted_with_latest"], "{sort:?}");
    }
    // The scoped view: its page is one statement too (a pooled scoped call
    // also scopes its transaction: statements of the session, not lists).
    let view = r.db.db().scoped(user.id);
    let (page, sent) = statements
        .during(
            view.tasks
                .list_with_latest(None, TaskSort::default(), PageRequest::first(50)),
        )
        .await;
    assert_eq!(page.unwrap().items.len(), 50);
    let lists: Vec<&String> = sent.iter().filter(|s| s.starts_with("lists.")).collect();
    assert_eq!(lists, ["lists.tasks_sorted_with_latest"], "{sent:?}");

    // The counter counts: the same page as a list and a look-up per task is
    // 51 statements.
    let (_, sent) = statements
        .during(async {
            let page = r
                .tasks
                .list_sorted(filter, TaskSort::default(), PageRequest::first(50))
                .await
                .unwrap();
            for task in &page.items {
                r.executions.latest_for_task(task.id).await.unwrap();
            }
        })
        .await;
    assert_eq!(sent.len(), 51, "{sent:?}");
}

/// What the walker waits for between pages: a round of writes made since.
struct Writer {
    rounds: watch::Receiver<u64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
}

/// The rows of one walk: those deleted during it, those updated (a non-key
/// column: the description) during it, and those left alone.
struct Rows {
    deleted: Vec<TaskId>,
    updated: Vec<TaskId>,
    stable: Vec<TaskId>,
}

/// 120 tasks of a fresh user with ties on every key (created_at, priority,
/// name), split into rows to delete, to update and to leave alone.
async fn rows(r: &Repos, n: usize) -> (User, Rows) {
    let user = r.user(&format!("walk{n}@example.com")).await;
    let client = r.db.raw_client().await.unwrap();
    let ids: Vec<TaskId> = client
        .query(
            "INSERT INTO tasks (user_id, name, script_content, priority, created_at) \
             SELECT $1, 'n' || (g % 9), 'x', g % 4, now() - (g % 13) * interval '1 second' \
             FROM generate_series(1, 120) g RETURNING id",
            &[&user.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| TaskId::from(row.get::<_, uuid::Uuid>(0)))
        .collect();
    let rows = Rows {
        deleted: ids[..30].to_vec(),
        updated: ids[30..60].to_vec(),
        stable: ids[60..].to_vec(),
    };
    (user, rows)
}

/// Inserts a task, updates the description of one of `updated` and deletes
/// one of `deleted` per round, until stopped, on repositories of its own.
fn write(tasks: PgTaskRepository, user: &User, rows: &Rows) -> Writer {
    let (tx, rounds) = watch::channel(0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (user, updated, deleted) = (user.id, rows.updated.clone(), rows.deleted.clone());
    let stopped = Arc::clone(&stop);
    let handle = tokio::spawn(async move {
        let mut round = 0u64;
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let i = round as usize;
            let new = NewTask::new(user, format!("n{}", i % 9), "x").priority((i % 4) as i32);
            tasks.create(new).await.unwrap();
            let update = TaskUpdate {
                description: Some(Some(format!("round {round}"))),
                ..Default::default()
            };
            tasks
                .update(updated[i % updated.len()], update)
                .await
                .unwrap();
            if let Some(id) = deleted.get(i) {
                tasks.delete(*id).await.unwrap();
            }
            round += 1;
            if tx.send(round).is_err() {
                return;
            }
        }
    });
    Writer {
        rounds,
        stop,
        handle,
    }
}

impl Writer {
    async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(self.rounds);
        self.handle.await.unwrap();
    }
}

/// Walks the sorted list by 7, a round of writes between pages.
async fn walk_while_writing(
    tasks: &dyn TaskRepository,
    writer: &mut Writer,
    filter: TaskFilter,
    sort: TaskSort,
) -> Vec<Task> {
    let mut seen = Vec::new();
    let mut request = PageRequest::first(7);
    loop {
        let page = tasks
            .list_sorted(filter, sort, request.clone())
            .await
            .unwrap();
        seen.extend(page.items.iter().cloned());
        writer.rounds.changed().await.unwrap();
        match request.next(&page) {
            Some(next) => request = next,
            None => return seen,
        }
    }
}

fn times(seen: &[Task]) -> HashMap<TaskId, usize> {
    let mut times = HashMap::new();
    for task in seen {
        *times.entry(task.id).or_insert(0) += 1;
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_walked_while_rows_change_returns_each_stable_row_once() {
    let r = repos_with_pool(6).await;
    let mut n = 0;
    for sort in TaskSort::all() {
        n += 1;
        let (user, rows) = rows(&r, n).await;
        let filter = TaskFilter::User(user.id);
        let mut writer = write(PgTaskRepository::new(r.db.db().clone()), &user, &rows);
        let seen = walk_while_writing(&r.tasks, &mut writer, filter, sort).await;
        writer.stop().await;
        let times = times(&seen);
        let once = |ids: &[TaskId], what: &str| {
            for id in ids {
                assert_eq!(times.get(id), Some(&1), "{sort:?}: a {what} row");
            }
        };
        // Rows not changed during the walk: exactly once, in every order.
        once(&rows.stable, "stable");
        if sort.field == TaskSortField::UpdatedAt {
            match sort.direction {
                // An updated row moves past the cursor: returned again,
                // never missed.
                SortDirection::Ascending => {
                    for id in &rows.updated {
                        assert!(times.get(id).is_some_and(|n| *n >= 1), "{sort:?}");
                    }
                }
                // An updated row moves behind the cursor: never twice,
                // possibly not at all.
                SortDirection::Descending => {
                    assert!(times.values().all(|n| *n == 1), "{sort:?}: a row twice");
                }
            }
        } else {
            // Its key does not change: no row twice, every row that
            // existed throughout once, in order.
            assert!(times.values().all(|n| *n == 1), "{sort:?}: a row twice");
            once(&rows.updated, "updated");
            assert_ordered(sort, &seen);
        }
    }
}

/// `seen` in the order of `sort` (its keys do not change during the walk).
fn assert_ordered(sort: TaskSort, seen: &[Task]) {
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let ordering = match sort.field {
            TaskSortField::CreatedAt => (a.created_at, a.id).cmp(&(b.created_at, b.id)),
            TaskSortField::Priority => {
                (a.priority, a.created_at, a.id).cmp(&(b.priority, b.created_at, b.id))
            }
            // The names of this test are ASCII digits after one letter: the
            // collation's order is the bytes'.
            TaskSortField::Name => (&a.name, a.id).cmp(&(&b.name, b.id)),
            _ => return,
        };
        let expected = match sort.direction {
            SortDirection::Ascending => std::cmp::Ordering::Less,
            SortDirection::Descending => std::cmp::Ordering::Greater,
        };
        assert_eq!(ordering, expected, "{sort:?}: {a:?} then {b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_in_a_repeatable_read_transaction_is_its_snapshot() {
    let r = repos_with_pool(6).await;
    let mut n = 100;
    for sort in TaskSort::all() {
        n += 1;
        let (user, rows) = rows(&r, n).await;
        let (user_id, filter) = (user.id, TaskFilter::User(user.id));
        let writer = write(PgTaskRepository::new(r.db.db().clone()), &user, &rows);
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let options = TransactionOptions::default().isolation(IsolationLevel::RepeatableRead);
        let order = crate::conformance::sorted::order_by(sort);
        let (snapshot, seen) = r
            .db
            .db()
            .transaction_with(options, |tx| {
                let writer = Arc::clone(&writer);
                let order = order.clone();
                async move {
                    let snapshot: Vec<TaskId> = tx
                        .client()?
                        .query(
                            &format!("SELECT id FROM tasks WHERE user_id = $1 ORDER BY {order}"),
                            &[&user_id],
                        )
                        .await?
                        .iter()
                        .map(|row| TaskId::from(row.get::<_, uuid::Uuid>(0)))
                        .collect();
                    let mut writer = writer.lock().await;
                    let seen = walk_while_writing(&tx.tasks(), &mut writer, filter, sort).await;
                    Ok((snapshot, seen))
                }
            })
            .await
            .unwrap();
        Arc::try_unwrap(writer)
            .ok()
            .expect("the writer is the test's")
            .into_inner()
            .stop()
            .await;
        let ids: Vec<TaskId> = seen.iter().map(|t| t.id).collect();
        assert_eq!(ids, snapshot, "{sort:?}");
        assert!(ids.len() >= 120, "{sort:?}: the rows written before it");
        // The snapshot held rows the writer deleted meanwhile: the walk did
        // not see the deletes, nor the inserts.
        let deleted: HashSet<TaskId> = rows.deleted.iter().copied().collect();
        assert!(ids.iter().any(|id| deleted.contains(id)), "{sort:?}");
    }
}

/// A scoped view's sorted page and its executions: the scope's own.
#[tokio::test]
async fn a_scoped_walk_sees_only_its_user() {
    let r = repos().await;
    let (a, b) = (r.user("a@example.com").await, r.user("b@example.com").await);
    for user in [&a, &b] {
        for i in 0..15 {
            let task = r.task(user, &format!("t{i}")).await;
            r.executions
                .create(NewExecution::new(task.id))
                .await
                .unwrap();
        }
    }
    let view = r.db.db().scoped(a.id);
    for sort in TaskSort::all() {
        let mut request = PageRequest::first(4);
        let mut seen = 0;
        loop {
            let page = view
                .tasks
                .list_with_latest(None, sort, request.clone())
                .await
                .unwrap();
            for item in &page.items {
                assert_eq!(item.task.user_id, a.id);
                let latest = item.latest_execution.as_ref().unwrap();
                assert_eq!(latest.task_id, item.task.id);
            }
            seen += page.items.len();
            match request.next(&page) {
                Some(next) => request = next,
                None => break,
            }
        }
        assert_eq!(seen, 15, "{sort:?}");
    }
}
