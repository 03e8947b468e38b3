//! Every CHECK constraint and foreign key refuses a bad row written with raw
//! SQL, the error maps to the right variant with the constraint's name, and
//! the table is left unchanged.

use tokio_postgres::types::ToSql;
use uuid::Uuid;
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{Error, TimeoutKind};

use crate::raw;

const TASK_COLUMNS: &str = "user_id, name, description, script_content, script_type, status, priority, timeout_seconds, metadata";

struct Fixture {
    db: TestDatabase,
    user: Uuid,
    task: Uuid,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::new().await.unwrap();
    let client = raw(&db).await;
    let user: Uuid = client
        .query_one(
            "INSERT INTO users (email, password_hash) VALUES ('owner@example.com', 'x') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let task: Uuid = client
        .query_one(
            "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'ok', 'print(1)') RETURNING id",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    Fixture { db, user, task }
}

async fn count(db: &TestDatabase, table: &str) -> i64 {
    raw(db)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Runs `sql`, expects it to fail, and returns the crate error.
async fn refused(db: &TestDatabase, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Error {
    let err = raw(db).await.execute(sql, params).await.expect_err(sql);
    Error::from(err)
}

async fn assert_check(
    db: &TestDatabase,
    table: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    constraint: &str,
) {
    let before = count(db, table).await;
    let err = refused(db, sql, params).await;
    assert!(err.is_check_violation(), "{constraint}: {err:?}");
    assert_eq!(err.constraint(), Some(constraint), "{err}");
    assert_eq!(
        count(db, table).await,
        before,
        "{constraint} changed {table}"
    );
}

#[tokio::test]
async fn user_checks() {
    let f = fixture().await;
    let insert = "INSERT INTO users (email, password_hash) VALUES ($1, $2)";
    for (email, hash, constraint) in [
        ("Upper@Example.com", "h", "users_email_normalized"),
        ("MiXed@example.com", "h", "users_email_normalized"),
        ("not-an-email", "h", "users_email_format"),
        ("a@b.c", "h", "users_email_format"),
        ("fine@example.com", "   ", "users_password_hash_not_blank"),
    ] {
        assert_check(&f.db, "users", insert, &[&email, &hash], constraint).await;
    }
    // NOT NULL violations report the column.
    let null: Option<&str> = None;
    assert_check(&f.db, "users", insert, &[&null, &"h"], "email").await;

    let dup = refused(&f.db, insert, &[&"owner@example.com", &"h"]).await;
    assert!(dup.is_conflict(), "{dup:?}");
    assert_eq!(dup.constraint(), Some("users_email_key"));
    assert_eq!(count(&f.db, "users").await, 1);
}

/// A task row for raw inserts; `valid()` passes every constraint, and each
/// case changes one field.
#[derive(Clone)]
struct TaskRow {
    name: String,
    description: Option<String>,
    script: String,
    script_type: &'static str,
    status: &'static str,
    priority: i32,
    timeout: i32,
    metadata: serde_json::Value,
}

impl TaskRow {
    fn valid() -> Self {
        TaskRow {
            name: "n".into(),
            description: None,
            script: "print(1)".into(),
            script_type: "python",
            status: "pending",
            priority: 0,
            timeout: 10,
            metadata: serde_json::json!({}),
        }
    }

    async fn insert(&self, db: &TestDatabase, user: Uuid) -> Result<u64, tokio_postgres::Error> {
        raw(db)
            .await
            .execute(
                &format!(
                    "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ),
                &[
                    &user,
                    &self.name,
                    &self.description,
                    &self.script,
                    &self.script_type,
                    &self.status,
                    &self.priority,
                    &self.timeout,
                    &self.metadata,
                ],
            )
            .await
    }
}

#[tokio::test]
async fn task_checks() {
    let f = fixture().await;
    let with = |change: &dyn Fn(&mut TaskRow)| {
        let mut row = TaskRow::valid();
        change(&mut row);
        row
    };
    let cases = [
        (with(&|r| r.name = String::new()), "tasks_name_not_blank"),
        (with(&|r| r.name = "  \t".into()), "tasks_name_not_blank"),
        (
            with(&|r| r.description = Some("d".repeat(1001))),
            "tasks_description_length",
        ),
        (
            with(&|r| r.script = " \n ".into()),
            "tasks_script_content_not_blank",
        ),
        (
            with(&|r| r.script = "s".repeat(65536)),
            "tasks_script_content_length",
        ),
        (with(&|r| r.script_type = "ruby"), "tasks_script_type_valid"),
        (with(&|r| r.status = "done"), "tasks_status_valid"),
        (with(&|r| r.priority = 11), "tasks_priority_range"),
        (with(&|r| r.priority = -1), "tasks_priority_range"),
        (with(&|r| r.timeout = 0), "tasks_timeout_seconds_range"),
        (with(&|r| r.timeout = 3601), "tasks_timeout_seconds_range"),
        (
            with(&|r| r.metadata = serde_json::json!([1, 2])),
            "tasks_metadata_object",
        ),
        (
            with(&|r| r.metadata = serde_json::json!("text")),
            "tasks_metadata_object",
        ),
    ];
    for (row, constraint) in cases {
        let before = count(&f.db, "tasks").await;
        let err = Error::from(row.insert(&f.db, f.user).await.expect_err(constraint));
        assert!(err.is_check_violation(), "{constraint}: {err:?}");
        assert_eq!(err.constraint(), Some(constraint), "{err}");
        assert_eq!(count(&f.db, "tasks").await, before);
    }

    // The limits themselves are accepted.
    let at_limits = TaskRow {
        description: Some("d".repeat(1000)),
        script: "s".repeat(65535),
        script_type: "go",
        status: "cancelled",
        priority: 10,
        timeout: 3600,
        ..TaskRow::valid()
    };
    at_limits
        .insert(&f.db, f.user)
        .await
        .expect("values at the limits are valid");
    TaskRow {
        priority: 0,
        timeout: 1,
        ..TaskRow::valid()
    }
    .insert(&f.db, f.user)
    .await
    .expect("lower limits are valid");

    let fk = Error::from(
        TaskRow::valid()
            .insert(&f.db, Uuid::new_v4())
            .await
            .unwrap_err(),
    );
    assert!(fk.is_foreign_key(), "{fk:?}");
    assert_eq!(fk.constraint(), Some("tasks_user_id_fkey"));
}

/// An execution row for raw inserts: status, return code, execution time,
/// memory, and completed_at minus started_at in seconds.
type ExecutionRow = (&'static str, Option<i32>, Option<i32>, Option<i64>, f64);

#[tokio::test]
async fn execution_checks() {
    let f = fixture().await;
    let insert = "INSERT INTO task_executions (task_id, status, return_code, execution_time_ms, memory_usage_bytes, started_at, completed_at) \
                  VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6))";
    let cases: [(ExecutionRow, &str); 6] = [
        (
            ("finished", None, None, None, 0.0),
            "task_executions_status_valid",
        ),
        (
            ("completed", Some(256), None, None, 0.0),
            "task_executions_return_code_range",
        ),
        (
            ("completed", Some(-1), None, None, 0.0),
            "task_executions_return_code_range",
        ),
        (
            ("completed", Some(0), Some(-1), None, 0.0),
            "task_executions_execution_time_ms_nonnegative",
        ),
        (
            ("completed", Some(0), Some(0), Some(-1), 0.0),
            "task_executions_memory_usage_bytes_nonnegative",
        ),
        (
            ("completed", Some(0), Some(0), Some(0), -1.0),
            "task_executions_completed_after_started",
        ),
    ];
    for ((status, code, time_ms, memory, completed_offset), constraint) in cases {
        assert_check(
            &f.db,
            "task_executions",
            insert,
            &[
                &f.task,
                &status,
                &code,
                &time_ms,
                &memory,
                &completed_offset,
            ],
            constraint,
        )
        .await;
    }
    raw(&f.db)
        .await
        .execute(
            insert,
            &[
                &f.task,
                &"completed",
                &Some(255i32),
                &Some(0i32),
                &Some(0i64),
                &0.0f64,
            ],
        )
        .await
        .expect("values at the limits are valid");

    let fk = refused(
        &f.db,
        "INSERT INTO task_executions (task_id) VALUES ($1)",
        &[&Uuid::new_v4()],
    )
    .await;
    assert!(fk.is_foreign_key(), "{fk:?}");
    assert_eq!(fk.constraint(), Some("task_executions_task_id_fkey"));
}

#[tokio::test]
async fn deleting_a_user_cascades_to_tasks_and_executions() {
    let f = fixture().await;
    let client = raw(&f.db).await;
    client
        .execute(
            // One active execution per task (V5): the second has ended.
            "INSERT INTO task_executions (task_id, status) VALUES ($1, 'pending'), ($1, 'cancelled')",
            &[&f.task],
        )
        .await
        .unwrap();
    // A second user's rows must survive.
    let other: Uuid = client
        .query_one("INSERT INTO users (email, password_hash) VALUES ('other@example.com', 'h') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let other_task: Uuid = client
        .query_one(
            "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'o', 'x') RETURNING id",
            &[&other],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO task_executions (task_id) VALUES ($1)",
            &[&other_task],
        )
        .await
        .unwrap();

    assert_eq!(
        client
            .execute("DELETE FROM users WHERE id = $1", &[&f.user])
            .await
            .unwrap(),
        1
    );
    let left: (i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM tasks WHERE user_id = $1), \
                        (SELECT count(*) FROM task_executions WHERE task_id = $2)",
                &[&f.user, &f.task],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(left, (0, 0));
    assert_eq!(count(&f.db, "tasks").await, 1);
    assert_eq!(count(&f.db, "task_executions").await, 1);
}

#[tokio::test]
async fn updates_bump_updated_at() {
    let f = fixture().await;
    let client = raw(&f.db).await;
    let (created, before): (time::OffsetDateTime, time::OffsetDateTime) = {
        let row = client
            .query_one(
                "SELECT created_at, updated_at FROM tasks WHERE id = $1",
                &[&f.task],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(created, before);
    let after: time::OffsetDateTime = client
        .query_one(
            "UPDATE tasks SET priority = 5 WHERE id = $1 RETURNING updated_at",
            &[&f.task],
        )
        .await
        .unwrap()
        .get(0);
    assert!(after > before, "{after} > {before}");
    let user_after: time::OffsetDateTime = client
        .query_one(
            "UPDATE users SET password_hash = 'new' WHERE id = $1 RETURNING updated_at",
            &[&f.user],
        )
        .await
        .unwrap()
        .get(0);
    assert!(user_after > before);
}

#[tokio::test]
async fn statement_timeout_maps_to_timeout() {
    let db = TestDatabase::with_config(|c| {
        c.statement_timeout = Some(std::time::Duration::from_millis(100))
    })
    .await
    .unwrap();
    let err = Error::from(
        raw(&db)
            .await
            .execute("SELECT pg_sleep(5)", &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Statement), "{err:?}");
    assert_eq!(
        err.sqlstate(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
}

#[tokio::test]
async fn statement_timeout_can_be_left_unset() {
    let db = TestDatabase::with_config(|c| {
        c.statement_timeout = None;
        c.idle_in_transaction_timeout = None;
    })
    .await
    .unwrap();
    let client = raw(&db).await;
    let row = client
        .query_one("SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')", &[])
        .await
        .unwrap();
    // The server defaults, i.e. nothing was sent at connect.
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("0".into(), "0".into())
    );

    let defaults = TestDatabase::new().await.unwrap();
    let row = raw(&defaults)
        .await
        .query_one("SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("30s".into(), "1min".into())
    );
}

#[tokio::test]
async fn a_terminated_session_is_unavailable() {
    let db = TestDatabase::new().await.unwrap();
    let client = raw(&db).await;
    let err = client
        .execute("SELECT pg_terminate_backend(pg_backend_pid())", &[])
        .await
        .unwrap_err();
    let err = Error::from(err);
    assert!(err.is_unavailable(), "{err:?}");
}
