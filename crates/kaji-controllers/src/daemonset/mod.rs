//! The DaemonSet controller, as upstream pkg/controller/daemon (1.33).
//!
//! For each DaemonSet: find (or create) the ControllerRevision of its template (`history`), claim
//! its pods and group them by the node they are on or pinned to, then make one pod run on each
//! eligible node (`predicates`: node selector, required node affinity, taints against the
//! template's tolerations plus those upstream adds to every daemon pod). A missing pod is created
//! unbound, pinned to its node by a required node affinity `metadata.name In [node]`, and bound
//! by the scheduler (as upstream since 1.12). Pods on nodes that no longer want one, or whose
//! node is gone, are deleted, as are failed pods (with a per-node back-off) and duplicates.
//! `update` replaces old pods by RollingUpdate (maxUnavailable / maxSurge) or leaves that to the
//! user (OnDelete); old revisions beyond `revisionHistoryLimit` are deleted; the counts go to the
//! status subresource.
//!
//! Pods, nodes and DaemonSets are read from the process's shared informers; a pod change
//! requeues its DaemonSet, a node that appears, goes or changes labels or taints requeues every
//! DaemonSet. Expectations (as the ReplicaSet controller's) keep a slow pod watch from causing
//! double creates.

pub mod predicates;
mod update;

use crate::Options;
use crate::history::{self, History, POD_REVISION_LABEL};
use crate::replicaset::ownership::{self, Claim};
use crate::replicaset::pods;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kaji_api::selector::LabelSelector as Selector;
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Change, Factory, Informer};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use predicates::Fit;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMPONENT: &str = "daemonset-controller";
/// The template generation label of daemon pods (upstream `DaemonSetTemplateGenerationKey`).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation the API server keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// At most this many pods are created or deleted in one sync (upstream `BurstReplicas`).
const BURST_REPLICAS: usize = 250;
/// Workers (upstream `--concurrent-daemonset-syncs`, 2).
const CONCURRENCY: u16 = 2;
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);
const RESYNC: Duration = Duration::from_secs(300);
/// Back-off of replacing failed daemon pods on one node (upstream `failedPodsBackoff`).
const FAILED_BACKOFF_BASE: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Pod creations and deletions a DaemonSet waits to see in the pod cache.
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

pub(crate) struct Context {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    daemonsets: Store<DaemonSet>,
    history: History,
    recorder: Recorder,
    expectations: Mutex<HashMap<ObjectRef<DaemonSet>, Pending>>,
    /// Per `<ds uid>/<node>`: when a failed pod there may be replaced again, and the delay.
    failed_backoff: Mutex<HashMap<String, (Instant, Duration)>>,
}

/// Registers the informers (DaemonSets, pods, nodes, ControllerRevisions) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let dss = f.informer::<DaemonSet>();
    let pods = f.informer::<Pod>();
    let nodes = f.informer::<Node>();
    let history = History::new(f);
    let daemonsets = dss.store();
    let pod_triggers = {
        let store = daemonsets.clone();
        pods.objects()
            .flat_map(move |pod| futures::stream::iter(owners_of(&store, &pod)))
    };
    let node_triggers = {
        let store = daemonsets.clone();
        let mut seen: HashMap<String, String> = HashMap::new();
        nodes.subscribe().flat_map(move |change| {
            let node = change.object();
            let name = node.name_any();
            let changed = match &change {
                Change::Deleted(_) => seen.remove(&name).is_some(),
                Change::Applied(n) => {
                    let print = fingerprint(n);
                    seen.insert(name, print.clone()) != Some(print)
                }
            };
            let all: Vec<ObjectRef<DaemonSet>> = if changed {
                store
                    .state()
                    .iter()
                    .map(|d| ObjectRef::from_obj(d.as_ref()))
                    .collect()
            } else {
                Vec::new()
            };
            futures::stream::iter(all)
        })
    };
    let controller = controller::for_informer(&dss)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .reconcile_on(pod_triggers)
        .reconcile_on(node_triggers);
    let ctx = Arc::new(Context {
        client: f.client(),
        pods,
        nodes,
        daemonsets,
        history,
        recorder: Recorder::new(f.client(), COMPONENT),
        expectations: Mutex::new(HashMap::new()),
        failed_backoff: Mutex::new(HashMap::new()),
    });
    controller::run(COMPONENT, f, controller, reconcile, ctx)
}

