//! The README is the crate's front page on GitHub and crates.io, and its
//! Rust blocks run as doctests (it is included as the crate docs). These
//! checks keep it readable there: no doctest-hidden lines (shown verbatim
//! as `# …` outside rustdoc), no reference to a `SPEC.md` the package does
//! not ship (the domain reference is the module `voidrunner_db::domain`),
//! and no relative link to a file the package leaves out. The guides it
//! links to, `src/docs/*.md` (the modules of `voidrunner_db::docs`), and the
//! domain reference `src/domain.md` are read on GitHub too: their relative
//! links are held to the same rule, and every guide is included and linked.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("read README.md")
}

/// Whether a fence's info string makes rustdoc compile the block: no
/// language, `rust`, or only rustdoc's own attributes (`no_run`, …).
fn is_rust_fence(info: &str) -> bool {
    const RUSTDOC_ATTRIBUTES: [&str; 7] = [
        "ignore",
        "no_run",
        "should_panic",
        "compile_fail",
        "test_harness",
        "standalone_crate",
        "allow_fail",
    ];
    let tokens: Vec<&str> = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.contains(&"rust")
        || tokens
            .iter()
            .all(|t| RUSTDOC_ATTRIBUTES.contains(t) || t.starts_with("edition"))
}

/// Each line with its 1-based number and, when inside a fenced code block,
/// the fence's info string (`None` outside code blocks and on fence lines).
fn lines_with_fences(text: &str) -> Vec<(usize, &str, Option<&str>)> {
    let mut out = Vec::new();
    let mut fence: Option<(&str, &str)> = None; // (marker, info string)
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(marker)) => {
                fence = Some((marker, trimmed.trim_start_matches(marker).trim()));
                out.push((index + 1, line, None));
            }
            (Some((open, _)), Some(marker))
                if marker == open && trimmed.trim_start_matches(marker).trim().is_empty() =>
            {
                fence = None;
                out.push((index + 1, line, None));
            }
            (Some((_, info)), _) => out.push((index + 1, line, Some(info))),
            (None, None) => out.push((index + 1, line, None)),
        }
    }
    assert!(fence.is_none(), "a markdown file ends inside a code block");
    out
}

/// Lines of Rust blocks that rustdoc hides: after leading white space,
/// `# ` or a lone `#`.
fn hidden_lines(text: &str) -> Vec<String> {
    let mut hidden = Vec::new();
    for (number, line, fence) in lines_with_fences(text) {
        let Some(info) = fence else { continue };
        let content = line.trim_start();
        if is_rust_fence(info) && (content.starts_with("# ") || content == "#") {
            hidden.push(format!("README.md:{number}: {line}"));
        }
    }
    hidden
}

/// Lines that mention `SPEC`.
fn spec_mentions(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains("SPEC"))
        .map(|(index, line)| format!("README.md:{}: {line}", index + 1))
        .collect()
}

#[test]
fn readme_rust_blocks_have_no_hidden_lines() {
    let hidden = hidden_lines(&readme());
    assert!(
        hidden.is_empty(),
        "doctest-hidden lines show verbatim on GitHub and crates.io; make the \
         wrapper visible instead:\n{}",
        hidden.join("\n")
    );
}

#[test]
fn readme_does_not_cite_spec() {
    let mentions = spec_mentions(&readme());
    assert!(
        mentions.is_empty(),
        "the package ships no SPEC.md; point to the `domain` module instead:\n{}",
        mentions.join("\n")
    );
}

/// The `exclude` patterns of `[package]` in Cargo.toml (single- or
/// multi-line array of strings).
fn excluded_patterns() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("read Cargo.toml");
    let Some(start) = manifest
        .lines()
        .position(|l| l.trim_start().starts_with("exclude") && l.contains('='))
    else {
        return Vec::new();
    };
    let mut array = String::new();
    for line in manifest.lines().skip(start) {
        // Comments after the values may hold quotes of their own.
        array.push_str(line.split('#').next().unwrap_or(""));
        if line.contains(']') {
            break;
        }
    }
    array
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `*` matches within one path component, `**` across components.
fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
            [b'*', rest @ ..] => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            [b'?', rest @ ..] => !s.is_empty() && s[0] != b'/' && go(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// Whether Cargo's gitignore-style `exclude` pattern leaves out `path`
/// (relative to the package root, `/`-separated): the path itself or any
/// directory above it matches.
fn excluded_by(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    let components: Vec<&str> = path.split('/').collect();
    (1..=components.len()).any(|n| {
        let prefix = components[..n].join("/");
        match pattern.strip_prefix('/') {
            // Anchored at the package root.
            Some(anchored) => glob_match(anchored, &prefix),
            // A pattern with a slash inside is anchored too; one without
            // matches a file or directory name at any depth.
            None if pattern.contains('/') => glob_match(pattern, &prefix),
            None => glob_match(pattern, components[n - 1]),
        }
    })
}

/// Link targets of inline links `](target)` and reference definitions
/// `[label]: target`, outside code blocks and inline code, with their line.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (number, line, fence) in lines_with_fences(text) {
        if fence.is_some() || line.trim_start().starts_with("```") {
            continue;
        }
        // Drop inline code spans: `a[i](x)` in code is no link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push((number, target.trim_matches(['<', '>']).to_owned()));
            rest = &after[end..];
        }
        let trimmed = prose.trim_start();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find("]:")
        {
            let target = trimmed[close + 2..].split_whitespace().next().unwrap_or("");
            targets.push((number, target.trim_matches(['<', '>']).to_owned()));
        }
    }
    targets
}

