//! A freshly migrated database of its own for every test (feature
//! `test-support`).
//!
//! ```no_run
//! # async fn example() -> voidrunner_db::Result<()> {
//! use voidrunner_db::testing::TestDatabase;
//!
//! let test_db = TestDatabase::new().await?;
//! let health = test_db.health_check().await?; // derefs to Database
//! assert!(!health.server_version.is_empty());
//! # Ok(()) }
//! ```
//!
//! How it works:
//! - the server is found by [`server_config`]: `DATABASE_URL` if set, else
//!   [`DEFAULT_URL`] if it answers, else a [`PrivateCluster`] that lives until
//!   the test process exits; the `VOIDRUNNER_DB_*` variables of
//!   [`DbConfig::from_env`] apply to it (a pooler mode and direct URL
//!   among them: test databases are then created through the direct URL,
//!   and their pools go through `DATABASE_URL`);
//! - with [`TEST_POOLER_ENV`] (`VOIDRUNNER_TEST_POOLER=pgbouncer`), every
//!   test database's pool goes through a [`PgBouncer`] in transaction mode
//!   that the harness starts in front of that server, once per test
//!   process; a test's own SQL then takes [`TestDatabase::raw_client`],
//!   a session straight to the server;
//! - migrations run once into a template database named after a hash of the
//!   embedded migrations, reused across runs until they change; each test
//!   clones it (`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`) and drops
//!   its clone when the [`TestDatabase`] is dropped;
//! - every test process holds an advisory lock named by a random token that
//!   is part of its databases' names (`vrdb_test_{token}_{n}`, or another
//!   prefix given to [`TestDatabase::builder`]); databases whose token is
//!   no longer locked were left by a crashed run and are dropped at the
//!   next start (those of another prefix when a process first uses it);
//! - every test process also holds a shared lock on its template; templates
//!   of other migration sets that nobody holds are dropped, so changing a
//!   migration does not leave copies behind;
//! - the template is built under another advisory lock, so concurrent test
//!   binaries do not race;
//! - [`TestDatabase::builder`] combines a name prefix of the caller's
//!   (checked by [`check_database_prefix`]), pool settings, a service's
//!   migrations or none;
//! - [`TestDatabase::with_migrations`] adds a service's own migrations (see
//!   [`Database::migrate_service`]): they are applied once to a template of
//!   their own, a clone of the crate's named after a hash of both migration
//!   sets and the history table, so a changed service migration gets a
//!   fresh template too.
//!
//! The harness's own connections live on a small runtime of their own, so
//! they outlive the per-test runtimes of `#[tokio::test]`.

mod builder;
mod names;
mod pgbouncer;
mod profile;
mod server;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::Client;

pub use builder::TestDatabaseBuilder;
pub use names::{DEFAULT_DATABASE_PREFIX, MAX_DATABASE_PREFIX_BYTES, check_database_prefix};
use names::{TEMPLATE_PREFIX, database_name, quote_ident, template_key, template_name, token_of};
pub use pgbouncer::{PgBouncer, PgBouncerSettings, TEST_POOLER_ENV};
pub use profile::{StatementProfile, profile_statement};
pub use server::{DEFAULT_URL, PrivateCluster, Server, discover};

use crate::config::DbConfig;
use crate::connect::Connector;
use crate::db::{Database, PooledClient};
use crate::error::{Error, Result};

/// Advisory-lock class of the harness (`'vrdb'`); the object id is 0 for the
/// template lock and a process's token for its liveness lock.
const LOCK_CLASS: i32 = 0x7672_6462;
/// Advisory-lock class of templates in use (`'vrdc'`): every test process
/// holds a shared lock on its template's key while it runs.
const TEMPLATE_IN_USE_CLASS: i32 = 0x7672_6463;