/// What of a node decides where daemon pods go (upstream's shouldIgnoreNodeUpdate looks at
/// everything but status; labels, taints and unschedulable are what the predicates read).
fn fingerprint(n: &Node) -> String {
    json!([
        n.metadata.labels,
        n.spec.as_ref().and_then(|s| s.taints.clone()),
        n.spec.as_ref().and_then(|s| s.unschedulable)
    ])
    .to_string()
}

/// The DaemonSets a pod change concerns: its controller, or for an orphan every DaemonSet of
/// its namespace whose selector matches it.
fn owners_of(store: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = ownership::controller_of(&pod.metadata) {
        if r.kind == "DaemonSet" {
            return vec![ObjectRef::new(&r.name).within(&ns)];
        }
        return vec![];
    }
    store
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            selector_of(d).is_some_and(|s| {
                !s.is_empty() && ownership::matches(&s, pod.metadata.labels.as_ref())
            })
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn selector_of(ds: &DaemonSet) -> Option<Selector> {
    ownership::selector(&ds.spec.as_ref()?.selector)
}

fn template_of(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// The template generation (the annotation the API server keeps; else the generation).
fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.annotations()
        .get(TEMPLATE_GENERATION_ANNOTATION)
        .and_then(|v| v.parse().ok())
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// The pod spec a new daemon pod would have (template plus daemon tolerations), what the
/// predicates judge nodes by.
fn daemon_pod_spec(ds: &DaemonSet) -> k8s_openapi::api::core::v1::PodSpec {
    let mut spec = template_of(ds).spec.unwrap_or_default();
    predicates::add_daemon_tolerations(&mut spec);
    spec
}

/// Upstream `IsPodUpdated`: the pod carries the current revision's hash or template generation.
fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.labels();
    let by_generation = generation.is_some_and(|g| {
        labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str) == Some(&g.to_string())
    });
    let by_hash =
        !hash.is_empty() && labels.get(POD_REVISION_LABEL).map(String::as_str) == Some(hash);
    by_hash || by_generation
}

/// Upstream `podByCreationTimestampAndPhase`: bound pods first, then the oldest.
fn by_age(a: &Arc<Pod>, b: &Arc<Pod>) -> std::cmp::Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Context {
    fn expectations_met(&self, key: &ObjectRef<DaemonSet>, ns: &str) -> bool {
        let Ok(mut map) = self.expectations.lock() else {
            return true;
        };
        let Some(p) = map.get(key) else { return true };
        let seen = |name: &str| self.pods.get(&ObjectRef::new(name).within(ns));
        let created = p.creates.iter().all(|n| seen(n).is_some());
        let deleted = p
            .deletes
            .iter()
            .all(|n| seen(n).is_none_or(|pod| pod.metadata.deletion_timestamp.is_some()));
        if (created && deleted) || p.since.elapsed() > EXPECTATIONS_TIMEOUT {
            map.remove(key);
            return true;
        }
        false
    }

    fn expect(
        &self,
        key: &ObjectRef<DaemonSet>,
        creates: HashSet<String>,
        deletes: HashSet<String>,
    ) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        if let Ok(mut map) = self.expectations.lock() {
            map.insert(
                key.clone(),
                Pending {
                    creates,
                    deletes,
                    since: Instant::now(),
                },
            );
        }
    }

    /// The DaemonSet's pods (claimed: kept, adopted, released as upstream's
    /// `PodControllerRefManager`), grouped by the node they are on or pinned to. Terminal pods
    /// being deleted are left out unless `with_deleted_terminal`.
    async fn node_to_pods(
        &self,
        ds: &DaemonSet,
        sel: &Selector,
        with_deleted_terminal: bool,
    ) -> BTreeMap<String, Vec<Arc<Pod>>> {
        let ns = ds.namespace().unwrap_or_default();
        let uid = ds.uid().unwrap_or_default();
        let deleting = ds.meta().deletion_timestamp.is_some();
        let owner_ref = ownership::controller_ref("apps/v1", "DaemonSet", ds.meta());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut out: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in self.pods.claimable(&ns, &uid) {
            let pod = match ownership::claim(&uid, deleting, sel, &pod.metadata) {
                Claim::Keep => pod,
                claim => match ownership::settle(&api, pod.as_ref(), claim, &owner_ref).await {
                    Some(p) => Arc::new(p),
                    None => continue,
                },
            };
            if !with_deleted_terminal
                && is_terminal(&pod)
                && pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            if let Some(node) = predicates::target_node(&pod) {
                out.entry(node).or_default().push(pod);
            }
        }
        for pods in out.values_mut() {
            pods.sort_by(by_age);
        }
        out
    }

    /// Whether a failed pod on `key`'s node may be replaced now (and, if so, the back-off of
    /// the next one grows); else how long to wait.
    fn failed_backoff(&self, key: &str) -> Result<(), Duration> {
        let Ok(mut map) = self.failed_backoff.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        match map.get(key).copied() {
            Some((until, _)) if until > now => Err(until - now),
            Some((_, delay)) => {
                let next = (delay * 2).min(FAILED_BACKOFF_MAX);
                map.insert(key.to_string(), (now + next, next));
                Ok(())
            }
            None => {
                map.insert(
                    key.to_string(),
                    (now + FAILED_BACKOFF_BASE, FAILED_BACKOFF_BASE),
                );
                Ok(())
            }
        }
    }
}

