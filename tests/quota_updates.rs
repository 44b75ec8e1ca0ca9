//! ResourceQuota charged on updates, as upstream's quota admission evaluates them: a Service
//! patched from ClusterIP to NodePort is charged `services.nodeports` (and a second one refused
//! with upstream's 403 text), and a bound claim grown beyond a `requests.storage` quota is
//! refused, charged only by what it grows.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

const WAIT: Duration = Duration::from_secs(90);

fn apply(c: &Cluster, v: &Value) -> String {
    c.apply(KUBECTL_NEW, &v.to_string())
}

fn used(c: &Cluster, quota: &str, resource: &str) -> Option<String> {
    let q = c.json(&["get", "quota", quota]);
    q.pointer("/status/used")
        .and_then(|u| u.get(resource))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn wait_used(c: &Cluster, quota: &str, resource: &str, want: &str) {
    wait_for(
        &format!("quota {quota} to show {resource} used {want}"),
        WAIT,
        || (used(c, quota, resource).as_deref() == Some(want)).then_some(()),
    );
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
}

const TO_NODEPORT: &str = r#"{"spec":{"type":"NodePort"}}"#;

#[test]
fn service_patched_to_node_port_is_charged_and_refused_over_quota() {
    let c = Cluster::start_with("quota-upd-svc", &["--hollow-nodes", "1"]);
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "ports"},
                "spec": {"hard": {"services.nodeports": "1", "services.loadbalancers": "0"}}}),
    );
    wait_used(&c, "ports", "services.nodeports", "0");
    apply(&c, &service("one"));
    apply(&c, &service("two"));

    // A change that adds nothing is not refused, even with loadbalancers at 0.
    c.ok(&["label", "service", "one", "tier=web"]);

    c.ok(&["patch", "service", "one", "-p", TO_NODEPORT]);
    assert_eq!(
        used(&c, "ports", "services.nodeports").as_deref(),
        Some("1")
    );
    let svc = c.json(&["get", "service", "one"]);
    assert_eq!(svc["spec"]["type"], "NodePort");

    let err = c.fails(&["patch", "service", "two", "-p", TO_NODEPORT]);
    assert!(
        err.contains(
            "services \"two\" is forbidden: exceeded quota: ports, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"
        ),
        "{err}"
    );
    let svc = c.json(&["get", "service", "two"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");

    // To LoadBalancer: refused by services.loadbalancers=0 (the nodeport is already held).
    let err = c.fails(&[
        "patch",
        "service",
        "one",
        "-p",
        r#"{"spec":{"type":"LoadBalancer"}}"#,
    ]);
    assert!(
        err.contains("exceeded quota: ports, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0"),
        "{err}"
    );

    // Back to ClusterIP: the port is given back (the controller recounts), so two fits.
    c.ok(&["patch", "service", "one", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    wait_used(&c, "ports", "services.nodeports", "0");
    c.ok(&["patch", "service", "two", "-p", TO_NODEPORT]);
    assert_eq!(
        used(&c, "ports", "services.nodeports").as_deref(),
        Some("1")
    );
}

#[test]
fn claim_grown_beyond_storage_quota_is_refused() {
    let c = Cluster::start_with("quota-upd-pvc", &["--hollow-nodes", "1"]);
    apply(
        &c,
        &json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "expandable"},
                "provisioner": "kubernetes.io/no-provisioner", "allowVolumeExpansion": true,
                "volumeBindingMode": "Immediate"}),
    );
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
                "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": "expandable", "hostPath": {"path": "/tmp/kaji-quota-upd-pv1"}}}),
    );
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "storage"},
                "spec": {"hard": {"requests.storage": "2Gi"}}}),
    );
    wait_used(&c, "storage", "requests.storage", "0");
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "expandable",
                         "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    assert_eq!(
        used(&c, "storage", "requests.storage").as_deref(),
        Some("1Gi")
    );
    wait_for("the claim to be Bound", WAIT, || {
        (c.json(&["get", "pvc", "data"])["status"]["phase"] == "Bound").then_some(())
    });

    let grow =
        |size: &str| format!(r#"{{"spec":{{"resources":{{"requests":{{"storage":"{size}"}}}}}}}}"#);
    let err = c.fails(&["patch", "pvc", "data", "-p", &grow("3Gi")]);
    assert!(
        err.contains(
            "persistentvolumeclaims \"data\" is forbidden: exceeded quota: storage, requested: requests.storage=2Gi, used: requests.storage=1Gi, limited: requests.storage=2Gi"
        ),
        "{err}"
    );
    let pvc = c.json(&["get", "pvc", "data"]);
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");

    // Growing within the quota is charged the difference only.
    c.ok(&["patch", "pvc", "data", "-p", &grow("2Gi")]);
    assert_eq!(
        used(&c, "storage", "requests.storage").as_deref(),
        Some("2Gi")
    );
}
