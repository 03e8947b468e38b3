//! Metadata: a JSON object within the size and depth limits that jsonb
//! stores as it was given.

use super::*;

/// Metadata: a JSON object within the size and depth limits, with no NUL in
/// any key or string (PostgreSQL's jsonb cannot store `\u0000`).
pub fn metadata(value: &serde_json::Value, policy: &MetadataPolicy) -> Result<()> {
    json_object("metadata", value, policy)
}

/// A metadata search filter: the same rules as [`metadata`].
pub fn metadata_filter(value: &serde_json::Value, policy: &MetadataPolicy) -> Result<()> {
    json_object("filter", value, policy)
}

pub(super) fn json_object(
    field: &'static str,
    value: &serde_json::Value,
    policy: &MetadataPolicy,
) -> Result<()> {
    use serde_json::Value;

    if policy.max_depth > METADATA_DEPTH_LIMIT {
        return Err(Error::config(format!(
            "MetadataPolicy::max_depth {} exceeds {METADATA_DEPTH_LIMIT}, the deepest \
             metadata the crate can read back",
            policy.max_depth
        )));
    }
    if !value.is_object() {
        return Err(Error::validation(field, "must be a JSON object"));
    }
    // Iterative walk: a value built in code can nest deeper than the stack.
    // It also adds up the length of the compact JSON text (what
    // `serde_json::to_vec` would write), so the size is known without
    // writing the text.
    let mut bytes = 0usize;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > policy.max_depth {
            return Err(Error::validation(
                field,
                format!("nests deeper than {} levels", policy.max_depth),
            ));
        }
        match value {
            Value::String(s) => bytes = bytes.saturating_add(json_string_len(field, s)?),
            Value::Array(items) => {
                // `[`, `]` and a comma between items.
                bytes = bytes.saturating_add(2 + items.len().saturating_sub(1));
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Value::Object(map) => {
                // `{`, `}`, a comma between entries, a colon in each.
                bytes = bytes.saturating_add(2 + map.len().saturating_sub(1) + map.len());
                for (key, v) in map {
                    bytes = bytes.saturating_add(json_string_len(field, key)?);
                    stack.push((v, depth + 1));
                }
            }
            Value::Number(n) => {
                number_survives_jsonb(field, n)?;
                bytes = bytes.saturating_add(json_number_len(n));
            }
            Value::Null | Value::Bool(true) => bytes = bytes.saturating_add(4),
            Value::Bool(false) => bytes = bytes.saturating_add(5),
        }
    }
    if bytes > policy.max_bytes {
        return Err(Error::validation(
            field,
            format!("is {bytes} bytes, more than {}", policy.max_bytes),
        ));
    }
    Ok(())
}

/// The length of `s` as serde_json writes it: quoted, with `"` and `\` and
/// the control characters escaped (two bytes for the short escapes, six for
/// `\u00XX`); everything else, UTF-8 included, as is. A NUL (which `jsonb`
/// cannot store) is a validation error of `field`, found in the same pass.
pub(super) fn json_string_len(field: &'static str, s: &str) -> Result<usize> {
    let mut len = 2usize;
    for b in s.bytes() {
        len = len.saturating_add(match b {
            b'"' | b'\\' | b'\x08' | b'\t' | b'\n' | b'\x0c' | b'\r' => 2,
            0x00 => return Err(nul_in(field)),
            0x01..=0x1f => 6,
            _ => 1,
        });
    }
    Ok(len)
}

/// The length of `n` as serde_json writes it, which is its `Display` form
/// (itoa for integers, ryu for floats), counted without a buffer.
pub(super) fn json_number_len(n: &serde_json::Number) -> usize {
    // Integers by their digits; only floats need the formatter.
    if let Some(u) = n.as_u64() {
        return u.checked_ilog10().map_or(1, |digits| digits as usize + 1);
    }
    if let Some(i) = n.as_i64() {
        return 1 + i
            .unsigned_abs()
            .checked_ilog10()
            .map_or(1, |d| d as usize + 1);
    }
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut count, format_args!("{n}"));
    count.0
}

/// A JSON number the crate can read back after `jsonb` stored it.
///
/// Integers survive exactly. A float is stored as an exact `numeric`, which
/// the server prints in plain decimal notation (no exponent): very large or
/// very small floats come back as hundreds of digits that the JSON reader
/// may round to another value or to infinity, which it refuses. Rust's
/// `Display` for `f64` prints the same plain notation, so parsing it tells
/// exactly what reading the row back would give.
pub(super) fn number_survives_jsonb(field: &'static str, n: &serde_json::Number) -> Result<()> {
    if n.is_i64() || n.is_u64() {
        return Ok(());
    }
    let Some(value) = n.as_f64() else {
        return Ok(());
    };
    // Checked for every float: without its `float_roundtrip` feature the
    // JSON reader may be one unit off even on 17-digit values.
    let plain = value.to_string();
    match serde_json::from_str::<serde_json::Number>(&plain) {
        Ok(back) if back.as_f64() == Some(value) => Ok(()),
        _ => Err(Error::validation(
            field,
            format!("holds the number {n}, which does not read back unchanged from jsonb"),
        )),
    }
}
