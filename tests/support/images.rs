//! Container images made from host binaries, for tests that run their own programs in pods (an
//! operator, a webhook server). The image is the busybox test base (`library/busybox:latest`
//! of scripts/test-images.sh) plus one layer holding the binaries under `/usr/local/bin` and the
//! shared libraries `ldd` lists for them (the dynamic loader among them) at their host paths.
//!
//! The layer is reproducible (sorted tar, mtimes 0, `gzip -n`), so the tag is a hash of the
//! image's content: building twice, or from two tests at once (each in its own directory), gives
//! the same manifest, and a tag the registry already has is not pushed again. Same tools as the
//! script: tar, gzip, sha256sum and skopeo, and the local registry on 127.0.0.1:5000, which the
//! nodes reach as a mirror of docker.io.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const REGISTRY: &str = "127.0.0.1:5000";
const BASE: &str = "library/busybox:latest";
/// Where the images go in the registry; pods name them `docker.io/<REPO_PREFIX>/<name>:<tag>`.
const REPO_PREFIX: &str = "kaji-test";

/// Builds (or finds) an image running the first of `binaries`, pushes it to the test registry and
/// returns the reference to put in a pod spec (`docker.io/kaji-test/<name>:<content hash>`).
pub fn binary_image(name: &str, binaries: &[&Path]) -> String {
    let first = binaries
        .first()
        .expect("an image needs at least one binary");
    let entrypoint = format!("/usr/local/bin/{}", file_name(first));
    binary_image_with(name, binaries, &[entrypoint.as_str()])
}

/// [`binary_image`] with its own entrypoint (e.g. `["/usr/local/bin/server", "--port", "8443"]`).
pub fn binary_image_with(name: &str, binaries: &[&Path], entrypoint: &[&str]) -> String {
    // The registry and the base image (a no-op when they are there).
    super::node::Node::test_registries();
    let work = tempfile::Builder::new()
        .prefix(&format!("kaji-image-{name}-"))
        .tempdir()
        .expect("tempdir");
    let w = work.path();

    // 1. The layer's tree: the binaries, then every library they load, at the host's path.
    let root = w.join("rootfs");
    let bin = root.join("usr/local/bin");
    std::fs::create_dir_all(&bin).expect("creating the image's /usr/local/bin");
    let mut libs = BTreeSet::new();
    for b in binaries {
        let dest = bin.join(file_name(b));
        std::fs::copy(b, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", b.display()));
        libs.extend(shared_libraries(b));
    }
    for lib in &libs {
        let dest = root.join(lib.strip_prefix("/").expect("ldd prints absolute paths"));
        std::fs::create_dir_all(dest.parent().expect("a library's directory"))
            .expect("creating a library directory");
        // fs::copy follows symlinks: the image gets the library itself at the name ldd printed.
        std::fs::copy(lib, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", lib.display()));
    }
    let tar = w.join("layer.tar");
    run(Command::new("find")
        .arg(&root)
        .args(["-exec", "touch", "-h", "-d", "@0", "{}", "+"]));
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let diff_id = sha256(&tar);

    // 2. The base image as an OCI layout, fetched from the registry.
    let layout = w.join("layout");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{REGISTRY}/{BASE}"))
        .arg(format!("oci:{}:base", layout.display())));
    let blobs = layout.join("blobs/sha256");
    let index = read_json(&layout.join("index.json"));
    let base_manifest = blob(&blobs, &index["manifests"][0]["digest"]);
    let mut config = blob(&blobs, &base_manifest["config"]["digest"]);

    // 3. The image's config: the base's, with the entrypoint and the new layer; its hash names
    //    the image (same binaries, libraries, base and entrypoint: same tag).
    config["config"]["Entrypoint"] = json!(entrypoint);
    // The entrypoint alone runs the image: the base's Cmd (`sh`) would become its argument.
    if let Some(c) = config["config"].as_object_mut() {
        c.remove("Cmd");
    }
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("the base config's diff_ids")
        .push(json!(format!("sha256:{diff_id}")));
    config.as_object_mut().expect("config").remove("history");
    let config_bytes = serde_json::to_vec(&config).expect("config JSON");
    let config_path = w.join("config.json");
    std::fs::write(&config_path, &config_bytes).expect("writing the config");
    let config_digest = sha256(&config_path);
    let tag = &config_digest[..16];
    let reference = format!("{REPO_PREFIX}/{name}:{tag}");
    let pod_image = format!("docker.io/{reference}");
    if registry_has(&reference) {
        return pod_image;
    }

    // 4. Layer, config, manifest and index into the layout; push it.
    run(Command::new("gzip").args(["-n", "-6"]).arg(&tar));
    let gz = w.join("layer.tar.gz");
    let layer_digest = sha256(&gz);
    let layer_size = std::fs::metadata(&gz).expect("layer size").len();
    std::fs::rename(&gz, blobs.join(&layer_digest)).expect("moving the layer");
    std::fs::rename(&config_path, blobs.join(&config_digest)).expect("moving the config");
    let mut manifest = base_manifest.clone();
    manifest["config"] = json!({
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": format!("sha256:{config_digest}"),
        "size": config_bytes.len(),
    });
    manifest["layers"]
        .as_array_mut()
        .expect("the base manifest's layers")
        .push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_size,
        }));
    let manifest_path = w.join("manifest.json");
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
    std::fs::write(&manifest_path, &manifest_bytes).expect("writing the manifest");
    let manifest_digest = sha256(&manifest_path);
    std::fs::rename(&manifest_path, blobs.join(&manifest_digest)).expect("moving the manifest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("writing the index");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{REGISTRY}/{reference}")));
    pod_image
}

/// The shared libraries `ldd` lists for `binary` (absolute paths, the loader included); none for
/// a static binary.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("running ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable": nothing to add.
        return Vec::new();
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
        // (0x...)", "linux-vdso.so.1 (0x...)" (in the kernel, nothing to copy).
        let line = line.trim();
        assert!(
            !line.contains("not found"),
            "{}: a library is missing: {line}",
            binary.display()
        );
        let path = line.split_once("=>").map_or(line, |(_, p)| p).trim();
        let path = path.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    libs
}

fn registry_has(reference: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{REGISTRY}/{reference}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_else(|| panic!("{} has no file name", p.display()))
        .to_string_lossy()
        .into_owned()
}

fn blob(blobs: &Path, digest: &Value) -> Value {
    let digest = digest.as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    read_json(&blobs.join(hex))
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
