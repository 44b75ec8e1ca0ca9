//! PodDisruptionBudgets end to end, with stock kubectl against `kaji server` running the
//! controllers, the scheduler and three hollow nodes: the disruption controller's status
//! (minAvailable as a number, maxUnavailable as a percentage of the Deployment's replicas), the
//! eviction subresource refusing with 429 what would break the budget, and `kubectl drain`
//! refused by a budget with 1 allowed disruption while another pod is down, then let through
//! once that pod is back.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn apply(c: &Cluster, v: &Value) -> String {
    c.apply(KUBECTL_NEW, &v.to_string())
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(-1)
}

fn pdb_status(c: &Cluster, name: &str) -> Value {
    c.json(&["get", "pdb", name])["status"].clone()
}

/// (currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed, condition status, reason).
fn counts(st: &Value) -> (i64, i64, i64, i64, String, String) {
    let cond = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| s(c, "/type") == "DisruptionAllowed")
        .cloned()
        .unwrap_or(Value::Null);
    (
        n(st, "/currentHealthy"),
        n(st, "/desiredHealthy"),
        n(st, "/expectedPods"),
        n(st, "/disruptionsAllowed"),
        s(&cond, "/status").to_string(),
        s(&cond, "/reason").to_string(),
    )
}

fn c6(a: i64, b: i64, c: i64, d: i64, st: &str, r: &str) -> (i64, i64, i64, i64, String, String) {
    (a, b, c, d, st.to_string(), r.to_string())
}

/// (name, node, ready) of the live pods of app=web.
fn web_pods(c: &Cluster) -> Vec<(String, String, bool)> {
    let list = c.json(&["get", "pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            (s(p, "/metadata/name").to_string(), s(p, "/spec/nodeName").to_string(), ready)
        })
        .collect()
}

