//! The cluster controllers end to end, with stock kubectl against `kaji server`: garbage
//! collection (background, foreground, orphan, dangling owners), namespace deletion, the default
//! service account, Endpoints and EndpointSlices following pods, hollow nodes and node failure
//! (NotReady/Unknown, the unreachable taint, taint-based eviction).
//!
//! Owners and dependents are made by hand (a ReplicaSet with 0 replicas owning pods and
//! ConfigMaps it does not select), and the tests bind pods to hollow nodes through pods/binding
//! themselves, so they run without the scheduler (`--disable-scheduler`) to stay in control of
//! placement.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn apply(c: &Cluster, v: &Value) -> String {
    c.apply(KUBECTL_NEW, &v.to_string())
}

/// The object as JSON, or None if kubectl says it does not exist.
fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = c.kubectl(&a);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NotFound") || err.contains("not found"), "kubectl {a:?}: {err}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("kubectl printed JSON"))
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// A ReplicaSet that selects nothing it owns, so no ReplicaSet controller touches its dependents.
fn owner(c: &Cluster, ns: &str, name: &str) -> String {
    apply(
        c,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"owner": name}},
                "template": {"metadata": {"labels": {"owner": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    );
    let rs = get(c, &["-n", ns, "get", "replicaset", name]).expect("owner exists");
    s(&rs, "/metadata/uid").to_string()
}

fn owner_ref(name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "blockOwnerDeletion": block})
}

fn dependent_pod(c: &Cluster, ns: &str, name: &str, owners: Value, finalizers: Value) {
    apply(
        c,
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"dependent": "yes"}, "ownerReferences": owners, "finalizers": finalizers},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    );
}

fn dependent_configmap(c: &Cluster, ns: &str, name: &str, owners: Value) {
    apply(
        c,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "ownerReferences": owners}, "data": {"k": "v"}}),
    );
}

fn wait_gone(c: &Cluster, args: &[&str]) {
    wait_for(&format!("{args:?} to be gone"), WAIT, || get(c, args).is_none().then_some(()));
}

#[test]
fn background_cascading_delete_and_dangling_owners() {
    let c = Cluster::start_with("gc-background", &["--disable-scheduler"]);
    let uid = owner(&c, "default", "web");
    dependent_pod(&c, "default", "web-a", json!([owner_ref("web", &uid, true)]), json!([]));
    dependent_pod(&c, "default", "web-b", json!([owner_ref("web", &uid, false)]), json!([]));
    dependent_configmap(&c, "default", "web-config", json!([owner_ref("web", &uid, false)]));
    // A dependent of an owner that never existed (its uid is unknown) is collected too.
    dependent_configmap(&c, "default", "stray", json!([owner_ref("ghost", "0b7a7a3c-0000-4000-8000-000000000000", false)]));
    // One owner gone, one alive: only the reference to the gone owner is removed.
    let keeper = owner(&c, "default", "keeper");
    dependent_configmap(
        &c,
        "default",
        "shared",
        json!([owner_ref("keeper", &keeper, false), owner_ref("ghost", "0b7a7a3c-0000-4000-8000-000000000001", false)]),
    );
    wait_gone(&c, &["get", "configmap", "stray"]);
    wait_for("the dangling reference to be removed", WAIT, || {
        let cm = get(&c, &["get", "configmap", "shared"]).expect("shared configmap stays");
        (cm.pointer("/metadata/ownerReferences").and_then(Value::as_array).map(Vec::len) == Some(1)).then_some(())
    });
    // Dependents survive while the owner lives.
    assert!(get(&c, &["get", "pod", "web-a"]).is_some());
    c.ok(&["delete", "replicaset", "web"]);
    wait_gone(&c, &["get", "pod", "web-a"]);
    wait_gone(&c, &["get", "pod", "web-b"]);
    wait_gone(&c, &["get", "configmap", "web-config"]);
    assert!(get(&c, &["get", "configmap", "shared"]).is_some(), "a dependent with a live owner stays");
}

