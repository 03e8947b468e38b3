//! Embeds `migrations/V{n}__{name}.sql` and their down scripts
//! `migrations/down/V{n}__{name}.down.sql` into the library, and the crate's
//! statements from `src/queries/*.sql` (see `embed_statements`).
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
    println!("cargo::rerun-if-changed=src/queries");
    embed_statements();

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

/// One `-- name:`, `-- columns:` or `-- fragment:` section of a `.sql` file.
struct Section {
    kind: &'static str,
    name: String,
    doc: Vec<String>,
    body: Vec<String>,
}

/// Reads `src/queries/*.sql` into `OUT_DIR/statements.rs`: one module per file,
/// one `Query` constant per `-- name: x` section (registered as `file.x`),
/// column lists (`-- columns: x`) as arrays, and `ALL`, every statement.
///
/// A section runs to the next header. The `--` lines right after a header
/// are its doc; other comment lines and blank lines are dropped. In a body,
/// `{{x}}` is the column list or fragment `x` (defined in any file), and
/// `{{a.x}}` the column list `x` with each column prefixed by `a.`. An
/// unknown name, a name defined twice or an empty statement fails the
/// build, so a typo cannot reach the server.
fn embed_statements() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = root.join("src").join("queries");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    paths.sort();

    let mut files: Vec<(String, Vec<Section>)> = Vec::new();
    for path in &paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        files.push((stem, sections(&text, path)));
    }

    let mut defs: Vec<(String, &'static str, String)> = Vec::new();
    for (_, sections) in &files {
        for s in sections.iter().filter(|s| s.kind != "name") {
            if defs.iter().any(|(n, _, _)| *n == s.name) {
                panic!("src/queries: `{}` is defined twice", s.name);
            }
            defs.push((s.name.clone(), s.kind, s.body.join("\n")));
        }
    }
    let expand = |text: &str, context: &str| expand(text, &defs, context, 0);

    let mut out = String::new();
    let mut all = Vec::new();
    out.push_str("/// Each entity's columns, in the order its reader reads them.\npub(crate) mod columns {\n");
    for (name, kind, body) in &defs {
        if *kind != "columns" {
            continue;
        }
        let names = column_names(&expand(body, name));
        writeln!(
            out,
            "    /// `{name}`.\n    pub(crate) const {}: [&str; {}] = {names:?};",
            name.to_uppercase(),
            names.len()
        )
        .unwrap();
    }
    out.push_str("}\n");
    for (stem, sections) in &files {
        let statements: Vec<&Section> = sections.iter().filter(|s| s.kind == "name").collect();
        if statements.is_empty() {
            continue;
        }
        writeln!(out, "/// The statements of `src/queries/{stem}.sql`.\npub(crate) mod {stem} {{\n    use super::Query;").unwrap();
        for s in statements {
            let full = format!("{stem}.{}", s.name);
            if all.contains(&full) {
                panic!("src/queries: statement `{full}` is defined twice");
            }
            let text = expand(&s.body.join("\n"), &full);
            if text.trim().is_empty() {
                panic!("src/queries: statement `{full}` is empty");
            }
            for line in &s.doc {
                writeln!(out, "    #[doc = {line:?}]").unwrap();
            }
            writeln!(
                out,
                "    pub(crate) const {}: Query = Query {{ name: {full:?}, text: {text:?} }};",
                s.name.to_uppercase()
            )
            .unwrap();
            all.push(full);
        }
        out.push_str("}\n");
    }
    out.push_str("/// Every statement, in file and then section order.\npub(crate) const ALL: &[Query] = &[\n");
    for full in &all {
        let (stem, name) = full.split_once('.').unwrap();
        writeln!(out, "    {stem}::{},", name.to_uppercase()).unwrap();
    }
    out.push_str("];\n");

    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("statements.rs");
    fs::write(dest, out).expect("write generated statements");
}

fn sections(text: &str, path: &Path) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let header = ["name", "columns", "fragment"]
            .into_iter()
            .find_map(|kind| {
                trimmed
                    .strip_prefix("-- ")
                    .and_then(|rest| rest.strip_prefix(kind))
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|name| (kind, name.trim().to_owned()))
            });
        if let Some((kind, name)) = header {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                panic!(
                    "{}: `{trimmed}`: names are lowercase words joined by `_`",
                    path.display()
                );
            }
            sections.push(Section {
                kind,
                name,
                doc: Vec::new(),
                body: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if let Some(comment) = trimmed.strip_prefix("--") {
            if section.body.is_empty() {
                section
                    .doc
                    .push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
            }
            continue;
        }
        if !trimmed.is_empty() {
            section.body.push(line.trim_end().to_owned());
        }
    }
    sections
}

/// `text` with every `{{x}}` and `{{a.x}}` replaced (see `embed_statements`).
fn expand(
    text: &str,
    defs: &[(String, &'static str, String)],
    context: &str,
    depth: u32,
) -> String {
    if depth > 4 {
        panic!("src/queries: `{context}`: fragments nest too deep");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .unwrap_or_else(|| panic!("src/queries: `{context}`: `{{{{` without `}}}}`"));
        let token = after[..close].trim();
        let (alias, name) = match token.split_once('.') {
            Some((alias, name)) => (Some(alias), name),
            None => (None, token),
        };
        let Some((_, kind, body)) = defs.iter().find(|(n, _, _)| n == name) else {
            panic!("src/queries: `{context}` uses `{{{{{token}}}}}`, which no file defines");
        };
        let body = expand(body, defs, context, depth + 1);
        match (alias, *kind) {
            (None, "columns") => out.push_str(&column_names(&body).join(", ")),
            (None, _) => out.push_str(&body),
            (Some(alias), "columns") => out.push_str(
                &column_names(&body)
                    .iter()
                    .map(|c| format!("{alias}.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (Some(_), _) => {
                panic!("src/queries: `{context}`: only column lists take an alias, not `{token}`")
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn column_names(body: &str) -> Vec<String> {
    body.split(',')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}
