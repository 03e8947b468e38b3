//! What a configuration is checked against: each setting's own rule, from
//! the [table](super::settings), then the rules across settings.

use super::settings::{SETTINGS, application_name_fits};
use super::*;

impl DbConfig {
    /// Checks that the settings are consistent; [`Database::connect`]
    /// calls this first.
    ///
    /// [`Database::connect`]: crate::Database::connect
    pub fn validate(&self) -> Result<()> {
        for setting in SETTINGS {
            (setting.check)(self)
                .map_err(|message| Error::config(format!("{} {message}", setting.name)))?;
        }
        // The direct URL's own name is sent for its sessions; the main
        // URL's was read into `application_name`, checked above.
        application_name_fits(self.direct_session_name())
            .map_err(|message| Error::config(format!("application_name {message}")))?;
        if !self.pooler.startup_options() && self.connection.get_options().is_some() {
            return Err(Error::config(format!(
                "the URL sets `options`, which a pooler refuses at connect (pooler mode {}): \
                 make those settings settings of the role (ALTER ROLE … SET …) instead",
                self.pooler
            )));
        }
        self.validate_replicas()?;
        self.validate_tls()
    }

    /// The TLS settings: consistent, and possible with the features built.
    fn validate_tls(&self) -> Result<()> {
        if self.ssl_cert.is_some() != self.ssl_key.is_some() {
            return Err(Error::config(
                "ssl_cert (sslcert) and ssl_key (sslkey) go together: set both for a client certificate, or neither",
            ));
        }
        if self.ssl_root_cert.as_deref() == Some(Path::new(SYSTEM_ROOTS))
            && self.ssl_mode != SslMode::VerifyFull
        {
            return Err(Error::config(format!(
                "sslrootcert=system needs sslmode=verify-full, not {} (as in libpq: the system's roots vouch for any name they certify, so only the host name check makes them safe)",
                self.ssl_mode
            )));
        }
        if !cfg!(feature = "tls-rustls") {
            let needs_tls = if self.ssl_mode.requires_tls() {
                Some(format!("sslmode={}", self.ssl_mode))
            } else if self.ssl_root_cert.is_some() {
                Some("sslrootcert".to_owned())
            } else if self.ssl_cert.is_some() {
                Some("sslcert and sslkey".to_owned())
            } else {
                None
            };
            if let Some(setting) = needs_tls {
                return Err(Error::config(format!(
                    "{setting} needs TLS, and voidrunner-db was built without its `tls-rustls` feature"
                )));
            }
        }
        Ok(())
    }
}
