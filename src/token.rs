//! Read-your-writes tokens and the consistency a read asks for: plain data,
//! shared by the pool (which routes), the transactions (which hand tokens
//! out at commit) and the executor (which checks them on a replica).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A position in the primary's write-ahead log, handed out after a write:
/// a read given it ([`Consistency::AtLeast`]) sees that write, and every
/// write committed before it.
///
/// It is the primary's WAL insert position (`pg_current_wal_insert_lsn()`)
/// taken after the commit, so it covers the commit record even when the
/// commit was asynchronous (`synchronous_commit = off`). A replica has the
/// write once it has replayed that far (`pg_last_wal_replay_lsn()`).
///
/// # Format
///
/// A token is text in PostgreSQL's own `pg_lsn` form, two hexadecimal
/// numbers of at most 8 digits separated by a slash (`16/B374D848`), as
/// `Display`, `FromStr` and serde write and read it. A service hands it to
/// its client (a header, a cookie) and gets it back on the next request.
/// The format is stable: a token written by any release of this crate is
/// read by every later one. It carries no secret, and a forged or stale
/// one can only make a read wait (at most
/// [`replica_wait`](crate::DbConfig::replica_wait)) and go to the primary:
/// never see less than it would without a token.
///
/// Tokens of one primary only: after a failover to a new primary (a new
/// timeline), a token of the old one still orders correctly, because a
/// promoted standby continues the same position numbering.
///
/// ```
/// use voidrunner_db::ReadToken;
///
/// let token: ReadToken = "16/B374D848".parse()?;
/// assert_eq!(token.to_string(), "16/B374D848");
/// assert_eq!(token.lsn(), 0x16_B374_D848);
/// assert!("16/B374D848/0".parse::<ReadToken>().is_err());
/// # Ok::<(), voidrunner_db::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadToken(u64);

impl fmt::Debug for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadToken({self})")
    }
}

impl ReadToken {
    /// The token of a WAL position, as a 64-bit number.
    pub const fn from_lsn(lsn: u64) -> Self {
        ReadToken(lsn)
    }

    /// The WAL position, as a 64-bit number.
    pub const fn lsn(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for ReadToken {
    type Err = Error;

    /// Reads the `pg_lsn` form; anything else is an
    /// [`Error::Validation`] of the field `token` (never quoting more than
    /// its first 32 characters: it came from a client).
    fn from_str(text: &str) -> Result<Self> {
        let refuse = || {
            let shown: String = text.chars().take(32).collect();
            Error::validation(
                "token",
                format!(
                    "expected a WAL position such as 16/B374D848 (two hexadecimal numbers of \
                     at most 8 digits), not `{shown}`"
                ),
            )
        };
        let (high, low) = text.split_once('/').ok_or_else(refuse)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(refuse());
            }
            u64::from_str_radix(part, 16).map_err(|_| refuse())
        };
        Ok(ReadToken((half(high)? << 32) | half(low)?))
    }
}

impl serde::Serialize for ReadToken {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ReadToken {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a read through a handle may go: see
/// [`Database::reads`](crate::Database::reads) and
/// [Scaling out](crate::docs::scaling).
///
/// Writes, claims, transactions, migrations and LISTEN always go to the
/// primary, whatever a handle's consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// The primary: never stale. The default.
    #[default]
    Primary,
    /// A healthy replica whose replay lag was within
    /// [`replica_max_lag`](crate::DbConfig::replica_max_lag) at its last
    /// probe (so at most that lag plus one
    /// [`replica_probe_interval`](crate::DbConfig::replica_probe_interval)
    /// stale); the primary when there is none.
    AnyReplica,
    /// A replica that has replayed the token's position, checked in the
    /// same round trip as the read; when none has, the read waits up to
    /// [`replica_wait`](crate::DbConfig::replica_wait) for one to catch up,
    /// then reads from the primary. Never staler than the token, and never
    /// an error because replicas lag.
    AtLeast(ReadToken),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_in_the_pg_lsn_form() {
        for lsn in [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, 0x16_B374_D848, u64::MAX] {
            let token = ReadToken::from_lsn(lsn);
            let text = token.to_string();
            assert_eq!(text.parse::<ReadToken>().unwrap(), token, "{text}");
            let json = serde_json::to_string(&token).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ReadToken>(&json).unwrap(), token);
        }
        assert_eq!(
            ReadToken::from_lsn(u64::MAX).to_string(),
            "FFFFFFFF/FFFFFFFF"
        );
        assert_eq!("0/16b3748".parse::<ReadToken>().unwrap().lsn(), 0x16B_3748);
    }

    #[test]
    fn malformed_tokens_are_validation_errors() {
        for text in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "123456789/0",
            "0/123456789",
            "x/1",
            "-1/1",
            "+1/1",
            " 1/1",
            "1/1 ",
            "0x1/1",
        ] {
            let err = text.parse::<ReadToken>().unwrap_err();
            assert!(err.is_validation(), "{text:?}: {err}");
        }
        let long = "z".repeat(10_000);
        let err = long.parse::<ReadToken>().unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
        assert!(serde_json::from_str::<ReadToken>("12").is_err());
    }

    #[test]
    fn tokens_order_as_positions() {
        let a: ReadToken = "0/FFFFFFFF".parse().unwrap();
        let b: ReadToken = "1/0".parse().unwrap();
        assert!(a < b);
    }
}
