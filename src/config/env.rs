//! The environment: `DATABASE_URL` and the `VOIDRUNNER_DB_*` variables,
//! read by setting as every other source is.

use super::draft::{Draft, Source, Values};
use super::settings::SETTINGS;
use super::value::Value;
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
        let config = Draft::read(variables(&lookup, true), Source::Environment)?;
        config.validate()?;
        Ok(config)
    }

    /// These settings with every `VOIDRUNNER_DB_*` variable `lookup` finds
    /// applied over them (`DATABASE_URL` is not read), then validated: what
    /// the test harness does with the server it found.
    #[cfg(feature = "test-support")]
    pub(crate) fn overlay_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let config = Draft::over(self)
            .apply(variables(&lookup, false), Source::Environment)?
            .finish();
        config.validate()?;
        Ok(config)
    }
}

/// The value of every setting's variable that `lookup` finds, `url`'s
/// (`DATABASE_URL`) only if `with_url`.
fn variables(lookup: &impl Fn(&str) -> Option<String>, with_url: bool) -> Values {
    SETTINGS
        .iter()
        .enumerate()
        .filter(|(_, setting)| with_url || setting.name != "url")
        .filter_map(|(index, setting)| Some((index, Value::Text(lookup(setting.env)?))))
        .collect()
}