#[test]
fn foreground_delete_waits_for_blocking_dependents() {
    let c = Cluster::start_with("gc-foreground", &["--disable-scheduler"]);
    let uid = owner(&c, "default", "front");
    // The blocking dependent holds its own finalizer, so the order can be watched.
    dependent_pod(&c, "default", "front-a", json!([owner_ref("front", &uid, true)]), json!(["kaji.test/hold"]));
    dependent_configmap(&c, "default", "front-config", json!([owner_ref("front", &uid, true)]));
    c.ok(&["delete", "replicaset", "front", "--cascade=foreground", "--wait=false"]);
    wait_for("the blocking dependent to be deleted first", WAIT, || {
        let pod = get(&c, &["get", "pod", "front-a"])?;
        pod.pointer("/metadata/deletionTimestamp").is_some().then_some(())
    });
    wait_gone(&c, &["get", "configmap", "front-config"]);
    let rs = get(&c, &["get", "replicaset", "front"]).expect("the owner waits for its blocking dependents");
    assert!(rs.pointer("/metadata/deletionTimestamp").is_some());
    assert!(rs["metadata"]["finalizers"].as_array().is_some_and(|f| f.contains(&json!("foregroundDeletion"))), "{rs}");
    c.ok(&["patch", "pod", "front-a", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    wait_gone(&c, &["get", "pod", "front-a"]);
    wait_gone(&c, &["get", "replicaset", "front"]);
}

#[test]
fn orphan_delete_keeps_dependents_without_the_reference() {
    let c = Cluster::start_with("gc-orphan", &["--disable-scheduler"]);
    let uid = owner(&c, "default", "lonely");
    dependent_pod(&c, "default", "lonely-a", json!([owner_ref("lonely", &uid, true)]), json!([]));
    dependent_configmap(&c, "default", "lonely-config", json!([owner_ref("lonely", &uid, false)]));
    c.ok(&["delete", "replicaset", "lonely", "--cascade=orphan"]);
    wait_gone(&c, &["get", "replicaset", "lonely"]);
    for args in [["get", "pod", "lonely-a"], ["get", "configmap", "lonely-config"]] {
        let dep = get(&c, &args).expect("orphaned dependents stay");
        assert!(dep.pointer("/metadata/ownerReferences").is_none(), "reference to the owner removed: {dep}");
        assert!(dep.pointer("/metadata/deletionTimestamp").is_none());
    }
}

#[test]
fn namespace_deletion_empties_then_removes_it_and_default_service_accounts_exist() {
    let c = Cluster::start_with("namespace", &["--disable-scheduler"]);
    wait_for("the default service account in default", WAIT, || get(&c, &["-n", "default", "get", "serviceaccount", "default"]));
    wait_for("the default service account in kube-system", WAIT, || get(&c, &["-n", "kube-system", "get", "serviceaccount", "default"]));
    c.ok(&["create", "namespace", "doomed"]);
    wait_for("the default service account in a new namespace", WAIT, || get(&c, &["-n", "doomed", "get", "serviceaccount", "default"]));
    // A deleted default service account comes back.
    c.ok(&["-n", "doomed", "delete", "serviceaccount", "default"]);
    wait_for("the default service account to be made again", WAIT, || get(&c, &["-n", "doomed", "get", "serviceaccount", "default"]));
    c.ok(&["-n", "doomed", "create", "configmap", "cfg", "--from-literal=a=b"]);
    c.ok(&["-n", "doomed", "create", "secret", "generic", "sec", "--from-literal=a=b"]);
    c.ok(&["-n", "doomed", "create", "service", "clusterip", "svc", "--tcp=80:8080"]);
    c.ok(&["-n", "doomed", "create", "deployment", "dep", "--image=nginx"]);
    c.ok(&["-n", "doomed", "run", "pod", "--image=nginx"]);
    // A configmap with a finalizer holds the namespace in Terminating until it is released.
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["kaji.test/hold"]}}),
    );
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    wait_for("the namespace to report content remaining", WAIT, || {
        let ns = get(&c, &["get", "namespace", "doomed"])?;
        let conds = ns.pointer("/status/conditions")?.as_array()?.clone();
        let remaining = conds.iter().any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True");
        (s(&ns, "/status/phase") == "Terminating" && remaining).then_some(())
    });
    for kind in ["configmap/cfg", "secret/sec", "service/svc", "deployment/dep", "pod/pod"] {
        wait_gone(&c, &["-n", "doomed", "get", kind]);
    }
    // New objects are refused in a terminating namespace.
    assert!(c.kubectl(&["-n", "doomed", "create", "configmap", "late"]).status.code() != Some(0));
    c.ok(&["-n", "doomed", "patch", "configmap", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    wait_gone(&c, &["get", "namespace", "doomed"]);
}

fn bind(c: &Cluster, ns: &str, pod: &str, node: &str) {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    c.ok_with(KUBECTL_NEW, &["create", "--raw", &format!("/api/v1/namespaces/{ns}/pods/{pod}/binding"), "-f", "-"], Some(&binding.to_string()));
}

fn web_pod(c: &Cluster, name: &str, node: &str) {
    apply(
        c,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"name": "http-port", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]}]}}),
    );
    bind(c, "default", name, node);
}

