//! ServiceLB, k3s's built-in load balancer (pkg/cloudprovider/servicelb.go), in process: every
//! Service of `type: LoadBalancer` without a `spec.loadBalancerClass` gets the addresses of the
//! nodes that would run its `svclb` pods as `status.loadBalancer.ingress` (`ipMode: VIP`). The
//! traffic itself is kaji-proxy's business (the Service's node ports and external addresses).
//!
//! k3s runs a DaemonSet per Service whose pods hold each port as a hostPort; here the same
//! outcome is computed instead (the pure [`plan`]):
//! - a node takes part when it is Ready and its NoSchedule/NoExecute taints are ones the svclb
//!   pods tolerate (control-plane roles, CriticalAddonsOnly, and what DaemonSet pods tolerate,
//!   cordoning included); if any node has the `svccontroller.k3s.cattle.io/enablelb` label, only
//!   nodes labelled `true` do, and a Service labelled `svccontroller.k3s.cattle.io/lbpool=<p>`
//!   only uses nodes of that pool;
//! - a port (port and protocol) is held on a node by the oldest LoadBalancer Service using it
//!   there (by creationTimestamp, then name); a newer Service that finds all its nodes taken
//!   stays without ingress (`<pending>`), as its svclb pods would stay Pending, and gets a
//!   Warning event `UnAvailableLoadBalancer`;
//! - the addresses are the nodes' ExternalIPs if any node has one, otherwise their InternalIPs,
//!   in the Service's IP families; with `externalTrafficPolicy: Local`, only nodes with a ready
//!   endpoint of the Service.
//!
//! The status is written through the status subresource, only when it changes, with k3s's events
//! (`UpdatedLoadBalancer`, `UnAvailableLoadBalancer`). A Service that stops being a
//! LoadBalancer loses its ingress.

use crate::Options;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Change, Factory};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// k3s's node and Service labels (`svccontroller.k3s.cattle.io/...`), kept for compatibility.
pub const ENABLE_LB_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";
pub const LB_POOL_LABEL: &str = "svccontroller.k3s.cattle.io/lbpool";

/// Event reasons and messages as k3s's.
pub const REASON_UPDATED: &str = "UpdatedLoadBalancer";
pub const REASON_UNAVAILABLE: &str = "UnAvailableLoadBalancer";
pub const NO_NODES_MESSAGE: &str = "There are no available nodes for LoadBalancer";

/// The ingress address mode upstream defaults to (Kubernetes 1.30+).
const IP_MODE_VIP: &str = "VIP";

/// Taint keys whose NoSchedule/NoExecute effects svclb pods tolerate: k3s's own tolerations
/// (any effect for CriticalAddonsOnly) plus those the DaemonSet controller adds to every
/// DaemonSet pod.
const TOLERATED_TAINTS: &[&str] = &[
    "node-role.kubernetes.io/master",
    "node-role.kubernetes.io/control-plane",
    "CriticalAddonsOnly",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/unschedulable",
];

/// What ServiceLB wants for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not ServiceLB's: not a LoadBalancer (any ingress is cleared), or another class's (left
    /// alone).
    NotLoadBalancer,
    OtherClass,
    /// These addresses (possibly none: no node can take it).
    Ingress(Vec<String>),
    /// Every node it could use has one of its ports held by an older LoadBalancer Service.
    PortInUse {
        port: i32,
        protocol: String,
        holder: String,
    },
}

/// A Service's key in a plan: `namespace/name`.
pub fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn has_class(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_deref())
        .is_some_and(|c| !c.is_empty())
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether svclb pods would run on the node (its taints, the enablelb/lbpool labels).
fn node_takes(node: &Node, svc: &Service, labelled_nodes: bool) -> bool {
    let taints_ok = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_none_or(|taints| {
            taints.iter().all(|t| {
                !matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                    || TOLERATED_TAINTS.contains(&t.key.as_str())
            })
        });
    if !taints_ok {
        return false;
    }
    if labelled_nodes {
        let labels = node.labels();
        if labels.get(ENABLE_LB_LABEL).map(String::as_str) != Some("true") {
            return false;
        }
        if let Some(pool) = svc.labels().get(LB_POOL_LABEL).filter(|p| !p.is_empty())
            && labels.get(LB_POOL_LABEL) != Some(pool)
        {
            return false;
        }
    }
    true
}

