//! Connect, migrate, and report: the README's first command.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Finds its server as the test harness does: `DATABASE_URL` if set (used
//! as given), else the local server at 127.0.0.1:5432 (database
//! `voidrunner_quickstart`, created if missing), else a private throwaway
//! cluster started from the PostgreSQL binaries on this machine.

use std::process::ExitCode;
use std::time::Duration;

use voidrunner_db::testing::server_config;
use voidrunner_db::{Database, DbConfig};

const QUICKSTART_DB: &str = "voidrunner_quickstart";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> voidrunner_db::Result<()> {
    let config = target().await?;
    println!("server:   {}", config.display_target());

    let db = Database::connect(config).await?;
    let applied = db.migrate().await?;
    let status = db.migration_status().await?;
    println!(
        "schema:   version {} ({} applied now, {} pending)",
        status.current_version(),
        applied.len(),
        status.pending.len()
    );

    let health = db.health_check().await?;
    println!(
        "health:   ok, PostgreSQL {}, round trip {:?}",
        health.server_version, health.latency
    );
    println!(
        "pool:     {} open ({} idle, {} in use, {} waiting), max {}",
        health.pool.size,
        health.pool.idle,
        health.pool.in_use,
        health.pool.waiting,
        health.pool.max
    );

    db.close(Duration::from_secs(5)).await;
    Ok(())
}

/// `DATABASE_URL` as given, or a database of its own on the discovered server
/// (never the server's `postgres` database).
async fn target() -> voidrunner_db::Result<DbConfig> {
    let server = server_config().await?;
    if std::env::var_os("DATABASE_URL").is_some() {
        return Ok(server);
    }
    let (client, connection) = server
        .pg_config()
        .connect(voidrunner_db::tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&QUICKSTART_DB],
        )
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {QUICKSTART_DB}"))
            .await?;
    }
    Ok(server.with_dbname(QUICKSTART_DB))
}
