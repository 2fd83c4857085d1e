//! The architecture, held by a test: which room of `src/` may use which.
//!
//! Every top-level module of `src/` is a room, and rooms stand in layers ([`LAYERS`], top
//! first). A room may use rooms in the layers below it, never one beside or above it, so
//! the import graph has no loop and no import runs back up. On top of that, a few rooms are
//! kept ignorant of things on purpose ([`MUST_NOT_USE`]): the server does not know how the
//! model is called, the agent does not know HTTP, the contract crate knows nothing of the
//! agent. When this test fails, move the code to the room it belongs in (ARCHITECTURE.md
//! says which), or, if the map itself changed, change [`LAYERS`] and ARCHITECTURE.md
//! together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rooms of `src/`, top layer first. `runtime::panics` stands apart from the rest of
/// `runtime`: the runtime installs the panic hook, and whoever catches an unwind (the
/// supervisor, a turn) reads it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["desktop"],
    &["runtime"],
    &["server"],
    &["channels"],
    &["agent"],
    &["mcp", "llm"],
    &["config"],
    &["approvals", "telemetry"],
    &["auth"],
    &["tools", "store", "secrets", "client"],
    &["sandbox", "datadir", "html", "runtime::panics"],
];

/// Paths a room must not name at all, with the reason.
const MUST_NOT_USE: &[(&str, &[&str], &str)] = &[
    ("server", &["crate::llm", "async_openai"], "the server never knows how a model is called"),
    (
        "agent",
        &["axum", "hyper", "crate::server", "crate::channels", "reqwest"],
        "the agent never touches HTTP: the server and the channels call it",
    ),
    ("channels", &["crate::llm", "async_openai"], "channels only turn platform payloads into messages and back"),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a file of `src/` belongs to (`None` for the crate root and `main.rs`).
fn room_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src_dir()).expect("under src");
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    match parts.as_slice() {
        [single] if single == "lib" || single == "main" => None,
        [room, rest @ ..] if room == "runtime" && rest.first().is_some_and(|r| r == "panics") => {
            Some("runtime::panics".into())
        }
        [room, ..] => Some(room.clone()),
        [] => None,
    }
}

/// The code of a file without comments (doc comments included) and string literals, so
/// prose that names a module is not taken for an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut previous = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_string {
                if c == '"' && previous != '\\' {
                    in_string = false;
                }
                previous = if previous == '\\' && c == '\\' { ' ' } else { c };
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && previous != '\'' {
                in_string = true;
                previous = ' ';
                continue;
            }
            out.push(c);
            previous = c;
        }
        out.push('\n');
    }
    out
}

/// Every room a piece of code names through `crate::ROOM` (also in `use crate::{a, b::c}`).
fn rooms_used(code: &str, rooms: &BTreeSet<String>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let names: Vec<String> = if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(|part| part.trim().to_owned()).collect()
        } else {
            let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(after.len());
            vec![after[..end].to_owned()]
        };
        for name in names {
            let path: Vec<&str> = name.split("::").filter(|p| !p.is_empty()).collect();
            let Some(first) = path.first() else { continue };
            if *first == "runtime" && path.get(1) == Some(&"panics") {
                used.insert("runtime::panics".to_owned());
            } else if rooms.contains(*first) {
                used.insert((*first).to_owned());
            }
        }
        rest = after;
    }
    used
}

fn layer_of(room: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&room))
}

fn sources() -> Vec<(PathBuf, String, String)> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|file| {
            let room = room_of(&file)?;
            let code = code_only(&std::fs::read_to_string(&file).expect("read source"));
            Some((file, room, code))
        })
        .collect()
}

#[test]
fn every_room_has_a_layer() {
    let rooms: BTreeSet<String> = sources().into_iter().map(|(_, room, _)| room).collect();
    let missing: Vec<_> = rooms.iter().filter(|room| layer_of(room).is_none()).collect();
    assert!(missing.is_empty(), "rooms missing from LAYERS (and ARCHITECTURE.md): {missing:?}");
}

