//! Finding a PostgreSQL server for tests and examples, and starting a private
//! throwaway cluster when there is none.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::DbConfig;
use crate::connect::Connector;
use crate::error::{Error, Result};

/// The server tried when `DATABASE_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where [`discover`] found a server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Server {
    /// `DATABASE_URL`, or the default local server, answered.
    Url(Box<DbConfig>),
    /// Nothing answered; a private cluster was started.
    Private(PrivateCluster),
}

impl Server {
    /// A configuration for the server's maintenance database.
    pub fn config(&self) -> DbConfig {
        match self {
            Server::Url(config) => (**config).clone(),
            Server::Private(cluster) => cluster.config(),
        }
    }
}

/// Finds a server the way the test harness and the examples do:
/// `database_url` if given (it must answer), else `default_url` if it
/// answers, else a private cluster started from the PostgreSQL server
/// binaries on this machine.
///
/// Fails with [`Error::Unavailable`] saying what to install or set when
/// none of these works, and with the [`Error::Tls`] or [`Error::Config`] of
/// a `database_url` whose TLS settings fail (its `sslmode`, `sslrootcert`,
/// `sslcert` and `sslkey` are used, as everywhere).
pub async fn discover(database_url: Option<&str>, default_url: &str) -> Result<Server> {
    if let Some(url) = database_url.filter(|u| !u.trim().is_empty()) {
        let config = DbConfig::from_url(url)?;
        ping(&config).await.map_err(|e| {
            // Said as it is: "does not answer" would hide a certificate
            // or a setting to fix.
            if e.is_tls() || matches!(e, Error::Config { .. }) {
                return e;
            }
            Error::unavailable(
                format!(
                    "DATABASE_URL ({}) does not answer: {e}",
                    config.display_target()
                ),
                Some(Box::new(e)),
            )
        })?;
        return Ok(Server::Url(Box::new(config)));
    }
    let mut config = DbConfig::from_url(default_url)?;
    config.connect_timeout = Duration::from_secs(2);
    if ping(&config).await.is_ok() {
        return Ok(Server::Url(Box::new(config)));
    }
    tracing::info!(
        "no server at {}; starting a private cluster",
        config.display_target()
    );
    Ok(Server::Private(PrivateCluster::start().await?))
}

