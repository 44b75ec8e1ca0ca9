//! The DaemonSet controller end to end, with stock kubectl against `kaji server` running the
//! controllers, the scheduler and hollow nodes (which report bound pods Running and Ready and
//! remove deleted pods at once): one pod per eligible node, bound by the scheduler through the
//! pod's `metadata.name` node affinity; a node that joins later gets one, a node that stops
//! matching or goes away loses it; RollingUpdate, `kubectl rollout status|history|undo`,
//! OnDelete; upstream's 422 causes for bad DaemonSets.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
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
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready_nodes(c: &Cluster) -> BTreeSet<String> {
    let out = c.ok(&["get", "nodes", "--no-headers"]);
    out.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The live (not terminating) pods with label `app=<app>`.
fn live_pods(c: &Cluster, app: &str) -> Vec<Value> {
    let list = c.json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect()
}

/// Node of every live pod of `app`, when each is bound and Running.
fn running_on(c: &Cluster, app: &str) -> Option<Vec<String>> {
    let pods = live_pods(c, app);
    let mut nodes: Vec<String> = Vec::new();
    for p in &pods {
        if s(p, "/status/phase") != "Running" || s(p, "/spec/nodeName").is_empty() {
            return None;
        }
        nodes.push(s(p, "/spec/nodeName").to_string());
    }
    nodes.sort();
    Some(nodes)
}

fn ds_status(c: &Cluster, name: &str) -> Value {
    c.json(&["get", "daemonset", name])["status"].clone()
}

fn daemonset(name: &str, image: &str, extra_spec: Value) -> Value {
    let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}});
    if let (Some(spec), Value::Object(extra)) = (ds["spec"].as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    ds
}

