//! The scheduler end to end: `kaji server` with hollow nodes, driven by stock kubectl 1.33.
//! Each test shows one placement rule; pending pods are checked through `kubectl describe`
//! (the FailedScheduling event) with upstream's message text.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Cluster, wait_for};

const T: Duration = Duration::from_secs(30);

fn start(name: &str, nodes: usize, extra: &[&str]) -> (Cluster, Vec<String>) {
    let n = nodes.to_string();
    let mut flags = vec![
        "--hollow-nodes",
        n.as_str(),
        "--node-monitor-grace-period",
        "10m",
    ];
    flags.extend_from_slice(extra);
    let c = Cluster::start_with(name, &flags);
    let names = wait_for("hollow nodes to register", T, || {
        let v = c.json(&["get", "nodes"]);
        let names: Vec<String> = v["items"]
            .as_array()?
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect();
        (names.len() == nodes).then_some(names)
    });
    let mut names = names;
    names.sort();
    (c, names)
}

fn pod(name: &str, labels: Value, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": spec.get("resources").cloned().unwrap_or(json!({}))}]);
    if let Some(ports) = spec.get("ports").cloned() {
        spec["containers"][0]["ports"] = ports;
    }
    spec.as_object_mut().map(|m| {
        m.remove("resources");
        m.remove("ports")
    });
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec})
}

fn cpu(q: &str) -> Value {
    json!({"requests": {"cpu": q}})
}

fn create(c: &Cluster, objs: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objs});
    c.ok_with(
        support::KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&list.to_string()),
    );
}

fn node_of(c: &Cluster, pod: &str) -> Option<String> {
    let out = c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"]);
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn wait_bound(c: &Cluster, pod: &str) -> String {
    wait_for(&format!("pod {pod} to be scheduled"), T, || node_of(c, pod))
}

/// Waits until `kubectl describe pod` shows a FailedScheduling event with `message`.
fn wait_failed(c: &Cluster, pod: &str, message: &str) -> String {
    let mut last = String::new();
    let found = try_wait(T, || {
        last = c.ok(&["describe", "pod", pod]);
        (last.contains("FailedScheduling") && last.contains(message)).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no FailedScheduling {message:?} for {pod}; describe:\n{last}\nlog:\n{}",
            support::tail(&c.log(), 40)
        )
    })
}

/// Polls `f` until it returns Some or the deadline passes (then None).
fn try_wait<V>(timeout: Duration, mut f: impl FnMut() -> Option<V>) -> Option<V> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spread(c: &Cluster, pods: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods {
        *m.entry(wait_bound(c, p)).or_default() += 1;
    }
    m
}

#[test]
fn spreads_pods_and_waits_for_room() {
    let (c, nodes) = start("sched-spread", 3, &[]);
    let names: Vec<String> = (0..6).map(|i| format!("web-{i}")).collect();
    let pods: Vec<Value> = names
        .iter()
        .map(|n| pod(n, json!({"app": "web"}), json!({"resources": cpu("100m")})))
        .collect();
    create(&c, &pods);
    let by_node = spread(&c, &names);
    assert_eq!(
        by_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "pods spread evenly over {nodes:?}: {by_node:?}"
    );

    create(&c, &[pod("big", json!({}), json!({"resources": cpu("6")}))]);
    let describe = wait_failed(
        &c,
        "big",
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );
    assert!(describe.contains("default-scheduler"), "{describe}");
    let cond = c.ok(&[
        "get",
        "pod",
        "big",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    ]);
    assert_eq!(cond, "Unschedulable");
    assert_eq!(node_of(&c, "big"), None);

    // A node with room joins: the pod is retried and lands there.
    c.apply(support::KUBECTL_NEW, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "roomy", "labels": {"kubernetes.io/hostname": "roomy"}}}).to_string());
    let status = json!({"status": {"capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"}, "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]}});
    c.ok(&[
        "patch",
        "node",
        "roomy",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    assert_eq!(wait_bound(&c, "big"), "roomy");
    let describe = c.ok(&["describe", "pod", "big"]);
    assert!(
        describe.contains("Successfully assigned default/big to roomy"),
        "{describe}"
    );
}

#[test]
fn node_selector_and_node_affinity() {
    let (c, n) = start("sched-affinity", 3, &[]);
    c.ok(&["label", "node", &n[0], "disk=ssd"]);
    c.ok(&["label", "node", &n[1], "example.com/rack=r2"]);
    c.ok(&["label", "node", &n[2], "gpu=yes"]);
    let required = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["yes"]}]}]}}});
    let preferred = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [{"key": "example.com/rack", "operator": "In", "values": ["r2"]}]}}]}});
    create(
        &c,
        &[
            pod("sel", json!({}), json!({"nodeSelector": {"disk": "ssd"}})),
            pod("req", json!({}), json!({"affinity": required})),
            pod("pref", json!({}), json!({"affinity": preferred})),
            pod("none", json!({}), json!({"nodeSelector": {"disk": "nvme"}})),
        ],
    );
    assert_eq!(wait_bound(&c, "sel"), n[0]);
    assert_eq!(wait_bound(&c, "req"), n[2]);
    assert_eq!(wait_bound(&c, "pref"), n[1]);
    wait_failed(
        &c,
        "none",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    // Labelling a node is an event that retries the pod.
    c.ok(&["label", "node", &n[1], "disk=nvme"]);
    assert_eq!(wait_bound(&c, "none"), n[1]);
}