fn running_ip(c: &Cluster, name: &str) -> String {
    wait_for(&format!("pod {name} Running and Ready"), WAIT, || {
        let p = get(c, &["get", "pod", name])?;
        let ready = p.pointer("/status/conditions")?.as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        (s(&p, "/status/phase") == "Running" && ready).then(|| s(&p, "/status/podIP").to_string())
    })
}

fn addresses(ep: &Value, which: &str) -> Vec<String> {
    let mut out: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[which].as_array().cloned().unwrap_or_default())
        .map(|a| a["ip"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn endpoints_follow_pods_on_hollow_nodes() {
    let c = Cluster::start_with("endpoints", &["--disable-scheduler", "--hollow-nodes", "2"]);
    wait_for("hollow nodes registered", WAIT, || get(&c, &["get", "node", "hollow-node-1"]));
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http-port"}, {"name": "metrics", "port": 9090, "targetPort": 9090}]}}),
    );
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-all"},
            "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": true, "ports": [{"name": "http", "port": 80, "targetPort": "http-port"}]}}),
    );
    // A Service without a selector keeps its hand-made Endpoints.
    apply(&c, &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "external"}, "spec": {"ports": [{"port": 5432}]}}));
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]}),
    );
    web_pod(&c, "web-1", "hollow-node-0");
    web_pod(&c, "web-2", "hollow-node-1");
    let ip1 = running_ip(&c, "web-1");
    let ip2 = running_ip(&c, "web-2");
    let want = sorted(vec![ip1.clone(), ip2.clone()]);
    let ep = wait_for("both pods in the endpoints", WAIT, || {
        let ep = get(&c, &["get", "endpoints", "web"])?;
        (addresses(&ep, "addresses") == want).then_some(ep)
    });
    let subset = &ep["subsets"][0];
    let mut ports: Vec<(String, i64)> =
        subset["ports"].as_array().expect("ports").iter().map(|p| (s(p, "/name").to_string(), p["port"].as_i64().unwrap_or(0))).collect();
    ports.sort();
    assert_eq!(ports, vec![("http".to_string(), 8080), ("metrics".to_string(), 9090)], "ports resolved by name: {ep}");
    let a = subset["addresses"].as_array().expect("addresses").iter().find(|a| a["ip"] == json!(ip1)).expect("web-1 address");
    assert_eq!(s(a, "/nodeName"), "hollow-node-0");
    assert_eq!(s(a, "/targetRef/kind"), "Pod");
    assert_eq!(s(a, "/targetRef/name"), "web-1");
    assert_eq!(s(&ep, "/metadata/labels/tier"), "front");

    // EndpointSlices, labelled and managed as upstream.
    let slices = wait_for("an EndpointSlice with both pods", WAIT, || {
        let list = get(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web"])?;
        let items = list["items"].as_array()?.clone();
        let ips: Vec<String> =
            items.iter().flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default()).map(|e| s(&e, "/addresses/0").to_string()).collect();
        (sorted(ips) == want).then_some(items)
    });
    assert_eq!(s(&slices[0], "/metadata/labels/endpointslice.kubernetes.io~1managed-by"), "endpointslice-controller.k8s.io");
    assert_eq!(s(&slices[0], "/metadata/ownerReferences/0/kind"), "Service");
    assert_eq!(s(&slices[0], "/addressType"), "IPv4");

    // A pod turning not ready moves to notReadyAddresses (but stays ready where not-ready
    // addresses are published). Its hollow kubelet reports it not Ready as for a failing
    // readiness probe (a status patched by hand would be overwritten by the kubelet's view).
    c.ok(&["annotate", "pod", "web-2", "kaji.io/hollow-ready=false"]);
    wait_for("web-2 not ready in the endpoints", WAIT, || {
        let ep = get(&c, &["get", "endpoints", "web"])?;
        (addresses(&ep, "addresses") == vec![ip1.clone()] && addresses(&ep, "notReadyAddresses") == vec![ip2.clone()]).then_some(())
    });
    wait_for("web-2 not ready in the slice", WAIT, || {
        let list = get(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web"])?;
        let eps: Vec<Value> = list["items"].as_array()?.iter().flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default()).collect();
        eps.iter().any(|e| s(e, "/addresses/0") == ip2 && e.pointer("/conditions/ready") == Some(&json!(false))).then_some(())
    });
    let all = get(&c, &["get", "endpoints", "web-all"]).expect("web-all endpoints");
    assert_eq!(addresses(&all, "addresses"), want, "publishNotReadyAddresses lists every pod as ready: {all}");

    // A deleted pod leaves (the hollow node removes it at once).
    c.ok(&["delete", "pod", "web-1"]);
    wait_for("web-1 gone from the endpoints", WAIT, || {
        let ep = get(&c, &["get", "endpoints", "web"])?;
        addresses(&ep, "addresses").is_empty().then_some(())
    });
    let ext = get(&c, &["get", "endpoints", "external"]).expect("hand-made endpoints stay");
    assert_eq!(addresses(&ext, "addresses"), vec!["192.0.2.10".to_string()]);
    // A deleted Service takes its Endpoints and EndpointSlices with it.
    c.ok(&["delete", "service", "web"]);
    wait_gone(&c, &["get", "endpoints", "web"]);
    wait_for("the slices of a deleted service to go", WAIT, || {
        let list = get(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web"])?;
        list["items"].as_array()?.is_empty().then_some(())
    });
}

