//! Durations written with a unit (`250ms`, `30s`, `5m`, `1h`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// humantime's syntax: `250ms`, `30s`, `1m30s`, `1.5s`, `2h 15m`; a unit
/// is required.
pub(super) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 30s, 1m30s or 1.5s: {e}"))
}

pub(super) fn parse_optional(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "off" | "none" => Ok(None),
        other => parse(other).map(Some),
    }
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

pub(super) mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_optional(&text).map_err(serde::de::Error::custom),
        }
    }
}
