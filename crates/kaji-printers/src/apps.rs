//! apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::selectors::{format_label_selector, format_labels, selector_string};
use crate::value::{
    age, api_group, arr_at, container_cells, get, int_at, map_at, name, opt_int, str_at,
};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "Deployment" => DEPLOYMENT,
        "ReplicaSet" => REPLICA_SET,
        "StatefulSet" => STATEFUL_SET,
        "DaemonSet" => DAEMON_SET,
        "ControllerRevision" => CONTROLLER_REVISION,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "Deployment" => deployment(obj, now),
        "ReplicaSet" => replica_set(obj, now),
        "StatefulSet" => stateful_set(obj, now),
        "DaemonSet" => daemon_set(obj, now),
        "ControllerRevision" => controller_revision(obj, now),
        _ => return None,
    })
}

/// `spec.replicas`, defaulted to 1 as upstream does on read.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn template_containers(obj: &Value) -> (Value, Value) {
    container_cells(arr_at(obj, &["spec", "template", "spec", "containers"]))
}

const DEPLOYMENT: &[Column] = &[
    Column::NAME,
    Column::new("Ready", "string", "Number of the pod with ready state"),
    Column::new("Up-to-date", "string", docs::DEPLOY_STATUS_UPDATED),
    Column::new("Available", "string", docs::DEPLOY_STATUS_AVAILABLE),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
    Column::wide("Selector", "string", docs::DEPLOY_SPEC_SELECTOR),
];

fn deployment(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ready = format!(
        "{}/{}",
        int_at(obj, &["status", "readyReplicas"]),
        desired_replicas(obj)
    );
    let (names, images) = template_containers(obj);
    // Unlike most kinds, an empty selector prints as "" and a bad one as "<invalid>".
    let selector = selector_string(get(obj, &["spec", "selector"]))
        .unwrap_or_else(|()| "<invalid>".to_owned());
    vec![
        name(obj),
        ready.into(),
        int_at(obj, &["status", "updatedReplicas"]).into(),
        int_at(obj, &["status", "availableReplicas"]).into(),
        age(obj, now),
        names,
        images,
        selector.into(),
    ]
}

const REPLICA_SET: &[Column] = &[
    Column::NAME,
    Column::new("Desired", "integer", docs::RS_SPEC_REPLICAS),
    Column::new("Current", "integer", docs::RS_STATUS_REPLICAS),
    Column::new("Ready", "integer", docs::RS_STATUS_READY_REPLICAS),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
    Column::wide("Selector", "string", docs::RS_SPEC_SELECTOR),
];

fn replica_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj),
        desired_replicas(obj).into(),
        int_at(obj, &["status", "replicas"]).into(),
        int_at(obj, &["status", "readyReplicas"]).into(),
        age(obj, now),
        names,
        images,
        format_label_selector(get(obj, &["spec", "selector"])).into(),
    ]
}

const STATEFUL_SET: &[Column] = &[
    Column::NAME,
    Column::new("Ready", "string", "Number of the pod with ready state"),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
];

fn stateful_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ready = format!(
        "{}/{}",
        int_at(obj, &["status", "readyReplicas"]),
        desired_replicas(obj)
    );
    let (names, images) = template_containers(obj);
    vec![name(obj), ready.into(), age(obj, now), names, images]
}

const DAEMON_SET: &[Column] = &[
    Column::NAME,
    Column::new("Desired", "integer", docs::DS_STATUS_DESIRED),
    Column::new("Current", "integer", docs::DS_STATUS_CURRENT),
    Column::new("Ready", "integer", docs::DS_STATUS_READY),
    Column::new("Up-to-date", "integer", docs::DS_STATUS_UPDATED),
    Column::new("Available", "integer", docs::DS_STATUS_AVAILABLE),
    Column::new("Node Selector", "string", docs::POD_SPEC_NODE_SELECTOR),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
    Column::wide("Selector", "string", docs::DS_SPEC_SELECTOR),
];

fn daemon_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    let status = |field: &str| Value::from(int_at(obj, &["status", field]));
    vec![
        name(obj),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(map_at(obj, &["spec", "template", "spec", "nodeSelector"])).into(),
        age(obj, now),
        names,
        images,
        format_label_selector(get(obj, &["spec", "selector"])).into(),
    ]
}

