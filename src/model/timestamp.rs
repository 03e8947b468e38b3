use std::fmt;

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::InvalidText;

/// A UTC instant with microsecond precision, PostgreSQL's `timestamptz`
/// resolution.
///
/// Built only through [`Timestamp::now`], [`Timestamp::from`] and
/// [`str::parse`], which drop the nanoseconds, so a value written and read
/// back compares equal.
///
/// # Text form
///
/// [`Display`](fmt::Display), [`FromStr`](std::str::FromStr) and serde share one text form:
/// RFC 3339 in UTC with up to six fractional digits
/// (`2026-01-02T01:04:05.123456Z`). RFC 3339 has no years before 0000,
/// which PostgreSQL stores (down to 4714 BC); such an instant is written in
/// the ISO 8601 expanded form `-0100-01-02T03:04:05.000000Z`, which
/// [`FromStr`](std::str::FromStr) reads too. So `t.to_string().parse() == Ok(t)` for every
/// `Timestamp`, and serialising never fails.
///
/// ```
/// use voidrunner_db::Timestamp;
///
/// let t: Timestamp = "2026-01-02T03:04:05.123456789+02:00".parse()?;
/// assert_eq!(t.to_string(), "2026-01-02T01:04:05.123456Z"); // UTC, microseconds
/// assert_eq!(t.to_string().parse::<Timestamp>()?, t);
/// assert!("yesterday".parse::<Timestamp>().unwrap_err().is_validation());
/// # Ok::<(), voidrunner_db::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ToSql, FromSql)]
#[postgres(transparent)]
pub struct Timestamp(OffsetDateTime);

/// The text form of the instants RFC 3339 cannot write (years before 0000).
const EXPANDED: &[BorrowedFormatItem<'_>] = format_description!(
    "[year sign:mandatory]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_text(s).map_err(E::custom)
            }
        }

        d.deserialize_str(Visitor)
    }
}

impl Timestamp {
    /// Reads RFC 3339 with any offset (converted to UTC) and any number of
    /// fractional digits (cut to microseconds), or the expanded form
    /// [`Display`](fmt::Display) writes for years before 0000. Anything
    /// else is an [`InvalidText`] on the field `timestamp` (and, through
    /// `FromStr`, an [`Error::Validation`](crate::Error::Validation)).
    pub(crate) fn parse_text(s: &str) -> Result<Self, InvalidText> {
        match OffsetDateTime::parse(s, &Rfc3339) {
            // An offset may carry the instant past the edge of the range in
            // UTC (9999-12-31T23:00-05:00): refused, not clamped to another
            // instant.
            Ok(t) => t
                .checked_to_offset(time::UtcOffset::UTC)
                .map(Timestamp::from)
                .ok_or_else(|| InvalidText {
                    field: "timestamp",
                    message: "lies outside the representable range (years -9999 to 9999) in UTC"
                        .to_owned(),
                }),
            Err(rfc3339) => time::PrimitiveDateTime::parse(s, EXPANDED)
                .map(|t| t.assume_utc().into())
                .map_err(|_| {
                    // The input is echoed, cut short: it may be anything.
                    let shown: String = s.chars().take(64).collect();
                    let more = if shown.len() < s.len() { "…" } else { "" };
                    InvalidText {
                        field: "timestamp",
                        message: format!("`{shown}{more}` is not an RFC 3339 timestamp: {rfc3339}"),
                    }
                }),
        }
    }
}

impl Timestamp {
    /// Now, truncated to the microsecond.
    pub fn now() -> Self {
        OffsetDateTime::now_utc().into()
    }

    /// The instant as a `time` value.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// The instant `micros` microseconds after the Unix epoch, if representable.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .ok()
            .map(Timestamp)
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        // The same instant in UTC; one at the very edge of `time`'s range
        // whose UTC date falls outside it (9999-12-31 23:00 -05:00) is
        // clamped to the edge rather than panicking.
        let t = t
            .checked_to_offset(time::UtcOffset::UTC)
            .unwrap_or(if t.offset().is_negative() {
                time::PrimitiveDateTime::MAX.assume_utc()
            } else {
                time::PrimitiveDateTime::MIN.assume_utc()
            });
        let micros = t.nanosecond() / 1_000 * 1_000;
        // Always in range: fewer nanoseconds than before.
        Timestamp(t.replace_nanosecond(micros).unwrap_or(t))
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // RFC 3339 fails only on years it cannot write; the expanded form
        // covers every year `time` represents.
        match self.0.format(&Rfc3339).or_else(|_| self.0.format(EXPANDED)) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_at_the_edge_of_the_range_never_panics() {
        let edge = time::macros::datetime!(+9999-12-31 23:00 -05:00);
        let t = Timestamp::from(edge);
        assert_eq!(
            OffsetDateTime::from(t),
            time::PrimitiveDateTime::MAX
                .assume_utc()
                .replace_nanosecond(999_999_000)
                .unwrap()
        );
        let low = time::macros::datetime!(-9999-01-01 01:00 +05:00);
        let _ = Timestamp::from(low);
    }

