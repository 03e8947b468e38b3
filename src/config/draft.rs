//! The one way a configuration is read, whatever the source: the values a
//! source gives (the URL, the environment, the fields of a serde source)
//! are collected by setting, then applied over the defaults in the order of
//! the [table](super::settings), each by its setting's reader.

use std::collections::BTreeMap;
use std::path::Path;

use super::settings::{Read, SETTINGS, Setting, defaults};
use super::value::Value;
use super::*;

/// The values a source gives, by the index of their setting in
/// [`SETTINGS`] (so they apply in the table's order: the URL first, then
/// the settings that override its TLS keys).
pub(super) type Values = BTreeMap<usize, Value>;

/// Where values come from: how messages name a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A connection string alone ([`DbConfig::from_url`]): its messages
    /// are the URL's.
    Url,
    /// Environment variables: named by variable.
    Environment,
    /// A serde source: named by field.
    Fields,
}

impl Source {
    /// What `setting` is called in this source.
    pub(super) fn name(self, setting: &Setting) -> &'static str {
        match self {
            Source::Environment => setting.env,
            Source::Url | Source::Fields => setting.name,
        }
    }

    /// The [`Error::Config`] of a bad value of `setting`.
    fn error(self, setting: &Setting, message: String) -> Error {
        match self {
            Source::Url => Error::config(message),
            _ => Error::config(format!("{}: {message}", self.name(setting))),
        }
    }
}

/// A configuration being read.
pub(super) struct Draft {
    pub(super) config: DbConfig,
    /// The settings a source gave (the URL's `sslmode` counts as
    /// `ssl_mode`).
    given: Vec<&'static str>,
}

impl Draft {
    /// A configuration from `values` over the defaults; the URL is
    /// required. Not validated.
    pub(super) fn read(values: Values, source: Source) -> Result<DbConfig> {
        if let Some((index, url)) = SETTINGS.iter().enumerate().find(|(_, s)| s.name == "url")
            && values.get(&index).is_none_or(Value::is_blank)
        {
            return Err(Error::config(format!("{} is not set", source.name(url))));
        }
        let draft = Draft {
            config: defaults(),
            given: Vec::new(),
        };
        Ok(draft.apply(values, source)?.finish())
    }

    /// `config`, to apply values over. Its URL counts as given, and so does
    /// its TLS mode, unless it is the default `prefer` (which
    /// `sslrootcert=system` then turns into `verify-full`, as in a URL).
    pub(super) fn over(config: DbConfig) -> Self {
        let system = config.ssl_root_cert.as_deref() == Some(Path::new(SYSTEM_ROOTS));
        let mut given = vec!["url"];
        if config.ssl_mode != SslMode::Prefer || system {
            given.push("ssl_mode");
        }
        Draft { config, given }
    }

    /// Each value applied by its setting's reader, in the table's order; a
    /// blank value leaves a setting that reads [`Read::UnlessBlank`] or
    /// [`Read::ConnectionString`] as it was.
    pub(super) fn apply(mut self, values: Values, source: Source) -> Result<Self> {
        for (index, value) in values {
            let Some(setting) = SETTINGS.get(index) else {
                continue;
            };
            if setting.read != Read::Always && value.is_blank() {
                continue;
            }
            (setting.apply)(&mut self, value).map_err(|message| source.error(setting, message))?;
            self.given.push(setting.name);
        }
        Ok(self)
    }

    /// The configuration read. The one setting whose default depends on
    /// another: with `sslrootcert=system` and no mode given, the mode is
    /// `verify-full` (libpq 16); a mode given stays, and `validate` refuses
    /// a weaker one.
    pub(super) fn finish(self) -> DbConfig {
        let mut config = self.config;
        if !self.given.contains(&"ssl_mode")
            && config.ssl_root_cert.as_deref() == Some(Path::new(SYSTEM_ROOTS))
        {
            config.ssl_mode = SslMode::VerifyFull;
        }
        config
    }
}

/// The value of `url` alone.
pub(super) fn url_only(url: &str) -> Values {
    SETTINGS
        .iter()
        .position(|s| s.name == "url")
        .map(|index| (index, Value::Text(url.to_owned())))
        .into_iter()
        .collect()
}

/// The reader of `url`: the driver's settings, and the TLS keys of the
/// connection string (which the settings after it in the table override).
/// Errors never quote the string (it may hold a password).
pub(super) fn read_url(draft: &mut Draft, value: Value) -> std::result::Result<(), String> {
    let Value::Text(url) = value else {
        return Err("expected a connection string".to_owned());
    };
    let (connection, ssl) = parse_url(&url).map_err(without_prefix)?;
    let config = &mut draft.config;
    // The string's application name is the setting's value (which the
    // variable or field overrides, as for the TLS keys): one name for the
    // configuration and its sessions.
    if let Some(name) = connection.get_application_name() {
        config.application_name = name.to_owned();
    }
    config.connection = connection;
    config.ssl_root_cert = ssl.root_cert;
    config.ssl_cert = ssl.cert;
    config.ssl_key = ssl.key;
    if let Some(mode) = ssl.mode {
        config.ssl_mode = mode;
        draft.given.push("ssl_mode");
    }
    Ok(())
}
