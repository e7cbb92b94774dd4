//! broadcast-core's modules form layers: `lib.rs` declares them lowest
//! first, and a module may use only the modules declared before it. This
//! test reads every `crate::<module>` path (and `crate::<Item>` paths
//! through the root's re-exports) and fails on any that points up or
//! sideways into a later module, so a dependency cycle cannot come back.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("broadcast-core/src")
}

/// The top-level modules in the order `lib.rs` declares them.
fn layers(lib: &str) -> Vec<String> {
    lib.lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// `Broadcaster` -> `broadcaster`, from `pub use broadcaster::{..}` lines.
fn root_items(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    let flat = lib.replace('\n', " ");
    for stmt in flat.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            items.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    items
}

/// The code of a file without comments and without its unit tests (tests
/// may reach anywhere).
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a` and `crate::{a, b}` path start in `code`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(
                group
                    .split(',')
                    .filter_map(|p| p.trim().split("::").next())
                    .map(str::to_owned),
            );
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn modules_only_use_the_layers_below_them() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let order = layers(&lib);
    assert!(order.len() > 10, "lib.rs declares {order:?}");
    let rank = |m: &str| order.iter().position(|o| o == m);
    let items = root_items(&lib);
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut violations = Vec::new();
    for file in all {
        let rel = file.strip_prefix(src()).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        let Some(own) = rank(&module) else { continue };
        for path in crate_paths(&code(&file)) {
            let target = match rank(&path) {
                Some(_) => path.clone(),
                None => match items.get(&path) {
                    Some(m) => m.clone(),
                    None => continue,
                },
            };
            let Some(theirs) = rank(&target) else {
                continue;
            };
            if theirs > own {
                violations.push(format!(
                    "{} uses `crate::{path}` ({target}), a layer above `{module}`",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies must point down the layers of broadcast-core/src/lib.rs:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_path() {
    // The test above must be able to fail: a path it parses points up.
    let paths = crate_paths("use crate::{join::Rooms, target};\nlet x = crate::Broadcaster::x;");
    assert_eq!(paths, ["join", "target", "Broadcaster"]);
    let lib = "mod a;\npub mod b;\npub use b::{X, Y};\n";
    assert_eq!(layers(lib), ["a", "b"]);
    assert_eq!(root_items(lib).get("Y").map(String::as_str), Some("b"));
}
