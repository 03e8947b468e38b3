//! The roles script (`voidrunner_db::roles`), `DbConfig::role` and the
//! privilege check of `Database::connect`, against the real server.
//!
//! The three group roles are the cluster's, shared by every test (the
//! script creates them once and any test may run it again); the LOGIN
//! roles a test makes have names of their own and are dropped with it.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use voidrunner_db::testing::{TestDatabase, server_config};
use voidrunner_db::{
    Database, DbConfig, Error, ExecutionQueue, ExecutionRepository, ExecutionStatus, LogRepository,
    LogScope, NewLogLine, NewTask, NewUser, Outcome, PageRequest, PasswordHash, PgExecutionQueue,
    PgExecutionRepository, PgTaskRepository, PgUserRepository, PoolerMode, RescuePolicy,
    ScopedLogRepository, TaskId, TaskRepository, TaskStatus, TaskUpdate, UserId, UserRepository,
    UserUpdate, roles,
};

/// A LOGIN role made by one test, member of the given groups; dropped
/// when it goes.
pub(crate) struct Login {
    name: String,
}

impl Login {
    pub(crate) async fn new(purpose: &str, member_of: &[&str]) -> Login {
        let name = unique(purpose);
        let mut sql = format!("CREATE ROLE {name} LOGIN");
        if !member_of.is_empty() {
            sql.push_str(&format!(" IN ROLE {}", member_of.join(", ")));
        }
        admin(&sql).await;
        Login { name }
    }

    /// `base`, logging in as this role.
    pub(crate) fn config(&self, base: &DbConfig) -> DbConfig {
        let mut config = base.clone();
        config.pg_config_mut().user(&self.name);
        small(config)
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        drop_role(self.name.clone());
    }
}

/// A NOLOGIN role made by one test; dropped when it goes, which must be
/// after the databases that hold grants to it.
struct Group {
    name: String,
}

impl Group {
    async fn new(purpose: &str) -> Group {
        let name = unique(purpose);
        admin(&format!("CREATE ROLE {name} NOLOGIN")).await;
        Group { name }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        drop_role(self.name.clone());
    }
}

/// `vr_test_{purpose}_{random}`: roles are shared by every database of the
/// cluster, so each test's are its own.
fn unique(purpose: &str) -> String {
    let token = uuid::Uuid::new_v4().simple().to_string();
    format!("vr_test_{purpose}_{}", &token[..12])
}

/// Runs `sql` as the harness's (superuser) login on the `postgres`
/// database.
async fn admin(sql: &str) {
    let config = small(server_config().await.unwrap().with_dbname("postgres"));
    let db = Database::connect(config).await.unwrap();
    db.client().await.unwrap().batch_execute(sql).await.unwrap();
    db.close(Duration::from_secs(5)).await;
}

/// Drops `role` from a thread of its own (a `Drop` cannot wait for the
/// test's runtime): its privileges in the test databases go first (the
/// databases may outlive it a moment), then the role.
fn drop_role(role: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(admin(&format!("DROP ROLE IF EXISTS {role}")));
    })
    .join();
    if dropped.is_err() && !std::thread::panicking() {
        panic!("dropping a test role failed");
    }
}

/// One or two connections: many tests run at once.
fn small(mut config: DbConfig) -> DbConfig {
    config.min_connections = 1;
    config.max_connections = 2;
    config
}

/// A migrated database of its own with the roles installed.
pub(crate) async fn with_roles() -> (TestDatabase, DbConfig) {
    let db = TestDatabase::new().await.unwrap();
    roles::install(&db).await.unwrap();
    let base = db.config().await.unwrap();
    (db, base)
}

/// The SQLSTATE of `sql` run on `client`, which must fail.
pub(crate) async fn refused(client: &tokio_postgres::Client, sql: &str) -> SqlState {
    let err = client.batch_execute(sql).await.expect_err(sql);
    err.code()
        .cloned()
        .unwrap_or_else(|| panic!("{sql}: {err}"))
}

