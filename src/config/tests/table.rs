//! The table of settings: whole, and the same as the documented one.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::draft::Values;
use crate::config::settings::{NAMES, SETTINGS, Setting};
use crate::config::value::Value;

#[test]
fn every_setting_is_named_once_with_a_variable_of_its_own() {
    let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(names, NAMES);
    for (index, setting) in SETTINGS.iter().enumerate() {
        let later = &SETTINGS[index + 1..];
        assert!(
            later.iter().all(|s| s.name != setting.name),
            "{}",
            setting.name
        );
        assert!(
            later.iter().all(|s| s.env != setting.env),
            "{}",
            setting.env
        );
        let expected = match setting.name {
            "url" => DATABASE_URL_ENV.to_owned(),
            name => format!(
                "VOIDRUNNER_DB_{}",
                name.replace('_', "").to_ascii_uppercase()
            ),
        };
        // The variables are the field names in capitals, without their
        // underscores only for the TLS settings (libpq's `sslmode`…).
        let plain = format!("VOIDRUNNER_DB_{}", setting.name.to_ascii_uppercase());
        assert!(
            setting.env == plain || setting.env == expected,
            "{}: {}",
            setting.name,
            setting.env
        );
    }
    // The URL comes first: the TLS settings after it override its keys.
    assert_eq!(SETTINGS[0].name, "url");
}

#[test]
fn the_defaults_are_valid() {
    let config = DbConfig::from_url("postgres://u@h/db").unwrap();
    config.validate().unwrap();
    for setting in SETTINGS {
        assert_eq!((setting.check)(&config), Ok(()), "{}", setting.name);
    }
}

/// The header line of the documented settings table.
const HEADER: &str = "| field | env variable | default | accepted | maps to |";

/// A row of the documented table: the settings it names (a row may name
/// more than one, `ssl_cert`, `ssl_key`), their variables, and the default.
#[derive(Debug)]
struct Documented {
    file: PathBuf,
    line: String,
    fields: Vec<String>,
    variables: Vec<String>,
    default: String,
}

/// README.md and every markdown file under src/.
fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The words in backticks of `cell` made only of `letters`, in order.
fn quoted(cell: &str, letters: fn(char) -> bool) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !word.is_empty() && word.chars().all(letters))
        .map(str::to_owned)
        .collect()
}

/// The rows of every table headed by [`HEADER`] in `file`.
fn documented_rows(file: &Path) -> Vec<Documented> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut rows = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != HEADER {
            continue;
        }
        lines.next(); // |---|---|…
        for line in lines.by_ref() {
            let line = line.trim();
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert!(cells.len() >= 3, "{}: {line}", file.display());
            rows.push(Documented {
                file: file.to_owned(),
                line: line.to_owned(),
                fields: quoted(cells[0], |c| c.is_ascii_lowercase() || c == '_'),
                variables: quoted(cells[1], |c| c.is_ascii_uppercase() || c == '_'),
                default: cells[2].trim().to_owned(),
            });
        }
    }
    rows
}

/// Whether `text`, a documented default, is `setting`'s default: "required"
/// for the URL, "none" (or "the system's roots") for a setting unset by
/// default, else a value that, read by the setting's own reader over the
/// defaults, leaves them as they are. Sizes may be written in KiB or MiB.
fn is_default(setting: &Setting, text: &str) -> bool {
    let text = text.replace('`', "");
    // A remark in parentheses, after a colon, is not the value.
    let text = text.split(" (").next().unwrap_or("").trim();
    let defaults = DbConfig::from_url("postgres://u@h/db").unwrap();
    let shown = |config: &DbConfig| format!("{:?}", (setting.show)(config));
    if setting.name == "url" {
        return text == "required";
    }
    if text == "none" || text.starts_with("none:") || text == "the system's roots" {
        // Unset, or an empty list.
        return matches!(shown(&defaults).as_str(), "None" | "[]");
    }
    let text = match text.split_once(' ') {
        Some((n, "KiB")) => n
            .parse::<usize>()
            .map_or(text.to_owned(), |n| (n << 10).to_string()),
        Some((n, "MiB")) => n
            .parse::<usize>()
            .map_or(text.to_owned(), |n| (n << 20).to_string()),
        _ => text.to_owned(),
    };
    let index = SETTINGS
        .iter()
        .position(|s| s.name == setting.name)
        .unwrap();
    let values = Values::from([(index, Value::Text(text))]);
    match Draft::over(defaults.clone()).apply(values, Source::Fields) {
        Ok(read) => shown(&read.finish()) == shown(&defaults),
        Err(_) => false,
    }
}

