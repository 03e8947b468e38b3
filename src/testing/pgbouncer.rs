//! A throwaway PgBouncer in front of a test server, to run the crate the way
//! it runs behind a transaction pooler in production.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use super::server::{free_port, is_root, run, spawn_watchdog};
use crate::config::{DbConfig, PoolerMode};
use crate::error::{Error, Result};

/// Environment variable that makes the test harness route every
/// [`TestDatabase`](super::TestDatabase) through a [`PgBouncer`] in
/// transaction mode: `pgbouncer` (the only value). The harness starts one
/// per test process, in front of the server it found, and stops it when the
/// process exits.
pub const TEST_POOLER_ENV: &str = "VOIDRUNNER_TEST_POOLER";

/// How a [`PgBouncer`] pools.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgBouncerSettings {
    /// `pool_mode`: [`PoolerMode::Transaction`] (the default) or
    /// [`PoolerMode::Session`]; [`PoolerMode::Direct`] is refused by
    /// [`PgBouncer::start_with`].
    pub pool_mode: PoolerMode,
    /// `default_pool_size`: server connections per database and user.
    /// Default 4, fewer than most tests' clients, so that transactions of
    /// different clients share server connections.
    pub default_pool_size: usize,
    /// `max_client_conn`. Default 1000.
    pub max_client_conn: usize,
    /// `server_round_robin`. Default true: consecutive transactions of one
    /// client land on different server connections, as on a busy pooler,
    /// instead of on the one it used last.
    pub round_robin: bool,
}

impl Default for PgBouncerSettings {
    fn default() -> Self {
        PgBouncerSettings {
            pool_mode: PoolerMode::Transaction,
            default_pool_size: 4,
            max_client_conn: 1000,
            round_robin: true,
        }
    }
}

/// A PgBouncer of its own, listening on a free loopback port in front of a
/// test server, with every database of that server reachable through it
/// (`[databases] * = host=… port=…`).
///
/// Started from the `pgbouncer` binary in `PATH` or `/usr/sbin` (Debian
/// and Ubuntu: `apt-get install pgbouncer`), as the `postgres` OS user when
/// the process is root (PgBouncer refuses to run as root), with `auth_type
/// = trust` and an `auth_file` holding the server's user (and its
/// password, if the configuration has one, for PgBouncer to log in with),
/// in a private temporary directory. Dropping it stops PgBouncer and removes
/// the directory.
///
/// ```no_run
/// # async fn example() -> voidrunner_db::Result<()> {
/// use voidrunner_db::testing::{PgBouncer, TestDatabase, server_config};
///
/// let bouncer = PgBouncer::start(&server_config().await?).await?;
/// // A database of its own, its pool through PgBouncer in transaction mode,
/// // migrations and LISTEN straight to the server.
/// let test_db = TestDatabase::with_config(|c| *c = bouncer.route(c)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgBouncer {
    root: PathBuf,
    port: u16,
    pid: u32,
    settings: PgBouncerSettings,
    server: DbConfig,
    stopped: bool,
}

impl PgBouncer {
    /// A PgBouncer in transaction mode ([`PgBouncerSettings::default`]) in
    /// front of the server of `server` (its first host and port).
    pub async fn start(server: &DbConfig) -> Result<Self> {
        Self::start_with(server, PgBouncerSettings::default()).await
    }

