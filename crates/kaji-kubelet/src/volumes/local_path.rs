//! The node's half of k3s's local-path provisioner (the controller manager's
//! `persistentvolume::provisioner` makes the volume objects). k3s runs a helper pod on the node
//! to `mkdir -m 0777` a new volume's directory and another to `rm -rf` it; here the agent of the
//! node the volume is pinned to does both, for the volumes provisioned by `rancher.io/local-path`
//! whose node affinity names this node:
//! - while such a volume exists and is not being deleted, its hostPath directory exists (mode
//!   0777, so containers running as any user can write; also made when a pod mounts it first);
//! - once it is being deleted and still holds the provisioner's storage finalizer, the directory
//!   is removed (reclaim policy Delete; Retain keeps it) and then the finalizer, which lets the
//!   volume go. Only a directory named `<volume>_<namespace>_<claim>`, as the provisioner names
//!   them, is ever removed.
//!
//! The volumes come from one watch; every 10 s the known ones are looked at again, so a failed
//! step is retried.

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// The provisioner (as `kaji_controllers::persistentvolume::provisioner`).
pub const LOCAL_PATH: &str = "rancher.io/local-path";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Held on a provisioned volume until its directory is gone.
pub const STORAGE_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";
const HOSTNAME: &str = "kubernetes.io/hostname";
const RESYNC: Duration = Duration::from_secs(10);

/// Whether `pv` is a local-path volume pinned to `node` (by its `kubernetes.io/hostname`).
pub fn is_local_path_on(pv: &PersistentVolume, node: &str) -> bool {
    if pv.annotations().get(PROVISIONED_BY).map(String::as_str) != Some(LOCAL_PATH) {
        return false;
    }
    let terms = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .any(|e| {
            e.key == HOSTNAME && e.operator == "In" && e.values.iter().flatten().any(|v| v == node)
        })
}

fn path_of(pv: &PersistentVolume) -> Option<&str> {
    let spec = pv.spec.as_ref()?;
    spec.host_path
        .as_ref()
        .map(|h| h.path.as_str())
        .or_else(|| spec.local.as_ref().map(|l| l.path.as_str()))
}

/// Makes the directory of a local-path volume if it is missing (`mkdir -m 0777 -p`).
pub fn ensure_directory(pv: &PersistentVolume) -> std::io::Result<()> {
    let Some(path) = path_of(pv).map(Path::new) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
    tracing::info!(volume = %pv.name_any(), path = %path.display(), "created the local-path volume's directory");
    Ok(())
}

/// Whether `path` is a directory the provisioner made for volume `name`: absolute, without `..`,
/// named `<name>_<namespace>_<claim>`.
fn removable(path: &str, name: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute()
        && !path.split('/').any(|c| c == "..")
        && p.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with(&format!("{name}_")))
}

async fn remove_finalizer(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api = Api::<PersistentVolume>::all(client.clone());
    for _ in 0..5 {
        let Some(mut pv) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(list) = pv.metadata.finalizers.as_mut() else {
            return Ok(());
        };
        if !list.iter().any(|f| f == STORAGE_FINALIZER) {
            return Ok(());
        }
        list.retain(|f| f != STORAGE_FINALIZER);
        match api.replace(name, &PostParams::default(), &pv).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One look at one of this node's local-path volumes.
async fn sync(client: &Client, pv: &PersistentVolume) -> anyhow::Result<()> {
    let name = pv.name_any();
    if pv.metadata.deletion_timestamp.is_none() {
        return Ok(ensure_directory(pv)?);
    }
    if !pv.finalizers().iter().any(|f| f == STORAGE_FINALIZER) {
        return Ok(());
    }
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if delete && let Some(path) = path_of(pv) {
        if removable(path, &name) {
            match std::fs::remove_dir_all(path) {
                Ok(()) => {
                    tracing::info!(volume = %name, path, "removed the local-path volume's directory")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("removing {path}: {e}"),
            }
        } else {
            tracing::warn!(volume = %name, path, "not removing a directory the local-path provisioner did not name");
        }
    }
    remove_finalizer(client, &name).await?;
    Ok(())
}

/// Serves this node's local-path volumes until the process ends.
pub async fn run(client: Client, node: String) -> anyhow::Result<()> {
    let api = Api::<PersistentVolume>::all(client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut ours: HashMap<String, PersistentVolume> = HashMap::new();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        let changed = tokio::select! {
            ev = events.next() => match ev {
                None => return Ok(()),
                Some(Ok(watcher::Event::Apply(pv) | watcher::Event::InitApply(pv))) => {
                    if !is_local_path_on(&pv, &node) {
                        continue;
                    }
                    ours.insert(pv.name_any(), pv.clone());
                    vec![pv]
                }
                Some(Ok(watcher::Event::Delete(pv))) => {
                    ours.remove(&pv.name_any());
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "local-path volumes watch; retrying");
                    continue;
                }
            },
            _ = tick.tick() => ours.values().cloned().collect(),
        };
        for pv in changed {
            if let Err(e) = sync(&client, &pv).await {
                tracing::warn!(volume = %pv.name_any(), error = %format!("{e:#}"), "local-path volume");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_this_nodes_local_path_volumes_and_their_own_directories() {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
            "spec": {"hostPath": {"path": "/tmp/x/pvc-1_default_data"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}
        }))
        .unwrap();
        assert!(is_local_path_on(&pv, "n1"));
        assert!(!is_local_path_on(&pv, "n2"));
        let mut other = pv.clone();
        other.metadata.annotations = None;
        assert!(!is_local_path_on(&other, "n1"));
        assert!(removable("/tmp/x/pvc-1_default_data", "pvc-1"));
        assert!(!removable("/tmp/x/pvc-12_default_data", "pvc-1"));
        assert!(!removable("/tmp/x/../pvc-1_default_data", "pvc-1"));
        assert!(!removable("tmp/pvc-1_default_data", "pvc-1"));
        assert!(!removable("/", "pvc-1"));
    }
}
