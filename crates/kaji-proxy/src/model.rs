//! What the proxy needs of the API objects, read off Services and EndpointSlices (pure): one
//! [`ServicePort`] per port of each Service, with its endpoints as
//! [`kaji_runtime::endpoints`] reads them (IPv4 slices only).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
pub use kaji_runtime::endpoints::{Endpoint, usable};
use kaji_runtime::endpoints::{port_endpoints, slices_by_service};
use std::net::Ipv4Addr;

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
    let by_service = slices_by_service(slices.iter().copied().filter(|s| s.address_type == "IPv4"));
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
            let endpoints = port_endpoints(
                my_slices,
                &port_name,
                p.protocol.as_deref().unwrap_or("TCP"),
            );
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
    fn ports_take_their_endpoints_from_ipv4_slices() {
        let s = svc(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}),
        );
        let v4 = slice(
            json!({"metadata": {"name": "web-a", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "n1"}]}),
        );
        let v6 = slice(
            json!({"metadata": {"name": "web-b", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv6", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["fd00::5"]}]}),
        );
        let ports = service_ports(&[&s], &[&v4, &v6]);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].id(), "default/web/tcp/http");
        assert_eq!(ports[0].cluster_ip, Some(Ipv4Addr::new(10, 43, 0, 20)));
        let eps: Vec<String> = ports[0]
            .endpoints
            .iter()
            .map(|e| format!("{}:{} {:?}", e.ip, e.port, e.node))
            .collect();
        assert_eq!(eps, vec!["10.42.0.5:8080 Some(\"n1\")"]);
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
