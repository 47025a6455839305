//! No import circle inside a crate: within each workspace crate, the top-level modules
//! form layers, and a module never imports (`crate::...`) one that imports it back,
//! directly or through others. A circle is how "the wiring and the shared vocabulary in
//! one module" starts again; this test names the circle and the lines that make it.
//!
//! It reads product code only: doc comments and `//` lines, and each file's
//! `#[cfg(test)] mod tests`, are left out, since tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace crates whose `src/` is checked.
const CRATES: &[&str] = &[
    "tfplug",
    "provenance",
    "platform",
    "runtime",
    "provider",
    "gitops-agent",
    "tests",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`http/api.rs` → `http`), or `None` for the
/// crate root (`lib.rs`, `main.rs`), which may import anything.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (!matches!(name.as_str(), "lib" | "main" | "bin")).then_some(name)
}

/// Product code: without the unit tests at the end, and comment lines blanked (not
/// removed, so line numbers stay the file's).
fn product_code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    body.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of every `crate::` path in `code` (each item of a
/// `crate::{a, b::c}` group too), with its line number.
fn crate_imports(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            // `slipway_crate::` or `my_crate::` are other paths.
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let segment = ident(item.trim());
                    if !segment.is_empty() {
                        found.push((segment.to_owned(), n + 1));
                    }
                }
            } else {
                let segment = ident(rest);
                if !segment.is_empty() {
                    found.push((segment.to_owned(), n + 1));
                }
            }
        }
    }
    found
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Edges between top-level modules, each with where it comes from.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn module_graph(crate_dir: &Path) -> Graph {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = top_module(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for (to, line) in crate_imports(&product_code(&text)) {
            if to != from && modules.contains(&to) {
                let at = format!(
                    "{}:{line}",
                    file.strip_prefix(crate_dir).expect("in crate").display()
                );
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(at);
            }
        }
    }
    graph
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let root = workspace_root();
    let mut circles = Vec::new();
    for name in CRATES {
        let graph = module_graph(&root.join(name));
        if let Some(circle) = find_circle(&graph) {
            let edges: Vec<String> = circle
                .windows(2)
                .map(|w| format!("  {} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            circles.push(format!(
                "{name}: {}\n{}",
                circle.join(" -> "),
                edges.join("\n")
            ));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles (move what both sides need into a module below them):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_check_sees_a_circle_and_its_lines() {
    let code = "// crate::z in a comment\nuse crate::b::Thing;\nfn f() { crate::{c, d::e}; }";
    assert_eq!(
        crate_imports(&product_code(code)),
        vec![("b".into(), 2), ("c".into(), 3), ("d".into(), 3)]
    );
    assert!(crate_imports("slipway_crate::x").is_empty());
    let mut graph = Graph::new();
    graph
        .entry("a".into())
        .or_default()
        .insert("b".into(), "a.rs:1".into());
    graph
        .entry("b".into())
        .or_default()
        .insert("c".into(), "b.rs:2".into());
    assert_eq!(find_circle(&graph), None);
    graph
        .entry("c".into())
        .or_default()
        .insert("a".into(), "c.rs:3".into());
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
