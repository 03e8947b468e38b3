//! The layering of the source: no import circle between the crate's
//! top-level modules (nor between those of `benches/compare`), the model a
//! leaf that imports nothing of the crate, one owner of status writes, and every
//! statement in `src/queries`. Read from the files themselves: a `crate::<module>` path in code (comments and test modules
//! aside) is an arrow from the file's top-level module to that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and without its test modules
/// (`#[cfg(…test…)] mod x { … }`, to their closing brace): tests may reach
/// anywhere.
fn code(text: &str) -> String {
    let mut kept = Vec::new();
    let mut lines = text.lines().peekable();
    // Inside a test module: the depth of braces still open.
    let mut skipping: Option<i64> = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(depth) = skipping.as_mut() {
            *depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if *depth <= 0 {
                skipping = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(")
            && trimmed.contains("test")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            skipping = Some(0);
            continue;
        }
        if !trimmed.starts_with("//") {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// The top-level module a file belongs to: `src/pg/queue.rs` is `pg`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn graph(root: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let from = module_of(root, &file);
        // A module's own test file (`error/tests.rs`) is test code.
        if from == "lib" || from == "main" || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&file).unwrap());
        let targets = graph.entry(from.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() && name != from {
                targets.insert(name);
            }
        }
    }
    graph
}

/// A circle through `start`, if there is one: the modules in order.
fn circle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

fn circles(graph: &Graph) -> Vec<String> {
    graph
        .keys()
        .filter_map(|m| circle_through(graph, m))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect()
}

#[test]
fn the_crate_has_no_import_circles_and_the_model_is_a_leaf() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&root);
    // The check sees the arrows it must: the repositories use the model.
    assert!(graph["pg"].contains("model"), "{graph:?}");
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
    assert!(
        graph["model"].is_empty(),
        "model imports {:?}",
        graph["model"]
    );
}

#[test]
fn benches_compare_has_no_import_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/src");
    let graph = graph(&root);
    assert!(graph["driver"].contains("report"), "{graph:?}");
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .fold(Graph::new(), |mut g, (from, to)| {
            g.entry(from.to_owned()).or_default().insert(to.to_owned());
            g
        });
    let found = circles(&graph);
    assert!(found.contains(&"a -> b -> c -> a".to_owned()), "{found:?}");
    assert!(!found.iter().any(|c| c.starts_with("d ")), "{found:?}");
}

/// The SQL of `src/queries/*.sql` without its comment lines, lowercased.
fn statement_files() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("queries");
    let mut files: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let sql: Vec<&str> = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect();
            (path, sql.join("\n").to_lowercase())
        })
        .collect();
    files.sort();
    files
}

/// Every statement that writes a task's or an execution's status lives in
/// the queue's statements (`src/queries/queue.sql`), and only the queue's
/// code (`src/pg/queue/`) runs them: one owner for the state machine's
/// writes, task cancel included. A status written elsewhere shows as `SET
/// status` (or `, status =` in a longer SET list) in that file's SQL.
#[test]
fn status_writes_live_in_the_queue() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut writers = BTreeSet::new();
    for (path, sql) in statement_files() {
        if sql.contains("set status") || sql.contains(", status =") {
            writers.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(
        writers,
        BTreeSet::from(["queue.sql".to_owned()]),
        "status written outside the queue's statements"
    );
    let queue = root.join("pg").join("queue");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut runners = BTreeSet::new();
    let mut elsewhere = Vec::new();
    for file in files {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        if text.contains("queries::queue::") {
            if file.starts_with(&queue) {
                runners.insert(file.file_name().unwrap().to_string_lossy().into_owned());
            } else {
                elsewhere.push(file.display().to_string());
            }
        }
        // And no statement written in Rust writes one either.
        let lower = text.to_lowercase();
        if lower.contains("set status") || lower.contains(", status =") {
            elsewhere.push(file.display().to_string());
        }
    }
    // The check sees the callers it must: the queue's own operations.
    assert!(runners.contains("sql.rs"), "{runners:?}");
    assert!(
        elsewhere.is_empty(),
        "the queue's statements run outside the queue: {elsewhere:?}"
    );
}

/// Every statement the crate sends lives in `src/queries/*.sql`: no
/// `SELECT`, `INSERT`, `UPDATE`, `DELETE` or `WITH` statement is written in
/// the Rust code of `src`. Aside, on purpose: the migration runner
/// (`src/migrate/`, its bookkeeping table and advisory lock, beside the
/// migrations themselves) and the test support (`src/testing/`, which
/// creates and drops test databases), and test modules.
#[test]
fn statements_live_in_the_queries_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut found = Vec::new();
    for file in files {
        if file.starts_with(root.join("migrate")) || file.starts_with(root.join("testing")) {
            continue;
        }
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&file).unwrap());
        for line in text.lines() {
            // A statement in a string literal starts with its keyword.
            let starts_one = [
                "SELECT ",
                "INSERT INTO ",
                "UPDATE ",
                "DELETE FROM ",
                "WITH ",
            ]
            .iter()
            .any(|keyword| line.contains(&format!("\"{keyword}")));
            if starts_one {
                found.push(format!("{}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside src/queries: {found:#?}");
    // The statements are there, named.
    let names: Vec<&str> = voidrunner_db::__statements()
        .map(|(name, _)| name)
        .collect();
    assert!(
        names.contains(&"queue.claim") && names.contains(&"users.create"),
        "{names:?}"
    );
}
