//! The pod garbage collector, as upstream pkg/controller/podgc: every `period` (upstream 20 s) it
//! - deletes the oldest terminated pods (Succeeded or Failed) beyond `terminated_threshold`
//!   (`--terminated-pod-gc-threshold`, upstream's default 12,500; 0 turns this off);
//! - deletes pods bound to a node that no longer exists (orphans): a node missing from the cache
//!   is quarantined for `quarantine` (upstream 40 s) and then asked for once more, so a node that
//!   is only slow to appear in the cache keeps its pods. A non-terminal orphan is first marked
//!   Failed with the `DisruptionTarget` condition (reason `DeletionByPodGC`, "PodGC: node no
//!   longer exists") as upstream, then force-deleted (grace period 0: no kubelet will confirm);
//! - force-deletes terminating pods that were never scheduled;
//! - force-deletes terminating pods on a NotReady node tainted `node.kubernetes.io/out-of-service`
//!   (non-graceful node shutdown), marking them Failed first.
//!
//! Not a keyed controller: like upstream, one periodic pass over the informers' caches.

use crate::Options;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMPONENT: &str = "pod-garbage-collector";
const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// The pod GC's settings, with upstream's defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Terminated pods kept before the oldest are deleted (0: keep all).
    pub terminated_threshold: usize,
    /// How often a pass runs.
    pub period: Duration,
    /// How long a node must be missing before its pods count as orphans.
    pub quarantine: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            terminated_threshold: 12_500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let pods = f.informer::<Pod>();
    let nodes = f.informer::<Node>();
    let client = f.client();
    let settings = opts.pod_gc;
    let factory = f.clone();
    Box::pin(async move {
        factory.synced().await;
        let mut gc = PodGc {
            client,
            pods,
            nodes,
            settings,
            missing_since: HashMap::new(),
        };
        let mut tick = tokio::time::interval(gc.settings.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            gc.pass().await;
        }
    })
}

struct PodGc {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    settings: Settings,
    /// Nodes that pods name but the cache lacks, and since when.
    missing_since: HashMap<String, Instant>,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminal(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The terminated pods to delete: the oldest (by creation time) beyond `threshold`.
pub fn excess_terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    done.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.metadata.name.clone(),
        )
    });
    let n = done.len() - threshold;
    done.into_iter().take(n).cloned().collect()
}

impl PodGc {
    async fn pass(&mut self) {
        let pods = self.pods.state();
        for p in excess_terminated(&pods, self.settings.terminated_threshold) {
            tracing::info!(pod = %key(&p), "deleting a terminated pod beyond the threshold");
            self.force_delete(&p, None).await;
        }

        // Orphans: pods on nodes that stay missing for the quarantine time.
        let known: HashSet<String> = self.nodes.state().iter().map(|n| n.name_any()).collect();
        let named: HashSet<&str> = pods
            .iter()
            .map(|p| node_name(p))
            .filter(|n| !n.is_empty() && !known.contains(*n))
            .collect();
        self.missing_since.retain(|n, _| named.contains(n.as_str()));
        let now = Instant::now();
        let mut gone = HashSet::new();
        for n in named {
            let since = *self.missing_since.entry(n.to_string()).or_insert(now);
            if now.duration_since(since) < self.settings.quarantine {
                continue;
            }
            // Ask the API server itself: the cache may be behind.
            match Api::<Node>::all(self.client.clone()).get_opt(n).await {
                Ok(None) => {
                    gone.insert(n.to_string());
                }
                Ok(Some(_)) => {
                    self.missing_since.remove(n);
                }
                Err(e) => tracing::warn!(node = n, error = %e, "checking whether a node exists"),
            }
        }
        for p in pods.iter().filter(|p| gone.contains(node_name(p))) {
            tracing::info!(pod = %key(p), node = node_name(p), "found an orphaned pod assigned to a deleted node, deleting");
            self.force_delete(p, Some("PodGC: node no longer exists"))
                .await;
        }

        // Terminating pods that never reached a node.
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
        {
            tracing::info!(pod = %key(p), "force-deleting an unscheduled terminating pod");
            self.force_delete(p, None).await;
        }

        // Terminating pods on out-of-service nodes that are not Ready.
        let out_of_service: HashSet<String> = self
            .nodes
            .state()
            .iter()
            .filter(|n| out_of_service_and_not_ready(n))
            .map(|n| n.name_any())
            .collect();
        if !out_of_service.is_empty() {
            for p in pods.iter().filter(|p| {
                p.metadata.deletion_timestamp.is_some() && out_of_service.contains(node_name(p))
            }) {
                tracing::info!(pod = %key(p), node = node_name(p), "force-deleting a terminating pod on an out-of-service node");
                self.force_delete(p, Some("PodGC: node is out-of-service"))
                    .await;
            }
        }
    }

    /// Marks a non-terminal pod Failed with the DisruptionTarget condition (when `why` is
    /// given), then deletes it with grace period 0, only if it is still the same pod.
    async fn force_delete(&self, p: &Pod, why: Option<&str>) {
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let name = p.name_any();
        if let Some(msg) = why
            && !terminal(p)
        {
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let patch = json!({"status": {
                "phase": "Failed",
                "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                                "message": msg, "lastTransitionTime": now}],
            }});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404)
            {
                tracing::warn!(pod = %key(p), error = %e, "marking a pod Failed before deleting it");
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: p.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(component = COMPONENT, pod = %key(p), error = %e, "deleting a pod")
            }
        }
    }
}

fn out_of_service_and_not_ready(n: &Node) -> bool {
    let tainted = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    tainted && !ready
}

fn key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
                "spec": {"containers": []},
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn deletes_the_oldest_terminated_pods_beyond_the_threshold() {
        let pods = vec![
            pod("c", "2024-01-01T00:00:03Z", "Succeeded"),
            pod("a", "2024-01-01T00:00:01Z", "Failed"),
            pod("r", "2024-01-01T00:00:00Z", "Running"),
            pod("b", "2024-01-01T00:00:02Z", "Succeeded"),
        ];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(excess_terminated(&pods, 1)), ["a", "b"]);
        assert_eq!(names(excess_terminated(&pods, 3)), Vec::<String>::new());
        assert_eq!(names(excess_terminated(&pods, 0)), Vec::<String>::new());
    }
}
