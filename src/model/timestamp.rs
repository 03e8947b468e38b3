use std::fmt;

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A UTC instant with microsecond precision, PostgreSQL's `timestamptz`
/// resolution.
///
/// Built only through [`Timestamp::now`] and [`Timestamp::from`], which drop
/// the nanoseconds, so a value written and read back compares equal.
/// Serialised as RFC 3339.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSql, FromSql)]
#[postgres(transparent)]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through From, so nanoseconds in the input are dropped here too.
        time::serde::rfc3339::deserialize(d).map(Timestamp::from)
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
        let t = t.to_offset(time::UtcOffset::UTC);
        let micros = t.nanosecond() / 1_000 * 1_000;
        Timestamp(
            t.replace_nanosecond(micros)
                .expect("nanosecond stays in range"),
        )
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .0
            .format(&time::format_description::well_known::Rfc3339)
        {
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
}
