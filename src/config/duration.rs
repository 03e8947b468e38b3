//! Durations written with a unit (`250ms`, `30s`, `5m`, `1h`).

use std::time::Duration;

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
