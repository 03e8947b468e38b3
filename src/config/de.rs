//! What a serde source holds: the fields of [`DbConfig`], the TLS ones
//! optional so that those the source leaves out come from the URL.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{DbConfig, PoolerMode, SslMode, SslSettings, defaults, duration};
use crate::error::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Fields {
    #[serde(deserialize_with = "url")]
    url: (tokio_postgres::Config, SslSettings),
    #[serde(default = "defaults::max_connections")]
    max_connections: usize,
    #[serde(default = "defaults::min_connections")]
    min_connections: usize,
    #[serde(default = "defaults::max_lifetime", with = "duration::option")]
    max_lifetime: Option<Duration>,
    #[serde(default = "defaults::idle_timeout", with = "duration::option")]
    idle_timeout: Option<Duration>,
    #[serde(default = "defaults::connect_timeout", with = "duration")]
    connect_timeout: Duration,
    #[serde(default = "defaults::wait_timeout", with = "duration")]
    wait_timeout: Duration,
    #[serde(default = "defaults::recycle_timeout", with = "duration")]
    recycle_timeout: Duration,
    #[serde(default = "defaults::statement_timeout", with = "duration::option")]
    statement_timeout: Option<Duration>,
    #[serde(
        default = "defaults::idle_in_transaction_timeout",
        with = "duration::option"
    )]
    idle_in_transaction_timeout: Option<Duration>,
    #[serde(default = "defaults::reaper_interval", with = "duration")]
    reaper_interval: Duration,
    #[serde(default = "defaults::application_name")]
    application_name: String,
    #[serde(default = "defaults::notify_events")]
    notify_events: bool,
    #[serde(default = "defaults::migration_lock_timeout", with = "duration")]
    migration_lock_timeout: Duration,
    #[serde(default = "defaults::migration_retries")]
    migration_retries: u32,
    #[serde(default = "defaults::max_output_bytes")]
    max_output_bytes: usize,
    #[serde(default = "defaults::slow_statement", with = "duration::option")]
    slow_statement: Option<Duration>,
    #[serde(default)]
    ssl_mode: Option<SslMode>,
    #[serde(default)]
    ssl_root_cert: Option<PathBuf>,
    #[serde(default)]
    ssl_cert: Option<PathBuf>,
    #[serde(default)]
    ssl_key: Option<PathBuf>,
    #[serde(default)]
    pooler: PoolerMode,
    #[serde(default, deserialize_with = "optional_url")]
    direct_url: Option<tokio_postgres::Config>,
}

fn optional_url<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<tokio_postgres::Config>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(url) if !url.trim().is_empty() => super::parse_direct_url(&url)
            .map(Some)
            .map_err(serde::de::Error::custom),
        _ => Ok(None),
    }
}

fn url<'de, D: Deserializer<'de>>(d: D) -> Result<(tokio_postgres::Config, SslSettings), D::Error> {
    let url = String::deserialize(d)?;
    super::parse_url(&url).map_err(serde::de::Error::custom)
}

impl TryFrom<Fields> for DbConfig {
    type Error = Error;

    fn try_from(f: Fields) -> Result<Self, Error> {
        let (connection, from_url) = f.url;
        let ssl = SslSettings {
            mode: f.ssl_mode,
            root_cert: f.ssl_root_cert,
            cert: f.ssl_cert,
            key: f.ssl_key,
        }
        .over(from_url);
        Ok(DbConfig {
            connection,
            max_connections: f.max_connections,
            min_connections: f.min_connections,
            max_lifetime: f.max_lifetime,
            idle_timeout: f.idle_timeout,
            connect_timeout: f.connect_timeout,
            wait_timeout: f.wait_timeout,
            recycle_timeout: f.recycle_timeout,
            statement_timeout: f.statement_timeout,
            idle_in_transaction_timeout: f.idle_in_transaction_timeout,
            reaper_interval: f.reaper_interval,
            application_name: f.application_name,
            notify_events: f.notify_events,
            migration_lock_timeout: f.migration_lock_timeout,
            migration_retries: f.migration_retries,
            max_output_bytes: f.max_output_bytes,
            slow_statement: f.slow_statement,
            ssl_mode: ssl.mode(),
            ssl_root_cert: ssl.root_cert,
            ssl_cert: ssl.cert,
            ssl_key: ssl.key,
            pooler: f.pooler,
            direct: f.direct_url,
        })
    }
}
