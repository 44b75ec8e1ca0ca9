//! Kaji's own images, built in memory: the sandbox ("pause") image that every pod starts with.
//!
//! The pause program is `pause/pause.c`, compiled static by `build.rs` and embedded here. It is
//! packed as a one-layer OCI image archive (an OCI layout in a tar: `oci-layout`, `index.json`,
//! `blobs/sha256/...`) and imported with `ctr images import`, so no image ever has to come from
//! the internet. The archive is reproducible: the same program gives the same image digest.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The sandbox image containerd's CRI plugin uses (`sandbox_image`); imported at start.
pub const PAUSE_IMAGE: &str = "kaji.io/pause:3.10";

/// The static pause binary built by `build.rs`.
pub const PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The containerd namespace the CRI plugin works in.
pub const CRI_NAMESPACE: &str = "k8s.io";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One entry of a [`ustar`] archive.
pub enum TarEntry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
}

/// A reproducible POSIX ustar archive: owner 0:0, mtime 0, entries in the given order.
/// Paths must fit ustar's 100-byte name field (enough for OCI blob paths).
pub fn ustar(entries: &[TarEntry<'_>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        let (name, mode, kind, data): (String, u32, u8, &[u8]) = match entry {
            TarEntry::Dir { path, mode } => {
                (format!("{}/", path.trim_end_matches('/')), *mode, b'5', &[])
            }
            TarEntry::File { path, mode, data } => ((*path).to_string(), *mode, b'0', data),
        };
        if name.len() > 100 {
            bail!("tar entry name longer than 100 bytes: {name}");
        }
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        put_octal(&mut header[100..108], u64::from(mode));
        put_octal(&mut header[108..116], 0); // uid
        put_octal(&mut header[116..124], 0); // gid
        put_octal(&mut header[124..136], data.len() as u64);
        put_octal(&mut header[136..148], 0); // mtime
        header[156] = kind;
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field read as spaces.
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
        header[154] = 0;
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0); // two zero blocks end the archive
    Ok(out)
}

/// Writes `value` as zero-padded octal with a trailing NUL, filling `field`.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The OCI architecture name of this machine (`amd64`, `arm64`, ...).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A one-layer image to pack with [`oci_archive`].
pub struct ImageSpec<'a> {
    /// Full reference, e.g. `kaji.io/pause:3.10` (becomes `io.containerd.image.name`).
    pub name: &'a str,
    /// The uncompressed layer tar (its sha256 is both the blob digest and the diff_id).
    pub layer: &'a [u8],
    /// The image config's `config` object (Entrypoint, Cmd, Env, User, ...).
    pub config: serde_json::Value,
}

/// Packs an image as an OCI layout inside a tar, the format `ctr images import` reads.
pub fn oci_archive(image: &ImageSpec<'_>) -> Result<Vec<u8>> {
    let layer_digest = sha256_digest(image.layer);
    let config = serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": image.config,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))?;
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": image.layer.len() }],
    }))?;
    let manifest_digest = sha256_digest(&manifest);
    let tag = image
        .name
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let (layer_path, config_path, manifest_path) = (
        blob(&layer_digest),
        blob(&config_digest),
        blob(&manifest_digest),
    );
    ustar(&[
        TarEntry::File {
            path: "oci-layout",
            mode: 0o644,
            data: br#"{"imageLayoutVersion":"1.0.0"}"#,
        },
        TarEntry::File {
            path: "index.json",
            mode: 0o644,
            data: &index,
        },
        TarEntry::Dir {
            path: "blobs",
            mode: 0o755,
        },
        TarEntry::Dir {
            path: "blobs/sha256",
            mode: 0o755,
        },
        TarEntry::File {
            path: &manifest_path,
            mode: 0o644,
            data: &manifest,
        },
        TarEntry::File {
            path: &config_path,
            mode: 0o644,
            data: &config,
        },
        TarEntry::File {
            path: &layer_path,
            mode: 0o644,
            data: image.layer,
        },
    ])
}

/// The pause image as an importable OCI archive. Like upstream's, it runs `/pause` as 65535.
pub fn pause_image_archive() -> Result<Vec<u8>> {
    let layer = ustar(&[TarEntry::File {
        path: "pause",
        mode: 0o755,
        data: PAUSE_BINARY,
    }])?;
    oci_archive(&ImageSpec {
        name: PAUSE_IMAGE,
        layer: &layer,
        config: json!({ "User": "65535:65535", "Entrypoint": ["/pause"], "WorkingDir": "/" }),
    })
}

/// Runs `ctr --address <socket> -n k8s.io <args>`, feeding `stdin`, and returns its stdout.
pub async fn ctr(socket: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut cmd = tokio::process::Command::new("ctr");
    cmd.arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE])
        .args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .context("running ctr (it ships with containerd)")?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .await
            .context("writing to ctr's stdin")?;
        drop(pipe);
    }
    let out = child.wait_with_output().await.context("waiting for ctr")?;
    if !out.status.success() {
        bail!(
            "ctr {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Image references present in the CRI namespace (`ctr images ls -q`).
pub async fn list_images(socket: &Path) -> Result<Vec<String>> {
    Ok(ctr(socket, &["images", "ls", "-q"], None)
        .await?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Imports the pause image into containerd's CRI namespace (and unpacks it for overlayfs).
/// Importing the same archive again is cheap and changes nothing.
pub async fn import_pause_image(socket: &Path) -> Result<()> {
    let archive = pause_image_archive()?;
    ctr(
        socket,
        &["images", "import", "--snapshotter", "overlayfs", "-"],
        Some(&archive),
    )
    .await
    .with_context(|| format!("importing the pause image {PAUSE_IMAGE}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_headers_are_valid() {
        let tar = ustar(&[
            TarEntry::Dir {
                path: "www",
                mode: 0o755,
            },
            TarEntry::File {
                path: "www/a",
                mode: 0o644,
                data: b"hi",
            },
        ])
        .unwrap();
        assert_eq!(tar.len(), 512 + 512 + 512 + 1024);
        let header = &tar[512..1024];
        assert_eq!(&header[..5], b"www/a");
        assert_eq!(&header[124..136], b"00000000002\0");
        let stored =
            u32::from_str_radix(std::str::from_utf8(&header[148..154]).unwrap(), 8).unwrap();
        let mut copy = header.to_vec();
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|b| u32::from(*b)).sum::<u32>());
        assert_eq!(&tar[1024..1026], b"hi");
    }

    #[test]
    fn pause_archive_is_reproducible() {
        let a = pause_image_archive().unwrap();
        assert_eq!(a, pause_image_archive().unwrap());
        assert!(PAUSE_BINARY.len() > 1000, "the pause binary is embedded");
        assert_eq!(&PAUSE_BINARY[..4], b"\x7fELF");
    }
}
