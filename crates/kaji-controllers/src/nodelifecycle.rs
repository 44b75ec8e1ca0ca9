//! The node lifecycle controller, as upstream's (pkg/controller/nodelifecycle):
//! - node health: a node is alive while its Lease in `kube-node-lease` (or its Ready condition's
//!   heartbeat) keeps changing. One that has not changed for `node_monitor_grace_period` (as this
//!   controller observes it, so clocks need not agree) has its conditions set to Unknown
//!   ("NodeStatusUnknown", "Kubelet stopped posting node status.") and its pods marked not Ready;
//! - taints from the Ready condition: Unknown -> `node.kubernetes.io/unreachable`, False ->
//!   `node.kubernetes.io/not-ready`, each NoExecute and NoSchedule; removed when Ready again;
//! - taint-based eviction (upstream's NoExecuteTaintManager): a pod on a node with NoExecute
//!   taints is deleted at once if it does not tolerate one, or when the shortest matching
//!   `tolerationSeconds` has passed since the taint was added.

use crate::Options;
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The conditions the controller sets to Unknown on a silent node (upstream's list).
const NODE_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller last saw of a node's heartbeat, and when.
struct Health {
    probe: (Option<String>, Option<String>),
    observed: Instant,
}

/// Registers the informers (nodes, leases, pods) and returns the monitoring loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let nodes = f.informer::<Node>();
    let leases = f.informer::<Lease>();
    let pods = f.informer::<Pod>();
    let client = f.client();
    Box::pin(async move {
        nodes.ready().await;
        leases.ready().await;
        pods.ready().await;
        let (nodes, leases) = (nodes.store(), leases.store());
        let mut controller = NodeLifecycle {
            client: client.clone(),
            grace: opts.node_monitor_grace_period,
            nodes,
            leases,
            pods,
            health: HashMap::new(),
            evicted: HashSet::new(),
            was_ready: HashMap::new(),
            events: Recorder::new(client.clone(), "node-controller"),
            taint_events: Recorder::new(client.clone(), "taint-eviction-controller"),
        };
        // Upstream monitors every 5 s against a 40 s grace; keep that proportion for short test graces.
        let period = (opts.node_monitor_grace_period / 8)
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            controller.monitor_node_health().await;
            controller.evict_by_taints().await;
        }
    })
}

