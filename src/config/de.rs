//! Serde sources (a config file): a map of field names to values, read by
//! setting as every other source is. Unknown and repeated fields are
//! refused.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::draft::{Draft, Source, Values};
use super::settings::{NAMES, SETTINGS};
use super::value::Value;
use super::*;

impl<'de> Deserialize<'de> for DbConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let values = d.deserialize_struct("DbConfig", NAMES, Fields)?;
        Draft::read(values, Source::Fields).map_err(|e| de::Error::custom(without_prefix(e)))
    }
}

/// The fields of a serde source, by setting.
struct Fields;

impl<'de> Visitor<'de> for Fields {
    type Value = Values;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of DbConfig settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Values, A::Error> {
        let mut values = Values::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(index) = SETTINGS.iter().position(|s| s.name == key) else {
                return Err(de::Error::unknown_field(&key, NAMES));
            };
            let value = map.next_value::<Value>()?;
            if values.insert(index, value).is_some() {
                return Err(de::Error::duplicate_field(SETTINGS[index].name));
            }
        }
        Ok(values)
    }
}
