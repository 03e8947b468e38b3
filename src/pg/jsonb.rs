//! Metadata bound as `jsonb` so that it reads back exactly as it was sent.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use postgres_types::private::BytesMut;
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use serde::Serialize as _;

/// A JSON value bound as a `jsonb` parameter.
///
/// `jsonb` stores numbers as exact `numeric`s and prints them back in plain
/// notation, keeping the scale they were written with. serde_json writes an
/// integral float from 1e16 up in exponent form (`1e16`), which the server
/// stores as the integer 10000000000000000, so it would come back as an
/// integer, not the float that was sent. Here such floats are written in
/// plain notation with a `.0`, which the server keeps as a float.
pub(crate) struct Jsonb<'a>(pub(crate) &'a serde_json::Value);

impl fmt::Debug for Jsonb<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

struct KeepFloats;

impl serde_json::ser::Formatter for KeepFloats {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if value.is_finite() && value.fract() == 0.0 && value.abs() >= 1e16 {
            // Display prints an integral float's digits in full.
            write!(writer, "{value}.0")
        } else {
            serde_json::ser::CompactFormatter.write_f64(writer, value)
        }
    }
}

/// Writes the JSON text of `value` as [`Jsonb`] sends it.
fn write_text<W: io::Write>(value: &serde_json::Value, out: W) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(out, KeepFloats))
}

/// The JSON text of `value` as [`Jsonb`] sends it.
#[cfg(test)]
fn to_text(value: &serde_json::Value) -> serde_json::Result<Vec<u8>> {
    let mut text = Vec::new();
    write_text(value, &mut text)?;
    Ok(text)
}

/// Appends to the parameter buffer, so the text is written once, in place,
/// rather than into a buffer of its own and then copied.
struct Append<'a>(&'a mut BytesMut);

impl io::Write for Append<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        if *ty == Type::JSONB {
            // The version byte of jsonb's binary format.
            out.extend_from_slice(&[1]);
        }
        write_text(self.0, Append(out))?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn large_integral_floats_keep_their_point() {
        let text = to_text(&json!({"a": 1e16, "b": -1.8e19, "c": 0.5, "d": 7, "e": 1e300}))
            .map(String::from_utf8)
            .unwrap()
            .unwrap();
        assert!(text.contains("\"a\":10000000000000000.0"), "{text}");
        assert!(text.contains("\"b\":-18000000000000000000.0"), "{text}");
        assert!(
            text.contains("\"c\":0.5") && text.contains("\"d\":7"),
            "{text}"
        );
        // What the server prints back parses to the same value.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            json!({"a": 1e16, "b": -1.8e19, "c": 0.5, "d": 7, "e": 1e300})
        );
    }
}
