//! A Service port's endpoints, read off its EndpointSlices as upstream's proxies read them
//! (`pkg/proxy/endpointslicecache.go`): slices are tied to their Service by a label, a service
//! port matches the slice port of the same name and protocol (named `targetPort`s are resolved
//! per endpoint by the EndpointSlice controller), an endpoint is its first address, and unset
//! conditions mean ready (and serving when ready).

use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The label tying an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// One endpoint of a service port: where traffic goes, and the conditions that choose it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `nodeName` of the endpoint.
    pub node: Option<String>,
}

/// The slices of each Service, by (namespace, name).
pub fn slices_by_service<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<(&'a str, &'a str), Vec<&'a EndpointSlice>> {
    let mut out: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(name) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
        {
            out.entry((ns, name.as_str())).or_default().push(s);
        }
    }
    out
}

/// The endpoints of the service port named `port_name` (empty for an unnamed port) with
/// `protocol` (`TCP`, `UDP`, `SCTP`) in one Service's `slices`, sorted, each address once.
/// Endpoints whose address is not an IP (FQDN slices) are skipped.
pub fn port_endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: &str) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or_default() == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse().ok()) else {
                continue;
            };
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            out.push(Endpoint {
                ip,
                port,
                ready,
                serving: c.and_then(|c| c.serving).unwrap_or(ready),
                terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                node: ep.node_name.clone(),
            });
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
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

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_per_endpoint() {
        // Two slices: pods of two versions that name their port differently.
        let a = slice(
            json!({"metadata": {"name": "web-a", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "n1"}]}),
        );
        let b = slice(
            json!({"metadata": {"name": "web-b", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.42.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}}]}),
        );
        let other = slice(
            json!({"metadata": {"name": "x", "namespace": "other", "labels": {LABEL_SERVICE_NAME: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.9"]}]}),
        );
        let by_service = slices_by_service([&a, &b, &other]);
        let web = &by_service[&("default", "web")];
        let eps: Vec<(String, u16, bool)> = port_endpoints(web, "http", "TCP")
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
        assert_eq!(port_endpoints(web, "dns", "UDP").len(), 1);
        assert!(port_endpoints(web, "http", "UDP").is_empty());
        assert!(
            port_endpoints(&by_service[&("other", "web")], "http", "TCP")[0].ready,
            "unset conditions mean ready"
        );
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let e = |ready, serving, terminating| Endpoint {
            ip: IpAddr::from([10, 42, 0, 1]),
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
}