const CONTROLLER_REVISION: &[Column] = &[
    Column::NAME,
    Column::new("Controller", "string", "Controller of the object"),
    Column::new("Revision", "string", docs::CONTROLLER_REVISION_REVISION),
    Column::AGE,
];

fn controller_revision(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        controller_name(obj).into(),
        int_at(obj, &["revision"]).into(),
        age(obj, now),
    ]
}

/// "<kind>.<group>/<name>" of the controlling owner, lower-cased kind and group; "<none>" without one.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| get(r, &["controller"]).and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_owned();
    };
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    let group = api_group(str_at(owner, &["apiVersion"])).unwrap_or("");
    let group_kind = match (kind, group) {
        ("", "") => return owner_name.to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, group) => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::{Value, json};

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "sidecar", "image": "envoy:v1"}]}})
    }

    #[test]
    fn deployment() {
        assert_eq!(
            headers("apps", "Deployment"),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers*",
                "Images*",
                "Selector*"
            ]
        );
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2024-04-30T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "Deployment", &d),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("27h"),
                json!("web,sidecar"),
                json!("nginx:1.25,envoy:v1"),
                json!("app=web")
            ]
        );
        assert_eq!(
            cells("apps", "Deployment", &json!({})),
            [
                json!(""),
                json!("0/1"),
                json!(0),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("")
            ]
        );
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
        assert_eq!(cells("apps", "Deployment", &bad)[7], json!("<invalid>"));
    }

    #[test]
    fn replica_set() {
        assert_eq!(
            headers("apps", "ReplicaSet"),
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
        let rs = json!({"metadata": {"name": "web-7d4b9c", "creationTimestamp": "2024-05-01T11:58:00Z"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}}, "template": template()},
            "status": {"replicas": 0}});
        assert_eq!(
            cells("apps", "ReplicaSet", &rs),
            [
                json!("web-7d4b9c"),
                json!(0),
                json!(0),
                json!(0),
                json!("2m"),
                json!("web,sidecar"),
                json!("nginx:1.25,envoy:v1"),
                json!("app=web,pod-template-hash=7d4b9c")
            ]
        );
        assert_eq!(cells("apps", "ReplicaSet", &json!({}))[7], json!("<none>"));
    }

    #[test]
    fn stateful_set() {
        assert_eq!(
            headers("apps", "StatefulSet"),
            ["Name", "Ready", "Age", "Containers*", "Images*"]
        );
        let s = json!({"metadata": {"name": "db", "creationTimestamp": "2024-05-01T09:30:00Z"},
            "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 3}});
        assert_eq!(
            cells("apps", "StatefulSet", &s),
            [
                json!("db"),
                json!("3/3"),
                json!("150m"),
                json!("web,sidecar"),
                json!("nginx:1.25,envoy:v1")
            ]
        );
    }

    #[test]
    fn daemon_set() {
        assert_eq!(
            headers("apps", "DaemonSet"),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers*",
                "Images*",
                "Selector*"
            ]
        );
        let ds = json!({"metadata": {"name": "kube-proxy", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                           "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.33.1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells("apps", "DaemonSet", &ds),
            [
                json!("kube-proxy"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("30d"),
                json!("kube-proxy"),
                json!("registry.k8s.io/kube-proxy:v1.33.1"),
                json!("k8s-app=kube-proxy")
            ]
        );
    }

    #[test]
    fn controller_revision() {
        assert_eq!(
            headers("apps", "ControllerRevision"),
            ["Name", "Controller", "Revision", "Age"]
        );
        let cr = json!({"metadata": {"name": "db-5f8c", "creationTimestamp": "2024-05-01T11:00:00Z",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "x"},
                                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]},
            "revision": 2});
        assert_eq!(
            cells("apps", "ControllerRevision", &cr),
            [
                json!("db-5f8c"),
                json!("statefulset.apps/db"),
                json!(2),
                json!("60m")
            ]
        );
        let core_owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": true}]}});
        assert_eq!(
            cells("apps", "ControllerRevision", &core_owner)[1],
            json!("pod/p")
        );
        assert_eq!(
            cells("apps", "ControllerRevision", &json!({}))[1..3],
            [json!("<none>"), json!(0)]
        );
    }
}
