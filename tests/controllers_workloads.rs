//! The workload controllers (ReplicaSet, Deployment) end to end, driven by stock kubectl.
//!
//! No node runs containers here: a fake node in the test binds pending pods, marks bound pods
//! Running and Ready after a short delay, and finishes graceful deletions, as a kubelet would.
//! The controllers do not know how pods become ready.

mod support;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Cluster, wait_for};

/// The garbage collector is another piece of issue 3; while it is a stub, deleting a
/// ReplicaSet cannot remove its pods, and the test checks their owner references instead.
fn gc_is_stub() -> bool {
    include_str!("../crates/kaji-controllers/src/garbagecollector.rs").contains("(being written)")
}

async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A background tokio runtime running test helpers; stops when dropped.
struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn spawn<F, Fut>(f: F) -> Background
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let local = tokio::task::LocalSet::new();
                local
                    .run_until(async move {
                        tokio::select! {
                            () = f() => {}
                            _ = rx => {}
                        }
                    })
                    .await;
            });
        });
        Background {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Acts as node `n1`: binds pending pods, turns bound pods Running and Ready after
/// `ready_delay`, and confirms graceful deletions at once.
fn fake_node(c: &Cluster, ready_delay: Duration) -> Background {
    let kubeconfig = c.kubeconfig.clone();
    Background::spawn(move || async move {
        let client = client_for(&kubeconfig).await;
        let all: Api<Pod> = Api::all(client.clone());
        let handled: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut pods = watcher(all, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        let mut ip = 10u32;
        while let Some(ev) = pods.next().await {
            let Ok(pod) = ev else { continue };
            let ns = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = api
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
                continue;
            }
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some();
            if !bound {
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"kind": "Node", "name": "n1"}});
                let _: Result<Value, _> = api
                    .create_subresource("binding", &name, &PostParams::default(), &binding)
                    .await;
                continue;
            }
            let key = format!("{ns}/{name}/{}", pod.uid().unwrap_or_default());
            if is_ready(&pod) || !handled.lock().expect("lock").insert(key) {
                continue;
            }
            ip += 1;
            let pod_ip = format!("10.42.{}.{}", ip / 250, ip % 250 + 2);
            tokio::spawn(async move {
                // The simulated container start-up time.
                tokio::time::sleep(ready_delay).await;
                let now = k8s_openapi::jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let cond =
                    |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
                let status = json!({"status": {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                    "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")]}});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            });
        }
    })
}

/// Watches the pods labelled `selector` and records, after every change, how many are not
/// terminating and how many of those are Ready.
struct PodCounter {
    armed: Arc<AtomicBool>,
    max_existing: Arc<AtomicI64>,
    min_ready: Arc<AtomicI64>,
    _bg: Background,
}

fn pod_counter(c: &Cluster, selector: &str) -> PodCounter {
    let kubeconfig = c.kubeconfig.clone();
    let selector = selector.to_string();
    let armed = Arc::new(AtomicBool::new(false));
    let max_existing = Arc::new(AtomicI64::new(0));
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let (a, mx, mn) = (armed.clone(), max_existing.clone(), min_ready.clone());
    let bg = Background::spawn(move || async move {
        let client = client_for(&kubeconfig).await;
        let api: Api<Pod> = Api::namespaced(client, "default");
        let mut state: HashMap<String, (bool, bool)> = HashMap::new();
        let mut events = watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { continue };
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    state.insert(
                        p.name_any(),
                        (p.metadata.deletion_timestamp.is_some(), is_ready(&p)),
                    );
                }
                watcher::Event::Delete(p) => {
                    state.remove(&p.name_any());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            if a.load(Ordering::SeqCst) {
                let existing = state
                    .values()
                    .filter(|(terminating, _)| !terminating)
                    .count() as i64;
                let ready = state
                    .values()
                    .filter(|(terminating, ready)| !terminating && *ready)
                    .count() as i64;
                mx.fetch_max(existing, Ordering::SeqCst);
                mn.fetch_min(ready, Ordering::SeqCst);
            }
        }
    });
    PodCounter {
        armed,
        max_existing,
        min_ready,
        _bg: bg,
    }
}

