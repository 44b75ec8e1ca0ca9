//! The control loop: reflectors for Ingresses, IngressClasses, Services, EndpointSlices and
//! Secrets; any change rebuilds the [`Snapshot`] (debounced) and a status writer keeps each served
//! Ingress's `status.loadBalancer` pointing at the node.

use crate::class;
use crate::events::{self, Problem};
use crate::snapshot::{ClusterState, Snapshot, SnapshotHandle};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use kaji_runtime::informer::{Factory, Informer};
use kaji_runtime::watch::reflect;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Coalesces bursts (an EndpointSlice per pod during a rollout) into one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(100);

struct Stores {
    ingresses: Arc<Informer<Ingress>>,
    classes: Arc<Informer<IngressClass>>,
    services: Arc<Informer<Service>>,
    slices: Arc<Informer<EndpointSlice>>,
    secrets: Arc<Informer<Secret>>,
}

/// Runs the control loop until the process ends.
pub async fn run(
    factory: &Factory,
    class_name: String,
    node_ips: Vec<IpAddr>,
    snapshot: SnapshotHandle,
) -> anyhow::Result<()> {
    let changed = Arc::new(Notify::new());
    let all = watcher::Config::default;
    let stores = Stores {
        ingresses: reflect(factory, all(), changed.clone()),
        classes: reflect(factory, all(), changed.clone()),
        services: reflect(factory, all(), changed.clone()),
        slices: reflect(factory, all(), changed.clone()),
        secrets: reflect(factory, all(), changed.clone()),
    };
    let client = factory.client();
    let recorder = kaji_runtime::events::Recorder::new(client.clone(), events::COMPONENT);
    // Serving 404s from half-listed caches at start would be wrong; wait for every list.
    stores.ingresses.ready().await;
    stores.classes.ready().await;
    stores.services.ready().await;
    stores.slices.ready().await;
    stores.secrets.ready().await;
    tracing::info!(class = class_name, "ingress caches synced");

    let (served_tx, served_rx) = watch::channel(Vec::<Arc<Ingress>>::new());
    tokio::spawn(status_writer(client.clone(), node_ips, served_rx));

    let mut last_problems: Vec<Problem> = Vec::new();
    loop {
        let ingresses = stores.ingresses.state();
        let classes = stores.classes.state();
        let services = stores.services.state();
        let slices = stores.slices.state();
        let secrets = stores.secrets.state();
        let state = ClusterState {
            class_name: &class_name,
            ingresses: &ingresses,
            ingress_classes: &classes,
            services: &services,
            endpoint_slices: &slices,
            secrets: &secrets,
        };
        let (snap, problems) = Snapshot::build(&state);
        snapshot.store(snap);
        if problems != last_problems {
            // Each problem is reported once, when it appears.
            for p in problems.iter().filter(|p| !last_problems.contains(p)) {
                tracing::warn!(
                    ingress = format!("{}/{}", p.namespace, p.ingress),
                    reason = p.reason,
                    "{}",
                    p.message
                );
                let ing = ingresses.iter().find(|i| {
                    i.metadata.namespace.as_deref() == Some(p.namespace.as_str())
                        && i.metadata.name.as_deref() == Some(p.ingress.as_str())
                });
                if let Some(ing) = ing {
                    events::record(&recorder, ing, p);
                }
            }
            last_problems = problems;
        }
        let default = class::is_default_class(
            classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
                .map(|c| &**c),
        );
        let served: Vec<Arc<Ingress>> = ingresses
            .iter()
            .filter(|i| class::serves(i, &class_name, default))
            .cloned()
            .collect();
        served_tx.send_replace(served);

        changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// `status.loadBalancer.ingress` for the node's addresses.
pub fn desired_load_balancer(node_ips: &[IpAddr]) -> Vec<IngressLoadBalancerIngress> {
    node_ips
        .iter()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip.to_string()),
            ..Default::default()
        })
        .collect()
}

/// Whether an Ingress's status already says what we want.
pub fn status_matches(ing: &Ingress, desired: &[IngressLoadBalancerIngress]) -> bool {
    let current = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    current == desired
}

/// Patches the status of each served Ingress whose `status.loadBalancer` differs.
async fn status_writer(
    client: kube::Client,
    node_ips: Vec<IpAddr>,
    mut served: watch::Receiver<Vec<Arc<Ingress>>>,
) {
    let desired = desired_load_balancer(&node_ips);
    // uid -> resourceVersion we patched from: the cache may not show our write yet.
    let mut patched: HashMap<String, String> = HashMap::new();
    loop {
        let ingresses = served.borrow_and_update().clone();
        let mut retry = false;
        for ing in &ingresses {
            if status_matches(ing, &desired) {
                continue;
            }
            let (Some(ns), Some(name), Some(uid)) = (
                ing.metadata.namespace.as_deref(),
                ing.metadata.name.as_deref(),
                ing.metadata.uid.as_deref(),
            ) else {
                continue;
            };
            let rv = ing.metadata.resource_version.clone().unwrap_or_default();
            if patched.get(uid) == Some(&rv) {
                continue;
            }
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": desired}}});
            let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(ingress = format!("{ns}/{name}"), "updated status");
                    patched.insert(uid.to_string(), rv);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(ingress = format!("{ns}/{name}"), "updating status: {e}");
                    retry = true;
                }
            }
        }
        let live: std::collections::HashSet<&str> = ingresses
            .iter()
            .filter_map(|i| i.metadata.uid.as_deref())
            .collect();
        patched.retain(|uid, _| live.contains(uid.as_str()));
        if retry {
            // Wake on the next change or after a pause, whichever is first.
            let _ = tokio::time::timeout(Duration::from_secs(5), served.changed()).await;
        } else if served.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_compares_node_ips() {
        let desired = desired_load_balancer(&["192.0.2.1".parse().expect("ip")]);
        let mut ing: Ingress =
            serde_json::from_value(json!({"metadata": {"name": "i"}})).expect("ing");
        assert!(!status_matches(&ing, &desired));
        ing.status =
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}))
                .expect("status");
        assert!(status_matches(&ing, &desired));
        assert!(!status_matches(&ing, &desired_load_balancer(&[])));
        let none: Ingress =
            serde_json::from_value(json!({"metadata": {"name": "i"}})).expect("ing");
        assert!(status_matches(&none, &[]));
    }
}
