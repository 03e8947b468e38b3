//! The table of settings: each setting's name, environment variable,
//! default and accepted values, written once.
//!
//! Everything else comes from it: the defaults of a new configuration, the
//! names the environment and serde sources read ([`super::draft`]), what
//! [`DbConfig::validate`] checks and the names in its messages, the `Debug`
//! output, and the test that the documented settings table (the one headed
//! `| field | env variable | default | accepted | maps to |`) lists the same
//! settings with the same variables and defaults.
//!
//! Adding a setting: its field in [`DbConfig`], its row here, its row in
//! the documented table, and a test of what it does.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::draft::{Draft, read_url};
use super::value::{FromValue, Value};
use super::*;

/// One setting.
pub(super) struct Setting {
    /// The field name: the key in serde sources, and the name in messages.
    pub(super) name: &'static str,
    /// The environment variable.
    pub(super) env: &'static str,
    /// How a value is read.
    pub(super) read: Read,
    /// Reads a value into a configuration being built: `Err` says what is
    /// wrong with the value (the caller names the setting).
    pub(super) apply: fn(&mut Draft, Value) -> std::result::Result<(), String>,
    /// `Err` when the configuration's value is not accepted, saying why
    /// (after the setting's name).
    pub(super) check: fn(&DbConfig) -> std::result::Result<(), String>,
    /// The configuration's value, for `Debug`.
    pub(super) show: fn(&DbConfig) -> &dyn fmt::Debug,
}

/// How a setting reads a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// Every value is read.
    Always,
    /// A blank value (empty, white space, or null) leaves the setting as it
    /// was, as an empty variable or libpq's empty `sslrootcert=` does.
    UnlessBlank,
    /// A connection string: read unless blank, and never shown (it may
    /// hold a password).
    ConnectionString,
}

/// What a setting accepts, checked by [`DbConfig::validate`]; `Err` says
/// why not, after the setting's name ("must be between …").
pub(super) trait Accept<T> {
    fn check(&self, value: &T, config: &DbConfig) -> std::result::Result<(), String>;
}

/// Any value.
pub(super) struct Anything;

impl<T> Accept<T> for Anything {
    fn check(&self, _: &T, _: &DbConfig) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// A rule of its own.
pub(super) struct Check<T: 'static>(
    pub(super) fn(&T, &DbConfig) -> std::result::Result<(), String>,
);

impl<T> Accept<T> for Check<T> {
    fn check(&self, value: &T, config: &DbConfig) -> std::result::Result<(), String> {
        (self.0)(value, config)
    }
}

macro_rules! count_range {
    ($($t:ty),*) => {$(
        impl Accept<$t> for RangeInclusive<$t> {
            fn check(&self, value: &$t, _: &DbConfig) -> std::result::Result<(), String> {
                if self.contains(value) {
                    return Ok(());
                }
                Err(format!("must be between {} and {}, not {value}", self.start(), self.end()))
            }
        }
    )*};
}
count_range!(usize, u32);

impl Accept<Duration> for RangeInclusive<Duration> {
    fn check(&self, value: &Duration, _: &DbConfig) -> std::result::Result<(), String> {
        if self.contains(value) {
            return Ok(());
        }
        Err(format!(
            "must be between {:?} and {:?}, not {value:?}",
            self.start(),
            self.end()
        ))
    }
}

/// A duration that may be `off` (`None`): the range applies when set.
impl Accept<Option<Duration>> for RangeInclusive<Duration> {
    fn check(&self, value: &Option<Duration>, _: &DbConfig) -> std::result::Result<(), String> {
        match value {
            Some(value) if !self.contains(value) => Err(format!(
                "must be between {:?} and {:?} (or off), not {value:?}",
                self.start(),
                self.end()
            )),
            _ => Ok(()),
        }
    }
}

