#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod config;
mod db;
pub mod error;
pub mod migrate;
pub mod model;
pub mod pg;
pub mod repo;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod validate;

pub use config::DbConfig;
pub use db::{Database, HealthReport, PoolStatus, PooledClient};
pub use error::{Error, Result, TimeoutKind};
pub use migrate::{DownTarget, MigrationStatus};
pub use model::{
    ExecutionId, ExecutionStatus, ExecutionUpdate, NewExecution, NewTask, NewUser, Page,
    PageRequest, PasswordHash, ScriptType, Task, TaskExecution, TaskId, TaskStatus, TaskUpdate,
    Timestamp, User, UserId, UserUpdate,
};
pub use pg::{PgExecutionRepository, PgTaskRepository, PgUserRepository};
pub use repo::{ExecutionRepository, TaskRepository, UserRepository};
#[cfg(feature = "mock")]
pub use repo::{MockExecutionRepository, MockTaskRepository, MockUserRepository};

/// Re-export of the driver, so callers use the same version as the crate.
pub use tokio_postgres;
