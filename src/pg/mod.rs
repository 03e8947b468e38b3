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
//! each list (`pages.rs`), the sorted task lists and their cursors
//! (`sorted.rs`).

mod conn;
mod execution;
mod jsonb;
mod limits;
mod logs;
mod pages;
mod param;
mod queue;
mod routed;
mod rows;
mod scoped;
mod sorted;
mod task;
#[cfg(test)]
mod tests;
mod transaction;
mod user;

pub use execution::PgExecutionRepository;
pub use limits::PgConcurrencyLimits;
pub use logs::{PgLogRepository, PgScopedLogRepository};
pub use queue::PgExecutionQueue;
pub(crate) use scoped::ScopedFactory;
pub use scoped::{PgScopedExecutionRepository, PgScopedTaskRepository};
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
use crate::model::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest, Timestamp, UserId};
use crate::queries::Query;
use crate::tx::TxInner;
pub(crate) use conn::query_pooled;
use conn::*;
use pages::*;
pub(crate) use param::Param;
use rows::*;

/// The span of one repository call: INFO `voidrunner_db.repo` with its
/// entity and operation (and a batch's `count`), the one place it is
/// written.
fn repo_span(entity: &'static str, op: &'static str) -> tracing::Span {
    tracing::info_span!(
        "voidrunner_db.repo",
        entity,
        op,
        count = tracing::field::Empty
    )
}

/// The span of one queue call: INFO `voidrunner_db.queue` with its
/// operation (and a batch's `count`, a claim's `limit`).
fn queue_span(op: &'static str) -> tracing::Span {
    tracing::info_span!(
        "voidrunner_db.queue",
        op,
        count = tracing::field::Empty,
        limit = tracing::field::Empty
    )
}

/// `span` with the size of the call's batch.
fn counted(span: tracing::Span, count: usize) -> tracing::Span {
    span.record("count", count);
    span
}

/// `span` with the most rows a claim takes.
fn limited(span: tracing::Span, limit: u32) -> tracing::Span {
    span.record("limit", limit);
    span
}

/// Runs a repository call in its span, its error logged there at DEBUG
/// (the statements' spans, opened by the executor, nest inside).
async fn traced<T>(span: tracing::Span, call: impl Future<Output = Result<T>>) -> Result<T> {
    let call = async move {
        let result = call.await;
        if let Err(err) = &result {
            tracing::debug!(error = %err);
        }
        result
    };
    tracing::Instrument::instrument(call, span).await
}
