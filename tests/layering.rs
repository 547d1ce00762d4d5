//! Every `crate::` import in src/ points down a layer.
//!
//! The layers are the `// layer: NAME` markers among the `mod` declarations of `src/lib.rs`,
//! bottom up: one list, where a new module is declared. A module may use its own items and
//! those of modules in lower layers, never those of its own layer's siblings or of a layer
//! above. Test code (`#[cfg(test)]` items) is left out: a unit test may reach anywhere.
//! Paths through lib.rs's re-exports (`crate::Balance`) count as imports of the module that
//! defines the item, so they cannot hide a dependency's direction.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Module name → layer index, from lib.rs's markers.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layer = None;
    let mut out = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("// layer:") {
            layer = Some(layer.map_or(0, |l| l + 1));
            assert!(!name.trim().is_empty(), "a layer marker without a name");
            continue;
        }
        let decl = line
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.strip_suffix(';')) {
            let layer = layer.unwrap_or_else(|| panic!("`mod {name}` precedes every layer marker"));
            out.insert(name.to_string(), layer);
        }
    }
    out
}

/// lib.rs's re-exports: item name → defining module (`pub use balance::{Balance, ..}`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let code = strip(lib);
    for stmt in code.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim().trim_start_matches("crate::");
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        let names = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.to_string());
            }
        }
    }
    out
}

/// Source without comments, string literals and `#[cfg(test)]` items.
fn strip(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut code = String::new();
        let mut in_str = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => in_str = !in_str,
                '\\' if in_str => {
                    chars.next();
                }
                '/' if !in_str && chars.peek() == Some(&'/') => break,
                _ if in_str => {}
                _ => code.push(c),
            }
        }
        out.push_str(&code);
        out.push('\n');
    }
    let mut kept = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        rest = &rest[at + "#[cfg(test)]".len()..];
        let brace = rest.find('{');
        let semi = rest.find(';');
        match (brace, semi) {
            (Some(b), Some(s)) if s < b => rest = &rest[s + 1..],
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = rest.len();
                for (i, c) in rest[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &rest[end..];
            }
            (None, Some(s)) => rest = &rest[s + 1..],
            (None, None) => rest = "",
        }
    }
    kept.push_str(rest);
    kept
}

/// The first segments of every `crate::` path in `code` (`crate::{a::X, b}` gives a and b).
fn imported_heads(code: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded {
            continue; // `tower_lb_crate::` or similar, not our crate
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if !(c == ',' && depth == 1) {
                    item.push(c);
                }
            }
            items.push(item);
            heads.extend(items.iter().filter_map(|i| head(i.trim())));
        } else if let Some(h) = head(rest) {
            heads.push(h);
        }
    }
    heads
}

fn head(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Every import that does not point down: `(file, module, imported module)`.
fn violations(
    files: &[(String, String)],
    layers: &BTreeMap<String, usize>,
    reexports: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (path, src) in files {
        let module = module_of(path);
        let Some(&own) = layers.get(&module) else {
            found.push(format!("{path}: module `{module}` has no layer in lib.rs"));
            continue;
        };
        for head in imported_heads(&strip(src)) {
            let target = reexports.get(&head).cloned().unwrap_or(head);
            if target == module {
                continue;
            }
            match layers.get(&target) {
                Some(&layer) if layer < own => {}
                Some(&layer) => found.push(format!(
                    "{path}: `{module}` (layer {own}) imports `{target}` (layer {layer})"
                )),
                None => found.push(format!("{path}: `crate::{target}` is not a known module")),
            }
        }
    }
    found
}

fn module_of(path: &str) -> String {
    let rel = path.trim_start_matches("src/");
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("src/ is readable")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .expect("inside the crate")
                .to_string_lossy()
                .replace('\\', "/");
            if rel != "src/lib.rs" && !is_test_module(&path) {
                out.push((rel, fs::read_to_string(&path).expect("readable")));
            }
        }
    }
}

/// Whether the file at `path` is a module its parent declares `#[cfg(test)]` (`mod tests;`
/// kept in a file of its own): test code, like the `#[cfg(test)]` items left out of a file.
fn is_test_module(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_stem()) else {
        return false;
    };
    let declared = format!("#[cfg(test)]\nmod {};", name.to_string_lossy());
    ["mod.rs"]
        .iter()
        .map(|parent| dir.join(parent))
        .chain(dir.parent().map(|up| {
            up.join(format!(
                "{}.rs",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ))
        }))
        .filter(|parent| parent != path)
        .any(|parent| fs::read_to_string(parent).is_ok_and(|text| text.contains(&declared)))
}

#[test]
fn every_crate_import_points_down_a_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    assert!(layers.len() >= 10, "the markers were read: {layers:?}");
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() > 30, "the sources were read");
    let found = violations(&files, &layers, &reexports(&lib));
    assert!(
        found.is_empty(),
        "imports that do not point down (layers are the `// layer:` markers in src/lib.rs):\n{}",
        found.join("\n")
    );
}

/// The checker itself: it must catch an upward import, a sibling import, one through a
/// re-export and one inside a `use crate::{..}` group, and ignore comments, strings and tests.
#[test]
fn the_check_catches_what_it_must() {
    let lib = "// layer: leaves\nmod error;\nmod rng;\n// layer: mid\npub mod pool;\n\
               // layer: top\nmod balance;\npub use balance::{Balance, Builder};\n";
    let layers = layers(lib);
    let reexports = reexports(lib);
    let file = |path: &str, src: &str| (path.to_string(), src.to_string());
    let clean = [
        file("src/pool/mod.rs", "use crate::error::Error;\n// crate::balance\nlet s = \"crate::balance\";\n#[cfg(test)]\nmod tests { use crate::balance::X; }\n"),
        file("src/balance.rs", "use crate::{pool::Pool, error::Error};\nuse crate::balance::Inner;\n"),
    ];
    assert_eq!(
        violations(&clean, &layers, &reexports),
        Vec::<String>::new()
    );

    let bad = [
        file("src/pool/mod.rs", "use crate::balance::Inner;\n"),
        file(
            "src/pool/members.rs",
            "fn f() -> crate::Balance { make() }\n",
        ),
        file("src/error.rs", "use crate::{rng::Rng};\n"),
        file(
            "src/rng.rs",
            "use crate::{error::Error, pool::{Pool, Members}};\n",
        ),
        file("src/nowhere.rs", "\n"),
    ];
    let found = violations(&bad, &layers, &reexports);
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(found[0].contains("`pool` (layer 1) imports `balance` (layer 2)"));
    assert!(
        found[1].contains("imports `balance`"),
        "through a re-export"
    );
    assert!(
        found[2].contains("`error` (layer 0) imports `rng` (layer 0)"),
        "siblings"
    );
    assert!(found[3].contains("imports `error`") && found[4].contains("imports `pool`"));
    assert!(found[5].contains("no layer"));
}
