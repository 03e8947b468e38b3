#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod config;
mod db;
pub mod error;
pub mod migrate;
#[cfg(feature = "test-support")]
pub mod testing;

pub use config::DbConfig;
pub use db::{Database, HealthReport, PoolStatus, PooledClient};
pub use error::{Error, Result, TimeoutKind};
pub use migrate::{DownTarget, MigrationStatus};

/// Re-export of the driver, so callers use the same version as the crate.
pub use tokio_postgres;
