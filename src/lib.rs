// The README is the crate's front page. Its examples use the mocks and the
// test harness: they run as doctests only with both features on (always so
// in this repository, through the self dev-dependency; in the packaged crate
// with `cargo test --all-features`), so a plain `cargo test` of the packaged
// crate does not fail on them.
//
// The README's links into the guides and the domain reference point at
// docs.rs, for GitHub and crates.io; these definitions come first, and in
// Markdown the first definition of a label wins, so the crate's own docs
// link to their own pages (of this version) instead.
#![doc = "[domain]: crate::domain"]
#![doc = "[domain-validation]: crate::domain#validation"]
#![doc = "[domain-invariants]: crate::domain#invariants"]
#![doc = "[domain-lock-order]: crate::domain#lock-order"]
#![doc = "[domain-logs]: crate::domain#execution-logs-v13"]
#![doc = "[guide-repositories]: crate::docs::repositories"]
#![doc = "[guide-transactions]: crate::docs::transactions"]
#![doc = "[guide-queue]: crate::docs::queue"]
#![doc = "[guide-tenants]: crate::docs::tenants"]
#![doc = "[guide-events]: crate::docs::events"]
#![doc = "[guide-errors]: crate::docs::errors"]
#![doc = "[guide-testing]: crate::docs::testing"]
#![doc = "[guide-configuration]: crate::docs::configuration"]
#![doc = "[guide-deploying]: crate::docs::deploying"]
#![doc = "[guide-scaling]: crate::docs::scaling"]
#![doc = "[deploying-failover]: crate::docs::deploying#multi-host-failover"]
#![doc = "[deploying-roles]: crate::docs::deploying#roles-and-upgrades"]
#![doc = "[deploying-tls]: crate::docs::deploying#tls"]
#![doc = "[deploying-poolers]: crate::docs::deploying#pgbouncer-and-other-transaction-poolers"]
#![doc = "[guide-migrations]: crate::docs::migrations"]
#![doc = "[guide-semver]: crate::docs::semver"]
#![doc = "[guide-development]: crate::docs::development"]
#![cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("../README.md")
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]

mod batcher;
mod cancel;
pub mod completer;
pub mod config;
mod connect;
mod db;
pub mod docs;
/// The domain reference: schema, validation limits, state machines, the
/// queue's life cycle, invariants and pool defaults, as the code has them.
pub mod domain;
pub mod error;
pub mod events;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod fixtures;
pub mod heartbeater;
pub mod log_writer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod pg;
mod pool_status;
mod queries;
pub mod repo;
pub mod roles;
mod scope;
#[cfg(feature = "test-support")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-support")))]
pub mod testing;
mod token;
mod tx;
mod uow;
pub mod validate;

pub use completer::{Completer, CompleterConfig};
pub use config::{DbConfig, PoolerMode, SslMode};
pub use db::{Database, HealthReport, NodeRole, NodeState, NodeStatus, PoolStatus, PooledClient};
pub use error::{Error, LeaseLostReason, Result, TimeoutKind, TlsErrorKind};
pub use events::{
    Event, EventKind, EventStream, ExecutionEvent, FollowMode, FollowOptions, LogFollow,
};
pub use heartbeater::{Heartbeater, HeartbeaterConfig};
pub use log_writer::{LogWriter, LogWriterConfig};
pub use migrate::{DownTarget, MigrationStatus};
pub use model::{
    ClaimOrder, ClaimedExecution, Completion, ConcurrencyLimit, ExecutionId, ExecutionStatus,
    ExecutionUpdate, Heartbeat, NewExecution, NewTask, NewUser, Outcome, Page, PageRequest,
    PasswordHash, RescuePolicy, RescueReport, ScriptType, Task, TaskExecution, TaskId, TaskStatus,
    TaskStatusCounts, TaskUpdate, Timestamp, User, UserConcurrency, UserId, UserUpdate,
};
pub use model::{
    LogAppend, LogLine, LogMaintenanceReport, LogMatch, LogPartitionUnit, LogRead, LogRetention,
    LogScope, LogStream, NewLogLine,
};
pub use model::{SortDirection, TaskFilter, TaskSort, TaskSortField, TaskWithLatest};
pub use pg::{
    PgConcurrencyLimits, PgExecutionQueue, PgExecutionRepository, PgLogRepository,
    PgScopedExecutionRepository, PgScopedLogRepository, PgScopedTaskRepository, PgTaskRepository,
    PgUserRepository,
};
#[doc(hidden)]
pub use queries::{__statement, __statements};
pub use repo::{
    ConcurrencyLimits, ExecutionQueue, ExecutionRepository, LogRepository,
    ScopedExecutionRepository, ScopedLogRepository, ScopedTaskRepository, TaskRepository,
    UserRepository,
};
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use repo::{
    MockConcurrencyLimits, MockExecutionQueue, MockExecutionRepository, MockLogRepository,
    MockScopedExecutionRepository, MockScopedLogRepository, MockScopedTaskRepository,
    MockTaskRepository, MockUserRepository,
};
pub use scope::ScopedRepositories;
pub use token::{Consistency, ReadToken};
pub use tx::{IsolationLevel, Transaction, TransactionOptions};
pub use uow::{
    DatabaseUnitOfWork, PassThroughUnitOfWork, Repositories, RepositoryOptions, UnitOfWork,
    UnitOfWorkExt, Work, WorkError, WorkOutput,
};

/// Re-export of the driver, so callers use the same version as the crate.
/// Deliberate and part of the public API: `tokio_postgres::Error` is the
/// source of driver errors, and [`PooledClient`] hands out its `Client`. A
/// major version bump of tokio-postgres is a breaking change of this crate.
pub use tokio_postgres;

/// Re-export of the pool, so callers use the same version as the crate.
/// Deliberate and part of the public API: [`PooledClient`] is
/// `deadpool_postgres::Object` and [`Database::pool`] returns
/// `deadpool_postgres::Pool`. A breaking release of deadpool-postgres is a
/// breaking change of this crate.
pub use deadpool_postgres;

/// Re-export of the mocking library the mocks are generated with (feature
/// `mock`), so that a test scripts them with the very version that built
/// them: `voidrunner_db::mockall::predicate::eq`, `Sequence`,
/// `mockall::automock` for a trait of your own, without a dependency of
/// your own that could drift to another version (whose predicates and
/// `Sequence` would not fit these mocks). Deliberate and part of the public
/// API: [`MockTaskRepository`] and its siblings are mockall types, and a
/// breaking release of mockall (0.14) is a breaking change of this crate.
///
/// ```
/// use voidrunner_db::mockall::predicate::eq;
/// use voidrunner_db::{MockTaskRepository, TaskRepository, UserId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let user = UserId::new();
/// let mut tasks = MockTaskRepository::new();
/// tasks.expect_count_by_user().with(eq(user)).times(1).returning(|_| Ok(2));
/// assert_eq!(tasks.count_by_user(user).await.unwrap(), 2);
/// # }
/// ```
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use mockall;

/// Re-export of the attribute the repository traits are declared with, to
/// implement them (a fake, an adapter) without depending on `async-trait`
/// yourself:
///
/// ```
/// use voidrunner_db::async_trait;
///
/// #[async_trait]
/// trait Ping {
///     async fn ping(&self) -> u32;
/// }
///
/// struct Pong;
///
/// #[async_trait]
/// impl Ping for Pong {
///     async fn ping(&self) -> u32 {
///         1
///     }
/// }
/// ```
pub use async_trait::async_trait;