/// The server the harness and the examples use, found once per process (see
/// [`discover`] with `DATABASE_URL` and [`DEFAULT_URL`]), with the
/// `VOIDRUNNER_DB_*` variables of [`DbConfig::from_env`] applied. A private
/// cluster started here is stopped and removed when the process exits, and
/// so is the [`PgBouncer`] started in front of it (or of the server found)
/// when [`TEST_POOLER_ENV`] asks for one.
pub async fn server_config() -> Result<DbConfig> {
    static SERVER: OnceCell<DbConfig> = OnceCell::const_new();
    SERVER
        .get_or_try_init(|| {
            on_harness_runtime(async {
                let url = std::env::var(crate::config::DATABASE_URL_ENV).ok();
                let found = match discover(url.as_deref(), DEFAULT_URL).await? {
                    Server::Url(config) => *config,
                    Server::Private(cluster) => {
                        let config = cluster.config();
                        cluster.stop_at_exit()?;
                        config
                    }
                };
                let config = found.overlay_lookup(|name| std::env::var(name).ok())?;
                match std::env::var(TEST_POOLER_ENV).ok().as_deref().map(str::trim) {
                    None | Some("") => Ok(config),
                    Some("pgbouncer") => {
                        let mut bouncer = PgBouncer::start(&config).await?;
                        let routed = bouncer.route(&config);
                        tracing::info!(
                            port = bouncer.port(),
                            "test databases go through a pgbouncer in transaction mode"
                        );
                        bouncer.stop_at_exit()?;
                        Ok(routed)
                    }
                    Some(other) => Err(Error::config(format!(
                        "{TEST_POOLER_ENV}: `{other}` is not a pooler the harness can start (pgbouncer)"
                    ))),
                }
            })
        })
        .await
        .cloned()
}

/// Drops the test databases left by test processes that died without
/// cleaning up (those named with the default prefix or any prefix this
/// process has used), and the templates of older migrations that no
/// running test process uses; returns their names. The harness does this
/// once when it starts, and for each other prefix when it is first used;
/// databases of live test processes are never touched.
pub async fn remove_leftover_databases() -> Result<Vec<String>> {
    let harness = harness().await?;
    on_harness_runtime(async move {
        let prefixes = harness.prefixes.lock().await.clone();
        let mut removed = Vec::new();
        for prefix in prefixes {
            removed.extend(harness.remove_leftovers(&prefix).await?);
        }
        removed.extend(
            harness
                .with_template_lock(harness.remove_stale_templates())
                .await?,
        );
        Ok(removed)
    })
    .await
}

/// The name of the migrated template database the harness clones.
pub async fn template_database() -> Result<String> {
    Ok(harness().await?.template.clone())
}

/// A migrated database of its own, dropped with it.
///
/// Derefs to the [`Database`] connected to it. The pool is small (at most 5
/// connections, 1 kept warm, unless `VOIDRUNNER_DB_MAX_CONNECTIONS` or
/// `VOIDRUNNER_DB_MIN_CONNECTIONS` say otherwise) so that many tests can run
/// at once; use [`TestDatabase::with_config`] for other settings.
#[derive(Debug)]
pub struct TestDatabase {
    db: Database,
    name: String,
    template: Option<String>,
    /// A pool straight to the server for [`raw_client`](Self::raw_client)
    /// when `db` goes through a transaction-mode pooler; opened on first
    /// use.
    direct: OnceCell<Database>,
}

impl TestDatabase {
    /// A clone of the migrated template.
    pub async fn new() -> Result<Self> {
        Self::with_config(|_| {}).await
    }