    /// A PgBouncer pooling as `settings` say in front of the server of
    /// `server`. Returns once it answers a query.
    pub async fn start_with(server: &DbConfig, settings: PgBouncerSettings) -> Result<Self> {
        if settings.pool_mode == PoolerMode::Direct {
            return Err(Error::config(
                "a PgBouncer pools in session or transaction mode, not direct",
            ));
        }
        let server = server.clone();
        let bouncer = tokio::task::spawn_blocking(move || Self::start_blocking(server, settings))
            .await
            .map_err(|e| setup_error(format!("starting pgbouncer: {e}")))??;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match bouncer.ping().await {
                Ok(()) => return Ok(bouncer),
                Err(e) if Instant::now() >= deadline => {
                    return Err(setup_error(format!(
                        "pgbouncer on port {} does not answer: {e}; its log: {}",
                        bouncer.port,
                        bouncer.log_tail()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn start_blocking(server: DbConfig, settings: PgBouncerSettings) -> Result<Self> {
        let binary = find_binary()?;
        let root = std::env::temp_dir().join(format!(
            "voidrunner-db-pgbouncer-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&root)
            .map_err(|e| setup_error(format!("creating {}: {e}", root.display())))?;
        let port = free_port()?;
        let mut bouncer = PgBouncer {
            root,
            port,
            pid: 0,
            settings,
            server,
            stopped: false,
        };
        bouncer.write_files()?;
        let run_as_postgres = is_root();
        if run_as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&bouncer.root))?;
        }
        let mut command = if run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        // Its output goes to a file, not a pipe: the daemon would hold a
        // pipe open, and waiting for its end would wait forever.
        let output = std::fs::File::create(bouncer.root.join("start.out"))
            .map_err(|e| setup_error(format!("creating start.out: {e}")))?;
        let errors = output
            .try_clone()
            .map_err(|e| setup_error(format!("creating start.out: {e}")))?;
        command
            .arg("-d")
            .arg(bouncer.root.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors);
        // -d: the command returns once PgBouncer runs in the background.
        let status = command
            .status()
            .map_err(|e| setup_error(format!("running {}: {e}", binary.display())))?;
        if !status.success() {
            let said = std::fs::read_to_string(bouncer.root.join("start.out")).unwrap_or_default();
            return Err(setup_error(format!(
                "{} -d failed ({status}): {said}; its log: {}",
                binary.display(),
                bouncer.log_tail()
            )));
        }
        let pid_file = bouncer.root.join("pgbouncer.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        bouncer.pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                break pid;
            }
            if Instant::now() >= deadline {
                return Err(setup_error(format!(
                    "pgbouncer wrote no pid file; its log: {}",
                    bouncer.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(bouncer)
    }

    fn write_files(&self) -> Result<()> {
        let pg = self.server.pg_config();
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let server_port = pg.get_ports().first().copied().unwrap_or(5432);
        let user = pg.get_user().unwrap_or("postgres");
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
        let s = &self.settings;
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool}\n\
             max_client_conn = {clients}\n\
             server_round_robin = {round_robin}\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            port = self.port,
            auth = self.root.join("userlist.txt").display(),
            mode = s.pool_mode.as_str(),
            pool = s.default_pool_size,
            clients = s.max_client_conn,
            round_robin = u8::from(s.round_robin),
            log = self.root.join("pgbouncer.log").display(),
            pid = self.root.join("pgbouncer.pid").display(),
        );
        write_private(&self.root.join("pgbouncer.ini"), &ini)?;
        // trust: PgBouncer asks clients for nothing, but knows only the
        // users listed here, and logs in to the server with their password.
        write_private(
            &self.root.join("userlist.txt"),
            &format!("{} {}\n", quote(user), quote(&password)),
        )?;
        Ok(())
    }

    /// Opens and closes one connection through PgBouncer, running a query
    /// on the server behind it.
    async fn ping(&self) -> Result<()> {
        let config = self.route(&self.server);
        let mut pg = config.pg_config().clone();
        pg.connect_timeout(Duration::from_secs(2));
        let (client, connection) = pg.connect(NoTls).await?;
        let driver = tokio::spawn(connection);
        client.simple_query("SELECT 1").await?;
        drop(client);
        let _ = driver.await;
        Ok(())
    }

    /// The loopback port PgBouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `pgbouncer.ini`, `userlist.txt`,
    /// `pgbouncer.log` and `pgbouncer.pid`; removed when it is dropped.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// How it pools.
    pub fn settings(&self) -> &PgBouncerSettings {
        &self.settings
    }

    /// PgBouncer's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `config` (a configuration of the server this PgBouncer is in front
    /// of, any database of it) through this PgBouncer: its URL points at
    /// PgBouncer with the same user, password and database,
    /// [`pooler`](DbConfig::pooler) is this PgBouncer's pool mode, and its
    /// direct URL ([`DbConfig::set_direct_url`]) is `config`'s URL, for
    /// migrations and LISTEN.
    pub fn route(&self, config: &DbConfig) -> DbConfig {
        config.through_pooler("127.0.0.1", self.port, self.settings.pool_mode)
    }

    /// The last lines of PgBouncer's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("pgbouncer.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Keeps PgBouncer running until this process exits, then stops it and
    /// removes its directory (a watchdog process does it, since statics are
    /// never dropped). Dropping it no longer stops it.
    pub fn stop_at_exit(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -TERM {pid} 2>/dev/null; \
             sleep 1; kill -KILL {pid} 2>/dev/null; rm -rf {root}",
            me = std::process::id(),
            pid = self.pid,
            root = self.root.display(),
        );
        spawn_watchdog(&script)?;
        self.stopped = true;
        Ok(())
    }

    fn stop_blocking(&self) {
        if self.pid != 0 {
            let signal = |name: &str| {
                Command::new("kill")
                    .args([name, &self.pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while signal("-0") {
                if Instant::now() >= deadline {
                    signal("-KILL");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "removing the pgbouncer directory failed");
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.stop_blocking();
        }
    }
}

/// Writes `text` to `path`, readable by its owner only (the auth file may
/// hold a password).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| setup_error(format!("writing {}: {e}", path.display())))
}

fn setup_error(message: String) -> Error {
    Error::unavailable(format!("test pgbouncer: {message}"), None)
}

/// `pgbouncer` in `PATH`, else where distributions install it.
fn find_binary() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    candidates
        .extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from));
    candidates
        .into_iter()
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Error::unavailable(
                "pgbouncer not found in PATH or /usr/sbin: install it (Debian/Ubuntu: \
                 `apt-get install pgbouncer`; Fedora: `dnf install pgbouncer`; macOS: \
                 `brew install pgbouncer`)",
                None,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keeps_the_server_as_the_direct_url() {
        let server = DbConfig::from_url("postgres://app:pw@10.0.0.5:5433/vr").unwrap();
        let bouncer = PgBouncer {
            root: PathBuf::from("/nonexistent"),
            port: 6432,
            pid: 0,
            settings: PgBouncerSettings::default(),
            server: server.clone(),
            stopped: true,
        };
        let routed = bouncer.route(&server.with_dbname("other"));
        assert_eq!(routed.pooler, PoolerMode::Transaction);
        assert_eq!(routed.display_target(), "127.0.0.1:6432/other");
        assert_eq!(routed.pg_config().get_password(), Some(&b"pw"[..]));
        assert_eq!(
            routed.display_direct_target().as_deref(),
            Some("10.0.0.5:5433/other")
        );
        routed.validate().unwrap();
    }
}