#[test]
fn taints_tolerations_and_cordon() {
    let (c, n) = start("sched-taints", 3, &[]);
    c.ok(&["taint", "nodes", &n[0], &n[1], "dedicated=infra:NoSchedule"]);
    create(&c, &[pod("plain", json!({}), json!({}))]);
    assert_eq!(wait_bound(&c, "plain"), n[2]);
    c.ok(&["cordon", &n[2]]);
    create(&c, &[pod("waits", json!({}), json!({}))]);
    wait_failed(
        &c,
        "waits",
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint {dedicated: infra}.",
    );
    let tol = json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]);
    create(
        &c,
        &[pod("tolerant", json!({}), json!({"tolerations": tol}))],
    );
    let on = wait_bound(&c, "tolerant");
    assert!(
        on == n[0] || on == n[1],
        "tolerant pod on a tainted node, got {on}"
    );
    c.ok(&["uncordon", &n[2]]);
    assert_eq!(wait_bound(&c, "waits"), n[2]);
}

#[test]
fn host_port_clashes() {
    let (c, _) = start("sched-ports", 2, &[]);
    let ports = json!([{"containerPort": 80, "hostPort": 8080}]);
    create(
        &c,
        &(0..3)
            .map(|i| {
                pod(
                    &format!("hp-{i}"),
                    json!({"app": "hp"}),
                    json!({"ports": ports}),
                )
            })
            .collect::<Vec<_>>(),
    );
    let (bound, pending) = wait_for("two pods bound", T, || {
        let b: Vec<(String, String)> = (0..3)
            .filter_map(|i| node_of(&c, &format!("hp-{i}")).map(|n| (format!("hp-{i}"), n)))
            .collect();
        if b.len() != 2 {
            return None;
        }
        let pending = (0..3)
            .map(|i| format!("hp-{i}"))
            .find(|p| !b.iter().any(|(q, _)| q == p))?;
        Some((b, pending))
    });
    assert_ne!(bound[0].1, bound[1].1, "same hostPort on different nodes");
    wait_failed(
        &c,
        &pending,
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
    );
    // Freeing the port schedules the pending pod.
    c.ok(&["delete", "pod", &bound[0].0, "--wait=false"]);
    assert_eq!(wait_bound(&c, &pending), bound[0].1);
}

#[test]
fn topology_spread_constraints() {
    let (c, n) = start("sched-topology", 3, &[]);
    for (node, zone) in [(&n[0], "a"), (&n[1], "a"), (&n[2], "b")] {
        c.ok(&[
            "label",
            "node",
            node,
            &format!("topology.kubernetes.io/zone={zone}"),
            "--overwrite",
        ]);
    }
    let tsc = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "ts"}}}]);
    let names: Vec<String> = (0..4).map(|i| format!("ts-{i}")).collect();
    create(
        &c,
        &names
            .iter()
            .map(|p| {
                pod(
                    p,
                    json!({"app": "ts"}),
                    json!({"topologySpreadConstraints": tsc}),
                )
            })
            .collect::<Vec<_>>(),
    );
    let by_node = spread(&c, &names);
    let zone_b = by_node.get(&n[2]).copied().unwrap_or(0);
    assert_eq!(
        zone_b, 2,
        "zone b (one node) holds half the pods: {by_node:?}"
    );
    // Zone b is full at skew 1 only if a takes nothing more: a fifth pod must go to zone a.
    create(
        &c,
        &[pod(
            "ts-4",
            json!({"app": "ts"}),
            json!({"topologySpreadConstraints": tsc}),
        )],
    );
    let fifth = wait_bound(&c, "ts-4");
    assert!(
        fifth == n[0] || fifth == n[1],
        "fifth pod in zone a, got {fifth}"
    );
}