/// Relative links of the README that do not point to a file the package at
/// `root` ships, given its `exclude` patterns.
fn broken_links(text: &str, root: &std::path::Path, excluded: &[String]) -> Vec<String> {
    broken_links_in("README.md", text, root, excluded, false)
}

/// Whether a link target is a rustdoc intra-doc link (`crate::Error`,
/// `crate::docs::deploying#tls`, `crate#benchmarks`) rather than a file.
fn is_intra_doc(target: &str) -> bool {
    let path = target.split('#').next().unwrap_or("");
    let is_ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    path.split("::").all(is_ident)
        && (path.contains("::") || matches!(path, "crate" | "self" | "super"))
}

/// `target` resolved against the directory `dir` (`/`-separated, relative to
/// the package root), or `None` when `..` climbs out of the package.
fn resolve(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

/// Relative links of `file` (its path relative to the package root; its
/// `text`) that do not point to a file the package at `root` ships, given its
/// `exclude` patterns. Links resolve from the file's directory; intra-doc
/// links are allowed only where rustdoc is the renderer that counts
/// (`intra_doc`), and left to `cargo doc` to check.
fn broken_links_in(
    file: &str,
    text: &str,
    root: &std::path::Path,
    excluded: &[String],
    intra_doc: bool,
) -> Vec<String> {
    let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut broken = Vec::new();
    for (number, target) in link_targets(text) {
        let is_absolute = target.contains("://") || target.starts_with("mailto:");
        if target.is_empty() || is_absolute || target.starts_with('#') {
            continue;
        }
        if intra_doc && is_intra_doc(&target) {
            continue;
        }
        let relative = target.split(['#', '?']).next().unwrap_or("");
        let resolved = if relative.starts_with('/') {
            None
        } else {
            resolve(dir, relative)
        };
        let path = resolved.as_deref().unwrap_or("");
        let problem = if resolved.is_none() {
            Some("leaves the package (or is absolute)".to_owned())
        } else if !root.join(path).exists() {
            Some("does not exist".to_owned())
        } else if let Some(pattern) = excluded.iter().find(|p| excluded_by(p, path)) {
            Some(format!("is excluded from the package by `{pattern}`"))
        } else if path.split('/').next() == Some("target") {
            Some("is a build output".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            broken.push(format!("{file}:{number}: `{target}` {problem}"));
        }
    }
    broken
}

#[test]
fn readme_relative_links_point_to_shipped_files() {
    let excluded = excluded_patterns();
    assert!(
        excluded.iter().any(|p| p == "/tests/downstream"),
        "Cargo.toml's exclude was not read: {excluded:?}"
    );
    let broken = broken_links(&readme(), &root(), &excluded);
    assert!(
        broken.is_empty(),
        "relative links must point to files the package ships:\n{}",
        broken.join("\n")
    );
}

/// The markdown included as crate docs besides the README: the guides
/// (`src/docs/*.md`) and the domain reference, as paths relative to the
/// package root, sorted.
fn included_markdown() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("src/docs"))
        .expect("read src/docs")
        .map(|entry| entry.expect("read src/docs").file_name())
        .filter_map(|name| name.to_str().map(str::to_owned))
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("src/docs/{name}"))
        .collect();
    files.sort();
    files.push("src/domain.md".to_owned());
    files
}

#[test]
fn docs_relative_links_point_to_shipped_files() {
    let excluded = excluded_patterns();
    let files = included_markdown();
    assert!(files.len() > 1, "no guides found in src/docs: {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root().join(file)).expect("read a guide");
        broken.extend(broken_links_in(file, &text, &root(), &excluded, true));
    }
    assert!(
        broken.is_empty(),
        "relative links must point to files the package ships:\n{}",
        broken.join("\n")
    );
}