    /// A test database made as the builder's settings say: a name prefix
    /// of the caller's, pool settings, a service's migrations, or none.
    pub fn builder() -> TestDatabaseBuilder<'static> {
        TestDatabaseBuilder::new()
    }

    /// A clone of the migrated template, with pool settings adjusted by
    /// `adjust` before connecting.
    pub async fn with_config(adjust: impl FnOnce(&mut DbConfig)) -> Result<Self> {
        let template = harness().await?.template.clone();
        Self::create(Some(template), DEFAULT_DATABASE_PREFIX, adjust).await
    }

    /// A clone of a template with the crate's migrations and then a
    /// service's own `migrations`, recorded in `history_table`, applied as
    /// [`Database::migrate_service`] applies them. The template is built
    /// once per migration set and test process (and reused by later runs
    /// while the set is unchanged): the set, the history table and the
    /// crate's migrations name it.
    pub async fn with_migrations(
        migrations: &[refinery::Migration],
        history_table: &str,
    ) -> Result<Self> {
        crate::migrate::validate_history_table(history_table)?;
        let template = template_with(migrations.to_vec(), history_table.to_owned()).await?;
        Self::create(Some(template), DEFAULT_DATABASE_PREFIX, |_| {}).await
    }

    /// An empty database with no migration applied, for migration tests.
    pub async fn empty() -> Result<Self> {
        Self::create(None, DEFAULT_DATABASE_PREFIX, |_| {}).await
    }

    /// A database named with `prefix` (checked by the caller), a clone of
    /// `template` or empty.
    async fn create(
        template: Option<String>,
        prefix: &str,
        adjust: impl FnOnce(&mut DbConfig),
    ) -> Result<Self> {
        let harness = harness().await?;
        if prefix != DEFAULT_DATABASE_PREFIX {
            let prefix = prefix.to_owned();
            on_harness_runtime(async move { harness.sweep(prefix).await }).await?;
        }
        let name = harness.next_name(prefix);
        {
            let name = name.clone();
            let sql = match &template {
                Some(template) => harness.clone_sql(&name, template),
                None => format!("CREATE DATABASE {}", quote_ident(&name)),
            };
            on_harness_runtime(async move {
                harness.admin.batch_execute(&sql).await?;
                Ok(())
            })
            .await?;
        }
        let mut config = harness.server.with_dbname(&name);
        // Small: many tests run at once against a server whose default
        // max_connections is 100. Tests that need more ask for it (and so
        // may the environment).
        if std::env::var_os("VOIDRUNNER_DB_MAX_CONNECTIONS").is_none() {
            config.max_connections = 5;
        }
        if std::env::var_os("VOIDRUNNER_DB_MIN_CONNECTIONS").is_none() {
            config.min_connections = 1;
        }
        config.min_connections = config.min_connections.min(config.max_connections);
        adjust(&mut config);
        // From here on, a failure must still drop the database.
        let guard = DropGuard(Some(name.clone()));
        let db = Database::connect(config).await?;
        std::mem::forget(guard);
        Ok(TestDatabase {
            db,
            name,
            template,
            direct: OnceCell::new(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template it was cloned from; `None` for [`empty`](Self::empty).
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    /// The [`Database`] connected to it.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// A configuration for this database (without the pool adjustments of
    /// [`with_config`](Self::with_config)), e.g. to open a second pool.
    pub async fn config(&self) -> Result<DbConfig> {
        Ok(server_config().await?.with_dbname(&self.name))
    }

    /// A connection for a test's own SQL, with a server session of its own:
    /// tokio-postgres' `query(&str, …)` (a named statement prepared, then
    /// run), `SET`, a lock held across statements.
    ///
    /// A connection of the pool, like [`Database::client`], unless the pool
    /// goes through a transaction-mode pooler
    /// ([`PoolerMode::Transaction`](crate::PoolerMode::Transaction)), whose
    /// server connections keep none of that from one statement to the
    /// next: then a connection of a second small pool straight to the
    /// server ([`DbConfig::direct_config`]), opened on first use.
    pub async fn raw_client(&self) -> Result<PooledClient> {
        let config = self.db.config();
        if config.pooler.named_statements() {
            return self.db.client().await;
        }
        let direct = self
            .direct
            .get_or_try_init(|| async {
                let mut direct = config.direct_config().ok_or_else(|| {
                    Error::config(
                        "the test database's pool goes through a transaction-mode pooler \
                         without a direct URL: raw SQL has no session to run in",
                    )
                })?;
                direct.max_connections = 5;
                direct.min_connections = 0;
                Database::connect(direct).await
            })
            .await?;
        direct.client().await
    }
}

impl Deref for TestDatabase {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.db.pool().close();
        if let Some(direct) = self.direct.get() {
            direct.pool().close();
        }
        drop_database(self.name.clone());
    }
}

/// Drops a test database whose creation failed half-way.
struct DropGuard(Option<String>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            drop_database(name);
        }
    }
}

/// Drops `name` from the harness runtime and waits for it, so a test's
/// database is gone when the test returns.
fn drop_database(name: String) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    harness_runtime().spawn(async move {
        let result = async {
            let harness = harness().await?;
            harness.admin.batch_execute(&harness.drop_sql(&name)).await?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!(database = %name, error = %e, "dropping a test database failed; the next run removes it");
        }
        let _ = done_tx.send(());
    });
    // Bounded: a stuck drop is cleaned up by the next run instead.
    let _ = done_rx.recv_timeout(Duration::from_secs(60));
}

struct Harness {
    server: DbConfig,
    /// The TLS connector of the harness's own connections (the admin
    /// session, template migrations), built once.
    connector: Connector,
    admin: Client,
    token: u32,
    counter: AtomicU64,
    /// The prefixes this process names test databases with, the default
    /// first; each was swept of a crashed run's leftovers when first used.
    prefixes: tokio::sync::Mutex<Vec<String>>,
    template: String,
    /// Templates with service migrations this process uses (see
    /// [`TestDatabase::with_migrations`]); never swept as stale by it.
    service_templates: Mutex<Vec<String>>,
    /// Serializes this process's builds of service templates (the template
    /// advisory lock does not exclude the session that holds it).
    service_build: tokio::sync::Mutex<()>,
    /// `server_version_num`: FORCE needs 13, STRATEGY needs 15.
    version_num: i32,
}