/// The (port, protocol) pairs a Service holds.
fn ports(svc: &Service) -> Vec<(i32, String)> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect()
}

/// Nodes with a ready Pod endpoint of the Service (for `externalTrafficPolicy: Local`).
fn ready_endpoint_nodes(svc: &Service, slices: &[Arc<EndpointSlice>]) -> BTreeSet<String> {
    let ns = svc.namespace();
    let name = svc.name_any();
    slices
        .iter()
        .filter(|s| {
            s.namespace() == ns && s.labels().get("kubernetes.io/service-name") == Some(&name)
        })
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| {
            e.target_ref.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod")
                && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
        })
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// The addresses of these nodes: ExternalIPs if any has one, else InternalIPs, sorted, in the
/// Service's IP families (k3s's podIPs and filterByIPFamily).
fn addresses(svc: &Service, nodes: &[&Node]) -> Vec<String> {
    let mut external = BTreeSet::new();
    let mut internal = BTreeSet::new();
    for a in nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
    {
        match a.type_.as_str() {
            "ExternalIP" => external.insert(a.address.clone()),
            "InternalIP" => internal.insert(a.address.clone()),
            _ => false,
        };
    }
    let ips = if external.is_empty() {
        internal
    } else {
        external
    };
    let families = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["IPv4".into()]);
    let mut out = Vec::new();
    for family in families {
        let v6 = family == "IPv6";
        out.extend(
            ips.iter()
                .filter(|ip| {
                    ip.parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_ipv6() == v6)
                })
                .cloned(),
        );
    }
    out
}

/// What every Service gets, by [`key`]: the pure core of the controller.
pub fn plan(
    services: &[Arc<Service>],
    nodes: &[Arc<Node>],
    slices: &[Arc<EndpointSlice>],
) -> HashMap<String, Decision> {
    let mut out = HashMap::new();
    let mut lbs: Vec<&Service> = Vec::new();
    for svc in services {
        let decision = if !is_load_balancer(svc) {
            Decision::NotLoadBalancer
        } else if has_class(svc) {
            Decision::OtherClass
        } else if svc.metadata.deletion_timestamp.is_some() {
            Decision::Ingress(Vec::new())
        } else {
            lbs.push(svc);
            continue;
        };
        out.insert(key(svc), decision);
    }
    // The oldest first: it keeps its ports (creationTimestamp, then name, then namespace).
    lbs.sort_by(|a, b| {
        let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
            .then_with(|| a.namespace().cmp(&b.namespace()))
    });
    let ready: Vec<&Node> = nodes
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| node_ready(n))
        .collect();
    let labelled_nodes = nodes
        .iter()
        .any(|n| n.labels().contains_key(ENABLE_LB_LABEL));
    // Node name -> (port, protocol) -> the Service holding it there.
    let mut held: HashMap<String, HashMap<(i32, String), String>> = HashMap::new();
    for svc in lbs {
        let wanted = ports(svc);
        let mut placed: Vec<&Node> = Vec::new();
        let mut conflict = None;
        for node in ready.iter().filter(|n| node_takes(n, svc, labelled_nodes)) {
            let on_node = held.entry(node.name_any()).or_default();
            match wanted.iter().find_map(|p| on_node.get(p).map(|h| (p, h))) {
                Some(((port, protocol), holder)) => {
                    conflict.get_or_insert_with(|| Decision::PortInUse {
                        port: *port,
                        protocol: protocol.clone(),
                        holder: holder.clone(),
                    });
                }
                None => placed.push(node),
            }
        }
        for node in &placed {
            let on_node = held.entry(node.name_any()).or_default();
            for p in &wanted {
                on_node.insert(p.clone(), key(svc));
            }
        }
        let decision = match conflict {
            Some(c) if placed.is_empty() => c,
            _ => {
                let local = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.external_traffic_policy.as_deref())
                    == Some("Local");
                if local {
                    let endpoints = ready_endpoint_nodes(svc, slices);
                    placed.retain(|n| endpoints.contains(&n.name_any()));
                }
                Decision::Ingress(addresses(svc, &placed))
            }
        };
        out.insert(key(svc), decision);
    }
    out
}

