//! A LOGIN role that is a member of `voidrunner_app`, the role whose
//! members V9's row-level security binds, with the grants the scoped view
//! needs on one test database; and pools and sessions that connect as it.
//!
//! Roles are cluster-wide and the server is shared: each test's role has a
//! name of its own and is dropped with its [`AppRole`] (its grants first),
//! also when the test fails. `voidrunner_app` itself is shared by every
//! test (and by whoever else uses the server): created if missing, never
//! dropped. Nothing here depends on the crate's roles script.

use std::ops::Deref;

use tokio_postgres::NoTls;
use voidrunner_db::testing::{PgBouncer, TEST_POOLER_ENV, TestDatabase, server_config};
use voidrunner_db::{Database, DbConfig};

/// A LOGIN member of `voidrunner_app` with, on one test database, `USAGE`
/// on the schema, `SELECT, INSERT, UPDATE, DELETE` on users and tasks and
/// `SELECT, INSERT, UPDATE` on task_executions, `SELECT` on V12's
/// counters, and row-level security on for tasks, task_executions and the
/// counters. Dropped, grants and all,
/// when this is dropped: declare it after the [`TestDatabase`] it was made
/// for, so it goes first.
pub struct AppRole {
    /// The role's name: `vr_test_tenant_` and 32 random hex digits.
    pub name: String,
    /// The test database, straight to the server, as the harness's user.
    admin: DbConfig,
    /// The server's own database, as the harness's user: where the role is
    /// dropped when the test database is already gone.
    server: tokio_postgres::Config,
}

impl AppRole {
    /// A new role for `db`.
    pub async fn create(db: &TestDatabase) -> AppRole {
        let config = db.config().await.unwrap();
        let server = server_config().await.unwrap();
        let role = AppRole {
            name: format!("vr_test_tenant_{}", uuid::Uuid::new_v4().simple()),
            admin: config.direct_config().unwrap_or(config),
            server: server
                .direct_pg_config()
                .unwrap_or(server.pg_config())
                .clone(),
        };
        // Two tests may create voidrunner_app at once: the loser of that
        // race meets the winner's row in the catalog. Row-level security is
        // turned on here, as V9 does when voidrunner_app exists at migration
        // time: the harness's template may have been migrated before any
        // test created the role (a fresh server), and then V9 left it off.
        db.raw_client()
            .await
            .unwrap()
            .batch_execute(&format!(
                "DO $$ BEGIN \
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voidrunner_app') THEN \
                     CREATE ROLE voidrunner_app NOLOGIN; \
                   END IF; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
                 END $$; \
                 CREATE ROLE {role} LOGIN IN ROLE voidrunner_app; \
                 ALTER TABLE tasks ENABLE ROW LEVEL SECURITY; \
                 ALTER TABLE task_executions ENABLE ROW LEVEL SECURITY; \
                 ALTER TABLE task_counts_by_user ENABLE ROW LEVEL SECURITY; \
                 ALTER TABLE task_counts ENABLE ROW LEVEL SECURITY; \
                 GRANT SELECT ON task_counts, task_counts_by_user TO {role}; \
                 GRANT USAGE ON SCHEMA public TO {role}; \
                 GRANT SELECT, INSERT, UPDATE ON users TO {role}; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO {role}; \
                 GRANT SELECT, INSERT, UPDATE ON task_executions TO {role};",
                role = role.name
            ))
            .await
            .unwrap();
        role
    }

    /// The test database's configuration as this role, straight to the
    /// server.
    pub fn direct_config(&self) -> DbConfig {
        let mut config = self.admin.clone();
        config.pg_config_mut().user(&self.name);
        config
    }

    /// A pool of the test database that connects as this role: straight to
    /// the server, or, when the suite runs behind PgBouncer
    /// ([`TEST_POOLER_ENV`]), through a PgBouncer in transaction mode of its
    /// own (the harness's knows only the harness's user).
    pub async fn database(&self) -> AppDatabase {
        let mut config = self.direct_config();
        config.max_connections = 4;
        config.min_connections = 1;
        let behind_pooler = std::env::var_os(TEST_POOLER_ENV).is_some_and(|v| !v.is_empty());
        let bouncer = if behind_pooler {
            let bouncer = PgBouncer::start(&config).await.unwrap();
            config = bouncer.route(&config);
            Some(bouncer)
        } else {
            None
        };
        let db = Database::connect(config).await.unwrap();
        AppDatabase { db, bouncer }
    }

    /// A session of its own to the test database as this role, straight
    /// to the server (for SQL that needs one: plans, `SET LOCAL` across
    /// statements).
    pub async fn session(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .direct_config()
            .pg_config()
            .connect(NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    fn drop_sql(&self) -> String {
        format!(
            "DO $$ BEGIN \
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                 DROP OWNED BY {role}; \
                 DROP ROLE {role}; \
               END IF; \
             END $$;",
            role = self.name
        )
    }
}

impl Drop for AppRole {
    /// Drops the role's grants and the role, on a thread and runtime of its
    /// own (this may run inside the test's runtime, or while a test
    /// panics): in the test database, or, when that is gone already, from
    /// the server's own database.
    fn drop(&mut self) {
        let sql = self.drop_sql();
        let (test_db, server) = (self.admin.pg_config().clone(), self.server.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let (client, connection) = match test_db.connect(NoTls).await {
                    Ok(connected) => connected,
                    Err(_) => server.connect(NoTls).await.map_err(|e| e.to_string())?,
                };
                let driver = tokio::spawn(connection);
                let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
                drop(client);
                let _ = driver.await;
                result
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the thread dropping the role panicked".to_owned()));
        match dropped {
            Ok(()) => {}
            Err(e) if std::thread::panicking() => {
                eprintln!("dropping role {} failed: {e}", self.name);
            }
            Err(e) => panic!("dropping role {} failed: {e}", self.name),
        }
    }
}

/// A pool connecting as an [`AppRole`] (and the PgBouncer in front of it,
/// if any, stopped after the pool is closed). Derefs to the [`Database`].
pub struct AppDatabase {
    db: Database,
    bouncer: Option<PgBouncer>,
}

impl AppDatabase {
    pub fn db(&self) -> &Database {
        &self.db
    }
}

impl Deref for AppDatabase {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Drop for AppDatabase {
    fn drop(&mut self) {
        self.db.pool().close();
        // Stopped after the pool's connections were closed.
        drop(self.bouncer.take());
    }
}