/// Every guide is the docs of a module (`include_str!("name.md")` and
/// `pub mod name` in `src/docs/mod.rs`) and is linked from the README, so
/// none is written and then left where nobody finds it.
#[test]
fn every_guide_is_included_and_linked_from_the_readme() {
    let modules =
        std::fs::read_to_string(root().join("src/docs/mod.rs")).expect("read src/docs/mod.rs");
    let readme_targets: Vec<String> = link_targets(&readme())
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut missing = Vec::new();
    for file in included_markdown()
        .iter()
        .filter(|f| f.starts_with("src/docs/"))
    {
        let name = file.trim_start_matches("src/docs/");
        let stem = name.trim_end_matches(".md");
        let included = modules.contains(&format!("include_str!(\"{name}\")"));
        if !included || !modules.contains(&format!("pub mod {stem} {{}}")) {
            missing.push(format!("{file}: not included by src/docs/mod.rs"));
        }
        if !readme_targets.iter().any(|t| t == file) {
            missing.push(format!("{file}: no link to it in README.md"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn readme_checks_parse_what_they_check() {
    // The helpers themselves, on made-up input.
    assert!(is_rust_fence("rust") && is_rust_fence("rust,no_run") && is_rust_fence(""));
    assert!(is_rust_fence("no_run") && is_rust_fence("edition2021"));
    assert!(!is_rust_fence("sh") && !is_rust_fence("toml") && !is_rust_fence("text"));
    let sample = "# Title\n```rust\n# hidden\nlet a = 1;\n```\n```sh\n# comment\n```\n";
    let inside: Vec<(usize, Option<&str>)> = lines_with_fences(sample)
        .into_iter()
        .map(|(n, _, f)| (n, f))
        .collect();
    assert_eq!(
        inside,
        [
            (1, None),
            (2, None),
            (3, Some("rust")),
            (4, Some("rust")),
            (5, None),
            (6, None),
            (7, Some("sh")),
            (8, None)
        ]
    );
    let links = link_targets(
        "See [a](docs/a.md#x), [b](https://x.y), `[c](in/code)`, [d](#anchor).\n\
         [e]: ./e.md \"title\"\n```\n[f](in/block)\n```\n",
    );
    let targets: Vec<&str> = links.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, ["docs/a.md#x", "https://x.y", "#anchor", "./e.md"]);
    assert!(excluded_by(
        "/tests/downstream",
        "tests/downstream/src/lib.rs"
    ));
    assert!(!excluded_by("/tests/downstream", "tests/downstreamer.rs"));
    assert!(excluded_by("/.ci", ".ci/run"));
    assert!(excluded_by("*.orig", "src/lib.rs.orig"));
    assert!(!excluded_by(
        "/tests/downstream",
        "tests/queue/invariants.rs"
    ));

    // Each check fails, naming the line, on what it must refuse.
    let hidden = "text\n```rust\nlet a = 1;\n# fn hidden() {}\n    #\n#[derive(Debug)]\n```\n\
                  ```sh\n# a shell comment\n```\n```\n# Ok(())\n```\n";
    assert_eq!(
        hidden_lines(hidden),
        [
            "README.md:4: # fn hidden() {}",
            "README.md:5:     #",
            "README.md:12: # Ok(())"
        ]
    );
    assert_eq!(
        spec_mentions("ok\nsee SPEC §2\n"),
        ["README.md:2: see SPEC §2"]
    );
    let root = root();
    let excluded: Vec<String> = ["/.ci", "/tests/downstream"].map(String::from).into();
    let links = "[ok](src/lib.rs) [web](https://docs.rs) [here](#layout)\n\
                 [gone](src/nope.rs)\n[left out](tests/downstream/Cargo.toml)\n\
                 [up](../elsewhere.md)\n";
    let broken = broken_links(links, &root, &excluded);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].starts_with("README.md:2: `src/nope.rs` does not exist"));
    assert!(broken[1].starts_with("README.md:3: `tests/downstream/Cargo.toml` is excluded"));
    assert!(broken[2].starts_with("README.md:4: `../elsewhere.md` leaves the package"));

    // The guides: links resolve from their directory; intra-doc links pass
    // there (rustdoc checks them), and only there.
    assert!(is_intra_doc("crate::docs::deploying#tls") && is_intra_doc("crate#benchmarks"));
    assert!(is_intra_doc("crate::Error::LeaseLost") && !is_intra_doc("Error"));
    assert!(!is_intra_doc("src/docs/queue.md") && !is_intra_doc("queue.md#a-worker"));
    assert_eq!(
        resolve("src/docs", "queue.md").as_deref(),
        Some("src/docs/queue.md")
    );
    assert_eq!(
        resolve("src/docs", "../../Cargo.toml").as_deref(),
        Some("Cargo.toml")
    );
    assert_eq!(resolve("src/docs", "../../../x.md"), None);
    assert_eq!(resolve("", "./src/lib.rs").as_deref(), Some("src/lib.rs"));
    let guide = "[ok](../lib.rs) [sibling](mod.rs#x) [item](crate::docs::queue)\n\
                 [gone](nope.md)\n[up](../../../elsewhere.md)\n\
                 [left out](../../tests/downstream/Cargo.toml)\n";
    let broken = broken_links_in("src/docs/guide.md", guide, &root, &excluded, true);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].starts_with("src/docs/guide.md:2: `nope.md` does not exist"));
    assert!(broken[1].starts_with("src/docs/guide.md:3: `../../../elsewhere.md` leaves"));
    assert!(
        broken[2]
            .starts_with("src/docs/guide.md:4: `../../tests/downstream/Cargo.toml` is excluded")
    );
    let in_readme = broken_links("[item](crate::docs::queue)\n", &root, &excluded);
    assert_eq!(in_readme.len(), 1, "{in_readme:#?}");
}
