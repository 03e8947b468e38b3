//! The ranges and rules a configuration is checked against.

use super::*;

impl DbConfig {
    /// Checks that the settings are consistent; [`Database::connect`]
    /// calls this first.
    ///
    /// [`Database::connect`]: crate::Database::connect
    pub fn validate(&self) -> Result<()> {
        if !MAX_CONNECTIONS_RANGE.contains(&self.max_connections) {
            return Err(Error::config(format!(
                "max_connections must be between {} and {}, not {}",
                MAX_CONNECTIONS_RANGE.start(),
                MAX_CONNECTIONS_RANGE.end(),
                self.max_connections
            )));
        }
        if self.min_connections > self.max_connections {
            return Err(Error::config(format!(
                "min_connections ({}) exceeds max_connections ({})",
                self.min_connections, self.max_connections
            )));
        }
        for (name, value, range) in [
            (
                "connect_timeout",
                Some(self.connect_timeout),
                POOL_TIMEOUT_RANGE,
            ),
            ("wait_timeout", Some(self.wait_timeout), POOL_TIMEOUT_RANGE),
            (
                "recycle_timeout",
                Some(self.recycle_timeout),
                POOL_TIMEOUT_RANGE,
            ),
            (
                "reaper_interval",
                Some(self.reaper_interval),
                REAPER_INTERVAL_RANGE,
            ),
            ("max_lifetime", self.max_lifetime, CONNECTION_AGE_RANGE),
            ("idle_timeout", self.idle_timeout, CONNECTION_AGE_RANGE),
            (
                "statement_timeout",
                self.statement_timeout,
                SERVER_TIMEOUT_RANGE,
            ),
            (
                "idle_in_transaction_timeout",
                self.idle_in_transaction_timeout,
                SERVER_TIMEOUT_RANGE,
            ),
        ] {
            if let Some(value) = value {
                check_range(name, value, &range)?;
            }
        }
        if !(MIN_MIGRATION_LOCK_TIMEOUT..=MAX_MIGRATION_LOCK_TIMEOUT)
            .contains(&self.migration_lock_timeout)
        {
            return Err(Error::config(format!(
                "migration_lock_timeout must be between {MIN_MIGRATION_LOCK_TIMEOUT:?} and {MAX_MIGRATION_LOCK_TIMEOUT:?}, not {:?}",
                self.migration_lock_timeout
            )));
        }
        if let Some(slow) = self.slow_statement
            && !(Duration::from_millis(1)..=Duration::from_secs(24 * 3600)).contains(&slow)
        {
            return Err(Error::config(format!(
                "slow_statement must be between 1ms and 24h (or off), not {slow:?}"
            )));
        }
        if !OUTPUT_BYTES_RANGE.contains(&self.max_output_bytes) {
            return Err(Error::config(format!(
                "max_output_bytes must be between {} and {}, not {}",
                OUTPUT_BYTES_RANGE.start(),
                OUTPUT_BYTES_RANGE.end(),
                self.max_output_bytes
            )));
        }
        if self.migration_retries > MAX_MIGRATION_RETRIES {
            return Err(Error::config(format!(
                "migration_retries must be at most {MAX_MIGRATION_RETRIES}, not {}",
                self.migration_retries
            )));
        }
        for name in [
            Some(self.application_name.as_str()),
            self.connection.get_application_name(),
        ]
        .into_iter()
        .flatten()
        {
            application_name_fits(name)?;
        }
        if self.application_name.contains('\0') {
            return Err(Error::config("application_name contains a NUL character"));
        }
        if let Some(name) = self.direct.as_ref().and_then(|d| d.get_application_name()) {
            application_name_fits(name)?;
        }
        if !self.pooler.startup_options() && self.connection.get_options().is_some() {
            return Err(Error::config(format!(
                "the URL sets `options`, which a pooler refuses at connect (pooler mode {}): \
                 make those settings settings of the role (ALTER ROLE … SET …) instead",
                self.pooler
            )));
        }
        self.validate_tls()
    }

    /// The TLS settings: consistent, and possible with the features built.
    fn validate_tls(&self) -> Result<()> {
        for (name, path) in [
            ("ssl_root_cert", &self.ssl_root_cert),
            ("ssl_cert", &self.ssl_cert),
            ("ssl_key", &self.ssl_key),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(Error::config(format!("{name} is an empty path")));
            }
        }
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

/// `Error::Config` unless `value` lies in `range`.
pub(super) fn check_range(
    name: &str,
    value: Duration,
    range: &RangeInclusive<Duration>,
) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{name} must be between {:?} and {:?}, not {value:?}",
        range.start(),
        range.end()
    )))
}
