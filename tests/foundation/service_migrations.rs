//! A service's own migrations beside the crate's (`Database::migrate_service`,
//! `TestDatabase::with_migrations`).

use voidrunner_db::migrate::refinery::Migration;
use voidrunner_db::migrate::{self, HISTORY_TABLE};
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{Database, Error};

use crate::raw;

const SERVICE_HISTORY: &str = "svc_schema_history";

fn migration(name: &str, sql: &str) -> Migration {
    Migration::unapplied(name, sql).expect("well-named migration")
}

/// V1: a table of the service's referencing the crate's `tasks`.
fn v1() -> Migration {
    migration(
        "V1__task_notes",
        "CREATE TABLE task_notes (\
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, \
             note text NOT NULL)",
    )
}

/// V2: builds on V1.
fn v2() -> Migration {
    migration(
        "V2__task_notes_pinned",
        "ALTER TABLE task_notes ADD COLUMN pinned boolean NOT NULL DEFAULT false",
    )
}

/// `(version, name)` of every row of `table`, or `None` without the table.
async fn history(db: &Database, table: &str) -> Option<Vec<(i32, String)>> {
    let client = raw(db).await;
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0);
    if !exists {
        return None;
    }
    let rows = client
        .query(
            &format!("SELECT version, name FROM {table} ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn has_column(db: &Database, table: &str, column: &str) -> bool {
    raw(db)
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
            &[&table, &column],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

#[tokio::test]
async fn service_migrations_apply_after_the_crates_in_their_own_history() {
    let db = TestDatabase::new().await.unwrap();
    let crate_history = history(&db, HISTORY_TABLE).await.unwrap();
    assert!(db.migrate().await.unwrap().is_empty());

    let applied = db
        .migrate_service(&[v2(), v1()], SERVICE_HISTORY)
        .await
        .unwrap();
    assert_eq!(applied, [1, 2]);
    assert!(has_column(&db, "task_notes", "pinned").await);
    assert_eq!(
        history(&db, SERVICE_HISTORY).await.unwrap(),
        [
            (1, "task_notes".to_owned()),
            (2, "task_notes_pinned".to_owned())
        ]
    );
    // The crate's history and status know nothing of them.
    assert_eq!(history(&db, HISTORY_TABLE).await.unwrap(), crate_history);
    let status = db.migration_status().await.unwrap();
    assert!(status.pending.is_empty());
    assert_eq!(status.current_version(), migrate::latest_version());

    // The reference to the crate's table holds.
    let err = raw(&db)
        .await
        .execute(
            "INSERT INTO task_notes (task_id, note) VALUES (gen_random_uuid(), 'orphan')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23503", "{err}");

    // A second run, and the crate's, change nothing.
    assert!(
        db.migrate_service(&[v1(), v2()], SERVICE_HISTORY)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.migrate().await.unwrap().is_empty());
    assert_eq!(history(&db, SERVICE_HISTORY).await.unwrap().len(), 2);
}

#[tokio::test]
async fn service_migrations_need_the_crates_first() {
    let db = TestDatabase::empty().await.unwrap();
    let err = db
        .migrate_service(&[v1()], SERVICE_HISTORY)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err:?}");
    assert!(err.to_string().contains("Database::migrate"), "{err}");
    assert_eq!(history(&db, SERVICE_HISTORY).await, None);

    db.migrate().await.unwrap();
    assert_eq!(
        db.migrate_service(&[v1()], SERVICE_HISTORY).await.unwrap(),
        [1]
    );
}

#[tokio::test]
async fn an_edited_service_migration_is_refused() {
    let db = TestDatabase::new().await.unwrap();
    db.migrate_service(&[v1()], SERVICE_HISTORY).await.unwrap();
    let edited = migration(
        "V1__task_notes",
        "CREATE TABLE task_notes (id bigint PRIMARY KEY)",
    );
    let err = db
        .migrate_service(&[edited, v2()], SERVICE_HISTORY)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err:?}");
    assert!(!has_column(&db, "task_notes", "pinned").await);
}

