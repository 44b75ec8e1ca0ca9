//! hostPath: a path on the node, with upstream's type checks (`checkTypeInternal`: Directory,
//! DirectoryOrCreate, File, FileOrCreate, Socket, CharDevice, BlockDevice; unset: no check, the
//! runtime creates a missing path as a directory); and persistentVolumeClaims bound to hostPath
//! or local PersistentVolumes, resolved as upstream's volume manager does (the claim must be
//! Bound, the volume's claimRef must name the claim's uid).

use super::MountError;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod,
};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

pub fn set_up(src: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let path = PathBuf::from(&src.path);
    if src.path.split('/').any(|p| p == "..") {
        return Err(format!(
            "invalid HostPath `{}`: must not contain '..'",
            src.path
        ));
    }
    let meta = || std::fs::metadata(&path);
    let exists = meta().is_ok();
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            src.path
        ))
    };
    match src.type_.as_deref().unwrap_or("") {
        "" => {}
        "DirectoryOrCreate" if !exists => {
            make_dir(&path).map_err(|e| go_error("mkdir", &src.path, &e))?;
        }
        "DirectoryOrCreate" | "Directory" => {
            if !meta().is_ok_and(|m| m.is_dir()) {
                return fail("directory");
            }
        }
        "FileOrCreate" if !exists => {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| go_error("open", &src.path, &e))?;
        }
        "FileOrCreate" | "File" => {
            if !meta().is_ok_and(|m| m.is_file()) {
                return fail("file");
            }
        }
        "Socket" => {
            if !meta().is_ok_and(|m| m.file_type().is_socket()) {
                return fail("socket file");
            }
        }
        "CharDevice" => {
            if !meta().is_ok_and(|m| m.file_type().is_char_device()) {
                return fail("character device");
            }
        }
        "BlockDevice" => {
            if !meta().is_ok_and(|m| m.file_type().is_block_device()) {
                return fail("block device");
            }
        }
        other => return Err(format!("{other} is an invalid volume type")),
    }
    Ok(path)
}

/// `os.MkdirAll(path, 0755)`: the mode goes through the umask, as upstream's.
fn make_dir(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
}

/// An OS error worded as Go's `*PathError` ("mkdir /x: permission denied").
fn go_error(op: &str, path: &str, e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => {
            let s = std::io::Error::from_raw_os_error(code).to_string();
            let s = s.split(" (os error").next().unwrap_or_default().to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    format!("{op} {path}: {text}")
}

/// The node path behind the claim of pod volume `volume`: a hostPath PersistentVolume (with its
/// type check) or a local one (an existing directory).
pub async fn from_claim(
    client: &kube::Client,
    pod: &Pod,
    volume: &str,
    claim: &str,
) -> Result<PathBuf, MountError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let process = |message: String| MountError::Process {
        volume: volume.to_string(),
        message: format!("error processing PVC {ns}/{claim}: {message}"),
    };
    let pvc = match kube::Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get(claim)
        .await
    {
        Ok(pvc) => pvc,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            return Err(process(format!(
                "failed to fetch PVC from API server: persistentvolumeclaims \"{claim}\" not found"
            )));
        }
        Err(e) => {
            return Err(process(format!("failed to fetch PVC from API server: {e}")));
        }
    };
    if pvc.metadata.deletion_timestamp.is_some() {
        return Err(process("PVC is being deleted".into()));
    }
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(process("PVC is not bound".into()));
    }
    let Some(pv_name) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
    else {
        return Err(process("PVC has empty pvc.Spec.VolumeName".into()));
    };
    let pv = kube::Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| {
            process(format!(
                "failed to fetch PV {pv_name} from API server: {}",
                match &e {
                    kube::Error::Api(a) if a.code == 404 =>
                        format!("persistentvolumes \"{pv_name}\" not found"),
                    _ => e.to_string(),
                }
            ))
        })?;
    let spec = pv.spec.clone().unwrap_or_default();
    let claim_uid = pvc.metadata.uid.clone().unwrap_or_default();
    match &spec.claim_ref {
        None => {
            return Err(process(format!(
                "found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
            )));
        }
        Some(r) if r.uid.clone().unwrap_or_default() != claim_uid => {
            return Err(process(format!(
                "found PV object {pv_name} but its pv.Spec.ClaimRef.UID {} does not point to claim.UID {claim_uid}",
                r.uid.clone().unwrap_or_default()
            )));
        }
        Some(_) => {}
    }
    // Failures from here on concern the volume itself, named after the PV as upstream does.
    let set_up_error = |op: &'static str, message: String| MountError::SetUp {
        op,
        volume: pv_name.clone(),
        message,
    };
    if pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
        .map(String::as_str)
        == Some(super::local_path::LOCAL_PATH)
        && let Err(e) = super::local_path::ensure_directory(&pv)
    {
        return Err(set_up_error("SetUp", e.to_string()));
    }
    if let Some(hp) = spec.host_path {
        let src = HostPathVolumeSource {
            path: hp.path,
            type_: hp.type_,
        };
        return set_up(&src).map_err(|m| set_up_error("SetUp", m));
    }
    if let Some(local) = spec.local {
        let path = PathBuf::from(&local.path);
        return match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(set_up_error(
                "MountDevice",
                format!("path {:?} does not exist", local.path),
            )),
            Err(e) => Err(set_up_error("MountDevice", e.to_string())),
            Ok(m) if m.is_dir() => Ok(path),
            Ok(_) => Err(set_up_error(
                "MountDevice",
                "only directory and block device are supported".into(),
            )),
        };
    }
    Err(set_up_error(
        "SetUp",
        "this volume type is not supported by the Kaji agent yet".into(),
    ))
}
