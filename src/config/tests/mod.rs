//! Unit tests of the configuration, by theme.

use std::collections::HashMap;

use super::*;

mod durations;
mod pooler;
mod ranges;
mod replicas;
mod role;
mod sources;
mod table;
mod tls;
mod urls;

/// Variables for `DbConfig::from_lookup`.
fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}
