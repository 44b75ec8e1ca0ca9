//! Docker-links style service environment variables, as upstream's kubelet sets them
//! (`getServiceEnvVarMap` in pkg/kubelet/kubelet_pods.go and `FromServices` in
//! pkg/kubelet/envvars): a pure function from the Services the pod can see to the variables.
//!
//! Which Services: those of the pod's namespace when `enableServiceLinks` is true (the
//! default), and always the API server's own `kubernetes` Service of `default` (a Service of the
//! same name in the pod's namespace wins over it). Only Services with a cluster IP take part:
//! headless (`None`) and ExternalName Services (no cluster IP) are skipped.
//!
//! For a Service `my-svc` (upper-cased, `-` as `_`) with cluster IP 10.43.0.7 and a first port
//! 80/TCP named `http`:
//! `MY_SVC_SERVICE_HOST=10.43.0.7`, `MY_SVC_SERVICE_PORT=80`, `MY_SVC_SERVICE_PORT_HTTP=80`,
//! `MY_SVC_PORT=tcp://10.43.0.7:80`, and for each port `MY_SVC_PORT_80_TCP=tcp://10.43.0.7:80`
//! with `_PROTO=tcp`, `_PORT=80` and `_ADDR=10.43.0.7`.

use k8s_openapi::api::core::v1::Service;
use std::collections::BTreeMap;

/// The namespace and name of the API server's Service, whose variables every pod gets.
const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// Upstream's IsServiceIPSet: a cluster IP that is neither empty nor `None`.
fn cluster_ip(svc: &Service) -> Option<&str> {
    svc.spec
        .as_ref()?
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// `my-svc` -> `MY_SVC`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// `ip:port`, with IPv6 addresses in brackets (Go's net.JoinHostPort).
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The Services whose variables a pod in `namespace` gets, by name (upstream's serviceMap):
/// the master services of `default` always, the namespace's own when links are enabled.
pub fn visible_services<'a>(
    namespace: &str,
    enable_service_links: bool,
    services: &'a [Service],
) -> Vec<&'a Service> {
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    let mut local: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services.iter().filter(|s| cluster_ip(s).is_some()) {
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let ns = svc
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(MASTER_NAMESPACE);
        if ns == MASTER_NAMESPACE && MASTER_SERVICES.contains(&name) {
            by_name.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            local.insert(name, svc);
        }
    }
    // A namespace's own Service of a master service's name wins, whatever the listing order.
    by_name.extend(local);
    by_name.into_values().collect()
}

/// The variables of these Services (upstream's FromServices), in upstream's order per Service.
pub fn from_services(services: &[&Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let (Some(ip), Some(spec)) = (cluster_ip(svc), svc.spec.as_ref()) else {
            continue;
        };
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                    p.port.to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let protocol = p
                .protocol
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let url = format!("{lower}://{}", host_port(ip, p.port));
            // Docker special-cases the first port.
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
            out.push((format!("{port_prefix}_PROTO"), lower));
            out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
            out.push((port_prefix, url));
        }
    }
    out
}

