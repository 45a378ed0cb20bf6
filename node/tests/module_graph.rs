//! The node crate's modules depend on each other in one direction only: no
//! import runs in a circle. Read from the source: every `crate::…` and
//! `super::…` path in code (not comments) is an edge from the file's module
//! to the module it names. A module and its own submodules are one unit,
//! so edges are compared between siblings at every level (`delivery::send`
//! → `context` counts as `delivery` → `context`); a cycle among siblings
//! fails the test and is printed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

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

/// `src/a/b.rs` → [a, b]; `src/a/mod.rs` → [a]; `src/lib.rs` → [].
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Code without `//` comments (doc links name modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths after each `anchor::` in `code`, as segment lists (a `{…}`
/// group gives one path per member, first segments only).
fn paths_after(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(anchor) {
        let before = &rest[..at];
        rest = &rest[at + anchor.len()..];
        // Inside an identifier, or the second link of `super::super::`.
        if before.chars().next_back().is_some_and(ident_char) || before.ends_with("::") {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for member in group[..end].split(',') {
                let seg: String = member
                    .trim()
                    .chars()
                    .take_while(|c| ident_char(*c))
                    .collect();
                if !seg.is_empty() {
                    out.push(vec![seg]);
                }
            }
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let seg: String = s.chars().take_while(|c| ident_char(*c)).collect();
            if seg.is_empty() {
                break;
            }
            s = &s[seg.len()..];
            segs.push(seg);
            match s.strip_prefix("::") {
                Some(next) if next.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') => {
                    s = next
                }
                _ => break,
            }
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

/// The longest known module that `path` starts with.
fn resolve(modules: &BTreeSet<Module>, base: &[String], path: &[String]) -> Option<Module> {
    (1..=path.len()).rev().find_map(|n| {
        let mut m = base.to_vec();
        m.extend_from_slice(&path[..n]);
        modules.contains(&m).then_some(m)
    })
}

/// Sibling-level edges of `files` (module, code without comments), and
/// the first cycle among them if there is one.
fn find_cycle(files: &[(Module, String)]) -> (usize, Option<String>) {
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    // Edges between siblings: parent → (from child → to children).
    let mut edges: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut count = 0;
    for (from, text) in files {
        let parent: Module = from
            .iter()
            .take(from.len().saturating_sub(1))
            .cloned()
            .collect();
        let mut targets = Vec::new();
        for p in paths_after(text, "crate::") {
            targets.extend(resolve(&modules, &[], &p));
        }
        for mut p in paths_after(text, "super::") {
            let mut base = parent.clone();
            while p.first().is_some_and(|s| s == "super") {
                base.pop();
                p.remove(0);
            }
            targets.extend(resolve(&modules, &base, &p));
        }
        for to in targets {
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // a module and its own descendants or ancestors
            }
            count += 1;
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    for (parent, graph) in &edges {
        let mut done = BTreeSet::new();
        for start in graph.keys() {
            if let Some(cycle) = visit(start, graph, &mut Vec::new(), &mut done) {
                let at = if parent.is_empty() {
                    "the crate root".to_string()
                } else {
                    format!("crate::{}", parent.join("::"))
                };
                return (count, Some(format!("{at}: {}", cycle.join(" -> "))));
            }
        }
    }
    (count, None)
}

#[test]
fn modules_of_the_node_crate_import_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    let files: Vec<(Module, String)> = files
        .iter()
        .map(|f| {
            (
                module_of(&src, f),
                code(&std::fs::read_to_string(f).unwrap()),
            )
        })
        .collect();
    let (edges, cycle) = find_cycle(&files);
    assert!(edges > 30, "the scan found only {edges} edges");
    assert_eq!(cycle, None, "import cycle");
}

#[test]
fn the_scan_finds_a_cycle_where_there_is_one() {
    let m = |p: &str| -> Module { p.split("::").map(str::to_string).collect() };
    let files = vec![
        (
            vec![],
            code("pub mod a; pub mod b; pub use crate::a::Thing;"),
        ),
        (
            m("a"),
            code("use crate::b::inner::Helper; // crate::c is a comment"),
        ),
        (m("b"), code("")),
        (m("b::inner"), code("fn f() { super::super::a::call(); }")),
    ];
    let (_, cycle) = find_cycle(&files);
    assert_eq!(cycle.as_deref(), Some("the crate root: a -> b -> a"));
    // Without the way back, no cycle; parent and child naming each other
    // is not one.
    let mut ok = files.clone();
    ok[3].1 = code("use super::Sibling; use crate::b::X;");
    assert_eq!(find_cycle(&ok).1, None);
    assert_eq!(
        paths_after("use crate::{x::Y, z};", "crate::"),
        vec![vec!["x".to_string()], vec!["z".to_string()]]
    );
}
