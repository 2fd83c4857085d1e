//! Build steps the compiler cannot do by itself:
//!
//! - Rebuild when a migration changes: `sqlx::migrate!` embeds them at compile time.
//! - On Linux with glibc, link the binary with packed relative relocations (RELR): a
//!   position-independent binary of this size carries about 0.7 MB of them otherwise.
//! - Embed the Control Center (`./x ui` builds it into `frontend/dist`): each file gets a
//!   content hash in its name (so browsers may cache it forever), references between the
//!   files are rewritten to those names, and everything is stored gzip-compressed (what
//!   every browser asks for; `src/server/assets.rs` inflates for the rare client that does not), with
//!   Zopfli: plain gzip that is about 5 % smaller than zlib's best, which counts against
//!   the page's download budget.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        // Size (the release binary must stay under 15 MB with the UI embedded): packed
        // relative relocations, and identical code folding by the linker (lld, Rust's
        // default here). `--icf=all` folds byte-identical functions even when their address
        // is taken, and `--ignore-data-address-equality` folds identical read-only data too
        // (exception tables, vtables, constants): about 260 KB. Rust promises no distinct
        // addresses for functions or constants, and nothing here compares them; tests and
        // benchmarks run binaries linked this way.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        println!("cargo:rustc-link-arg-bins=-Wl,--ignore-data-address-equality");
        println!("cargo:rustc-link-arg-bins=-Wl,-O2");
    }
    embed_ui();
}

/// The files `./x ui` leaves in the dist directory, with their types. The first three are
/// referenced by content-hashed names; `index.html` and the icon keep theirs.
const UI_FILES: &[(&str, &str)] = &[
    ("pryx_bg.wasm", "application/wasm"),
    ("pryx.js", "text/javascript; charset=utf-8"),
    ("boot.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("icon.svg", "image/svg+xml"),
    ("index.html", "text/html; charset=utf-8"),
];

/// Files served under their own name (the page's address and its icon), revalidated on
/// every load instead of cached forever.
const STABLE_NAMES: &[&str] = &["index.html", "icon.svg"];

/// Shown when the binary was built without `./x ui` (e.g. a bare `cargo build`).
const NO_UI_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Pryx</title>\
<p>This build of Pryx was made without its Control Center. Build it with <code>./x run</code> \
(or run <code>./x ui</code> before <code>cargo build</code>). The API at <code>/rpc</code> works.</p>";

fn embed_ui() {
    println!("cargo:rerun-if-env-changed=PRYX_UI_DIST");
    let dist = std::env::var("PRYX_UI_DIST").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("frontend/dist"));
    println!("cargo:rerun-if-changed={}", dist.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Files of earlier UI builds (their names change with their content).
    if let Ok(entries) = std::fs::read_dir(&out_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ui-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let files: Vec<(String, &str, Vec<u8>)> = if dist.join("index.html").exists() {
        hashed_files(&dist)
    } else {
        println!("cargo:warning=no Control Center in {} (run ./x ui): embedding a placeholder page", dist.display());
        vec![("index.html".into(), "text/html; charset=utf-8", NO_UI_PAGE.as_bytes().to_vec())]
    };
    let mut table = String::from("&[\n");
    for (name, content_type, body) in files {
        let stored = out_dir.join(format!("ui-{name}.gz"));
        std::fs::write(&stored, gzip(&body)).expect("write a compressed UI file");
        let immutable = !STABLE_NAMES.contains(&name.as_str());
        let etag = short_hash(&body);
        let _ = writeln!(
            table,
            "    Asset {{ path: {path:?}, content_type: {content_type:?}, gzip: include_bytes!({stored:?}), \
             immutable: {immutable}, etag: {etag:?} }},",
            path = format!("/{name}"),
            stored = stored.display().to_string(),
        );
    }
    table.push_str("]\n");
    std::fs::write(out_dir.join("ui_assets.rs"), table).expect("write the UI table");
}

/// Read the dist files, give the cacheable ones hashed names and point the others at them.
fn hashed_files(dist: &Path) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut renames: Vec<(String, String)> = Vec::new();
    let mut files = Vec::new();
    for (name, content_type) in UI_FILES {
        let path = dist.join(name);
        let mut body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run ./x ui again)", path.display()));
        if content_type.starts_with("text/") {
            let mut text = String::from_utf8(body).unwrap_or_else(|_| panic!("{} is not UTF-8", path.display()));
            for (from, to) in &renames {
                text = text.replace(from.as_str(), to);
            }
            body = text.into_bytes();
        }
        let served = if STABLE_NAMES.contains(name) {
            name.to_string()
        } else {
            let (stem, ext) = name.rsplit_once('.').expect("UI file names have extensions");
            let hashed = format!("{stem}-{}.{ext}", short_hash(&body));
            renames.push((name.to_string(), hashed.clone()));
            hashed
        };
        files.push((served, *content_type, body));
    }
    files
}

fn short_hash(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(body)[..6])
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zopfli::compress(zopfli::Options::default(), zopfli::Format::Gzip, body, &mut out).expect("compress in memory");
    out
}
