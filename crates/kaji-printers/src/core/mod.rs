//! Core (group "") kinds. The bigger printers live in their own files: `pod`, `service`
//! (Service, Endpoints), `node`, `event`, `volume` (PersistentVolume, PersistentVolumeClaim).

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::quantity::format_quantity;
use crate::selectors::format_labels;
use crate::value::{
    age, arr_at, container_cells, get, int_at, len_at, map_at, name, opt_int, str_at,
};

pub(crate) mod event;
mod node;
pub(crate) mod pod;
mod service;
mod volume;

pub(crate) use service::load_balancer_addresses as service_load_balancer_addresses;

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "Pod" => pod::COLUMNS,
        "PodTemplate" => POD_TEMPLATE,
        "ReplicationController" => REPLICATION_CONTROLLER,
        "Service" => service::SERVICE,
        "Endpoints" => service::ENDPOINTS,
        "Node" => node::COLUMNS,
        "Event" => event::COLUMNS,
        "Namespace" => NAMESPACE,
        "Secret" => SECRET,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "PersistentVolume" => volume::PERSISTENT_VOLUME,
        "PersistentVolumeClaim" => volume::PERSISTENT_VOLUME_CLAIM,
        "ConfigMap" => CONFIG_MAP,
        "ResourceQuota" => RESOURCE_QUOTA,
        "ComponentStatus" => COMPONENT_STATUS,
        // LimitRange has no printer upstream: the default table.
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "Pod" => pod::row(obj, now),
        "PodTemplate" => pod_template(obj),
        "ReplicationController" => replication_controller(obj, now),
        "Service" => service::service(obj, now),
        "Endpoints" => service::endpoints(obj, now),
        "Node" => node::row(obj, now),
        "Event" => event::row(obj, now),
        "Namespace" => namespace(obj, now),
        "Secret" => secret(obj, now),
        "ServiceAccount" => vec![name(obj), len_at(obj, &["secrets"]).into(), age(obj, now)],
        "PersistentVolume" => volume::persistent_volume(obj, now),
        "PersistentVolumeClaim" => volume::persistent_volume_claim(obj, now),
        "ConfigMap" => {
            let data = len_at(obj, &["data"]) + len_at(obj, &["binaryData"]);
            vec![name(obj), data.into(), age(obj, now)]
        }
        "ResourceQuota" => resource_quota(obj, now),
        "ComponentStatus" => component_status(obj),
        _ => return None,
    })
}

const POD_TEMPLATE: &[Column] = &[
    Column::NAME,
    Column::new("Containers", "string", docs::CONTAINERS),
    Column::new("Images", "string", docs::IMAGES),
    Column::new("Pod Labels", "string", "The labels for the pod template."),
];

fn pod_template(obj: &Value) -> Vec<Value> {
    let (names, images) = container_cells(arr_at(obj, &["template", "spec", "containers"]));
    let labels = format_labels(map_at(obj, &["template", "metadata", "labels"]));
    vec![name(obj), names, images, labels.into()]
}

const REPLICATION_CONTROLLER: &[Column] = &[
    Column::NAME,
    Column::new("Desired", "integer", docs::RC_SPEC_REPLICAS),
    Column::new("Current", "integer", docs::RC_STATUS_REPLICAS),
    Column::new("Ready", "integer", docs::RC_STATUS_READY_REPLICAS),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
    Column::wide("Selector", "string", docs::RC_SPEC_SELECTOR),
];

fn replication_controller(obj: &Value, now: Timestamp) -> Vec<Value> {
    // Defaulting: one replica, and the selector taken from the template's labels.
    let desired = opt_int(obj, &["spec", "replicas"]).unwrap_or(1);
    let (names, images) = container_cells(arr_at(obj, &["spec", "template", "spec", "containers"]));
    let selector = map_at(obj, &["spec", "selector"])
        .filter(|m| !m.is_empty())
        .or_else(|| map_at(obj, &["spec", "template", "metadata", "labels"]));
    vec![
        name(obj),
        desired.into(),
        int_at(obj, &["status", "replicas"]).into(),
        int_at(obj, &["status", "readyReplicas"]).into(),
        age(obj, now),
        names,
        images,
        format_labels(selector).into(),
    ]
}

const NAMESPACE: &[Column] = &[
    Column::NAME,
    Column::new("Status", "string", "The status of the namespace"),
    Column::AGE,
];

