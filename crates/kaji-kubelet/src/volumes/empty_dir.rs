//! emptyDir: a directory on the node's disk, or a tmpfs when `medium: Memory` (with the size
//! limit as the tmpfs size).

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PLUGIN: &str = "kubernetes.io~empty-dir";

pub fn set_up(root: &Path, name: &str, src: &EmptyDirVolumeSource) -> Result<PathBuf> {
    let dir = root.join(PLUGIN).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if src.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
        let size = src
            .size_limit
            .as_ref()
            .and_then(|q| crate::pods::resources::parse_quantity(&q.0))
            .map(|b| b as u64);
        mount_tmpfs(&dir, size)?;
    }
    // Upstream makes emptyDirs world-writable so that any container user can use them.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

fn mount_tmpfs(dir: &Path, size: Option<u64>) -> Result<()> {
    let target = CString::new(dir.as_os_str().as_encoded_bytes())?;
    let opts = CString::new(size.map(|s| format!("size={s}")).unwrap_or_default())?;
    let fstype = CString::new("tmpfs")?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mounting tmpfs on {}", dir.display()));
    }
    Ok(())
}

fn is_mount_point(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = dir.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&want))
}

/// Unmounts every tmpfs emptyDir under a pod's volume root.
pub fn unmount_all(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root.join(PLUGIN)) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if is_mount_point(&p)
            && let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes())
        {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
