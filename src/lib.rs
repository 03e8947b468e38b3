#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod config;
mod db;
pub mod error;
pub mod events;
pub mod migrate;
pub mod model;
pub mod pg;
pub mod repo;
#[cfg(feature = "test-support")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-support")))]
pub mod testing;
mod tx;
pub mod validate;

pub use config::DbConfig;
pub use db::{Database, HealthReport, PoolStatus, PooledClient};
pub use error::{Error, LeaseLostReason, Result, TimeoutKind};
pub use events::{Event, EventKind, EventStream, ExecutionEvent};
pub use migrate::{DownTarget, MigrationStatus};
pub use model::{
    ClaimedExecution, ExecutionId, ExecutionStatus, ExecutionUpdate, NewExecution, NewTask,
    NewUser, Outcome, Page, PageRequest, PasswordHash, RescuePolicy, RescueReport, ScriptType,
    Task, TaskExecution, TaskId, TaskStatus, TaskUpdate, Timestamp, User, UserId, UserUpdate,
};
pub use pg::{PgExecutionQueue, PgExecutionRepository, PgTaskRepository, PgUserRepository};
pub use repo::{ExecutionQueue, ExecutionRepository, TaskRepository, UserRepository};
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use repo::{
    MockExecutionQueue, MockExecutionRepository, MockTaskRepository, MockUserRepository,
};
pub use tx::{IsolationLevel, Transaction, TransactionOptions};

/// Re-export of the driver, so callers use the same version as the crate.
pub use tokio_postgres;
