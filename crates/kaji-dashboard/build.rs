//! Embeds the front end's built files (`ui/dist/**`, committed; `npm run build` in `ui/` makes
//! them) into the crate: a table of (path under `/dashboard/`, bytes, content type, ETag)
//! generated into `$OUT_DIR/assets.rs` with one `include_bytes!` per file (of a copy in
//! `$OUT_DIR/dist`), so `cargo build` alone makes the whole binary and needs no node.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

/// The content type of a file by its extension (what Vite emits, and the usual extras).
fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, 64 bits: an ETag that changes with the bytes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("ui")
        .join("dist");
    println!("cargo:rerun-if-changed=ui/dist");
    let mut files = Vec::new();
    walk(&root, &mut files);
    // Sorted by the path as served, for a binary search.
    let mut files: Vec<(String, PathBuf)> = files
        .into_iter()
        .filter_map(|f| {
            let rel = f
                .strip_prefix(&root)
                .ok()?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            Some((rel, f))
        })
        .collect();
    files.sort();
    let mut code = String::from(
        "/// (path under /dashboard/, contents, content type, ETag)\npub static FILES: &[(&str, &[u8], &str, &str)] = &[\n",
    );
    // Each file is copied into OUT_DIR and embedded from there, so a `npm run build` that
    // replaces ui/dist while cargo compiles cannot leave the table naming files that are gone.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let copies = out_dir.join("dist");
    let _ = std::fs::remove_dir_all(&copies);
    std::fs::create_dir_all(&copies)
        .unwrap_or_else(|e| panic!("creating {}: {e}", copies.display()));
    for (n, (rel, file)) in files.iter().enumerate() {
        // A file that vanished since the walk (a rebuild under way) is left out; the rebuild's
        // change to ui/dist makes cargo run this again.
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let copy = copies.join(format!("{n}"));
        std::fs::write(&copy, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", copy.display()));
        // A precompressed `x.gz` is served for `x`, so its type is the original's.
        let ct = content_type(rel.strip_suffix(".gz").unwrap_or(rel));
        let _ = writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?}), {ct:?}, \"\\\"{:016x}\\\"\"),",
            copy.display().to_string(),
            fnv(&bytes)
        );
    }
    code.push_str("];\n");
    let out = out_dir.join("assets.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
