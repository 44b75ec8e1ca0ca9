//! Atomic updates of a volume's files, as upstream's `AtomicWriter`
//! (pkg/volume/util/atomic_writer.go): the files live in a timestamped directory, `..data` is a
//! symlink to it, and each visible name is a symlink through `..data`. An update writes a new
//! timestamped directory and swaps `..data` with one rename, so a reader never sees half of it.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Relative path -> (content, file mode).
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

const DATA_DIR: &str = "..data";

/// Upstream's limits on a projected path and on each of its file names.
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// Checks one path of a payload as upstream's `validatePath`: not empty, relative, no `..`
/// element, not starting with `..`, within the length limits.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("invalid path: must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// A valid relative path in its clean form (Go's `filepath.Clean`: no empty or `.` elements).
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Writes `payload` into `dir`; returns whether anything changed. An invalid path (absolute,
/// with `..`) fails the whole write before anything is touched.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool> {
    let mut clean_payload = Payload::new();
    for (rel, v) in payload {
        validate_path(rel).map_err(anyhow::Error::msg)?;
        clean_payload.insert(clean(rel), v.clone());
    }
    let payload = &clean_payload;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = dir.join(DATA_DIR);
    let old_target = std::fs::read_link(&data).ok();
    if let Some(old) = &old_target
        && same_content(&dir.join(old), payload)
    {
        return Ok(false);
    }
    let ts = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let ts_dir = dir.join(&ts);
    std::fs::create_dir(&ts_dir).with_context(|| format!("creating {}", ts_dir.display()))?;
    for (rel, (content, mode)) in payload {
        let p = ts_dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&ts, &tmp_link)?;
    std::fs::rename(&tmp_link, &data).context("swapping ..data")?;
    // Visible names: one symlink per top-level path component.
    let top: BTreeSet<String> = payload
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("{DATA_DIR}/{name}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_target {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_content(dir: &Path, payload: &Payload) -> bool {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                count += 1;
            }
        }
    }
    count == payload.len()
        && payload.iter().all(|(rel, (content, mode))| {
            let p = dir.join(rel);
            std::fs::read(&p).is_ok_and(|c| &c == content)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_contents_and_removes_old_names() {
        let d = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("a".into(), (b"1".to_vec(), 0o644));
        p.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        assert!(write(d.path(), &p).unwrap());
        assert!(!write(d.path(), &p).unwrap());
        assert_eq!(std::fs::read(d.path().join("sub/b")).unwrap(), b"2");
        p.remove("sub/b");
        p.insert("a".into(), (b"3".to_vec(), 0o644));
        assert!(write(d.path(), &p).unwrap());
        assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"3");
        assert!(std::fs::symlink_metadata(d.path().join("sub")).is_err());
    }

    #[test]
    fn refuses_paths_that_leave_the_volume() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["/etc/passwd", "../x", "a/../../x", "..x/y", ""] {
            let mut p = Payload::new();
            p.insert(bad.into(), (b"1".to_vec(), 0o644));
            assert!(write(d.path(), &p).is_err(), "{bad:?} was accepted");
        }
        let mut p = Payload::new();
        p.insert("./a//b".into(), (b"1".to_vec(), 0o644));
        assert!(write(d.path(), &p).unwrap());
        assert_eq!(std::fs::read(d.path().join("a/b")).unwrap(), b"1");
    }
}
