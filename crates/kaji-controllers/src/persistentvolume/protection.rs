//! The StorageObjectInUseProtection controllers (upstream `pkg/controller/volume/pvcprotection`
//! and `pvprotection`). The API server's admission puts `kubernetes.io/pvc-protection` on every
//! new claim and `kubernetes.io/pv-protection` on every new volume; these loops add them to
//! objects that lack them and remove them once a deleted object is unused:
//! - a claim is in use while a pod scheduled to a node and not finished (Succeeded, Failed)
//!   mounts it (its `persistentVolumeClaim` volumes, or the `<pod>-<volume>` claim of an
//!   `ephemeral` volume it owns); the cache is asked first, then a live list, as upstream, so a
//!   pod the cache has not seen yet still counts;
//! - a volume is in use while it is Bound.
//!
//! A pod that finishes, is deleted or changes re-checks the claims it names.

use super::SyncError;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kaji_runtime::informer::Informer;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use std::sync::Arc;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

pub(super) struct Ctx {
    pub client: Client,
    pub pods: Arc<Informer<Pod>>,
}

fn has_finalizer(meta: &kube::api::ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// The finalizers with `f` added or removed.
fn with_finalizer(meta: &kube::api::ObjectMeta, f: &str, present: bool) -> Option<Vec<String>> {
    let mut list: Vec<String> = meta.finalizers.clone().unwrap_or_default();
    list.retain(|x| x != f);
    if present {
        list.push(f.to_string());
    }
    (!list.is_empty()).then_some(list)
}

/// The claims a pod's volumes name (upstream `enqueuePVCs`).
pub(super) fn claims_of(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let ns = pod.namespace().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{}-{}", pod.name_any(), v.name))
            }
        })
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect()
}

/// Upstream `podUsesPVC`, leaving out pods that have finished.
fn pod_uses(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished || pod.namespace() != claim.namespace() {
        return false;
    }
    let name = claim.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == name)
                || (v.ephemeral.is_some()
                    && format!("{}-{}", pod.name_any(), v.name) == name
                    && claim.owner_references().iter().any(|o| {
                        o.controller == Some(true) && Some(&o.uid) == pod.metadata.uid.as_ref()
                    }))
        })
}

async fn claim_in_use(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<bool, SyncError> {
    let ns = claim.namespace().unwrap_or_default();
    if ctx
        .pods
        .in_namespace(&ns)
        .iter()
        .any(|p| pod_uses(p, claim))
    {
        return Ok(true);
    }
    let live = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    Ok(live.items.iter().any(|p| pod_uses(p, claim)))
}

pub(super) async fn sync_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, SyncError> {
    let deleting = claim.metadata.deletion_timestamp.is_some();
    let has = has_finalizer(&claim.metadata, PVC_PROTECTION);
    let want = if deleting && has {
        if claim_in_use(&ctx, &claim).await? {
            tracing::debug!(claim = %claim.name_any(), "keeping the claim: a pod still uses it");
            return Ok(Action::await_change());
        }
        false
    } else if !deleting && !has {
        true
    } else {
        return Ok(Action::await_change());
    };
    let mut next = (*claim).clone();
    next.metadata.finalizers = with_finalizer(&claim.metadata, PVC_PROTECTION, want);
    let api = Api::<PersistentVolumeClaim>::namespaced(
        ctx.client.clone(),
        &claim.namespace().unwrap_or_default(),
    );
    match api
        .replace(&claim.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => {
            tracing::debug!(claim = %claim.name_any(), added = want, "pvc-protection finalizer");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn sync_volume(
    volume: Arc<PersistentVolume>,
    ctx: Arc<Ctx>,
) -> Result<Action, SyncError> {
    let deleting = volume.metadata.deletion_timestamp.is_some();
    let has = has_finalizer(&volume.metadata, PV_PROTECTION);
    let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let want = match (deleting, has) {
        (true, true) if !bound => false,
        (false, false) => true,
        _ => return Ok(Action::await_change()),
    };
    let mut next = (*volume).clone();
    next.metadata.finalizers = with_finalizer(&volume.metadata, PV_PROTECTION, want);
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .replace(&volume.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn which_pods_use_a_claim() {
        let claim: PersistentVolumeClaim =
            serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns"}}))
                .unwrap();
        let running = pod(json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n", "containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
            "status": {"phase": "Running"}}));
        assert!(pod_uses(&running, &claim));
        assert_eq!(
            claims_of(&running),
            vec![ObjectRef::new("data").within("ns")]
        );
        let mut pending = running.clone();
        pending.spec.as_mut().unwrap().node_name = None;
        assert!(
            !pod_uses(&pending, &claim),
            "an unscheduled pod does not hold the claim"
        );
        let mut done = running.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!pod_uses(&done, &claim));
        let mut elsewhere = running.clone();
        elsewhere.metadata.namespace = Some("other".into());
        assert!(!pod_uses(&elsewhere, &claim));
        assert_eq!(
            with_finalizer(&claim.metadata, PVC_PROTECTION, true),
            Some(vec![PVC_PROTECTION.to_string()])
        );
        assert_eq!(with_finalizer(&claim.metadata, PVC_PROTECTION, false), None);
    }
}
