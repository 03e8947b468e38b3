//! Review of issue 18 (tenant isolation): attacks on the scoped view and
//! on V9's row-level security. Each test that fails states a finding; the
//! ones that pass are what held up.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;
use voidrunner_db::testing::{PrivateCluster, profile_statement};
use voidrunner_db::{
    Database, ExecutionQueue, NewTask, NewUser, PasswordHash, PgExecutionQueue, PgTaskRepository,
    PgUserRepository, TaskRepository, TaskStatus, UserRepository,
};

use crate::{repos, repos_with_pool};

/// A scoped count of another user's task is 0, as documented; but it reads
/// every execution of that task to get there (and so takes time
/// proportional to how many runs the other user's task has), where
/// `list_by_task` and `latest_for_task` check the owner once, before any
/// execution is read.
#[tokio::test]
async fn scoped_count_by_task_reads_no_execution_of_another_users_task() {
    let r = repos().await;
    let a = r.user("a@example.com").await;
    let b = r.user("b@example.com").await;
    let theirs = r.task(&b, "theirs").await;
    let client = r.db.raw_client().await.unwrap();
    let task: Uuid = theirs.id.as_uuid();
    client
        .execute(
            "INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
             SELECT $1, 'completed', now(), now(), 'w' FROM generate_series(1, 2000)",
            &[&task],
        )
        .await
        .unwrap();
    client.batch_execute("ANALYZE").await.unwrap();
    // As a scoped call runs it: scoped to a.
    client
        .batch_execute(&format!(
            "SET voidrunner.user_id = '{}'",
            a.id.as_uuid().hyphenated()
        ))
        .await
        .unwrap();
    let limit = 20_i64;
    for name in ["lists.executions_by_task_first"] {
        let sql = voidrunner_db::__statement(name).unwrap();
        profile_statement(&client, sql, &[&task, &limit])
            .await
            .unwrap();
        let p = profile_statement(&client, sql, &[&task, &limit])
            .await
            .unwrap();
        let plan: serde_json::Value = serde_json::from_str(&p.plan).unwrap();
        assert_eq!(rows_read(&plan), 0, "{name}: {p:?}");
    }
    let sql = voidrunner_db::__statement("lists.executions_by_task_count").unwrap();
    profile_statement(&client, sql, &[&task]).await.unwrap();
    let p = profile_statement(&client, sql, &[&task]).await.unwrap();
    let plan: serde_json::Value = serde_json::from_str(&p.plan).unwrap();
    let read = rows_read(&plan);
    assert_eq!(
        read, 0,
        "a's count_by_task of b's task read {read} of b's executions to answer 0 \
         (list_by_task reads none)\n{}",
        p.plan
    );
}

/// The rows of task_executions a plan's scans read: returned plus removed
/// by a filter.
fn rows_read(node: &serde_json::Value) -> u64 {
    let own = ["Actual Rows", "Rows Removed by Filter"]
        .iter()
        .filter(|_| {
            node.get("Relation Name").and_then(|t| t.as_str()) == Some("task_executions")
                || node
                    .get("Index Name")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.starts_with("task_executions"))
        })
        .filter_map(|k| node.get(*k).and_then(serde_json::Value::as_u64))
        .sum::<u64>();
    let children = node
        .get("Plans")
        .and_then(|p| p.as_array())
        .map_or(0, |plans| plans.iter().map(rows_read).sum());
    // An index scan under a bitmap heap scan counts the same rows again.
    if node.get("Node Type").and_then(|t| t.as_str()) == Some("Bitmap Heap Scan") {
        return own;
    }
    own + children
}