fn node_ready(c: &Cluster, node: &str) -> Option<(String, String)> {
    let n = get(c, &["get", "node", node])?;
    let cond = n.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
    Some((s(&cond, "/status").to_string(), s(&cond, "/reason").to_string()))
}

fn taints(c: &Cluster, node: &str) -> Vec<String> {
    let n = get(c, &["get", "node", node]).expect("node");
    n.pointer("/spec/taints").and_then(Value::as_array).into_iter().flatten().map(|t| format!("{}:{}", s(t, "/key"), s(t, "/effect"))).collect()
}

#[test]
fn hollow_node_failure_taints_and_evicts() {
    let c = Cluster::start_with(
        "node-failure",
        &["--disable-scheduler", "--hollow-nodes", "3", "--node-monitor-grace-period", "3s", "--default-unreachable-toleration-seconds", "4"],
    );
    // Hollow nodes are Ready in `kubectl get nodes`, and say they are a simulation.
    wait_for("three Ready hollow nodes", WAIT, || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        (out.lines().filter(|l| l.split_whitespace().nth(1) == Some("Ready")).count() == 3).then_some(())
    });
    let n = get(&c, &["get", "node", "hollow-node-0"]).expect("node");
    assert_eq!(s(&n, "/metadata/labels/kaji.io~1hollow"), "true");
    assert!(s(&n, "/status/nodeInfo/osImage").contains("hollow"));
    assert_eq!(s(&n, "/status/capacity/cpu"), "4");
    assert_eq!(s(&n, "/status/allocatable/pods"), "110");
    assert!(!s(&n, "/spec/podCIDR").is_empty());
    assert!(get(&c, &["-n", "kube-node-lease", "get", "lease", "hollow-node-0"]).is_some(), "heartbeats through a Lease");

    apply(&c, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "victim"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}));
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stubborn"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}],
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}}),
    );
    bind(&c, "default", "victim", "hollow-node-0");
    bind(&c, "default", "stubborn", "hollow-node-0");
    let ip = running_ip(&c, "victim");
    assert!(ip.starts_with("10.244.0."), "a pod IP from the node's podCIDR: {ip}");
    let p = get(&c, &["get", "pod", "victim"]).expect("pod");
    assert!(s(&p, "/status/containerStatuses/0/containerID").starts_with("hollow://"));
    running_ip(&c, "stubborn");

    // The node fails: no more heartbeats.
    c.ok(&["annotate", "node", "hollow-node-0", "kaji.io/hollow-stop-heartbeat=true"]);
    wait_for("hollow-node-0 Ready=Unknown", WAIT, || {
        (node_ready(&c, "hollow-node-0")? == ("Unknown".to_string(), "NodeStatusUnknown".to_string())).then_some(())
    });
    let out = c.ok(&["get", "node", "hollow-node-0", "--no-headers"]);
    assert!(out.contains("NotReady"), "{out}");
    wait_for("the unreachable taints", WAIT, || {
        let t = taints(&c, "hollow-node-0");
        (t.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()) && t.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()))
            .then_some(())
    });
    // The other nodes stay Ready.
    assert_eq!(node_ready(&c, "hollow-node-1").map(|r| r.0), Some("True".to_string()));
    // The pod goes after its 4 s toleration (Terminating: its kubelet is gone); the pod that
    // tolerates the taint forever stays.
    wait_for("the victim evicted", WAIT, || {
        get(&c, &["get", "pod", "victim"]).is_none_or(|p| p.pointer("/metadata/deletionTimestamp").is_some()).then_some(())
    });
    let st = get(&c, &["get", "pod", "stubborn"]).expect("tolerating pod stays");
    assert!(st.pointer("/metadata/deletionTimestamp").is_none());

    // The node comes back: Ready, taints gone, and the evicted pod finally removed.
    c.ok(&["annotate", "node", "hollow-node-0", "kaji.io/hollow-stop-heartbeat-"]);
    wait_for("hollow-node-0 Ready again", WAIT, || (node_ready(&c, "hollow-node-0")?.0 == "True").then_some(()));
    wait_for("the taints removed", WAIT, || taints(&c, "hollow-node-0").is_empty().then_some(()));
    wait_gone(&c, &["get", "pod", "victim"]);
}