/// Opens and closes one connection.
async fn ping(config: &DbConfig) -> Result<()> {
    let (client, connection) = Connector::new(config)?
        .connect(config, &config.dedicated_pg_config())
        .await?;
    let driver = tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// A PostgreSQL cluster of its own, in a temporary directory, listening on a
/// free loopback port (and a Unix socket in its directory), with trust
/// authentication for the user `postgres`.
///
/// Started from the server binaries found by `pg_config --bindir` or under
/// `/usr/lib/postgresql/*/bin`; as the `postgres` OS user when the process
/// is root (initdb refuses root). Dropping it stops the server and removes
/// the directory. Tests that stop, restart or kill a server use one of these,
/// never a shared server.
#[derive(Debug)]
pub struct PrivateCluster {
    root: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    removed: bool,
}

impl PrivateCluster {
    /// initdb + start. Takes a few seconds.
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| Ok(())).await
    }

    /// initdb, then `configure` with the data directory, then start: for a
    /// test that needs a server set up otherwise, e.g. with TLS. `configure`
    /// may append to `postgresql.conf` (the server's options on the command
    /// line, port and `listen_addresses`, still win), replace
    /// `pg_hba.conf`, or copy certificates and keys in (the server refuses
    /// a key file that group or others may read: mode 0600). Whatever it
    /// leaves in the data directory is then handed to the server's OS user
    /// (`postgres` when this process is root).
    ///
    /// Fails with [`Error::Unavailable`] saying what went wrong, including
    /// `configure`'s error.
    pub async fn start_with<F>(configure: F) -> Result<Self>
    where
        F: FnOnce(&Path) -> std::io::Result<()> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || Self::start_blocking(configure))
            .await
            .map_err(|e| Error::unavailable(format!("starting a private cluster: {e}"), None))?
    }

    fn start_blocking(configure: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<Self> {
        let bindir = find_bindir()?;
        let run_as_postgres = is_root();
        let root = new_root()?;
        let mut cluster = PrivateCluster {
            root,
            bindir,
            port: 0,
            run_as_postgres,
            removed: false,
        };
        if run_as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&cluster.root))?;
        }
        let mut initdb = cluster.command("initdb");
        run(initdb
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            .arg("--no-sync"))?;
        configure(&cluster.data_dir())
            .map_err(|e| setup_error(format!("configuring the cluster: {e}")))?;
        if run_as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(cluster.data_dir()))?;
        }
        cluster.port = free_port()?;
        cluster.start_server_blocking()?;
        Ok(cluster)
    }

    /// A streaming replica of this cluster (`pg_basebackup -R`), started
    /// on a free port of its own: a hot standby, read-only until
    /// [`promote`](Self::promote)d. The primary must be running. Removed
    /// when dropped, like any private cluster.
    pub async fn replica(&self) -> Result<Self> {
        let primary = self.clone_handle();
        tokio::task::spawn_blocking(move || primary.replica_blocking())
            .await
            .map_err(|e| Error::unavailable(format!("starting a replica: {e}"), None))?
    }

    fn replica_blocking(&self) -> Result<Self> {
        let root = new_root()?;
        let mut replica = PrivateCluster {
            root,
            bindir: self.bindir.clone(),
            port: 0,
            run_as_postgres: self.run_as_postgres,
            removed: false,
        };
        if replica.run_as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&replica.root))?;
        }
        // initdb's default pg_hba.conf lets local replication connections in
        // with trust; -R writes primary_conninfo and standby.signal.
        let mut backup = replica.command("pg_basebackup");
        run(backup
            .arg("-D")
            .arg(replica.data_dir())
            .args([
                "-R",
                "-X",
                "stream",
                "--no-sync",
                // Not a paced checkpoint: minutes on a freshly seeded primary.
                "--checkpoint=fast",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string()]))?;
        replica.port = free_port()?;
        replica.start_server_blocking()?;
        Ok(replica)
    }

    /// Promotes a [`replica`](Self::replica) to a primary that accepts
    /// writes, and waits until it does.
    pub async fn promote(&self) -> Result<()> {
        let this = self.clone_handle();
        tokio::task::spawn_blocking(move || {
            let mut promote = this.command("pg_ctl");
            run(promote
                .arg("-D")
                .arg(this.data_dir())
                .args(["-w", "-t", "60", "promote"]))
        })
        .await
        .map_err(|e| Error::unavailable(format!("promoting the replica: {e}"), None))?
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut command = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }

    fn start_server_blocking(&self) -> Result<()> {
        // fsync off: a throwaway cluster need not survive a power cut.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
            self.port,
            self.root.display()
        );
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(&mut start)
    }

    fn stop_server_blocking(&self, mode: &str) -> Result<()> {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(&mut stop)
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory holding the data directory, the log and the socket;
    /// removed when the cluster is dropped.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A configuration for the cluster's `postgres` database.
    pub fn config(&self) -> DbConfig {
        DbConfig::from_url(&self.url()).expect("a well-formed loopback URL")
    }

    /// The postmaster's process id while the server runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (fast shutdown), keeping the data, so a test can
    /// see how clients behave while it is down.
    pub async fn stop_server(&self) -> Result<()> {
        let this = self.clone_handle();
        tokio::task::spawn_blocking(move || this.stop_server_blocking("fast"))
            .await
            .map_err(|e| Error::unavailable(format!("stopping the cluster: {e}"), None))?
    }

    /// Starts the server again after [`stop_server`](Self::stop_server), on
    /// the same port.
    pub async fn start_server(&self) -> Result<()> {
        let this = self.clone_handle();
        tokio::task::spawn_blocking(move || this.start_server_blocking())
            .await
            .map_err(|e| Error::unavailable(format!("starting the cluster: {e}"), None))?
    }

    /// Stops the server and removes its directory.
    pub async fn destroy(mut self) -> Result<()> {
        let this = self.clone_handle();
        self.removed = true;
        tokio::task::spawn_blocking(move || this.destroy_blocking())
            .await
            .map_err(|e| Error::unavailable(format!("removing the cluster: {e}"), None))?
    }

    /// Keeps the cluster running until this process exits, then stops it and
    /// removes its directory (a watchdog process does it, since statics are
    /// never dropped).
    pub fn stop_at_exit(mut self) -> Result<()> {
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = format!(
            "{runuser}{pg_ctl} -D {data} -m immediate -w stop >/dev/null 2>&1",
            runuser = if self.run_as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {root}",
            pid = std::process::id(),
            root = self.root.display(),
        );
        spawn_watchdog(&script)?;
        self.removed = true;
        Ok(())
    }

    fn clone_handle(&self) -> PrivateCluster {
        PrivateCluster {
            root: self.root.clone(),
            bindir: self.bindir.clone(),
            port: self.port,
            run_as_postgres: self.run_as_postgres,
            // The clone never cleans up; the original owns the cluster.
            removed: true,
        }
    }

    fn destroy_blocking(&self) -> Result<()> {
        if self.postmaster_pid().is_some() {
            // Immediate: the data is thrown away anyway.
            let _ = self.stop_server_blocking("immediate");
        }
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(setup_error(format!(
                "removing {}: {e}",
                self.root.display()
            ))),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if !self.removed {
            self.removed = true;
            if let Err(e) = self.destroy_blocking() {
                tracing::warn!(error = %e, "private cluster cleanup failed");
            }
        }
    }
}

