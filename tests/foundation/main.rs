//! Foundation tests: schema, migrations, errors, pool, health and the test
//! harness, against a real PostgreSQL server (see `voidrunner_db::testing`).
//! One binary with submodules keeps link time down.

mod constraints;
mod display_name_migration;
mod errors;
mod extremes;
mod failover;
mod harness;
mod health;
mod layering;
#[cfg(feature = "metrics")]
mod metrics;
mod migrations;
mod pool;
mod readme;
mod roles;
mod roles_limits;
mod service_migrations;
mod statement_cache;

use voidrunner_db::{Database, PooledClient};

/// A pooled connection for raw SQL.
pub async fn raw(db: &Database) -> PooledClient {
    db.client().await.expect("checkout")
}
