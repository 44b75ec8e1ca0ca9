//! Pod volumes, set up as directories under `<agent dir>/volumes/<pod uid>/<plugin>/<name>` and
//! bind-mounted into containers as CRI mounts (upstream: /var/lib/kubelet/pods/<uid>/volumes).
//! One file per volume type; `atomic_writer` gives configMap, secret, downwardAPI and projected
//! volumes their atomic updates, which the pod worker re-runs every resync (and when the pod's
//! labels or annotations change, for downward API files); a projected `serviceAccountToken`
//! comes from the node's `token_manager` (refreshed past 80% of its life, so the resync rewrites
//! the file in place). `local_path` makes and removes the directories of this node's volumes of
//! k3s's local-path provisioner.

pub mod atomic_writer;
pub mod downward_api;
pub mod empty_dir;
pub mod host_path;
pub mod local_path;
pub mod ownership;
pub mod projection;

use downward_api::PodFacts;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A volume that could not be set up (a FailedMount event, the pod stays ContainerCreating),
/// worded as upstream's kubelet: a plugin's failure names the operation and the volume (the
/// PersistentVolume's name for a claim); a claim that cannot be resolved is reported as the
/// volume manager does.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("MountVolume.{op} failed for volume \"{volume}\" : {message}")]
    SetUp {
        op: &'static str,
        volume: String,
        message: String,
    },
    #[error(
        "Unable to attach or mount volumes: unmounted volumes=[{volume}], unattached volumes=[], failed to process volumes=[{volume}]: {message}"
    )]
    Process { volume: String, message: String },
}

/// The root of one pod's volumes.
pub fn pod_volumes_dir(agent_dir: &Path, uid: &str) -> PathBuf {
    agent_dir.join("volumes").join(uid)
}

/// Sets up (or refreshes) every volume of `pod`; returns host paths by volume name.
/// Volume types the agent does not support yet are reported as a mount error.
pub async fn set_up(
    client: &kube::Client,
    tokens: &crate::token_manager::TokenManager,
    agent_dir: &Path,
    pod: &Pod,
    facts: &PodFacts<'_>,
) -> Result<HashMap<String, PathBuf>, MountError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let root = pod_volumes_dir(agent_dir, &uid);
    let mut paths = HashMap::new();
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group);
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let err = |message: String| MountError::SetUp {
            op: "SetUp",
            volume: v.name.clone(),
            message,
        };
        let path = if let Some(ed) = &v.empty_dir {
            let dir = empty_dir::set_up(&root, &v.name, ed, pod, facts.node_memory)
                .map_err(|e| err(format!("{e:#}")))?;
            if let Some(g) = fs_group {
                ownership::apply(&dir, g, false)
                    .map_err(|e| err(format!("applying fsGroup: {e}")))?;
            }
            dir
        } else if let Some(hp) = &v.host_path {
            host_path::set_up(hp).map_err(err)?
        } else if v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some()
        {
            let dir = projection::set_up(client, tokens, &root, pod, &v, facts)
                .await
                .map_err(err)?;
            if let Some(g) = fs_group {
                ownership::apply_all(&dir, g, true)
                    .map_err(|e| err(format!("applying fsGroup: {e}")))?;
            }
            dir
        } else if let Some(pvc) = &v.persistent_volume_claim {
            host_path::from_claim(client, pod, &v.name, &pvc.claim_name).await?
        } else {
            return Err(err(
                "this volume type is not supported by the Kaji agent yet".into(),
            ));
        };
        paths.insert(v.name.clone(), path);
    }
    Ok(paths)
}

/// Removes a pod's volumes (unmounting tmpfs emptyDirs first). Host paths are never touched.
pub fn tear_down(agent_dir: &Path, uid: &str) {
    let root = pod_volumes_dir(agent_dir, uid);
    empty_dir::unmount_all(&root);
    if let Err(e) = std::fs::remove_dir_all(&root)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %root.display(), error = %e, "removing pod volumes");
    }
}
