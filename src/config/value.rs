//! A setting's value as a source gives it, and how each type of setting
//! reads one: the same reading for the environment, serde sources and the
//! URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::duration;
use super::modes::{PoolerMode, SslMode, without_prefix};
use super::replicas::parse_replicas;
use super::url::parse_direct_url;

/// A value of one setting: text, as an environment variable holds it, or
/// null from a serde source. A serde source's numbers and booleans are read
/// as the text they are written as (`7`, `true`), so each means what it
/// means in a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Text(String),
    Null,
}

impl Value {
    /// Null, or text that is empty or white space.
    pub(super) fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(text) => text.trim().is_empty(),
        }
    }
}

/// "expected `what`, not null".
fn not_null(what: &str) -> String {
    format!("expected {what}, not null")
}

/// How a type of setting reads a [`Value`]; `Err` says what is wrong with
/// it (the caller names the setting).
pub(super) trait FromValue: Sized {
    fn from_value(value: Value) -> Result<Self, String>;
}

/// A whole number: digits, white space around them ignored.
fn whole<T: FromStr<Err = std::num::ParseIntError>>(value: Value) -> Result<T, String> {
    match value {
        Value::Text(text) => text.trim().parse().map_err(|e| {
            // A number setting holds no secret: the value is quoted, cut
            // short.
            let shown: String = text.trim().chars().take(32).collect();
            format!("expected a whole number of 0 or more, not `{shown}` ({e})")
        }),
        Value::Null => Err(not_null("a whole number")),
    }
}

impl FromValue for usize {
    fn from_value(value: Value) -> Result<Self, String> {
        whole(value)
    }
}

impl FromValue for u32 {
    fn from_value(value: Value) -> Result<Self, String> {
        whole(value)
    }
}

impl FromValue for Duration {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => duration::parse(&text),
            Value::Null => Err(not_null("a duration with a unit, such as 30s")),
        }
    }
}

/// A duration, or `off` (also `none`, or null) for none.
impl FromValue for Option<Duration> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => duration::parse_optional(&text),
            Value::Null => Ok(None),
        }
    }
}

/// `true`, `on`, `1`, `yes` or `false`, `off`, `0`, `no`, in any case.
impl FromValue for bool {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "1" | "yes" => Ok(true),
                "false" | "off" | "0" | "no" => Ok(false),
                other => Err(format!("`{other}` is not true or false")),
            },
            Value::Null => Err(not_null("true or false")),
        }
    }
}

/// Text as it is.
impl FromValue for String {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text),
            Value::Null => Err(not_null("text")),
        }
    }
}

/// A name, as it is: the server's names may hold any character but NUL
/// (which `validate` refuses).
impl FromValue for Option<String> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(Some(text)),
            Value::Null => Err(not_null("a role name")),
        }
    }
}

impl FromValue for PoolerMode {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => PoolerMode::parse(&text),
            Value::Null => Err(not_null("direct, session or transaction")),
        }
    }
}

impl FromValue for SslMode {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => text.parse().map_err(without_prefix),
            Value::Null => Err(not_null("an sslmode such as verify-full")),
        }
    }
}

/// A file path.
impl FromValue for Option<PathBuf> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(Some(PathBuf::from(text))),
            Value::Null => Err(not_null("a file path")),
        }
    }
}

/// The direct URL. Its errors never quote it (it may hold a password).
impl FromValue for Option<tokio_postgres::Config> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => parse_direct_url(&text).map(Some).map_err(without_prefix),
            Value::Null => Err(not_null("a connection string")),
        }
    }
}

/// The streaming replicas: a list of connection strings, one node per
/// host. Its errors never quote them (they may hold passwords).
impl FromValue for Vec<tokio_postgres::Config> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => parse_replicas(&text).map_err(without_prefix),
            Value::Null => Err(not_null("connection strings")),
        }
    }
}

/// Any value a self-describing format (JSON, TOML, YAML…) holds for a
/// setting.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text, a number, true or false, or null")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Text(b.to_string()))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Text(n.to_string()))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Value, E> {
        Ok(Value::Text(n.to_string()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Text(n.to_string()))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Value, E> {
        Ok(Value::Text(n.to_string()))
    }

    /// With its fraction, `.0` included: no whole number is read from it.
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Text(format!("{x:?}")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        Ok(Value::Text(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Value, E> {
        Ok(Value::Text(text))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
}
