//! hostPath: a path on the node, with upstream's type checks (Directory, DirectoryOrCreate,
//! File, FileOrCreate, Socket, CharDevice, BlockDevice); and persistentVolumeClaims bound to
//! hostPath or local PersistentVolumes, which are the same thing underneath.

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod,
};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

pub fn set_up(src: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let path = PathBuf::from(&src.path);
    let meta = std::fs::metadata(&path);
    let kind = src.type_.as_deref().unwrap_or("");
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            src.path
        ))
    };
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&path)
                    .map_err(|e| format!("creating {}: {e}", src.path))?;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            } else if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return fail("directory");
            }
        }
        "Directory" => {
            if !meta.is_ok_and(|m| m.is_dir()) {
                return fail("directory");
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("creating {}: {e}", src.path))?;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
            } else if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return fail("file");
            }
        }
        "File" => {
            if !meta.is_ok_and(|m| m.is_file()) {
                return fail("file");
            }
        }
        "Socket" => {
            if !meta.is_ok_and(|m| m.file_type().is_socket()) {
                return fail("socket file");
            }
        }
        "CharDevice" => {
            if !meta.is_ok_and(|m| m.file_type().is_char_device()) {
                return fail("character device");
            }
        }
        "BlockDevice" => {
            if !meta.is_ok_and(|m| m.file_type().is_block_device()) {
                return fail("block device");
            }
        }
        other => return Err(format!("invalid HostPathType {other:?}")),
    }
    Ok(path)
}

/// The node path behind a claim bound to a hostPath or local PersistentVolume.
pub async fn from_claim(client: &kube::Client, pod: &Pod, claim: &str) -> Result<PathBuf, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let pvc = kube::Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get_opt(claim)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let pv_name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
    let pv = kube::Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| e.to_string())?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(hp) = spec.host_path {
        let src = HostPathVolumeSource {
            path: hp.path,
            type_: Some(
                hp.type_
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "DirectoryOrCreate".into()),
            ),
        };
        return set_up(&src);
    }
    if let Some(local) = spec.local {
        return Ok(PathBuf::from(local.path));
    }
    Err(format!(
        "persistentvolume \"{pv_name}\" is neither hostPath nor local"
    ))
}
