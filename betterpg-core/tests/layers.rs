//! The layering of `betterpg-core`, checked: every module belongs to a
//! layer, imports only from its own layer or the ones below, and no two
//! modules import each other, however indirectly.
//!
//! The graph is built from the sources themselves (`src/**/*.rs`): every
//! `crate::MODULE` path in code (comments are skipped), and `super::MODULE`
//! between the operations in `src/ops/`. The operations are one node each
//! (`ops::branch`, `ops::status` ...); every other top-level module is one
//! node with its submodules. See `docs/architecture.md` for the picture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may use its own layer and the ones
/// below. A new module must be added here (the check fails until it is).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves (no betterpg policy)",
        &[
            "error", "util", "fault", "name", "osuser", "pg", "storage", "runtime",
        ],
    ),
    (
        "policy on plain values",
        &[
            "home",
            "audit",
            "catalog",
            "ports",
            "space",
            "tablespace",
            "retention",
            "pitr",
        ],
    ),
    ("context", &["context"]),
    ("operations", &["ops"]),
    // bench: the hidden bench-only door into hot paths (benches/).
    ("facades", &["manager", "blocking", "bench"]),
    ("crate root", &["lib"]),
];

/// Dependency graph: node -> the nodes it uses (self edges left out).
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Layer index of a node (`ops::branch` is in the layer of `ops`).
fn layer_of(node: &str, layers: &[(&str, &[&str])]) -> Option<usize> {
    let top = node.split("::").next().unwrap_or(node);
    layers
        .iter()
        .position(|(_, mods)| mods.contains(&node) || mods.contains(&top))
}

