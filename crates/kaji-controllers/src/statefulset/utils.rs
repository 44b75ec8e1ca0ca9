//! The pure helpers of the StatefulSet controller (upstream stateful_set_utils.go): ordinals
//! and identity, storage, the pods and claims a set wants, the revision a pod belongs to, pod
//! health, and the owner references that carry `persistentVolumeClaimRetentionPolicy`.

use crate::history::POD_REVISION_LABEL;
use crate::replicaset::{ownership, pods};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The pod label with the pod's name (upstream `apps.StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label with the pod's ordinal (upstream `apps.PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The parent's name and the ordinal of a pod named `<parent>-<ordinal>`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// A pod's ordinal, -1 when its name has none (upstream `getOrdinal`).
pub fn ordinal(pod: &Pod) -> i32 {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or_default()).map_or(-1, |(_, o)| o)
}

/// Whether the pod's name makes it a member of `set` (upstream `isMemberOf`).
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or_default())
        .is_some_and(|(p, _)| Some(p) == set.metadata.name.as_deref())
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// `spec.ordinals.start`, or 0.
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// The last ordinal the set wants (start - 1 when it wants none).
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set) + replicas(set) - 1
}

/// Whether the pod's ordinal is one the set wants (upstream `podInOrdinalRange`).
pub fn in_ordinal_range(pod: &Pod, set: &StatefulSet) -> bool {
    let o = ordinal(pod);
    o >= start_ordinal(set) && o <= end_ordinal(set)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

/// The claim of template `template` for the pod of `ordinal`: `<template>-<set>-<ordinal>`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!("{}-{}", template.name_any(), pod_name(set, ordinal))
}

pub fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

pub fn pod_management_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

/// `spec.updateStrategy.type`, RollingUpdate when unset.
pub fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

pub fn partition(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
}

/// `rollingUpdate.maxUnavailable` resolved against the replicas, rounded down, at least 1
/// (upstream `getStatefulSetMaxUnavailable`).
pub fn max_unavailable(set: &StatefulSet) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let v = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    let n = match v {
        None => 1,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(1, |p| {
                i32::try_from(p * i64::from(replicas(set)) / 100).unwrap_or(1)
            }),
    };
    n.max(1)
}

pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// The revision a pod was made from: its `controller-revision-hash` label.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.labels()
        .get(POD_REVISION_LABEL)
        .map_or("", String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Created through the API (the API server gives every pod a phase; a pod the controller only
/// plans has none).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}
pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}
pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}
pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pods::is_ready(pod)
}
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    phase(pod) == "Running" && pods::is_available(pod, min_ready_seconds, now)
}
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// Whether the pod has the name, namespace and labels of its ordinal (upstream
/// `identityMatches`).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.name_any();
    let Some((parent, ord)) = parent_and_ordinal(&name) else {
        return false;
    };
    ord >= 0
        && Some(parent) == set.metadata.name.as_deref()
        && name == pod_name(set, ord)
        && pod.metadata.namespace == set.metadata.namespace
        && pod.labels().get(POD_NAME_LABEL) == Some(&name)
        && pod.labels().get(POD_INDEX_LABEL) == Some(&ord.to_string())
}

/// Sets the pod's name and identity labels for `ordinal` (upstream `updateIdentity`).
pub fn update_identity(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// Whether every claim template is mounted from the pod's own claim (upstream `storageMatches`).
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ord = ordinal(pod);
    if ord < 0 {
        return false;
    }
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    claim_templates(set).iter().all(|t| {
        volumes.iter().any(|v| {
            v.name == t.name_any()
                && v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.as_str())
                    == Some(claim_name(set, t, ord).as_str())
        })
    })
}

/// Mounts the pod's claims under the templates' names, replacing volumes of those names
/// (upstream `updateStorage`).
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let ord = ordinal(pod);
    let templates = claim_templates(set);
    if templates.is_empty() {
        return;
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut volumes: Vec<Volume> = templates
        .iter()
        .map(|t| Volume {
            name: t.name_any(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(set, t, ord),
                read_only: Some(false),
            }),
            ..Default::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !templates.iter().any(|t| t.name_any() == v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = Some(volumes);
}

/// The claims the pod of `ordinal` mounts, as the templates describe them, labelled with the
/// selector's matchLabels (upstream `getPersistentVolumeClaims`).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut c = t.clone();
            let mut labels = c.metadata.labels.take().unwrap_or_default();
            labels.extend(match_labels.clone());
            c.metadata = ObjectMeta {
                name: Some(claim_name(set, t, ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                finalizers: t.metadata.finalizers.clone(),
                ..Default::default()
            };
            c.status = None;
            c
        })
        .collect()
}

/// The pod of `ordinal` made from `template` (upstream `newStatefulSetPod` with
/// `newVersionedStatefulSetPod`'s revision label): the template's labels, annotations and spec,
/// controlled by the set, with its identity (hostname = name, subdomain = serviceName) and
/// storage.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut pod = Pod {
        metadata: ObjectMeta {
            labels: Some(tmeta.labels.unwrap_or_default()),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![ownership::controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    update_identity(set, &mut pod, ordinal);
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = pod.metadata.name.clone();
        spec.subdomain = set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .filter(|s| !s.is_empty());
    }
    update_storage(set, &mut pod);
    if !revision.is_empty()
        && let Some(l) = pod.metadata.labels.as_mut()
    {
        l.insert(POD_REVISION_LABEL.into(), revision.into());
    }
    pod
}

/// The set's `persistentVolumeClaimRetentionPolicy` as (whenDeleted, whenScaled), each true for
/// Delete.
pub fn retention_policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn set_owner_ref(claim: &mut PersistentVolumeClaim, owner: OwnerReference) -> bool {
    let refs = claim.metadata.owner_references.get_or_insert_with(Vec::new);
    if refs.iter().any(|r| r.uid == owner.uid) {
        return false;
    }
    refs.push(owner);
    true
}

fn remove_owner_ref(claim: &mut PersistentVolumeClaim, uid: &str) -> bool {
    let Some(refs) = claim.metadata.owner_references.as_mut() else {
        return false;
    };
    let before = refs.len();
    refs.retain(|r| r.uid != uid);
    let changed = refs.len() != before;
    if refs.is_empty() {
        claim.metadata.owner_references = None;
    }
    changed
}

fn plain_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// Sets the claim's owner references for the retention policy (upstream
/// `updateClaimOwnerRefForSetAndPod`): WhenDeleted=Delete makes the set an owner (the garbage
/// collector removes the claim with the set); WhenScaled=Delete makes a scaled-down pod an owner
/// (the claim goes with the pod). Returns whether anything changed.
pub fn update_claim_owner_refs(
    claim: &mut PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> bool {
    let (when_deleted, when_scaled) = retention_policy(set);
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let set_ref = plain_ref("apps/v1", "StatefulSet", &set.metadata);
    let pod_ref = plain_ref("v1", "Pod", &pod.metadata);
    let scaled_down = !in_ordinal_range(pod, set);
    let mut changed = false;
    match (when_deleted, when_scaled) {
        (false, false) => {
            changed |= remove_owner_ref(claim, &set_uid);
            changed |= remove_owner_ref(claim, &pod_uid);
        }
        (true, false) => {
            changed |= set_owner_ref(claim, set_ref);
            changed |= remove_owner_ref(claim, &pod_uid);
        }
        (false, true) => {
            changed |= remove_owner_ref(claim, &set_uid);
            if scaled_down {
                changed |= set_owner_ref(claim, pod_ref);
            } else {
                changed |= remove_owner_ref(claim, &pod_uid);
            }
        }
        (true, true) => {
            if scaled_down {
                changed |= remove_owner_ref(claim, &set_uid);
                changed |= set_owner_ref(claim, pod_ref);
            } else {
                changed |= set_owner_ref(claim, set_ref);
                changed |= remove_owner_ref(claim, &pod_uid);
            }
        }
    }
    changed
}

/// A claim still owned by an earlier pod of the same name (one scaled down with
/// WhenScaled=Delete, which the garbage collector is about to remove): the new pod must wait
/// (upstream `PodClaimIsStale`).
pub fn claim_is_stale(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    claim
        .owner_references()
        .iter()
        .any(|r| r.kind == "Pod" && Some(&r.name) == pod.metadata.name.as_ref() && r.uid != pod_uid)
}

/// The template of a revision's data (`{"spec":{"template":{..., "$patch":"replace"}}}`).
pub fn revision_template(
    r: &k8s_openapi::api::apps::v1::ControllerRevision,
) -> Option<PodTemplateSpec> {
    let mut t = r.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: serde_json::Value) -> StatefulSet {
        serde_json::from_value(v).expect("a StatefulSet")
    }

    fn web() -> StatefulSet {
        set(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid"},
            "spec": {
                "replicas": 3, "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}],
                             "volumes": [{"name": "www", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "db"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
    }

    #[test]
    fn ordinals_and_membership() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        let s = web();
        let mut p = Pod::default();
        p.metadata.name = Some("web-3".into());
        assert!(is_member_of(&s, &p));
        assert!(
            !in_ordinal_range(&p, &s),
            "ordinal 3 of 3 replicas is condemned"
        );
        p.metadata.name = Some("webby-1".into());
        assert!(!is_member_of(&s, &p));
        let s2 = set(
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "ordinals": {"start": 5},
            "selector": {}, "serviceName": "", "template": {}}}),
        );
        assert_eq!((start_ordinal(&s2), end_ordinal(&s2)), (5, 6));
    }

    #[test]
    fn new_pod_has_identity_storage_and_revision() {
        let s = web();
        let t = s
            .spec
            .as_ref()
            .map(|x| x.template.clone())
            .expect("template");
        let p = new_pod(&s, &t, "web-abc", 1);
        assert_eq!(p.name_any(), "web-1");
        assert_eq!(p.labels()[POD_NAME_LABEL], "web-1");
        assert_eq!(p.labels()[POD_INDEX_LABEL], "1");
        assert_eq!(p.labels()[POD_REVISION_LABEL], "web-abc");
        assert_eq!(p.labels()["app"], "nginx");
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.as_ref().expect("volumes");
        assert_eq!(
            vols.len(),
            2,
            "the template's www volume is replaced by the claim"
        );
        assert_eq!(
            vols[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("www-web-1")
        );
        assert!(identity_matches(&s, &p));
        assert!(storage_matches(&s, &p));
        let claims = claims_for(&s, 1);
        assert_eq!(claims[0].name_any(), "www-web-1");
        assert_eq!(claims[0].labels()["app"], "nginx");
        assert_eq!(claims[0].labels()["tier"], "db");
    }

    #[test]
    fn retention_policy_owner_refs() {
        let mut s = web();
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-5".into());
        pod.metadata.uid = Some("pod-uid".into());
        let mut claim = PersistentVolumeClaim::default();
        // Retain/Retain: no owners.
        assert!(!update_claim_owner_refs(&mut claim, &s, &pod));
        // WhenScaled=Delete: a scaled-down pod owns its claim.
        s.spec
            .as_mut()
            .expect("spec")
            .persistent_volume_claim_retention_policy =
            serde_json::from_value(json!({"whenDeleted": "Delete", "whenScaled": "Delete"})).ok();
        assert!(update_claim_owner_refs(&mut claim, &s, &pod));
        let owners: Vec<_> = claim
            .owner_references()
            .iter()
            .map(|r| r.uid.clone())
            .collect();
        assert_eq!(owners, ["pod-uid"]);
        assert!(claim_is_stale(
            &claim,
            &Pod {
                metadata: ObjectMeta {
                    name: Some("web-5".into()),
                    ..Default::default()
                },
                ..Default::default()
            }
        ));
        // Back in range: the set owns it, the pod no longer.
        pod.metadata.name = Some("web-1".into());
        assert!(update_claim_owner_refs(&mut claim, &s, &pod));
        let owners: Vec<_> = claim
            .owner_references()
            .iter()
            .map(|r| r.uid.clone())
            .collect();
        assert_eq!(owners, ["set-uid"]);
        assert!(
            !update_claim_owner_refs(&mut claim, &s, &pod),
            "stable once set"
        );
    }

    #[test]
    fn max_unavailable_resolves_percentages() {
        let mut s = web();
        assert_eq!(max_unavailable(&s), 1);
        s.spec.as_mut().expect("spec").update_strategy = serde_json::from_value(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "70%"}}),
        )
        .ok();
        assert_eq!(max_unavailable(&s), 2);
    }
}