/// Names of the pods matching `selector` that are not being deleted.
fn live_pods(c: &Cluster, selector: &str) -> Vec<Value> {
    let list = c.json(&["get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn names(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn wait_live_count(c: &Cluster, selector: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} live pods matching {selector}"),
        Duration::from_secs(30),
        || {
            let pods = live_pods(c, selector);
            (pods.len() == n).then_some(pods)
        },
    )
}

const SEED_POD: &str = include_str!("seeds/000-nginx-pod.yaml");
const SEED_RS: &str = include_str!("seeds/000-nginx-replicaset.yaml");

#[test]
fn seed_000_replicaset_adopts_replaces_scales_and_deletes() {
    let c = Cluster::start_with("rs-seed", &["--disable-scheduler"]);
    let _node = fake_node(&c, Duration::from_millis(200));
    c.apply(support::KUBECTL_NEW, SEED_POD);
    c.apply(support::KUBECTL_NEW, SEED_RS);
    let rs = c.json(&["get", "rs", "nginx-replicaset"]);
    let rs_uid = rs["metadata"]["uid"].as_str().expect("uid").to_string();

    // my-first-pod is adopted: two more pods make three.
    let pods = wait_live_count(&c, "component=nginx", 3);
    assert!(
        names(&pods).contains(&"my-first-pod".to_string()),
        "the orphan is one of the 3: {:?}",
        names(&pods)
    );
    wait_for("my-first-pod adopted", Duration::from_secs(20), || {
        let p = c.json(&["get", "pod", "my-first-pod"]);
        let r = &p["metadata"]["ownerReferences"][0];
        (r["uid"] == rs_uid.as_str()
            && r["controller"] == true
            && r["blockOwnerDeletion"] == true
            && r["kind"] == "ReplicaSet")
            .then_some(())
    });
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            name == "my-first-pod"
                || name.starts_with("nginx-replicaset-")
                    && name.len() == "nginx-replicaset-".len() + 5,
            "{name}"
        );
    }
    wait_for("status readyReplicas 3", Duration::from_secs(30), || {
        let rs = c.json(&["get", "rs", "nginx-replicaset"]);
        let s = &rs["status"];
        (s["replicas"] == 3
            && s["readyReplicas"] == 3
            && s["availableReplicas"] == 3
            && s["fullyLabeledReplicas"] == 3
            && s["observedGeneration"] == rs["metadata"]["generation"])
            .then_some(())
    });
    // The controller's writes are recorded under its name, as upstream's User-Agent gives it.
    let rs = c.json(&["get", "rs", "nginx-replicaset", "--show-managed-fields"]);
    let managers: Vec<(String, String)> = rs["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("manager"), s("subresource"))
        })
        .collect();
    assert!(
        managers.contains(&("kube-controller-manager".to_string(), "status".to_string())),
        "{managers:?}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=nginx-replicaset",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Created pod: nginx-replicaset-"),
        "{events}"
    );
    let describe = c.ok(&["describe", "rs", "nginx-replicaset"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");

    // A deleted pod is replaced.
    let victim = names(&pods)
        .into_iter()
        .find(|n| n != "my-first-pod")
        .expect("a created pod");
    c.ok(&["delete", "pod", &victim]);
    let pods = wait_live_count(&c, "component=nginx", 3);
    assert!(!names(&pods).contains(&victim));

    // Replicas 4 then 3 by re-applying; then kubectl scale.
    c.apply(
        support::KUBECTL_NEW,
        &SEED_RS.replace("replicas: 3", "replicas: 4"),
    );
    wait_live_count(&c, "component=nginx", 4);
    c.apply(support::KUBECTL_NEW, SEED_RS);
    wait_live_count(&c, "component=nginx", 3);
    c.ok(&["scale", "rs", "nginx-replicaset", "--replicas=5"]);
    wait_live_count(&c, "component=nginx", 5);
    c.ok(&["scale", "rs", "nginx-replicaset", "--replicas=2"]);
    wait_live_count(&c, "component=nginx", 2);
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=nginx-replicaset",
    ]);
    assert!(
        events.contains("SuccessfulDelete") && events.contains("Deleted pod: "),
        "{events}"
    );

    // A pod whose labels stop matching is released, and replaced.
    let pods = wait_live_count(&c, "component=nginx", 2);
    let released = names(&pods)[0].clone();
    c.ok(&["label", "pod", &released, "component=other", "--overwrite"]);
    wait_for(
        "the relabelled pod released",
        Duration::from_secs(20),
        || {
            c.json(&["get", "pod", &released])["metadata"]["ownerReferences"]
                .is_null()
                .then_some(())
        },
    );
    wait_live_count(&c, "component=nginx", 2);

    // Deleting the ReplicaSet: its pods carry the owner reference the garbage collector follows.
    let pods = live_pods(&c, "component=nginx");
    for p in &pods {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["uid"],
            rs_uid.as_str(),
            "{p}"
        );
    }
    c.ok(&["delete", "replicaset", "nginx-replicaset"]);
    if gc_is_stub() {
        eprintln!(
            "garbage collector not there yet: checked the pods' ownerReferences instead of their removal"
        );
    } else {
        wait_live_count(&c, "component=nginx", 0);
    }
}

