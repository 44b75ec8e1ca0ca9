//! Compiles Kaji's pause program (`pause/pause.c`) into a static binary in `OUT_DIR`;
//! `src/images.rs` embeds it and packs it as the sandbox image.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("pause/pause.c");
    println!("cargo::rerun-if-changed={}", src.display());
    println!("cargo::rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("pause");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("running `{cc}` to build the pause program: {e} (install gcc and libc6-dev)")
        });
    assert!(
        status.success(),
        "`{cc} -static` failed to build {}: {status}",
        src.display()
    );
}