/// Runs `script` (a shell loop that waits for this process to exit, then
/// cleans up) in a process group of its own: a Ctrl-C aimed at the test run
/// must not kill the watchdog before it cleans up.
pub(super) fn spawn_watchdog(script: &str) -> Result<()> {
    let mut watchdog = Command::new("sh");
    watchdog
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
    watchdog
        .spawn()
        .map(drop)
        .map_err(|e| setup_error(format!("starting the cleanup watchdog: {e}")))
}

/// A fresh directory for a private cluster, named by this process and a
/// random id so concurrent tests and processes never share one.
fn new_root() -> Result<PathBuf> {
    let root = std::env::temp_dir().join(format!(
        "voidrunner-db-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&root)
        .map_err(|e| setup_error(format!("creating {}: {e}", root.display())))?;
    Ok(root)
}

fn setup_error(message: String) -> Error {
    Error::unavailable(format!("private PostgreSQL cluster: {message}"), None)
}

/// Runs a setup command, turning failure into an error that quotes its
/// output.
pub(super) fn run(command: &mut Command) -> Result<()> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| setup_error(format!("running {:?}: {e}", command.get_program())))?;
    if output.status.success() {
        return Ok(());
    }
    Err(setup_error(format!(
        "{:?} {:?} failed ({}): {}{}",
        command.get_program(),
        command.get_args().collect::<Vec<_>>(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    )))
}

pub(super) fn is_root() -> bool {
    // No libc: /proc tells the effective uid on Linux; `id -u` elsewhere.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        return line.split_whitespace().nth(2) == Some("0");
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| setup_error(format!("finding a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| setup_error(format!("finding a free port: {e}")))
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> Result<PathBuf> {
    let has_server = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    // Debian/Ubuntu keep server binaries out of PATH, one directory per major
    // version: prefer the newest.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_string_lossy().parse().ok()?;
                Some((major, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, p)| p));
    }
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.into_iter().find(|dir| has_server(dir)).ok_or_else(|| {
        Error::unavailable(
            "no PostgreSQL server found: set DATABASE_URL to a server where this user may create \
             databases, or run one on 127.0.0.1:5432 (user postgres, trust auth), or install the \
             PostgreSQL server binaries (Debian/Ubuntu: `apt-get install postgresql`; \
             Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`) so the \
             tests can start a private cluster",
            None,
        )
    })
}
