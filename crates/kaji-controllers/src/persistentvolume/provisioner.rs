//! k3s's local-path provisioner (rancher/local-path-provisioner on the external provisioner
//! library, sig-storage-lib-external-provisioner), in-process: it serves the claims the binder
//! hands to `rancher.io/local-path` (`volume.kubernetes.io/storage-provisioner`) once the
//! scheduler has picked their node (`volume.kubernetes.io/selected-node`, the class is
//! WaitForFirstConsumer).
//!
//! - Provisioning: a PersistentVolume `pvc-<claim uid>` of type hostPath (DirectoryOrCreate) at
//!   `<path>/pvc-<uid>_<namespace>_<claim>`, `<path>` from the `local-path-config` ConfigMap's
//!   nodePathMap (k3s: `<data-dir>/storage`), with a required node affinity for the node's
//!   `kubernetes.io/hostname`, the claim's access modes and request as capacity, the class's
//!   reclaim policy and mount options, a claimRef to the claim (so the binder binds exactly this
//!   pair), `pv.kubernetes.io/provisioned-by: rancher.io/local-path` and the library's
//!   `external-provisioner.volume.kubernetes.io/finalizer`. Events on the claim as the library
//!   records them: Provisioning, then ProvisioningSucceeded or ProvisioningFailed. A claim that
//!   can never be served (a selector, an access mode other than ReadWriteOnce/ReadWriteOncePod,
//!   no node) gets one ProvisioningFailed and waits for a change instead of retrying.
//! - Deleting: a Released volume of this provisioner with reclaim policy Delete is deleted. Its
//!   directory lives on its node, so the node's agent does that part
//!   (`kaji_kubelet::volumes::local_path`): it creates the directory of each local-path volume of
//!   its node and, once such a volume is being deleted, removes the directory (reclaim Delete)
//!   and then the finalizer, which lets the volume go. k3s runs helper pods on the node for the
//!   same two steps. Volumes of hollow nodes (simulated, `kaji.io/hollow=true`) get no
//!   finalizer: they have no directory, and go as soon as they are deleted.

use super::{
    ANN_DYNAMICALLY_PROVISIONED, ANN_STORAGE_PROVISIONER, ANN_STORAGE_PROVISIONER_BETA, SyncError,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::volume::{ANN_SELECTED_NODE, claim_class};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The provisioner's name (k3s's StorageClass `local-path` names it).
pub const LOCAL_PATH: &str = "rancher.io/local-path";
/// Held on a provisioned volume until its storage is deleted (the library's finalizer); the node
/// agent removes it.
pub const STORAGE_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";
const CONFIG_MAP: &str = "local-path-config";
const CONFIG_NAMESPACE: &str = "kube-system";
const DEFAULT_NODE: &str = "DEFAULT_PATH_FOR_NON_LISTED_NODES";
const HOSTNAME: &str = "kubernetes.io/hostname";
const HOLLOW_LABEL: &str = "kaji.io/hollow";

pub(super) struct Ctx {
    pub client: Client,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
    pub recorder: Recorder,
}

/// Why a claim is not provisioned: a cause that will not go away by itself (reported once, then
/// the claim waits for a change), or one worth retrying with back-off.
enum Failure {
    Final(String),
    Retry(String),
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure::Retry(e.to_string())
    }
}

/// Upstream `shouldProvision`: a claim without a volume, handed to this provisioner, of a class
/// of this provisioner.
fn wants_us(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Option<Arc<StorageClass>> {
    if claim.metadata.deletion_timestamp.is_some()
        || claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty())
    {
        return None;
    }
    let ann = claim.annotations();
    if ann.get(ANN_STORAGE_PROVISIONER).map(String::as_str) != Some(LOCAL_PATH)
        && ann.get(ANN_STORAGE_PROVISIONER_BETA).map(String::as_str) != Some(LOCAL_PATH)
    {
        return None;
    }
    let class = ctx.classes.get(&ObjectRef::new(claim_class(claim)))?;
    (class.provisioner == LOCAL_PATH).then_some(class)
}

pub(super) async fn sync_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, SyncError> {
    let Some(class) = wants_us(&claim, &ctx) else {
        return Ok(Action::await_change());
    };
    let name = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
    if ctx.volumes.get(&ObjectRef::new(&name)).is_some() {
        return Ok(Action::await_change());
    }
    let wait_for_node = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    let node = claim.annotations().get(ANN_SELECTED_NODE).cloned();
    if node.is_none() && wait_for_node {
        return Ok(Action::await_change());
    }
    // The cache may not have the volume this provisioner just made.
    if Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(&name)
        .await?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let claim_ref = reference(claim.as_ref());
    let key = format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    );
    ctx.recorder
        .normal(
            &claim_ref,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim {key:?}"),
        )
        .await;
    match provision(&ctx, &claim, &class, &name, node.as_deref()).await {
        Ok(()) => {
            tracing::info!(claim = %key, volume = %name, "volume provisioned");
            ctx.recorder
                .normal(
                    &claim_ref,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {name}"),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(f) => {
            let (why, retry) = match f {
                Failure::Final(m) => (m, false),
                Failure::Retry(m) => (m, true),
            };
            let message = format!(
                "failed to provision volume with StorageClass {:?}: {why}",
                class.name_any()
            );
            ctx.recorder
                .warning(&claim_ref, "ProvisioningFailed", &message)
                .await;
            if retry {
                Err(SyncError::new(message))
            } else {
                Ok(Action::await_change())
            }
        }
    }
}

