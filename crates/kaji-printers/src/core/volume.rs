//! PersistentVolumes and PersistentVolumeClaims.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::quantity::format_quantity;
use crate::value::{age, annotation, arr_at, get, is_deleting, name, opt_str, str_at};

/// The beta annotation still takes precedence over `spec.storageClassName`.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) const PERSISTENT_VOLUME: &[Column] = &[
    Column::NAME,
    Column::new("Capacity", "string", docs::PV_SPEC_CAPACITY),
    Column::new("Access Modes", "string", docs::PV_SPEC_ACCESS_MODES),
    Column::new("Reclaim Policy", "string", docs::PV_SPEC_RECLAIM_POLICY),
    Column::new("Status", "string", docs::PV_STATUS_PHASE),
    Column::new("Claim", "string", docs::PV_SPEC_CLAIM_REF),
    Column::new("StorageClass", "string", "StorageClass of the pv"),
    Column::new(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    Column::new("Reason", "string", docs::PV_STATUS_REASON),
    Column::AGE,
    Column::wide("VolumeMode", "string", docs::PV_SPEC_VOLUME_MODE),
];

pub(super) fn persistent_volume(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]).filter(|c| !c.is_null()) {
        Some(c) => format!("{}/{}", str_at(c, &["namespace"]), str_at(c, &["name"])),
        None => String::new(),
    };
    // Defaults applied on read upstream: Retain, Pending, Filesystem.
    let reclaim = or_default(
        str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]),
        "Retain",
    );
    let phase = if is_deleting(pv) {
        "Terminating"
    } else {
        or_default(str_at(pv, &["status", "phase"]), "Pending")
    };
    vec![
        name(pv),
        format_quantity(get(pv, &["spec", "capacity", "storage"])).into(),
        access_modes(arr_at(pv, &["spec", "accessModes"])).into(),
        reclaim.into(),
        phase.into(),
        claim.into(),
        storage_class(pv).into(),
        opt_str(pv, &["spec", "volumeAttributesClassName"])
            .unwrap_or("<unset>")
            .into(),
        str_at(pv, &["status", "reason"]).into(),
        age(pv, now),
        or_default(str_at(pv, &["spec", "volumeMode"]), "Filesystem").into(),
    ]
}

pub(super) const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    Column::NAME,
    Column::new("Status", "string", docs::PVC_STATUS_PHASE),
    Column::new("Volume", "string", docs::PVC_SPEC_VOLUME_NAME),
    Column::new("Capacity", "string", docs::PVC_STATUS_CAPACITY),
    Column::new("Access Modes", "string", docs::PVC_STATUS_ACCESS_MODES),
    Column::new("StorageClass", "string", "StorageClass of the pvc"),
    Column::new(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    Column::AGE,
    Column::wide("VolumeMode", "string", docs::PVC_SPEC_VOLUME_MODE),
];

pub(super) fn persistent_volume_claim(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(pvc) {
        "Terminating"
    } else {
        or_default(str_at(pvc, &["status", "phase"]), "Pending")
    };
    let volume = str_at(pvc, &["spec", "volumeName"]);
    // Capacity and access modes are shown once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format_quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(arr_at(pvc, &["status", "accessModes"])),
        )
    };
    vec![
        name(pvc),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        opt_str(pvc, &["spec", "volumeAttributesClassName"])
            .unwrap_or("<unset>")
            .into(),
        age(pvc, now),
        or_default(str_at(pvc, &["spec", "volumeMode"]), "Filesystem").into(),
    ]
}

fn storage_class(obj: &Value) -> &str {
    match annotation(obj, BETA_STORAGE_CLASS) {
        "" => str_at(obj, &["spec", "storageClassName"]),
        class => class,
    }
}

/// "RWO,ROX,RWX,RWOP", always in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    let short: Vec<&str> = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| short)
    .collect();
    short.join(",")
}

fn or_default<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn persistent_volume() {
        assert_eq!(
            headers("", "PersistentVolume"),
            [
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "VolumeMode*"
            ]
        );
        let pv = json!({"metadata": {"name": "pv-1", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Block"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            cells("", "PersistentVolume", &pv),
            [
                json!("pv-1"),
                json!("1536Mi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("default/data"),
                json!("standard"),
                json!("<unset>"),
                json!(""),
                json!("60m"),
                json!("Block")
            ]
        );
        let mut gone = pv.clone();
        gone["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:00:00Z");
        gone["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "old"});
        let c = cells("", "PersistentVolume", &gone);
        assert_eq!([&c[4], &c[6]], [&json!("Terminating"), &json!("old")]);
        assert_eq!(
            cells("", "PersistentVolume", &json!({})),
            [
                json!(""),
                json!("0"),
                json!(""),
                json!("Retain"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!("<unset>"),
                json!(""),
                json!("<unknown>"),
                json!("Filesystem")
            ]
        );
    }

    #[test]
    fn persistent_volume_claim() {
        assert_eq!(
            headers("", "PersistentVolumeClaim"),
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode*"
            ]
        );
        let bound = json!({"metadata": {"name": "data", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"volumeName": "pv-1", "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}},
                     "volumeAttributesClassName": "gold"},
            "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        assert_eq!(
            cells("", "PersistentVolumeClaim", &bound),
            [
                json!("data"),
                json!("Bound"),
                json!("pv-1"),
                json!("2Gi"),
                json!("RWOP"),
                json!("standard"),
                json!("gold"),
                json!("60m"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            cells("", "PersistentVolumeClaim", &pending),
            [
                json!("p"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!(""),
                json!("<unset>"),
                json!("<unknown>"),
                json!("Filesystem")
            ]
        );
    }
}
