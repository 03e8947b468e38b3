//! COPY through a transaction pooler: in a transaction of its own, its
//! statement closed before COMMIT, the next call unharmed.

use std::time::Duration;

use voidrunner_db::{NewTask, NewUser, PasswordHash, PgTaskRepository, PgUserRepository};
use voidrunner_db::{TaskRepository, UserRepository};

use crate::pooled_database;

/// Each import, and the count after it, must finish within this: a
/// desynchronised protocol hangs instead of failing.
const NO_HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn three_imports_of_3000_rows_then_a_count_each_within_a_timeout() {
    let test_db = pooled_database(4).await;
    let users = PgUserRepository::new(test_db.db().clone());
    let tasks = PgTaskRepository::new(test_db.db().clone());
    let owner = users
        .create(NewUser::new("copy@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    for round in 1..=3_i64 {
        let batch: Vec<NewTask> = (0..3_000)
            .map(|i| NewTask::new(owner.id, format!("imported {round}/{i}"), "print(1)"))
            .collect();
        let imported = tokio::time::timeout(NO_HANG, tasks.import(batch))
            .await
            .unwrap_or_else(|_| panic!("import {round} hung"))
            .unwrap();
        assert_eq!(imported, 3_000);
        let count = tokio::time::timeout(NO_HANG, tasks.count_by_user(owner.id))
            .await
            .unwrap_or_else(|_| panic!("the count after import {round} hung"))
            .unwrap();
        assert_eq!(count, 3_000 * round);
    }

    // No statement survives on any server connection of the pooler: the
    // server connections take turns (round robin), so a few dozen
    // transactions visit them all.
    let client = test_db.db().client().await.unwrap();
    for _ in 0..32 {
        let left: i64 = client
            .query_typed_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "a prepared statement outlived its COPY");
    }
}

#[tokio::test]
async fn an_import_inside_a_transaction_goes_through_too() {
    let test_db = pooled_database(2).await;
    let users = PgUserRepository::new(test_db.db().clone());
    let owner = users
        .create(NewUser::new("copy-tx@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let imported = tokio::time::timeout(
        NO_HANG,
        test_db.transaction(|tx| async move {
            let n = tx
                .tasks()
                .import(
                    (0..500)
                        .map(|i| NewTask::new(owner.id, format!("in tx {i}"), "print(1)"))
                        .collect(),
                )
                .await?;
            let counted = tx.tasks().count_by_user(owner.id).await?;
            Ok((n, counted))
        }),
    )
    .await
    .expect("the transaction hung")
    .unwrap();
    assert_eq!(imported, (500, 500));
    let tasks = PgTaskRepository::new(test_db.db().clone());
    assert_eq!(tasks.count_by_user(owner.id).await.unwrap(), 500);
}