#[test]
fn pod_anti_affinity() {
    let (c, _) = start("sched-anti", 3, &[]);
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    let names: Vec<String> = (0..4).map(|i| format!("db-{i}")).collect();
    create(
        &c,
        &names
            .iter()
            .map(|p| pod(p, json!({"app": "db"}), json!({"affinity": anti})))
            .collect::<Vec<_>>(),
    );
    let bound = wait_for("three db pods bound", T, || {
        let b: Vec<(String, String)> = names
            .iter()
            .filter_map(|p| node_of(&c, p).map(|n| (p.clone(), n)))
            .collect();
        (b.len() == 3).then_some(b)
    });
    let nodes: std::collections::BTreeSet<&String> = bound.iter().map(|(_, n)| n).collect();
    assert_eq!(nodes.len(), 3, "one db pod per node: {bound:?}");
    let pending = names
        .iter()
        .find(|p| !bound.iter().any(|(q, _)| q == *p))
        .expect("a pending pod");
    wait_failed(
        &c,
        pending,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.",
    );
}

#[test]
fn higher_priority_pod_preempts() {
    let (c, n) = start("sched-preempt", 1, &["--hollow-node-cpu", "1"]);
    c.apply(support::KUBECTL_NEW, &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000}).to_string());
    create(
        &c,
        &[pod("low", json!({}), json!({"resources": cpu("700m")}))],
    );
    assert_eq!(wait_bound(&c, "low"), n[0]);
    let low_uid = c.ok(&["get", "pod", "low", "-o", "jsonpath={.metadata.uid}"]);
    create(
        &c,
        &[pod(
            "high",
            json!({}),
            json!({"resources": cpu("700m"), "priorityClassName": "high"}),
        )],
    );
    // Priority admission resolved the class.
    assert_eq!(
        c.ok(&["get", "pod", "high", "-o", "jsonpath={.spec.priority}"]),
        "1000"
    );
    assert_eq!(wait_bound(&c, "high"), n[0]);
    wait_for("the victim to be deleted", T, || {
        let out = c.kubectl(&["get", "pod", "low", "-o", "jsonpath={.metadata.uid}"]);
        let uid = String::from_utf8_lossy(&out.stdout).to_string();
        (!out.status.success() || uid != low_uid).then_some(())
    });
    let events = c.ok(&["get", "events", "--field-selector", "reason=Preempted"]);
    assert!(events.contains("Preempted by pod"), "{events}");
}

/// A `kaji scheduler` child process.
struct SchedulerProc(Child);

impl SchedulerProc {
    fn start(c: &Cluster, identity: &str) -> SchedulerProc {
        let log = std::fs::File::create(c.data_dir().join(format!("{identity}.log"))).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["scheduler", "--kubeconfig"])
            .arg(&c.kubeconfig)
            .args(["--identity", identity])
            .env("KAJI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji scheduler");
        SchedulerProc(child)
    }
}

impl Drop for SchedulerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lease_holder(c: &Cluster) -> Option<String> {
    let out = c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-scheduler",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The `reportingInstance` of the pod's Scheduled event: which scheduler bound it.
fn bound_by(c: &Cluster, pod: &str) -> Option<String> {
    let v = c.json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod},reason=Scheduled"),
    ]);
    v["items"].as_array()?.first()?["reportingInstance"]
        .as_str()
        .map(String::from)
}

