//! emptyDir: a directory on the node's disk, or a tmpfs when `medium: Memory`, removed with the
//! pod. As upstream's empty_dir plugin: the directory is made world-writable (0777) before a
//! tmpfs is mounted on it (so the tmpfs root keeps the kernel's 1777), and the tmpfs is sized as
//! upstream's `calculateEmptyDirMemorySize` (SizeMemoryBackedVolumes): the node's allocatable
//! memory, lowered to the pod's memory limit when every container has one, lowered to
//! `sizeLimit` when that is smaller still.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Pod};
use kaji_api::quantity::value;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PLUGIN: &str = "kubernetes.io~empty-dir";

pub fn set_up(
    root: &Path,
    name: &str,
    src: &EmptyDirVolumeSource,
    pod: &Pod,
    node_memory: &str,
) -> Result<PathBuf> {
    let dir = root.join(PLUGIN).join(name);
    match src.medium.as_deref().unwrap_or("") {
        "" => set_up_dir(&dir)?,
        "Memory" => {
            if !is_mount_point(&dir) {
                set_up_dir(&dir)?;
                mount_tmpfs(&dir, memory_size(pod, src, node_memory))?;
            }
        }
        other => anyhow::bail!("unknown storage medium {other:?}"),
    }
    Ok(dir)
}

/// Creates the directory with mode 0777 (chmod, since the agent's umask would take bits away).
fn set_up_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o777 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// The tmpfs size in bytes (None: the kernel's default, half the RAM).
pub fn memory_size(pod: &Pod, src: &EmptyDirVolumeSource, node_memory: &str) -> Option<i128> {
    let mut size = value(node_memory).filter(|s| *s > 0);
    if let Some(limit) = pod_memory_limit(pod)
        && limit > 0
        && size.is_none_or(|s| limit <= s)
    {
        size = Some(limit);
    }
    if let Some(v) = src.size_limit.as_ref().and_then(|q| value(&q.0))
        && v > 0
        && size.is_none_or(|s| v <= s)
    {
        size = Some(v);
    }
    size
}

/// The pod's memory limit as its cgroup gets it (upstream `ResourceConfigForPod`): set only when
/// every container declares one; the larger of the app containers' sum and the largest init
/// container's limit.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| value(&q.0))
            .filter(|v| *v > 0)
    };
    let mut sum = 0i128;
    for c in &spec.containers {
        sum += limit(c)?;
    }
    let mut init_max = 0i128;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

fn mount_tmpfs(dir: &Path, size: Option<i128>) -> Result<()> {
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
    // /proc/self/mounts escapes spaces, tabs, newlines and backslashes as octal.
    let want = dir
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// Unmounts every tmpfs emptyDir under a pod's volume root (the directories go with the root).
pub fn unmount_all(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root.join(PLUGIN)) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        while is_mount_point(&p) {
            let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
                break;
            };
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                tracing::warn!(dir = %p.display(), error = %std::io::Error::last_os_error(), "unmounting an emptyDir tmpfs");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(limits: &[Option<&str>]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: limits
                    .iter()
                    .map(|l| Container {
                        name: "c".into(),
                        resources: l.map(|l| ResourceRequirements {
                            limits: Some([("memory".to_string(), Quantity(l.into()))].into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tmpfs_size_as_upstream() {
        let src = |l: Option<&str>| EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: l.map(|l| Quantity(l.into())),
        };
        let node = "1Gi";
        assert_eq!(memory_size(&pod(&[None]), &src(None), node), Some(1 << 30));
        assert_eq!(
            memory_size(&pod(&[None]), &src(Some("64Mi")), node),
            Some(64 << 20)
        );
        assert_eq!(
            memory_size(&pod(&[Some("100Mi"), Some("28Mi")]), &src(None), node),
            Some(128 << 20)
        );
        // A container without a limit: the pod has none.
        assert_eq!(
            memory_size(&pod(&[Some("100Mi"), None]), &src(None), node),
            Some(1 << 30)
        );
        // sizeLimit above what the pod may use is ignored.
        assert_eq!(
            memory_size(&pod(&[Some("100Mi")]), &src(Some("2Gi")), node),
            Some(100 << 20)
        );
    }
}
