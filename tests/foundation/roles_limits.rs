//! The roles script and V15's concurrency caps: the worker role runs the
//! fair claim, which reads the caps as its caller; the application role
//! can neither read nor set a cap, nor claim through the fair claim.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use voidrunner_db::{
    ClaimOrder, ConcurrencyLimit, ConcurrencyLimits, Database, ExecutionQueue, ExecutionRepository,
    ExecutionStatus, NewTask, PgExecutionQueue, PgExecutionRepository, PgTaskRepository,
    TaskRepository, roles,
};

use crate::roles::{Login, Seeded, refused, seed, with_roles};

#[tokio::test]
async fn the_script_grants_the_caps_to_the_worker_only() {
    let (db, _) = with_roles().await;
    let client = db.raw_client().await.unwrap();
    for table in ["queue_settings", "user_concurrency_limits"] {
        let row = client
            .query_one(
                "SELECT has_table_privilege('voidrunner_worker', $1, 'SELECT'), \
                        has_table_privilege('voidrunner_worker', $1, 'INSERT, UPDATE, DELETE'), \
                        has_table_privilege('voidrunner_app', $1, \
                                            'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')",
                &[&table],
            )
            .await
            .unwrap();
        let granted: (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(granted, (true, false, false), "{table}");
    }
    // V15's lock rows: the worker makes and locks them (UPDATE), nobody
    // else may touch them, so no other role can stall a user's claims.
    let row = client
        .query_one(
            "SELECT has_table_privilege('voidrunner_worker', 'queue_user_locks', \
                                        'SELECT, INSERT, UPDATE'), \
                    has_table_privilege('voidrunner_worker', 'queue_user_locks', 'DELETE'), \
                    has_table_privilege('voidrunner_app', 'queue_user_locks', \
                                        'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')",
            &[],
        )
        .await
        .unwrap();
    let granted: (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(granted, (true, false, false), "queue_user_locks");
    let claim_fair: bool = client
        .query_one(
            "SELECT has_function_privilege('voidrunner_worker', \
               'voidrunner_claim_fair(text, bigint, double precision, uuid, boolean)', 'EXECUTE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(claim_fair, "the loop over the crate's functions grants it");
}

#[tokio::test]
async fn the_worker_role_claims_fairly_within_the_caps() {
    let (db, base) = with_roles().await;
    let Seeded { a, b } = seed(&db).await;
    // A has two more queued, and a cap of 1; B has the default (2).
    let tasks = PgTaskRepository::new(db.db().clone());
    let queue = PgExecutionQueue::new(db.db().clone());
    for name in ["a2", "a3"] {
        let task = tasks
            .create(NewTask::new(a.0, name, "print(1)"))
            .await
            .unwrap();
        queue.enqueue(task.id, None).await.unwrap();
    }
    let limits = db.db().concurrency_limits();
    limits.set_default_limit(Some(2)).await.unwrap();
    limits
        .set_user_limit(a.0, ConcurrencyLimit::Max(1))
        .await
        .unwrap();

    let login = Login::new("fairworker", &[roles::WORKER]).await;
    let worker = Database::connect(login.config(&base)).await.unwrap();
    let fair = PgExecutionQueue::new(worker.clone()).with_claim_order(ClaimOrder::Fair);
    let lease = Duration::from_secs(60);
    let claimed = fair.claim("w1", 10, lease).await.unwrap();
    let mut taken: Vec<_> = claimed.iter().map(|c| c.execution.task_id).collect();
    taken.sort();
    assert_eq!(taken.len(), 2, "one of A's (its cap) and B's: {claimed:?}");
    assert!(taken.contains(&b.1), "{taken:?}");
    let first_of_a = taken.iter().copied().find(|t| *t != b.1).unwrap();
    assert_eq!(tasks.get(first_of_a).await.unwrap().user_id, a.0);
    assert!(
        fair.claim("w1", 10, lease).await.unwrap().is_empty(),
        "A at its cap, B has nothing else"
    );
    // It reads the caps, and sets none.
    let client = worker.client().await.unwrap();
    let caps: i64 = client
        .query_one("SELECT count(*) FROM user_concurrency_limits", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(caps, 1);
    for sql in [
        "UPDATE queue_settings SET default_max_running = NULL",
        "DELETE FROM user_concurrency_limits",
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
async fn the_app_role_cannot_read_or_set_a_cap_nor_claim_fairly() {
    let (db, base) = with_roles().await;
    let Seeded { a, b } = seed(&db).await;
    db.db()
        .concurrency_limits()
        .set_user_limit(b.0, ConcurrencyLimit::Max(5))
        .await
        .unwrap();
    let login = Login::new("fairapp", &[roles::APP]).await;
    let app = Database::connect(login.config(&base)).await.unwrap();
    let client = app.client().await.unwrap();
    let claim = "SELECT id FROM voidrunner_claim_fair('w', 10, 30, NULL)";
    for scope in ["", &format!("SET voidrunner.user_id = '{}'; ", a.0)] {
        for sql in [
            "SELECT default_max_running FROM queue_settings",
            "SELECT user_id, max_running FROM user_concurrency_limits",
            "UPDATE queue_settings SET default_max_running = 0",
            &format!(
                "INSERT INTO user_concurrency_limits (user_id, max_running) VALUES ('{}', 0)",
                a.0
            ),
            &format!(
                "DELETE FROM user_concurrency_limits WHERE user_id = '{}'",
                b.0
            ),
            claim,
        ] {
            let scoped = format!("{scope}{sql}");
            assert_eq!(
                refused(&client, &scoped).await,
                SqlState::INSUFFICIENT_PRIVILEGE,
                "{scoped}"
            );
        }
        client
            .batch_execute("RESET voidrunner.user_id")
            .await
            .unwrap();
    }
    // The repository over the app role's pool is refused the same way.
    let err = app.concurrency_limits().default_limit().await.unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("42501"), "{err:?}");
    drop(client);
    app.close(Duration::from_secs(5)).await;
    // Nothing was claimed, nothing changed.
    let executions = PgExecutionRepository::new(db.db().clone());
    for (user, task) in [a, b] {
        let latest = executions.latest_for_task(task).await.unwrap().unwrap();
        assert_eq!(latest.status, ExecutionStatus::Pending, "{user}");
    }
    let limit = db.db().concurrency_limits().user_limit(b.0).await.unwrap();
    assert_eq!(limit.limit, ConcurrencyLimit::Max(5));
    assert_eq!(
        db.db().concurrency_limits().default_limit().await.unwrap(),
        None
    );
}