/// The table: one row per setting, in the order of the documented table.
///
/// A row is the [`DbConfig`] field (`as` the name sources and messages use,
/// when it differs), its environment variable, its default, what it
/// accepts, and optionally how it reads a value ([`Read`], `Always` if
/// not said) and a reader of its own (else the field's [`FromValue`]).
macro_rules! settings {
    ($(
        $field:ident $(as $name:ident)? {
            env: $env:expr,
            default: $default:expr,
            accept: $accept:expr
            $(, read: $read:ident)?
            $(, apply: $apply:path)?
            $(,)?
        }
    )*) => {
        /// Every setting, in the order of the documented table.
        pub(super) static SETTINGS: &[Setting] = &[$(
            Setting {
                name: name_of!($field $($name)?),
                env: $env,
                read: read_of!($($read)?),
                apply: apply_of!($field $($apply)?),
                check: |config| Accept::check(&$accept, &config.$field, config),
                show: |config| &config.$field,
            },
        )*];

        /// The names of the settings, for serde's messages.
        pub(super) const NAMES: &[&str] = &[$(name_of!($field $($name)?)),*];

        /// A configuration with every setting at its default, and no URL.
        pub(super) fn defaults() -> DbConfig {
            DbConfig {
                $($field: $default,)*
            }
        }
    };
}

macro_rules! name_of {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $name:ident) => {
        stringify!($name)
    };
}

macro_rules! read_of {
    () => {
        Read::Always
    };
    ($read:ident) => {
        Read::$read
    };
}

macro_rules! apply_of {
    ($field:ident) => {
        |draft, value| {
            draft.config.$field = FromValue::from_value(value)?;
            Ok(())
        }
    };
    ($field:ident $apply:path) => {
        $apply
    };
}

