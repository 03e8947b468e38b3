//! The users repository's contracts.

use voidrunner_db::{
    Error, ExecutionRepository, NewExecution, NewUser, PageRequest, PasswordHash, Result,
    TaskRepository as _, UserId, UserRepository, UserUpdate,
};

use super::{Set, contracts};

contracts! {
    create_and_get_normalise_the_email => Ending::Clean,
    missing_users_are_not_found => Ending::Clean,
    email_uniqueness_is_case_insensitive => Ending::Clean,
    bad_inputs_are_refused_before_any_sql => Ending::Clean,
    update_changes_only_what_it_sets_and_bumps_updated_at => Ending::Clean,
    delete_cascades_and_count_follows => Ending::Clean,
    list_pages_newest_first => Ending::Clean,
    round_trip_then_a_duplicate => Ending::OnARefusal,
}

fn hash() -> PasswordHash {
    PasswordHash::new("$argon2id$v=19$m=19456$abc")
}

async fn create_and_get_normalise_the_email(s: &Set) -> Result<()> {
    let created = s
        .users
        .create(NewUser::new("  Alice@Example.COM ", hash()))
        .await
        .unwrap();
    assert_eq!(created.email, "alice@example.com");
    assert_eq!(created.created_at, created.updated_at);

    let by_id = s.users.get(created.id).await.unwrap();
    assert_eq!(
        by_id, created,
        "a round trip compares equal, timestamps included"
    );
    let by_email = s.users.get_by_email("ALICE@example.com").await.unwrap();
    assert_eq!(by_email.id, created.id);
    assert_eq!(by_email.password_hash.expose(), hash().expose());
    // What PostgreSQL stored, read with raw SQL.
    let stored: String = s
        .query_one("SELECT email FROM users WHERE id = $1", &[&created.id])
        .await
        .get(0);
    assert_eq!(stored, "alice@example.com");
    Ok(())
}

async fn missing_users_are_not_found(s: &Set) -> Result<()> {
    let id = UserId::new();
    let err = s.users.get(id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), format!("user not found: {id}"));
    assert!(
        s.users
            .get_by_email("nobody@example.com")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        s.users
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
        s.users
            .update(id, UserUpdate::default())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(s.users.delete(id).await.unwrap_err().is_not_found());
    Ok(())
}

async fn email_uniqueness_is_case_insensitive(s: &Set) -> Result<()> {
    s.user("bob@example.com").await;
    let err = s
        .refused(s.users.create(NewUser::new("BOB@Example.com", hash())))
        .await;
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.constraint(), Some("users_email_key"));
    assert_eq!(s.count_rows("users").await, 1);
    Ok(())
}

async fn bad_inputs_are_refused_before_any_sql(s: &Set) -> Result<()> {
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
        let err = s.users.create(user).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err:?}");
    }
    assert_eq!(
        s.users.get_by_email("nope").await.unwrap_err().field(),
        Some("email")
    );
    assert_eq!(s.count_rows("users").await, 0);
    Ok(())
}

async fn update_changes_only_what_it_sets_and_bumps_updated_at(s: &Set) -> Result<()> {
    let user = s.user("carol@example.com").await;
    let other = s.user("dave@example.com").await;

    let updated = s
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
    s.assert_written_later(updated.updated_at, user.updated_at, "updated_at");
    assert_eq!(updated.created_at, user.created_at);

    let rehashed = s
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
        s.users
            .update(user.id, UserUpdate::default())
            .await
            .unwrap(),
        rehashed
    );

    let taken = s
        .refused(s.users.update(
            user.id,
            UserUpdate {
                email: Some("DAVE@example.com".into()),
                ..Default::default()
            },
        ))
        .await;
    assert!(taken.is_conflict(), "{taken:?}");
    assert_eq!(s.users.get(other.id).await.unwrap(), other);

    let bad = s
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
    assert_eq!(s.users.get(user.id).await.unwrap(), rehashed);
    Ok(())
}

async fn delete_cascades_and_count_follows(s: &Set) -> Result<()> {
    let user = s.user("erin@example.com").await;
    let keep = s.user("frank@example.com").await;
    let task = s.task(&user, "t").await;
    s.executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    s.task(&keep, "kept").await;
    assert_eq!(s.users.count().await.unwrap(), 2);

    s.users.delete(user.id).await.unwrap();
    assert!(s.users.get(user.id).await.unwrap_err().is_not_found());
    assert_eq!(s.users.count().await.unwrap(), 1);
    assert_eq!(s.count_rows("tasks").await, 1);
    assert_eq!(s.count_rows("task_executions").await, 0);
    // The counts follow the cascade; the user's counter rows are gone.
    assert_eq!(s.tasks.count().await.unwrap(), 1);
    assert_eq!(s.tasks.count_by_user(user.id).await.unwrap(), 0);
    assert_eq!(s.tasks.count_by_user(keep.id).await.unwrap(), 1);
    let rows = format!(
        "task_counts_by_user WHERE user_id = '{}'",
        user.id.as_uuid()
    );
    assert_eq!(s.count_rows(&rows).await, 0);
    let second = s.users.delete(user.id).await.unwrap_err();
    assert!(second.is_not_found());
    Ok(())
}

async fn list_pages_newest_first(s: &Set) -> Result<()> {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.user(&format!("u{i}@example.com")).await.id);
    }
    let first = s.users.list(PageRequest::first(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let request = PageRequest::first(2).next(&first).unwrap();
    let second = s.users.list(request.clone()).await.unwrap();
    assert_eq!(
        second.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let third = s.users.list(request.next(&second).unwrap()).await.unwrap();
    assert_eq!(
        third.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert_eq!(third.next_cursor, None);

    let all = s.users.list(PageRequest::default()).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_cursor, None);

    let err = s.users.list(PageRequest::first(0)).await.unwrap_err();
    assert_eq!(err.field(), Some("limit"));
    let err = s
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
    Ok(())
}

/// Get by email, update, list, delete; last, a duplicate email, refused
/// bare: in a transaction, the commit answers `TransactionAborted`.
async fn round_trip_then_a_duplicate(s: &Set) -> Result<()> {
    let id = s.user("round@example.com").await.id;
    let got = s.users.get(id).await?;
    assert_eq!(s.users.get_by_email(&got.email).await?.id, id);
    let updated = s
        .users
        .update(
            id,
            UserUpdate {
                email: Some("trip@example.com".into()),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(updated.email, "trip@example.com");
    let page = s.users.list(PageRequest::first(100)).await?;
    assert!(page.items.iter().any(|u| u.id == id));
    s.users.delete(id).await?;
    let gone = s.users.get(id).await.expect_err("deleted");
    assert!(gone.is_not_found(), "{gone:?}");
    // Last: a refused write aborts a transaction.
    let other = s.user("other@example.com").await;
    let err = s
        .users
        .create(NewUser::new(other.email, hash()))
        .await
        .expect_err("duplicate email");
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.constraint(), Some("users_email_key"));
    Ok(())
}
