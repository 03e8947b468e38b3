//! Durations written with a unit (`250ms`, `30s`, `5m`, `1h`).

use std::time::Duration;

use crate::error::{Error, Result};

/// How much of a refused text an error quotes: enough to recognise it, and
/// no more, so that a megabyte of junk in a variable does not become a
/// megabyte of log line.
const QUOTED_CHARS: usize = 40;

/// Parses a duration the way every duration setting of
/// [`DbConfig`](super::DbConfig) is read, for a service's own settings to
/// read theirs alike: a number and a unit, as in `250ms`, `30s`, `5m`,
/// `1h`, `1m30s`, `2h 15m` or `1.5s` (units: `ns`, `us`, `ms`, `s`, `m`,
/// `h`, `d`, `w`, and humantime's other spellings: `sec`, `min`, `hours`,
/// `M` or `month`, `y` or `year`…); surrounding whitespace is ignored.
///
/// Refused with an [`Error::Config`] that quotes the text (at most its first
/// 40 characters), never a panic: an empty or blank text, a number without
/// a unit (`5`), an unknown unit (`5parsecs`), a negative duration (`-5s`),
/// and a value beyond [`Duration::MAX`] (`99999999999999999999s`,
/// `600000000000y`). `off` is not a duration either: a setting that can be
/// off decides that itself.
///
/// ```
/// use std::time::Duration;
/// use voidrunner_db::config::parse_duration;
///
/// assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
/// assert_eq!(parse_duration(" 1m30s ")?, Duration::from_secs(90));
/// let err = parse_duration("5").unwrap_err();
/// assert!(matches!(err, voidrunner_db::Error::Config { .. }), "{err}");
/// # Ok::<(), voidrunner_db::Error>(())
/// ```
pub fn parse_duration(text: &str) -> Result<Duration> {
    parse(text).map_err(Error::config)
}

/// [`parse_duration`] with the reason as text, for a setting's error to
/// name the setting before it.
pub(super) fn parse(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "an empty value is not a duration: write one such as 30s, 1m30s or 1.5s".into(),
        );
    }
    let quoted = quote(text);
    // humantime would only say "expected number at 0".
    if text.starts_with('-') {
        return Err(format!("`{quoted}`: a duration cannot be negative"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{quoted}` is not a duration such as 30s, 1m30s or 1.5s: {e}"))
}

pub(super) fn parse_optional(text: &str) -> std::result::Result<Option<Duration>, String> {
    match text.trim() {
        "off" | "none" => Ok(None),
        other => parse(other).map(Some),
    }
}

/// `text`, cut after [`QUOTED_CHARS`] characters (on a character boundary).
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
