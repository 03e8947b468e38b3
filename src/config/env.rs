//! `DATABASE_URL` and the `VOIDRUNNER_DB_*` variables.

use super::*;

impl DbConfig {
    /// Reads `DATABASE_URL` and the `VOIDRUNNER_DB_*` variables listed in the
    /// [module docs](crate::config). Unset variables keep their defaults; a set but
    /// malformed one is an [`Error::Config`] naming it.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = lookup(DATABASE_URL_ENV)
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| Error::config(format!("{DATABASE_URL_ENV} is not set")))?;
        // Read before the URL is parsed: they override its `sslmode` and
        // paths, and `sslrootcert=system` from either makes verify-full
        // the default.
        // The TLS variables are merged with the URL's own keys once, here,
        // where an explicit `sslmode=prefer` is still told apart from none.
        let ssl = ssl_from_lookup(&lookup)?;
        Self::from_parts(&url, ssl)?.overlay_settings(lookup)
    }

    /// These settings with every `VOIDRUNNER_DB_*` variable `lookup` finds
    /// applied over them (`DATABASE_URL` is not read), then validated: what
    /// the test harness does with the server it found.
    #[cfg(feature = "test-support")]
    pub(crate) fn overlay_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = self;
        let ssl = ssl_from_lookup(&lookup)?;
        if ssl.given() {
            let system = ssl.root_cert.as_deref() == Some(Path::new(SYSTEM_ROOTS));
            let current = SslSettings {
                // `sslrootcert=system` without a mode makes verify-full the
                // default, as it does in a URL.
                // Only the default mode gives way: an explicit weaker one
                // stays, and `validate` refuses the pair as it does in a URL.
                mode: (!(system && ssl.mode.is_none() && config.ssl_mode == SslMode::Prefer))
                    .then_some(config.ssl_mode),
                root_cert: config.ssl_root_cert.take(),
                cert: config.ssl_cert.take(),
                key: config.ssl_key.take(),
            };
            let merged = ssl.over(current);
            config.ssl_mode = merged.mode();
            config.ssl_root_cert = merged.root_cert;
            config.ssl_cert = merged.cert;
            config.ssl_key = merged.key;
        }
        config.overlay_settings(lookup)
    }

    /// The `VOIDRUNNER_DB_*` variables other than TLS applied over these
    /// settings, then validated.
    fn overlay_settings(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = self;
        let var = |suffix: &str| {
            let name = format!("VOIDRUNNER_DB_{suffix}");
            lookup(&name).map(|value| (name, value))
        };
        let bad = |name: &str, message: String| Error::config(format!("{name}: {message}"));

        if let Some((name, v)) = var("MAX_CONNECTIONS") {
            config.max_connections = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        if let Some((name, v)) = var("MIN_CONNECTIONS") {
            config.min_connections = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        let optional = |suffix: &str, slot: &mut Option<Duration>| -> Result<()> {
            if let Some((name, v)) = var(suffix) {
                *slot = duration::parse_optional(&v).map_err(|e| bad(&name, e))?;
            }
            Ok(())
        };
        optional("MAX_LIFETIME", &mut config.max_lifetime)?;
        optional("IDLE_TIMEOUT", &mut config.idle_timeout)?;
        optional("STATEMENT_TIMEOUT", &mut config.statement_timeout)?;
        optional("SLOW_STATEMENT", &mut config.slow_statement)?;
        optional(
            "IDLE_IN_TRANSACTION_TIMEOUT",
            &mut config.idle_in_transaction_timeout,
        )?;
        let required = |suffix: &str, slot: &mut Duration| -> Result<()> {
            if let Some((name, v)) = var(suffix) {
                *slot = duration::parse(&v).map_err(|e| bad(&name, e))?;
            }
            Ok(())
        };
        required("CONNECT_TIMEOUT", &mut config.connect_timeout)?;
        required("WAIT_TIMEOUT", &mut config.wait_timeout)?;
        required("RECYCLE_TIMEOUT", &mut config.recycle_timeout)?;
        required("REAPER_INTERVAL", &mut config.reaper_interval)?;
        required("MIGRATION_LOCK_TIMEOUT", &mut config.migration_lock_timeout)?;
        if let Some((name, v)) = var("MIGRATION_RETRIES") {
            config.migration_retries = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        if let Some((name, v)) = var("MAX_OUTPUT_BYTES") {
            config.max_output_bytes = v.trim().parse().map_err(|e| bad(&name, format!("{e}")))?;
        }
        if let Some((_, v)) = var("APPLICATION_NAME") {
            config.application_name = v;
        }
        if let Some((name, v)) = var("POOLER") {
            config.pooler = PoolerMode::parse(&v).map_err(|e| bad(&name, e))?;
        }
        if let Some((name, v)) = var("DIRECT_URL").filter(|(_, v)| !v.trim().is_empty()) {
            // The parse error never quotes the URL (it may hold a password).
            config.direct = Some(parse_direct_url(&v).map_err(|e| bad(&name, e.to_string()))?);
        }
        if let Some((name, v)) = var("NOTIFY_EVENTS") {
            config.notify_events = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "1" | "yes" => true,
                "false" | "off" | "0" | "no" => false,
                other => return Err(bad(&name, format!("`{other}` is not true or false"))),
            };
        }
        config.validate()?;
        Ok(config)
    }
}
