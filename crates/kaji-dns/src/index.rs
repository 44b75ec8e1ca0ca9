//! Services, EndpointSlices and Namespaces -> the in-memory index that answers read.
//!
//! The index is rebuilt whole on change and swapped in as an `Arc` ([`SharedIndex`]): answering
//! takes no lock beyond cloning that `Arc`, and a rebuild of thousands of Services takes
//! milliseconds. All keys are lowercase, since DNS comparisons are case-insensitive.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub use kaji_runtime::endpoints::LABEL_SERVICE_NAME as SERVICE_NAME_LABEL;

/// What a Service resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A normal Service: its cluster IPs (one per family).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the IPs of its (ready) endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// A port of a Service or of an EndpointSlice; name and protocol lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRecord {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

/// One address of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    pub ip: IpAddr,
    /// The endpoint's DNS label: its `hostname`, else its IP with dashes (CoreDNS's
    /// `endpointHostname`), lowercase.
    pub hostname: String,
    /// The ports of the slice it came from.
    pub ports: Arc<[PortRecord]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    pub ports: Vec<PortRecord>,
    /// Ready endpoints (all of them with `publishNotReadyAddresses`), one per IP.
    pub endpoints: Vec<EndpointRecord>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are published too.
    pub publish_not_ready: bool,
}

/// Who a reverse (PTR) lookup of an IP names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseTarget {
    pub namespace: String,
    pub service: String,
    /// None: the Service's cluster IP; Some: an endpoint's label.
    pub endpoint: Option<String>,
}

/// The cluster as DNS sees it.
#[derive(Clone, Debug, Default)]
pub struct Index {
    namespaces: HashSet<String>,
    services: HashMap<String, HashMap<String, ServiceRecord>>,
    reverse: HashMap<IpAddr, Vec<ReverseTarget>>,
    /// The SOA serial: when the index was built (Unix seconds, as CoreDNS's `Modified`).
    pub serial: u32,
}

impl Index {
    /// Builds the index from the objects the reflectors hold.
    pub fn build<N, S, E>(
        namespaces: impl IntoIterator<Item = N>,
        services: impl IntoIterator<Item = S>,
        slices: impl IntoIterator<Item = E>,
        serial: u32,
    ) -> Index
    where
        N: AsRef<str>,
        S: Borrow<Service>,
        E: Borrow<EndpointSlice>,
    {
        let mut index = Index {
            namespaces: namespaces
                .into_iter()
                .map(|n| n.as_ref().to_ascii_lowercase())
                .collect(),
            serial,
            ..Index::default()
        };
        for svc in services {
            if let Some(record) = service_record(svc.borrow()) {
                index.namespaces.insert(record.namespace.clone());
                index
                    .services
                    .entry(record.namespace.clone())
                    .or_default()
                    .insert(record.name.clone(), record);
            }
        }
        for slice in slices {
            index.add_slice(slice.borrow());
        }
        // Reverse entries: cluster IPs first, so a PTR for one names the Service.
        let mut reverse: HashMap<IpAddr, Vec<ReverseTarget>> = HashMap::new();
        let mut all: Vec<&ServiceRecord> =
            index.services.values().flat_map(|m| m.values()).collect();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for svc in &all {
            if let ServiceKind::ClusterIp(ips) = &svc.kind {
                for ip in ips {
                    reverse.entry(*ip).or_default().push(ReverseTarget {
                        namespace: svc.namespace.clone(),
                        service: svc.name.clone(),
                        endpoint: None,
                    });
                }
            }
        }
        for svc in &all {
            for ep in &svc.endpoints {
                let targets = reverse.entry(ep.ip).or_default();
                if targets.iter().all(|t| t.endpoint.is_some()) {
                    targets.push(ReverseTarget {
                        namespace: svc.namespace.clone(),
                        service: svc.name.clone(),
                        endpoint: Some(ep.hostname.clone()),
                    });
                }
            }
        }
        index.reverse = reverse;
        index
    }

    fn add_slice(&mut self, slice: &EndpointSlice) {
        let meta = &slice.metadata;
        let (Some(namespace), Some(service)) = (
            meta.namespace.as_deref(),
            meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) else {
            return;
        };
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            return; // FQDN slices have no place in DNS answers
        }
        let Some(svc) = self
            .services
            .get_mut(&namespace.to_ascii_lowercase())
            .and_then(|m| m.get_mut(&service.to_ascii_lowercase()))
        else {
            return;
        };
        if matches!(svc.kind, ServiceKind::ExternalName(_)) {
            return;
        }
        let publish_not_ready = svc.publish_not_ready;
        let ports: Arc<[PortRecord]> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(PortRecord {
                    name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                    protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                    port: u16::try_from(p.port?).ok()?,
                })
            })
            .collect();
        for ep in &slice.endpoints {
            // Ready unless it says otherwise (the EndpointSlice API's reading of a nil ready).
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready && !publish_not_ready {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                if svc.endpoints.iter().any(|e| e.ip == ip) {
                    continue;
                }
                let hostname = ep
                    .hostname
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_else(|| dashed_ip(ip));
                svc.endpoints.push(EndpointRecord {
                    ip,
                    hostname,
                    ports: ports.clone(),
                });
            }
        }
    }

    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    /// A Service by lowercase namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        self.services.get(namespace)?.get(name)
    }

    /// Who an IP belongs to: the Service with that cluster IP, else the endpoints with it.
    pub fn reverse(&self, ip: IpAddr) -> &[ReverseTarget] {
        self.reverse.get(&ip).map_or(&[], Vec::as_slice)
    }

    pub fn service_count(&self) -> usize {
        self.services.values().map(HashMap::len).sum()
    }
}