/// Kills the agent process when the test ends, however it ends.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_hollow_agent_nodes_go_unknown() {
    let c = Cluster::start_with("agent-kill", &["--disable-scheduler", "--node-monitor-grace-period", "3s"]);
    let log = std::fs::File::create(c.data_dir().join("agent.log")).expect("agent log");
    let mut agent = Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["agent", "--hollow", "--nodes", "2", "--node-name-prefix", "agent-node", "--node-lease-duration-seconds", "2"])
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", c.port))
            .arg("--token-file")
            .arg(c.data_dir().join("token"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji agent"),
    );
    wait_for("both agent nodes Ready", WAIT, || {
        let ready = ["agent-node-0", "agent-node-1"].iter().all(|n| node_ready(&c, n).is_some_and(|r| r.0 == "True"));
        ready.then_some(())
    });
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    wait_for("both agent nodes Unknown and tainted", WAIT, || {
        let down = ["agent-node-0", "agent-node-1"].iter().all(|n| {
            node_ready(&c, n).is_some_and(|r| r.0 == "Unknown") && taints(&c, n).contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
        });
        down.then_some(())
    });
}

/// Seeds 001/002: a node dies, and the Deployment's pods are replaced on the nodes that are left.
/// Everything runs as in a real cluster here: controllers, scheduler and three hollow nodes.
#[test]
fn deployment_pods_move_off_a_failed_node() {
    let c = Cluster::start_with(
        "node-failover",
        &["--hollow-nodes", "3", "--node-monitor-grace-period", "3s", "--default-unreachable-toleration-seconds", "3"],
    );
    wait_for("three Ready hollow nodes", WAIT, || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        (out.lines().filter(|l| l.split_whitespace().nth(1) == Some("Ready")).count() == 3).then_some(())
    });
    apply(
        &c,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.16",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}),
    );
    // (node, terminating) of every pod of the Deployment.
    let placement = |c: &Cluster| -> Vec<(String, bool)> {
        let list = get(c, &["get", "pods", "-l", "app=web"]).expect("pod list");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (s(p, "/spec/nodeName").to_string(), p.pointer("/metadata/deletionTimestamp").is_some()))
            .collect()
    };
    let available = |c: &Cluster| {
        get(c, &["get", "deployment", "web"]).and_then(|d| d.pointer("/status/availableReplicas").and_then(Value::as_i64)).unwrap_or(0)
    };
    wait_for("6 pods available, spread over the nodes", WAIT, || (available(&c) == 6).then_some(()));
    let before = placement(&c);
    let victim = before.first().map(|(n, _)| n.clone()).expect("a pod");
    assert!(!victim.is_empty(), "pods are bound: {before:?}");
    let on_victim = before.iter().filter(|(n, _)| *n == victim).count();
    assert!(on_victim > 0 && on_victim < 6, "the scheduler spread the pods: {before:?}");

    c.ok(&["annotate", "node", &victim, "kaji.io/hollow-stop-heartbeat=true"]);
    wait_for("the dead node NotReady", WAIT, || {
        let out = c.ok(&["get", "node", &victim, "--no-headers"]);
        out.contains("NotReady").then_some(())
    });
    // Its pods are evicted after their 3 s toleration (they stay Terminating: their kubelet is
    // gone); the ReplicaSet replaces them, and the scheduler puts the replacements elsewhere.
    wait_for("6 live pods on the other nodes, all available", Duration::from_secs(60), || {
        let now = placement(&c);
        let live: Vec<&(String, bool)> = now.iter().filter(|(_, terminating)| !terminating).collect();
        let elsewhere = live.iter().filter(|(n, _)| !n.is_empty() && *n != victim).count();
        (live.len() == 6 && elsewhere == 6 && available(&c) == 6).then_some(())
    });
    let evicted = placement(&c).iter().filter(|(n, terminating)| *n == victim && *terminating).count();
    assert_eq!(evicted, on_victim, "the dead node's pods were evicted");
}

