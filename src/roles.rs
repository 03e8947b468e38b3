//! The database roles of a deployment: a SQL script the crate ships
//! ([`SQL`], `src/roles.sql`), and [`install`] to run it.
//!
//! Three `NOLOGIN` group roles, each with only what its part of the crate
//! runs; operators log in as roles of their own made members of one
//! (`CREATE ROLE api LOGIN PASSWORD '…' IN ROLE voidrunner_app`):
//!
//! | role | for | privileges |
//! |---|---|---|
//! | [`OWNER`] `voidrunner_owner` | migrations | `USAGE` and `CREATE` on the tables' schema; owns what migrations create while they run as it |
//! | [`APP`] `voidrunner_app` | request handlers, through the scoped repositories | `SELECT`, `INSERT`, `UPDATE` on `users` (not `DELETE`: its cascade to the user's tasks is not bound by row-level security); `SELECT`, `INSERT`, `UPDATE`, `DELETE` on `tasks`; `SELECT`, `INSERT`, `UPDATE` on `task_executions`; `EXECUTE` on the scope functions and the list pages; bound by row-level security |
//! | [`WORKER`] `voidrunner_worker` | workers, rescuer, pruner, event poll | `SELECT`, `UPDATE` on `tasks`; `SELECT`, `INSERT`, `UPDATE`, `DELETE` on `task_executions`; `EXECUTE` on every function of the crate but the triggers'; every row, through policies of its own |
//!
//! Neither the app nor the worker role can create, alter, drop or truncate
//! anything, nor read the migration history, which nothing the crate does
//! at [`Database::connect`] (a look at the catalogs),
//! [`health_check`](Database::health_check) or [`warm`](Database::warm)
//! reads (only the migrations and
//! [`migration_status`](Database::migration_status) do).
//!
//! # Row-level security
//!
//! Migration V9 adds row-level security policies to `tasks` and
//! `task_executions`, and this script turns row-level security on for
//! them (V9 does itself only when `voidrunner_app` already exists: before,
//! there is nobody to bind, and row-level security on costs the roles it
//! applies to the column statistics of non-leakproof operators). The
//! policies bind the members of `voidrunner_app`: such a
//! session sees and writes only the rows of the user its transaction is
//! scoped to (`SET LOCAL voidrunner.user_id`, what the scoped repositories
//! send), and no row at all in a transaction scoped to nobody. V9 leaves
//! every other role unbound (its `*_unbound` policies); the worker role
//! reads and writes every row through permissive policies of its own as
//! well, `tasks_worker` and `task_executions_worker`, which this script
//! creates, so its access does not rest on not being someone else
//! (policies are OR-ed, and a policy for a role applies to its members). A
//! `BYPASSRLS` worker would do the same, but only a superuser may grant
//! that attribute. The tables' owner and superusers are never bound (RLS
//! is enabled, not forced): a handler must not log in as either, nor as a
//! member of `voidrunner_owner`, and a login must be a member of one of
//! the three, not two (a member of both the app and the worker role sees
//! every row through the worker's policies).
//! The script refuses to grant anything while `voidrunner_app` itself could
//! escape the policies (a superuser, `BYPASSRLS`, a member of the owner or
//! worker role or of the tables' owner).
//!
//! # Running it
//!
//! As a superuser, or as the owner of the tables and of their schema with
//! `CREATEROLE` (needed only while a role is missing), after
//! [`Database::migrate`](crate::Database::migrate), and again after every
//! upgrade (it grants on what exists, so a new table or function gets its
//! grants at the next run):
//!
//! ```sh
//! psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f src/roles.sql
//! ```
//!
//! or [`install`] from Rust, on a [`Database`] whose login may do it. It is
//! idempotent: a second run changes nothing. It runs as one transaction
//! (its own `BEGIN` and `COMMIT`) under a `lock_timeout` of 5 s (dropping
//! and creating the worker policies locks the tables for an instant, and
//! must not queue their traffic behind a long transaction): on a busy
//! system it may fail with a lock timeout, and is then run again. The roles
//! are shared by every database of the cluster; the grants and policies are
//! this database's.
//!
//! # Who owns the tables
//!
//! The script never changes an object's owner: a new owner would change
//! who may run the next migration, and who row-level security exempts,
//! under a running service. Where the tables should belong to `voidrunner_owner`,
//! run the migrations as it from the start:
//!
//! 1. run the script once on the empty database, as a superuser: it creates
//!    the roles and gives `voidrunner_owner` `CREATE` on the current
//!    schema (the table grants wait, with a notice, for a run after the
//!    migrations);
//! 2. `CREATE ROLE migrator LOGIN … IN ROLE voidrunner_owner`;
//! 3. migrate with a [`DbConfig`] logging in as `migrator` with
//!    [`role`](DbConfig::role) `voidrunner_owner`
//!    (`VOIDRUNNER_DB_ROLE=voidrunner_owner`): the migration session runs
//!    `SET ROLE voidrunner_owner`, so the tables, functions and the history
//!    table are its;
//! 4. run the script again (as `migrator` with that role, or a
//!    superuser): the grants and policies.
//!
//! An existing deployment whose tables belong to another role keeps them:
//! `voidrunner_owner` gets `CREATE` on the schema, but the next migration
//! must still run as the tables' owner, until an operator moves them (as a
//! superuser: `REASSIGN OWNED BY old_owner TO voidrunner_owner` in this
//! database moves everything `old_owner` owns there; or `ALTER TABLE …
//! OWNER TO voidrunner_owner` and `ALTER FUNCTION …` one by one), knowing
//! that the old owner then has only the privileges it is granted.
//!
//! # One login per part
//!
//! ```sql
//! CREATE ROLE api LOGIN PASSWORD '…' IN ROLE voidrunner_app;
//! CREATE ROLE worker LOGIN PASSWORD '…' IN ROLE voidrunner_worker;
//! ```
//!
//! A member with `INHERIT` (the default) has its group's privileges and
//! policies without `SET ROLE`. [`DbConfig::role`] (`VOIDRUNNER_DB_ROLE`)
//! makes every session of a configuration `SET ROLE` to a group instead:
//! to create objects as `voidrunner_owner` (the migrations above), for a
//! `NOINHERIT` member, or for a superuser login in development, which then
//! has no more than the role. A role the login cannot take fails
//! [`Database::connect`] with an [`Error::Config`] naming the `GRANT` it
//! lacks, and so does a role that lacks what every pool reads (`SELECT` on
//! `tasks` and `task_executions`, `USAGE` on their schema, `EXECUTE` on the
//! scope functions and list pages: see [`Database::connect`]).