/// Turns a Service object into its record; None for Services DNS has nothing to say about.
fn service_record(svc: &Service) -> Option<ServiceRecord> {
    let namespace = svc.metadata.namespace.as_deref()?.to_ascii_lowercase();
    let name = svc.metadata.name.as_deref()?.to_ascii_lowercase();
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone()?)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                spec.cluster_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        ServiceKind::ClusterIp(ips)
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortRecord {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    Some(ServiceRecord {
        namespace,
        name,
        kind,
        ports,
        endpoints: Vec::new(),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

/// `10.1.2.3` -> `10-1-2-3`; `fd00::1` -> `fd00--1` (CoreDNS's form for endpoints without a
/// hostname).
pub fn dashed_ip(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The index the answering side reads, swapped whole by the watcher side.
#[derive(Clone, Default)]
pub struct SharedIndex(Arc<RwLock<Arc<Index>>>);

impl SharedIndex {
    pub fn new(index: Index) -> SharedIndex {
        SharedIndex(Arc::new(RwLock::new(Arc::new(index))))
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Index> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn store(&self, index: Index) {
        let index = Arc::new(index);
        match self.0.write() {
            Ok(mut guard) => *guard = index,
            Err(poisoned) => *poisoned.into_inner() = index,
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builders for Services and EndpointSlices, shared by the tests of this crate.
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    pub fn cluster_ip(ns: &str, name: &str, ip: &str, ports: &[(&str, &str, i32)]) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                cluster_ips: Some(vec![ip.into()]),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, proto, port)| ServicePort {
                            name: (!n.is_empty()).then(|| n.to_string()),
                            protocol: Some(proto.to_string()),
                            port: *port,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    pub fn headless(ns: &str, name: &str, ports: &[(&str, &str, i32)]) -> Service {
        let mut svc = cluster_ip(ns, name, "None", ports);
        if let Some(spec) = &mut svc.spec {
            spec.cluster_ips = Some(vec!["None".into()]);
        }
        svc
    }

    pub fn external(ns: &str, name: &str, target: &str) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(target.into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// A slice of `service`; endpoints are (ip, hostname, ready).
    pub fn slice(
        ns: &str,
        name: &str,
        service: &str,
        endpoints: &[(&str, Option<&str>, Option<bool>)],
        ports: &[(&str, &str, i32)],
    ) -> EndpointSlice {
        let mut metadata = meta(ns, name);
        metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into());
        let v6 = endpoints.iter().any(|(ip, _, _)| ip.contains(':'));
        EndpointSlice {
            metadata,
            address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, host, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    hostname: host.map(str::to_string),
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, proto, port)| EndpointPort {
                        name: Some(n.to_string()),
                        protocol: Some(proto.to_string()),
                        port: Some(*port),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn headless_keeps_ready_endpoints_once() {
        let svcs = [headless("default", "db", &[("pg", "TCP", 5432)])];
        let slices = [
            slice(
                "default",
                "db-a",
                "db",
                &[
                    ("10.42.0.5", Some("db-0"), Some(true)),
                    ("10.42.0.6", None, Some(false)),
                    ("10.42.0.7", None, None),
                ],
                &[("pg", "TCP", 5432)],
            ),
            // A duplicate of 10.42.0.5 in a second slice (a transition) counts once.
            slice(
                "default",
                "db-b",
                "db",
                &[("10.42.0.5", None, Some(true))],
                &[],
            ),
        ];
        let index = Index::build(["default"], &svcs, &slices, 1);
        let svc = index.service("default", "db").unwrap();
        assert_eq!(svc.kind, ServiceKind::Headless);
        let eps: Vec<(String, &str)> = svc
            .endpoints
            .iter()
            .map(|e| (e.ip.to_string(), e.hostname.as_str()))
            .collect();
        assert_eq!(
            eps,
            [
                ("10.42.0.5".to_string(), "db-0"),
                ("10.42.0.7".to_string(), "10-42-0-7")
            ]
        );
    }

    #[test]
    fn publish_not_ready_addresses_keeps_all() {
        let mut svc = headless("default", "db", &[]);
        if let Some(spec) = &mut svc.spec {
            spec.publish_not_ready_addresses = Some(true);
        }
        let slices = [slice(
            "default",
            "db-a",
            "db",
            &[("10.42.0.6", None, Some(false))],
            &[],
        )];
        let index = Index::build(Vec::<String>::new(), [svc], &slices, 1);
        assert_eq!(index.service("default", "db").unwrap().endpoints.len(), 1);
        assert!(index.namespace_exists("default"));
    }

    #[test]
    fn reverse_prefers_the_cluster_ip_owner() {
        let svcs = [
            cluster_ip("default", "Web", "10.43.0.7", &[("http", "TCP", 80)]),
            headless("default", "db", &[]),
        ];
        let slices = [slice(
            "default",
            "db-a",
            "db",
            &[("10.42.0.5", None, None)],
            &[],
        )];
        let index = Index::build(["default"], &svcs, &slices, 1);
        let web = index.reverse("10.43.0.7".parse().unwrap());
        assert_eq!(web.len(), 1);
        assert_eq!(web[0].service, "web");
        let db = index.reverse("10.42.0.5".parse().unwrap());
        assert_eq!(db[0].endpoint.as_deref(), Some("10-42-0-5"));
    }

    #[test]
    fn dashed_ips() {
        assert_eq!(dashed_ip("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(dashed_ip("fd00::1".parse().unwrap()), "fd00--1");
    }
}