/// What one node needs (upstream `podsShouldBeOnNode`).
struct NodeNeeds {
    create: bool,
    delete: Vec<Arc<Pod>>,
    /// A failed pod waits for its back-off: look again after this long.
    retry_in: Option<Duration>,
}

async fn pods_should_be_on_node(
    ctx: &Context,
    ds: &DaemonSet,
    node: &Node,
    fit: Fit,
    pods: Option<&Vec<Arc<Pod>>>,
    hash: &str,
) -> NodeNeeds {
    let mut needs = NodeNeeds {
        create: false,
        delete: Vec::new(),
        retry_in: None,
    };
    let node_name = node.name_any();
    match pods {
        None if fit.should_run => needs.create = true,
        None => {}
        Some(pods) if fit.should_continue_running => {
            let mut running: Vec<Arc<Pod>> = Vec::new();
            for pod in pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                    Some("Failed") => {
                        let key = format!("{}/{node_name}", ds.uid().unwrap_or_default());
                        match ctx.failed_backoff(&key) {
                            Err(wait) => needs.retry_in = Some(wait),
                            Ok(()) => {
                                let msg = format!(
                                    "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                                    pod.namespace().unwrap_or_default(),
                                    pod.name_any()
                                );
                                ctx.recorder
                                    .warning(&reference(ds), "FailedDaemonPod", &msg)
                                    .await;
                                needs.delete.push(pod.clone());
                            }
                        }
                    }
                    Some("Succeeded") => needs.delete.push(pod.clone()),
                    _ => running.push(pod.clone()),
                }
            }
            if !update::allows_surge(ds) {
                // More than one running pod: keep the oldest.
                needs.delete.extend(running.iter().skip(1).cloned());
            } else if running.is_empty() {
                // Surging: a node must keep one pod that is not being deleted.
                needs.create = fit.should_run;
            } else if running.len() > 1 {
                // Surging: keep the oldest new pod, and the oldest old one only while the new
                // one is not available yet and the old one is ready.
                let mut oldest_new: Option<&Arc<Pod>> = None;
                let mut oldest_old: Option<&Arc<Pod>> = None;
                for pod in &running {
                    let slot =
                        if pod.labels().get(POD_REVISION_LABEL).map(String::as_str) == Some(hash) {
                            &mut oldest_new
                        } else {
                            &mut oldest_old
                        };
                    if slot.is_none() {
                        *slot = Some(pod);
                    } else {
                        needs.delete.push(pod.clone());
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                    let now = jiff::Timestamp::now();
                    if !pods::is_ready(old) || pods::is_available(new, min_ready_seconds(ds), now) {
                        needs.delete.push(old.clone());
                    }
                }
            }
        }
        Some(pods) => {
            needs.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .cloned(),
            );
        }
    }
    needs
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(ds.as_ref());
    let Some(ds) = ctx.daemonsets.get(&key) else {
        if let Ok(mut m) = ctx.expectations.lock() {
            m.remove(&key);
        }
        return Ok(Action::await_change());
    };
    ctx.pods.ready().await;
    ctx.nodes.ready().await;
    let ns = ds.namespace().unwrap_or_default();
    let Some(sel) = selector_of(&ds) else {
        tracing::warn!(name = %ds.name_any(), "invalid selector; nothing to manage");
        return Ok(Action::await_change());
    };
    if sel.is_empty() {
        ctx.recorder
            .warning(
                &reference(ds.as_ref()),
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            )
            .await;
        return Ok(Action::await_change());
    }
    if ds.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }

    // The current revision (created when the template is new) and the old ones.
    let (cur, old, collision_count) = update::construct_history(&ctx, &ds, &sel).await?;
    let hash = revision_hash(&ds, &cur);
    let nodes = ctx.nodes.state();

    let mut retry: Option<Duration> = None;
    let mut result: Result<(), controller::Error> = Ok(());
    if ctx.expectations_met(&key, &ns) {
        match manage(&ctx, &ds, &key, &sel, &nodes, &hash).await {
            Ok(r) => retry = r,
            Err(e) => result = Err(e),
        }
        if result.is_ok()
            && ctx.expectations_met(&key, &ns)
            && update::is_rolling_update(&ds)
            && let Err(e) = update::rolling_update(&ctx, &ds, &key, &sel, &nodes, &hash).await
        {
            result = Err(e);
        }
        if result.is_ok() {
            update::cleanup_history(&ctx, &ds, &sel, &old).await?;
        }
    }

    let next = update_status(&ctx, &ds, &sel, &nodes, &hash, collision_count).await?;
    result?;
    let wait = [retry, next].into_iter().flatten().min().unwrap_or(RESYNC);
    Ok(Action::requeue(wait.max(Duration::from_secs(1))))
}

