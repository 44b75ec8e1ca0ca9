//! storage.k8s.io: StorageClass, CSIDriver, CSINode, VolumeAttachment, CSIStorageCapacity.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::quantity::format_quantity;
use crate::value::{age, annotation, arr_at, bool_at, get, is_set, len_at, name, opt_bool, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "StorageClass" => STORAGE_CLASS,
        "CSIDriver" => CSI_DRIVER,
        "CSINode" => CSI_NODE,
        "VolumeAttachment" => VOLUME_ATTACHMENT,
        "CSIStorageCapacity" => CSI_STORAGE_CAPACITY,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "StorageClass" => storage_class(obj, now),
        "CSIDriver" => csi_driver(obj, now),
        "CSINode" => vec![
            name(obj),
            len_at(obj, &["spec", "drivers"]).into(),
            age(obj, now),
        ],
        "VolumeAttachment" => vec![
            name(obj),
            str_at(obj, &["spec", "attacher"]).into(),
            str_at(obj, &["spec", "source", "persistentVolumeName"]).into(),
            str_at(obj, &["spec", "nodeName"]).into(),
            bool_at(obj, &["status", "attached"]).into(),
            age(obj, now),
        ],
        "CSIStorageCapacity" => {
            let capacity = if is_set(obj, &["capacity"]) {
                format_quantity(get(obj, &["capacity"]))
            } else {
                "<unset>".to_owned()
            };
            vec![
                name(obj),
                str_at(obj, &["storageClassName"]).into(),
                capacity.into(),
            ]
        }
        _ => return None,
    })
}

const STORAGE_CLASS: &[Column] = &[
    Column::NAME,
    Column::new("Provisioner", "string", docs::SC_PROVISIONER),
    Column::new("ReclaimPolicy", "string", docs::SC_RECLAIM_POLICY),
    Column::new("VolumeBindingMode", "string", docs::SC_VOLUME_BINDING_MODE),
    Column::new(
        "AllowVolumeExpansion",
        "string",
        docs::SC_ALLOW_VOLUME_EXPANSION,
    ),
    Column::AGE,
];

fn storage_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = annotation(obj, "storageclass.kubernetes.io/is-default-class") == "true"
        || annotation(obj, "storageclass.beta.kubernetes.io/is-default-class") == "true";
    let mut class_name = str_at(obj, &["metadata", "name"]).to_owned();
    if is_default {
        class_name.push_str(" (default)");
    }
    let or = |field: &str, default: &'static str| match str_at(obj, &[field]) {
        "" => default.to_owned(),
        v => v.to_owned(),
    };
    vec![
        class_name.into(),
        str_at(obj, &["provisioner"]).into(),
        or("reclaimPolicy", "Delete").into(),
        or("volumeBindingMode", "Immediate").into(),
        bool_at(obj, &["allowVolumeExpansion"]).into(),
        age(obj, now),
    ]
}

const CSI_DRIVER: &[Column] = &[
    Column::NAME,
    Column::new("AttachRequired", "boolean", docs::CSI_ATTACH_REQUIRED),
    Column::new("PodInfoOnMount", "boolean", docs::CSI_POD_INFO_ON_MOUNT),
    Column::new("StorageCapacity", "boolean", docs::CSI_STORAGE_CAPACITY),
    Column::new("TokenRequests", "string", docs::CSI_TOKEN_REQUESTS),
    Column::new("RequiresRepublish", "boolean", docs::CSI_REQUIRES_REPUBLISH),
    Column::new("Modes", "string", docs::CSI_MODES),
    Column::AGE,
];