#[test]
fn daemonset_covers_three_hollow_nodes_and_a_fourth_that_joins_later() {
    let c = Cluster::start_with("ds-cover", &["--hollow-nodes", "3"]);
    wait_for("three Ready hollow nodes", WAIT, || (ready_nodes(&c).len() == 3).then_some(()));
    let first: Vec<String> = ready_nodes(&c).into_iter().collect();
    apply(&c, &daemonset("agent", "busybox", json!({})));
    wait_for("one running agent pod per node", WAIT, || {
        (running_on(&c, "agent")? == first).then_some(())
    });
    wait_for("the status counts three nodes", WAIT, || {
        let st = ds_status(&c, "agent");
        let want = [("desiredNumberScheduled", 3), ("currentNumberScheduled", 3), ("numberReady", 3),
            ("numberAvailable", 3), ("updatedNumberScheduled", 3), ("numberMisscheduled", 0)];
        (want.iter().all(|(k, v)| n(&st, &format!("/{k}")) == *v)
            && n(&st, "/observedGeneration") == 1
            && st.get("numberUnavailable").is_none_or(|u| u == 0))
        .then_some(())
    });

    // Pods as upstream makes them: pinned by a required node affinity on metadata.name (bound
    // by the scheduler), the revision hash and template generation labels, and the daemon
    // tolerations.
    let pod = live_pods(&c, "agent").remove(0);
    let node = s(&pod, "/spec/nodeName");
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(
        terms,
        &json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]),
        "{pod}"
    );
    assert_eq!(s(&pod, "/metadata/labels/pod-template-generation"), "1");
    let hash = s(&pod, "/metadata/labels/controller-revision-hash").to_string();
    assert!(!hash.is_empty(), "{pod}");
    let revisions = c.json(&["get", "controllerrevisions", "-l", "app=agent"]);
    let names: Vec<&str> = revisions["items"].as_array().into_iter().flatten().map(|r| s(r, "/metadata/name")).collect();
    assert_eq!(names, [format!("agent-{hash}")]);
    let tolerations: Vec<String> = pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", s(t, "/key"), s(t, "/effect")))
        .collect();
    for want in ["node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/disk-pressure:NoSchedule", "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/pid-pressure:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"] {
        assert!(tolerations.iter().any(|t| t == want), "{want} missing from {tolerations:?}");
    }
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.kind=DaemonSet,involvedObject.name=agent", "-o", "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers"]);
    assert!(events.lines().any(|l| l.starts_with("SuccessfulCreate") && l.contains("Created pod: agent-")), "{events}");

    // A fourth node joins (another hollow agent): it gets a pod.
    let log = std::fs::File::create(c.data_dir().join("agent.log")).expect("agent log");
    let mut agent = Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["agent", "--hollow", "--nodes", "1", "--node-name-prefix", "late-node"])
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", c.port))
            .arg("--token-file")
            .arg(c.data_dir().join("token"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji agent"),
    );
    wait_for("the late node Ready", WAIT, || ready_nodes(&c).contains("late-node-0").then_some(()));
    wait_for("an agent pod on every node, the late one too", WAIT, || {
        let on = running_on(&c, "agent")?;
        (on.len() == 4 && on.contains(&"late-node-0".to_string())).then_some(())
    });
    wait_for("four desired, four ready", WAIT, || {
        let st = ds_status(&c, "agent");
        (n(&st, "/desiredNumberScheduled") == 4 && n(&st, "/numberReady") == 4).then_some(())
    });

    // A NoExecute taint the pods do not tolerate: the node loses its pod.
    c.ok(&["taint", "node", "late-node-0", "dedicated=db:NoExecute"]);
    wait_for("the tainted node's pod gone", WAIT, || {
        let on = running_on(&c, "agent")?;
        (on == first).then_some(())
    });
    wait_for("three desired again", WAIT, || (n(&ds_status(&c, "agent"), "/desiredNumberScheduled") == 3).then_some(()));
    c.ok(&["taint", "node", "late-node-0", "dedicated=db:NoExecute-"]);
    wait_for("the untainted node's pod back", WAIT, || (running_on(&c, "agent")?.len() == 4).then_some(()));

    // The node goes away: its pod goes too.
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    c.ok(&["delete", "node", "late-node-0"]);
    wait_for("the removed node's pod gone", WAIT, || {
        let all = live_pods(&c, "agent");
        (all.len() == 3 && all.iter().all(|p| s(p, "/spec/nodeName") != "late-node-0")).then_some(())
    });

    // A node selector: only labelled nodes, and a node that loses its label loses its pod.
    apply(&c, &daemonset("ssd", "busybox", json!({"template": {"metadata": {"labels": {"app": "ssd"}},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox"}]}}})));
    c.ok(&["label", "node", &first[1], "disk=ssd"]);
    wait_for("one ssd pod on the labelled node", WAIT, || {
        (running_on(&c, "ssd")? == [first[1].clone()]).then_some(())
    });
    assert_eq!(n(&ds_status(&c, "ssd"), "/desiredNumberScheduled"), 1);
    c.ok(&["label", "node", &first[1], "disk-"]);
    wait_for("no ssd pod once the label is gone", WAIT, || live_pods(&c, "ssd").is_empty().then_some(()));
}

#[test]
fn daemonset_rolls_out_undoes_and_refuses_bad_specs() {
    let c = Cluster::start_with("ds-rollout", &["--hollow-nodes", "3"]);
    wait_for("three Ready hollow nodes", WAIT, || (ready_nodes(&c).len() == 3).then_some(()));

    // Bad input: upstream's causes.
    let bad = |ds: Value| -> String {
        let out = c.kubectl_with(KUBECTL_NEW, &["apply", "-f", "-"], Some(&ds.to_string()));
        assert!(!out.status.success(), "{ds} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = bad(daemonset("bad", "busybox", json!({"template": {"metadata": {"labels": {"app": "bad"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}})));
    assert!(err.contains(r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#), "{err}");
    let err = bad(daemonset("bad", "busybox", json!({"selector": {"matchLabels": {"app": "other"}}})));
    assert!(err.contains("spec.template.metadata.labels: Invalid value") && err.contains("`selector` does not match template `labels`"), "{err}");
    let err = bad(daemonset("bad", "busybox", json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}})));
    assert!(err.contains("spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"), "{err}");

    let ds = daemonset("web", "nginx:1.16", json!({"minReadySeconds": 0}));
    apply(&c, &ds);
    let got = c.json(&["get", "daemonset", "web"]);
    assert_eq!(got["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
    assert_eq!(n(&got, "/spec/revisionHistoryLimit"), 10);
    assert_eq!(s(&got, "/metadata/annotations/deprecated.daemonset.template.generation"), "1");
    let out = c.ok(&["rollout", "status", "daemonset/web", "--timeout", "60s"]);
    assert!(out.contains("daemon set \"web\" successfully rolled out"), "{out}");

    // The selector is immutable.
    let mut moved = ds.clone();
    moved["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
    moved["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
    let err = bad(moved);
    assert!(err.contains("spec.selector: Invalid value") && err.contains("field is immutable"), "{err}");

    let images = |c: &Cluster| -> Vec<String> {
        let mut v: Vec<String> = live_pods(c, "web").iter().map(|p| s(p, "/spec/containers/0/image").to_string()).collect();
        v.sort();
        v
    };
    c.ok(&["annotate", "daemonset", "web", "kubernetes.io/change-cause=to 1.17"]);
    c.ok(&["set", "image", "daemonset/web", "c=nginx:1.17"]);
    let out = c.ok(&["rollout", "status", "daemonset/web", "--timeout", "90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for("three nginx:1.17 pods", WAIT, || (images(&c) == ["nginx:1.17"; 3]).then_some(()));
    let got = c.json(&["get", "daemonset", "web"]);
    assert_eq!(s(&got, "/metadata/annotations/deprecated.daemonset.template.generation"), "2");
    assert_eq!(n(&got, "/status/updatedNumberScheduled"), 3);
    assert!(live_pods(&c, "web").iter().all(|p| s(p, "/metadata/labels/pod-template-generation") == "2"));
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.kind=DaemonSet,involvedObject.name=web", "-o", "custom-columns=REASON:.reason", "--no-headers"]);
    assert!(events.lines().any(|l| l.trim() == "SuccessfulDelete"), "{events}");

    let history = c.ok(&["rollout", "history", "daemonset/web"]);
    let rows: Vec<Vec<&str>> = history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[1][0], "2");
    assert!(history.contains("to 1.17"), "{history}");

    // Undo: back to 1.16, as revision 3.
    let out = c.ok(&["rollout", "undo", "daemonset/web"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = c.ok(&["rollout", "status", "daemonset/web", "--timeout", "90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for("three nginx:1.16 pods again", WAIT, || (images(&c) == ["nginx:1.16"; 3]).then_some(()));
    let history = c.ok(&["rollout", "history", "daemonset/web"]);
    let revs: Vec<&str> = history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revs, ["2", "3"], "{history}");
    assert_eq!(c.json(&["get", "controllerrevisions", "-l", "app=web"])["items"].as_array().map(Vec::len), Some(2));
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.kind=DaemonSet,involvedObject.name=web", "-o", "custom-columns=REASON:.reason", "--no-headers"]);
    assert!(!events.lines().any(|l| l.starts_with("Failed")), "{events}");

    // maxSurge: the new pod starts next to the old one, which goes once the new is available.
    c.ok(&["patch", "daemonset", "web", "--type", "merge", "-p", r#"{"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}"#]);
    c.ok(&["set", "image", "daemonset/web", "c=nginx:1.17.1"]);
    let out = c.ok(&["rollout", "status", "daemonset/web", "--timeout", "90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for("three nginx:1.17.1 pods", WAIT, || (images(&c) == ["nginx:1.17.1"; 3]).then_some(()));
    assert_eq!(n(&ds_status(&c, "web"), "/numberAvailable"), 3);

    // OnDelete: a new template waits until a pod is deleted by hand.
    c.ok(&["patch", "daemonset", "web", "--type", "merge", "-p", r#"{"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}"#]);
    c.ok(&["set", "image", "daemonset/web", "c=nginx:1.18"]);
    wait_for("the new generation observed", WAIT, || {
        let d = c.json(&["get", "daemonset", "web"]);
        (n(&d, "/status/observedGeneration") == n(&d, "/metadata/generation") && n(&d, "/status/updatedNumberScheduled") == 0).then_some(())
    });
    assert_eq!(images(&c), ["nginx:1.17.1"; 3], "OnDelete replaces nothing by itself");
    let victim = s(&live_pods(&c, "web")[0], "/metadata/name").to_string();
    c.ok(&["delete", "pod", &victim]);
    wait_for("the replacement made from the new template", WAIT, || {
        (images(&c) == ["nginx:1.17.1", "nginx:1.17.1", "nginx:1.18"] && running_on(&c, "web")?.len() == 3).then_some(())
    });
}