/// The ingress list for these addresses.
pub fn ingress(ips: &[String]) -> Vec<LoadBalancerIngress> {
    ips.iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.clone()),
            ip_mode: Some(IP_MODE_VIP.into()),
            ..Default::default()
        })
        .collect()
}

fn current_ingress(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

/// Go's `%v` of the addresses (`[a b]`), as k3s's event message prints them.
fn shown(ingress: &[LoadBalancerIngress]) -> String {
    let parts: Vec<&str> = ingress
        .iter()
        .map(|i| {
            i.ip.as_deref()
                .or(i.hostname.as_deref())
                .unwrap_or_default()
        })
        .collect();
    format!("[{}]", parts.join(" "))
}

struct Ctx {
    client: Client,
    services: Store<Service>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    recorder: Recorder,
    /// The port-conflict warning last recorded per Service uid, so that it is written once.
    warned: Mutex<HashMap<String, String>>,
}

/// Yields `()` when an object's `relevant` part changes (or it goes), so that node heartbeats
/// and unrelated edits do not wake every LoadBalancer Service.
fn changes<K, F>(
    stream: impl Stream<Item = Change<K>> + Send + 'static,
    relevant: F,
) -> impl Stream<Item = ()> + Send + 'static
where
    K: kube::Resource + Send + Sync + 'static,
    F: Fn(&K) -> u64 + Send + 'static,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    stream.filter_map(move |change| {
        let fire = match change {
            Change::Applied(o) => {
                let k = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                let h = relevant(&o);
                seen.insert(k, h) != Some(h)
            }
            Change::Deleted(o) => {
                let k = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                seen.remove(&k);
                true
            }
        };
        futures::future::ready(fire.then_some(()))
    })
}

fn hash_of(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// What of a node matters here: readiness, addresses, taints and the ServiceLB labels.
fn node_relevance(n: &Node) -> u64 {
    let addrs: Vec<(String, String)> = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    let taints: Vec<(String, String)> = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect();
    let labels: BTreeMap<&String, &String> = n
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() == ENABLE_LB_LABEL || k.as_str() == LB_POOL_LABEL)
        .collect();
    hash_of((node_ready(n), addrs, taints, labels))
}

/// What of a Service can change another one's ports: its type, class, ports and age.
fn service_relevance(s: &Service) -> u64 {
    hash_of((
        is_load_balancer(s),
        has_class(s),
        ports(s),
        s.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        s.metadata.deletion_timestamp.is_some(),
        s.labels().get(LB_POOL_LABEL),
    ))
}