#[test]
fn leader_election_hands_over() {
    let (c, _) = start("sched-leader", 2, &["--disable-scheduler"]);
    let mut a = Some(SchedulerProc::start(&c, "sched-a"));
    let _b = SchedulerProc::start(&c, "sched-b");
    let leader = wait_for("a leader", T, || lease_holder(&c));
    let lease = c.json(&["get", "lease", "-n", "kube-system", "kube-scheduler"]);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    create(
        &c,
        &(0..4)
            .map(|i| pod(&format!("first-{i}"), json!({}), json!({})))
            .collect::<Vec<_>>(),
    );
    for i in 0..4 {
        wait_bound(&c, &format!("first-{i}"));
        let by = wait_for("the Scheduled event", T, || {
            bound_by(&c, &format!("first-{i}"))
        });
        assert_eq!(by, leader, "only the leader binds");
    }
    // Kill the leader: the other takes over once the lease expires (15 s).
    let other = if leader == "sched-a" {
        "sched-b"
    } else {
        "sched-a"
    };
    if leader == "sched-a" {
        a.take();
    } else {
        drop(_b);
    }
    let killed = std::time::Instant::now();
    create(&c, &[pod("second", json!({}), json!({}))]);
    wait_for(
        "the standby to take the lease",
        Duration::from_secs(40),
        || (lease_holder(&c).as_deref() == Some(other)).then_some(()),
    );
    wait_bound(&c, "second");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(25), "hand-over took {took:?}");
    assert_eq!(
        wait_for("the Scheduled event", T, || bound_by(&c, "second")),
        other
    );
}

/// The Deployment's live (not terminating) pods and the node each is bound to ("" if unbound).
fn live_pods(c: &Cluster, app: &str) -> BTreeMap<String, String> {
    let v = c.json(&["get", "pods", "-l", &format!("app={app}")]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_string();
            let node = p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Some((name, node))
        })
        .collect()
}

/// `kubectl drain` (1.33 sends its evictions as protobuf, 1.27 as JSON) cordons the node,
/// evicts its pods, and the Deployment's replacements land on the other nodes; `kubectl
/// uncordon` makes the node schedulable again.
#[test]
fn drain_evicts_and_uncordon_restores() {
    let (c, n) = start("sched-drain", 3, &[]);
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": cpu("100m")}]}}}});
    c.apply(support::KUBECTL_NEW, &deploy.to_string());
    let all_bound = |avoid: Option<&str>| {
        let pods = live_pods(&c, "web");
        (pods.len() == 3
            && pods
                .values()
                .all(|node| !node.is_empty() && Some(node.as_str()) != avoid))
        .then_some(pods)
    };
    wait_for("3 web pods bound", T, || all_bound(None));

    for (kubectl, node) in [(support::KUBECTL_NEW, &n[0]), (support::KUBECTL_OLD, &n[1])] {
        let victims: Vec<String> = live_pods(&c, "web")
            .into_iter()
            .filter_map(|(p, on)| (on == *node).then_some(p))
            .collect();
        assert!(!victims.is_empty(), "a web pod on {node} to evict");
        let out = c.ok_with(
            kubectl,
            &[
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=60s",
            ],
            None,
        );
        assert!(out.contains("drained"), "{kubectl} drain {node}: {out}");
        for v in &victims {
            assert!(
                out.contains(&format!("evicting pod default/{v}"))
                    || out.contains(&format!("pod/{v} evicted")),
                "{out}"
            );
        }
        let status = c.ok(&["get", "node", node, "--no-headers"]);
        assert!(
            status.contains("SchedulingDisabled"),
            "{node} cordoned: {status}"
        );
        assert_eq!(
            c.ok(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]),
            "true"
        );
        let after = wait_for(&format!("replacements off {node}"), T, || {
            all_bound(Some(node))
        });
        for v in &victims {
            assert!(
                !after.contains_key(v),
                "{v} was evicted from {node}: {after:?}"
            );
        }

        c.ok_with(kubectl, &["uncordon", node], None);
        let status = c.ok(&["get", "node", node, "--no-headers"]);
        assert!(
            !status.contains("SchedulingDisabled"),
            "{node} uncordoned: {status}"
        );
        // Schedulable again: a pod that only fits there (nodeSelector) lands on it.
        let probe = format!("probe-{node}");
        create(
            &c,
            &[pod(
                &probe,
                json!({}),
                json!({"nodeSelector": {"kubernetes.io/hostname": node}}),
            )],
        );
        assert_eq!(&wait_bound(&c, &probe), node);
    }
}

fn claim_volume(claim: &str) -> Value {
    json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}])
}

fn pvc(name: &str, class: &str, size: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
}