/// Everything wrong with `graph` under `layers`: modules without a layer,
/// imports from a higher layer, cycles. Empty when the layering holds.
fn check(graph: &Graph, layers: &[(&str, &[&str])]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut nodes: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    nodes.extend(graph.values().flatten().map(String::as_str));
    for n in &nodes {
        if layer_of(n, layers).is_none() {
            problems.push(format!(
                "module {n} is in no layer: add it to LAYERS in tests/layers.rs"
            ));
        }
    }
    for (from, tos) in graph {
        let Some(lf) = layer_of(from, layers) else {
            continue;
        };
        for to in tos {
            let Some(lt) = layer_of(to, layers) else {
                continue;
            };
            if lt > lf {
                problems.push(format!(
                    "{from} ({}) imports {to} ({}), a higher layer",
                    layers[lf].0, layers[lt].0
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        problems.push(format!("import cycle: {}", cycle.join(" -> ")));
    }
    problems
}

/// One cycle of `graph` (its nodes, the first repeated at the end), if any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        n: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Visiting);
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// The node a source file belongs to: `lib`, the top-level module, or
/// `ops::VERB` for an operation.
fn node_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [one] => one.clone(),
        [ops, verb, ..] if ops == "ops" && verb != "mod" => format!("ops::{verb}"),
        [top, ..] => top.clone(),
        [] => String::new(),
    }
}

/// The code of `text` without comments (line comments and `/* */` blocks;
/// good enough for this crate's sources, which put no `//` in strings next
/// to a `crate::` path).
fn code_only(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let mut l = line;
        if in_block {
            match l.find("*/") {
                Some(i) => {
                    l = &l[i + 2..];
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(i) = l.find("/*") {
            if !l[i..].contains("*/") {
                in_block = true;
            }
            l = &l[..i];
        }
        if let Some(i) = l.find("//") {
            l = &l[..i];
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Module names following `prefix` in `code` (`crate::` -> `storage`,
/// `ops`; `crate::ops::` -> `branch`), including those in a `{a, b}` group.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        // Not the tail of a longer path (`my_crate::`).
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let n = ident(item.trim());
                if !n.is_empty() {
                    out.push(n);
                }
            }
        } else {
            let n = ident(rest);
            if !n.is_empty() {
                out.push(n);
            }
        }
    }
    out
}

/// The module graph of the sources under `src`.
fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let ops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(src).ok())
        .map(node_of)
        .filter(|n| n.starts_with("ops::"))
        .collect();
    let mut graph = Graph::new();
    for f in &files {
        let rel = f.strip_prefix(src).expect("under src");
        let from = node_of(rel);
        let code = code_only(&std::fs::read_to_string(f).expect("readable source"));
        let mut to: BTreeSet<String> = BTreeSet::new();
        for top in names_after(&code, "crate::") {
            if top.starts_with(|c: char| c.is_ascii_uppercase()) {
                // `crate::Error`: a re-export of the crate root.
                to.insert("lib".into());
            } else if top == "ops" {
                // `crate::ops::VERB` names an operation; `crate::ops` the
                // module holding them (used as `ops::VERB::f`).
                to.insert("ops".into());
                to.extend(
                    names_after(&code, "crate::ops::")
                        .into_iter()
                        .map(|v| format!("ops::{v}"))
                        .filter(|v| ops.contains(v)),
                );
            } else {
                to.insert(top);
            }
        }
        if from.starts_with("ops::") {
            for m in names_after(&code, "super::") {
                let n = format!("ops::{m}");
                if ops.contains(&n) {
                    to.insert(n);
                }
            }
        }
        to.remove(&from);
        graph.entry(from).or_default().extend(to);
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable src directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn core_modules_are_layered_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    // The graph was really read: the facade uses the operations, an
    // operation the context, the context the storage.
    assert!(graph["manager"].contains("ops::branch"), "{graph:#?}");
    assert!(graph["ops::branch"].contains("context"), "{graph:#?}");
    assert!(graph["ops::branch"].contains("ops::status"), "{graph:#?}");
    assert!(graph["context"].contains("storage"), "{graph:#?}");
    let problems = check(&graph, LAYERS);
    assert!(
        problems.is_empty(),
        "the core's layering is broken:\n  {}",
        problems.join("\n  ")
    );
}

fn fake(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g.entry(b.to_string()).or_default();
    }
    g
}

const FAKE_LAYERS: &[(&str, &[&str])] = &[("low", &["a", "b"]), ("high", &["c", "ops"])];

#[test]
fn the_check_accepts_a_layered_graph() {
    let g = fake(&[
        ("c", "a"),
        ("a", "b"),
        ("ops::x", "ops::y"),
        ("ops::y", "a"),
    ]);
    assert_eq!(check(&g, FAKE_LAYERS), Vec::<String>::new());
}

#[test]
fn the_check_finds_an_upward_import() {
    let g = fake(&[("c", "a"), ("b", "c")]);
    let p = check(&g, FAKE_LAYERS);
    assert!(
        p.iter()
            .any(|m| m.contains("b (low) imports c (high), a higher layer")),
        "{p:?}"
    );
}

#[test]
fn the_check_finds_a_cycle_within_a_layer() {
    let g = fake(&[
        ("ops::x", "ops::y"),
        ("ops::y", "ops::z"),
        ("ops::z", "ops::x"),
    ]);
    let p = check(&g, FAKE_LAYERS);
    assert!(
        p.iter()
            .any(|m| m.starts_with("import cycle: ") && m.contains("ops::x")),
        "{p:?}"
    );
}

#[test]
fn the_check_finds_a_module_without_a_layer() {
    let g = fake(&[("c", "d")]);
    let p = check(&g, FAKE_LAYERS);
    assert!(
        p.iter().any(|m| m.starts_with("module d is in no layer")),
        "{p:?}"
    );
}

#[test]
fn paths_are_read_from_code_not_comments() {
    let code = code_only(
        "use crate::{error::Result, storage};\n/// see [`crate::manager`]\nlet x = crate::space::f(); // crate::home\n/* crate::ops\n */ use super::status;\n",
    );
    assert_eq!(names_after(&code, "crate::"), ["error", "storage", "space"]);
    assert_eq!(names_after(&code, "super::"), ["status"]);
    assert_eq!(names_after("my_crate::x", "crate::"), Vec::<String>::new());
    assert_eq!(node_of(Path::new("ops/branch.rs")), "ops::branch");
    assert_eq!(node_of(Path::new("ops/mod.rs")), "ops");
    assert_eq!(node_of(Path::new("storage/libzfs.rs")), "storage");
    assert_eq!(node_of(Path::new("lib.rs")), "lib");
}
