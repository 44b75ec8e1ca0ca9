//! What the proxy needs of the API objects, read off Services and EndpointSlices (pure): one
//! [`ServicePort`] per port of each Service, with its endpoints resolved per endpoint from the
//! slices (named `targetPort`s are resolved by the EndpointSlice controller, which groups
//! endpoints by resolved port; the proxy matches slice ports to service ports by name and
//! protocol, as upstream's endpoint change tracker does).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The label tying an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's name (`inet_proto` values and `meta l4proto`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint of a service port: where traffic goes, and the conditions that choose it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `nodeName` of the endpoint (local endpoints are those of this node).
    pub node: Option<String>,
}

/// One port of one Service, with everything the ruleset needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (empty for an unnamed single port).
    pub port_name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    /// None for headless and ExternalName Services.
    pub cluster_ip: Option<Ipv4Addr>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` (ServiceLB fills it with node addresses).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub health_check_node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name/proto/port`, the name upstream's chains carry.
    pub fn id(&self) -> String {
        let port = if self.port_name.is_empty() {
            self.port.to_string()
        } else {
            self.port_name.clone()
        };
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            port
        )
    }
}

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// Every port of every Service that the proxy programs, with endpoints from `slices` (all
/// slices; those of other Services are ignored). ExternalName Services and ports with a protocol
/// the proxy does not know are left out.
pub fn service_ports(services: &[&Service], slices: &[&EndpointSlice]) -> Vec<ServicePort> {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(name) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
            && s.address_type == "IPv4"
        {
            by_service.entry((ns, name.as_str())).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec.cluster_ip.as_deref().and_then(ipv4);
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| ipv4(s))
            .collect();
        let load_balancer_ips: Vec<Ipv4Addr> = if spec.type_.as_deref() == Some("LoadBalancer") {
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref().and_then(ipv4))
                .collect()
        } else {
            Vec::new()
        };
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(10_800) // upstream's DefaultClientIPServiceAffinitySeconds
        });
        let my_slices = by_service
            .get(&(ns, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let mut endpoints = Vec::new();
            for slice in my_slices {
                let Some(sp) = slice.ports.iter().flatten().find(|sp| {
                    sp.name.as_deref().unwrap_or_default() == port_name
                        && Protocol::parse(sp.protocol.as_deref()) == Some(protocol)
                }) else {
                    continue;
                };
                let Some(target) = sp.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    let Some(ip) = ep.addresses.first().and_then(|a| ipv4(a)) else {
                        continue;
                    };
                    let c = ep.conditions.as_ref();
                    // Upstream: a nil `ready` means ready; nil serving follows ready.
                    let ready = c.and_then(|c| c.ready).unwrap_or(true);
                    endpoints.push(Endpoint {
                        ip,
                        port: target,
                        ready,
                        serving: c.and_then(|c| c.serving).unwrap_or(ready),
                        terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                        node: ep.node_name.clone(),
                    });
                }
            }
            endpoints.sort();
            endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
            out.push(ServicePort {
                namespace: ns.to_string(),
                name: name.to_string(),
                port_name,
                protocol,
                port,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0),
                cluster_ip,
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                affinity_timeout,
                health_check_node_port: spec
                    .health_check_node_port
                    .and_then(|n| u16::try_from(n).ok()),
                endpoints,
            });
        }
    }
    out
}

/// Upstream's CategorizeEndpoints for one set of candidates: the ready ones, or when none is
/// ready, those that still serve while terminating (so a rollout never drops connections while a
/// terminating pod can answer).
pub fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }
    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_per_endpoint() {
        let s = svc(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}),
        );
        // Two slices: pods of two versions that name their port differently.
        let a = slice(
            json!({"metadata": {"name": "web-a", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "n1"}]}),
        );
        let b = slice(
            json!({"metadata": {"name": "web-b", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}}]}),
        );
        let other = slice(
            json!({"metadata": {"name": "x", "namespace": "other", "labels": {LABEL_SERVICE_NAME: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.9"]}]}),
        );
        let ports = service_ports(&[&s], &[&a, &b, &other]);
        assert_eq!(ports.len(), 1);
        let p = &ports[0];
        assert_eq!(p.id(), "default/web/tcp/http");
        assert_eq!(p.cluster_ip, Some(Ipv4Addr::new(10, 43, 0, 20)));
        let eps: Vec<(String, u16, bool)> = p
            .endpoints
            .iter()
            .map(|e| (e.ip.to_string(), e.port, e.ready))
            .collect();
        assert_eq!(
            eps,
            vec![
                ("10.42.0.5".into(), 8080, true),
                ("10.42.0.6".into(), 9090, false)
            ]
        );
        assert_eq!(usable(p.endpoints.iter()).len(), 1);
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let e = |ready, serving, terminating| Endpoint {
            ip: Ipv4Addr::new(10, 42, 0, 1),
            port: 80,
            ready,
            serving,
            terminating,
            node: None,
        };
        let only_terminating = [e(false, true, true), e(false, false, true)];
        assert_eq!(usable(only_terminating.iter()).len(), 1);
        let mixed = [e(true, true, false), e(false, true, true)];
        assert_eq!(usable(mixed.iter()), vec![&mixed[0]]);
        assert!(usable([e(false, false, false)].iter()).is_empty());
    }

    #[test]
    fn external_name_and_unknown_protocols_are_skipped_and_affinity_defaults() {
        let ext = svc(
            json!({"metadata": {"name": "ext", "namespace": "d"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        let aff = svc(
            json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"clusterIP": "10.43.0.9",
            "sessionAffinity": "ClientIP", "ports": [{"port": 53, "protocol": "UDP"}, {"port": 1, "protocol": "XYZ"}]}}),
        );
        let ports = service_ports(&[&ext, &aff], &[]);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].id(), "d/a/udp/53");
        assert_eq!(ports[0].affinity_timeout, Some(10_800));
    }
}