#[test]
fn rooms_use_only_the_layers_below_them() {
    let sources = sources();
    let rooms: BTreeSet<String> = sources.iter().map(|(_, room, _)| room.clone()).collect();
    let mut upward: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edges = 0;
    for (file, room, code) in &sources {
        let Some(own) = layer_of(room) else { continue };
        for used in rooms_used(code, &rooms) {
            if &used == room {
                continue;
            }
            edges += 1;
            if layer_of(&used).is_none_or(|theirs| theirs <= own) {
                let from = format!("{room} ({})", file.strip_prefix(src_dir()).expect("under src").display());
                upward.entry(from).or_default().insert(used);
            }
        }
    }
    assert!(edges > 50, "the scan found only {edges} imports: is it still reading the sources?");
    assert!(upward.is_empty(), "imports beside or above their layer (see LAYERS): {upward:#?}");
}

#[test]
fn rooms_stay_ignorant_of_what_they_must_not_know() {
    let mut broken = Vec::new();
    for (file, room, code) in sources() {
        for (guarded, forbidden, why) in MUST_NOT_USE {
            if room != *guarded {
                continue;
            }
            for name in *forbidden {
                let named = code.match_indices(name).any(|(at, _)| {
                    let before = code[..at].chars().next_back();
                    let after = code[at + name.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if named {
                    broken.push(format!("{} names `{name}`: {why}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_contract_crate_depends_on_nothing_of_the_agent() {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("api");
    let manifest = std::fs::read_to_string(api.join("Cargo.toml")).expect("api/Cargo.toml");
    let table: toml::Table = manifest.parse().expect("api/Cargo.toml is TOML");
    let dependencies: Vec<&String> = ["dependencies", "dev-dependencies"]
        .iter()
        .filter_map(|section| table.get(*section).and_then(|d| d.as_table()))
        .flat_map(|d| d.keys())
        .collect();
    assert!(!dependencies.is_empty(), "api/Cargo.toml lists its dependencies");
    assert!(!dependencies.iter().any(|name| name.starts_with("pryx")), "pryx-api depends on {dependencies:?}");
    let mut files = Vec::new();
    rust_files(&api.join("src"), &mut files);
    for file in files {
        let code = code_only(&std::fs::read_to_string(&file).expect("read api source"));
        assert!(!code.contains("pryx::"), "{} names the agent crate", file.display());
    }
}

/// The Control Center's modules (`frontend/src`, its own crate): the root module picks the
/// screen, the screens use the shared modules, and nothing uses back up into a loop.
#[test]
fn the_control_center_modules_form_no_loop() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend/src");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let module_of = |file: &Path| file.file_stem().expect("a file name").to_string_lossy().into_owned();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let code = code_only(&std::fs::read_to_string(file).expect("read frontend source"));
        let module = module_of(file);
        let mut used = rooms_used(&code, &modules);
        used.remove(&module);
        uses.insert(module, used);
    }
    assert!(uses.get("app").is_some_and(|used| used.contains("chat")), "the scan reads the frontend: {uses:?}");
    // Depth-first search for a back edge.
    fn visit<'a>(
        module: &'a str,
        uses: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = path[at..].iter().map(|m| m.to_string()).collect();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for next in uses.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, uses, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in uses.keys() {
        let cycle = visit(module, &uses, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "the Control Center's modules use each other in a loop: {cycle:?}");
    }
}

#[test]
fn the_scanner_reads_grouped_imports_and_skips_prose() {
    let rooms: BTreeSet<String> = ["agent", "store", "runtime", "server"].map(String::from).into();
    let code = code_only(
        "use crate::{agent::Agent, store};\n// crate::server in a comment\nlet s = \"crate::server\";\n\
         crate::runtime::panics::describe(p);",
    );
    let used: Vec<String> = rooms_used(&code, &rooms).into_iter().collect();
    assert_eq!(used, ["agent", "runtime::panics", "store"]);
}