/// Everything the script leaves behind in a database, as text: the roles'
/// attributes, the grants on the schema, tables and functions, and the
/// policies.
async fn privileges(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT format('role %s login=%s super=%s bypassrls=%s inherit=%s', rolname, \
                    rolcanlogin, rolsuper, rolbypassrls, rolinherit) \
             FROM pg_roles WHERE rolname LIKE 'voidrunner\\_%' \
             UNION ALL SELECT format('schema %s %s', nspname, nspacl) FROM pg_namespace \
             WHERE nspname = 'public' \
             UNION ALL SELECT format('table %s %s', relname, relacl) FROM pg_class \
             WHERE relname IN ('users', 'tasks', 'task_executions', 'task_counts', 'task_counts_by_user', \
                               'task_execution_logs', 'task_execution_log_chunks', \
                               'voidrunner_db_schema_history') \
             UNION ALL SELECT format('function %s %s', oid::regprocedure, proacl) FROM pg_proc \
             WHERE proname LIKE 'voidrunner\\_%' \
             UNION ALL SELECT format('policy %s %s %s %s %s', tablename, policyname, roles, qual, \
                    with_check) FROM pg_policies \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn the_script_is_idempotent() {
    let (db, _) = with_roles().await;
    let client = db.raw_client().await.unwrap();
    let first = privileges(&client).await;
    for role in roles::ALL {
        assert!(
            first.contains(&format!(
                "role {role} login=f super=f bypassrls=f inherit=t"
            )),
            "{role}: {first:#?}"
        );
    }
    // Exactly the DML each role's statements need (a: INSERT, r: SELECT,
    // w: UPDATE, d: DELETE), on nothing else.
    for (table, grants) in [
        ("users", &["voidrunner_app=arw/"][..]),
        ("tasks", &["voidrunner_app=arwd/", "voidrunner_worker=rw/"]),
        (
            "task_executions",
            &["voidrunner_app=arw/", "voidrunner_worker=arwd/"],
        ),
        // V12's counters: read only; the triggers on tasks write them.
        (
            "task_counts",
            &["voidrunner_app=r/", "voidrunner_worker=r/"],
        ),
        (
            "task_counts_by_user",
            &["voidrunner_app=r/", "voidrunner_worker=r/"],
        ),
    ] {
        let line = first
            .iter()
            .find(|p| p.starts_with(&format!("table {table} ")))
            .unwrap();
        for grant in grants {
            assert!(line.contains(grant), "{line}");
        }
        assert_eq!(line.matches("voidrunner_").count(), grants.len(), "{line}");
    }
    assert!(
        first.contains(&"table voidrunner_db_schema_history ".to_owned()),
        "{first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|p| p.starts_with("policy tasks tasks_worker {voidrunner_worker} true true")),
        "{first:#?}"
    );
    // Again through install, and as psql would run the file.
    roles::install(&db).await.unwrap();
    assert_eq!(privileges(&client).await, first);
    client.batch_execute(roles::SQL).await.unwrap();
    assert_eq!(privileges(&client).await, first);
}

#[tokio::test]
async fn the_app_role_changes_no_schema_and_reads_no_history() {
    let (_db, base) = with_roles().await;
    let login = Login::new("app", &[roles::APP]).await;
    // What the crate does at connect, health check and warm needs nothing
    // the role lacks.
    let app = Database::connect(login.config(&base)).await.unwrap();
    app.health_check().await.unwrap();
    app.warm().await.unwrap();
    let client = app.client().await.unwrap();
    for sql in [
        "CREATE TABLE vr_probe (id int)",
        "CREATE FUNCTION vr_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE tasks ADD COLUMN vr_probe int",
        "DROP TABLE tasks",
        "TRUNCATE tasks",
        "CREATE INDEX ON tasks (name)",
        "DROP POLICY tasks_worker ON tasks",
        "SELECT count(*) FROM voidrunner_db_schema_history",
        "DELETE FROM task_executions",
    ] {
        assert_eq!(
            refused(&client, sql).await,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}"
        );
    }
    let err = app.migration_status().await.unwrap_err();
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    drop(client);
    app.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_worker_role_connects_without_the_users_table() {
    let (_db, base) = with_roles().await;
    let login = Login::new("worker", &[roles::WORKER]).await;
    let worker = Database::connect(login.config(&base)).await.unwrap();
    worker.health_check().await.unwrap();
    worker.warm().await.unwrap();
    let client = worker.client().await.unwrap();
    for sql in [
        "SELECT count(*) FROM users",
        "INSERT INTO tasks (user_id, name, script_content) VALUES (gen_random_uuid(), 'x', 'y')",
        "DELETE FROM tasks",
        "TRUNCATE task_executions",
        "CREATE TABLE vr_probe (id int)",
    ] {
        assert_eq!(
            refused(&client, sql).await,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}"
        );
    }
    drop(client);
    worker.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_role_setting_holds_for_every_pooled_session() {
    let (db, base) = with_roles().await;
    seed(&db).await;
    for pooler in [PoolerMode::Direct, PoolerMode::Session] {
        let mut config = small(base.clone());
        config.role = Some(roles::APP.to_owned());
        config.pooler = pooler;
        config.min_connections = 2;
        let db = Database::connect(config).await.unwrap();
        db.health_check().await.unwrap();
        let login = base.pg_config().get_user().unwrap().to_owned();
        for _ in 0..2 {
            let client = db.client().await.unwrap();
            let row = client
                .query_one("SELECT current_user::text, session_user::text", &[])
                .await
                .unwrap();
            let (current, session): (String, String) = (row.get(0), row.get(1));
            assert_eq!((current.as_str(), session), (roles::APP, login.clone()));
            // The login can do no more than the role: no schema change,
            // and bound by row-level security (no scope: no row).
            assert_eq!(
                refused(&client, "CREATE TABLE vr_probe (id int)").await,
                SqlState::INSUFFICIENT_PRIVILEGE
            );
            assert_eq!(visible(&client, "tasks").await, 0);
        }
        if pooler == PoolerMode::Direct {
            // A startup option is the session's default: RESET keeps it.
            let client = db.client().await.unwrap();
            client.batch_execute("RESET ROLE").await.unwrap();
            let current: String = client
                .query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(current, roles::APP);
        }
        db.close(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn a_role_that_cannot_be_taken_is_a_configuration_error() {
    let (_db, base) = with_roles().await;
    let mut missing = small(base.clone());
    missing.role = Some(unique("missing"));
    for pooler in [PoolerMode::Direct, PoolerMode::Session] {
        missing.pooler = pooler;
        let err = Database::connect(missing.clone()).await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{pooler}: {err:?}");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
    // A login that is not a member.
    let login = Login::new("stranger", &[]).await;
    let mut stranger = login.config(&base);
    stranger.role = Some(roles::WORKER.to_owned());
    let err = Database::connect(stranger.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("permission denied to set role")
            && message.contains(&format!(
                "GRANT \"voidrunner_worker\" TO \"{}\"",
                login.name
            )),
        "{message}"
    );
    // The lazy pool fails the same way on its first checkout.
    let lazy = Database::connect_lazy(stranger).unwrap();
    let err = lazy.client().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn connect_names_the_privileges_a_role_lacks() {
    // Made first, so dropped last: the database holds grants to it.
    let group = Group::new("noselect").await;
    let db = TestDatabase::new().await.unwrap();
    let mut config = small(db.config().await.unwrap());
    config.role = Some(group.name.clone());
    let err = Database::connect(config.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let message = err.to_string();
    for expected in [
        format!("role \"{}\"", group.name),
        "SELECT on table task_executions".to_owned(),
        "SELECT on table tasks".to_owned(),
    ] {
        assert!(message.contains(&expected), "{expected}: {message}");
    }
    assert!(!message.contains("users"), "{message}");
    // Lazy stays lazy: nothing is checked, nothing fails yet.
    let lazy = Database::connect_lazy(config.clone()).unwrap();
    lazy.health_check().await.unwrap();

    let admin = db.raw_client().await.unwrap();
    admin
        .batch_execute(&format!(
            "GRANT SELECT ON tasks, task_executions TO {0}; \
             REVOKE USAGE ON SCHEMA public FROM PUBLIC; \
             REVOKE EXECUTE ON FUNCTION voidrunner_users_page(timestamptz, uuid, bigint) FROM PUBLIC",
            group.name
        ))
        .await
        .unwrap();
    let err = Database::connect(config.clone()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("USAGE on schema public")
            && message.contains("EXECUTE on function public.voidrunner_users_page(")
            && !message.contains("SELECT on table"),
        "{message}"
    );
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {0}; \
             GRANT EXECUTE ON FUNCTION voidrunner_users_page(timestamptz, uuid, bigint) TO {0}",
            group.name
        ))
        .await
        .unwrap();
    let connected = Database::connect(config).await.unwrap();
    connected.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn migrations_run_as_the_owner_role_own_what_they_create() {
    let db = TestDatabase::empty().await.unwrap();
    // Before the migrations: the roles, and CREATE on the schema for the
    // owner role; the table grants wait.
    roles::install(&db).await.unwrap();
    let mut config = small(db.config().await.unwrap());
    config.role = Some(roles::OWNER.to_owned());
    let owner = Database::connect(config).await.unwrap();
    owner.migrate().await.unwrap();
    // Then the grants, run as the owner role (the roles exist by now).
    roles::install(&owner).await.unwrap();
    let client = db.raw_client().await.unwrap();
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c \
             WHERE c.relname IN ('users', 'tasks', 'task_executions', 'voidrunner_db_schema_history') \
             UNION ALL SELECT p.proname::text, pg_get_userbyid(p.proowner)::text FROM pg_proc p \
             WHERE p.proname LIKE 'voidrunner\\_%'",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() > 4);
    for row in rows {
        let (object, owner): (String, String) = (row.get(0), row.get(1));
        assert_eq!(owner, roles::OWNER, "{object}");
    }
    let granted: bool = client
        .query_one(
            "SELECT has_table_privilege('voidrunner_app', 'tasks', 'UPDATE') \
                AND has_table_privilege('voidrunner_worker', 'task_executions', 'DELETE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted);
    owner.close(Duration::from_secs(5)).await;
}

/// Two users' tasks, each with a pending execution, written as the
/// harness's superuser (whom row-level security never binds).
pub(crate) struct Seeded {
    pub(crate) a: (UserId, TaskId),
    pub(crate) b: (UserId, TaskId),
}

pub(crate) async fn seed(db: &Database) -> Seeded {
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let mut seeded = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let user = users
            .create(NewUser::new(email, PasswordHash::new("h")))
            .await
            .unwrap();
        let task = tasks
            .create(NewTask::new(user.id, "t", "print(1)"))
            .await
            .unwrap();
        queue.enqueue(task.id, None).await.unwrap();
        seeded.push((user.id, task.id));
    }
    Seeded {
        a: seeded[0],
        b: seeded[1],
    }
}

/// The count of `table`'s rows `client` sees.
async fn visible(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_app_role_sees_and_changes_only_the_rows_of_its_scope() {
    let (db, base) = with_roles().await;
    let Seeded { a, b } = seed(&db).await;
    let login = Login::new("tenant", &[roles::APP]).await;
    let app = Database::connect(login.config(&base)).await.unwrap();
    let pooled = app.client().await.unwrap();
    let client: &tokio_postgres::Client = &pooled;

    // Scoped to nobody, in a transaction or not: no row at all.
    for table in ["tasks", "task_executions"] {
        assert_eq!(visible(client, table).await, 0, "{table}");
    }
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(visible(client, "tasks").await, 0);
    client.batch_execute("ROLLBACK").await.unwrap();

    let scope_to_a = format!("BEGIN; SET LOCAL voidrunner.user_id = '{}'", a.0);
    client.batch_execute(&scope_to_a).await.unwrap();
    let tx = client;
    let ids: Vec<uuid::Uuid> = tx
        .query("SELECT id FROM tasks", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, [a.1.as_uuid()]);
    let owners: Vec<uuid::Uuid> = tx
        .query("SELECT user_id FROM task_executions", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(owners, [a.0.as_uuid()]);
    let update = "UPDATE tasks SET name = 'renamed' WHERE id = $1";
    assert_eq!(tx.execute(update, &[&a.1.as_uuid()]).await.unwrap(), 1);
    // B's rows are not there to change.
    assert_eq!(tx.execute(update, &[&b.1.as_uuid()]).await.unwrap(), 0);
    let cancel = "UPDATE task_executions SET status = 'cancelled', completed_at = now() \
                  WHERE task_id = $1";
    assert_eq!(tx.execute(cancel, &[&b.1.as_uuid()]).await.unwrap(), 0);
    let delete = "DELETE FROM tasks WHERE id = $1";
    assert_eq!(tx.execute(delete, &[&b.1.as_uuid()]).await.unwrap(), 0);
    tx.batch_execute("COMMIT").await.unwrap();
    // Nor written for B: the policies' WITH CHECK refuses the row.
    client.batch_execute(&scope_to_a).await.unwrap();
    let err = tx
        .execute(
            "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'x', 'y')",
            &[&b.0.as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    client.batch_execute("ROLLBACK").await.unwrap();
    // The scope ended with its transaction.
    assert_eq!(visible(client, "tasks").await, 0);
    drop(pooled);

    // What the superuser sees: only A's task renamed, B's untouched.
    let tasks = PgTaskRepository::new(db.db().clone());
    assert_eq!(tasks.get(a.1).await.unwrap().name, "renamed");
    assert_eq!(tasks.get(b.1).await.unwrap().name, "t");
    // The unscoped repositories fail closed for the app role.
    let err = PgTaskRepository::new(app.clone())
        .get(a.1)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    app.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_worker_role_runs_the_queue_over_every_row() {
    let (db, base) = with_roles().await;
    let Seeded { a, b } = seed(&db).await;
    let login = Login::new("worker", &[roles::WORKER]).await;
    let worker = Database::connect(login.config(&base)).await.unwrap();
    let client = worker.client().await.unwrap();
    assert_eq!(visible(&client, "tasks").await, 2);
    assert_eq!(visible(&client, "task_executions").await, 2);
    drop(client);

    // The event poll reads every execution too.
    let mut events = worker
        .subscribe_polling(Duration::from_millis(20), Duration::ZERO)
        .await
        .unwrap();
    let queue = PgExecutionQueue::new(worker.clone());
    let lease = Duration::from_secs(60);
    let claimed = queue.claim("w1", 10, lease).await.unwrap();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on");
        let event = event.execution().expect("an execution event");
        assert_eq!(event.worker_id.as_deref(), Some("w1"), "{event:?}");
    }
    let mut tasks: Vec<TaskId> = claimed.iter().map(|c| c.execution.task_id).collect();
    tasks.sort();
    let mut expected = vec![a.1, b.1];
    expected.sort();
    assert_eq!(tasks, expected, "both users' work");
    let (done, lost) = (&claimed[0], &claimed[1]);
    queue
        .heartbeat(done.execution.id, "w1", lease)
        .await
        .unwrap();
    // Log lines of both users' executions: appended, read and searched.
    let logs = worker.logs();
    for c in &claimed {
        let lines = (0..3)
            .map(|i| NewLogLine::stdout(i, format!("worker line {i}")))
            .collect();
        assert_eq!(logs.append(c.execution.id, "w1", lines).await.unwrap(), 3);
        assert_eq!(logs.tail(c.execution.id, 10).await.unwrap().len(), 3);
    }
    let found = logs
        .search(LogScope::User(a.0), "worker", PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 3);
    queue
        .complete(done.execution.id, "w1", Outcome::completed(0))
        .await
        .unwrap();
    // The other's lease runs out (set by hand, rather than waited for).
    db.raw_client()
        .await
        .unwrap()
        .execute(
            "UPDATE task_executions SET lease_expires_at = now() - interval '1 minute' \
             WHERE id = $1",
            &[&lost.execution.id.as_uuid()],
        )
        .await
        .unwrap();
    let report = queue.rescue_expired(RescuePolicy::default()).await.unwrap();
    assert_eq!(report.timed_out, [lost.execution.id]);
    assert_eq!(queue.prune(Duration::ZERO, 100).await.unwrap(), 2);
    // The pruned executions' lines went with them.
    let client = db.raw_client().await.unwrap();
    assert_eq!(visible(&client, "task_execution_logs").await, 0);
    assert_eq!(visible(&client, "task_execution_log_chunks").await, 0);
    worker.close(Duration::from_secs(5)).await;
}

/// Every call of the scoped view, and the users repository, as a login of
/// the app role: the grants are what these statements need.
#[tokio::test]
async fn the_app_role_runs_the_scoped_view_and_user_management() {
    let (db, base) = with_roles().await;
    let Seeded { a, b } = seed(&db).await;
    let login = Login::new("handler", &[roles::APP]).await;
    let app = Database::connect(login.config(&base)).await.unwrap();
    let mine = app.scoped(a.0);
    let page = PageRequest::first(10);

    // Log lines of both users' executions, written as another writer
    // would: the app role reads and searches its user's only, and a
    // deleted task takes its lines along.
    let raw = db.raw_client().await.unwrap();
    raw.batch_execute(
        "INSERT INTO task_execution_logs \
           (execution_id, execution_created_at, user_id, seq, stream, logged_at, line) \
         SELECT id, created_at, user_id, g, 'stdout', now(), 'app line ' || g \
         FROM task_executions, generate_series(0, 2) g; \
         INSERT INTO task_execution_log_chunks (execution_id, execution_created_at, user_id, \
           task_id, first_seq, last_seq, document) \
         SELECT id, created_at, user_id, task_id, 0, 2, to_tsvector('simple', 'app line') \
         FROM task_executions;",
    )
    .await
    .unwrap();
    let logs = app.scoped_logs(a.0);
    let executions = PgExecutionRepository::new(db.db().clone());
    let a_run = executions.latest_for_task(a.1).await.unwrap().unwrap();
    let b_run = executions.latest_for_task(b.1).await.unwrap().unwrap();
    assert_eq!(logs.tail(a_run.id, 10).await.unwrap().len(), 3);
    assert_eq!(
        logs.page(a_run.id, page.clone()).await.unwrap().items.len(),
        3
    );
    assert!(logs.tail(b_run.id, 10).await.unwrap_err().is_not_found());
    let found = logs.search("line", page.clone()).await.unwrap();
    assert_eq!(found.items.len(), 3);
    assert!(found.items.iter().all(|m| m.line.execution_id == a_run.id));
    assert!(
        logs.search_task(b.1, "line", page.clone())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let doomed = mine
        .tasks
        .create(NewTask::new(a.0, "doomed", "print(3)"))
        .await
        .unwrap();
    let doomed_run = mine.executions.enqueue(doomed.id, None).await.unwrap();
    raw.execute(
        "INSERT INTO task_execution_logs \
           (execution_id, execution_created_at, user_id, seq, stream, logged_at, line) \
         SELECT id, created_at, user_id, 0, 'stdout', now(), 'doomed' \
         FROM task_executions WHERE id = $1",
        &[&doomed_run.id],
    )
    .await
    .unwrap();
    mine.tasks.delete(doomed.id).await.unwrap();
    let left: i64 = raw
        .query_one("SELECT count(*) FROM task_execution_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 6, "the deleted task's line is gone, the others kept");
    drop(raw);

    assert_eq!(mine.tasks.get(a.1).await.unwrap().id, a.1);
    assert!(mine.tasks.get(b.1).await.unwrap_err().is_not_found());
    assert_eq!(mine.tasks.count().await.unwrap(), 1);
    assert_eq!(mine.tasks.list(page.clone()).await.unwrap().items.len(), 1);
    assert_eq!(mine.executions.count().await.unwrap(), 1);
    let latest = mine.executions.latest_for_task(a.1).await.unwrap().unwrap();
    assert_eq!(mine.executions.get(latest.id).await.unwrap().id, latest.id);
    let listed = mine
        .executions
        .list_by_task(a.1, page.clone())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    let created = mine
        .tasks
        .create(NewTask::new(a.0, "new", "print(2)"))
        .await
        .unwrap();
    let renamed = mine
        .tasks
        .update(
            created.id,
            TaskUpdate {
                name: Some("renamed".to_owned()),
                ..TaskUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    let queued = mine.executions.enqueue(created.id, None).await.unwrap();
    mine.executions.cancel(queued.id).await.unwrap();
    mine.tasks
        .update_status(a.1, TaskStatus::Cancelled)
        .await
        .unwrap();
    mine.tasks.delete(created.id).await.unwrap();
    // B's work is not there to cancel.
    let theirs = PgExecutionRepository::new(db.db().clone())
        .latest_for_task(b.1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        mine.executions
            .cancel(theirs.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        PgExecutionRepository::new(db.db().clone())
            .get(theirs.id)
            .await
            .unwrap()
            .status,
        ExecutionStatus::Pending
    );

    let users = PgUserRepository::new(app.clone());
    let carol = users
        .create(NewUser::new("c@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    assert_eq!(
        users.get_by_email("c@example.com").await.unwrap().id,
        carol.id
    );
    assert_eq!(users.count().await.unwrap(), 3);
    assert_eq!(users.list(page).await.unwrap().items.len(), 3);
    users
        .update(
            carol.id,
            UserUpdate {
                email: Some("carol@example.com".to_owned()),
                password_hash: None,
                display_name: Some("Carol".to_owned()),
            },
        )
        .await
        .unwrap();
    // Deleting a user cascades to their tasks past row-level security:
    // administration's, not the application role's.
    let refused = users.delete(carol.id).await.unwrap_err();
    assert_eq!(
        refused.sqlstate().map(|s| s.code()),
        Some("42501"),
        "{refused:?}"
    );
    app.close(Duration::from_secs(5)).await;
}
