//! The EndpointSlice controller, as upstream's (pkg/controller/endpointslice): for every Service
//! with a selector, EndpointSlices (`discovery.k8s.io/v1`) labelled
//! `kubernetes.io/service-name=<service>` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`, owned by the Service (so the garbage collector removes them
//! with it). Each slice holds endpoints sharing one set of resolved ports, at most 100 of them;
//! endpoints carry ready / serving / terminating conditions, nodeName and a targetRef. A service
//! selecting nothing keeps one empty placeholder slice, as upstream.

use crate::Options;
use crate::endpoints::{
    PodServices, hostname, pod_ip, pod_ready, resolve_port, selected_pods, selector,
    service_labels, should_include, target_ref,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kaji_runtime::controller;
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Upstream's default --max-endpoints-per-slice.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

struct Ctx {
    client: Client,
    pods: Arc<Informer<Pod>>,
    slices: Store<EndpointSlice>,
    /// Slices created but not yet seen in the store, by service (upstream's endpointSliceTracker):
    /// reconciling before they show up would create them twice.
    unseen: Mutex<HashMap<ServiceKey, (Vec<String>, Instant)>>,
}

/// A service's (namespace, name).
type ServiceKey = (String, String);

/// Registers the informers (Services, pods, EndpointSlices) and returns the loop. Slices are
/// read from the process's one EndpointSlice cache; only those labelled as ours are acted on.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let services = f.informer::<Service>();
    let pods = f.informer::<Pod>();
    let slices = f.informer::<EndpointSlice>();
    let svc_store = services.store();
    let pod_services = Arc::new(PodServices::default());
    let pod_triggers = pods
        .objects()
        .flat_map(move |pod| futures::stream::iter(pod_services.map(&svc_store, &pod)));
    let slice_triggers = slices.objects().filter_map(|s| async move {
        if !ours(&s) {
            return None;
        }
        let svc = s.labels().get(LABEL_SERVICE_NAME).cloned()?;
        Some(ObjectRef::<Service>::new(&svc).within(&s.namespace().unwrap_or_default()))
    });
    let controller = controller::for_informer(&services)
        .reconcile_on(pod_triggers)
        .reconcile_on(slice_triggers);
    let ctx = Arc::new(Ctx {
        client: f.client(),
        pods,
        slices: slices.store(),
        unseen: Mutex::new(HashMap::new()),
    });
    controller::run("endpointslice-controller", f, controller, reconcile, ctx)
}

/// Managed by this controller (upstream's managed-by label).
fn ours(s: &EndpointSlice) -> bool {
    s.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME)
}

/// Desired slices' content: (ports, endpoints) per group of equal ports, endpoints sorted.
pub fn desired_groups(svc: &Service, pods: &[Arc<Pod>]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let svc_ports = spec.ports.unwrap_or_default();
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        // Terminating pods stay listed with terminating=true (upstream since 1.22).
        if !should_include(pod, true) {
            continue;
        }
        let mut ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, pod).map(|port| EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(port),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        ports.sort_by(|a, b| a.name.cmp(&b.name));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pod_ready(pod) || publish_not_ready;
        let ep = Endpoint {
            addresses: vec![pod_ip(pod).unwrap_or_default().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(serving && (!terminating || publish_not_ready)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    let mut out: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    for (ports, mut eps) in groups.into_values() {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    if out.is_empty() {
        out.push((Vec::new(), Vec::new()));
    }
    out
}

fn address_type(eps: &[Endpoint]) -> String {
    if eps
        .iter()
        .flat_map(|e| e.addresses.iter())
        .any(|a| a.contains(':'))
    {
        "IPv6"
    } else {
        "IPv4"
    }
    .to_string()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    ctx.pods.ready().await;
    if ctx.slices.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    {
        let mut unseen = ctx.unseen.lock().expect("slice tracker");
        if let Some((names, since)) = unseen.get(&(ns.clone(), name.clone())) {
            let waiting = names
                .iter()
                .any(|n| ctx.slices.get(&ObjectRef::new(n).within(&ns)).is_none());
            if waiting && since.elapsed() < Duration::from_secs(5) {
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            unseen.remove(&(ns.clone(), name.clone()));
        }
    }
    let pods = selected_pods(&ctx.pods, &svc);
    let desired = desired_groups(&svc, &pods);
    let mut labels = service_labels(&svc);
    labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| {
            s.namespace().as_deref() == Some(ns.as_str())
                && ours(s)
                && s.labels().get(LABEL_SERVICE_NAME) == Some(&name)
                && s.metadata.deletion_timestamp.is_none()
        })
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let key = |ports: &Option<Vec<EndpointPort>>| {
        let mut p = ports.clone().unwrap_or_default();
        p.sort_by(|a, b| a.name.cmp(&b.name));
        serde_json::to_string(&p).unwrap_or_default()
    };
    for (ports, endpoints) in desired {
        let ports = (!ports.is_empty()).then_some(ports);
        let want_key = key(&ports);
        // Reuse a slice with the same ports when there is one.
        let reuse = existing.iter().position(|s| key(&s.ports) == want_key);
        let addr_type = address_type(&endpoints);
        match reuse.map(|i| existing.remove(i)) {
            Some(cur) => {
                let same = cur.endpoints == endpoints
                    && cur.ports == ports
                    && cur.metadata.labels.clone().unwrap_or_default() == labels
                    && cur.address_type == addr_type;
                if same {
                    continue;
                }
                let mut next = (*cur).clone();
                next.endpoints = endpoints;
                next.ports = ports;
                next.address_type = addr_type;
                next.metadata.labels = Some(labels.clone());
                next.metadata.owner_references = Some(vec![owner.clone()]);
                match api
                    .replace(&cur.name_any(), &PostParams::default(), &next)
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                        return Ok(Action::requeue(Duration::from_millis(200)));
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    address_type: addr_type,
                    endpoints,
                    ports,
                };
                match api.create(&PostParams::default(), &slice).await {
                    Ok(created) => {
                        let mut unseen = ctx.unseen.lock().expect("slice tracker");
                        let entry = unseen
                            .entry((ns.clone(), name.clone()))
                            .or_insert_with(|| (Vec::new(), Instant::now()));
                        entry.0.push(created.name_any());
                        entry.1 = Instant::now();
                    }
                    Err(kube::Error::Api(e)) if e.code == 403 || e.code == 409 => {
                        return Ok(Action::requeue(Duration::from_secs(1)));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for stale in existing {
        match api
            .delete(&stale.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
