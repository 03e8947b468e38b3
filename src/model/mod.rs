//! Domain types: what is stored, and the inputs that create and change it.
//!
//! - [`user`], [`task`], [`execution`]: one file per entity;
//! - ids are newtypes over UUIDv7 ([`UserId`], [`TaskId`], [`ExecutionId`]),
//!   so a task id can never be passed where a user id is expected;
//! - [`Timestamp`] holds microseconds, PostgreSQL's precision, so a value
//!   survives a round trip unchanged;
//! - [`Page`] and [`PageRequest`] are keyset pages; [`list`] the orders
//!   and filters of the sorted task lists ([`TaskSort`], [`TaskFilter`]) and
//!   [`TaskWithLatest`].
//!
//! # Serde
//!
//! Every type a service sends over the wire serialises and deserialises to
//! the same form: [`Task`], [`TaskExecution`], [`ClaimedExecution`],
//! [`NewTask`], [`NewExecution`], [`Outcome`], [`Page`], [`TaskWithLatest`],
//! [`TaskSort`], [`TaskFilter`], the updates,
//! [`RescuePolicy`], [`RescueReport`]. [`User`] serialises without its
//! password hash and deserialises with an empty one (see [`User`]);
//! [`NewUser`] and [`UserUpdate`], which carry a hash, only deserialise.
//! Deserialising never validates: the repositories do, before any SQL.
//! The inputs ([`NewTask`], [`TaskUpdate`], [`NewExecution`],
//! [`ExecutionUpdate`], [`Outcome`], [`NewUser`], [`UserUpdate`]) refuse
//! unknown fields, so a misspelt one (`"prioity"`) is an error instead of a
//! silently dropped value; don't `#[serde(flatten)]` them into a struct of
//! yours (serde then hands them its other fields too).
//!
//! # Which types may grow
//!
//! The stored rows ([`Task`], [`TaskExecution`], [`User`]), what the queue
//! hands out ([`ClaimedExecution`], [`RescueReport`]), the inputs built by a
//! constructor ([`NewTask`], [`NewExecution`], [`NewUser`], [`Outcome`]),
//! [`TaskWithLatest`], [`ScriptType`] and [`TaskSortField`] are
//! `#[non_exhaustive]`: a field (or language, or order) is added in a minor
//! release. Outside the crate they are built with their constructors, serde,
//! or, in tests, [`fixtures`](crate::fixtures) (feature `mock`).
//!
//! Exhaustive on purpose: the statuses ([`TaskStatus`], [`ExecutionStatus`]),
//! whose change would change the state machines, and the structs written as
//! literals with `..Default::default()` ([`TaskUpdate`], [`ExecutionUpdate`],
//! [`UserUpdate`], [`PageRequest`], [`RescuePolicy`]) or as
//! `Page { items, next_cursor }` by mocks ([`Page`]), and [`TaskSort`],
//! [`SortDirection`] and [`TaskFilter`], which a caller matches or builds
//! whole. A new field in one of these is a major release.

mod counts;
pub mod execution;
mod ids;
pub mod list;
pub mod log;
mod page;
pub mod queue;
pub mod task;
mod timestamp;
pub mod user;

pub use counts::TaskStatusCounts;
pub use execution::{ExecutionStatus, ExecutionUpdate, NewExecution, TaskExecution};
pub use ids::{ExecutionId, TaskId, UserId};
pub use list::{SortDirection, TaskFilter, TaskSort, TaskSortField, TaskWithLatest};
pub use log::{
    LogAppend, LogLine, LogMaintenanceReport, LogMatch, LogPartitionUnit, LogRead, LogRetention,
    LogScope, LogStream, NewLogLine,
};
pub use page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest};
pub use queue::{
    ClaimOrder, ClaimedExecution, Completion, ConcurrencyLimit, Heartbeat, Outcome, RescuePolicy,
    RescueReport, UserConcurrency,
};
pub use task::{NewTask, ScriptType, Task, TaskStatus, TaskUpdate};
pub use timestamp::Timestamp;
pub use user::{NewUser, PasswordHash, User, UserUpdate};

