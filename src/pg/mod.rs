//! The PostgreSQL implementation of the repository traits.
//!
//! One file per repository; their SQL is in `src/queries/*.sql`, each
//! statement named. Every statement is prepared through the connection's
//! statement cache (or, behind a transaction-mode pooler, sent unnamed with
//! declared parameter types), names its columns, takes parameters only, and
//! does its work in one round trip (`RETURNING` instead of a read-back).
//! Status changes check the state machine inside the UPDATE, on the locked
//! row, and are all the queue's (`queue/`).
//!
//! Beside the repositories: the one executor every statement runs through,
//! pooled or in a transaction, in a span named by the statement (`conn.rs`),
//! reading rows by position (`rows.rs`), keyset pages and the statements of
//! each list (`pages.rs`).

mod conn;
mod execution;
mod jsonb;
mod pages;
mod param;
mod queue;
mod rows;
mod task;
#[cfg(test)]
mod tests;
mod transaction;
mod user;

pub use execution::PgExecutionRepository;
pub use queue::PgExecutionQueue;
pub use task::PgTaskRepository;
pub use user::PgUserRepository;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::db::{Database, PooledClient};
use crate::error::{Error, Result};
use crate::model::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest, Timestamp};
use crate::queries::Query;
use crate::tx::TxInner;
pub(crate) use conn::query_pooled;
use conn::*;
use pages::*;
pub(crate) use param::Param;
use rows::*;