/// Registers the informers (Services, nodes, EndpointSlices) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let services = f.informer::<Service>();
    let nodes = f.informer::<Node>();
    let slices = f.informer::<EndpointSlice>();
    let node_changes = changes(nodes.subscribe(), node_relevance);
    // A change to one LoadBalancer can free or take another's ports.
    let service_changes = changes(services.subscribe(), service_relevance);
    let slice_triggers = slices.objects().filter_map(|slice| async move {
        let ns = slice.namespace().unwrap_or_default();
        slice
            .labels()
            .get(crate::endpointslice::LABEL_SERVICE_NAME)
            .map(|name| ObjectRef::<Service>::new(name).within(&ns))
    });
    let controller = controller::for_informer(&services)
        .reconcile_all_on(node_changes)
        .reconcile_all_on(service_changes)
        .reconcile_on(slice_triggers);
    let ctx = Arc::new(Ctx {
        services: services.store(),
        nodes: nodes.store(),
        slices: slices.store(),
        recorder: Recorder::new(f.client(), "service-lb-controller"),
        warned: Mutex::new(HashMap::new()),
        client: f.client(),
    });
    controller::run("service-lb-controller", f, controller, reconcile, ctx)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if ctx.nodes.wait_until_ready().await.is_err()
        || ctx.slices.wait_until_ready().await.is_err()
        || ctx.services.wait_until_ready().await.is_err()
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let decision = plan(
        &ctx.services.state(),
        &ctx.nodes.state(),
        &ctx.slices.state(),
    )
    .remove(&key(&svc))
    .unwrap_or(Decision::OtherClass);
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let want = match &decision {
        Decision::OtherClass => return Ok(Action::await_change()),
        Decision::NotLoadBalancer => Vec::new(),
        Decision::Ingress(ips) => ingress(ips),
        Decision::PortInUse { .. } => Vec::new(),
    };
    let have = current_ingress(&svc);
    let changed = have != want;
    if changed {
        let api: Api<Service> =
            Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
        let value = if want.is_empty() {
            json!(null)
        } else {
            json!(want)
        };
        let patch = json!({"status": {"loadBalancer": {"ingress": value}}});
        match api
            .patch_status(
                &svc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e),
        }
    }
    let obj = reference(svc.as_ref());
    match &decision {
        Decision::PortInUse {
            port,
            protocol,
            holder,
        } => {
            let message = format!(
                "{NO_NODES_MESSAGE}: port {port}/{protocol} is in use by LoadBalancer Service {holder}"
            );
            let first = ctx
                .warned
                .lock()
                .map(|mut w| w.insert(uid, message.clone()) != Some(message.clone()))
                .unwrap_or(true);
            if first {
                ctx.recorder
                    .warning(&obj, REASON_UNAVAILABLE, &message)
                    .await;
            }
        }
        Decision::Ingress(_) => {
            if let Ok(mut w) = ctx.warned.lock() {
                w.remove(&uid);
            }
            if changed && want.is_empty() {
                ctx.recorder
                    .warning(&obj, REASON_UNAVAILABLE, NO_NODES_MESSAGE)
                    .await;
            } else if changed {
                let message = format!(
                    "Updated LoadBalancer with new IPs: {} -> {}",
                    shown(&have),
                    shown(&want)
                );
                ctx.recorder.normal(&obj, REASON_UPDATED, &message).await;
            }
        }
        Decision::NotLoadBalancer | Decision::OtherClass => {
            if let Ok(mut w) = ctx.warned.lock() {
                w.remove(&uid);
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeAddress, NodeCondition, NodeSpec, NodeStatus, ServicePort, ServiceSpec, Taint,
    };
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn node(name: &str, ip: &str, ready: bool) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn lb(name: &str, age: i64, ports: &[(i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(
                    jiff::Timestamp::from_second(1_700_000_000 + age).expect("time"),
                )),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ports: Some(
                    ports
                        .iter()
                        .map(|(p, proto)| ServicePort {
                            port: *p,
                            protocol: Some((*proto).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn arcs(s: Vec<Service>) -> Vec<Arc<Service>> {
        s.into_iter().map(Arc::new).collect()
    }

    fn ips(v: &[&str]) -> Decision {
        Decision::Ingress(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn ready_nodes_internal_ips() {
        let nodes = [
            node("b", "10.240.0.2", true),
            node("a", "10.240.0.1", true),
            node("c", "10.240.0.3", false),
        ];
        let mut cip = lb("plain", 0, &[(80, "TCP")]);
        cip.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
        let mut classy = lb("classy", 0, &[(80, "TCP")]);
        classy.spec.as_mut().expect("spec").load_balancer_class = Some("x.io/lb".into());
        let p = plan(
            &arcs(vec![lb("web", 0, &[(80, "TCP")]), cip, classy]),
            &nodes,
            &[],
        );
        assert_eq!(p["default/web"], ips(&["10.240.0.1", "10.240.0.2"]));
        assert_eq!(p["default/plain"], Decision::NotLoadBalancer);
        assert_eq!(
            p["default/classy"],
            Decision::OtherClass,
            "not ours: it does not hold ports"
        );
    }

    #[test]
    fn the_older_service_keeps_the_port() {
        let nodes = [node("a", "10.240.0.1", true)];
        let services = arcs(vec![
            lb("newer", 5, &[(80, "TCP")]),
            lb("older", 1, &[(80, "TCP"), (443, "TCP")]),
            lb("udp", 9, &[(80, "UDP")]),
            lb("twin-b", 3, &[(8080, "TCP")]),
            lb("twin-a", 3, &[(8080, "TCP")]),
        ]);
        let p = plan(&services, &nodes, &[]);
        assert_eq!(p["default/older"], ips(&["10.240.0.1"]));
        assert_eq!(
            p["default/newer"],
            Decision::PortInUse {
                port: 80,
                protocol: "TCP".into(),
                holder: "default/older".into()
            }
        );
        assert_eq!(p["default/udp"], ips(&["10.240.0.1"]), "another protocol");
        assert_eq!(
            p["default/twin-a"],
            ips(&["10.240.0.1"]),
            "same age: by name"
        );
        assert!(matches!(p["default/twin-b"], Decision::PortInUse { .. }));
        // A Service that lost does not hold its other ports.
        let services = arcs(vec![
            lb("first", 1, &[(80, "TCP")]),
            lb("second", 2, &[(80, "TCP"), (81, "TCP")]),
            lb("third", 3, &[(81, "TCP")]),
        ]);
        let p = plan(&services, &nodes, &[]);
        assert_eq!(p["default/third"], ips(&["10.240.0.1"]));
    }

    #[test]
    fn taints_pools_and_external_ips() {
        let mut tainted = (*node("t", "10.240.0.9", true)).clone();
        tainted.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            unschedulable: Some(true),
            ..Default::default()
        });
        let mut cordoned = (*node("c", "10.240.0.3", true)).clone();
        cordoned.spec = Some(NodeSpec {
            unschedulable: Some(true),
            taints: Some(vec![Taint {
                key: "node.kubernetes.io/unschedulable".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let nodes = [Arc::new(tainted), Arc::new(cordoned)];
        let p = plan(&arcs(vec![lb("web", 0, &[(80, "TCP")])]), &nodes, &[]);
        assert_eq!(
            p["default/web"],
            ips(&["10.240.0.3"]),
            "DaemonSet pods tolerate cordoning, not other taints"
        );

        let mut ext = (*node("e", "10.240.0.5", true)).clone();
        if let Some(a) = ext.status.as_mut().and_then(|s| s.addresses.as_mut()) {
            a.push(NodeAddress {
                type_: "ExternalIP".into(),
                address: "203.0.113.5".into(),
            });
        }
        let nodes = [Arc::new(ext), node("i", "10.240.0.6", true)];
        let p = plan(&arcs(vec![lb("web", 0, &[(80, "TCP")])]), &nodes, &[]);
        assert_eq!(p["default/web"], ips(&["203.0.113.5"]), "external IPs win");

        let mut pool_a = (*node("a", "10.240.0.1", true)).clone();
        pool_a.metadata.labels = Some(
            [
                (ENABLE_LB_LABEL.to_string(), "true".to_string()),
                (LB_POOL_LABEL.to_string(), "a".to_string()),
            ]
            .into(),
        );
        let mut enabled = (*node("b", "10.240.0.2", true)).clone();
        enabled.metadata.labels = Some([(ENABLE_LB_LABEL.to_string(), "true".to_string())].into());
        let nodes = [
            Arc::new(pool_a),
            Arc::new(enabled),
            node("x", "10.240.0.7", true),
        ];
        let mut pooled = lb("pooled", 0, &[(80, "TCP")]);
        pooled.metadata.labels = Some([(LB_POOL_LABEL.to_string(), "a".to_string())].into());
        let p = plan(
            &arcs(vec![pooled, lb("any", 1, &[(80, "TCP")])]),
            &nodes,
            &[],
        );
        assert_eq!(p["default/pooled"], ips(&["10.240.0.1"]));
        assert_eq!(
            p["default/any"],
            ips(&["10.240.0.2"]),
            "port 80 is free on the other enabled node"
        );
    }

    #[test]
    fn local_traffic_only_lists_nodes_with_ready_endpoints() {
        let nodes = [node("a", "10.240.0.1", true), node("b", "10.240.0.2", true)];
        let mut svc = lb("web", 0, &[(80, "TCP")]);
        svc.spec.as_mut().expect("spec").external_traffic_policy = Some("Local".into());
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                labels: Some(
                    [("kubernetes.io/service-name".to_string(), "web".to_string())].into(),
                ),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint {
                addresses: vec!["10.42.1.5".into()],
                node_name: Some("b".into()),
                target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                    kind: Some("Pod".into()),
                    ..Default::default()
                }),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ports: None,
        };
        let p = plan(&arcs(vec![svc]), &nodes, &[Arc::new(slice)]);
        assert_eq!(p["default/web"], ips(&["10.240.0.2"]));
    }

    #[test]
    fn ingress_entries_and_event_text() {
        let i = ingress(&["10.240.0.1".into(), "10.240.0.2".into()]);
        assert_eq!(i[0].ip_mode.as_deref(), Some("VIP"));
        assert_eq!(shown(&[]), "[]");
        assert_eq!(shown(&i), "[10.240.0.1 10.240.0.2]");
    }
}