/// Text that is not a value of a model type: what its `FromStr` (in the
/// error module, as an [`Error::Validation`](crate::Error::Validation) on
/// `field`) and its `FromSql` report. The model knows nothing of the
/// crate's error type, so it says only this much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidText {
    /// The input field, e.g. `"status"`.
    pub(crate) field: &'static str,
    /// Why it was refused.
    pub(crate) message: String,
}

impl std::fmt::Display for InvalidText {
    // The same words as the `Error::Validation` it becomes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidText {}

/// Implements `Display`, `ToSql`, `FromSql` and `parse_text` (an
/// [`InvalidText`] on `$field` naming the allowed values) for an enum
/// stored as text, from its `ALL` and `as_str`: one definition for the
/// three enums, so their text forms cannot drift apart. Their `FromStr`
/// is `parse_text` with the crate's error (in `error/parse.rs`).
macro_rules! text_column {
    ($ty:ty, $field:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $ty {
            /// The value whose text form is `s`.
            pub(crate) fn parse_text(s: &str) -> Result<Self, crate::model::InvalidText> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let allowed: Vec<&str> = <$ty>::ALL.iter().map(|v| v.as_str()).collect();
                        crate::model::InvalidText {
                            field: $field,
                            message: format!("`{s}` is not one of {}", allowed.join(", ")),
                        }
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
                Ok(<$ty>::parse_text(text)?)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&str as postgres_types::FromSql>::accepts(ty)
            }
        }
    };
}
pub(crate) use text_column;

