//! TLS (issue #9) against private clusters this binary sets up: one with
//! `ssl = on`, a server certificate for `localhost` signed by a CA made
//! here, and `hostssl` lines only in `pg_hba.conf` (trust, plus `cert` for
//! `certuser` and `scram-sha-256` for `scramuser`), shared by the tests;
//! and one without TLS, which later serves an expired certificate
//! (`no_tls.rs`). Needs the openssl CLI and the PostgreSQL server binaries.
//!
//! ```sh
//! cargo test --test tls
//! ```

mod files;
mod harness;
mod modes;
mod no_tls;
mod pki;
mod smoke;

use std::path::Path;
use std::time::Duration;

use tokio::sync::OnceCell;
use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{Database, DbConfig};

use crate::pki::Pki;

/// The shared TLS cluster: its port and its certificates.
pub struct TlsCluster {
    pub port: u16,
    pub pki: Pki,
}

/// Started once per test process, stopped and removed when it exits.
pub async fn tls_cluster() -> &'static TlsCluster {
    static CLUSTER: OnceCell<TlsCluster> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let cluster = PrivateCluster::start_with(|data| {
                let pki = Pki::generate(&pki_dir(data))?;
                install_server_certificate(&pki, data, "server")?;
                append(
                    &data.join("postgresql.conf"),
                    "ssl = on\n\
                     ssl_cert_file = 'server.crt'\n\
                     ssl_key_file = 'server.key'\n\
                     ssl_ca_file = 'ca.crt'\n",
                )?;
                // TCP with TLS only; the Unix socket (pg_ctl's) is local.
                std::fs::write(
                    data.join("pg_hba.conf"),
                    "local   all all                     trust\n\
                     hostssl all certuser  127.0.0.1/32  cert\n\
                     hostssl all scramuser 127.0.0.1/32  scram-sha-256\n\
                     hostssl all all       127.0.0.1/32  trust\n",
                )
            })
            .await
            .expect("starting the TLS cluster (needs openssl and the PostgreSQL server)");
            let tls = TlsCluster {
                port: cluster.port(),
                pki: Pki::open(&pki_dir(&cluster.data_dir())),
            };
            cluster.stop_at_exit().unwrap();
            let admin = Database::connect(tls.config("postgres", "sslmode=verify-full"))
                .await
                .expect("the TLS cluster answers over verify-full");
            admin
                .client()
                .await
                .unwrap()
                .batch_execute(
                    "CREATE ROLE certuser LOGIN; \
                     CREATE ROLE scramuser LOGIN PASSWORD 'scram-secret-pw'",
                )
                .await
                .unwrap();
            admin.close(Duration::from_secs(5)).await;
            tls
        })
        .await
}

impl TlsCluster {
    /// `postgres://{user}@localhost:{port}/postgres?hostaddr=127.0.0.1&sslrootcert=<the CA>&{params}`:
    /// the host name `localhost` is what the certificate names and what
    /// verify-full checks; `hostaddr` keeps the connection on IPv4, where
    /// the server listens.
    pub fn url(&self, user: &str, params: &str) -> String {
        format!(
            "postgres://{user}@localhost:{}/postgres?hostaddr=127.0.0.1&sslrootcert={}&{params}",
            self.port,
            self.pki.crt("ca").display()
        )
    }

    /// [`url`](Self::url) as a config with a small pool.
    pub fn config(&self, user: &str, params: &str) -> DbConfig {
        small(DbConfig::from_url(&self.url(user, params)).unwrap())
    }

    /// The URL of the server with no TLS settings at all.
    pub fn bare_url(&self, host: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1",
            self.port
        )
    }

    /// A new empty database on the cluster (for the tests that migrate),
    /// and a verify-full config for it.
    pub async fn fresh_database(&self, prefix: &str) -> DbConfig {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(self.config("postgres", "sslmode=verify-full"))
            .await
            .unwrap();
        admin
            .client()
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close(Duration::from_secs(5)).await;
        self.config("postgres", "sslmode=verify-full")
            .with_dbname(&name)
    }
}

/// Fewer connections than the defaults: many tests share the cluster.
pub fn small(mut config: DbConfig) -> DbConfig {
    config.max_connections = 3;
    config.min_connections = 1;
    config.connect_timeout = Duration::from_secs(10);
    config
}

/// Where a cluster's certificates are made: beside its data directory, so
/// they go when the cluster is removed.
fn pki_dir(data: &Path) -> std::path::PathBuf {
    data.parent()
        .expect("the data directory has a parent")
        .join("pki")
}

/// Copies `{name}.crt`, `{name}.key` and the CA as `ca.crt` (for client
/// certificates) into the data directory; the key 0600, as the server
/// demands.
pub fn install_server_certificate(pki: &Pki, data: &Path, name: &str) -> std::io::Result<()> {
    std::fs::copy(pki.crt(name), data.join(format!("{name}.crt")))?;
    std::fs::copy(pki.key(name), data.join(format!("{name}.key")))?;
    pki::private(&data.join(format!("{name}.key")))?;
    std::fs::copy(pki.crt("ca"), data.join("ca.crt"))?;
    Ok(())
}

pub fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// `(ssl, version)` of the session `db` hands out, from `pg_stat_ssl`.
pub async fn session_tls(db: &Database) -> (bool, Option<String>) {
    let row = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}