settings! {
    connection as url {
        env: DATABASE_URL_ENV,
        default: tokio_postgres::Config::new(),
        accept: Anything,
        read: ConnectionString,
        apply: read_url,
    }
    max_connections {
        env: "VOIDRUNNER_DB_MAX_CONNECTIONS",
        default: 25,
        accept: MAX_CONNECTIONS_RANGE,
    }
    min_connections {
        env: "VOIDRUNNER_DB_MIN_CONNECTIONS",
        default: 5,
        accept: Check(|min: &usize, config| {
            if *min <= config.max_connections {
                return Ok(());
            }
            Err(format!("({min}) exceeds max_connections ({})", config.max_connections))
        }),
    }
    max_lifetime {
        env: "VOIDRUNNER_DB_MAX_LIFETIME",
        default: Some(Duration::from_secs(3600)),
        accept: CONNECTION_AGE_RANGE,
    }
    idle_timeout {
        env: "VOIDRUNNER_DB_IDLE_TIMEOUT",
        default: Some(Duration::from_secs(30 * 60)),
        accept: CONNECTION_AGE_RANGE,
    }
    connect_timeout {
        env: "VOIDRUNNER_DB_CONNECT_TIMEOUT",
        default: Duration::from_secs(10),
        accept: POOL_TIMEOUT_RANGE,
    }
    wait_timeout {
        env: "VOIDRUNNER_DB_WAIT_TIMEOUT",
        default: Duration::from_secs(5),
        accept: POOL_TIMEOUT_RANGE,
    }
    recycle_timeout {
        env: "VOIDRUNNER_DB_RECYCLE_TIMEOUT",
        default: Duration::from_secs(5),
        accept: POOL_TIMEOUT_RANGE,
    }
    statement_timeout {
        env: "VOIDRUNNER_DB_STATEMENT_TIMEOUT",
        default: Some(Duration::from_secs(30)),
        accept: SERVER_TIMEOUT_RANGE,
    }
    idle_in_transaction_timeout {
        env: "VOIDRUNNER_DB_IDLE_IN_TRANSACTION_TIMEOUT",
        default: Some(Duration::from_secs(60)),
        accept: SERVER_TIMEOUT_RANGE,
    }
    reaper_interval {
        env: "VOIDRUNNER_DB_REAPER_INTERVAL",
        default: Duration::from_secs(30),
        accept: REAPER_INTERVAL_RANGE,
    }
    application_name {
        env: "VOIDRUNNER_DB_APPLICATION_NAME",
        default: "voidrunner-db".to_owned(),
        accept: Check(|name: &String, _| application_name_fits(name)),
    }
    role {
        env: "VOIDRUNNER_DB_ROLE",
        default: None,
        accept: Check(super::role::role_fits),
        read: UnlessBlank,
    }
    notify_events {
        env: "VOIDRUNNER_DB_NOTIFY_EVENTS",
        default: true,
        accept: Anything,
    }
    migration_lock_timeout {
        env: "VOIDRUNNER_DB_MIGRATION_LOCK_TIMEOUT",
        default: Duration::from_secs(2),
        accept: Duration::from_millis(10)..=Duration::from_secs(600),
    }
    migration_retries {
        env: "VOIDRUNNER_DB_MIGRATION_RETRIES",
        default: 5,
        accept: 0..=100,
    }
    slow_statement {
        env: "VOIDRUNNER_DB_SLOW_STATEMENT",
        default: Some(Duration::from_secs(1)),
        accept: Duration::from_millis(1)..=Duration::from_secs(24 * 3600),
    }
    max_output_bytes {
        env: "VOIDRUNNER_DB_MAX_OUTPUT_BYTES",
        default: 1 << 20,
        accept: OUTPUT_BYTES_RANGE,
    }
    // The default turns `verify-full` when `ssl_root_cert` is `system` and
    // no source gave a mode (`Draft::finish`).
    ssl_mode {
        env: "VOIDRUNNER_DB_SSLMODE",
        default: SslMode::Prefer,
        accept: Anything,
        read: UnlessBlank,
    }
    ssl_root_cert {
        env: "VOIDRUNNER_DB_SSLROOTCERT",
        default: None,
        accept: Check(a_path),
        read: UnlessBlank,
    }
    ssl_cert {
        env: "VOIDRUNNER_DB_SSLCERT",
        default: None,
        accept: Check(a_path),
        read: UnlessBlank,
    }
    ssl_key {
        env: "VOIDRUNNER_DB_SSLKEY",
        default: None,
        accept: Check(a_path),
        read: UnlessBlank,
    }
    pooler {
        env: "VOIDRUNNER_DB_POOLER",
        default: PoolerMode::Direct,
        accept: Anything,
    }
    direct as direct_url {
        env: "VOIDRUNNER_DB_DIRECT_URL",
        default: None,
        accept: Anything,
        read: ConnectionString,
    }
    replicas {
        env: "VOIDRUNNER_DB_REPLICAS",
        default: Vec::new(),
        accept: Check(|replicas: &Vec<_>, _| super::replicas::replicas_fit(replicas)),
        read: ConnectionString,
    }
    replica_max_lag {
        env: "VOIDRUNNER_DB_REPLICA_MAX_LAG",
        default: Duration::from_secs(1),
        accept: REPLICA_LAG_RANGE,
    }
    replica_probe_interval {
        env: "VOIDRUNNER_DB_REPLICA_PROBE_INTERVAL",
        default: Duration::from_secs(1),
        accept: REPLICA_PROBE_INTERVAL_RANGE,
    }
    replica_wait {
        env: "VOIDRUNNER_DB_REPLICA_WAIT",
        default: Duration::from_millis(250),
        accept: REPLICA_WAIT_RANGE,
    }
}

/// Whether the server keeps `name` as it is; `Err` says why not, after
/// `application_name`.
pub(super) fn application_name_fits(name: &str) -> std::result::Result<(), String> {
    if name.len() > APPLICATION_NAME_MAX_BYTES {
        return Err(format!(
            "is {} bytes; the server keeps at most {APPLICATION_NAME_MAX_BYTES}",
            name.len()
        ));
    }
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(
            "must be printable ASCII: the server replaces anything else with '?'".to_owned(),
        );
    }
    Ok(())
}

/// A path, when set, is not empty.
fn a_path(path: &Option<PathBuf>, _: &DbConfig) -> std::result::Result<(), String> {
    match path {
        Some(path) if path.as_os_str().is_empty() => Err("is an empty path".to_owned()),
        _ => Ok(()),
    }
}
