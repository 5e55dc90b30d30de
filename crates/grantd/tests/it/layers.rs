//! The layer table in ARCHITECTURE.md, enforced: every `crate::…` path in `crates/grantd/src`
//! (in `use` items and in code) must go to a lower layer, or be a same-layer edge the table lists,
//! and only the modules the table names may reach `store` and `crypto` (the one door). The table
//! is read from the ```` ```layers ```` block of ARCHITECTURE.md, so the document and the check
//! cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rules parsed from the `layers` block.
#[derive(Debug, Default)]
struct Table {
    /// Top-level module → layer number.
    layer: BTreeMap<String, u32>,
    /// Allowed `from -> to` edges within one layer.
    same_layer: BTreeSet<(String, String)>,
    /// `module` → the only modules that may name it (`X only from: a, b`).
    only_from: BTreeMap<String, BTreeSet<String>>,
}

fn names(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn parse_table(doc: &str) -> Table {
    let start = doc
        .find("```layers\n")
        .expect("ARCHITECTURE.md has a ```layers block");
    let body = &doc[start + "```layers\n".len()..];
    let body = &body[..body.find("```").expect("the layers block is closed")];
    let mut t = Table::default();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(edges) = line.strip_prefix("same layer:") {
            for e in names(edges) {
                let (from, to) = e.split_once("->").expect("same-layer edges read `a -> b`");
                t.same_layer
                    .insert((from.trim().to_owned(), to.trim().to_owned()));
            }
        } else if let Some((module, from)) = line.split_once(" only from:") {
            t.only_from
                .insert(module.trim().to_owned(), names(from).collect());
        } else {
            // `N  a, b, c    description`: the modules end at the first run of two spaces.
            let (n, rest) = line
                .split_once(' ')
                .expect("a layer line starts with its number");
            let n: u32 = n.parse().expect("a layer line starts with its number");
            let modules = rest.trim_start().split("  ").next().unwrap_or("");
            for m in names(modules) {
                t.layer.insert(m, n);
            }
        }
    }
    t
}

/// Source text without comments and string literals, so prose and messages are not read as
/// paths (raw strings are rare here and contain no `crate::`).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' (lifetimes have no closing quote).
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escaped char literal such as '\"' or '\u{7f}'.
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The top-level modules `src` names through `crate::`: paths (`crate::store::Store`) and
/// groups (`use crate::{api, store}`).
fn referenced(src: &str) -> BTreeSet<String> {
    let code = code_only(src);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                if !head.is_empty() && head != "self" {
                    out.insert(head.to_owned());
                }
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !head.is_empty() {
                out.insert(head);
            }
        }
    }
    out
}

/// Every crossing of the table by `module` (its top-level module name) naming `targets`.
fn violations(t: &Table, module: &str, targets: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(&from) = t.layer.get(module) else {
        return vec![format!(
            "module `{module}` is not in ARCHITECTURE.md's layer table"
        )];
    };
    for target in targets.iter().filter(|m| *m != module) {
        let Some(&to) = t.layer.get(target) else {
            // A crate-root item (e.g. a macro), not a module of the table.
            continue;
        };
        let allowed = to < from || t.same_layer.contains(&(module.into(), target.clone()));
        if !allowed {
            out.push(format!(
                "`{module}` (layer {from}) uses `{target}` (layer {to})"
            ));
        }
        if let Some(only) = t.only_from.get(target) {
            if !only.contains(module) {
                out.push(format!(
                    "`{module}` uses `{target}`, which only {} may use",
                    only.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn table() -> Table {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    parse_table(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap())
}

#[test]
fn every_import_follows_the_layer_table() {
    let t = table();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for v in violations(&t, module, &referenced(&text)) {
            problems.push(format!("{}: {v}", rel.display()));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "imports crossing the layer table in ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_reports_a_crossing() {
    let t = table();
    // An edge importing another edge, as the proxy once imported the API's error type.
    let proxy = referenced("use crate::api::ApiError;\nfn f() {}\n");
    let found = violations(&t, "proxy", &proxy);
    assert!(
        found
            .iter()
            .any(|v| v.contains("`proxy`") && v.contains("`api`")),
        "{found:?}"
    );
    // The one door: an edge calling the store, in a group import or a path in code.
    for src in [
        "use crate::{model, store::Store};",
        "fn f(s: &crate::store::Store) {}",
    ] {
        let found = violations(&t, "api", &referenced(src));
        assert!(
            found.iter().any(|v| v.contains("`store`")),
            "{src}: {found:?}"
        );
    }
    // A lower layer reaching up.
    let found = violations(&t, "model", &referenced("use crate::connections::Core;"));
    assert!(!found.is_empty());
    // Comments and strings are not imports; allowed edges pass.
    let fine =
        "// use crate::api::ApiError;\nlet s = \"crate::store\";\nuse crate::connections::Core;";
    assert_eq!(
        violations(&t, "proxy", &referenced(fine)),
        Vec::<String>::new()
    );
    // Char literals do not open strings that would hide the code after them.
    let hidden = "let q = '\\\"'; let c = '\"'; use crate::api::ApiError; let s = \"x\";";
    assert!(!violations(&t, "proxy", &referenced(hidden)).is_empty());
}
