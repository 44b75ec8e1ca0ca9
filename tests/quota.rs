//! ResourceQuota and LimitRange end to end, with stock kubectl against `kaji server` running the
//! controllers, the scheduler and two hollow nodes: a ReplicaSet held back by a quota of 2 pods
//! shows the ReplicaFailure condition (and FailedCreate events) and recovers once the quota is
//! raised; `kubectl get/describe quota` show used against hard; upstream's 403 texts for
//! `exceeded quota` and `failed quota`; object counts (`count/configmaps`); LimitRange defaults
//! applied to containers and its maximum refused; BestEffort and PriorityClass scopes.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

const WAIT: Duration = Duration::from_secs(90);

fn apply(c: &Cluster, v: &Value) -> String {
    c.apply(KUBECTL_NEW, &v.to_string())
}

fn used(c: &Cluster, ns: &str, quota: &str, resource: &str) -> Option<String> {
    let q = c.json(&["-n", ns, "get", "quota", quota]);
    q.pointer("/status/used")
        .and_then(|u| u.get(resource))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn wait_used(c: &Cluster, ns: &str, quota: &str, resource: &str, want: &str) {
    wait_for(
        &format!("quota {quota} to show {resource} used {want}"),
        WAIT,
        || (used(c, ns, quota, resource).as_deref() == Some(want)).then_some(()),
    );
}

fn failure(c: &Cluster, rs: &str) -> Option<Value> {
    let v = c.json(&["get", "rs", rs]);
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ReplicaFailure")
        .cloned()
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "resources": resources}]}})
}

#[test]
fn replicaset_limited_by_quota_shows_replica_failure_and_recovers() {
    let c = Cluster::start_with("quota-rs", &["--hollow-nodes", "2"]);
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"}, "spec": {"hard": {"pods": "2"}}}),
    );
    wait_used(&c, "default", "pods", "pods", "0");
    let described = c.ok(&["describe", "quota", "pods"]);
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["Resource", "Used", "Hard"]),
        "{described}"
    );
    assert!(rows.contains(&vec!["pods", "0", "2"]), "{described}");

    apply(
        &c,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]}}}}),
    );
    let deadline = std::time::Instant::now() + WAIT;
    let cond = loop {
        if let Some(cond) = failure(&c, "web") {
            break cond;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ReplicaFailure condition: {}\n{}\n{}",
            c.ok(&["get", "rs", "web", "-o", "yaml"]),
            c.ok(&["get", "quota", "pods", "-o", "yaml"]),
            c.ok(&["get", "events"])
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "FailedCreate");
    let msg = cond["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("pods \"web-"), "{msg}");
    assert!(
        msg.ends_with(
            "is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{msg}"
    );
    let events = c.ok(&["get", "events", "--field-selector", "reason=FailedCreate"]);
    assert!(events.contains("Error creating: pods \"web-"), "{events}");
    assert!(
        events.contains("is forbidden: exceeded quota: pods"),
        "{events}"
    );
    assert_eq!(c.json(&["get", "rs", "web"])["status"]["replicas"], 2);

    // kubectl get quota: used/hard.
    let got = c.ok(&["get", "quota"]);
    assert!(got.contains("pods: 2/2"), "{got}");
    // A pod of one's own is refused with upstream's text, and nothing is created.
    let err = c.fails(&["run", "extra", "--image", "registry.k8s.io/pause:3.10"]);
    assert!(
        err.contains("pods \"extra\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    assert!(!c.kubectl(&["get", "pod", "extra"]).status.success());

    // Raised: the third pod comes and the condition goes.
    c.ok(&[
        "patch",
        "quota",
        "pods",
        "-p",
        r#"{"spec":{"hard":{"pods":"3"}}}"#,
    ]);
    wait_for("the ReplicaSet to recover", WAIT, || {
        let v = c.json(&["get", "rs", "web"]);
        (v["status"]["replicas"] == 3 && failure(&c, "web").is_none()).then_some(())
    });
    wait_used(&c, "default", "pods", "pods", "3");

    // Deleted pods are given back promptly.
    c.ok(&["delete", "rs", "web", "--wait=false"]);
    wait_used(&c, "default", "pods", "pods", "0");
}

#[test]
fn quota_counts_objects_and_requires_compute_amounts() {
    let c = Cluster::start_with("quota-count", &["--hollow-nodes", "2"]);
    c.ok(&["create", "namespace", "team"]);
    // The root CA publisher puts kube-root-ca.crt in every new namespace: wait for it, so that
    // it is counted before the test fills the quota rather than refused by it.
    wait_for("kube-root-ca.crt in team", WAIT, || {
        c.kubectl(&["-n", "team", "get", "configmap", "kube-root-ca.crt"]).status.success().then_some(())
    });
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "objects", "namespace": "team"},
        "spec": {"hard": {"count/configmaps": "3", "secrets": "1", "count/deployments.apps": "1"}}}),
    );
    wait_for("the quota's status", WAIT, || {
        used(&c, "team", "objects", "secrets")
    });
    // Fill the configmap count to the limit, whatever the namespace holds already.
    let mut n = 0;
    while used(&c, "team", "objects", "count/configmaps").as_deref() != Some("3") {
        assert!(n < 3, "count/configmaps never reached 3");
        c.ok(&["-n", "team", "create", "configmap", &format!("cm{n}")]);
        n += 1;
    }
    let err = c.fails(&["-n", "team", "create", "configmap", "over"]);
    assert!(
        err.contains(
            "configmaps \"over\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"
        ),
        "{err}"
    );
    c.ok(&[
        "-n",
        "team",
        "create",
        "deployment",
        "d1",
        "--image",
        "registry.k8s.io/pause:3.10",
    ]);
    let err = c.fails(&[
        "-n",
        "team",
        "create",
        "deployment",
        "d2",
        "--image",
        "registry.k8s.io/pause:3.10",
    ]);
    assert!(err.contains("exceeded quota: objects, requested: count/deployments.apps=1, used: count/deployments.apps=1"), "{err}");
    // A deleted configmap is given back, so one more fits.
    c.ok(&["-n", "team", "delete", "configmap", "cm0"]);
    wait_used(&c, "team", "objects", "count/configmaps", "2");
    c.ok(&["-n", "team", "create", "configmap", "again"]);

    // Compute quota: containers must state what it limits.
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": "team"},
        "spec": {"hard": {"requests.cpu": "1", "limits.memory": "1Gi"}}}),
    );
    wait_for("the compute quota's status", WAIT, || {
        used(&c, "team", "compute", "limits.memory")
    });
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["-n", "team", "create", "-f", "-"],
        Some(&pod("bare", json!({})).to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: app; requests.cpu for: app"),
        "{err}"
    );
    let sized = pod(
        "sized",
        json!({"requests": {"cpu": "600m"}, "limits": {"memory": "512Mi"}}),
    );
    c.ok_with(
        KUBECTL_NEW,
        &["-n", "team", "create", "-f", "-"],
        Some(&sized.to_string()),
    );
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["-n", "team", "create", "-f", "-"],
        Some(
            &pod(
                "big",
                json!({"requests": {"cpu": "600m"}, "limits": {"memory": "512Mi"}}),
            )
            .to_string(),
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods \"big\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"),
        "{err}"
    );
    assert_eq!(
        used(&c, "team", "compute", "limits.memory").as_deref(),
        Some("512Mi")
    );
    // A deleted pod is given back.
    c.ok(&[
        "-n",
        "team",
        "delete",
        "pod",
        "sized",
        "--grace-period=0",
        "--force",
    ]);
    wait_used(&c, "team", "compute", "requests.cpu", "0");
}

