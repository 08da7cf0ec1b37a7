//! The tree is the architecture: imports between the crate's top-level modules run one
//! way (src/lib.rs lists them in order), so there is no cycle between them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::util;

/// Files compiled for tests only: declared as `#[cfg(test)] mod name;` in a file of `dir`.
fn test_only_files(dir: &Path) -> BTreeSet<std::path::PathBuf> {
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("list src") {
        let path = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (at, _) in text.match_indices("#[cfg(test)]\nmod ") {
            let rest = &text[at + "#[cfg(test)]\nmod ".len()..];
            if let Some(name) =
                rest.split(';').next().filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            {
                files.insert(dir.join(format!("{name}.rs")));
            }
        }
    }
    files
}

/// Top-level module -> the top-level modules its non-test code names as `crate::X`.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let test_only = test_only_files(&dir);
        for entry in std::fs::read_dir(&dir).expect("list src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if test_only.contains(&path) {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if ["lib", "main", "cli"].contains(&module.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            // Unit tests may use test support from anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let named = code.match_indices("crate::").map(|(at, _)| {
                code[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect::<String>()
            });
            graph.entry(module.clone()).or_default().extend(named.filter(|m| *m != module));
        }
    }
    graph
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = imports(&util::repo().join("src"));
    assert!(graph.get("pipeline").is_some_and(|to| to.contains("flow")), "the scan sees imports: {graph:?}");
    // Depth-first search for a path back to the start.
    for start in graph.keys() {
        let mut stack: Vec<Vec<&str>> = vec![vec![start]];
        while let Some(path) = stack.pop() {
            let last = *path.last().expect("non-empty");
            for next in graph.get(last).into_iter().flatten() {
                assert_ne!(next, start, "import cycle: {} -> {next}", path.join(" -> "));
                if !path.contains(&next.as_str()) {
                    stack.push([path.clone(), vec![next.as_str()]].concat());
                }
            }
        }
    }
}

/// The modules in the order of the table in src/lib.rs, top to bottom.
fn table_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! | [`"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn imports_run_down_the_table_in_lib_rs() {
    let src = util::repo().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let order = table_order(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    assert_eq!(order.iter().cloned().collect::<BTreeSet<_>>(), declared, "every module has one row");
    let graph = imports(&src);
    assert!(
        graph.get("command").is_some_and(|to| to.contains("pipeline")),
        "the scan sees imports: {graph:?}"
    );
    for (module, imported) in &graph {
        let at = order.iter().position(|m| m == module).unwrap_or_else(|| panic!("{module} has no row"));
        for other in imported {
            let below = order.iter().position(|m| m == other).is_some_and(|o| o > at);
            assert!(below, "{module} imports {other}, which is not below it in src/lib.rs's table");
        }
    }
}

/// Within a module, files import each other (`super::X`, `crate::module::X`) without a
/// cycle: each file's part of the work can be read after the parts it uses.
#[test]
fn no_import_cycle_between_the_files_of_a_module() {
    let src = util::repo().join("src");
    for entry in std::fs::read_dir(&src).expect("list src") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let module = dir.file_name().expect("name").to_string_lossy().to_string();
        let test_only = test_only_files(&dir);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in std::fs::read_dir(&dir).expect("list module") {
            let path = file.expect("entry").path();
            if path.extension().is_none_or(|e| e != "rs") || test_only.contains(&path) {
                continue;
            }
            let name = path.file_stem().expect("stem").to_string_lossy().to_string();
            if name == "mod" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            // Code only: doc links may point anywhere.
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut named = BTreeSet::new();
            for prefix in ["super::".to_string(), format!("crate::{module}::")] {
                for (at, _) in code.match_indices(&prefix) {
                    let next: String = code[at + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if next != name && dir.join(format!("{next}.rs")).exists() {
                        named.insert(next);
                    }
                }
            }
            graph.insert(name, named);
        }
        for start in graph.keys() {
            let mut stack: Vec<Vec<&str>> = vec![vec![start]];
            while let Some(path) = stack.pop() {
                let last = *path.last().expect("non-empty");
                for next in graph.get(last).into_iter().flatten() {
                    assert_ne!(next, start, "import cycle in {module}: {} -> {next}", path.join(" -> "));
                    if !path.contains(&next.as_str()) {
                        stack.push([path.clone(), vec![next.as_str()]].concat());
                    }
                }
            }
        }
    }
}
