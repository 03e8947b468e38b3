//! Users.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Timestamp, UserId};

/// A stored password hash (argon2, bcrypt… — the crate never hashes or sees
/// plain passwords). Its `Debug` output is redacted and it is never
/// serialised.
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
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Primary key.
    pub id: UserId,
    /// Trimmed and lower-cased.
    pub email: String,
    /// Never serialised.
    #[serde(skip_serializing)]
    pub password_hash: PasswordHash,
    /// When the row was created.
    pub created_at: Timestamp,
    /// When the row last changed.
    pub updated_at: Timestamp,
}

/// Input of [`UserRepository::create`](crate::repo::UserRepository::create).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewUser {
    /// Any case and surrounding spaces; stored trimmed and lower-cased.
    pub email: String,
    /// The hash of a password the caller checked with
    /// [`validate::password`](crate::validate::password) before hashing.
    pub password_hash: PasswordHash,
}

impl NewUser {
    /// A new user input.
    pub fn new(email: impl Into<String>, password_hash: PasswordHash) -> Self {
        NewUser {
            email: email.into(),
            password_hash,
        }
    }
}

/// A partial update of a user: `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserUpdate {
    /// New email.
    pub email: Option<String>,
    /// New password hash.
    pub password_hash: Option<PasswordHash>,
}

impl UserUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.password_hash.is_none()
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
