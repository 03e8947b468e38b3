//! Embeds `migrations/V{n}__{name}.sql` and their down scripts
//! `migrations/down/V{n}__{name}.down.sql` into the library.
//!
//! refinery's `embed_migrations!` knows nothing of down scripts, so the build
//! script generates one table holding both, and checks at build time that every
//! migration has its down script. `rerun-if-changed` on the directory makes
//! cargo rebuild when a migration is added, removed or edited.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=migrations");

    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let up_dir = root.join("migrations");
    let down_dir = up_dir.join("down");

    let mut ups = sql_files(&up_dir, ".sql");
    ups.sort_by_key(|(version, _, _)| *version);
    let downs = sql_files(&down_dir, ".down.sql");

    for pair in ups.windows(2) {
        if pair[0].0 == pair[1].0 {
            panic!("two migrations share version {}", pair[0].0);
        }
    }
    for (version, name, _) in &downs {
        if !ups.iter().any(|(v, n, _)| v == version && n == name) {
            panic!("down script V{version}__{name}.down.sql has no matching up migration");
        }
    }

    let mut out = String::from("&[\n");
    for (version, name, up_path) in &ups {
        let Some((_, _, down_path)) = downs.iter().find(|(v, n, _)| v == version && n == name)
        else {
            panic!(
                "migration V{version}__{name}.sql has no down script: add migrations/down/V{version}__{name}.down.sql"
            );
        };
        writeln!(
            out,
            "    EmbeddedMigration {{ version: {version}, name: {name:?}, up: include_str!({up:?}), down: include_str!({down:?}) }},",
            up = up_path.display().to_string(),
            down = down_path.display().to_string(),
        )
        .unwrap();
    }
    out.push(']');

    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    fs::write(dest, out).expect("write generated migrations table");
}

/// `(version, name, path)` of every `V{n}__{name}{suffix}` file directly in `dir`.
fn sql_files(dir: &Path, suffix: &str) -> Vec<(i32, String, PathBuf)> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if !path.is_file() {
            continue;
        }
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file_name.strip_suffix(suffix) else {
            continue;
        };
        // `x.down.sql` also ends in `.sql`: it belongs to the down table only.
        if suffix == ".sql" && stem.ends_with(".down") {
            continue;
        }
        let parsed = stem
            .strip_prefix('V')
            .and_then(|rest| rest.split_once("__"))
            .and_then(|(v, name)| Some((v.parse::<i32>().ok()?, name.to_owned())));
        match parsed {
            Some((version, name)) if version > 0 && !name.is_empty() => {
                files.push((version, name, path))
            }
            _ => panic!(
                "{} is not named V{{version}}__{{name}}{suffix}",
                path.display()
            ),
        }
    }
    files
}