/// The hash of the current revision: its `controller-revision-hash` label, else its name's
/// suffix (what upstream labels revisions without the label with).
fn revision_hash(ds: &DaemonSet, cur: &ControllerRevision) -> String {
    if let Some(h) = cur.labels().get(POD_REVISION_LABEL) {
        return h.clone();
    }
    let name = cur.name_any();
    name.strip_prefix(&format!("{}-", ds.name_any()))
        .unwrap_or(&name)
        .to_string()
}

/// Upstream `manage`: which nodes need a pod and which pods must go, then `sync_nodes`.
async fn manage(
    ctx: &Context,
    ds: &DaemonSet,
    key: &ObjectRef<DaemonSet>,
    sel: &Selector,
    nodes: &[Arc<Node>],
    hash: &str,
) -> Result<Option<Duration>, controller::Error> {
    let node_to_pods = ctx.node_to_pods(ds, sel, false).await;
    let spec = daemon_pod_spec(ds);
    let mut create_on = Vec::new();
    let mut delete: Vec<(Arc<Pod>, bool)> = Vec::new();
    let mut retry = None;
    let mut known = HashSet::new();
    for node in nodes {
        let name = node.name_any();
        let fit = predicates::node_should_run(&spec, node);
        let needs = pods_should_be_on_node(ctx, ds, node, fit, node_to_pods.get(&name), hash).await;
        if needs.create {
            create_on.push(name.clone());
        }
        delete.extend(needs.delete.into_iter().map(|p| (p, false)));
        retry = [retry, needs.retry_in].into_iter().flatten().min();
        known.insert(name);
    }
    // Pods of nodes that are gone: unbound ones as upstream, bound ones as its pod GC would
    // (at once: no kubelet is left to finish a graceful deletion).
    for (node, pods) in &node_to_pods {
        if !known.contains(node) {
            delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| (p.clone(), true)),
            );
        }
    }
    sync_nodes(ctx, ds, key, delete, create_on, hash).await?;
    Ok(retry)
}

