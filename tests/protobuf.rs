//! End-to-end tests (protobuf): stock kubectl 1.33's typed commands send their request bodies as
//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`); the objects they create must read
//! back as if they had been sent as JSON.
mod support;

use serde_json::json;
use support::Cluster;

#[test]
fn typed_creates_from_kubectl_1_33() {
    let c = Cluster::start("protobuf");

    assert_eq!(c.ok(&["create", "deployment", "web", "--image=nginx:1.16", "--replicas=2"]), "deployment.apps/web created\n");
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(d["spec"]["template"]["metadata"]["labels"], json!({"app": "web"}));
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx:1.16");
    assert_eq!(container["resources"], json!({}));
    // Defaults the server applies to what the protobuf body left out.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({"maxUnavailable": "25%", "maxSurge": "25%"}));
    assert!(d["metadata"]["creationTimestamp"].is_string(), "{d}");

    // --replicas=0 is a pointer set to zero: it must survive (not be taken for "absent").
    c.ok(&["create", "deployment", "idle", "--image=nginx:1.16", "--replicas=0"]);
    assert_eq!(c.json(&["get", "deployment", "idle"])["spec"]["replicas"], 0);

    assert_eq!(c.ok(&["create", "secret", "generic", "s", "--from-literal=a=b"]), "secret/s created\n");
    let s = c.json(&["get", "secret", "s"]);
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"], json!({"a": "Yg=="}));

    assert_eq!(c.ok(&["create", "configmap", "c", "--from-literal=x=y"]), "configmap/c created\n");
    assert_eq!(c.json(&["get", "configmap", "c"])["data"], json!({"x": "y"}));

    assert_eq!(c.ok(&["create", "namespace", "n1"]), "namespace/n1 created\n");
    let n = c.json(&["get", "namespace", "n1"]);
    assert_eq!(n["metadata"]["name"], "n1");
    assert_eq!(n["status"]["phase"], "Active");

    assert_eq!(c.ok(&["create", "service", "clusterip", "s1", "--tcp=80:8080"]), "service/s1 created\n");
    let svc = c.json(&["get", "service", "s1"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"], json!({"app": "s1"}));
    assert_eq!(svc["spec"]["ports"][0]["name"], "80-8080");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()), "{svc}");

    // A namespaced create into the new namespace, and an error from the server still reads well.
    c.ok(&["create", "configmap", "c", "--from-literal=x=y", "-n", "n1"]);
    let err = c.fails(&["create", "configmap", "c", "--from-literal=x=z"]);
    assert_eq!(err.trim_end(), r#"error: failed to create configmap: configmaps "c" already exists"#);
}
