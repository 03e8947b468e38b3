//! V10 gives every existing user a display name (the email's part before
//! the `@`) without touching `updated_at`, keeps giving one to rows written
//! without it (by the previous release or another application), holds
//! every row to the crate's rules, and finishes a run interrupted half-way.

use voidrunner_db::DownTarget;
use voidrunner_db::migrate;
use voidrunner_db::testing::TestDatabase;

use crate::raw;

/// What migrating up from V9 applies.
fn from_v10() -> Vec<i32> {
    (10..=migrate::latest_version()).collect()
}

async fn users_at_v9(test_db: &TestDatabase) {
    test_db
        .migrate_down(DownTarget::ToVersion(9))
        .await
        .unwrap();
    raw(test_db)
        .await
        .batch_execute(
            "INSERT INTO users (email, password_hash, created_at, updated_at) \
             SELECT 'user.' || g || '+x@example.com', 'h', \
                    '2020-01-01T00:00:00Z'::timestamptz, '2020-01-02T00:00:00Z'::timestamptz \
             FROM generate_series(1, 12001) g",
        )
        .await
        .unwrap();
}

/// Users whose display name is not their email's local part, or whose
/// `updated_at` moved.
async fn wrong_rows(test_db: &TestDatabase) -> i64 {
    raw(test_db)
        .await
        .query_one(
            "SELECT count(*) FROM users \
             WHERE display_name IS DISTINCT FROM split_part(email, '@', 1) \
                OR updated_at <> '2020-01-02T00:00:00Z'::timestamptz",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn v10_fills_existing_rows_in_batches_without_touching_updated_at() {
    let test_db = TestDatabase::new().await.unwrap();
    users_at_v9(&test_db).await;
    assert_eq!(test_db.migrate().await.unwrap(), from_v10());
    assert_eq!(wrong_rows(&test_db).await, 0);
    let client = raw(&test_db).await;
    let not_null: bool = client
        .query_one(
            "SELECT attnotnull FROM pg_attribute \
             WHERE attrelid = 'users'::regclass AND attname = 'display_name'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(not_null);
    // No helper constraint is left behind.
    let names: Vec<String> = client
        .query(
            "SELECT conname::text FROM pg_constraint \
             WHERE conrelid = 'users'::regclass AND conname LIKE 'users_display_name%' \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["users_display_name_valid"]);
}

#[tokio::test]
async fn an_interrupted_v10_is_repeated_from_the_top() {
    let test_db = TestDatabase::new().await.unwrap();
    users_at_v9(&test_db).await;
    // A run stopped after the column, part of the fill and the unvalidated
    // rule: its committed statements are done again, harmlessly.
    raw(&test_db)
        .await
        .batch_execute(
            "ALTER TABLE users ADD COLUMN display_name text; \
             BEGIN; \
             ALTER TABLE users DISABLE TRIGGER users_set_updated_at; \
             UPDATE users SET display_name = split_part(email, '@', 1) \
               WHERE id IN (SELECT id FROM users ORDER BY id LIMIT 100); \
             ALTER TABLE users ENABLE TRIGGER users_set_updated_at; \
             COMMIT; \
             ALTER TABLE users ADD CONSTRAINT users_display_name_not_null \
               CHECK (display_name IS NOT NULL) NOT VALID",
        )
        .await
        .unwrap();
    assert_eq!(test_db.migrate().await.unwrap(), from_v10());
    assert_eq!(wrong_rows(&test_db).await, 0);
}

#[tokio::test]
async fn rows_written_without_a_name_get_the_default_and_bad_names_are_refused() {
    let test_db = TestDatabase::new().await.unwrap();
    let client = raw(&test_db).await;
    // The previous release's INSERT names no display name.
    let name: String = client
        .query_one(
            "INSERT INTO users (email, password_hash) VALUES ('old.release@example.com', 'h') \
             RETURNING display_name",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "old.release");
    let too_long = "x".repeat(256);
    for bad in [
        too_long.as_str(),
        "",
        " padded",
        "padded ",
        "\u{a0}nbsp",
        "ideographic\u{3000}",
        "tab\there",
        "line\nbreak",
        "c1\u{85}",
        "del\u{7f}",
    ] {
        let err = client
            .execute(
                "INSERT INTO users (email, password_hash, display_name) \
                 VALUES ('bad@example.com', 'h', $1)",
                &[&bad],
            )
            .await
            .unwrap_err();
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{bad:?}: {err}"));
        assert_eq!(db.constraint(), Some("users_display_name_valid"), "{bad:?}");
    }
    let updated = client
        .execute(
            "UPDATE users SET display_name = NULL WHERE email = 'old.release@example.com'",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        updated.code(),
        Some(&tokio_postgres::error::SqlState::NOT_NULL_VIOLATION)
    );
}
