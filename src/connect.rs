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
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    Error::config(format!(
                        "sslcert {} and sslkey {} cannot be used together: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
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

    /// Reads `path`; the error names the file and the setting, never the
    /// content.
    fn read(path: &Path, setting: &str) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| {
            Error::config(format!("{setting} {}: cannot read it: {e}", path.display()))
        })
    }

    /// Every PEM certificate of `path`, at least one.
    fn certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(&read(path, setting)?)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::config(format!(
                    "{setting} {}: not a PEM file of certificates",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(Error::config(format!(
                "{setting} {}: holds no PEM certificate",
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
            let meta = std::fs::metadata(path).map_err(|e| {
                Error::config(format!("sslkey {}: cannot read it: {e}", path.display()))
            })?;
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
        PrivateKeyDer::from_pem_slice(&read(path, "sslkey")?).map_err(|_| {
            Error::config(format!(
                "sslkey {}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
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
