//! `cargo xtask cycles`: import cycles between the modules of each crate.
//!
//! A module is a source file (`a/mod.rs` and `a.rs` are `a`); module `m`
//! depends on `t` when its code names `crate::t...` (also inside `use
//! crate::{...}` groups) or reaches `t` through `super::`. References
//! between a module and its own ancestors are not counted (a parent
//! declares its children, a child may use its parent), nor comments, nor
//! a file's trailing `#[cfg(test)] mod tests`. A cycle is a strongly
//! connected set of two or more modules. The workspace test below keeps
//! the tree free of them; `cargo-modules dependencies --acyclic` does the
//! same with rust-analyzer, at the cost of building it in CI.
//!
//! It also checks the crate layers: no transport crate depends on another
//! (their shared plumbing is `ipc-sys`, below them all).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source roots of the workspace at `root`.
pub fn source_roots(root: &Path) -> Vec<(String, PathBuf)> {
    let mut roots = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        for entry in entries.flatten() {
            let src = entry.path().join("src");
            if src.is_dir() {
                roots.push((entry.file_name().to_string_lossy().into_owned(), src));
            }
        }
    }
    for extra in ["xtask", "benches"] {
        let src = root.join(extra).join("src");
        if src.is_dir() {
            roots.push((extra.to_string(), src));
        }
    }
    roots.sort();
    roots
}

/// Every cycle of the crate whose sources are under `src`, each sorted.
pub fn crate_cycles(src: &Path) -> std::io::Result<Vec<Vec<String>>> {
    let graph = module_graph(src)?;
    Ok(strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect())
}

/// Module -> modules it depends on.
fn module_graph(src: &Path) -> std::io::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut texts = BTreeMap::new();
    collect(src, src, &mut texts)?;
    let modules: BTreeSet<String> = texts.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &texts {
        let mut deps = BTreeSet::new();
        for path in references(module, &strip(text)) {
            // The longest prefix of the path that is a module.
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|t| modules.contains(t));
            if let Some(t) = target
                && !related(module, &t)
            {
                deps.insert(t);
            }
        }
        graph.insert(module.clone(), deps);
    }
    Ok(graph)
}

/// Whether one module is the other or an ancestor of it.
fn related(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || y.is_empty() || x.starts_with(&format!("{y}::"));
    under(a, b) || under(b, a)
}

fn collect(src: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(src, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).unwrap_or(&path).with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.first().is_some_and(|p| p == "bin") {
                continue; // binaries are crates of their own
            }
            if parts
                .last()
                .is_some_and(|p| ["mod", "lib", "main"].contains(&p.as_str()))
            {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

/// The text without comments, string contents and a trailing unit-test
/// module.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' => {
                // a string: its contents go
                out.push('"');
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                out.push('"');
                i += 1;
            }
            '\'' if c.get(i + 1) == Some(&'\\') => {
                // an escaped char literal: quote, backslash, the escaped char
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '\'' if c.get(i + 2) == Some(&'\'') => i += 3, // a char literal
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < c.len() && !(c[i - 1] == '*' && c[i] == '/') {
                    i += 1;
                }
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

/// Every path named from the crate root (`crate::...`, or `super::...`
/// resolved against `module`), as segments; `use` groups are expanded.
fn references(module: &str, text: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(String::from).collect()
    };
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let word_start = at == 0 || !is_ident(bytes[at - 1]);
        let rest = &text[at..];
        let (base, skip) = if word_start && rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if word_start && rest.starts_with("super::") {
            let mut base = here.clone();
            let mut skip = 0;
            while text[at + skip..].starts_with("super::") {
                base.pop();
                skip += "super::".len();
            }
            (base, skip)
        } else {
            at += 1;
            continue;
        };
        let mut pos = at + skip;
        use_tree(text, &mut pos, base, &mut found);
        at = pos.max(at + 1);
    }
    found
}

/// Parses a path or a `{...}` group at `pos`, pushing each full path.
fn use_tree(text: &str, pos: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let bytes = text.as_bytes();
    loop {
        skip_space(bytes, pos);
        if *pos < bytes.len() && bytes[*pos] == b'{' {
            *pos += 1;
            loop {
                skip_space(bytes, pos);
                if *pos >= bytes.len() {
                    return;
                }
                if bytes[*pos] == b'}' {
                    *pos += 1;
                    out.push(prefix);
                    return;
                }
                if bytes[*pos] == b',' {
                    *pos += 1;
                    continue;
                }
                let before = *pos;
                use_tree(text, pos, prefix.clone(), out);
                if *pos == before {
                    *pos += 1; // not a path: skip it
                }
            }
        }
        let start = *pos;
        while *pos < bytes.len() && is_ident(bytes[*pos]) {
            *pos += 1;
        }
        if *pos == start {
            out.push(prefix);
            return;
        }
        prefix.push(text[start..*pos].to_string());
        if text[*pos..].starts_with("::") {
            *pos += 2;
        } else {
            out.push(prefix);
            return;
        }
    }
}

