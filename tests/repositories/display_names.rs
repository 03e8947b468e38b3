//! Users' display names: the default, stored trimmed, changed by `update`,
//! refused with a typed error (and nothing written) when the crate's rules
//! refuse them, any Unicode text kept exactly.

use voidrunner_db::validate::DISPLAY_NAME_MAX_CHARS;
use voidrunner_db::{Error, NewUser, PasswordHash, UserRepository, UserUpdate};

use crate::repos;

fn new_user(email: &str) -> NewUser {
    NewUser::new(email, PasswordHash::new("$argon2id$v=19$hash"))
}

#[tokio::test]
async fn created_with_the_default_or_a_trimmed_name_and_changed_by_update() {
    let r = repos().await;
    let plain = r
        .users
        .create(new_user(" Ada.L+1@Example.com"))
        .await
        .unwrap();
    assert_eq!(plain.display_name, "ada.l+1");
    let named = r
        .users
        .create(new_user("grace@example.com").with_display_name("\u{3000} Grace Hopper \t"))
        .await
        .unwrap();
    assert_eq!(named.display_name, "Grace Hopper");
    assert_eq!(r.users.get(named.id).await.unwrap(), named);
    assert_eq!(
        r.users.get_by_email("grace@example.com").await.unwrap(),
        named
    );
    let listed = r.users.list(Default::default()).await.unwrap().items;
    assert!(
        listed.contains(&named) && listed.contains(&plain),
        "{listed:?}"
    );

    let renamed = r
        .users
        .update(
            named.id,
            UserUpdate {
                display_name: Some(" Amazing Grace ".into()),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.display_name, "Amazing Grace");
    assert_eq!(renamed.email, named.email);
    assert!(renamed.updated_at > named.updated_at);
    // An update that names no display name keeps it.
    let moved = r
        .users
        .update(
            named.id,
            UserUpdate {
                email: Some("grace.h@example.com".into()),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.display_name, "Amazing Grace");
    assert_eq!(r.users.get(named.id).await.unwrap(), moved);
}

#[tokio::test]
async fn bad_names_are_refused_and_write_nothing() {
    let r = repos().await;
    let existing = r.user("existing@example.com").await;
    let too_long = "x".repeat(DISPLAY_NAME_MAX_CHARS + 1);
    for bad in [
        "",
        "   ",
        "\u{a0}\u{2003}",
        "a\0b",
        "tab\tinside",
        "two\nlines",
        "bell\u{7}",
        "c1\u{9b}",
        too_long.as_str(),
    ] {
        let err = r
            .users
            .create(new_user("new@example.com").with_display_name(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Validation { .. }) && err.field() == Some("display_name"),
            "{bad:?}: {err:?}"
        );
        let err = r
            .users
            .update(
                existing.id,
                UserUpdate {
                    email: Some("changed@example.com".into()),
                    display_name: Some(bad.to_owned()),
                    ..UserUpdate::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("display_name"), "{bad:?}: {err:?}");
    }
    assert_eq!(r.count_rows("users").await, 1, "no user was created");
    assert_eq!(r.users.get(existing.id).await.unwrap(), existing);
}

#[tokio::test]
async fn any_unicode_name_the_rules_allow_is_kept_exactly() {
    let r = repos().await;
    let longest = "é".repeat(DISPLAY_NAME_MAX_CHARS);
    for (i, name) in [
        "Zoë 🚀 李小龙",
        "\u{202E}gnp.exe\u{202C}",
        "\u{FEFF}bom and zero\u{200B}width",
        "'; DROP TABLE users; --",
        "$1 $$ %s {0}",
        "𝕳𝖊𝖑𝖑𝖔 \u{10FFFF}",
        longest.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let user = r
            .users
            .create(new_user(&format!("u{i}@example.com")).with_display_name(name))
            .await
            .unwrap();
        assert_eq!(user.display_name, name);
        assert_eq!(r.users.get(user.id).await.unwrap().display_name, name);
    }
}