/// The service variables of a pod in `namespace`, from every Service listed for it.
pub fn service_env(
    namespace: &str,
    enable_service_links: bool,
    services: &[Service],
) -> Vec<(String, String)> {
    from_services(&visible_services(namespace, enable_service_links, services))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: Option<&str>, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: ip.map(Into::into),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, port, proto)| ServicePort {
                            name: (!n.is_empty()).then(|| (*n).to_string()),
                            port: *port,
                            protocol: (!proto.is_empty()).then(|| (*proto).to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
        v.sort();
        v
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        sorted(
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn one_service_with_named_ports() {
        let s = svc(
            "app",
            "my-svc",
            Some("10.43.0.7"),
            &[("http", 80, "TCP"), ("dns-udp", 53, "UDP")],
        );
        assert_eq!(
            sorted(service_env("app", true, &[s])),
            pairs(&[
                ("MY_SVC_SERVICE_HOST", "10.43.0.7"),
                ("MY_SVC_SERVICE_PORT", "80"),
                ("MY_SVC_SERVICE_PORT_HTTP", "80"),
                ("MY_SVC_SERVICE_PORT_DNS_UDP", "53"),
                ("MY_SVC_PORT", "tcp://10.43.0.7:80"),
                ("MY_SVC_PORT_80_TCP", "tcp://10.43.0.7:80"),
                ("MY_SVC_PORT_80_TCP_PROTO", "tcp"),
                ("MY_SVC_PORT_80_TCP_PORT", "80"),
                ("MY_SVC_PORT_80_TCP_ADDR", "10.43.0.7"),
                ("MY_SVC_PORT_53_UDP", "udp://10.43.0.7:53"),
                ("MY_SVC_PORT_53_UDP_PROTO", "udp"),
                ("MY_SVC_PORT_53_UDP_PORT", "53"),
                ("MY_SVC_PORT_53_UDP_ADDR", "10.43.0.7"),
            ])
        );
    }

    #[test]
    fn unnamed_port_defaults_to_tcp_and_ipv6_is_bracketed() {
        let s = svc("app", "v6", Some("fd00::7"), &[("", 8080, "")]);
        assert_eq!(
            sorted(service_env("app", true, &[s])),
            pairs(&[
                ("V6_SERVICE_HOST", "fd00::7"),
                ("V6_SERVICE_PORT", "8080"),
                ("V6_PORT", "tcp://[fd00::7]:8080"),
                ("V6_PORT_8080_TCP", "tcp://[fd00::7]:8080"),
                ("V6_PORT_8080_TCP_PROTO", "tcp"),
                ("V6_PORT_8080_TCP_PORT", "8080"),
                ("V6_PORT_8080_TCP_ADDR", "fd00::7"),
            ])
        );
    }

    fn hosts(v: &[(String, String)]) -> Vec<String> {
        let mut out: Vec<String> = v
            .iter()
            .filter(|(k, _)| k.ends_with("_SERVICE_HOST"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn which_services_a_pod_sees() {
        let all = [
            svc(
                "default",
                "kubernetes",
                Some("10.43.0.1"),
                &[("https", 443, "TCP")],
            ),
            svc("default", "other", Some("10.43.0.2"), &[("", 80, "TCP")]),
            svc("app", "web", Some("10.43.0.3"), &[("", 80, "TCP")]),
            svc("app", "headless", Some("None"), &[("", 80, "TCP")]),
            svc("app", "external", None, &[]),
            svc("elsewhere", "db", Some("10.43.0.4"), &[("", 5432, "TCP")]),
        ];
        assert_eq!(
            hosts(&service_env("app", true, &all)),
            [
                "KUBERNETES_SERVICE_HOST=10.43.0.1",
                "WEB_SERVICE_HOST=10.43.0.3"
            ]
        );
        // Without service links only the master service remains.
        assert_eq!(
            hosts(&service_env("app", false, &all)),
            ["KUBERNETES_SERVICE_HOST=10.43.0.1"]
        );
        assert_eq!(
            hosts(&service_env("default", false, &all)),
            ["KUBERNETES_SERVICE_HOST=10.43.0.1"]
        );
        assert_eq!(
            hosts(&service_env("default", true, &all)),
            [
                "KUBERNETES_SERVICE_HOST=10.43.0.1",
                "OTHER_SERVICE_HOST=10.43.0.2"
            ]
        );
    }

    #[test]
    fn a_namespaces_own_kubernetes_service_wins() {
        let master = svc(
            "default",
            "kubernetes",
            Some("10.43.0.1"),
            &[("https", 443, "TCP")],
        );
        let own = svc("app", "kubernetes", Some("10.43.0.9"), &[("", 80, "TCP")]);
        for list in [[master.clone(), own.clone()], [own.clone(), master.clone()]] {
            assert_eq!(
                hosts(&service_env("app", true, &list)),
                ["KUBERNETES_SERVICE_HOST=10.43.0.9"]
            );
            assert_eq!(
                hosts(&service_env("app", false, &list)),
                ["KUBERNETES_SERVICE_HOST=10.43.0.1"]
            );
        }
    }
}
