//! How the crate reaches the server: the pooler in between and TLS.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// What the connection URL of a [`DbConfig`](crate::DbConfig) points at, which decides how
/// the crate talks to it (see
/// [Behind a connection pooler](crate::config#behind-a-connection-pooler)).
///
/// Written `direct`, `session` or `transaction` in
/// `VOIDRUNNER_DB_POOLER` and in serde sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PoolerMode {
    /// The server itself, or a pooler that passes startup options through
    /// and keeps a session per connection: session settings are startup
    /// options, statements are named and cached per connection.
    #[default]
    Direct,
    /// A pooler in session mode (PgBouncer `pool_mode = session`): a server
    /// connection per client connection, but no startup options. Session
    /// settings are sent with `SET` when a connection is opened.
    Session,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`):
    /// consecutive transactions of one client connection may run on
    /// different server connections. Statements are sent unnamed with
    /// declared parameter types; session settings become `SET LOCAL` in the
    /// crate's transactions (and role settings outside them); migrations
    /// and LISTEN need [`DbConfig::set_direct_url`](crate::DbConfig::set_direct_url).
    Transaction,
}

impl PoolerMode {
    /// The name used in `VOIDRUNNER_DB_POOLER`: `direct`, `session` or
    /// `transaction`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolerMode::Direct => "direct",
            PoolerMode::Session => "session",
            PoolerMode::Transaction => "transaction",
        }
    }

    /// Whether statements are prepared with a name and cached per
    /// connection (every mode but [`Transaction`](Self::Transaction)).
    pub fn named_statements(self) -> bool {
        self != PoolerMode::Transaction
    }

    /// Whether session settings are sent as startup options (only
    /// [`Direct`](Self::Direct): poolers refuse them).
    pub fn startup_options(self) -> bool {
        self == PoolerMode::Direct
    }
}

impl fmt::Display for PoolerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PoolerMode {
    pub(super) fn parse(text: &str) -> std::result::Result<Self, String> {
        match text.trim() {
            "direct" => Ok(PoolerMode::Direct),
            "session" => Ok(PoolerMode::Session),
            "transaction" => Ok(PoolerMode::Transaction),
            other => Err(format!(
                "`{other}` is not a pooler mode (direct, session or transaction)"
            )),
        }
    }
}

impl FromStr for PoolerMode {
    type Err = Error;

    /// `direct`, `session` or `transaction`; anything else is an
    /// [`Error::Config`].
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text).map_err(Error::config)
    }
}

/// libpq's `sslmode`: whether a connection uses TLS and what it checks of
/// the server's certificate (see [TLS](crate::docs::deploying#tls)).
///
/// Written in lower case with dashes (`verify-full`) in URLs, variables and
/// serde sources.
///
/// ```
/// use voidrunner_db::config::SslMode;
///
/// let mode: SslMode = "verify-full".parse()?;
/// assert_eq!(mode, SslMode::VerifyFull);
/// assert_eq!(mode.to_string(), "verify-full");
/// assert!(mode.requires_tls());
/// assert_eq!(SslMode::default(), SslMode::Prefer);
/// # Ok::<(), voidrunner_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, else plaintext; the certificate is
    /// not checked. libpq's default, and this crate's.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked, unless
    /// [`DbConfig::ssl_root_cert`](crate::DbConfig::ssl_root_cert) is set, which makes it
    /// [`VerifyCa`](Self::VerifyCa).
    Require,
    /// TLS, with a server certificate that chains to a trusted root; the
    /// host name is not checked.
    VerifyCa,
    /// TLS, with a server certificate that chains to a trusted root and
    /// names the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The name libpq uses: `disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection fails rather than go on in plaintext.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// The driver's mode: it knows no verify modes, and the certificate
    /// checks are the TLS connector's (`crate::connect`).
    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Error;

    /// libpq's names; anything else (`allow` included, which the driver
    /// cannot do) is an [`Error::Config`].
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(mode) = SslMode::ALL.into_iter().find(|m| m.as_str() == text) {
            return Ok(mode);
        }
        Err(Error::config(if text == "allow" {
            "sslmode `allow` is not supported (plaintext first, TLS only if refused); use `prefer` or stronger".to_owned()
        } else {
            format!(
                "sslmode must be one of disable, prefer, require, verify-ca, verify-full, not `{}`",
                text.escape_debug()
            )
        }))
    }
}

/// An [`Error::Config`]'s message without its "invalid configuration: "
/// prefix, to follow the name of what was invalid.
pub(super) fn without_prefix(err: Error) -> String {
    match err {
        Error::Config { message } => message,
        other => other.to_string(),
    }
}

impl<'de> Deserialize<'de> for SslMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(|e| serde::de::Error::custom(without_prefix(e)))
    }
}