/// A connection to `db` on `cluster` as `role`.
async fn connect_as(cluster: &PrivateCluster, db: &str, role: &str) -> tokio_postgres::Client {
    let mut config = cluster.config().with_dbname(db);
    config.pg_config_mut().user(role);
    let (client, conn) = config
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// 200 users, 20000 tasks with a selective metadata key each, one
/// completed execution per task.
const LOAD: &str = "INSERT INTO users (email, password_hash) \
       SELECT 'u' || g || '@example.com', 'h' FROM generate_series(1, 200) g; \
     INSERT INTO tasks (user_id, name, script_content, metadata) \
       SELECT u.ids[g % 200 + 1], 'n', 'x', jsonb_build_object('serial', g) \
       FROM generate_series(1, 20000) g, (SELECT array_agg(id) AS ids FROM users) u; \
     INSERT INTO task_executions (task_id, status, started_at, completed_at, worker_id) \
       SELECT id, 'completed', now(), now(), 'w' FROM tasks; \
     ANALYZE;";

/// A role that is not a member of `voidrunner_app` and neither owns the
/// tables nor is a superuser (a worker, or a deployment's service role
/// that is not the owner):
///
/// 1. Before the application role exists in the cluster (the roles script
///    never ran on it), V9 leaves row-level security off, so such a role
///    keeps its plans: the unscoped metadata search uses the GIN index as
///    the owner's does. (Row-level security on, even with a policy that
///    lets it read every row, would make PostgreSQL plan the
///    non-leakproof `@>` without the column's statistics.)
/// 2. Once it is on, whether the session is bound is looked up once per
///    statement (an InitPlan), not once per row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_left_unbound_keep_their_plans() {
    let cluster = PrivateCluster::start().await.unwrap();
    let su = connect_as(&cluster, "postgres", "postgres").await;
    su.batch_execute("CREATE ROLE worker LOGIN").await.unwrap();
    su.batch_execute("CREATE DATABASE vrdb").await.unwrap();
    let db = Database::connect(cluster.config().with_dbname("vrdb"))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let owner = connect_as(&cluster, "vrdb", "postgres").await;
    owner.batch_execute(LOAD).await.unwrap();
    owner
        .batch_execute(
            "GRANT USAGE ON SCHEMA public TO worker; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO worker;",
        )
        .await
        .unwrap();
    let worker = connect_as(&cluster, "vrdb", "worker").await;

    let search = voidrunner_db::__statement("lists.tasks_by_metadata_first").unwrap();
    let filter = json!({ "serial": 5 });
    let limit = 20_i64;
    let mut plans = Vec::new();
    for (who, client) in [("owner", &owner), ("worker", &worker)] {
        profile_statement(client, search, &[&filter, &limit])
            .await
            .unwrap();
        let p = profile_statement(client, search, &[&filter, &limit])
            .await
            .unwrap();
        plans.push((who, p));
    }
    let (_, as_owner) = &plans[0];
    assert!(as_owner.scanned("tasks_metadata_idx"), "{as_owner:?}");
    let (_, as_worker) = &plans[1];
    let mut findings = Vec::new();
    if !(as_worker.scanned("tasks_metadata_idx") && as_worker.entries_read() < 100) {
        findings.push(format!(
            "the unscoped metadata search as a role V9 says it leaves unbound: \
         no GIN index, {} index entries read for 1 row (the owner: {})\n{}",
            as_worker.entries_read(),
            as_owner.entries_read(),
            as_worker.plan
        ));
    }

    // The per-row look-up, once row-level security is on (as the roles
    // script turns it on).
    su.batch_execute("CREATE ROLE voidrunner_app NOLOGIN")
        .await
        .unwrap();
    owner
        .batch_execute(
            "ALTER TABLE tasks ENABLE ROW LEVEL SECURITY; \
             ALTER TABLE task_executions ENABLE ROW LEVEL SECURITY;",
        )
        .await
        .unwrap();
    let count = voidrunner_db::__statement("lists.executions_count").unwrap();
    let plan: Vec<String> = worker
        .query(&format!("EXPLAIN (VERBOSE) {count}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let per_row: Vec<&String> = plan
        .iter()
        .filter(|l| l.contains("Filter") && l.contains("voidrunner_unbound()"))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("InitPlan")),
        "row-level security is not on for the worker:\n{}",
        plan.join("\n")
    );
    if !per_row.is_empty() {
        findings.push(format!(
            "voidrunner_unbound() is evaluated per row, not once per statement:\n{}",
            plan.join("\n")
        ));
    }
    assert!(findings.is_empty(), "{}", findings.join("\n\n"));
}