fn skip_space(bytes: &[u8], pos: &mut usize) {
    while *pos < bytes.len() && bytes[*pos].is_ascii_whitespace() {
        *pos += 1;
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}

/// The transport crates.
const TRANSPORTS: [&str; 4] = ["ipc-pipe", "ipc-uds", "ipc-shm", "ipc-zenoh"];

/// Every (transport, transport it depends on) pair, from the crates'
/// manifests (normal and build dependencies; tests may use another
/// transport as a peer).
pub fn transport_dependencies(root: &Path) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    for name in TRANSPORTS {
        let path = root.join("crates").join(name).join("Cargo.toml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest: toml::Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tables: Vec<&toml::Table> = Vec::new();
        for key in ["dependencies", "build-dependencies"] {
            tables.extend(manifest.get(key).and_then(toml::Value::as_table));
        }
        // Target-specific dependencies too.
        for target in manifest
            .get("target")
            .and_then(toml::Value::as_table)
            .into_iter()
        {
            for spec in target.values().filter_map(toml::Value::as_table) {
                tables.extend(spec.get("dependencies").and_then(toml::Value::as_table));
            }
        }
        for table in tables {
            for other in TRANSPORTS
                .iter()
                .filter(|&&o| o != name && table.contains_key(o))
            {
                found.push((name.to_string(), other.to_string()));
            }
        }
    }
    Ok(found)
}

/// Prints every cycle of every crate and every transport depending on
/// another; false if there was one.
pub fn report(root: &Path) -> std::io::Result<bool> {
    let mut clean = true;
    for (from, to) in transport_dependencies(root).map_err(std::io::Error::other)? {
        clean = false;
        println!("{from} depends on {to}: transports share code through ipc-sys only");
    }
    for (name, src) in source_roots(root) {
        for cycle in crate_cycles(&src)? {
            clean = false;
            println!("{name}: {}", cycle.join(" <-> "));
        }
    }
    if clean {
        println!(
            "no import cycle between the modules of any crate; no transport depends on another"
        );
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn no_crate_of_the_workspace_has_an_import_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let roots = source_roots(root);
        assert!(roots.len() >= 10, "found only {roots:?}");
        for (name, src) in roots {
            let cycles = crate_cycles(&src).unwrap();
            assert!(cycles.is_empty(), "{name} has import cycles: {cycles:?}");
        }
    }

    #[test]
    fn no_transport_depends_on_another() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(transport_dependencies(root).unwrap(), Vec::new());
    }

    #[test]
    fn a_transport_depending_on_another_is_found() {
        let dir = tree(&[
            (
                "crates/ipc-pipe/Cargo.toml",
                "[dependencies]\nipc-core = \"1\"\n",
            ),
            (
                "crates/ipc-uds/Cargo.toml",
                "[dependencies]\nipc-sys = \"1\"\n",
            ),
            (
                "crates/ipc-zenoh/Cargo.toml",
                "[dev-dependencies]\nipc-uds = \"1\"\n",
            ),
            (
                "crates/ipc-shm/Cargo.toml",
                "[target.'cfg(unix)'.dependencies]\nipc-uds = { path = \"x\" }\n",
            ),
        ]);
        assert_eq!(
            transport_dependencies(dir.path()).unwrap(),
            vec![("ipc-shm".to_string(), "ipc-uds".to_string())]
        );
    }

    #[test]
    fn a_cycle_through_a_use_group_and_super_is_found() {
        let dir = tree(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::{x::Y, b::{self, Z}};"),
            ("b.rs", "pub fn f() { crate::c::d::g() }"),
            ("c/mod.rs", "mod d;"),
            ("c/d.rs", "use super::super::a::Thing;"),
        ]);
        assert_eq!(
            crate_cycles(dir.path()).unwrap(),
            vec![vec!["a".to_string(), "b".into(), "c::d".into()]]
        );
    }

    #[test]
    fn comments_tests_and_ancestors_do_not_count() {
        let dir = tree(&[
            ("lib.rs", "mod a; mod b; use crate::a::X;"),
            (
                "a.rs",
                "/// see [`b`](crate::b)\n// crate::b::f\nlet s = \"crate::b\";",
            ),
            (
                "b.rs",
                "use crate::a::X;\n#[cfg(test)]\nmod tests { use crate::a; }",
            ),
            ("a/inner.rs", "use crate::a::X; use super::X;"),
        ]);
        let graph = module_graph(dir.path()).unwrap();
        assert_eq!(graph["b"], BTreeSet::from(["a".to_string()]));
        assert!(graph["a"].is_empty(), "{graph:?}");
        assert!(crate_cycles(dir.path()).unwrap().is_empty());
    }
}
