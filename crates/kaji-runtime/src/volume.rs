//! PersistentVolume matching (upstream `pkg/controller/volume/persistentvolume`: the index's
//! `findBestMatchForClaim`, `util.FindMatchingVolume`, `checkVolumeSatisfyClaim` and their
//! helpers), the one copy used by the PV binder and the scheduler's VolumeBinding plugin.
//!
//! - [`find_best_match`] (the binder, no node): volumes grouped by their set of access modes,
//!   the groups that include the claim's modes tried from the fewest modes up, in each
//!   [`find_matching_volume`].
//! - [`find_matching_volume`]: a volume pre-bound to the claim (`claimRef`) wins; else the
//!   smallest Available one that holds the requested storage and has the claim's storage class
//!   (an empty class matches only empty), volume mode and labels (selector). A volume being
//!   deleted never matches. With a node (the scheduler) the volume's node affinity must admit it
//!   and the access modes are checked here; with delayed binding and no node (the binder, for a
//!   WaitForFirstConsumer class) only pre-bound volumes match.
//! - [`check_volume_satisfies_claim`]: whether the volume a claim names will do.
//!
//! Sizes compare exactly ([`kaji_api::quantity::nanos`]), as upstream's `Quantity.Cmp`.

use crate::selector;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaji_api::quantity;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The claim's binding is done (set by the binder on the claim).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// The binder (or the scheduler), not the user, bound the volume or claim.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler picked for a claim to provision.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The storage class by its deprecated annotation, which wins over `storageClassName`.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Upstream `GetPersistentVolumeClaimClass`: the beta annotation, else `storageClassName`.
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    annotation(&c.metadata, BETA_STORAGE_CLASS)
        .or_else(|| {
            c.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or_default()
}

/// Upstream `GetPersistentVolumeClass`.
pub fn volume_class(v: &PersistentVolume) -> &str {
    annotation(&v.metadata, BETA_STORAGE_CLASS)
        .or_else(|| {
            v.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or_default()
}

/// Upstream `IsVolumeBoundToClaim`: the claimRef names the claim (and its uid, when it has one).
pub fn is_bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name.as_deref().unwrap_or_default() != c.metadata.name.as_deref().unwrap_or_default()
        || r.namespace.as_deref().unwrap_or_default()
            != c.metadata.namespace.as_deref().unwrap_or_default()
    {
        return false;
    }
    let uid = r.uid.as_deref().unwrap_or_default();
    uid.is_empty() || Some(uid) == c.metadata.uid.as_deref()
}

fn storage(list: Option<&BTreeMap<String, Quantity>>, scale: fn(&str) -> Option<i128>) -> i128 {
    list.and_then(|l| l.get("storage"))
        .and_then(|q| scale(&q.0))
        .unwrap_or(0)
}

/// The claim's `resources.requests.storage` in billionths (0 when unset), to compare and sort.
pub fn requested_storage(c: &PersistentVolumeClaim) -> i128 {
    storage(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
        quantity::nanos,
    )
}

/// The volume's `capacity.storage` in billionths (0 when unset).
pub fn volume_storage(v: &PersistentVolume) -> i128 {
    storage(
        v.spec.as_ref().and_then(|s| s.capacity.as_ref()),
        quantity::nanos,
    )
}

/// Upstream `CheckVolumeModeMismatches` (no mode is Filesystem).
pub fn volume_mode_mismatch(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let claim = c.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume = v.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim.unwrap_or("Filesystem") != volume.unwrap_or("Filesystem")
}

fn claim_modes(c: &PersistentVolumeClaim) -> &[String] {
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

fn volume_modes(v: &PersistentVolume) -> &[String] {
    v.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

/// Upstream `CheckAccessModes`: the volume offers every mode the claim asks for.
pub fn access_modes_fit(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let offered = volume_modes(v);
    claim_modes(c).iter().all(|m| offered.contains(m))
}

/// Upstream `checkVolumeSatisfyClaim`, for a claim that names its volume: why the volume will
/// not do, in upstream's words. Sizes compare as `Quantity.Value()` (whole bytes, rounded up).
pub fn check_volume_satisfies_claim(
    v: &PersistentVolume,
    c: &PersistentVolumeClaim,
) -> Result<(), String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            v.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let bytes = |s: &str| quantity::scaled(s, 1);
    let requested = storage(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
        bytes,
    );
    if storage(v.spec.as_ref().and_then(|s| s.capacity.as_ref()), bytes) < requested {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(c, v) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_fit(c, v) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// Upstream `FindMatchingVolume`: among `volumes`, the one pre-bound to the claim, else the
/// smallest Available one that fits.
///
/// - `node`: the scheduler's path, whether a volume's node affinity admits the node being tried
///   (`CheckNodeAffinity`); a pre-bound volume that it refuses means no match at all, and
///   access modes are checked here (the binder checks them by grouping, [`find_best_match`]).
/// - `excluded`: volumes already picked for the pod's other claims (scheduler).
/// - `delay_binding`: the claim's class is WaitForFirstConsumer; without a node only a
///   pre-bound volume matches (the scheduler picks the others).
///
/// A claim asking for a VolumeAttributesClass matches nothing (the feature is off, as in
/// upstream 1.33 by default).
pub fn find_matching_volume(
    c: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<&dyn Fn(&PersistentVolume) -> bool>,
    excluded: &HashSet<String>,
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    if c.spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return None;
    }
    let requested = requested_storage(c);
    let class = claim_class(c);
    let selector = match c.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => None,
        // Unreachable for a validated claim, as upstream's error.
        Some(s) => Some(selector::compile(s).ok()?),
    };
    let mut smallest: Option<(i128, &Arc<PersistentVolume>)> = None;
    for v in volumes {
        if excluded.contains(v.metadata.name.as_deref().unwrap_or_default()) {
            continue;
        }
        let claimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
        if claimed && !is_bound_to(v, c) {
            continue;
        }
        let size = volume_storage(v);
        if size < requested || volume_mode_mismatch(c, v) || v.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let affinity_ok = node.is_none_or(|admits| admits(v));
        if claimed {
            // Pre-bound to this claim: that volume, or nothing if the node does not suit it.
            return affinity_ok.then(|| v.clone());
        }
        if node.is_none() && delay_binding {
            continue;
        }
        let phase = v.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Available")
            || selector
                .as_ref()
                .is_some_and(|s| !selector::matches(s, v.metadata.labels.as_ref()))
            || volume_class(v) != class
            || !affinity_ok
            || (node.is_some() && !access_modes_fit(c, v))
        {
            continue;
        }
        if smallest.is_none_or(|(s, _)| s > size) {
            smallest = Some((size, v));
        }
    }
    smallest.map(|(_, v)| v.clone())
}

/// Upstream `findBestMatchForClaim` (the binder's index): volumes grouped by their set of access
/// modes; the groups whose modes include all the claim's are tried from the fewest modes up,
/// each with [`find_matching_volume`] (no node). Within a group volumes are taken by name.
pub fn find_best_match(
    c: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let wanted = claim_modes(c);
    let mut groups: BTreeMap<Vec<&str>, Vec<Arc<PersistentVolume>>> = BTreeMap::new();
    for v in volumes {
        let mut modes: Vec<&str> = volume_modes(v).iter().map(String::as_str).collect();
        modes.sort_unstable();
        modes.dedup();
        groups.entry(modes).or_default().push(v.clone());
    }
    let mut keys: Vec<&Vec<&str>> = groups
        .keys()
        .filter(|modes| wanted.iter().all(|m| modes.contains(&m.as_str())))
        .collect();
    keys.sort_by_key(|m| m.len());
    let none = HashSet::new();
    for key in keys {
        let mut group = groups[key].clone();
        group.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if let Some(v) = find_matching_volume(c, &group, None, &none, delay_binding) {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    fn obj<K: DeserializeOwned>(v: Value) -> K {
        serde_json::from_value(v).expect("object")
    }

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> Value {
        json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "storageClassName": (!class.is_empty()).then_some(class),
                     "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"}})
    }

    fn pvc(size: &str, modes: &[&str], class: Option<&str>) -> Value {
        json!({"metadata": {"name": "c", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}},
                     "storageClassName": class}})
    }

    fn vols(vs: Vec<Value>) -> Vec<Arc<PersistentVolume>> {
        vs.into_iter().map(|v| Arc::new(obj(v))).collect()
    }

    fn best(c: Value, vs: &[Arc<PersistentVolume>]) -> Option<String> {
        find_best_match(&obj(c), vs, false).and_then(|v| v.metadata.name.clone())
    }

    const RWO: &[&str] = &["ReadWriteOnce"];

    #[test]
    fn smallest_fitting_volume_with_the_same_class() {
        let vs = vols(vec![
            pv("big", "10Gi", RWO, ""),
            pv("small", "1Gi", RWO, ""),
            pv("tiny", "100Mi", RWO, ""),
            pv("classy", "1Gi", RWO, "fast"),
        ]);
        assert_eq!(best(pvc("500Mi", RWO, None), &vs).as_deref(), Some("small"));
        assert_eq!(best(pvc("2Gi", RWO, None), &vs).as_deref(), Some("big"));
        assert_eq!(best(pvc("20Gi", RWO, None), &vs), None);
        assert_eq!(
            best(pvc("500Mi", RWO, Some("fast")), &vs).as_deref(),
            Some("classy")
        );
        assert_eq!(best(pvc("500Mi", RWO, Some("slow")), &vs), None);
        // The beta annotation wins over storageClassName, on either side.
        let mut c = pvc("500Mi", RWO, Some("slow"));
        c["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS: "fast"});
        assert_eq!(best(c, &vs).as_deref(), Some("classy"));
    }

    #[test]
    fn sizes_compare_exactly() {
        // 1Gi is more than 1G; 1G is not enough for 1Gi.
        let vs = vols(vec![pv("g", "1G", RWO, ""), pv("gi", "1Gi", RWO, "")]);
        assert_eq!(best(pvc("1G", RWO, None), &vs).as_deref(), Some("g"));
        assert_eq!(best(pvc("1Gi", RWO, None), &vs).as_deref(), Some("gi"));
        assert_eq!(best(pvc("1000001k", RWO, None), &vs).as_deref(), Some("gi"));
        // A fraction of a byte more than the volume holds does not fit.
        let vs = vols(vec![pv("one", "1", RWO, "")]);
        assert_eq!(best(pvc("1001m", RWO, None), &vs), None);
        assert_eq!(best(pvc("1", RWO, None), &vs).as_deref(), Some("one"));
    }

    #[test]
    fn access_modes_fewest_first_and_superset() {
        let vs = vols(vec![
            pv("rwo-rox", "1Gi", &["ReadWriteOnce", "ReadOnlyMany"], ""),
            pv("rwo-big", "5Gi", RWO, ""),
            pv("rwx", "1Gi", &["ReadWriteMany"], ""),
        ]);
        // The exact set wins over a smaller volume with more modes.
        assert_eq!(best(pvc("1Gi", RWO, None), &vs).as_deref(), Some("rwo-big"));
        assert_eq!(
            best(pvc("1Gi", &["ReadOnlyMany"], None), &vs).as_deref(),
            Some("rwo-rox")
        );
        assert_eq!(
            best(pvc("1Gi", &["ReadWriteMany", "ReadWriteOnce"], None), &vs),
            None
        );
    }

    #[test]
    fn pre_bound_volume_wins_and_selector_filters() {
        let mut pre = pv("pre", "5Gi", RWO, "other");
        pre["spec"]["claimRef"] = json!({"name": "c", "namespace": "default"});
        let mut labelled = pv("labelled", "2Gi", RWO, "");
        labelled["metadata"]["labels"] = json!({"tier": "gold"});
        let mut taken = pv("taken", "1Gi", RWO, "");
        taken["spec"]["claimRef"] =
            json!({"name": "someone-else", "namespace": "default", "uid": "u2"});
        let mut wrong_uid = pv("wrong-uid", "1Gi", RWO, "");
        wrong_uid["spec"]["claimRef"] = json!({"name": "c", "namespace": "default", "uid": "old"});
        let vs = vols(vec![
            pre,
            labelled.clone(),
            pv("plain", "1Gi", RWO, ""),
            taken,
            wrong_uid,
        ]);
        // Pre-binding skips the class and phase checks.
        assert_eq!(best(pvc("1Gi", RWO, None), &vs).as_deref(), Some("pre"));
        let vs = &vs[1..];
        assert_eq!(best(pvc("1Gi", RWO, None), vs).as_deref(), Some("plain"));
        let mut c = pvc("1Gi", RWO, None);
        c["spec"]["selector"] = json!({"matchLabels": {"tier": "gold"}});
        assert_eq!(best(c.clone(), vs).as_deref(), Some("labelled"));
        c["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]});
        assert_eq!(best(c.clone(), vs).as_deref(), Some("plain"));
        // Only Available volumes are matched (the volume loop makes new ones Available).
        let mut pending = labelled;
        pending["status"] = json!({});
        assert_eq!(best(pvc("1Gi", RWO, None), &vols(vec![pending])), None);
    }

    #[test]
    fn deleted_mode_mismatch_and_attributes_class() {
        let mut deleting = pv("deleting", "1Gi", RWO, "");
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        let mut block = pv("block", "1Gi", RWO, "");
        block["spec"]["volumeMode"] = json!("Block");
        let vs = vols(vec![deleting, block]);
        assert_eq!(best(pvc("1Gi", RWO, None), &vs), None);
        let mut c = pvc("1Gi", RWO, None);
        c["spec"]["volumeMode"] = json!("Block");
        assert_eq!(best(c.clone(), &vs).as_deref(), Some("block"));
        c["spec"]["volumeAttributesClassName"] = json!("gold");
        assert_eq!(best(c, &vs), None);
    }

    #[test]
    fn delayed_binding_and_nodes() {
        let mut pre = pv("pre", "1Gi", RWO, "local");
        pre["spec"]["claimRef"] = json!({"name": "c", "namespace": "default"});
        let free = pv("free", "1Gi", RWO, "local");
        let c: PersistentVolumeClaim = obj(pvc("1Gi", RWO, Some("local")));
        let none = HashSet::new();
        let name = |v: Option<Arc<PersistentVolume>>| v.and_then(|v| v.metadata.name.clone());
        // The binder, delayed: only a pre-bound volume.
        let vs = vols(vec![free.clone()]);
        assert_eq!(find_best_match(&c, &vs, true), None);
        let vs = vols(vec![free.clone(), pre]);
        assert_eq!(name(find_best_match(&c, &vs, true)).as_deref(), Some("pre"));
        // The scheduler: a node that the pre-bound volume refuses gets nothing at all.
        let not_pre = |v: &PersistentVolume| v.metadata.name.as_deref() != Some("pre");
        assert_eq!(
            find_matching_volume(&c, &vs, Some(&not_pre), &none, true),
            None
        );
        let every = |_: &PersistentVolume| true;
        let vs = vols(vec![free.clone(), pv("free-2", "2Gi", RWO, "local")]);
        assert_eq!(
            name(find_matching_volume(&c, &vs, Some(&every), &none, true)).as_deref(),
            Some("free")
        );
        // Excluded volumes and volumes the node's affinity refuses are skipped.
        let excluded: HashSet<String> = ["free".to_string()].into();
        assert_eq!(
            name(find_matching_volume(&c, &vs, Some(&every), &excluded, true)).as_deref(),
            Some("free-2")
        );
        let not_free = |v: &PersistentVolume| v.metadata.name.as_deref() != Some("free");
        assert_eq!(
            name(find_matching_volume(&c, &vs, Some(&not_free), &none, true)).as_deref(),
            Some("free-2")
        );
        // With a node, access modes are checked here.
        let rwx: PersistentVolumeClaim = obj(pvc("1Gi", &["ReadWriteMany"], Some("local")));
        assert_eq!(
            find_matching_volume(&rwx, &vs, Some(&every), &none, true),
            None
        );
    }

    #[test]
    fn a_named_volume_satisfies_the_claim() {
        let c: PersistentVolumeClaim = obj(pvc("1Gi", RWO, Some("fast")));
        let ok: PersistentVolume = obj(pv("v", "1Gi", &["ReadWriteOnce", "ReadOnlyMany"], "fast"));
        assert_eq!(check_volume_satisfies_claim(&ok, &c), Ok(()));
        let small: PersistentVolume = obj(pv("v", "1G", RWO, "fast"));
        assert_eq!(
            check_volume_satisfies_claim(&small, &c),
            Err("requested PV is too small".into())
        );
        let other: PersistentVolume = obj(pv("v", "1Gi", RWO, ""));
        assert_eq!(
            check_volume_satisfies_claim(&other, &c),
            Err("storageClassName does not match".into())
        );
        let mut block = pv("v", "1Gi", RWO, "fast");
        block["spec"]["volumeMode"] = json!("Block");
        assert_eq!(
            check_volume_satisfies_claim(&obj(block), &c),
            Err("incompatible volumeMode".into())
        );
        let rox: PersistentVolume = obj(pv("v", "1Gi", &["ReadOnlyMany"], "fast"));
        assert_eq!(
            check_volume_satisfies_claim(&rox, &c),
            Err("incompatible accessMode".into())
        );
        let mut deleting = pv("v", "1Gi", RWO, "fast");
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert_eq!(
            check_volume_satisfies_claim(&obj(deleting), &c),
            Err("the volume is marked for deletion \"v\"".into())
        );
    }

    #[test]
    fn bound_to_claim_by_name_namespace_and_uid() {
        let c: PersistentVolumeClaim = obj(pvc("1Gi", RWO, None));
        let mut v = pv("v", "1Gi", RWO, "");
        assert!(!is_bound_to(&obj(v.clone()), &c));
        v["spec"]["claimRef"] = json!({"name": "c", "namespace": "default"});
        assert!(is_bound_to(&obj(v.clone()), &c));
        v["spec"]["claimRef"]["uid"] = json!("u1");
        assert!(is_bound_to(&obj(v.clone()), &c));
        v["spec"]["claimRef"]["uid"] = json!("u2");
        assert!(!is_bound_to(&obj(v.clone()), &c));
        v["spec"]["claimRef"] = json!({"name": "c", "namespace": "other"});
        assert!(!is_bound_to(&obj(v), &c));
    }
}