fn deployment(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: nginx
        image: {image}
"
    )
}

fn rollout_done(c: &Cluster, name: &str) {
    c.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
}

/// The ReplicaSets of a deployment: (name, spec.replicas, image, revision).
fn replica_sets(c: &Cluster, app: &str) -> Vec<(String, i64, String, String)> {
    let list = c.json(&["get", "rs", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(-1),
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn deployment_image(c: &Cluster, name: &str) -> String {
    c.json(&["get", "deployment", name])["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn deployment_rolls_within_surge_and_unavailability() {
    let c = Cluster::start_with("deploy-roll", &["--disable-scheduler"]);
    let _node = fake_node(&c, Duration::from_millis(300));
    let counter = pod_counter(&c, "app=web");
    c.apply(support::KUBECTL_NEW, &deployment("web", 3, "nginx:1.15"));
    rollout_done(&c, "web");
    wait_live_count(&c, "app=web", 3);
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let rss = replica_sets(&c, "web");
    assert_eq!(rss.len(), 1, "{rss:?}");
    assert!(rss[0].0.starts_with("web-"), "{rss:?}");
    let pod = &live_pods(&c, "app=web")[0];
    let hash = pod["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("pod-template-hash label");
    assert_eq!(rss[0].0, format!("web-{hash}"));

    // From here on: replicas 3, maxSurge 1 (25% rounded up), maxUnavailable 0 (rounded down).
    counter.armed.store(true, Ordering::SeqCst);
    c.apply(support::KUBECTL_NEW, &deployment("web", 3, "nginx:1.16"));
    rollout_done(&c, "web");
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.17"]);
    rollout_done(&c, "web");
    let rss = replica_sets(&c, "web");
    assert_eq!(rss.len(), 3, "{rss:?}");
    for (name, replicas, image, _) in &rss {
        assert_eq!(
            *replicas,
            if image == "nginx:1.17" { 3 } else { 0 },
            "{name}: {rss:?}"
        );
    }
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    for rev in ["1", "2", "3"] {
        assert!(
            history
                .lines()
                .any(|l| l.split_whitespace().next() == Some(rev)),
            "revision {rev} in:\n{history}"
        );
    }

    // Undo to revision 1 brings nginx:1.15 back as revision 4, reusing its ReplicaSet.
    c.ok(&["rollout", "undo", "deployment/web", "--to-revision=1"]);
    rollout_done(&c, "web");
    assert_eq!(deployment_image(&c, "web"), "nginx:1.15");
    let rss = replica_sets(&c, "web");
    assert_eq!(rss.len(), 3, "{rss:?}");
    let back = rss
        .iter()
        .find(|r| r.2 == "nginx:1.15")
        .expect("the 1.15 replica set");
    assert_eq!((back.1, back.3.as_str()), (3, "4"), "{rss:?}");
    wait_for("deployment revision 4", Duration::from_secs(10), || {
        (c.json(&["get", "deployment", "web"])["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4").then_some(())
    });
    let pods = wait_live_count(&c, "app=web", 3);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.15")
    );

    // Restart rolls a new ReplicaSet with the same image.
    c.ok(&["rollout", "restart", "deployment/web"]);
    rollout_done(&c, "web");
    let rss = replica_sets(&c, "web");
    assert_eq!(rss.len(), 4, "{rss:?}");
    assert_eq!(rss.iter().filter(|r| r.1 > 0).count(), 1, "{rss:?}");

    counter.armed.store(false, Ordering::SeqCst);
    let (max, min) = (
        counter.max_existing.load(Ordering::SeqCst),
        counter.min_ready.load(Ordering::SeqCst),
    );
    assert!(
        max <= 4,
        "at most replicas + maxSurge = 4 pods at once, saw {max}"
    );
    assert!(
        min >= 3,
        "at least replicas - maxUnavailable = 3 pods ready at every moment, saw {min}"
    );

    let d = c.json(&["get", "deployment", "web"]);
    let s = &d["status"];
    assert_eq!(
        (
            s["replicas"].as_i64(),
            s["updatedReplicas"].as_i64(),
            s["readyReplicas"].as_i64(),
            s["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3), Some(3)),
        "{s}"
    );
    let cond = |t: &str| {
        s["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or_default()
    };
    assert_eq!(
        (
            cond("Available")["status"].as_str(),
            cond("Available")["reason"].as_str()
        ),
        (Some("True"), Some("MinimumReplicasAvailable"))
    );
    assert_eq!(
        cond("Progressing")["reason"],
        "NewReplicaSetAvailable",
        "{s}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("Scaled up replica set web-"),
        "{events}"
    );
}

#[test]
fn deployment_scale_down_with_image_change_converges() {
    let c = Cluster::start_with("deploy-5to1", &["--disable-scheduler"]);
    let _node = fake_node(&c, Duration::from_millis(200));
    c.apply(support::KUBECTL_NEW, &deployment("shrink", 5, "nginx:1.15"));
    rollout_done(&c, "shrink");
    wait_live_count(&c, "app=shrink", 5);
    c.apply(support::KUBECTL_NEW, &deployment("shrink", 1, "nginx:1.16"));
    rollout_done(&c, "shrink");
    let pods = wait_live_count(&c, "app=shrink", 1);
    assert_eq!(pods[0]["spec"]["containers"][0]["image"], "nginx:1.16");
    let rss = replica_sets(&c, "shrink");
    for (name, replicas, image, _) in &rss {
        assert_eq!(
            *replicas,
            i64::from(image == "nginx:1.16"),
            "{name}: {rss:?}"
        );
    }
}

#[test]
fn deployment_recreate_pause_and_history_limit() {
    let c = Cluster::start_with("deploy-recreate", &["--disable-scheduler"]);
    let _node = fake_node(&c, Duration::from_millis(100));
    let manifest = |image: &str| {
        deployment("re", 2, image).replace(
            "spec:\n  replicas: 2\n",
            "spec:\n  replicas: 2\n  revisionHistoryLimit: 1\n  strategy:\n    type: Recreate\n",
        )
    };
    c.apply(support::KUBECTL_NEW, &manifest("nginx:1.15"));
    rollout_done(&c, "re");
    c.apply(support::KUBECTL_NEW, &manifest("nginx:1.16"));
    rollout_done(&c, "re");
    c.apply(support::KUBECTL_NEW, &manifest("nginx:1.17"));
    rollout_done(&c, "re");
    // revisionHistoryLimit 1: the oldest ReplicaSet is removed.
    wait_for(
        "history trimmed to 1 old replica set",
        Duration::from_secs(20),
        || {
            let rss = replica_sets(&c, "re");
            (rss.len() == 2 && rss.iter().any(|r| r.2 == "nginx:1.17" && r.1 == 2)).then_some(())
        },
    );

    // Paused: a template change rolls nothing until resumed; scaling still works.
    c.ok(&["rollout", "pause", "deployment/re"]);
    c.ok(&["set", "image", "deployment/re", "nginx=nginx:1.18"]);
    c.ok(&["scale", "deployment/re", "--replicas=3"]);
    wait_live_count(&c, "app=re", 3);
    wait_for(
        "Progressing DeploymentPaused",
        Duration::from_secs(10),
        || {
            let d = c.json(&["get", "deployment", "re"]);
            d["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
                .then_some(())
        },
    );
    assert!(replica_sets(&c, "re").iter().all(|r| r.2 != "nginx:1.18"));
    c.ok(&["rollout", "resume", "deployment/re"]);
    rollout_done(&c, "re");
    let pods = wait_live_count(&c, "app=re", 3);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.18")
    );
}