/// What V9 promises the application role, on a private cluster (the role
/// name is fixed and cluster-wide): a member of `voidrunner_app` works on
/// its own rows through the scoped view, sees nothing unscoped, and the
/// database refuses it another user's rows even through raw SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_is_bound_to_its_scope() {
    let cluster = PrivateCluster::start().await.unwrap();
    let su = connect_as(&cluster, "postgres", "postgres").await;
    su.batch_execute(
        "CREATE ROLE voidrunner_app NOLOGIN; CREATE ROLE app LOGIN IN ROLE voidrunner_app",
    )
    .await
    .unwrap();
    su.batch_execute("CREATE DATABASE vrdb").await.unwrap();
    let admin = Database::connect(cluster.config().with_dbname("vrdb"))
        .await
        .unwrap();
    admin.migrate().await.unwrap();
    admin
        .client()
        .await
        .unwrap()
        .batch_execute(
            "GRANT USAGE ON SCHEMA public TO voidrunner_app; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO voidrunner_app;",
        )
        .await
        .unwrap();
    let users = PgUserRepository::new(admin.clone());
    let user = |email: &'static str| {
        let users = users.clone();
        async move {
            users
                .create(NewUser::new(
                    email,
                    PasswordHash::new("$argon2id$v=19$hash"),
                ))
                .await
                .unwrap()
        }
    };
    let (a, b) = (user("a@example.com").await, user("b@example.com").await);
    let admin_tasks = PgTaskRepository::new(admin.clone());
    let theirs = admin_tasks
        .create(NewTask::new(b.id, "theirs", "print(1)"))
        .await
        .unwrap();
    PgExecutionQueue::new(admin.clone())
        .enqueue(theirs.id, None)
        .await
        .unwrap();

    let mut config = cluster.config().with_dbname("vrdb");
    config.pg_config_mut().user("app");
    config.max_connections = 1;
    config.min_connections = 1;
    let app = Database::connect(config).await.unwrap();
    let mine = app.scoped(a.id);
    let task = mine
        .tasks
        .create(NewTask::new(a.id, "mine", "print(1)"))
        .await
        .unwrap();
    assert_eq!(mine.tasks.get(task.id).await.unwrap().id, task.id);
    let run = mine.executions.enqueue(task.id, None).await.unwrap();
    assert_eq!(mine.executions.count().await.unwrap(), 1);
    assert_eq!(mine.tasks.count().await.unwrap(), 1);
    mine.executions.cancel(run.id).await.unwrap();
    assert_eq!(
        mine.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    assert!(mine.tasks.get(theirs.id).await.unwrap_err().is_not_found());
    assert!(
        mine.executions
            .enqueue(theirs.id, None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Unscoped, the application role sees nothing: it fails closed.
    let unscoped = PgTaskRepository::new(app.clone());
    assert!(unscoped.get(task.id).await.unwrap_err().is_not_found());
    assert_eq!(unscoped.count().await.unwrap(), 0);
    // Raw SQL scoped to a may not hand a's task to b.
    let raw = connect_as(&cluster, "vrdb", "app").await;
    let refused = raw
        .batch_execute(&format!(
            "BEGIN; SET LOCAL voidrunner.user_id = '{}'; \
             UPDATE tasks SET user_id = '{}' WHERE id = '{}'",
            a.id.as_uuid().hyphenated(),
            b.id.as_uuid().hyphenated(),
            task.id.as_uuid().hyphenated()
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{refused:?}"
    );
    raw.batch_execute("ROLLBACK").await.unwrap();
    mine.tasks.delete(task.id).await.unwrap();
    assert_eq!(admin_tasks.get(theirs.id).await.unwrap().id, theirs.id);
}

/// Scoped calls dropped at every point of their round trip (timeouts
/// growing by 50µs), on a pool of one connection: the next user of the
/// pool never finds the scope set nor a transaction open.
#[tokio::test]
async fn dropped_scoped_calls_leave_nothing_on_the_pooled_connection() {
    let r = repos_with_pool(1).await;
    let db = r.db.db();
    let user = r.user("d@example.com").await;
    let scoped = db.scoped(user.id);
    let mut dropped = 0;
    for step in 0..400u64 {
        let task = r.task(&user, "t").await;
        let wait = Duration::from_micros(step * 50);
        let call = async {
            scoped.executions.enqueue(task.id, None).await?;
            scoped
                .tasks
                .update_status(task.id, TaskStatus::Cancelled)
                .await
        };
        if tokio::time::timeout(wait, call).await.is_err() {
            dropped += 1;
        }
        let client = db.client().await.unwrap();
        // A simple query: its implicit transaction starts with it, unless
        // one was already open.
        let rows = client
            .simple_query(
                "SELECT coalesce(NULLIF(current_setting('voidrunner.user_id', true), ''), '-'), \
                        (xact_start = query_start)::text \
                 FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            )
            .await
            .unwrap();
        let row = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .unwrap();
        assert_eq!(row.get(0), Some("-"), "step {step}");
        assert_eq!(
            row.get(1),
            Some("true"),
            "step {step}: a transaction was left open"
        );
    }
    assert!(dropped > 0);
}

/// A scoped call whose statement the server cancels (statement_timeout,
/// waiting for a lock another session holds), pooled and inside a
/// transaction: pooled, the connection comes back idle and unscoped;
/// in a transaction, the error is the caller's and the transaction ends
/// rolled back, and a scoped call that failed leaves no scope behind for
/// the next transaction on that connection.
#[tokio::test]
async fn a_scoped_statement_cancelled_by_statement_timeout_leaves_nothing_behind() {
    let db = voidrunner_db::testing::TestDatabase::with_config(|c| {
        c.max_connections = 1;
        c.min_connections = 1;
        c.statement_timeout = Some(Duration::from_millis(300));
    })
    .await
    .unwrap();
    let r = crate::Repos::over(db);
    let user = r.user("st@example.com").await;
    let task = r.task(&user, "t").await;
    let holder = crate::tenants::session(&r).await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE",
            task.id.as_uuid().hyphenated()
        ))
        .await
        .unwrap();
    let db = r.db.db();
    let err = db
        .scoped(user.id)
        .tasks
        .update_status(task.id, TaskStatus::Cancelled)
        .await
        .unwrap_err();
    assert!(err.is_timeout() || err.is_retryable(), "{err:?}");
    let state = |client: voidrunner_db::PooledClient| async move {
        let rows = client
            .simple_query(
                "SELECT coalesce(NULLIF(current_setting('voidrunner.user_id', true), ''), '-'), \
                        (xact_start = query_start)::text \
                 FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            )
            .await
            .unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0).unwrap().to_owned(),
                    row.get(1).unwrap().to_owned(),
                )),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        state(db.client().await.unwrap()).await,
        ("-".to_owned(), "true".to_owned())
    );
    // In a transaction.
    let (user_id, task_id) = (user.id, task.id);
    let failed = db
        .transaction(|tx| async move {
            tx.scoped(user_id)
                .tasks
                .update_status(task_id, TaskStatus::Cancelled)
                .await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(failed.is_timeout() || failed.is_retryable(), "{failed:?}");
    assert_eq!(
        state(db.client().await.unwrap()).await,
        ("-".to_owned(), "true".to_owned())
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        r.tasks.get(task.id).await.unwrap().status,
        TaskStatus::Pending
    );
}
