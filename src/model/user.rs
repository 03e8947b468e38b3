//! Users.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Timestamp, UserId};

/// A stored password hash (argon2, bcrypt… — the crate never hashes or sees
/// plain passwords). Its `Debug` output is redacted and it is never
/// serialised: the type has no `Serialize` at all, so no struct holding one
/// can derive it by mistake. It deserialises (inputs such as [`NewUser`]
/// carry one).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a hash computed by the caller.
    pub fn new(hash: impl Into<String>) -> Self {
        PasswordHash(hash.into())
    }

    /// The hash, for verification.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the hash is empty: so is the hash of a [`User`] that was
    /// deserialised, since the wire form never carries it. An empty hash
    /// verifies no password with any hashing library, and the crate refuses
    /// to store it ([`validate::password_hash`](crate::validate::password_hash)).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The hash of a deserialised [`User`]: none.
    fn absent() -> Self {
        PasswordHash(String::new())
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// A user as stored.
///
/// # Serde: the hash never travels
///
/// A `User` serialises without its password hash: the wire form is `id`,
/// `email`, `display_name`, `created_at` and `updated_at`. It deserialises from that form
/// with an *empty* hash ([`PasswordHash::is_empty`]); a `password_hash` in
/// the input is ignored. So a user sent between services can be shown and
/// compared by id, but not used to check a password: only the repository
/// ([`UserRepository::get`](crate::repo::UserRepository::get)) returns a
/// user with its hash, and the crate refuses to write an empty one.
/// (A round trip therefore gives back an equal user except for the hash.)
///
/// `#[non_exhaustive]`: a column added to `users` becomes a field in a
/// minor release. Outside this crate a `User` comes from a repository, from
/// serde, or, in tests, from [`fixtures::user`](crate::fixtures::user)
/// (feature `mock`); its fields stay public to read and to assign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct User {
    /// Primary key.
    pub id: UserId,
    /// Trimmed and lower-cased.
    pub email: String,
    /// The name shown for the user: trimmed, 1 to 255 characters, no
    /// control characters ([`validate::display_name`](crate::validate::display_name)).
    /// Users created without one, and rows that predate it, have the part
    /// of their email before the `@`. Empty only when deserialised from a
    /// form that predates it.
    #[serde(default)]
    pub display_name: String,
    /// Never serialised; empty when deserialised.
    #[serde(skip, default = "PasswordHash::absent")]
    pub password_hash: PasswordHash,
    /// When the row was created.
    pub created_at: Timestamp,
    /// When the row last changed.
    pub updated_at: Timestamp,
}

/// Input of [`UserRepository::create`](crate::repo::UserRepository::create).
///
/// Built with [`NewUser::new`]. Deserialises but does not serialise: it
/// holds a password hash. `#[non_exhaustive]`: a new optional input is added
/// in a minor release, and [`NewUser::new`] keeps compiling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Any case and surrounding spaces; stored trimmed and lower-cased.
    pub email: String,
    /// The hash of a password the caller checked with
    /// [`validate::password`](crate::validate::password) before hashing.
    pub password_hash: PasswordHash,
    /// The name shown for the user, stored trimmed; `None` stores the part
    /// of the email before the `@`.
    #[serde(default)]
    pub display_name: Option<String>,
}

impl NewUser {
    /// A new user input, with the default display name.
    pub fn new(email: impl Into<String>, password_hash: PasswordHash) -> Self {
        NewUser {
            email: email.into(),
            password_hash,
            display_name: None,
        }
    }

    /// The same input with the display name `name`.
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }
}

/// A partial update of a user: `None` fields are left as they are.
///
/// Deserialises but does not serialise: it may hold a password hash. Not
/// `#[non_exhaustive]`, on purpose: an update is written as a struct
/// literal, `UserUpdate { email: Some(e), ..Default::default() }`, which
/// `#[non_exhaustive]` would forbid outside this crate. A new field would
/// therefore come in a major release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// New email.
    pub email: Option<String>,
    /// New password hash.
    pub password_hash: Option<PasswordHash>,
    /// New display name, stored trimmed.
    #[serde(default)]
    pub display_name: Option<String>,
}

impl UserUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.password_hash.is_none() && self.display_name.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_never_shown() {
        let user = User {
            id: UserId::new(),
            email: "a@b.co".into(),
            display_name: "A".into(),
            password_hash: PasswordHash::new("$argon2id$secret"),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        assert!(!format!("{user:?}").contains("secret"));
        let json = serde_json::to_value(&user).unwrap();
        assert!(json.get("password_hash").is_none(), "{json}");
        assert!(!json.to_string().contains("secret"));
        assert_eq!(user.password_hash.expose(), "$argon2id$secret");
    }
}
