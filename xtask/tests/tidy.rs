//! Project conventions, checked by `cargo test` itself (in the manner of
//! rust-analyzer's tidy test).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tidy.rs" {
            out.push(path);
        }
    }
}

/// Every `unsafe` block has a `// SAFETY:` comment just above it.
#[test]
fn every_unsafe_block_says_why_it_is_sound() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 20, "found the sources");
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("unsafe {") || code.trim_end().ends_with("unsafe"))
                || code.contains("fn ")
            {
                continue;
            }
            // The comment may sit a few lines up, above the statement the
            // block is part of.
            let window = &lines[i.saturating_sub(12)..=i];
            if !window
                .iter()
                .any(|l| l.trim_start().starts_with("// SAFETY:"))
            {
                missing.push(format!(
                    "{}:{}",
                    file.strip_prefix(root()).unwrap().display(),
                    i + 1
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "unsafe without a SAFETY comment: {missing:?}"
    );
}

/// Every library crate uses its README as its crate docs, so the README's
/// example is compiled and run as a doc test.
#[test]
fn every_library_crate_documents_itself_with_its_readme() {
    let crates = std::fs::read_dir(root().join("crates")).unwrap();
    let mut checked = 0;
    for krate in crates.flatten() {
        let lib = krate.path().join("src/lib.rs");
        if !lib.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.contains(r#"#![doc = include_str!("../README.md")]"#),
            "{} does not include its README",
            lib.display()
        );
        assert!(krate.path().join("README.md").exists());
        checked += 1;
    }
    assert!(checked >= 6, "checked {checked} crates");
}
