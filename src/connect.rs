//! The one way the crate opens connections: the pool, the migration and
//! lock-watch sessions, the event listener, cancel requests and the test
//! harness all take their TLS connector from a [`Connector`], built once
//! per [`Database`](crate::Database) (or harness) from the
//! [`DbConfig`]'s TLS settings (see [TLS](crate::docs::deploying#tls)).

use std::fmt;

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};

use crate::config::DbConfig;
use crate::error::{Error, Result};

/// The driver's TLS connector of every connection.
#[cfg(feature = "tls-rustls")]
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;
/// The driver's TLS connector of every connection: none, so `disable` and
/// `prefer` connect in plaintext (`DbConfig::validate` refuses the rest).
#[cfg(not(feature = "tls-rustls"))]
pub(crate) type Tls = tokio_postgres::NoTls;

/// A connection outside the pool, to be spawned or polled by its owner.
pub(crate) type Connection =
    tokio_postgres::Connection<Socket, <Tls as MakeTlsConnect<Socket>>::Stream>;

/// The TLS connector of one configuration; cheap to clone (the rustls
/// configuration is shared).
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Tls,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

// Without TLS the connector is `NoTls`, which is Copy: the clones below
// are for rustls's, which is not.
#[cfg_attr(not(feature = "tls-rustls"), allow(clippy::clone_on_copy))]
impl Connector {
    /// The connector for `config`'s TLS settings, reading its certificate
    /// and key files (only those its `ssl_mode` uses). Fails with an
    /// [`Error::Config`] naming a file that cannot be read or used, or a
    /// setting this build cannot honour.
    pub(crate) fn new(config: &DbConfig) -> Result<Self> {
        config.validate()?;
        #[cfg(feature = "tls-rustls")]
        let tls = rustls_tls::connector(config)?;
        #[cfg(not(feature = "tls-rustls"))]
        let tls = tokio_postgres::NoTls;
        Ok(Connector { tls })
    }

    /// The driver's connector, for the pool's manager and cancel requests.
    pub(crate) fn tls(&self) -> Tls {
        self.tls.clone()
    }

    /// Opens a connection with `pg` (one of `config`'s driver
    /// configurations). A TLS failure is an [`Error::Tls`] naming
    /// `config`'s server.
    pub(crate) async fn connect(
        &self,
        config: &DbConfig,
        pg: &tokio_postgres::Config,
    ) -> Result<(Client, Connection)> {
        pg.connect(self.tls.clone())
            .await
            .map_err(|e| Error::from(e).connecting_to(&config.display_target()))
    }
}

impl DbConfig {
    /// Reads and checks the TLS files this configuration names, without
    /// connecting: for a start-up or deploy check that a certificate
    /// mounted from a secret store is there and usable before the first
    /// connection needs it. [`validate`](Self::validate) comes first, as
    /// at connect.
    ///
    /// The files are those a connection reads, and read the same way, so
    /// that this passes exactly when [`Database::connect_lazy`] gets past
    /// TLS set-up (the server's answer is another matter):
    /// - `sslrootcert` under `verify-ca` and `verify-full`, and under
    ///   `require` when it is set: a PEM file of one or more certificates,
    ///   each usable as a root. Without it (or with `system`), under
    ///   `verify-ca` and `verify-full`, the operating system's store must
    ///   hold at least one root;
    /// - `sslcert` and `sslkey` under every mode but `disable`: a PEM
    ///   certificate chain, and a PEM private key (PKCS#8, PKCS#1 or SEC1)
    ///   of a type rustls signs with, kept from group and others (mode
    ///   0600, or 0640 owned by root, as libpq demands), and the key of
    ///   the chain's first certificate.
    ///
    /// Fails with an [`Error::Config`] naming the setting, the file and
    /// what is wrong with it: it does not exist, cannot be read, is not
    /// PEM, holds no certificate (or no key), or the key does not match
    /// the certificate. Never quotes a file's content. Without the
    /// `tls-rustls` feature no file is read: [`validate`](Self::validate)
    /// refuses every TLS setting.
    ///
    /// ```no_run
    /// # fn check() -> voidrunner_db::Result<()> {
    /// let config = voidrunner_db::DbConfig::from_env()?;
    /// config.check_tls_files()?; // before serving, or in a deploy check
    /// # Ok(()) }
    /// ```
    ///
    /// [`Database::connect_lazy`]: crate::Database::connect_lazy
    pub fn check_tls_files(&self) -> Result<()> {
        Connector::new(self).map(drop)
    }
}

#[cfg(feature = "tls-rustls")]
mod rustls_tls {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::server::ParsedCertificate;
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use crate::config::{DbConfig, SYSTEM_ROOTS, SslMode};
    use crate::error::{Error, Result};