struct NodeLifecycle {
    client: Client,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Arc<Informer<Pod>>,
    health: HashMap<String, Health>,
    /// Pods whose eviction was requested (by uid), so that each is deleted once.
    evicted: HashSet<String>,
    /// Nodes last seen Ready, for the NodeReady / NodeNotReady events on a change.
    was_ready: HashMap<String, bool>,
    events: Recorder,
    taint_events: Recorder,
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

impl NodeLifecycle {
    async fn monitor_node_health(&mut self) {
        let nodes = self.nodes.state();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.health.retain(|n, _| names.contains(n));
        self.was_ready.retain(|n, _| names.contains(n));
        for node in nodes {
            let name = node.name_any();
            let lease = self
                .leases
                .get(&reflector::ObjectRef::new(&name).within(LEASE_NAMESPACE));
            let renew = lease.and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            });
            let heartbeat = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
            let probe = (renew, heartbeat);
            let h = self.health.entry(name.clone()).or_insert_with(|| Health {
                probe: probe.clone(),
                observed: Instant::now(),
            });
            if h.probe != probe {
                h.probe = probe;
                h.observed = Instant::now();
            }
            let silent = h.observed.elapsed() > self.grace;
            let mut ready = ready_status(&node);
            if silent && ready.as_deref() != Some("Unknown") {
                match self.mark_unknown(&node).await {
                    Ok(()) => {
                        tracing::info!(node = %name, "node stopped posting status: Ready=Unknown");
                        ready = Some("Unknown".into());
                        self.mark_pods_not_ready(&name).await;
                    }
                    Err(e) => tracing::warn!(node = %name, error = %e, "marking node Unknown"),
                }
            }
            let is_ready = ready.as_deref() == Some("True");
            if let Some(was) = self.was_ready.insert(name.clone(), is_ready)
                && was != is_ready
            {
                let reason = if is_ready {
                    "NodeReady"
                } else {
                    "NodeNotReady"
                };
                self.events
                    .normal(
                        &reference(node.as_ref()),
                        reason,
                        &format!("Node {name} status is now: {reason}"),
                    )
                    .await;
            }
            if let Err(e) = self.reconcile_taints(&node, ready.as_deref()).await {
                tracing::debug!(node = %name, error = %e, "updating node taints");
            }
        }
    }

    async fn mark_unknown(&self, node: &Node) -> anyhow::Result<()> {
        let now = now_time();
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for ty in NODE_CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == *ty) {
                Some(c) => {
                    if c.status != "Unknown" {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                }
                None => conditions.push(NodeCondition {
                    type_: (*ty).to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                }),
            }
        }
        let api: Api<Node> = Api::all(self.client.clone());
        api.patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await?;
        Ok(())
    }

    /// Upstream MarkPodsNotReady: the pods of an unreachable node are no longer Ready.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self
            .pods
            .state()
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        {
            let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone())
            else {
                continue;
            };
            let Some(ready) = conditions
                .iter_mut()
                .find(|c| c.type_ == "Ready" && c.status == "True")
            else {
                continue;
            };
            ready.status = "False".into();
            ready.last_transition_time = Some(now_time());
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({"status": {"conditions": conditions}});
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::debug!(pod = %pod.name_any(), error = %e, "marking pod not ready");
            }
        }
    }

    async fn reconcile_taints(&self, node: &Node, ready: Option<&str>) -> anyhow::Result<()> {
        let wanted_key = match ready {
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            Some("False") => Some(TAINT_NOT_READY),
            _ => None,
        };
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let ours = |t: &Taint| {
            (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
                && (t.effect == "NoExecute" || t.effect == "NoSchedule")
        };
        let mut next: Vec<Taint> = current
            .iter()
            .filter(|t| !ours(t) || Some(t.key.as_str()) == wanted_key)
            .cloned()
            .collect();
        if let Some(key) = wanted_key {
            for effect in ["NoSchedule", "NoExecute"] {
                if !next.iter().any(|t| t.key == key && t.effect == effect) {
                    let time_added = (effect == "NoExecute").then(now_time);
                    next.push(Taint {
                        key: key.into(),
                        effect: effect.into(),
                        time_added,
                        value: None,
                    });
                }
            }
        }
        if next == current {
            return Ok(());
        }
        tracing::info!(node = %node.name_any(), ready = ?ready, taints = ?next.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "updating node taints");
        let mut updated = node.clone();
        updated.spec.get_or_insert_default().taints = (!next.is_empty()).then_some(next);
        let api: Api<Node> = Api::all(self.client.clone());
        // With the store's resourceVersion: a conflict means a newer node, handled next tick.
        api.replace(&node.name_any(), &PostParams::default(), &updated)
            .await?;
        Ok(())
    }

    async fn evict_by_taints(&mut self) {
        let tainted: HashMap<String, Vec<Taint>> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| {
                let taints: Vec<Taint> = n
                    .spec
                    .as_ref()?
                    .taints
                    .iter()
                    .flatten()
                    .filter(|t| t.effect == "NoExecute")
                    .cloned()
                    .collect();
                (!taints.is_empty()).then(|| (n.name_any(), taints))
            })
            .collect();
        let live: HashSet<String> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.evicted.retain(|uid| live.contains(uid));
        if tainted.is_empty() {
            return;
        }
        let now = jiff::Timestamp::now();
        let candidates: Vec<Arc<Pod>> = tainted.keys().flat_map(|n| self.pods.on_node(n)).collect();
        for pod in candidates {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let Some(taints) = tainted.get(node) else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || self.evicted.contains(&uid) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let Some(due) = eviction_time(taints, &tolerations) else {
                continue;
            };
            if due > now {
                continue;
            }
            tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), node, "taint manager: deleting pod (NoExecute taint, toleration expired)");
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&pod.name_any(), &dp).await {
                Ok(_) => {
                    self.evicted.insert(uid);
                    let msg = format!(
                        "Marking for deletion Pod {}/{}",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any()
                    );
                    self.taint_events
                        .normal(&reference(pod.as_ref()), "TaintManagerEviction", &msg)
                        .await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    self.evicted.insert(uid);
                }
                Err(e) => {
                    tracing::warn!(pod = %pod.name_any(), error = %e, "taint manager eviction")
                }
            }
        }
    }
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// When a pod on a node with these NoExecute taints must go: now if some taint is not
/// tolerated, never (None) if all are tolerated forever, else the earliest expiry of the
/// tolerations in use, counted from when each taint was added.
pub fn eviction_time(taints: &[Taint], tolerations: &[Toleration]) -> Option<jiff::Timestamp> {
    let now = jiff::Timestamp::now();
    let mut due: Option<jiff::Timestamp> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // Upstream: the shortest tolerationSeconds among matching tolerations; none means forever.
        let Some(secs) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = added
            .checked_add(jiff::SignedDuration::from_secs(secs.max(0)))
            .unwrap_or(now);
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(jiff::Timestamp::now())),
            value: None,
        }
    }

    #[test]
    fn untolerated_taint_evicts_now_and_tolerated_waits() {
        let t = [taint(TAINT_UNREACHABLE)];
        assert!(eviction_time(&t, &[]).is_some_and(|d| d <= jiff::Timestamp::now()));
        let forever = Toleration {
            key: Some(TAINT_UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        assert_eq!(eviction_time(&t, &[forever]), None);
        let five = Toleration {
            key: Some(TAINT_UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(5),
            ..Default::default()
        };
        assert!(eviction_time(&t, &[five]).is_some_and(|d| d > jiff::Timestamp::now()));
    }
}