/// Open watches by `group/resource`, from the API server's own gauge
/// (`apiserver_longrunning_requests{verb="WATCH"}`).
fn open_watches(c: &Cluster) -> std::collections::BTreeMap<String, u64> {
    let metrics = c.ok(&["get", "--raw", "/metrics"]);
    let label = |line: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        line.split(&key).nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_string()
    };
    let mut out = std::collections::BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("apiserver_longrunning_requests{") && l.contains("verb=\"WATCH\"")) {
        let n: u64 = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        let key = format!("{}/{}", label(line, "group"), label(line, "resource"));
        *out.entry(key).or_insert(0) += n;
    }
    out
}

/// The controller manager opens one watch per kind, whatever number of its controllers read that
/// kind (they share one informer per kind, the garbage collector included), as the API server
/// counts them.
#[test]
fn controller_manager_opens_one_watch_per_kind() {
    let c = Cluster::start_with("cm-watches", &["--disable-controllers", "--disable-scheduler"]);
    let before = open_watches(&c);
    assert!(before.values().all(|n| *n == 0), "nothing watches before the controller manager starts: {before:?}");
    let log = std::fs::File::create(c.data_dir().join("controller-manager.log")).expect("log");
    let _cm = Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_kaji"))
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji controller-manager"),
    );
    // What the controllers read, and (through the garbage collector) every other listable kind.
    let expected = [
        "/pods", "/services", "/endpoints", "/nodes", "/namespaces", "/serviceaccounts", "/replicationcontrollers",
        "/persistentvolumes", "/persistentvolumeclaims", "/configmaps", "/secrets", "apps/replicasets", "apps/deployments",
        "discovery.k8s.io/endpointslices", "coordination.k8s.io/leases",
    ];
    assert_one_watch_per_kind(&c, "the controller manager's watches", &expected);
}