    #[test]
    fn truncates_to_microseconds() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.123_456_789 +02:00);
        let ts = Timestamp::from(t);
        assert_eq!(ts.as_offset_date_time().nanosecond(), 123_456_000);
        assert_eq!(ts.as_offset_date_time().offset(), time::UtcOffset::UTC);
        assert_eq!(ts, Timestamp::from(ts.as_offset_date_time()));
        assert_eq!(Timestamp::from_unix_micros(ts.unix_micros()), Some(ts));
        assert_eq!(ts.to_string(), "2026-01-02T01:04:05.123456Z");
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "\"2026-01-02T01:04:05.123456Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        let nanos =
            serde_json::from_str::<Timestamp>("\"2026-01-02T01:04:05.123456789Z\"").unwrap();
        assert_eq!(nanos, ts);
    }

    #[test]
    fn display_and_from_str_round_trip() {
        let instants = [
            Timestamp::now(),
            Timestamp::from_unix_micros(0).unwrap(),
            Timestamp::from_unix_micros(1).unwrap(),
            Timestamp::from_unix_micros(-1).unwrap(),
            // PostgreSQL's earliest instant (4714-11-24 BC): no RFC 3339 form.
            Timestamp::from_unix_micros(crate::validate::POSTGRES_MIN_UNIX_MICROS).unwrap(),
            Timestamp::from(time::macros::datetime!(-0001-12-31 23:59:59.999_999 UTC)),
            Timestamp::from(time::macros::datetime!(0000-01-01 00:00 UTC)),
            Timestamp::from(time::macros::datetime!(9999-12-31 23:59:59.999_999 UTC)),
        ];
        for t in instants {
            let text = t.to_string();
            assert_eq!(text.parse::<Timestamp>().unwrap(), t, "{text}");
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
        assert_eq!(
            Timestamp::from(time::macros::datetime!(-0100-01-02 03:04:05 UTC)).to_string(),
            "-0100-01-02T03:04:05.000000Z"
        );
    }

    #[test]
    fn from_str_reads_offsets_and_cuts_nanoseconds() {
        let t: Timestamp = "2026-01-02T03:04:05.123456789+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-02T01:04:05.123456Z");
        let whole: Timestamp = "2026-01-02T01:04:05Z".parse().unwrap();
        assert_eq!(whole.to_string(), "2026-01-02T01:04:05Z");
        assert_eq!(whole.unix_micros() + 123_456, t.unix_micros());
    }

    #[test]
    fn from_str_refuses_instants_past_the_edge_in_utc() {
        for edge in [
            "9999-12-31T23:00:00-05:00",
            "9999-12-31T23:59:59-23:59",
            "-9999-01-01T00:00:00+01:00",
        ] {
            let err = edge.parse::<Timestamp>().unwrap_err();
            assert!(err.is_validation(), "{edge}: {err:?}");
        }
        let last: Timestamp = "9999-12-31T23:59:59.999999Z".parse().unwrap();
        assert_eq!(last.to_string(), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn from_str_refuses_garbage_with_a_validation_error() {
        for garbage in [
            "",
            "yesterday",
            "2026-01-02",
            "2026-01-02 01:04:05",
            "2026-13-02T01:04:05Z",
            "2026-01-02T01:04:05",
            " 2026-01-02T01:04:05Z",
            "1767316245",
        ] {
            let err = garbage.parse::<Timestamp>().unwrap_err();
            assert!(err.is_validation(), "{garbage:?}: {err}");
            assert_eq!(err.field(), Some("timestamp"), "{garbage:?}");
        }
        let long = "x".repeat(10_000);
        let message = long.parse::<Timestamp>().unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
        let err = serde_json::from_str::<Timestamp>("\"soon\"").unwrap_err();
        assert!(
            err.to_string().contains("not an RFC 3339 timestamp"),
            "{err}"
        );
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }
}
