//! Nodes: STATUS from the Ready condition (plus SchedulingDisabled), ROLES from labels.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::value::{age, arr_at, bool_at, map_at, name, str_at};

pub(super) const COLUMNS: &[Column] = &[
    Column::NAME,
    Column::new("Status", "string", "The status of the node"),
    Column::new("Roles", "string", "The roles of the node"),
    Column::AGE,
    Column::new("Version", "string", docs::NODE_INFO_KUBELET_VERSION),
    Column::wide("Internal-IP", "string", docs::NODE_STATUS_ADDRESSES),
    Column::wide("External-IP", "string", docs::NODE_STATUS_ADDRESSES),
    Column::wide("OS-Image", "string", docs::NODE_INFO_OS_IMAGE),
    Column::wide("Kernel-Version", "string", docs::NODE_INFO_KERNEL_VERSION),
    Column::wide(
        "Container-Runtime",
        "string",
        docs::NODE_INFO_CONTAINER_RUNTIME,
    ),
];

const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
const ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) fn row(node: &Value, now: Timestamp) -> Vec<Value> {
    // The last Ready condition wins, as upstream builds a map by type.
    let ready = arr_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        None => "Unknown",
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
    }];
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let roles = roles(node);
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_owned(),
        v => v.to_owned(),
    };
    vec![
        name(node),
        status.join(",").into(),
        if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        }
        .into(),
        age(node, now),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address(node, "InternalIP").into(),
        address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label, sorted.
fn roles(node: &Value) -> Vec<&str> {
    let mut roles = BTreeSet::new();
    for (key, value) in map_at(node, &["metadata", "labels"]).into_iter().flatten() {
        if let Some(role) = key.strip_prefix(ROLE_LABEL_PREFIX) {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if key == ROLE_LABEL
            && let Some(role) = value.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(role);
        }
    }
    roles.into_iter().collect()
}

fn address<'a>(node: &'a Value, type_: &str) -> &'a str {
    arr_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == type_)
        .map_or("<none>", |a| str_at(a, &["address"]))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn columns() {
        assert_eq!(
            headers("", "Node"),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP*",
                "External-IP*",
                "OS-Image*",
                "Kernel-Version*",
                "Container-Runtime*"
            ]
        );
    }

    #[test]
    fn ready_control_plane_node() {
        let n = json!({
            "metadata": {"name": "cp-1", "creationTimestamp": "2024-04-20T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true",
                                    "kubernetes.io/role": "master", "node-role.kubernetes.io/": ""}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"}}
        });
        assert_eq!(
            cells("", "Node", &n),
            [
                json!("cp-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,etcd,master"),
                json!("11d"),
                json!("v1.33.1"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("containerd://1.7.13")
            ]
        );
    }

    #[test]
    fn not_ready_and_unknown() {
        let n = json!({"metadata": {"name": "w"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
            "addresses": [{"type": "ExternalIP", "address": "203.0.113.9"}]}});
        let c = cells("", "Node", &n);
        assert_eq!(c[1..3], [json!("NotReady"), json!("<none>")]);
        assert_eq!(c[6], json!("203.0.113.9"));
        assert_eq!(
            cells("", "Node", &json!({})),
            [
                json!(""),
                json!("Unknown"),
                json!("<none>"),
                json!("<unknown>"),
                json!(""),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
    }
}