/// Serde round trips of every type a service sends over the wire.
#[cfg(all(test, feature = "mock"))]
mod serde_tests {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;
    use crate::fixtures;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
        let json = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, value, "{json}");
    }

    #[test]
    fn stored_types_round_trip() {
        let task = fixtures::task()
            .description("d")
            .metadata(json!({ "n": 1.5, "tags": ["a", null], "deep": { "x": true } }))
            .script_type(ScriptType::Go)
            .status(TaskStatus::Timeout)
            .build();
        round_trip(&task);
        round_trip(&fixtures::task().build());
        round_trip(&fixtures::execution().build());
        let done = fixtures::execution()
            .running("w")
            .finished(&Outcome::failed(3).output("out", "err").usage(7, 8))
            .build();
        round_trip(&done);
        round_trip(&fixtures::claimed().build());
        round_trip(&Page {
            items: vec![task.clone(), fixtures::task().build()],
            next_cursor: Some("opaque".into()),
        });
        round_trip(&Page::<Task>::last(Vec::new()));
        round_trip(&fixtures::task_with_latest().latest(done.clone()).build());
        round_trip(&fixtures::task_with_latest().build());
        round_trip(&TaskFilter::UserStatus(UserId::new(), TaskStatus::Failed));
        round_trip(&TaskFilter::All);
        for sort in TaskSort::all() {
            round_trip(&sort);
        }

        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json["status"], "timeout");
        assert_eq!(json["script_type"], "go");
        assert_eq!(json["id"], task.id.to_string());
        assert_eq!(json["created_at"], task.created_at.to_string());
    }

    #[test]
    fn inputs_refuse_misspelt_fields() {
        let user = UserId::new();
        let base = json!({ "user_id": user, "name": "n", "script_content": "print(1)" });
        let mut typo = base.clone();
        typo["priorty"] = json!(10);
        let err = serde_json::from_value::<NewTask>(typo).unwrap_err();
        assert!(err.to_string().contains("priorty"), "{err}");
        for (input, parse) in [
            (
                json!({ "prioity": 9 }),
                (|v| serde_json::from_value::<TaskUpdate>(v).map(drop)) as fn(_) -> _,
            ),
            (json!({ "stauts": "failed" }), |v| {
                serde_json::from_value::<ExecutionUpdate>(v).map(drop)
            }),
            (json!({ "status": "completed", "exit": 0 }), |v| {
                serde_json::from_value::<Outcome>(v).map(drop)
            }),
            (json!({ "task_id": TaskId::new(), "x": 1 }), |v| {
                serde_json::from_value::<NewExecution>(v).map(drop)
            }),
            (json!({ "emial": "a@b.co" }), |v| {
                serde_json::from_value::<UserUpdate>(v).map(drop)
            }),
            (
                json!({ "email": "a@b.co", "password_hash": "h", "admin": true }),
                |v| serde_json::from_value::<NewUser>(v).map(drop),
            ),
        ] {
            let text = input.to_string();
            assert!(parse(input).is_err(), "accepted {text}");
        }
        serde_json::from_value::<NewTask>(base).unwrap();
    }

    #[test]
    fn inputs_round_trip() {
        let user = UserId::new();
        round_trip(&NewTask::new(user, "n", "print(1)"));
        round_trip(
            &NewTask::new(user, "n", "echo 1")
                .description("d")
                .script_type(ScriptType::Bash)
                .priority(3)
                .timeout_seconds(60)
                .metadata(json!({ "k": "v" })),
        );
        // Absent fields take the defaults of NewTask::new.
        let minimal: NewTask = serde_json::from_value(
            json!({ "user_id": user, "name": "n", "script_content": "print(1)" }),
        )
        .unwrap();
        assert_eq!(minimal, NewTask::new(user, "n", "print(1)"));
        round_trip(&NewExecution::new(TaskId::new()));

        for outcome in [
            Outcome::completed(0),
            Outcome::failed(2).output("o", "e").usage(1, 2),
            Outcome::timed_out(),
            Outcome::new(ExecutionStatus::Cancelled).return_code(9),
        ] {
            round_trip(&outcome);
        }

        for update in [
            TaskUpdate::default(),
            TaskUpdate {
                description: Some(None),
                ..TaskUpdate::default()
            },
            TaskUpdate {
                name: Some("n".into()),
                description: Some(Some("d".into())),
                script_type: Some(ScriptType::Javascript),
                metadata: Some(json!({})),
                ..TaskUpdate::default()
            },
        ] {
            round_trip(&update);
        }
        // Only the fields set are written; a cleared description is null.
        let clear = TaskUpdate {
            description: Some(None),
            ..TaskUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(&clear).unwrap(),
            json!({ "description": null })
        );
        assert_eq!(
            serde_json::to_value(TaskUpdate::default()).unwrap(),
            json!({})
        );

        let update = ExecutionUpdate {
            stdout: Some("ok".into()),
            started_at: Some(Timestamp::now()),
            ..ExecutionUpdate::default()
        };
        round_trip(&update);
        round_trip(&ExecutionUpdate::default());
        assert_eq!(
            serde_json::to_value(ExecutionUpdate::default()).unwrap(),
            json!({})
        );

        let mut report = RescueReport::default();
        report.timed_out.push(ExecutionId::new());
        report.retried.push(ExecutionId::new());
        round_trip(&report);
        round_trip(&RescuePolicy::default());
        round_trip(&PageRequest::after("c", 5));
    }

    #[test]
    fn a_user_travels_without_its_hash() {
        let user = fixtures::user()
            .password_hash(PasswordHash::new("$argon2id$v=19$secret-hash"))
            .build();
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(
            json,
            json!({
                "id": user.id,
                "email": user.email,
                "display_name": user.display_name,
                "created_at": user.created_at,
                "updated_at": user.updated_at,
            })
        );
        assert!(!json.to_string().contains("secret"), "{json}");

        let back: User = serde_json::from_value(json).unwrap();
        assert!(back.password_hash.is_empty());
        assert!(crate::validate::password_hash(&back.password_hash).is_err());
        let mut expected = user.clone();
        expected.password_hash = PasswordHash::new("");
        assert_eq!(back, expected, "equal but for the hash");

        // A hash in the input is ignored, never read.
        let mut forged = serde_json::to_value(&user).unwrap();
        forged["password_hash"] = json!("$argon2id$forged");
        let back: User = serde_json::from_value(forged).unwrap();
        assert!(back.password_hash.is_empty());

        // Nor does a page of users, or a user inside another value, carry it.
        let page = Page::last(vec![user.clone()]);
        assert!(!serde_json::to_string(&page).unwrap().contains("secret"));
        assert!(!format!("{user:?}").contains("secret"));
    }
}