    /// The rustls connector of `config`.
    pub(super) fn connector(config: &DbConfig) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mode = config.ssl_mode;
        // libpq: `require` with a root certificate checks the chain, as
        // verify-ca does; `prefer` and a bare `require` check nothing.
        let roots = match (mode, config.ssl_root_cert.as_deref()) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => None,
            (_, root) => Some(Arc::new(root_store(root)?)),
        };
        let verifier = Arc::new(ServerCheck {
            roots,
            check_name: mode == SslMode::VerifyFull,
            algorithms: provider.signature_verification_algorithms,
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("setting up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match (&config.ssl_cert, &config.ssl_key) {
            // Under `disable` no TLS is spoken: no file is read.
            (Some(cert), Some(key)) if mode != SslMode::Disable => {
                let chain = certificates(cert, "sslcert")?;
                let key_der = private_key(key)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| client_pair_error(cert, key, e))?
            }
            _ => builder.with_no_client_auth(),
        };
        // What libpq 17 sends, and what a server needs for
        // `sslnegotiation=direct`; older servers ignore it.
        tls.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect::new(tls))
    }

    /// The roots of `sslrootcert`: its file, or the system's for `system`
    /// and when it is not set.
    fn root_store(root: Option<&Path>) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        match root {
            Some(path) if path != Path::new(SYSTEM_ROOTS) => {
                for (n, cert) in certificates(path, "sslrootcert")?.into_iter().enumerate() {
                    store.add(cert).map_err(|e| {
                        Error::config(format!(
                            "sslrootcert {}: certificate {} cannot be a root: {e}",
                            path.display(),
                            n + 1
                        ))
                    })?;
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default();
                    return Err(Error::config(format!(
                        "no root certificate found in the system's store{why}: install the CA certificates (Debian: ca-certificates) or set sslrootcert"
                    )));
                }
            }
        }
        Ok(store)
    }

    /// Why a client certificate and key that each read well cannot be
    /// used together.
    fn client_pair_error(cert: &Path, key: &Path, err: rustls::Error) -> Error {
        let why = match err {
            rustls::Error::InconsistentKeys(_) => {
                "the private key is not the key of the (first) certificate".to_owned()
            }
            rustls::Error::InvalidCertificate(e) => {
                format!("the first certificate of sslcert cannot be parsed: {e:?}")
            }
            other => other.to_string(),
        };
        Error::config(format!(
            "sslcert {} and sslkey {} cannot be used together: {why}",
            cert.display(),
            key.display()
        ))
    }

    /// Reads `path`; the error names the file and the setting, never the
    /// content.
    fn read(path: &Path, setting: &str) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| unreadable(path, setting, &e))
    }

    /// `path` of `setting` could not be read, and why, in words.
    fn unreadable(path: &Path, setting: &str, err: &std::io::Error) -> Error {
        let why = match err.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied to the service's user".to_owned()
            }
            std::io::ErrorKind::IsADirectory => "it is a directory, not a file".to_owned(),
            _ => err.to_string(),
        };
        Error::config(format!(
            "{setting} {}: cannot read it: {why}",
            path.display()
        ))
    }

    /// Every PEM certificate of `path`, at least one.
    fn certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
        let bytes = read(path, setting)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::config(format!(
                    "{setting} {}: not a PEM file of certificates (a PEM section in it is malformed)",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            // A hint at the usual mix-ups; the content itself is never quoted.
            let holds = if PrivateKeyDer::from_pem_slice(&bytes).is_ok() {
                ": it holds a private key"
            } else if bytes.is_empty() {
                ": the file is empty"
            } else if !bytes.starts_with(b"-----") && !bytes.is_ascii() {
                ": it is not text (a DER file? PEM is base64 between -----BEGIN CERTIFICATE----- lines)"
            } else {
                ""
            };
            return Err(Error::config(format!(
                "{setting} {}: holds no PEM certificate{holds}",
                path.display()
            )));
        }
        Ok(certs)
    }

    /// The private key of `path`, which libpq's rule keeps from group and
    /// others.
    fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let meta = std::fs::metadata(path).map_err(|e| unreadable(path, "sslkey", &e))?;
            // libpq: no access for group or others, except that a file
            // owned by root may be readable by its group.
            let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
            if meta.mode() & forbidden != 0 {
                return Err(Error::config(format!(
                    "sslkey {}: the private key has group or world access (mode {:o}); it must be u=rw (0600) or less, or u=rw,g=r (0640) or less if owned by root",
                    path.display(),
                    meta.mode() & 0o777
                )));
            }
        }
        // The parser's error is not kept: it might quote a line of the key.
        let bytes = read(path, "sslkey")?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
            let holds = if CertificateDer::pem_slice_iter(&bytes).any(|c| c.is_ok()) {
                ": it holds a certificate"
            } else {
                ""
            };
            Error::config(format!(
                "sslkey {}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1){holds}",
                path.display()
            ))
        })
    }

    /// The server certificate checks of every mode: none (`prefer`, a bare
    /// `require`), the chain (`verify-ca`, `require` with a root), or the
    /// chain and the name (`verify-full`). The handshake's signatures are
    /// checked in every mode, so that the session is bound to the
    /// certificate presented (SCRAM's channel binding relies on it).
    #[derive(Debug)]
    struct ServerCheck {
        roots: Option<Arc<RootCertStore>>,
        check_name: bool,
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for ServerCheck {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            if let Some(roots) = &self.roots {
                let cert = ParsedCertificate::try_from(end_entity)?;
                verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    roots,
                    intermediates,
                    now,
                    self.algorithms.all,
                )?;
                if self.check_name {
                    verify_server_name(&cert, server_name)?;
                }
            }
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }
}