impl Harness {
    async fn init() -> Result<Self> {
        let server = server_config().await?;
        let connector = Connector::new(&server)?;
        let (admin, connection) = connector
            .connect(&server, &server.dedicated_pg_config())
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "test harness admin connection lost");
            }
        });
        let version_num: i32 = admin
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?
            .try_get(0)?;
        // Non-zero: 0 is the template lock's object id.
        let token = (uuid::Uuid::new_v4().as_u128() as u32).max(1);
        admin
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&LOCK_CLASS, &(token as i32)],
            )
            .await?;
        let harness = Harness {
            server,
            connector,
            admin,
            token,
            counter: AtomicU64::new(0),
            prefixes: tokio::sync::Mutex::new(vec![DEFAULT_DATABASE_PREFIX.to_owned()]),
            template: template_name(None),
            service_templates: Mutex::new(Vec::new()),
            service_build: tokio::sync::Mutex::new(()),
            version_num,
        };
        harness.remove_leftovers(DEFAULT_DATABASE_PREFIX).await?;
        harness.ensure_template().await?;
        Ok(harness)
    }

    fn next_name(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        database_name(prefix, self.token, n)
    }

    /// Removes the leftovers of `prefix` the first time this process uses
    /// it, as [`init`](Self::init) does for the default prefix. Under the
    /// lock, so that a second test with the same new prefix waits for the
    /// sweep instead of racing it.
    async fn sweep(&self, prefix: String) -> Result<()> {
        let mut prefixes = self.prefixes.lock().await;
        if !prefixes.contains(&prefix) {
            self.remove_leftovers(&prefix).await?;
            prefixes.push(prefix);
        }
        Ok(())
    }

    fn clone_sql(&self, name: &str, template: &str) -> String {
        let strategy = if self.version_num >= 150_000 {
            // FILE_COPY copies the files and checkpoints once, much faster
            // for a small template than the WAL-logged default.
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        format!(
            "CREATE DATABASE {} TEMPLATE {}{strategy}",
            quote_ident(name),
            quote_ident(template)
        )
    }

    fn drop_sql(&self, name: &str) -> String {
        let force = if self.version_num >= 130_000 {
            " WITH (FORCE)"
        } else {
            ""
        };
        format!("DROP DATABASE IF EXISTS {}{force}", quote_ident(name))
    }

    /// Drops the test databases named with `prefix` of processes that no
    /// longer hold their lock; returns their names.
    async fn remove_leftovers(&self, prefix: &str) -> Result<Vec<String>> {
        let rows = self
            .admin
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                &[&prefix],
            )
            .await?;
        let mut by_token: Vec<(u32, Vec<String>)> = Vec::new();
        let mut removed = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let Some(token) = token_of(&name, prefix) else {
                continue;
            };
            if token == self.token {
                continue;
            }
            match by_token.iter_mut().find(|(t, _)| *t == token) {
                Some((_, names)) => names.push(name),
                None => by_token.push((token, vec![name])),
            }
        }
        for (token, names) in by_token {
            let free: bool = self
                .admin
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LOCK_CLASS, &(token as i32)],
                )
                .await?
                .try_get(0)?;
            if !free {
                continue; // its process is still running
            }
            for name in names {
                match self.admin.batch_execute(&self.drop_sql(&name)).await {
                    Ok(()) => removed.push(name),
                    Err(e) => {
                        tracing::warn!(database = %name, error = %e, "could not drop a leftover test database")
                    }
                }
            }
            self.admin
                .execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&LOCK_CLASS, &(token as i32)],
                )
                .await?;
        }
        Ok(removed)
    }

    /// Builds the template unless a complete one exists. `IS_TEMPLATE` is set
    /// last, so it marks a finished build; a template without it is a
    /// leftover of a run that died half-way and is rebuilt.
    ///
    /// The in-use lock is taken before the build lock is released, so a
    /// process sweeping stale templates (under the build lock) always sees
    /// this one as used.
    async fn ensure_template(&self) -> Result<()> {
        self.with_template_lock(async {
            self.build_template(&self.template, None).await?;
            self.admin
                .execute(
                    "SELECT pg_advisory_lock_shared($1, $2)",
                    &[&TEMPLATE_IN_USE_CLASS, &template_key(&self.template)],
                )
                .await?;
            self.remove_stale_templates().await?;
            Ok(())
        })
        .await
    }

    /// The name of the template with `migrations` applied after the
    /// crate's, built unless this or another process already did; this
    /// process then holds an in-use lock on it until it exits.
    async fn service_template(
        &self,
        migrations: Vec<refinery::Migration>,
        history_table: String,
    ) -> Result<String> {
        let name = template_name(Some((&migrations, &history_table)));
        let _build = self.service_build.lock().await;
        let in_use = |list: &Mutex<Vec<String>>| {
            list.lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&name)
        };
        if in_use(&self.service_templates) {
            return Ok(name);
        }
        // Listed before it exists, so this process never sweeps it half-built.
        self.service_templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        let built = self
            .with_template_lock(async {
                self.build_template(&name, Some((&migrations, &history_table)))
                    .await?;
                self.admin
                    .execute(
                        "SELECT pg_advisory_lock_shared($1, $2)",
                        &[&TEMPLATE_IN_USE_CLASS, &template_key(&name)],
                    )
                    .await?;
                Ok(())
            })
            .await;
        if let Err(e) = built {
            self.service_templates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|t| *t != name);
            return Err(e);
        }
        Ok(name)
    }

    /// Runs `work` holding the lock under which templates are built and
    /// dropped.
    async fn with_template_lock<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.admin
            .execute("SELECT pg_advisory_lock($1, 0)", &[&LOCK_CLASS])
            .await?;
        let result = work.await;
        self.admin
            .execute("SELECT pg_advisory_unlock($1, 0)", &[&LOCK_CLASS])
            .await?;
        result
    }

    /// Drops templates of other migration sets that no test process holds
    /// an in-use lock on. Call with the template lock held.
    async fn remove_stale_templates(&self) -> Result<Vec<String>> {
        let mut in_use = self
            .service_templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        in_use.push(self.template.clone());
        let rows = self
            .admin
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND datname <> ALL($2)",
                &[&TEMPLATE_PREFIX, &in_use],
            )
            .await?;
        let mut removed = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let key = template_key(&name);
            let unused: bool = self
                .admin
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&TEMPLATE_IN_USE_CLASS, &key],
                )
                .await?
                .try_get(0)?;
            if !unused {
                continue;
            }
            let quoted = quote_ident(&name);
            let dropped = async {
                self.admin
                    .batch_execute(&format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"))
                    .await?;
                self.admin.batch_execute(&self.drop_sql(&name)).await
            }
            .await;
            self.admin
                .execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&TEMPLATE_IN_USE_CLASS, &key],
                )
                .await?;
            match dropped {
                Ok(()) => removed.push(name),
                Err(e) => {
                    tracing::warn!(template = %name, error = %e, "could not drop a stale template")
                }
            }
        }
        Ok(removed)
    }

    /// Builds template `name`: the crate's migrations, or a clone of the
    /// crate's template plus a service's migrations. Call with the template
    /// lock held.
    async fn build_template(
        &self,
        name: &str,
        service: Option<(&[refinery::Migration], &str)>,
    ) -> Result<()> {
        let existing = self
            .admin
            .query_opt(
                "SELECT datistemplate FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await?;
        match existing {
            Some(row) if row.try_get::<_, bool>(0)? => return Ok(()),
            Some(_) => self.admin.batch_execute(&self.drop_sql(name)).await?,
            None => {}
        }
        let template = quote_ident(name);
        let config = self.server.with_dbname(name);
        match service {
            None => {
                self.admin
                    .batch_execute(&format!("CREATE DATABASE {template}"))
                    .await?;
                crate::migrate::up(&config, &self.connector).await?;
            }
            Some((migrations, history_table)) => {
                self.admin
                    .batch_execute(&self.clone_sql(name, &self.template))
                    .await?;
                crate::migrate::up_service(&config, &self.connector, migrations, history_table)
                    .await?;
            }
        }
        self.admin
            .batch_execute(&format!(
                "ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await?;
        Ok(())
    }
}

/// The template with a service's `migrations` after the crate's (its
/// history table checked by the caller), built once per migration set.
async fn template_with(
    migrations: Vec<refinery::Migration>,
    history_table: String,
) -> Result<String> {
    let harness = harness().await?;
    on_harness_runtime(harness.service_template(migrations, history_table)).await
}

async fn harness() -> Result<&'static Harness> {
    static HARNESS: OnceCell<Harness> = OnceCell::const_new();
    HARNESS
        .get_or_try_init(|| on_harness_runtime(Harness::init()))
        .await
}

/// A runtime that lives as long as the process, for connections that must
/// outlive any one test's runtime.
fn harness_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("voidrunner-db-test-harness")
            .enable_all()
            .build()
            .expect("building the test harness runtime")
    })
}

async fn on_harness_runtime<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    harness_runtime()
        .spawn(fut)
        .await
        .map_err(|e| Error::unavailable(format!("test harness task failed: {e}"), None))?
}
