//! The StatefulSet controller end to end, driven by stock kubectl: ordinal pods created in
//! order and removed from the top (hollow nodes), rolling updates with a partition, OnDelete,
//! Parallel, claims and their retention policy, `kubectl rollout status|history|undo`, the API
//! server's validation; and on a real node: pods that keep their claim and DNS name when deleted.

mod support;

use serde_json::Value;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::node::Node;
use support::{Cluster, KUBECTL_NEW, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Pod changes as `kubectl get pods -w --output-watch-events` sees them, in order, as lines such
/// as `ADDED web-0`, `READY web-0`, `TERMINATING web-2`, `DELETED web-2` (each state once per
/// pod incarnation).
struct PodLog {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl PodLog {
    fn start(c: &Cluster, selector: &str) -> PodLog {
        let mut child = Command::new(KUBECTL_NEW)
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["get", "pods", "-l", selector, "-w", "--output-watch-events", "-o", "json"])
            .env("HOME", c.data_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let out = child.stdout.take().expect("stdout");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            for ev in serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter::<Value>() {
                let Ok(ev) = ev else { break };
                let o = &ev["object"];
                let name = s(o, "/metadata/name");
                let uid = s(o, "/metadata/uid");
                let ready = o["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                let mut states = vec!["ADDED"];
                if ready && s(o, "/status/phase") == "Running" {
                    states.push("READY");
                }
                if !s(o, "/metadata/deletionTimestamp").is_empty() {
                    states.push("TERMINATING");
                }
                if ev["type"] == "DELETED" {
                    states.push("DELETED");
                }
                for st in states {
                    if seen.insert(format!("{uid} {st}")) {
                        l.lock().unwrap().push(format!("{st} {name}"));
                    }
                }
            }
        });
        PodLog { child, lines }
    }

    /// Starts the log on pods that already run and waits until its first list has shown each
    /// of them Ready, so that nothing the test does next can happen before the watch sees it.
    fn start_on_ready(c: &Cluster, selector: &str, names: &[String]) -> PodLog {
        let log = PodLog::start(c, selector);
        for name in names {
            log.wait(&format!("READY {name}"));
        }
        log
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The position of the first `line`, if seen.
    fn index(&self, line: &str) -> Option<usize> {
        self.lines().iter().position(|l| l == line)
    }

    fn wait(&self, line: &str) -> usize {
        wait_for(&format!("{line} in the pod log"), WAIT, || self.index(line))
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sts(name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  clusterIP: None
  selector:
    app: {name}
  ports:
  - name: web
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
{extra_spec}  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: {image}
"
    )
}

fn pod_names(c: &Cluster, selector: &str) -> Vec<String> {
    let mut v: Vec<String> = c
        .ok(&["get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn status(c: &Cluster, name: &str) -> Value {
    c.json(&["get", "statefulset", name])["status"].clone()
}

/// Waits until the set's status shows `replicas` pods, all ready and available, for its generation.
fn wait_ready(c: &Cluster, name: &str, replicas: i64) -> Value {
    wait_for(&format!("statefulset {name} with {replicas} ready"), WAIT, || {
        let o = c.json(&["get", "statefulset", name]);
        let st = &o["status"];
        (st["observedGeneration"] == o["metadata"]["generation"]
            && st["replicas"].as_i64() == Some(replicas)
            && st["readyReplicas"].as_i64().unwrap_or(0) == replicas
            && st["availableReplicas"].as_i64().unwrap_or(0) == replicas)
            .then_some(o)
    })
}

#[test]
fn ordered_ready_creates_in_order_and_scales_down_from_the_highest_ordinal() {
    let c = Cluster::start_with("sts-ordered", &["--hollow-nodes", "3"]);
    wait_for("hollow nodes", WAIT, || {
        (c.ok(&["get", "nodes", "-o", "name"]).lines().count() == 3).then_some(())
    });
    let log = PodLog::start(&c, "app=web");
    c.apply(KUBECTL_NEW, &sts("web", 3, "nginx:1.25", ""));
    let o = wait_ready(&c, "web", 3);
    assert_eq!(pod_names(&c, "app=web"), ["web-0", "web-1", "web-2"]);
    // Each pod is created only once every lower ordinal is Running and Ready.
    assert!(log.wait("READY web-0") < log.wait("ADDED web-1"), "{:?}", log.lines());
    assert!(log.wait("READY web-1") < log.wait("ADDED web-2"), "{:?}", log.lines());

    // Identity: labels, hostname, subdomain, owner.
    let p = c.json(&["get", "pod", "web-1"]);
    assert_eq!(s(&p, "/metadata/labels/statefulset.kubernetes.io~1pod-name"), "web-1");
    assert_eq!(s(&p, "/metadata/labels/apps.kubernetes.io~1pod-index"), "1");
    let st = &o["status"];
    assert_eq!(s(&p, "/metadata/labels/controller-revision-hash"), s(st, "/updateRevision"));
    assert_eq!(s(&p, "/spec/hostname"), "web-1");
    assert_eq!(s(&p, "/spec/subdomain"), "web");
    assert_eq!(s(&p, "/metadata/ownerReferences/0/kind"), "StatefulSet");
    assert_eq!(s(&p, "/metadata/ownerReferences/0/controller"), "true");
    assert_eq!(s(st, "/currentRevision"), s(st, "/updateRevision"));
    assert!(s(st, "/updateRevision").starts_with("web-"));
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(st["collisionCount"], 0);
    // The revision: template labels plus the hash label, owned by the set.
    let rev = c.json(&["get", "controllerrevision", &s(st, "/updateRevision")]);
    assert_eq!(rev["revision"], 1);
    assert_eq!(s(&rev, "/metadata/labels/app"), "web");
    assert_eq!(s(&rev, "/data/spec/template/$patch"), "replace");
    assert!(!s(&rev, "/metadata/labels/controller.kubernetes.io~1hash").is_empty());

    // Events as upstream words them.
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
    for n in 0..3 {
        assert!(events.contains(&format!("SuccessfulCreate: create Pod web-{n} in StatefulSet web successful")), "{events}");
    }
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]);
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");

    // Scale down: web-2 goes first, and web-1 only after web-2 is gone.
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    wait_ready(&c, "web", 1);
    assert_eq!(pod_names(&c, "app=web"), ["web-0"]);
    assert!(log.wait("DELETED web-2") < log.wait("TERMINATING web-1"), "{:?}", log.lines());
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
    assert!(events.contains("SuccessfulDelete: delete Pod web-2 in StatefulSet web successful"), "{events}");

    // A deleted pod comes back with the same name.
    let uid = c.ok(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"]);
    c.ok(&["delete", "pod", "web-0", "--wait=false"]);
    wait_for("web-0 recreated", WAIT, || {
        let out = c.kubectl(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid} {.status.phase}"]);
        let o = String::from_utf8_lossy(&out.stdout).into_owned();
        (!o.starts_with(&uid) && o.ends_with("Running")).then_some(())
    });

    // A failed pod is deleted and made again.
    let uid = c.ok(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"]);
    c.ok(&["patch", "pod", "web-0", "--subresource=status", "-p", r#"{"status":{"phase":"Failed"}}"#]);
    wait_for("web-0 recreated after failing", WAIT, || {
        let out = c.kubectl(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid} {.status.phase}"]);
        let o = String::from_utf8_lossy(&out.stdout).into_owned();
        (!o.is_empty() && !o.starts_with(&uid) && o.ends_with("Running")).then_some(())
    });
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}"]);
    assert!(events.contains("Warning RecreatingFailedPod: StatefulSet default/web is recreating failed Pod web-0"), "{events}");
}

#[test]
fn rolling_update_respects_the_partition_and_rollout_undo_restores_the_template() {
    let c = Cluster::start_with("sts-rolling", &["--hollow-nodes", "3"]);
    c.apply(KUBECTL_NEW, &sts("web", 3, "nginx:1.25", "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: 2\n"));
    let o = wait_ready(&c, "web", 3);
    let rev1 = s(&o["status"], "/updateRevision");
    let log = PodLog::start_on_ready(&c, "app=web", &pod_names(&c, "app=web"));
    // The set's annotations at the time of a change go with its revision.
    c.ok(&["annotate", "statefulset", "web", "kubernetes.io/change-cause=to 1.26"]);
    c.ok(&["set", "image", "statefulset/web", "nginx=nginx:1.26"]);
    // Only the ordinals at or above the partition move to the new revision.
    let st = wait_for("web-2 updated", WAIT, || {
        let st = status(&c, "web");
        (st["updatedReplicas"] == 1 && st["readyReplicas"] == 3).then_some(st)
    });
    let rev2 = s(&st, "/updateRevision");
    assert_ne!(rev1, rev2);
    assert_eq!(s(&st, "/currentRevision"), rev1);
    assert_eq!(st["currentReplicas"], 2);
    let image = |p: &str| c.ok(&["get", "pod", p, "-o", "jsonpath={.spec.containers[0].image}"]);
    assert_eq!(image("web-2"), "nginx:1.26");
    assert_eq!(image("web-1"), "nginx:1.25");
    assert_eq!(image("web-0"), "nginx:1.25");
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]);
    assert!(out.contains("partitioned roll out complete: 1 new pods have been updated"), "{out}");

    // Partition 0: the rest follows, highest ordinal first, each after the one above is back.
    c.ok(&["patch", "statefulset", "web", "-p", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#]);
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    // kubectl reads a set with `rollingUpdate` (always there once defaulted) as partitioned.
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");
    let st = wait_for("the update to complete", WAIT, || {
        let st = status(&c, "web");
        (s(&st, "/currentRevision") == rev2 && st["updatedReplicas"] == 3 && st["readyReplicas"] == 3).then_some(st)
    });
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(image("web-0"), "nginx:1.26");
    assert!(log.wait("DELETED web-1") < log.wait("TERMINATING web-0"), "{:?}", log.lines());
    assert!(log.index("TERMINATING web-1") > log.index("READY web-2").max(log.index("DELETED web-2")), "{:?}", log.lines());

    // History and undo: the old revision is re-used with the next number.
    let hist = c.ok(&["rollout", "history", "statefulset/web"]);
    assert!(hist.contains("REVISION") && hist.lines().any(|l| l.trim_start().starts_with('1')), "{hist}");
    assert!(hist.lines().any(|l| l.trim_start().starts_with('2') && l.contains("to 1.26")), "{hist}");
    let detail = c.ok(&["rollout", "history", "statefulset/web", "--revision=1"]);
    assert!(detail.contains("nginx:1.25"), "{detail}");
    c.ok(&["rollout", "undo", "statefulset/web"]);
    let st = wait_for("the undo to complete", WAIT, || {
        let st = status(&c, "web");
        (s(&st, "/currentRevision") == rev1 && s(&st, "/updateRevision") == rev1 && st["readyReplicas"] == 3 && st["updatedReplicas"] == 3)
            .then_some(st)
    });
    assert_eq!(st["currentReplicas"], 3);
    for p in ["web-0", "web-1", "web-2"] {
        assert_eq!(image(p), "nginx:1.25");
    }
    let revs = c.ok(&["get", "controllerrevisions", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.revision} {end}"]);
    assert!(revs.contains(&format!("{rev1}=3")) && revs.contains(&format!("{rev2}=2")), "{revs}");
    assert_eq!(revs.split_whitespace().count(), 2, "{revs}");
    let hist = c.ok(&["rollout", "history", "statefulset/web"]);
    assert!(hist.lines().any(|l| l.trim_start().starts_with('3')), "{hist}");

    // The kubectl on PATH (another version) goes to a chosen revision.
    c.ok_with("kubectl", &["rollout", "undo", "statefulset/web", "--to-revision=2"], None);
    wait_for("the second undo to complete", WAIT, || {
        let st = status(&c, "web");
        (s(&st, "/currentRevision") == rev2 && st["readyReplicas"] == 3 && st["updatedReplicas"] == 3).then_some(())
    });
    assert_eq!(image("web-0"), "nginx:1.26");
    let hist = c.ok_with("kubectl", &["rollout", "history", "statefulset/web"], None);
    assert!(hist.lines().any(|l| l.trim_start().starts_with('4') && l.contains("to 1.26")), "{hist}");

    // revisionHistoryLimit 0: only what pods still run is kept.
    c.ok(&["patch", "statefulset", "web", "-p", r#"{"spec":{"revisionHistoryLimit":0}}"#]);
    wait_for("the history truncated", WAIT, || {
        let revs = c.ok(&["get", "controllerrevisions", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]);
        (revs.trim() == rev2).then_some(())
    });
}

#[test]
fn parallel_on_delete_and_claims_with_their_retention_policy() {
    let c = Cluster::start_with("sts-parallel", &["--hollow-nodes", "2"]);
    // Parallel: every pod at once, even while none can be scheduled.
    c.apply(KUBECTL_NEW, &sts("par", 3, "nginx:1.25", "  podManagementPolicy: Parallel\n").replace("      terminationGracePeriodSeconds: 1\n", "      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        nowhere: \"true\"\n"));
    wait_for("three pending pods", WAIT, || (pod_names(&c, "app=par").len() == 3).then_some(()));
    // OrderedReady: only the first while it is not Ready.
    c.apply(KUBECTL_NEW, &sts("ord", 3, "nginx:1.25", "").replace("      terminationGracePeriodSeconds: 1\n", "      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        nowhere: \"true\"\n"));
    wait_for("the first pod", WAIT, || (status(&c, "ord")["replicas"] == 1).then_some(()));
    c.ok(&["delete", "statefulset", "par", "ord"]);

    // OnDelete: an update replaces no pod until the pod is deleted.
    c.apply(KUBECTL_NEW, &sts("od", 2, "nginx:1.25", "  updateStrategy:\n    type: OnDelete\n"));
    wait_ready(&c, "od", 2);
    wait_for("the deleted sets' pods to go", WAIT, || pod_names(&c, "app in (ord,par)").is_empty().then_some(()));
    c.ok(&["set", "image", "statefulset/od", "nginx=nginx:1.26"]);
    let st = wait_for("a new update revision", WAIT, || {
        let st = status(&c, "od");
        (s(&st, "/updateRevision") != s(&st, "/currentRevision")).then_some(st)
    });
    let image = |p: &str| c.ok(&["get", "pod", p, "-o", "jsonpath={.spec.containers[0].image}"]);
    assert_eq!(image("od-1"), "nginx:1.25");
    // Not waiting: a hollow node removes the pod at once and the set makes it again so fast
    // that kubectl's wait (a GET, then a list and watch by name) can miss the deletion.
    c.ok(&["delete", "pod", "od-1", "--wait=false"]);
    wait_for("od-1 at the new revision", WAIT, || {
        let out = c.kubectl(&["get", "pod", "od-1", "-o", "jsonpath={.metadata.labels.controller-revision-hash}"]);
        (String::from_utf8_lossy(&out.stdout) == s(&st, "/updateRevision")).then_some(())
    });
    assert_eq!(image("od-1"), "nginx:1.26");
    assert_eq!(image("od-0"), "nginx:1.25");

    // Claims: one per pod from the template, bound to pre-made volumes; with the default policy
    // (Retain) they stay on scale-down; with WhenScaled=Delete they go with the pods.
    let mut pvs = String::new();
    for i in 0..6 {
        pvs.push_str(&format!("---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv-{i}\nspec:\n  storageClassName: \"\"\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n  hostPath:\n    path: /tmp/kaji-sts-test-{i}\n"));
    }
    c.apply(KUBECTL_NEW, &pvs);
    let claims = "  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      storageClassName: \"\"\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi\n";
    c.apply(KUBECTL_NEW, &sts("db", 2, "nginx:1.25", claims));
    wait_ready(&c, "db", 2);
    let claim_names = || -> Vec<String> {
        let mut v: Vec<String> = c
            .ok(&["get", "pvc", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.name}"])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(claim_names(), ["data-db-0", "data-db-1"]);
    let p = c.json(&["get", "pod", "db-1"]);
    assert_eq!(s(&p, "/spec/volumes/0/persistentVolumeClaim/claimName"), "data-db-1");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=db", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}"]);
    assert!(events.contains("create Claim data-db-0 Pod db-0 in StatefulSet db success"), "{events}");
    c.ok(&["scale", "statefulset", "db", "--replicas=1"]);
    wait_ready(&c, "db", 1);
    assert_eq!(claim_names(), ["data-db-0", "data-db-1"], "Retain keeps the claim");
    c.ok(&["scale", "statefulset", "db", "--replicas=2"]);
    wait_ready(&c, "db", 2);
    c.ok(&["patch", "statefulset", "db", "-p", r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#]);
    let old_claim = c.ok(&["get", "pvc", "data-db-1", "-o", "jsonpath={.metadata.uid}"]);
    c.ok(&["scale", "statefulset", "db", "--replicas=1"]);
    wait_ready(&c, "db", 1);
    wait_for("the scaled-down claim to go", WAIT, || (claim_names() == ["data-db-0"]).then_some(()));
    // Back up: db-1 gets a new claim (after the old one is gone, never the old one).
    c.ok(&["scale", "statefulset", "db", "--replicas=2"]);
    wait_ready(&c, "db", 2);
    let new_claim = c.ok(&["get", "pvc", "data-db-1", "-o", "jsonpath={.metadata.uid}"]);
    assert_ne!(old_claim, new_claim);
    // Down and at once up again: the new pod waits for its stale claim to go, then gets another.
    c.ok(&["scale", "statefulset", "db", "--replicas=1"]);
    wait_for("db-1 gone", WAIT, || (pod_names(&c, "app=db") == ["db-0"]).then_some(()));
    c.ok(&["scale", "statefulset", "db", "--replicas=2"]);
    wait_ready(&c, "db", 2);
    let newest = c.ok(&["get", "pvc", "data-db-1", "-o", "jsonpath={.metadata.uid} {.metadata.ownerReferences[*].kind}"]);
    assert!(!newest.starts_with(&new_claim) && !newest.contains("Pod"), "{newest} (was {new_claim})");
    c.ok(&["scale", "statefulset", "db", "--replicas=1"]);
    wait_ready(&c, "db", 1);
    wait_for("the scaled-down claim to go", WAIT, || (claim_names() == ["data-db-0"]).then_some(()));
    let owners = c.ok(&["get", "pvc", "data-db-0", "-o", "jsonpath={.metadata.ownerReferences[*].kind}"]);
    assert_eq!(owners, "", "a claim in range has no owner with WhenDeleted=Retain");
    // WhenDeleted=Delete: the set owns its claims, and they go with it.
    c.ok(&["patch", "statefulset", "db", "-p", r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"}}}"#]);
    wait_for("the set to own its claim", WAIT, || {
        let owners = c.ok(&["get", "pvc", "data-db-0", "-o", "jsonpath={.metadata.ownerReferences[*].kind}"]);
        (owners == "StatefulSet").then_some(())
    });
    c.ok(&["delete", "statefulset", "db", "--wait=false"]);
    wait_for("the claims to go with the set", WAIT, || claim_names().is_empty().then_some(()));

    // maxUnavailable 2: the rolling update replaces two pods at once.
    c.apply(KUBECTL_NEW, &sts("mu", 4, "nginx:1.25", "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 2\n"));
    wait_ready(&c, "mu", 4);
    let log = PodLog::start_on_ready(&c, "app=mu", &pod_names(&c, "app=mu"));
    c.ok(&["set", "image", "statefulset/mu", "nginx=nginx:1.26"]);
    wait_for("the update to complete", WAIT, || {
        let st = status(&c, "mu");
        (st["updatedReplicas"] == 4 && st["readyReplicas"] == 4 && s(&st, "/currentRevision") == s(&st, "/updateRevision")).then_some(())
    });
    let lines = wait_for("every pod Ready twice in the log", WAIT, || {
        let lines = log.lines();
        (0..4).all(|i| lines.iter().filter(|l| **l == format!("READY mu-{i}")).count() == 2).then_some(lines)
    });
    let second_ready_3 = lines.iter().enumerate().filter(|(_, l)| *l == "READY mu-3").nth(1).map(|(i, _)| i);
    let terminating_2 = lines.iter().position(|l| l == "TERMINATING mu-2");
    assert!(terminating_2.is_some() && terminating_2 < second_ready_3, "mu-2 goes before mu-3 is back: {lines:?}");
    c.ok(&["delete", "statefulset", "mu", "--wait=false"]);

    // spec.ordinals.start numbers the pods from there.
    c.apply(KUBECTL_NEW, &sts("from5", 2, "nginx:1.25", "  ordinals:\n    start: 5\n"));
    wait_ready(&c, "from5", 2);
    assert_eq!(pod_names(&c, "app=from5"), ["from5-5", "from5-6"]);
}

#[test]
fn bad_statefulsets_get_upstreams_causes() {
    let c = Cluster::start("sts-validation");
    let bad = sts("bad", 1, "nginx", "").replace("matchLabels:\n      app: bad", "matchLabels:\n      app: other");
    let out = c.kubectl_with(KUBECTL_NEW, &["apply", "-f", "-"], Some(&bad));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("spec.template.metadata.labels: Invalid value:") && err.contains("`selector` does not match template `labels`"), "{err}");
    let neg = sts("neg", 1, "nginx", "").replace("replicas: 1", "replicas: -1");
    let out = c.kubectl_with(KUBECTL_NEW, &["apply", "-f", "-"], Some(&neg));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"), "{err}");

    c.apply(KUBECTL_NEW, &sts("ok", 0, "nginx", ""));
    let err = c.fails(&["patch", "statefulset", "ok", "-p", r#"{"spec":{"serviceName":"other"}}"#]);
    assert!(err.contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"), "{err}");
    let err = c.fails(&["patch", "statefulset", "ok", "-p", r#"{"spec":{"updateStrategy":{"type":"OnDelete"}}}"#]);
    assert!(err.contains("spec.updateStrategy.rollingUpdate: Invalid value:") && err.contains("only allowed for updateStrategy 'RollingUpdate'"), "{err}");
    // Pods the API refuses: a Warning event whose count grows with the back-off, no hot loop.
    let broken = sts("broken", 1, "nginx", "").replace("      terminationGracePeriodSeconds: 1\n", "      terminationGracePeriodSeconds: 1\n      priorityClassName: missing\n");
    c.apply(KUBECTL_NEW, &broken);
    let events = wait_for("FailedCreate events over 2 seconds", WAIT, || {
        let list = c.json(&["get", "events", "--field-selector", "involvedObject.name=broken,reason=FailedCreate"]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let e = items.first()?;
        let t = |k: &str| s(e, k).parse::<k8s_openapi::jiff::Timestamp>().ok();
        let span = t("/lastTimestamp")?.duration_since(t("/firstTimestamp")?);
        (span.as_secs() >= 2).then_some(items)
    });
    assert_eq!(events.len(), 1, "one Event, counted: {events:?}");
    let count = events[0]["count"].as_i64().unwrap_or(0);
    assert!((2..=20).contains(&count), "retried with back-off, not hot: {count}");
    assert!(s(&events[0], "/message").starts_with("create Pod broken-0 in StatefulSet broken failed error:"), "{events:?}");
    assert_eq!(s(&events[0], "/type"), "Warning");

    // Defaults as upstream.
    let o = c.json(&["get", "statefulset", "ok"]);
    assert_eq!(s(&o, "/spec/podManagementPolicy"), "OrderedReady");
    assert_eq!(s(&o, "/spec/updateStrategy/rollingUpdate/partition"), "0");
    assert_eq!(s(&o, "/spec/revisionHistoryLimit"), "10");
    assert_eq!(s(&o, "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted"), "Retain");
    assert_eq!(s(&o, "/spec/persistentVolumeClaimRetentionPolicy/whenScaled"), "Retain");
}

/// On a real node: a StatefulSet of 3 with a headless Service starts in order, each pod writes
/// into its own claim (a pre-made hostPath volume); a deleted pod comes back with the same
/// claim (its file is still there) and the same DNS name.
#[test]
fn a_statefulset_of_3_starts_in_order_and_each_pod_keeps_its_claim_and_dns_name() {
    let node = Node::start("sts-real");
    let c = &node.cluster;
    let store = c.data_dir().join("volumes");
    let mut pvs = String::new();
    for i in 0..3 {
        let dir = store.join(format!("pv-{i}"));
        std::fs::create_dir_all(&dir).expect("volume dir");
        pvs.push_str(&format!("---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv-{i}\nspec:\n  storageClassName: \"\"\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n  hostPath:\n    path: {}\n", dir.display()));
    }
    node.apply(&pvs);
    let log = PodLog::start(c, "app=web");
    node.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: web
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox:latest
        command: [sh, -c, 'echo $(hostname) $(date +%s%N) >> /data/log; sleep 3600']
        readinessProbe:
          exec:
            command: [cat, /data/log]
          periodSeconds: 1
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      storageClassName: \"\"
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
",
    );
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    wait_ready(c, "web", 3);
    assert!(log.wait("READY web-0") < log.wait("ADDED web-1"), "{:?}", log.lines());
    assert!(log.wait("READY web-1") < log.wait("ADDED web-2"), "{:?}", log.lines());
    node.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:latest
    command: [sleep, '3600']
",
    );
    node.wait_running("client");
    // What the command printed. kubectl's own stderr is shown, not asserted: client-go logs
    // "Unknown stream id 1, discarding message" when the server's empty "connected" message
    // (sent by upstream's API server too) arrives before it has registered its streams.
    let exec = |pod: &str, cmd: &str| -> String {
        let out = c.kubectl(&["exec", pod, "--", "sh", "-c", cmd]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.is_empty() {
            eprintln!("kubectl exec {pod} -- {cmd}: stderr: {stderr}");
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let lookup = |pod: &str| -> String {
        wait_for(&format!("{pod}.web resolving to its IP"), WAIT, || {
            let ip = node.jsonpath(pod, "{.status.podIP}");
            let out = exec("client", &format!("nslookup {pod}.web.default.svc.cluster.local"));
            (!ip.is_empty() && out.contains(&format!("Address: {ip}"))).then_some(ip)
        })
    };
    for i in 0..3 {
        lookup(&format!("web-{i}"));
    }
    let claim_of = |pod: &str| c.ok(&["get", "pod", pod, "-o", "jsonpath={.spec.volumes[0].persistentVolumeClaim.claimName}"]);
    assert_eq!(claim_of("web-1"), "data-web-1");
    let volume = c.ok(&["get", "pvc", "data-web-1", "-o", "jsonpath={.spec.volumeName}"]);
    assert!(volume.starts_with("pv-"), "{volume}");
    let before = exec("web-1", "cat /data/log");
    assert_eq!(before.lines().count(), 1, "{before}");
    assert!(before.starts_with("web-1 "), "{before}");

    // Delete web-1: it comes back with the same claim (its line is still there, a new one
    // added), the same hostname and a DNS name that follows its new address.
    let uid = c.ok(&["get", "pod", "web-1", "-o", "jsonpath={.metadata.uid}"]);
    c.ok(&["delete", "pod", "web-1"]);
    wait_for("web-1 back and Ready", Duration::from_secs(120), || {
        let out = c.kubectl(&["get", "pod", "web-1", "-o", "jsonpath={.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}"]);
        let o = String::from_utf8_lossy(&out.stdout).into_owned();
        (!o.starts_with(&uid) && o.ends_with("True")).then_some(())
    });
    assert_eq!(claim_of("web-1"), "data-web-1");
    assert_eq!(c.ok(&["get", "pvc", "data-web-1", "-o", "jsonpath={.spec.volumeName}"]), volume);
    let after = exec("web-1", "cat /data/log");
    assert_eq!(after.lines().count(), 2, "{after}");
    assert!(after.starts_with(before.trim_end()), "{before} / {after}");
    assert_eq!(exec("web-1", "hostname").trim(), "web-1");
    lookup("web-1");
    c.ok(&["delete", "pod", "client", "--wait=false"]);
    c.ok(&["delete", "statefulset", "web"]);
}