/// In `kaji server` the controller manager and the scheduler share the process's informers: the
/// kinds both read (pods, nodes, services, ReplicaSets, claims and volumes) are watched once for
/// the whole control plane, not once per component.
#[test]
fn server_control_plane_opens_one_watch_per_kind() {
    let c = Cluster::start_with("cp-watches", &[]);
    // The controllers' kinds, and what only the scheduler reads (StatefulSets are read by both).
    let expected = [
        "/pods", "/services", "/nodes", "/namespaces", "/persistentvolumes", "/persistentvolumeclaims",
        "apps/replicasets", "apps/statefulsets", "apps/deployments", "discovery.k8s.io/endpointslices",
        "scheduling.k8s.io/priorityclasses", "storage.k8s.io/storageclasses",
    ];
    assert_one_watch_per_kind(&c, "the control plane's watches", &expected);
}

/// Waits until every `expected` resource is watched, then asserts that no resource is watched
/// more than once.
fn assert_one_watch_per_kind(c: &Cluster, what: &str, expected: &[&str]) {
    let watches = wait_for(what, WAIT, || {
        let w = open_watches(c);
        expected.iter().all(|r| w.get(*r).copied().unwrap_or(0) >= 1).then_some(w)
    });
    let doubled: Vec<(&String, &u64)> = watches.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "more than one watch on {doubled:?}; all: {watches:?}");
}

/// The pod garbage collector (upstream podgc): terminated pods beyond
/// `--terminated-pod-gc-threshold` go, oldest first; a pod bound to a node that is deleted goes
/// once the node has been missing for the 40 s quarantine (and the next 20 s pass).
#[test]
fn pod_gc_deletes_terminated_pods_beyond_the_threshold_and_orphans_of_deleted_nodes() {
    let c = Cluster::start_with("podgc", &["--disable-scheduler", "--hollow-nodes", "2", "--terminated-pod-gc-threshold", "2"]);
    wait_for("hollow nodes registered", WAIT, || get(&c, &["get", "node", "hollow-node-1"]));
    // A running pod whose node is deleted (its quarantine runs while the rest of the test does).
    web_pod(&c, "orphan", "hollow-node-1");
    running_ip(&c, "orphan");
    c.ok(&["delete", "node", "hollow-node-1"]);
    // Four pods whose (simulated) containers exit 0 at once, created in name order.
    for name in ["done-1", "done-2", "done-3", "done-4"] {
        apply(
            &c,
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": {"kaji.io/hollow-exit-code": "0"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}),
        );
        bind(&c, "default", name, "hollow-node-0");
    }
    let names = |c: &Cluster| -> Option<Vec<String>> {
        let l = get(c, &["get", "pods"])?;
        Some(l["items"].as_array()?.iter().map(|p| s(p, "/metadata/name").to_string()).collect())
    };
    wait_for("the two oldest terminated pods collected", Duration::from_secs(60), || {
        names(&c).filter(|n| !n.iter().any(|n| n == "done-1" || n == "done-2"))
    });
    for name in ["done-3", "done-4"] {
        let p = get(&c, &["get", "pod", name]).expect("kept pod");
        assert_eq!(s(&p, "/status/phase"), "Succeeded");
    }
    wait_for("the orphaned pod deleted", Duration::from_secs(90), || {
        get(&c, &["get", "pod", "orphan"]).is_none().then_some(())
    });
    assert_eq!(names(&c).expect("pods"), ["done-3", "done-4"], "pods on existing nodes stay");
    let log = c.log();
    assert!(log.contains("found an orphaned pod assigned to a deleted node"), "{}", support::tail(&log, 30));
}