/// A `local` volume on one node (its nodeAffinity names the node's hostname label).
fn local_pv(name: &str, class: &str, size: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"storageClassName": class, "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "local": {"path": format!("/mnt/disks/{name}")},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let mut a = args.to_vec();
    let p = format!("jsonpath={path}");
    a.extend_from_slice(&["-o", &p]);
    let out = c.kubectl(&a);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// VolumeBinding's PreFilter: a pod waits while its claim is missing, then while the claim is
/// unbound (no class: the PersistentVolume controller binds it), and is scheduled once a
/// matching volume appears and the controller binds the claim.
#[test]
fn pod_waits_for_its_claim_to_be_bound() {
    let (c, _) = start("sched-pvc", 2, &[]);
    create(
        &c,
        &[pod(
            "app",
            json!({}),
            json!({"volumes": claim_volume("data")}),
        )],
    );
    wait_failed(
        &c,
        "app",
        "0/2 nodes are available: persistentvolumeclaim \"data\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );

    // The claim appears (an event that retries the pod) but nothing can satisfy it yet.
    create(&c, &[pvc("data", "", "1Gi")]);
    let unbound = "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    wait_failed(&c, "app", unbound);
    let cond = |field: &str| {
        jsonpath(
            &c,
            &["get", "pod", "app"],
            &format!("{{.status.conditions[?(@.type==\"PodScheduled\")].{field}}}"),
        )
    };
    wait_for("PodScheduled=False for the unbound claim", T, || {
        (cond("message") == unbound).then_some(())
    });
    assert_eq!(cond("status"), "False");
    assert_eq!(cond("reason"), "Unschedulable");
    assert_eq!(node_of(&c, "app"), None);

    // A matching hostPath volume: the binder binds the claim and the pod is scheduled.
    create(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-data"},
            "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/tmp/kaji-sched-pv-data"}}}),
        ],
    );
    wait_bound(&c, "app");
    assert_eq!(
        jsonpath(&c, &["get", "pvc", "data"], "{.spec.volumeName}"),
        "pv-data"
    );
    wait_for("PodScheduled=True", T, || {
        (cond("status") == "True").then_some(())
    });
}

/// VolumeBinding's Filter: a claim bound to a local volume takes its pod to the volume's node;
/// a WaitForFirstConsumer claim gets the volume of the node the pod goes to (the scheduler
/// pre-binds it and the controller completes the binding), or none fits anywhere.
#[test]
fn local_volumes_pin_pods_to_their_node() {
    let (c, n) = start("sched-local-pv", 3, &[]);
    create(
        &c,
        &[
            local_pv("local-1", "", "1Gi", &n[1]),
            pvc("pinned", "", "1Gi"),
        ],
    );
    wait_for("the claim to bind to the local volume", T, || {
        (jsonpath(&c, &["get", "pvc", "pinned"], "{.status.phase}") == "Bound").then_some(())
    });
    create(
        &c,
        &[
            pod(
                "pinned",
                json!({}),
                json!({"volumes": claim_volume("pinned")}),
            ),
            pod(
                "elsewhere",
                json!({}),
                json!({"volumes": claim_volume("pinned"), "nodeSelector": {"kubernetes.io/hostname": n[0]}}),
            ),
        ],
    );
    assert_eq!(wait_bound(&c, "pinned"), n[1]);
    wait_failed(
        &c,
        "elsewhere",
        "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );

    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-storage"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"});
    create(
        &c,
        &[
            class,
            local_pv("wffc-0", "local-storage", "1Gi", &n[0]),
            local_pv("wffc-2", "local-storage", "1Gi", &n[2]),
            pvc("wffc", "local-storage", "1Gi"),
            pvc("wffc-big", "local-storage", "5Gi"),
        ],
    );
    create(
        &c,
        &[
            pod(
                "consumer",
                json!({}),
                json!({"volumes": claim_volume("wffc"), "nodeSelector": {"kubernetes.io/hostname": n[2]}}),
            ),
            pod(
                "too-big",
                json!({}),
                json!({"volumes": claim_volume("wffc-big")}),
            ),
        ],
    );
    assert_eq!(wait_bound(&c, "consumer"), n[2]);
    // The pod was bound only after its claim: the scheduler wrote the volume's claimRef.
    assert_eq!(
        jsonpath(
            &c,
            &["get", "pvc", "wffc"],
            "{.status.phase}/{.spec.volumeName}"
        ),
        "Bound/wffc-2"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["get", "pv", "wffc-2"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}"
        ),
        "yes"
    );
    assert_eq!(
        jsonpath(&c, &["get", "pv", "wffc-0"], "{.status.phase}"),
        "Available"
    );
    wait_failed(
        &c,
        "too-big",
        "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
}