/// Where volumes of `node` go: its entry of the ConfigMap's nodePathMap, else the default entry
/// (the first path when there are several; local-path-provisioner picks one at random).
fn base_path(config: Option<&ConfigMap>, node: &str) -> Result<String, Failure> {
    let text = config
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get("config.json"))
        .ok_or_else(|| {
            Failure::Retry(format!(
                "no config.json in ConfigMap {CONFIG_NAMESPACE}/{CONFIG_MAP}"
            ))
        })?;
    let parsed: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Failure::Final(format!("failed to load the config file: {e}")))?;
    let entries = parsed
        .get("nodePathMap")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let paths = |n: &str| {
        entries
            .iter()
            .find(|e| e.get("node").and_then(serde_json::Value::as_str) == Some(n))
            .and_then(|e| e.get("paths"))
            .and_then(serde_json::Value::as_array)
            .and_then(|p| p.first())
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    paths(node).or_else(|| paths(DEFAULT_NODE)).ok_or_else(|| {
        Failure::Final(format!(
            "config doesn't contain node {node}, and no {DEFAULT_NODE} available"
        ))
    })
}

/// The checks and the volume (local-path-provisioner's `Provision`, the library's
/// `provisionClaimOperation`).
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    name: &str,
    node: Option<&str>,
) -> Result<(), Failure> {
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.selector.is_some() {
        return Err(Failure::Final("claim Selector is not supported".into()));
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return Err(Failure::Final(
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes".into(),
        ));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(Failure::Final("Block volume mode is not supported".into()));
    }
    let Some(node) = node else {
        return Err(Failure::Final(
            "configuration error, no node was specified".into(),
        ));
    };
    let Some(node_obj) = Api::<Node>::all(ctx.client.clone()).get_opt(node).await? else {
        return Err(Failure::Retry(format!(
            "failed to get target node: nodes {node:?} not found"
        )));
    };
    // A hollow node (a simulation) has no disk and no agent to remove a directory: its volumes
    // go without the node's step.
    let hollow = node_obj
        .labels()
        .get(HOLLOW_LABEL)
        .is_some_and(|v| v == "true");
    let hostname = node_obj
        .labels()
        .get(HOSTNAME)
        .cloned()
        .unwrap_or_else(|| node.to_string());
    let config = Api::<ConfigMap>::namespaced(ctx.client.clone(), CONFIG_NAMESPACE)
        .get_opt(CONFIG_MAP)
        .await?;
    let base = base_path(config.as_ref(), node)?;
    let ns = claim.namespace().unwrap_or_default();
    let path = format!(
        "{}/{name}_{ns}_{}",
        base.trim_end_matches('/'),
        claim.name_any()
    );
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or_else(|| Failure::Final("claim has no storage request".into()))?;
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(BTreeMap::from([(
                ANN_DYNAMICALLY_PROVISIONED.to_string(),
                LOCAL_PATH.to_string(),
            )])),
            finalizers: (!hollow).then(|| vec![STORAGE_FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: Some(BTreeMap::from([("storage".to_string(), storage)])),
            claim_ref: Some(reference(claim)),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class.name_any()),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => Ok(()),
        // Made by an earlier try whose answer was lost.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 => Err(Failure::Final(e.message)),
        Err(e) => Err(e.into()),
    }
}

/// A Released volume of this provisioner with reclaim policy Delete is deleted (the library's
/// `shouldDelete`/`deleteVolumeOperation`); the node agent then removes its directory and the
/// storage finalizer.
pub(super) async fn sync_volume(
    volume: Arc<PersistentVolume>,
    ctx: Arc<Ctx>,
) -> Result<Action, SyncError> {
    let ours = volume
        .annotations()
        .get(ANN_DYNAMICALLY_PROVISIONED)
        .map(String::as_str)
        == Some(LOCAL_PATH);
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if !ours || !released || !delete || volume.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .delete(&volume.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(volume = %volume.name_any(), "volume deleted; its node removes the directory");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => {
            ctx.recorder
                .warning(
                    &reference(volume.as_ref()),
                    "VolumeFailedDelete",
                    &e.to_string(),
                )
                .await;
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([(
                "config.json".to_string(),
                json.to_string(),
            )])),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn node_path_map() {
        let c = config(
            r#"{"nodePathMap":[{"node":"DEFAULT_PATH_FOR_NON_LISTED_NODES","paths":["/var/lib/kaji/storage"]},{"node":"big","paths":["/data","/data2"]}]}"#,
        );
        assert_eq!(
            base_path(Some(&c), "n1").ok(),
            Some("/var/lib/kaji/storage".into())
        );
        assert_eq!(base_path(Some(&c), "big").ok(), Some("/data".into()));
        let only = config(r#"{"nodePathMap":[{"node":"big","paths":["/data"]}]}"#);
        match base_path(Some(&only), "n1") {
            Err(Failure::Final(m)) => assert_eq!(
                m,
                "config doesn't contain node n1, and no DEFAULT_PATH_FOR_NON_LISTED_NODES available"
            ),
            _ => panic!("expected a final failure"),
        }
        assert!(matches!(base_path(None, "n1"), Err(Failure::Retry(_))));
    }
}