/// The pod a daemon pod is made from (upstream `CreatePodTemplate`): the template with the
/// daemon tolerations, the template generation and the revision hash.
fn new_pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = template_of(ds);
    let spec = t.spec.get_or_insert_with(Default::default);
    predicates::add_daemon_tolerations(spec);
    let meta = t.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(POD_REVISION_LABEL.into(), hash.to_string());
    }
    t
}

/// Upstream `syncNodes`: deletes `delete` and creates a pod pinned to each node of
/// `create_on` (slow start: batches of 1, 2, 4, ...), recording events and expectations.
/// Each deletion says whether it is forced (grace period 0).
async fn sync_nodes(
    ctx: &Context,
    ds: &DaemonSet,
    key: &ObjectRef<DaemonSet>,
    mut delete: Vec<(Arc<Pod>, bool)>,
    mut create_on: Vec<String>,
    hash: &str,
) -> Result<(), controller::Error> {
    create_on.truncate(BURST_REPLICAS);
    delete.truncate(BURST_REPLICAS);
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let obj_ref = reference(ds);
    let template = new_pod_template(ds, hash);
    let owner = ownership::controller_ref("apps/v1", "DaemonSet", ds.meta());
    let mut failure: Option<kube::Error> = None;

    let mut created = HashSet::new();
    let mut batch = 1;
    let mut rest = create_on.as_slice();
    while !rest.is_empty() && failure.is_none() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        rest = later;
        batch *= 2;
        let results = futures::future::join_all(now.iter().map(|node| {
            let pod = pod_for_node(ds, &template, &owner, node);
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .await;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.name_any();
                    ctx.recorder
                        .normal(
                            &obj_ref,
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await;
                    created.insert(name);
                }
                Err(e) => {
                    ctx.recorder
                        .warning(&obj_ref, "FailedCreate", &format!("Error creating: {e}"))
                        .await;
                    failure = Some(e);
                }
            }
        }
    }

    let (deleted, delete_failure) = crate::pod_control::delete_pods(
        &api,
        &ctx.recorder,
        &obj_ref,
        delete.iter().map(|(p, force)| {
            let dp = if *force {
                DeleteParams::default().grace_period(0)
            } else {
                DeleteParams::default()
            };
            (p.name_any(), dp)
        }),
    )
    .await;
    let failure = delete_failure.or(failure);
    ctx.expect(key, created, deleted);
    match failure {
        Some(e) => Err(anyhow::Error::new(e).context("syncing daemon pods").into()),
        None => Ok(()),
    }
}