use tracing::Instrument as _;

use crate::config::DbConfig;
use crate::db::Database;
use crate::error::{Error, Result};

/// The script: creates the roles, grants, the worker's policies, and turns
/// row-level security on for `tasks` and `task_executions` once V9's
/// policies exist. Run
/// it with `psql -v ON_ERROR_STOP=1 -f` or [`install`]; see the
/// [module docs](self).
pub const SQL: &str = include_str!("roles.sql");

/// The role that owns the schema objects and runs the migrations.
pub const OWNER: &str = "voidrunner_owner";

/// The role of the request handlers, bound by row-level security.
pub const APP: &str = "voidrunner_app";

/// The role of the workers, the rescuer, the pruner and the event poll:
/// every row of `tasks` and `task_executions`.
pub const WORKER: &str = "voidrunner_worker";

/// The three roles the script creates.
pub const ALL: [&str; 3] = [OWNER, APP, WORKER];

/// Key of the transaction-level advisory lock the script takes, so that
/// two runs against one database take turns ("voidrun" + 2; the
/// migrations' lock is "voidrun" + 1).
pub const LOCK_KEY: i64 = 0x766F_6964_7275_6E02;

/// Runs [`SQL`] on a connection of its own, opened as `db`'s migrations
/// open theirs: the direct URL if set, else the URL, with `db`'s TLS
/// settings, taking [`DbConfig::role`] when it is set. Needs a login (or
/// role) that may create the roles (until they exist) and grant on the
/// tables (see the [module docs](self)); otherwise fails with the
/// server's error, an [`Error::Database`] of
/// SQLSTATE 42501 naming what it may not do, and nothing is changed.
/// Idempotent.
pub async fn install(db: &Database) -> Result<()> {
    let config = db.config();
    let span =
        tracing::info_span!("voidrunner_db.roles.install", target = %config.display_target());
    async {
        let (client, connection) = db
            .connector()
            .connect(config, &config.dedicated_pg_config())
            .await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "roles connection ended");
            }
        });
        let result = run(&client, config).await;
        drop(client);
        // The driver ends with the client; a panic in it is no reason to
        // report the script's own outcome otherwise.
        let _ = driver.await;
        result?;
        tracing::info!("roles installed");
        Ok(())
    }
    .instrument(span)
    .await
}

async fn run(client: &tokio_postgres::Client, config: &DbConfig) -> Result<()> {
    if let Some(sql) = config.set_role_sql() {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| config.role_refused(Error::from(e)))?;
    }
    client.batch_execute(SQL).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_what_the_constants_say() {
        for role in ALL {
            assert!(SQL.contains(&format!("'{role}'")), "{role}");
        }
        assert!(SQL.contains(&format!("pg_advisory_xact_lock({LOCK_KEY})")));
        assert_ne!(LOCK_KEY, crate::migrate::MIGRATION_LOCK_KEY);
        // All or nothing: one transaction of its own.
        let statements: Vec<&str> = SQL
            .lines()
            .filter(|line| !line.trim_start().starts_with("--") && !line.trim().is_empty())
            .collect();
        assert_eq!(statements.first(), Some(&"BEGIN;"));
        assert_eq!(statements.last(), Some(&"COMMIT;"));
    }
}
