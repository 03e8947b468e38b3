//! Rows the crate cannot represent, written by another application, and
//! values the crate must never write because it could not read them back
//! (issue #8 §1). Reading never panics: it fails with `Error::Decode`
//! naming the row and the column.

use serde_json::json;
use uuid::Uuid;
use voidrunner_db::validate::{METADATA_DEPTH_LIMIT, MetadataPolicy, ValidationPolicy};
use voidrunner_db::{
    Error, ExecutionQueue, ExecutionStatus, NewTask, PageRequest, PgTaskRepository, TaskRepository,
    TaskStatus, UserRepository,
};

use crate::{LEASE, repos};

fn assert_decode(err: &Error, entity: &str, column: &str, id: Uuid) {
    match err {
        Error::Decode {
            entity: e,
            column: c,
            id: Some(i),
            ..
        } => {
            assert_eq!(
                (*e, *c, i.as_str()),
                (entity, column, id.to_string().as_str())
            );
            let text = err.to_string();
            assert!(
                text.contains(column) && text.contains(&id.to_string()),
                "{text}"
            );
        }
        other => panic!("expected Decode of {entity}.{column} {id}, got {other:?}"),
    }
}

/// JSON nested `depth` levels deep, as text another client would send.
fn deep_json(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

#[tokio::test]
async fn foreign_metadata_the_reader_refuses_is_a_decode_error() {
    let r = repos().await;
    let user = r.user("owner@example.com").await;
    let raw = r.db.raw_client().await.unwrap();
    for (name, metadata) in [
        ("deep", deep_json(200)),
        ("huge number", r#"{"a": 1e400}"#.to_owned()),
        ("above f64 max", r#"{"a": -1.8e308}"#.to_owned()),
    ] {
        let id: Uuid = raw
            .query_one(
                "INSERT INTO tasks (user_id, name, script_content, metadata) \
                 VALUES ($1, $2, 'x', $3::text::jsonb) RETURNING id",
                &[&user.id, &name, &metadata],
            )
            .await
            .unwrap()
            .get(0);
        let task_id = voidrunner_db::TaskId::from(id);
        assert_decode(
            &r.tasks.get(task_id).await.unwrap_err(),
            "task",
            "metadata",
            id,
        );
        let page = r.tasks.list_by_user(user.id, PageRequest::first(10)).await;
        assert_decode(&page.unwrap_err(), "task", "metadata", id);
        let update = r
            .tasks
            .update(
                task_id,
                voidrunner_db::TaskUpdate {
                    name: Some("renamed".into()),
                    ..Default::default()
                },
            )
            .await;
        assert_decode(&update.unwrap_err(), "task", "metadata", id);
        raw.execute("DELETE FROM tasks WHERE id = $1", &[&id])
            .await
            .unwrap();
    }
    // The other rows still list.
    r.task(&user, "fine").await;
    assert_eq!(
        r.tasks
            .list_by_user(user.id, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn foreign_timestamps_out_of_range_are_decode_errors() {
    let r = repos().await;
    let raw = r.db.raw_client().await.unwrap();
    for stamp in ["infinity", "-infinity", "20000-01-01 00:00:00+00"] {
        let id: Uuid = raw
            .query_one(
                "INSERT INTO users (email, password_hash, created_at) \
                 VALUES ($1, 'h', $2::text::timestamptz) RETURNING id",
                &[&format!("u{}@example.com", stamp.len()), &stamp],
            )
            .await
            .unwrap()
            .get(0);
        let err = r
            .users
            .get(voidrunner_db::UserId::from(id))
            .await
            .unwrap_err();
        assert_decode(&err, "user", "created_at", id);
        assert_decode(
            &r.users.list(PageRequest::first(10)).await.unwrap_err(),
            "user",
            "created_at",
            id,
        );
        raw.execute("DELETE FROM users WHERE id = $1", &[&id])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_undecodable_claimed_execution_is_failed_not_leased_to_nobody() {
    let r = repos().await;
    let user = r.user("owner@example.com").await;
    let bad_task = r.task(&user, "bad").await;
    let good_task = r.task(&user, "good").await;
    let bad = r.queue.enqueue(bad_task.id, None).await.unwrap();
    let good = r.queue.enqueue(good_task.id, None).await.unwrap();
    // Another application stamped the execution with a time the crate
    // cannot represent, before V13 (whose `task_executions_created_at_range`
    // is NOT VALID: such an older row stays).
    let raw = r.db.raw_client().await.unwrap();
    raw.batch_execute(
        "ALTER TABLE task_executions DROP CONSTRAINT task_executions_created_at_range",
    )
    .await
    .unwrap();
    raw.execute(
        "UPDATE task_executions SET created_at = 'infinity' WHERE id = $1",
        &[&bad.id],
    )
    .await
    .unwrap();
    let claimed = r.queue.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        vec![good.id]
    );
    let row =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT e.status, e.lease_expires_at IS NULL, t.status \
             FROM task_executions e JOIN tasks t ON t.id = e.task_id WHERE e.id = $1",
                &[&bad.id],
            )
            .await
            .unwrap();
    let (status, unleased, task_status): (String, bool, String) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (status.as_str(), unleased, task_status.as_str()),
        (
            ExecutionStatus::Failed.as_str(),
            true,
            TaskStatus::Failed.as_str()
        )
    );
    // Nothing is left to claim.
    assert!(r.queue.claim("w", 10, LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_float_the_crate_writes_reads_back_equal() {
    let r = repos().await;
    let user = r.user("owner@example.com").await;
    let candidates = [
        0.0,
        -0.0,
        0.1,
        -2.5,
        0.30000000000000004,
        1e-7,
        1.5e20,
        123456789.12345679,
        1e300,
        1e308,
        f64::MIN_POSITIVE,
        5e-324,
        1.7976931348623e308,
        f64::MAX,
        f64::MIN,
    ];
    for value in candidates {
        let metadata = json!({ "v": value });
        match r
            .tasks
            .create(NewTask::new(user.id, "f", "x").metadata(metadata.clone()))
            .await
        {
            Ok(task) => {
                let back = r.tasks.get(task.id).await.unwrap().metadata;
                assert_eq!(back["v"].as_f64(), Some(value), "{value:e}");
            }
            Err(err) => panic!("{value:e} refused: {err:?}"),
        }
    }

    assert_eq!(
        r.tasks.count_by_user(user.id).await.unwrap(),
        candidates.len() as i64
    );
}

#[tokio::test]
async fn no_metadata_policy_can_exceed_what_the_reader_decodes() {
    let r = repos().await;
    let user = r.user("owner@example.com").await;
    let mut policy = ValidationPolicy {
        metadata: MetadataPolicy {
            max_depth: METADATA_DEPTH_LIMIT,
            max_bytes: 1 << 20,
        },
        ..ValidationPolicy::default()
    };
    let tasks = PgTaskRepository::with_policy(r.db.db().clone(), policy.clone());
    let deepest: serde_json::Value =
        serde_json::from_str(&deep_json(METADATA_DEPTH_LIMIT - 1)).unwrap();
    let task = tasks
        .create(NewTask::new(user.id, "deep", "x").metadata(deepest.clone()))
        .await
        .unwrap();
    assert_eq!(tasks.get(task.id).await.unwrap().metadata, deepest);

    policy.metadata.max_depth = 130;
    let loose = PgTaskRepository::with_policy(r.db.db().clone(), policy);
    let err = loose
        .create(NewTask::new(user.id, "deeper", "x").metadata(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert_eq!(r.tasks.count_by_user(user.id).await.unwrap(), 1);
}