fn namespace(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = match str_at(obj, &["status", "phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name(obj), phase.into(), age(obj, now)]
}

const SECRET: &[Column] = &[
    Column::NAME,
    Column::new("Type", "string", docs::SECRET_TYPE),
    Column::new("Data", "string", docs::SECRET_DATA),
    Column::AGE,
];

fn secret(obj: &Value, now: Timestamp) -> Vec<Value> {
    let type_ = match str_at(obj, &["type"]) {
        "" => "Opaque",
        t => t,
    };
    vec![
        name(obj),
        type_.into(),
        len_at(obj, &["data"]).into(),
        age(obj, now),
    ]
}

const SERVICE_ACCOUNT: &[Column] = &[
    Column::NAME,
    Column::new("Secrets", "string", docs::SA_SECRETS),
    Column::AGE,
];

const CONFIG_MAP: &[Column] = &[
    Column::NAME,
    Column::new("Data", "string", docs::CONFIGMAP_DATA),
    Column::AGE,
];

const RESOURCE_QUOTA: &[Column] = &[
    Column::NAME,
    Column::new(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    Column::new(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    Column::AGE,
];

/// "resource: used/hard" pairs sorted by resource name; `limits.*` go to the LIMIT column.
fn resource_quota(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> = map_at(obj, &["status", "hard"])
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    resources.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for resource in resources {
        let used = format_quantity(get(obj, &["status", "used", resource]));
        let hard = format_quantity(get(obj, &["status", "hard", resource]));
        let text = format!("{resource}: {used}/{hard}");
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![
        name(obj),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(obj, now),
    ]
}

const COMPONENT_STATUS: &[Column] = &[
    Column::NAME,
    Column::new("Status", "string", "Status of the component conditions"),
    Column::new("Message", "string", "Message of the component conditions"),
    Column::new("Error", "string", "Error of the component conditions"),
];

fn component_status(obj: &Value) -> Vec<Value> {
    let healthy = arr_at(obj, &["conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        None => ("Unknown", "", ""),
        Some(c) => (
            if str_at(c, &["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            str_at(c, &["message"]),
            str_at(c, &["error"]),
        ),
    };
    vec![name(obj), status.into(), message.into(), error.into()]
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn pod_template() {
        assert_eq!(
            headers("", "PodTemplate"),
            ["Name", "Containers", "Images", "Pod Labels"]
        );
        let pt = json!({"metadata": {"name": "tpl"}, "template": {"metadata": {"labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}}});
        assert_eq!(
            cells("", "PodTemplate", &pt),
            [
                json!("tpl"),
                json!("web,log"),
                json!("nginx,busybox"),
                json!("a=1,b=2")
            ]
        );
        assert_eq!(
            cells("", "PodTemplate", &json!({})),
            [json!(""), json!(""), json!(""), json!("<none>")]
        );
    }

    #[test]
    fn replication_controller() {
        assert_eq!(
            headers("", "ReplicationController"),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers*",
                "Images*",
                "Selector*"
            ]
        );
        let rc = json!({"metadata": {"name": "rc", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}});
        assert_eq!(
            cells("", "ReplicationController", &rc),
            [
                json!("rc"),
                json!(3),
                json!(3),
                json!(2),
                json!("60m"),
                json!("web"),
                json!("nginx:1.25"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn namespace_secret_serviceaccount_configmap() {
        assert_eq!(headers("", "Namespace"), ["Name", "Status", "Age"]);
        let ns = json!({"metadata": {"name": "dev", "creationTimestamp": "2024-04-29T12:00:00Z"}, "status": {"phase": "Terminating"}});
        assert_eq!(
            cells("", "Namespace", &ns),
            [json!("dev"), json!("Terminating"), json!("2d")]
        );
        assert_eq!(cells("", "Namespace", &json!({}))[1], json!("Active"));

        assert_eq!(headers("", "Secret"), ["Name", "Type", "Data", "Age"]);
        let s = json!({"metadata": {"name": "tls", "creationTimestamp": "2024-05-01T11:59:30Z"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells("", "Secret", &s),
            [
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("30s")
            ]
        );
        assert_eq!(cells("", "Secret", &json!({}))[1], json!("Opaque"));

        assert_eq!(headers("", "ServiceAccount"), ["Name", "Secrets", "Age"]);
        let sa =
            json!({"metadata": {"name": "default", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(
            cells("", "ServiceAccount", &sa),
            [json!("default"), json!(0), json!("60m")]
        );

        assert_eq!(headers("", "ConfigMap"), ["Name", "Data", "Age"]);
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "data": {"ca.crt": "x"}, "binaryData": {"blob": "AA=="}});
        assert_eq!(
            cells("", "ConfigMap", &cm),
            [json!("kube-root-ca.crt"), json!(2), json!("60m")]
        );
    }

    #[test]
    fn limit_range_uses_the_default_table() {
        assert_eq!(headers("", "LimitRange"), ["Name", "Created At"]);
        let lr =
            json!({"metadata": {"name": "limits", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(
            cells("", "LimitRange", &lr),
            [json!("limits"), json!("2024-05-01T11:00:00Z")]
        );
    }

    #[test]
    fn resource_quota() {
        assert_eq!(
            headers("", "ResourceQuota"),
            ["Name", "Request", "Limit", "Age"]
        );
        let rq = json!({"metadata": {"name": "compute", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "status": {
                "hard": {"pods": "10", "requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2048Mi"},
                "used": {"pods": "2", "requests.cpu": "500m", "requests.memory": "0.5Gi", "limits.cpu": "1"}}});
        assert_eq!(
            cells("", "ResourceQuota", &rq),
            [
                json!("compute"),
                json!("pods: 2/10, requests.cpu: 500m/1, requests.memory: 512Mi/1Gi"),
                json!("limits.cpu: 1/2, limits.memory: 0/2Gi"),
                json!("60m")
            ]
        );
        assert_eq!(
            cells("", "ResourceQuota", &json!({}))[1..3],
            [json!(""), json!("")]
        );
    }

    #[test]
    fn component_status() {
        assert_eq!(
            headers("", "ComponentStatus"),
            ["Name", "Status", "Message", "Error"]
        );
        let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            cells("", "ComponentStatus", &cs),
            [json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
        );
        let bad = json!({"metadata": {"name": "scheduler"}, "conditions": [{"type": "Healthy", "status": "False", "error": "refused"}]});
        assert_eq!(
            cells("", "ComponentStatus", &bad),
            [
                json!("scheduler"),
                json!("Unhealthy"),
                json!(""),
                json!("refused")
            ]
        );
        assert_eq!(
            cells("", "ComponentStatus", &json!({}))[1],
            json!("Unknown")
        );
    }
}
