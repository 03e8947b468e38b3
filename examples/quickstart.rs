//! The whole flow in one run: the README's first command.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Connects, migrates, creates a user, a task with metadata and an
//! execution, runs the execution to completion, lists and searches, prints a
//! short report, and deletes the user (which cascades to the rest).
//!
//! Finds its server as the test harness does: `DATABASE_URL` if set (used
//! as given), else the local server at 127.0.0.1:5432 (database
//! `voidrunner_quickstart`, created for the run and dropped at its end),
//! else a private throwaway cluster started from the PostgreSQL binaries on
//! this machine; the `VOIDRUNNER_DB_*` settings of `DbConfig::from_env`
//! apply (behind PgBouncer: `VOIDRUNNER_DB_POOLER=transaction` and
//! `VOIDRUNNER_DB_DIRECT_URL`).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use voidrunner_db::testing::server_config;
use voidrunner_db::validate::{self, PasswordPolicy};
use voidrunner_db::{
    Database, DbConfig, ExecutionQueue, ExecutionRepository, NewExecution, NewTask, NewUser,
    Outcome, PageRequest, PasswordHash, PgExecutionQueue, PgExecutionRepository, PgTaskRepository,
    PgUserRepository, ScriptType, TaskRepository, TaskStatus, UserRepository,
};

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

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = target().await?;
    println!("server:     {}", config.display_target());

    let db = Database::connect(config).await?;
    let applied = db.migrate().await?;
    let status = db.migration_status().await?;
    println!(
        "schema:     version {} ({} applied now, {} pending)",
        status.current_version(),
        applied.len(),
        status.pending.len()
    );
    let health = db.health_check().await?;
    println!(
        "health:     ok, PostgreSQL {}, round trip {:?}",
        health.server_version, health.latency
    );

    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let executions = PgExecutionRepository::new(db.clone());

    // The crate stores hashes, never passwords: check strength, then hash
    // (a real service uses argon2 or bcrypt here).
    let password = "Quickstart123";
    validate::password(password, &PasswordPolicy::default())?;
    let email = format!("quickstart-{}@example.com", std::process::id());
    let user = users
        .create(NewUser::new(email, PasswordHash::new(fake_hash(password))))
        .await?;
    println!("user:       {} ({})", user.email, user.id);

    let task = tasks
        .create(
            NewTask::new(user.id, "nightly report", "print('report ready')")
                .script_type(ScriptType::Python)
                .priority(7)
                .timeout_seconds(60)
                .metadata(json!({"team": "data", "schedule": {"cron": "0 2 * * *"}})),
        )
        .await?;
    println!(
        "task:       {:?} priority {} ({})",
        task.name, task.priority, task.status
    );

    // Queue the task, and run it as a worker would: claim (task and
    // execution become running, under a lease), then report the outcome
    // (both become completed).
    let execution = executions.create(NewExecution::new(task.id)).await?;
    let queue = PgExecutionQueue::new(db.clone());
    let claimed = queue
        .claim("quickstart", 1, Duration::from_secs(60))
        .await?;
    assert_eq!(claimed.first().map(|c| c.execution.id), Some(execution.id));
    let finished = queue
        .complete(
            execution.id,
            "quickstart",
            Outcome::completed(0)
                .output("report ready\n", "")
                .usage(42, 8 << 20),
        )
        .await?;
    let task = tasks.get(task.id).await?;
    assert_eq!(task.status, TaskStatus::Completed);
    println!(
        "execution:  {} in {} ms, exit {}, stdout {:?}",
        finished.status,
        finished.execution_time_ms.unwrap_or_default(),
        finished.return_code.unwrap_or_default(),
        finished.stdout.as_deref().unwrap_or_default()
    );

    let listed = tasks.list_by_user(user.id, PageRequest::first(10)).await?;
    let found = tasks
        .search_by_metadata(
            json!({"schedule": {"cron": "0 2 * * *"}}),
            PageRequest::default(),
        )
        .await?;
    let latest = executions.latest_for_task(task.id).await?;
    println!(
        "queries:    {} task(s) for the user, {} found by metadata, latest execution {}",
        listed.items.len(),
        found.items.iter().filter(|t| t.user_id == user.id).count(),
        latest.map_or("none".to_owned(), |e| e.status.to_string())
    );
    println!("task now:   {} (completed is final)", task.status);

    users.delete(user.id).await?;
    let gone = tasks.get(task.id).await.is_err_and(|e| e.is_not_found());
    println!("cleanup:    user deleted, task and execution removed by cascade: {gone}");

    let pool = db.pool_status();
    println!(
        "pool:       {} open ({} idle, {} in use), max {}",
        pool.size, pool.idle, pool.in_use, pool.max
    );
    db.close(Duration::from_secs(5)).await;
    if !gone {
        return Err("the task survived its user's deletion".into());
    }
    // The demo database is removed at the end; a DATABASE_URL given by the
    // caller is left as it is (the user above is already deleted).
    if std::env::var_os("DATABASE_URL").is_none() {
        drop_demo_database().await?;
        println!("removed:    database {QUICKSTART_DB}");
    }
    Ok(())
}

async fn drop_demo_database() -> voidrunner_db::Result<()> {
    let server = server_config().await?;
    // CREATE and DROP DATABASE go to the server itself, not through a
    // pooler in front of it (VOIDRUNNER_DB_DIRECT_URL).
    let (client, connection) = server
        .direct_pg_config()
        .unwrap_or(server.pg_config())
        .connect(voidrunner_db::tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {QUICKSTART_DB} WITH (FORCE)"
        ))
        .await?;
    Ok(())
}

/// Stands in for a password hasher, to keep the example free of one.
fn fake_hash(password: &str) -> String {
    format!("$demo${}", password.len())
}

/// `DATABASE_URL` as given, or a database of its own on the discovered server
/// (never the server's `postgres` database), recreated on each run so the
/// demo always starts from an empty schema, whatever an older build of the
/// crate left in it.
async fn target() -> voidrunner_db::Result<DbConfig> {
    let server = server_config().await?;
    if std::env::var_os("DATABASE_URL").is_some() {
        return Ok(server);
    }
    // CREATE and DROP DATABASE go to the server itself, not through a
    // pooler in front of it (VOIDRUNNER_DB_DIRECT_URL).
    let (client, connection) = server
        .direct_pg_config()
        .unwrap_or(server.pg_config())
        .connect(voidrunner_db::tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {QUICKSTART_DB}"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {QUICKSTART_DB}"))
        .await?;
    Ok(server.with_dbname(QUICKSTART_DB))
}