fn csi_driver(obj: &Value, now: Timestamp) -> Vec<Value> {
    // Defaults applied upstream: attachRequired true, the others false, mode Persistent.
    let token_requests = match get(obj, &["spec", "tokenRequests"]).and_then(Value::as_array) {
        None => "<unset>".to_owned(),
        Some(requests) => requests
            .iter()
            .map(|t| str_at(t, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
    };
    let modes: Vec<&str> = arr_at(obj, &["spec", "volumeLifecycleModes"])
        .iter()
        .map(|m| m.as_str().unwrap_or(""))
        .collect();
    let modes = if modes.is_empty() {
        "Persistent".to_owned()
    } else {
        modes.join(",")
    };
    vec![
        name(obj),
        opt_bool(obj, &["spec", "attachRequired"])
            .unwrap_or(true)
            .into(),
        bool_at(obj, &["spec", "podInfoOnMount"]).into(),
        bool_at(obj, &["spec", "storageCapacity"]).into(),
        token_requests.into(),
        bool_at(obj, &["spec", "requiresRepublish"]).into(),
        modes.into(),
        age(obj, now),
    ]
}

const CSI_NODE: &[Column] = &[
    Column::NAME,
    Column::new(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    Column::AGE,
];

const VOLUME_ATTACHMENT: &[Column] = &[
    Column::NAME,
    // Upstream marks ATTACHER with the "name" format too.
    Column {
        name: "Attacher",
        type_: "string",
        format: "name",
        description: docs::VA_SPEC_ATTACHER,
        priority: 0,
    },
    Column::new("PV", "string", docs::VA_SOURCE_PV),
    Column::new("Node", "string", docs::VA_SPEC_NODE_NAME),
    Column::new("Attached", "boolean", docs::VA_STATUS_ATTACHED),
    Column::AGE,
];

const CSI_STORAGE_CAPACITY: &[Column] = &[
    Column::NAME,
    Column::new(
        "StorageClassName",
        "string",
        "storageClassName represents the name of the StorageClass that the reported capacity applies to.",
    ),
    Column::new(
        "Capacity",
        "string",
        "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.",
    ),
];

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    const G: &str = "storage.k8s.io";

    #[test]
    fn storage_class() {
        assert_eq!(
            headers(G, "StorageClass"),
            [
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age"
            ]
        );
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": "2024-05-01T11:00:00Z",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true});
        assert_eq!(
            cells(G, "StorageClass", &sc),
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Retain"),
                json!("WaitForFirstConsumer"),
                json!(true),
                json!("60m")
            ]
        );
        assert_eq!(
            cells(G, "StorageClass", &json!({}))[2..5],
            [json!("Delete"), json!("Immediate"), json!(false)]
        );
    }

    #[test]
    fn csi_driver() {
        assert_eq!(
            headers(G, "CSIDriver"),
            [
                "Name",
                "AttachRequired",
                "PodInfoOnMount",
                "StorageCapacity",
                "TokenRequests",
                "RequiresRepublish",
                "Modes",
                "Age"
            ]
        );
        let d = json!({"metadata": {"name": "secrets-store.csi.k8s.io", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"attachRequired": false, "podInfoOnMount": true, "tokenRequests": [{"audience": "vault"}, {"audience": "aws"}],
                     "requiresRepublish": true, "volumeLifecycleModes": ["Ephemeral"]}});
        assert_eq!(
            cells(G, "CSIDriver", &d),
            [
                json!("secrets-store.csi.k8s.io"),
                json!(false),
                json!(true),
                json!(false),
                json!("vault,aws"),
                json!(true),
                json!("Ephemeral"),
                json!("60m")
            ]
        );
        assert_eq!(
            cells(G, "CSIDriver", &json!({}))[1..7],
            [
                json!(true),
                json!(false),
                json!(false),
                json!("<unset>"),
                json!(false),
                json!("Persistent")
            ]
        );
    }

    #[test]
    fn csi_node_volume_attachment_capacity() {
        assert_eq!(headers(G, "CSINode"), ["Name", "Drivers", "Age"]);
        let n = json!({"metadata": {"name": "node-1"}, "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            cells(G, "CSINode", &n),
            [json!("node-1"), json!(2), json!("<unknown>")]
        );

        assert_eq!(
            headers(G, "VolumeAttachment"),
            ["Name", "Attacher", "PV", "Node", "Attached", "Age"]
        );
        assert_eq!(crate::columns(G, "VolumeAttachment")[1].format, "name");
        let va = json!({"metadata": {"name": "csi-123", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-1", "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": true}});
        assert_eq!(
            cells(G, "VolumeAttachment", &va),
            [
                json!("csi-123"),
                json!("ebs.csi.aws.com"),
                json!("pv-1"),
                json!("node-1"),
                json!(true),
                json!("60m")
            ]
        );

        assert_eq!(
            headers(G, "CSIStorageCapacity"),
            ["Name", "StorageClassName", "Capacity"]
        );
        let cap = json!({"metadata": {"name": "csisc-1"}, "storageClassName": "fast", "capacity": "2048Mi"});
        assert_eq!(
            cells(G, "CSIStorageCapacity", &cap),
            [json!("csisc-1"), json!("fast"), json!("2Gi")]
        );
        assert_eq!(
            cells(G, "CSIStorageCapacity", &json!({}))[2],
            json!("<unset>")
        );
    }
}