#[test]
fn limit_range_defaults_containers_and_refuses_above_max() {
    let c = Cluster::start_with("quota-limits", &["--hollow-nodes", "2"]);
    // Validation: a default above the max is a 422 with upstream's cause.
    let bad = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bad"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "2"}}]}});
    let out = c.kubectl_with(KUBECTL_NEW, &["create", "-f", "-"], Some(&bad.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LimitRange \"bad\" is invalid"), "{err}");
    assert!(err.contains("spec.limits[0].default[cpu]: Invalid value: \"1\": default value 2 is greater than max value 1"), "{err}");

    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
        "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}}),
    );
    // Defaults: max defaults nothing here, default/defaultRequest fill what the container lacks.
    let lr = c.json(&["get", "limitrange", "limits"]);
    assert_eq!(
        lr.pointer("/spec/limits/0/default/cpu"),
        Some(&json!("500m"))
    );

    c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&pod("x", json!({"limits": {"memory": "256Mi"}})).to_string()),
    );
    let p = c.json(&["get", "pod", "x"]);
    let res = &p["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
    assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "64Mi"}));
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app"
    );

    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&pod("big", json!({"limits": {"cpu": "2"}})).to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
    assert!(!c.kubectl(&["get", "pod", "big"]).status.success());

    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "huge"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}});
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&claim.to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("persistentvolumeclaims \"huge\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 5Gi"),
        "{err}"
    );
}

#[test]
fn quota_scopes_select_best_effort_and_priority_class_pods() {
    let c = Cluster::start_with("quota-scopes", &["--hollow-nodes", "2"]);
    c.ok(&["create", "namespace", "scoped"]);
    c.ok(&["create", "priorityclass", "high", "--value", "1000"]);
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "besteffort", "namespace": "scoped"},
            "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}),
    );
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "high", "namespace": "scoped"},
            "spec": {"hard": {"pods": "0"}, "scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}),
    );
    wait_used(&c, "scoped", "besteffort", "pods", "0");
    wait_used(&c, "scoped", "high", "pods", "0");
    let create = |v: &Value| {
        c.kubectl_with(
            KUBECTL_NEW,
            &["-n", "scoped", "create", "-f", "-"],
            Some(&v.to_string()),
        )
    };
    assert!(create(&pod("be1", json!({}))).status.success());
    let out = create(&pod("be2", json!({})));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods \"be2\" is forbidden: exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
    // Not BestEffort: outside that quota's scope.
    assert!(
        create(&pod("burstable", json!({"requests": {"cpu": "100m"}})))
            .status
            .success()
    );
    let mut high = pod("important", json!({"requests": {"cpu": "100m"}}));
    high["spec"]["priorityClassName"] = json!("high");
    let out = create(&high);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pods \"important\" is forbidden: exceeded quota: high, requested: pods=1, used: pods=0, limited: pods=0"), "{err}");
    assert_eq!(
        used(&c, "scoped", "besteffort", "pods").as_deref(),
        Some("1")
    );
}
