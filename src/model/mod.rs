//! Domain types: what is stored, and the inputs that create and change it.
//!
//! - [`user`], [`task`], [`execution`]: one file per entity;
//! - ids are newtypes over UUIDv7 ([`UserId`], [`TaskId`], [`ExecutionId`]),
//!   so a task id can never be passed where a user id is expected;
//! - [`Timestamp`] holds microseconds, PostgreSQL's precision, so a value
//!   survives a round trip unchanged;
//! - [`Page`] and [`PageRequest`] are keyset pages.

pub mod execution;
mod ids;
mod page;
pub mod queue;
pub mod task;
mod timestamp;
pub mod user;

pub use execution::{ExecutionStatus, ExecutionUpdate, NewExecution, TaskExecution};
pub use ids::{ExecutionId, TaskId, UserId};
pub use page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest};
pub use queue::{ClaimedExecution, Outcome, RescuePolicy, RescueReport};
pub use task::{NewTask, ScriptType, Task, TaskStatus, TaskUpdate};
pub use timestamp::Timestamp;
pub use user::{NewUser, PasswordHash, User, UserUpdate};

/// Implements `Display`, `FromStr` (a validation error on `$field` naming
/// the allowed values), `ToSql` and `FromSql` for an enum stored as text,
/// from its `ALL` and `as_str`: one definition for the three enums, so their
/// text forms cannot drift apart.
macro_rules! text_column {
    ($ty:ty, $field:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::error::Error;

            fn from_str(s: &str) -> Result<Self, crate::error::Error> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let allowed: Vec<&str> = <$ty>::ALL.iter().map(|v| v.as_str()).collect();
                        crate::error::Error::validation(
                            $field,
                            format!("`{s}` is not one of {}", allowed.join(", ")),
                        )
                    })
            }
        }

        impl postgres_types::ToSql for $ty {
            fn to_sql(
                &self,
                ty: &postgres_types::Type,
                out: &mut postgres_types::private::BytesMut,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&str as postgres_types::ToSql>::accepts(ty)
            }

            postgres_types::to_sql_checked!();
        }

        impl<'a> postgres_types::FromSql<'a> for $ty {
            fn from_sql(
                ty: &postgres_types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as postgres_types::FromSql>::from_sql(ty, raw)?;
                Ok(text.parse::<$ty>()?)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&str as postgres_types::FromSql>::accepts(ty)
            }
        }
    };
}
pub(crate) use text_column;