/// A daemon pod for `node` (upstream `GetPodFromTemplate` with the node affinity replaced).
fn pod_for_node(
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    node: &str,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.affinity = Some(predicates::pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Upstream `updateDaemonSetStatus`; returns when to look again (a ready pod becoming
/// available after minReadySeconds).
async fn update_status(
    ctx: &Context,
    ds: &DaemonSet,
    sel: &Selector,
    nodes: &[Arc<Node>],
    hash: &str,
    collision_count: i32,
) -> Result<Option<Duration>, controller::Error> {
    let node_to_pods = ctx.node_to_pods(ds, sel, true).await;
    let spec = daemon_pod_spec(ds);
    let now = jiff::Timestamp::now();
    let min_ready = min_ready_seconds(ds);
    let generation = template_generation(ds);
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
        (0i32, 0i32, 0i32, 0i32, 0i32, 0i32);
    let mut next: Option<i64> = None;
    for node in nodes {
        let fit = predicates::node_should_run(&spec, node);
        let pods = node_to_pods.get(&node.name_any()).filter(|p| !p.is_empty());
        if fit.should_run {
            desired += 1;
            let Some(pods) = pods else { continue };
            current += 1;
            let pod = &pods[0];
            if pods::is_ready(pod) {
                ready += 1;
                if pods::is_available(pod, min_ready, now) {
                    available += 1;
                } else if let Some(s) = pods::seconds_until_available(pod, min_ready, now) {
                    next = Some(next.map_or(s, |n| n.min(s)));
                }
            }
            if is_updated(pod, hash, generation) {
                updated += 1;
            }
        } else if pods.is_some() {
            misscheduled += 1;
        }
    }
    let nz = |v: i32| if v == 0 { Value::Null } else { json!(v) };
    let want = json!({
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": ds.meta().generation,
        "updatedNumberScheduled": nz(updated),
        "numberAvailable": nz(available),
        "numberUnavailable": nz(desired - available),
    });
    let st = ds.status.clone().unwrap_or_default();
    let have = json!({
        "currentNumberScheduled": st.current_number_scheduled,
        "numberMisscheduled": st.number_misscheduled,
        "desiredNumberScheduled": st.desired_number_scheduled,
        "numberReady": st.number_ready,
        "observedGeneration": st.observed_generation,
        "updatedNumberScheduled": nz(st.updated_number_scheduled.unwrap_or(0)),
        "numberAvailable": nz(st.number_available.unwrap_or(0)),
        "numberUnavailable": nz(st.number_unavailable.unwrap_or(0)),
    });
    let cc_changed = st.collision_count.unwrap_or(0) != collision_count;
    if want != have || cc_changed {
        let mut patch = want;
        if cc_changed {
            patch["collisionCount"] = json!(collision_count);
        }
        let api: Api<DaemonSet> =
            Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
        api.patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": patch })),
        )
        .await?;
    }
    Ok(next.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(1).max(1))))
}

/// A DaemonSet's revision candidate: the template patch with the DaemonSet's annotations, the
/// template's labels and the hash label (upstream `snapshot`).
fn candidate_revision(
    ds: &DaemonSet,
    revision: i64,
    collision_count: i32,
) -> anyhow::Result<ControllerRevision> {
    let data = history::template_patch(ds)?;
    let hash = history::hash_revision(&data, Some(collision_count));
    let mut labels = template_of(ds)
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    labels.insert(POD_REVISION_LABEL.into(), hash.clone());
    Ok(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(history::revision_name(&ds.name_any(), &hash)),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![ownership::controller_ref(
                "apps/v1",
                "DaemonSet",
                ds.meta(),
            )]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updated_pods_carry_the_hash_or_the_generation() {
        let pod = |labels: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels}}))
                .expect("pod")
        };
        assert!(is_updated(
            &pod(json!({"controller-revision-hash": "abc"})),
            "abc",
            None
        ));
        assert!(is_updated(
            &pod(json!({"pod-template-generation": "2"})),
            "x",
            Some(2)
        ));
        assert!(!is_updated(
            &pod(json!({"pod-template-generation": "1", "controller-revision-hash": "old"})),
            "new",
            Some(2)
        ));
    }

    #[test]
    fn new_pods_get_labels_tolerations_and_a_node_pin() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "u1",
                "annotations": {"deprecated.daemonset.template.generation": "3"}},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
        .expect("ds");
        let t = new_pod_template(&ds, "h1");
        let owner = ownership::controller_ref("apps/v1", "DaemonSet", ds.meta());
        let pod = pod_for_node(&ds, &t, &owner, "n1");
        let labels = pod.labels();
        assert_eq!(
            labels.get("pod-template-generation").map(String::as_str),
            Some("3")
        );
        assert_eq!(
            labels.get("controller-revision-hash").map(String::as_str),
            Some("h1")
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(predicates::target_node(&pod).as_deref(), Some("n1"));
        assert_eq!(
            pod.spec
                .as_ref()
                .and_then(|s| s.tolerations.as_ref())
                .map(Vec::len),
            Some(6)
        );
        let rev = candidate_revision(&ds, 1, 0).expect("revision");
        let hash = rev
            .labels()
            .get(POD_REVISION_LABEL)
            .cloned()
            .expect("hash label");
        assert_eq!(rev.name_any(), format!("agent-{hash}"));
        assert_eq!(revision_hash(&ds, &rev), hash);
    }
}