#[tokio::test]
async fn bad_history_tables_and_unmarked_scripts_are_refused() {
    let db = TestDatabase::new().await.unwrap();
    for table in [HISTORY_TABLE, "Svc", "svc; DROP TABLE tasks", ""] {
        let err = db.migrate_service(&[v1()], table).await.unwrap_err();
        assert!(err.is_validation(), "{table:?}: {err:?}");
        let err = TestDatabase::with_migrations(&[v1()], table)
            .await
            .unwrap_err();
        assert!(err.is_validation(), "{table:?}: {err:?}");
    }
    let outside = migration(
        "V1__concurrent",
        "-- voidrunner:no-transaction\nCREATE INDEX CONCURRENTLY tasks_name ON tasks (name)",
    );
    let err = db
        .migrate_service(&[outside], SERVICE_HISTORY)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err:?}");
    assert_eq!(history(&db, SERVICE_HISTORY).await, None);
}

/// Names only the server can judge: a reserved word (refinery uses the
/// name unquoted) and an existing relation that is no migration history.
/// Refused as invalid input before anything is written.
#[tokio::test]
async fn history_tables_the_server_would_refuse_are_invalid_input() {
    let db = TestDatabase::new().await.unwrap();
    raw(&db)
        .await
        .batch_execute("CREATE TABLE svc_data (id int PRIMARY KEY)")
        .await
        .unwrap();
    for table in ["select", "user", "svc_data", "tasks"] {
        let err = db.migrate_service(&[v1()], table).await.unwrap_err();
        assert!(err.is_validation(), "{table:?}: {err:?}");
    }
    assert!(!has_column(&db, "task_notes", "note").await);
    assert!(!has_column(&db, "svc_data", "version").await);
    // An existing history of its own is fine: applying twice is a no-op.
    db.migrate_service(&[v1()], SERVICE_HISTORY).await.unwrap();
    db.migrate_service(&[v1()], SERVICE_HISTORY).await.unwrap();
    assert_eq!(history(&db, SERVICE_HISTORY).await.unwrap().len(), 1);
}

#[tokio::test]
async fn test_databases_include_service_migrations_from_a_template_of_their_own() {
    let base = TestDatabase::new().await.unwrap();
    let one = TestDatabase::with_migrations(&[v1()], SERVICE_HISTORY)
        .await
        .unwrap();
    let two = TestDatabase::with_migrations(&[v1(), v2()], SERVICE_HISTORY)
        .await
        .unwrap();
    let one_again = TestDatabase::with_migrations(&[v1()], SERVICE_HISTORY)
        .await
        .unwrap();

    let template = |db: &TestDatabase| db.template().unwrap().to_owned();
    assert_ne!(template(&one), template(&base));
    assert_ne!(template(&one), template(&two));
    assert_ne!(template(&two), template(&base));
    assert_eq!(template(&one), template(&one_again));
    assert_ne!(one.name(), one_again.name());

    assert_eq!(history(&base, SERVICE_HISTORY).await, None);
    assert!(!has_column(&base, "task_notes", "id").await);
    assert_eq!(
        history(&one, SERVICE_HISTORY).await.unwrap(),
        [(1, "task_notes".to_owned())]
    );
    assert!(has_column(&one, "task_notes", "task_id").await);
    assert!(!has_column(&one, "task_notes", "pinned").await);
    assert_eq!(history(&two, SERVICE_HISTORY).await.unwrap().len(), 2);
    assert!(has_column(&two, "task_notes", "pinned").await);
    // Both histories are complete: migrating again changes nothing.
    assert_eq!(
        history(&two, HISTORY_TABLE).await,
        history(&base, HISTORY_TABLE).await
    );
    assert!(two.migrate().await.unwrap().is_empty());
    assert!(
        two.migrate_service(&[v1(), v2()], SERVICE_HISTORY)
            .await
            .unwrap()
            .is_empty()
    );
    // Growing the set from there applies only the new migration.
    assert_eq!(
        one.migrate_service(&[v1(), v2()], SERVICE_HISTORY)
            .await
            .unwrap(),
        [2]
    );
}
