use voidrunner_db::{
    Error, NewUser, PageRequest, PasswordHash, UserId, UserRepository, UserUpdate,
};

use crate::repos;
#[allow(unused_imports)]
use voidrunner_db::{ExecutionRepository as _, TaskRepository as _};

fn hash() -> PasswordHash {
    PasswordHash::new("$argon2id$v=19$m=19456$abc")
}

#[tokio::test]
async fn create_and_get_normalise_the_email() {
    let r = repos().await;
    let created = r
        .users
        .create(NewUser::new("  Alice@Example.COM ", hash()))
        .await
        .unwrap();
    assert_eq!(created.email, "alice@example.com");
    assert_eq!(created.created_at, created.updated_at);

    let by_id = r.users.get(created.id).await.unwrap();
    assert_eq!(
        by_id, created,
        "a round trip compares equal, timestamps included"
    );
    let by_email = r.users.get_by_email("ALICE@example.com").await.unwrap();
    assert_eq!(by_email.id, created.id);
    assert_eq!(by_email.password_hash.expose(), hash().expose());
    // What PostgreSQL stored, read with raw SQL.
    let stored: String =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one("SELECT email FROM users WHERE id = $1", &[&created.id])
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored, "alice@example.com");
}

#[tokio::test]
async fn missing_users_are_not_found() {
    let r = repos().await;
    let id = UserId::new();
    let err = r.users.get(id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), format!("user not found: {id}"));
    assert!(
        r.users
            .get_by_email("nobody@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.users
            .update(
                id,
                UserUpdate {
                    email: Some("x@example.com".into()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.users
            .update(id, UserUpdate::default())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(r.users.delete(id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn email_uniqueness_is_case_insensitive() {
    let r = repos().await;
    r.user("bob@example.com").await;
    let err = r
        .users
        .create(NewUser::new("BOB@Example.com", hash()))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.constraint(), Some("users_email_key"));
    assert_eq!(r.count_rows("users").await, 1);
}

#[tokio::test]
async fn bad_inputs_are_refused_before_any_sql() {
    let r = repos().await;
    let cases = [
        (NewUser::new("not-an-email", hash()), "email"),
        (NewUser::new("", hash()), "email"),
        (
            NewUser::new(format!("{}@example.com", "a".repeat(250)), hash()),
            "email",
        ),
        (
            NewUser::new("ok@example.com", PasswordHash::new("  ")),
            "password_hash",
        ),
        (
            NewUser::new("ok@example.com", PasswordHash::new("a\0b")),
            "password_hash",
        ),
    ];
    for (user, field) in cases {
        let err = r.users.create(user).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err:?}");
    }
    assert_eq!(
        r.users.get_by_email("nope").await.unwrap_err().field(),
        Some("email")
    );
    assert_eq!(r.count_rows("users").await, 0);
}

#[tokio::test]
async fn update_changes_only_what_it_sets_and_bumps_updated_at() {
    let r = repos().await;
    let user = r.user("carol@example.com").await;
    let other = r.user("dave@example.com").await;

    let updated = r
        .users
        .update(
            user.id,
            UserUpdate {
                email: Some(" Carol2@Example.com".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.email, "carol2@example.com");
    assert_eq!(updated.password_hash, user.password_hash);
    assert!(updated.updated_at > user.updated_at);
    assert_eq!(updated.created_at, user.created_at);

    let rehashed = r
        .users
        .update(
            user.id,
            UserUpdate {
                password_hash: Some(PasswordHash::new("new-hash")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rehashed.password_hash.expose(), "new-hash");
    assert_eq!(rehashed.email, "carol2@example.com");

    // Empty update: the user, unchanged.
    assert_eq!(
        r.users
            .update(user.id, UserUpdate::default())
            .await
            .unwrap(),
        rehashed
    );

    let taken = r
        .users
        .update(
            user.id,
            UserUpdate {
                email: Some("DAVE@example.com".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(taken.is_conflict(), "{taken:?}");
    assert_eq!(r.users.get(other.id).await.unwrap(), other);

    let bad = r
        .users
        .update(
            user.id,
            UserUpdate {
                email: Some("bad".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.field(), Some("email"));
    assert_eq!(r.users.get(user.id).await.unwrap(), rehashed);
}

#[tokio::test]
async fn delete_cascades_and_count_follows() {
    let r = repos().await;
    let user = r.user("erin@example.com").await;
    let keep = r.user("frank@example.com").await;
    let task = r.task(&user, "t").await;
    r.executions
        .create(voidrunner_db::NewExecution::new(task.id))
        .await
        .unwrap();
    r.task(&keep, "kept").await;
    assert_eq!(r.users.count().await.unwrap(), 2);

    r.users.delete(user.id).await.unwrap();
    assert!(r.users.get(user.id).await.unwrap_err().is_not_found());
    assert_eq!(r.users.count().await.unwrap(), 1);
    assert_eq!(r.count_rows("tasks").await, 1);
    assert_eq!(r.count_rows("task_executions").await, 0);
    let second = r.users.delete(user.id).await.unwrap_err();
    assert!(second.is_not_found());
}

#[tokio::test]
async fn list_pages_newest_first() {
    let r = repos().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(r.user(&format!("u{i}@example.com")).await.id);
    }
    let first = r.users.list(PageRequest::first(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let request = PageRequest::first(2).next(&first).unwrap();
    let second = r.users.list(request.clone()).await.unwrap();
    assert_eq!(
        second.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let third = r.users.list(request.next(&second).unwrap()).await.unwrap();
    assert_eq!(
        third.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert_eq!(third.next_cursor, None);

    let all = r.users.list(PageRequest::default()).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_cursor, None);

    let err = r.users.list(PageRequest::first(0)).await.unwrap_err();
    assert_eq!(err.field(), Some("limit"));
    let err = r
        .users
        .list(PageRequest::after("garbage", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "cursor",
                ..
            }
        ),
        "{err:?}"
    );
}