#[test]
fn drain_is_refused_by_a_budget_with_one_disruption_allowed_while_another_pod_is_down() {
    let c = Cluster::start_with("pdb-drain", &["--hollow-nodes", "3", "--node-monitor-grace-period", "3s"]);
    wait_for("three Ready hollow nodes", WAIT, || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        (out.lines().filter(|l| l.split_whitespace().nth(1) == Some("Ready")).count() == 3).then_some(())
    });

    // Bad budgets: upstream's causes.
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["apply", "-f", "-"],
        Some(&json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "bad"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}).to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("minAvailable and maxUnavailable cannot be both set"), "{err}");
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["apply", "-f", "-"],
        Some(&json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "bad"},
            "spec": {"maxUnavailable": "150%", "selector": {"matchLabels": {"app": "web"}}}}).to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(r#"spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%"#), "{err}");

    // Three pods, one per node.
    apply(
        &c,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                        "containers": [{"name": "nginx", "image": "nginx:1.16"}]}}}}),
    );
    wait_for("three ready pods on three nodes", WAIT, || {
        let pods = web_pods(&c);
        let mut nodes: Vec<&str> = pods.iter().map(|p| p.1.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        (pods.len() == 3 && nodes.len() == 3 && pods.iter().all(|p| p.2)).then_some(())
    });

    // A percentage counts from the Deployment's replicas: 3 - ceil(50% of 3) = 1 must stay.
    apply(
        &c,
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "pct"},
            "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
    );
    wait_for("the percentage budget computed", WAIT, || {
        (counts(&pdb_status(&c, "pct")) == c6(3, 1, 3, 2, "True", "SufficientPods")).then_some(())
    });
    c.ok(&["delete", "pdb", "pct"]);

    apply(
        &c,
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}),
    );
    wait_for("one disruption allowed", WAIT, || {
        let st = pdb_status(&c, "web");
        (counts(&st) == c6(3, 2, 3, 1, "True", "SufficientPods") && n(&st, "/observedGeneration") == 1).then_some(())
    });
    let table = c.ok(&["get", "pdb", "web"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "2", "N/A", "1"], "{table}");

    // One pod goes down (its node stops heartbeating; the node lifecycle controller marks its
    // pods not Ready): no disruption is left.
    let pods = web_pods(&c);
    let (down_pod, down_node) = (pods[0].0.clone(), pods[0].1.clone());
    let (other_pod, other_node) = (pods[1].0.clone(), pods[1].1.clone());
    c.ok(&["annotate", "node", &down_node, "kaji.io/hollow-stop-heartbeat=true"]);
    wait_for("the pod on the dead node not ready", WAIT, || {
        web_pods(&c).iter().any(|p| p.0 == down_pod && !p.2).then_some(())
    });
    wait_for("no disruption allowed", WAIT, || {
        (counts(&pdb_status(&c, "web")) == c6(2, 2, 3, 0, "False", "InsufficientPods")).then_some(())
    });

    // An Eviction naming another pod than the URL: 400, as upstream.
    let wrong = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": down_pod, "namespace": "default"}});
    let path = c.data_dir().join("eviction-wrong.json");
    std::fs::write(&path, wrong.to_string()).expect("eviction body");
    let out = c.kubectl(&["create", "--raw", &format!("/api/v1/namespaces/default/pods/{other_pod}/eviction"), "-f", path.to_str().unwrap_or_default()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("name in URL does not match name in Eviction object"), "{err}");

    // The eviction subresource says why, with a 429.
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": other_pod, "namespace": "default"}});
    let path = c.data_dir().join("eviction.json");
    std::fs::write(&path, eviction.to_string()).expect("eviction body");
    let out = c.kubectl(&["create", "--raw", &format!("/api/v1/namespaces/default/pods/{other_pod}/eviction"), "-f", path.to_str().unwrap_or_default()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the eviction went through");
    assert!(err.contains("Cannot evict pod as it would violate the pod's disruption budget."), "{err}");
    assert!(err.contains("TooManyRequests") || err.contains("429"), "{err}");

    // kubectl drain of another pod's node is refused and leaves the pod alone.
    let out = c.kubectl(&["drain", &other_node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout", "8s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("Cannot evict pod as it would violate the pod's disruption budget."), "{err}");
    assert!(web_pods(&c).iter().any(|p| p.0 == other_pod && p.2), "the pod stays");
    assert_eq!(n(&pdb_status(&c, "web"), "/disruptionsAllowed"), 0);

    // The pod comes back: the drain goes through, using up the one disruption.
    c.ok(&["annotate", "node", &down_node, "kaji.io/hollow-stop-heartbeat-"]);
    wait_for("the node Ready again", WAIT, || {
        let out = c.ok(&["get", "node", &down_node, "--no-headers"]);
        (out.split_whitespace().nth(1) == Some("Ready")).then_some(())
    });
    // The returning hollow kubelet reports its pod Ready again, as a kubelet does.
    wait_for("one disruption allowed again", WAIT, || {
        (counts(&pdb_status(&c, "web")) == c6(3, 2, 3, 1, "True", "SufficientPods")).then_some(())
    });
    let out = c.ok(&["drain", &other_node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout", "60s"]);
    assert!(out.contains(&format!("pod/{other_pod} evicted")), "{out}");
    assert!(out.contains("drained"), "{out}");
    // The replacement cannot go anywhere (cordoned node, anti-affinity): two healthy pods, no
    // disruption left, and the evicted pod no longer noted once it is gone.
    wait_for("the budget used up", WAIT, || {
        let st = pdb_status(&c, "web");
        (counts(&st) == c6(2, 2, 3, 0, "False", "InsufficientPods")
            && st.get("disruptedPods").is_none_or(|d| d.as_object().is_none_or(|m| m.is_empty())))
        .then_some(())
    });
    let third_node = pods[2].1.clone();
    let out = c.kubectl(&["drain", &third_node, "--ignore-daemonsets", "--timeout", "6s"]);
    assert!(!out.status.success(), "a second drain went through");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Cannot evict pod as it would violate the pod's disruption budget."), "{err}");
}