#[test]
fn the_documented_settings_table_is_the_table_of_settings() {
    let rows: Vec<Documented> = markdown_files()
        .iter()
        .flat_map(|file| documented_rows(file))
        .collect();
    assert!(
        !rows.is_empty(),
        "no table headed `{HEADER}` in README.md or src/**/*.md"
    );
    let mut files: Vec<&Path> = rows.iter().map(|r| r.file.as_path()).collect();
    files.dedup();
    for file in files {
        let rows: Vec<&Documented> = rows.iter().filter(|r| r.file == file).collect();
        let mut documented = Vec::new();
        for row in &rows {
            let at = format!("{}: {}", file.display(), row.line);
            assert!(!row.fields.is_empty(), "{at}: no field");
            assert_eq!(
                row.fields.len(),
                row.variables.len(),
                "{at}: one variable per field"
            );
            for (field, variable) in row.fields.iter().zip(&row.variables) {
                let Some(setting) = SETTINGS.iter().find(|s| s.name == field) else {
                    panic!("{at}: `{field}` is documented, but there is no such setting");
                };
                assert_eq!(variable, setting.env, "{at}: the variable of `{field}`");
                assert!(
                    is_default(setting, &row.default),
                    "{at}: `{}` is not the default of `{field}`",
                    row.default
                );
                assert!(!documented.contains(&setting.name), "{at}: `{field}` twice");
                documented.push(setting.name);
            }
        }
        for setting in SETTINGS {
            assert!(
                documented.contains(&setting.name),
                "{}: `{}` ({}) is a setting, but not documented",
                file.display(),
                setting.name,
                setting.env
            );
        }
    }
}

#[test]
fn a_documented_default_must_be_the_default() {
    let setting = |name: &str| SETTINGS.iter().find(|s| s.name == name).unwrap();
    for (name, text, ok) in [
        ("max_connections", "25", true),
        ("max_connections", "24", false),
        ("wait_timeout", "`5s`", true),
        ("wait_timeout", "`5000ms`", true),
        ("wait_timeout", "`6s`", false),
        ("idle_in_transaction_timeout", "`60s`", true),
        ("max_output_bytes", "1 MiB", true),
        ("max_output_bytes", "1048576 (1 MiB)", true),
        ("max_output_bytes", "1 KiB", false),
        ("ssl_mode", "`prefer`", true),
        ("ssl_mode", "`require`", false),
        ("ssl_root_cert", "the system's roots", true),
        ("ssl_root_cert", "`system`", false),
        ("direct_url", "none", true),
        ("replicas", "none", true),
        ("replica_wait", "`250ms`", true),
        ("replica_wait", "`1s`", false),
        ("replica_max_lag", "`1s`", true),
        ("notify_events", "`true`", true),
        ("notify_events", "`false`", false),
        ("application_name", "`voidrunner-db`", true),
        ("pooler", "`direct`", true),
        ("pooler", "`session`", false),
        ("url", "required", true),
        ("url", "none", false),
        ("slow_statement", "`1s`", true),
        ("slow_statement", "off", false),
    ] {
        assert_eq!(is_default(setting(name), text), ok, "{name} = {text}");
    }
}
