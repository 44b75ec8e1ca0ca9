//! Volume ownership for a pod's `fsGroup`, as upstream's SetVolumeOwnership
//! (pkg/volume/volume_linux.go) with the OnRootMismatch policy: when the volume's root is not
//! yet owned by the group, every file and directory gets group ownership `fsGroup`, group
//! read/write (read for read-only volumes), and directories the setgid bit so new files
//! inherit the group. Symlinks are left alone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub fn apply(dir: &Path, fs_group: i64, read_only: bool) -> std::io::Result<()> {
    let Ok(gid) = u32::try_from(fs_group) else {
        return Ok(());
    };
    let root = std::fs::symlink_metadata(dir)?;
    if root.gid() == gid && root.permissions().mode() & 0o2000 != 0 {
        return Ok(());
    }
    walk(dir, gid, read_only)
}

/// The same for every file whatever the root's ownership (configMap, secret, downwardAPI and
/// projected volumes, whose atomic updates bring new files).
pub fn apply_all(dir: &Path, fs_group: i64, read_only: bool) -> std::io::Result<()> {
    match u32::try_from(fs_group) {
        Ok(gid) => walk(dir, gid, read_only),
        Err(_) => Ok(()),
    }
}

fn walk(path: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    let mut mode = meta.permissions().mode() & 0o7777;
    mode |= if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mode |= 0o2000 | 0o110;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        for e in std::fs::read_dir(path)? {
            walk(&e?.path(), gid, read_only)?;
        }
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
