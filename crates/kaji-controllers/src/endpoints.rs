//! The endpoints controller, as upstream's (pkg/controller/endpoint): for every Service with a
//! selector, an Endpoints object of the same name lists the selected pods' IPs, ready ones under
//! `addresses` and the others under `notReadyAddresses` (all ready with
//! `publishNotReadyAddresses`), with nodeName and a targetRef, and ports resolved per pod
//! (`targetPort: http-port` names a container port). Pods with the same resolved ports share a
//! subset (upstream's RepackSubsets). Services without a selector keep their hand-made
//! Endpoints; a deleted Service's Endpoints go.
//!
//! The pod-to-service mapping and port resolution are shared with `endpointslice`.

use crate::Options;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kaji_runtime::controller;
use kaji_runtime::informer::{Change, Factory, Informer};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The label upstream puts on the Endpoints of headless services.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Which services each pod was last seen selected by, so that a pod whose labels change also
/// wakes the services it left.
#[derive(Default)]
pub(crate) struct PodServices {
    last: Mutex<HashMap<ObjectRef<Pod>, Vec<ObjectRef<Service>>>>,
}

impl PodServices {
    pub(crate) fn map(&self, services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        let labels = pod.labels();
        let now: Vec<ObjectRef<Service>> = services
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| {
                selector(s).is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let key = ObjectRef::from_obj(pod);
        let mut last = self.last.lock().expect("pod services");
        let mut all = now.clone();
        if let Some(before) = last.get(&key) {
            all.extend(before.iter().filter(|s| !now.contains(s)).cloned());
        }
        if pod.metadata.deletion_timestamp.is_some() && now.is_empty() {
            last.remove(&key);
        } else {
            last.insert(key, now);
        }
        all
    }
}

/// The service's selector when it selects pods (nil or empty: it does not).
pub(crate) fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

pub(crate) fn selected_pods(pods: &Informer<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let Some(sel) = selector(svc) else {
        return Vec::new();
    };
    let ns = svc.namespace().unwrap_or_default();
    let mut out: Vec<Arc<Pod>> = pods
        .in_namespace(&ns)
        .into_iter()
        .filter(|p| sel.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

pub(crate) fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream ShouldPodBeInEndpoints: an IP, not finished, and not terminating unless asked.
pub(crate) fn should_include(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() {
        return false;
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    match (restart, phase) {
        ("Never", "Failed" | "Succeeded") | ("OnFailure", "Succeeded") => return false,
        _ => {}
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod port a service port targets: a number as is, a name looked up among the pod's
/// container ports (same protocol); None when the pod has no such named port.
pub(crate) fn resolve_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// The labels of a service's Endpoints / EndpointSlices: the service's, plus the headless mark.
pub(crate) fn service_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.remove(HEADLESS_LABEL);
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

pub(crate) fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname within the service's DNS subdomain, when it declares one (upstream
/// `ShouldSetHostname`: a non-empty hostname, the subdomain naming the service, same namespace).
pub(crate) fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace())
    .then(|| spec.hostname.clone())
    .flatten()
    .filter(|h| !h.is_empty())
}

/// The subsets the service's Endpoints should have.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let svc_ports = spec.ports.unwrap_or_default();
    // Ports (as a sortable key) -> (ports, ready, not ready).
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !should_include(pod, publish_not_ready) {
            continue;
        }
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, pod).map(|port| EndpointPort {
                    name: sp.name.clone(),
                    port,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        let addr = EndpointAddress {
            ip: pod_ip(pod).unwrap_or_default().to_string(),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let g = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish_not_ready || pod_ready(pod) {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    groups
        .into_values()
        .map(|(mut ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            ports.sort_by(|a, b| a.name.cmp(&b.name));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

struct Ctx {
    client: Client,
    pods: Arc<Informer<Pod>>,
    endpoints: Store<Endpoints>,
}

/// Registers the informers (Services, pods, Endpoints) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let services = f.informer::<Service>();
    let pods = f.informer::<Pod>();
    let endpoints = f.informer::<Endpoints>();
    let svc_store = services.store();
    let pod_services = Arc::new(PodServices::default());
    let pod_triggers = pods
        .objects()
        .flat_map(move |pod| futures::stream::iter(pod_services.map(&svc_store, &pod)));
    let ep_triggers = endpoints.objects().map(|ep| {
        ObjectRef::<Service>::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default())
    });
    let orphans = delete_orphaned_endpoints(f.client(), services.subscribe());
    let controller = controller::for_informer(&services)
        .reconcile_on(pod_triggers)
        .reconcile_on(ep_triggers);
    let ctx = Arc::new(Ctx {
        client: f.client(),
        pods,
        endpoints: endpoints.store(),
    });
    let run = controller::run("endpoint-controller", f, controller, reconcile, ctx);
    Box::pin(async move {
        tokio::spawn(orphans);
        run.await
    })
}

/// A deleted Service's Endpoints go with it.
async fn delete_orphaned_endpoints(client: Client, services: impl Stream<Item = Change<Service>>) {
    let mut services = std::pin::pin!(services);
    while let Some(change) = services.next().await {
        if let Change::Deleted(svc) = change {
            let api: Api<Endpoints> =
                Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
            match api.delete(&svc.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => tracing::debug!(error = %e, "deleting endpoints of a deleted service"),
            }
        }
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if selector(&svc).is_none() {
        // Hand-made Endpoints (a Service without a selector) are the user's.
        return Ok(Action::await_change());
    }
    ctx.pods.ready().await;
    if ctx.endpoints.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = selected_pods(&ctx.pods, &svc);
    let subsets = desired_subsets(&svc, &pods);
    let labels = service_labels(&svc);
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let want_subsets = (!subsets.is_empty()).then_some(subsets);
    match current {
        Some(cur)
            if cur.subsets == want_subsets
                && cur.metadata.labels.clone().unwrap_or_default() == labels => {}
        Some(cur) => {
            let mut next = (*cur).clone();
            next.subsets = want_subsets;
            next.metadata.labels = Some(labels);
            match api.replace(&name, &PostParams::default(), &next).await {
                Ok(_) => {}
                // The store is behind; the watch event that follows brings us back.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    return Ok(Action::requeue(Duration::from_millis(200)));
                }
                Err(e) => return Err(e),
            }
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(ns),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: want_subsets,
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {
                    return Ok(Action::requeue(Duration::from_millis(200)));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Action::await_change())
}
