//! The routing table: served Ingresses + Services + EndpointSlices -> host/path rules -> backends.
//! A pure function of its inputs ([`RoutingTable::build`]) and a lookup ([`RoutingTable::route`]),
//! following <https://kubernetes.io/docs/concepts/services-networking/ingress/>:
//!
//! - hosts match exactly or as `*.example.com` (one DNS label); a rule without host matches any;
//! - `Exact` paths match the whole path, `Prefix` (and `ImplementationSpecific`) paths match
//!   element-wise by `/`; the longest path wins and `Exact` beats `Prefix` at equal length;
//! - a host that matches but has no matching path falls through to the wildcard rules, then to
//!   the rules without host (as Traefik, k3s's controller, does), then to `spec.defaultBackend`;
//! - when several Ingresses claim the same host and path, the oldest one wins (as ingress-nginx).

use crate::events::{Problem, REASON_SERVICE_NOT_FOUND};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kaji_runtime::endpoints::{port_endpoints, slices_by_service, usable};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The label that ties an EndpointSlice to its Service.
pub use kaji_runtime::endpoints::LABEL_SERVICE_NAME as SERVICE_NAME_LABEL;

/// Where a request goes.
#[derive(Clone, Debug)]
pub enum Route {
    /// Proxy to one of the backend's endpoints.
    Backend(Arc<Backend>),
    /// A rule matched, but its backend cannot take traffic (503); the reason is for logs.
    Unavailable(Arc<str>),
    /// No rule and no default backend (404).
    NotFound,
}

/// A Service port with the endpoints that currently serve it, balanced round robin.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/name:port`, for logs.
    pub name: String,
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Backend {
    pub fn new(name: String, endpoints: Vec<SocketAddr>) -> Self {
        Self {
            name,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The next endpoint in round-robin order.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.endpoints[i % self.endpoints.len()])
    }
}

/// How a rule's path is compared with the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact,
    /// `Prefix`, and `ImplementationSpecific` which Kaji treats as `Prefix`.
    Prefix,
}

#[derive(Clone, Debug)]
struct PathRule {
    /// For `Exact` the path as written; for `Prefix` without its trailing `/`s.
    path: String,
    kind: PathMatch,
    target: Route,
}

impl PathRule {
    fn matches(&self, request_path: &str) -> bool {
        match self.kind {
            PathMatch::Exact => request_path == self.path,
            PathMatch::Prefix => prefix_matches(&self.path, request_path),
        }
    }
}

/// Element-wise prefix match: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
/// `rule` has no trailing `/` (the rule `/` is the empty string and matches everything).
fn prefix_matches(rule: &str, request_path: &str) -> bool {
    let mut want = rule.split('/').filter(|s| !s.is_empty());
    let mut have = request_path.split('/').filter(|s| !s.is_empty());
    loop {
        match (want.next(), have.next()) {
            (None, _) => return true,
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// The paths of one host (or of all rules without host), longest first, `Exact` first among
/// equals, so the first match is the one the spec picks.
#[derive(Clone, Debug, Default)]
struct HostRules {
    paths: Vec<PathRule>,
}

impl HostRules {
    fn add(&mut self, rule: PathRule) {
        // The oldest Ingress (added first) keeps a contested path.
        if !self
            .paths
            .iter()
            .any(|p| p.path == rule.path && p.kind == rule.kind)
        {
            self.paths.push(rule);
        }
    }

    fn sort(&mut self) {
        // Stable: among identical keys the insertion (age) order stays.
        self.paths.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| (a.kind != PathMatch::Exact).cmp(&(b.kind != PathMatch::Exact)))
        });
    }

    fn route(&self, path: &str) -> Option<&Route> {
        self.paths
            .iter()
            .find(|p| p.matches(path))
            .map(|p| &p.target)
    }
}

/// Every served Ingress's rules merged, with their backends resolved to endpoints.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    exact_hosts: HashMap<String, HostRules>,
    /// Keyed by the part after `*.`.
    wildcard_hosts: HashMap<String, HostRules>,
    any_host: HostRules,
    default_backend: Option<Route>,
}

/// Normalizes a request's Host (or `:authority`): lower case, without port or trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

impl RoutingTable {
    /// Builds the table from the Ingresses this controller serves (already filtered by class)
    /// and all Services and EndpointSlices.
    pub fn build(
        ingresses: &[&Ingress],
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Self {
        Self::build_reporting(ingresses, services, slices).0
    }

    /// [`build`](Self::build), also reporting backends whose Service does not exist.
    pub fn build_reporting(
        ingresses: &[&Ingress],
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> (Self, Vec<Problem>) {
        let resolver = Resolver::new(services, slices);
        let mut table = RoutingTable::default();
        let mut problems: Vec<Problem> = Vec::new();
        for ing in oldest_first(ingresses) {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            let ing_name = ing.metadata.name.as_deref().unwrap_or("");
            let mut report_missing = |b: &IngressBackend| {
                let Some(svc) = b.service.as_ref() else {
                    return;
                };
                if resolver.services.contains_key(&(ns, svc.name.as_str())) {
                    return;
                }
                let p = Problem {
                    namespace: ns.to_string(),
                    ingress: ing_name.to_string(),
                    reason: REASON_SERVICE_NOT_FOUND,
                    message: format!("Service \"{ns}/{}\" not found", svc.name),
                };
                if !problems.contains(&p) {
                    problems.push(p);
                }
            };
            let Some(spec) = ing.spec.as_ref() else {
                continue;
            };
            if let Some(b) = spec.default_backend.as_ref()
                && table.default_backend.is_none()
            {
                table.default_backend = Some(resolver.resolve(ns, b));
            }
            if let Some(b) = spec.default_backend.as_ref() {
                report_missing(b);
            }
            for rule in spec.rules.iter().flatten() {
                let Some(http) = rule.http.as_ref() else {
                    continue;
                };
                let host = rule.host.as_deref().map(normalize_host).unwrap_or_default();
                let rules = if host.is_empty() {
                    &mut table.any_host
                } else if let Some(suffix) = host.strip_prefix("*.") {
                    table.wildcard_hosts.entry(suffix.to_string()).or_default()
                } else {
                    table.exact_hosts.entry(host).or_default()
                };
                for p in &http.paths {
                    report_missing(&p.backend);
                    let raw = p.path.as_deref().unwrap_or("");
                    let rule = match p.path_type.as_str() {
                        "Exact" if raw.starts_with('/') => PathRule {
                            path: raw.to_string(),
                            kind: PathMatch::Exact,
                            target: resolver.resolve(ns, &p.backend),
                        },
                        "Prefix" | "ImplementationSpecific"
                            if raw.is_empty() || raw.starts_with('/') =>
                        {
                            PathRule {
                                path: raw.trim_end_matches('/').to_string(),
                                kind: PathMatch::Prefix,
                                target: resolver.resolve(ns, &p.backend),
                            }
                        }
                        // Validation refuses these; skip rather than guess.
                        _ => continue,
                    };
                    rules.add(rule);
                }
            }
        }
        table.any_host.sort();
        for rules in table.exact_hosts.values_mut() {
            rules.sort();
        }
        for rules in table.wildcard_hosts.values_mut() {
            rules.sort();
        }
        (table, problems)
    }

    /// Where a request for `host` (Host header, may carry a port) and `path` goes.
    pub fn route(&self, host: &str, path: &str) -> Route {
        let host = normalize_host(host);
        let path = if path.is_empty() { "/" } else { path };
        let by_host = self.exact_hosts.get(&host).and_then(|r| r.route(path));
        let by_wildcard = || {
            let (label, suffix) = host.split_once('.')?;
            if label.is_empty() {
                return None;
            }
            self.wildcard_hosts.get(suffix)?.route(path)
        };
        by_host
            .or_else(by_wildcard)
            .or_else(|| self.any_host.route(path))
            .or(self.default_backend.as_ref())
            .cloned()
            .unwrap_or(Route::NotFound)
    }
}

/// Ingresses ordered oldest first (creation time, then namespace/name), the order that decides
/// conflicts.
pub fn oldest_first<'a>(ingresses: &[&'a Ingress]) -> Vec<&'a Ingress> {
    let mut v = ingresses.to_vec();
    v.sort_by(|a, b| {
        let key = |i: &Ingress| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    v
}

/// Resolves Ingress backends to endpoints, sharing one [`Backend`] per Service port so
/// round robin spans every path that names it.
struct Resolver<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: BTreeMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    cache: std::cell::RefCell<HashMap<(String, String, String), Route>>,
}

impl<'a> Resolver<'a> {
    fn new(services: &'a [Arc<Service>], slices: &'a [Arc<EndpointSlice>]) -> Self {
        let services = services
            .iter()
            .filter_map(|s| {
                Some((
                    (
                        s.metadata.namespace.as_deref()?,
                        s.metadata.name.as_deref()?,
                    ),
                    &**s,
                ))
            })
            .collect();
        let by_service = slices_by_service(slices.iter().map(|s| &**s));
        Self {
            services,
            slices: by_service,
            cache: Default::default(),
        }
    }

    fn resolve(&self, namespace: &str, backend: &IngressBackend) -> Route {
        let Some(svc) = backend.service.as_ref() else {
            return Route::Unavailable("resource backends are not supported".into());
        };
        let port = svc.port.as_ref();
        let port_key = match (
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.as_deref()),
        ) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => String::new(),
        };
        let key = (namespace.to_string(), svc.name.clone(), port_key.clone());
        if let Some(r) = self.cache.borrow().get(&key) {
            return r.clone();
        }
        let route = self.resolve_uncached(namespace, &svc.name, &port_key, port);
        self.cache.borrow_mut().insert(key, route.clone());
        route
    }

    fn resolve_uncached(
        &self,
        namespace: &str,
        name: &str,
        port_key: &str,
        port: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
    ) -> Route {
        let unavailable = |why: String| Route::Unavailable(why.into());
        let Some(service) = self.services.get(&(namespace, name)) else {
            return unavailable(format!("service {namespace}/{name} not found"));
        };
        let spec = service.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return unavailable(format!(
                "service {namespace}/{name} is of type ExternalName, which is not supported"
            ));
        }
        let service_port = spec.and_then(|s| s.ports.as_ref()).and_then(|ports| {
            ports.iter().find(|p| match port {
                Some(bp) if bp.number.is_some() => bp.number == Some(p.port),
                Some(bp) if bp.name.is_some() => p.name.as_deref() == bp.name.as_deref(),
                // No port given: only unambiguous for a single-port Service.
                _ => ports.len() == 1,
            })
        });
        let Some(service_port) = service_port else {
            return unavailable(format!(
                "service {namespace}/{name} has no port {port_key:?}"
            ));
        };
        if service_port.protocol.as_deref().is_some_and(|p| p != "TCP") {
            return unavailable(format!(
                "service {namespace}/{name} port {port_key:?} is not TCP"
            ));
        }
        let port_name = service_port.name.as_deref().unwrap_or("");
        let slices = self
            .slices
            .get(&(namespace, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let candidates = port_endpoints(slices, port_name, "TCP");
        let endpoints: Vec<SocketAddr> = usable(candidates.iter())
            .iter()
            .map(|e| SocketAddr::new(e.ip, e.port))
            .collect();
        if endpoints.is_empty() {
            return unavailable(format!(
                "service {namespace}/{name} port {port_key:?} has no endpoints"
            ));
        }
        Route::Backend(Arc::new(Backend::new(
            format!("{namespace}/{name}:{port_key}"),
            endpoints,
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn ingress(ns: &str, name: &str, created: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
            "spec": spec,
        }))
        .expect("ingress")
    }

    pub fn service(ns: &str, name: &str, ports: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"ports": ports},
            }))
            .expect("service"),
        )
    }

    /// A slice for `svc` with `(ip, ready, serving, terminating)` endpoints on one named port.
    pub fn slice(
        ns: &str,
        svc: &str,
        port_name: &str,
        port: i32,
        eps: &[(&str, bool, bool, bool)],
    ) -> Arc<EndpointSlice> {
        let endpoints: Vec<_> = eps
            .iter()
            .map(|(ip, r, s, t)| {
                json!({"addresses": [ip], "conditions": {"ready": r, "serving": s, "terminating": t}})
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": format!("{svc}-{port_name}-x"),
                             "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .expect("slice"),
        )
    }

    fn backend(svc: &str, port: i32) -> serde_json::Value {
        json!({"service": {"name": svc, "port": {"number": port}}})
    }

    fn path(p: &str, ty: &str, svc: &str) -> serde_json::Value {
        json!({"path": p, "pathType": ty, "backend": backend(svc, 80)})
    }

    /// One Service per name, each port 80 (named "http") -> endpoint 10.0.0.N:8080.
    fn cluster(names: &[&str]) -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        let mut svcs = vec![];
        let mut slices = vec![];
        for (i, n) in names.iter().enumerate() {
            svcs.push(service(
                "default",
                n,
                json!([{"name": "http", "port": 80, "targetPort": 8080}]),
            ));
            let ip = format!("10.0.0.{}", i + 1);
            slices.push(slice(
                "default",
                n,
                "http",
                8080,
                &[(&ip, true, true, false)],
            ));
        }
        (svcs, slices)
    }

    /// The service a request lands on (by the endpoint's last octet), or "404"/"503".
    fn hit(t: &RoutingTable, host: &str, path: &str, names: &[&str]) -> String {
        match t.route(host, path) {
            Route::Backend(b) => {
                let ep = b.pick().expect("endpoint");
                let std::net::IpAddr::V4(v4) = ep.ip() else {
                    panic!("v4")
                };
                names[usize::from(v4.octets()[3]) - 1].to_string()
            }
            Route::Unavailable(_) => "503".into(),
            Route::NotFound => "404".into(),
        }
    }

    fn table(ings: &[Ingress], names: &[&str]) -> RoutingTable {
        let (svcs, slices) = cluster(names);
        let refs: Vec<&Ingress> = ings.iter().collect();
        RoutingTable::build(&refs, &svcs, &slices)
    }

    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-01-02T00:00:00Z";

    #[test]
    fn exact_host_and_no_host() {
        let names = ["a", "any"];
        let t = table(
            &[ingress(
                "default",
                "i",
                T0,
                json!({"rules": [
                    {"host": "a.example.com", "http": {"paths": [path("/", "Prefix", "a")]}},
                    {"http": {"paths": [path("/", "Prefix", "any")]}},
                ]}),
            )],
            &names,
        );
        assert_eq!(hit(&t, "a.example.com", "/x", &names), "a");
        assert_eq!(hit(&t, "A.Example.COM:8080", "/x", &names), "a");
        assert_eq!(hit(&t, "a.example.com.", "/", &names), "a");
        assert_eq!(hit(&t, "other.example.com", "/x", &names), "any");
        assert_eq!(hit(&t, "", "/x", &names), "any");
    }

    #[test]
    fn wildcard_host_matches_exactly_one_label() {
        let names = ["w", "exact"];
        let t = table(
            &[ingress(
                "default",
                "i",
                T0,
                json!({"rules": [
                    {"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "w")]}},
                    {"host": "foo.example.com", "http": {"paths": [path("/", "Prefix", "exact")]}},
                ]}),
            )],
            &names,
        );
        assert_eq!(hit(&t, "bar.example.com", "/", &names), "w");
        assert_eq!(hit(&t, "foo.example.com", "/", &names), "exact");
        assert_eq!(hit(&t, "example.com", "/", &names), "404");
        assert_eq!(hit(&t, "a.bar.example.com", "/", &names), "404");
        assert_eq!(hit(&t, ".example.com", "/", &names), "404");
    }

    #[test]
    fn exact_path_type() {
        let names = ["e"];
        let t = table(
            &[ingress(
                "default",
                "i",
                T0,
                json!({"rules": [{"http": {"paths": [path("/foo", "Exact", "e")]}}]}),
            )],
            &names,
        );
        assert_eq!(hit(&t, "h", "/foo", &names), "e");
        assert_eq!(hit(&t, "h", "/foo/", &names), "404");
        assert_eq!(hit(&t, "h", "/FOO", &names), "404");
        assert_eq!(hit(&t, "h", "/foo/bar", &names), "404");
    }

    #[test]
    fn prefix_path_type_is_element_wise() {
        let names = ["p"];
        for rule in ["/foo", "/foo/"] {
            let t = table(
                &[ingress(
                    "default",
                    "i",
                    T0,
                    json!({"rules": [{"http": {"paths": [path(rule, "Prefix", "p")]}}]}),
                )],
                &names,
            );
            assert_eq!(hit(&t, "h", "/foo", &names), "p", "{rule}");
            assert_eq!(hit(&t, "h", "/foo/", &names), "p", "{rule}");
            assert_eq!(hit(&t, "h", "/foo/bar", &names), "p", "{rule}");
            assert_eq!(hit(&t, "h", "/foobar", &names), "404", "{rule}");
            assert_eq!(hit(&t, "h", "/", &names), "404", "{rule}");
        }
        assert!(prefix_matches("", "/anything"));
        assert!(prefix_matches("/aaa/bbb", "/aaa/bbb/ccc"));
        assert!(!prefix_matches("/aaa/bb", "/aaa/bbb"));
    }

    #[test]
    fn implementation_specific_is_prefix() {
        let names = ["i"];
        let t = table(
            &[ingress(
                "default",
                "i",
                T0,
                json!({"rules": [{"http": {"paths": [path("/api", "ImplementationSpecific", "i")]}}]}),
            )],
            &names,
        );
        assert_eq!(hit(&t, "h", "/api/v1", &names), "i");
        assert_eq!(hit(&t, "h", "/apiv1", &names), "404");
    }

    #[test]
    fn longest_match_wins_and_exact_beats_prefix() {
        let names = ["root", "aaa", "bbb", "exact"];
        let t = table(
            &[ingress(
                "default",
                "i",
                T0,
                json!({"rules": [{"http": {"paths": [
                    path("/", "Prefix", "root"),
                    path("/aaa", "Prefix", "aaa"),
                    path("/aaa/bbb", "Prefix", "bbb"),
                    path("/aaa/bbb", "Exact", "exact"),
                ]}}]}),
            )],
            &names,
        );
        assert_eq!(hit(&t, "h", "/", &names), "root");
        assert_eq!(hit(&t, "h", "/aaa/ccc", &names), "aaa");
        assert_eq!(hit(&t, "h", "/aaa/bbb", &names), "exact");
        assert_eq!(hit(&t, "h", "/aaa/bbb/", &names), "bbb");
        assert_eq!(hit(&t, "h", "/aaa/bbb/c", &names), "bbb");
        assert_eq!(hit(&t, "h", "/aaab", &names), "root");
    }

    #[test]
    fn rules_merge_across_ingresses_oldest_wins_conflicts() {
        let names = ["old", "new", "api"];
        let t = table(
            &[
                ingress(
                    "default",
                    "newer",
                    T1,
                    json!({"rules": [{"host": "h", "http": {"paths": [
                        path("/", "Prefix", "new"),
                        path("/api", "Prefix", "api"),
                    ]}}]}),
                ),
                ingress(
                    "default",
                    "older",
                    T0,
                    json!({"rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "old")]}}]}),
                ),
            ],
            &names,
        );
        assert_eq!(hit(&t, "h", "/", &names), "old");
        assert_eq!(hit(&t, "h", "/api/x", &names), "api");
    }

    #[test]
    fn host_without_matching_path_falls_through_then_default_backend_then_404() {
        let names = ["host", "any", "def"];
        let rules = json!([
            {"host": "h", "http": {"paths": [path("/only", "Exact", "host")]}},
            {"http": {"paths": [path("/any", "Prefix", "any")]}},
        ]);
        let t = table(
            &[ingress(
                "default",
                "i",
                T0,
                json!({"rules": rules.clone(), "defaultBackend": backend("def", 80)}),
            )],
            &names,
        );
        assert_eq!(hit(&t, "h", "/only", &names), "host");
        assert_eq!(hit(&t, "h", "/any/1", &names), "any");
        assert_eq!(hit(&t, "h", "/else", &names), "def");
        assert_eq!(hit(&t, "x", "/else", &names), "def");
        let t = table(
            &[ingress("default", "i", T0, json!({"rules": rules}))],
            &names,
        );
        assert_eq!(hit(&t, "h", "/else", &names), "404");
    }

    #[test]
    fn backend_by_port_name_and_endpoint_port_by_service_port_name() {
        let svcs = vec![service(
            "ns",
            "web",
            json!([
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "admin", "port": 9000, "targetPort": 9001},
            ]),
        )];
        let slices = vec![
            slice(
                "ns",
                "web",
                "http",
                8080,
                &[("10.1.0.1", true, true, false)],
            ),
            slice(
                "ns",
                "web",
                "admin",
                9001,
                &[("10.1.0.1", true, true, false)],
            ),
        ];
        let ing = ingress(
            "ns",
            "i",
            T0,
            json!({"rules": [{"http": {"paths": [
                {"path": "/admin", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"name": "admin"}}}},
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "/bad", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 81}}}},
            ]}}]}),
        );
        let t = RoutingTable::build(&[&ing], &svcs, &slices);
        let ep = |p: &str| match t.route("x", p) {
            Route::Backend(b) => b.endpoints().to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ep("/"), vec!["10.1.0.1:8080".parse().expect("addr")]);
        assert_eq!(ep("/admin"), vec!["10.1.0.1:9001".parse().expect("addr")]);
        assert!(matches!(t.route("x", "/bad"), Route::Unavailable(_)));
    }

    #[test]
    fn missing_service_or_no_endpoints_is_unavailable() {
        let svcs = vec![service(
            "default",
            "empty",
            json!([{"name": "http", "port": 80}]),
        )];
        let ing = ingress(
            "default",
            "i",
            T0,
            json!({"rules": [{"http": {"paths": [
                path("/missing", "Prefix", "missing"),
                path("/empty", "Prefix", "empty"),
            ]}}]}),
        );
        let t = RoutingTable::build(&[&ing], &svcs, &[]);
        assert!(
            matches!(t.route("h", "/missing"), Route::Unavailable(r) if r.contains("not found"))
        );
        assert!(
            matches!(t.route("h", "/empty"), Route::Unavailable(r) if r.contains("no endpoints"))
        );
        let (_, problems) = RoutingTable::build_reporting(&[&ing], &svcs, &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, REASON_SERVICE_NOT_FOUND);
        assert_eq!(problems[0].message, "Service \"default/missing\" not found");
        // A Service in another namespace does not count.
        let other = vec![service(
            "other",
            "missing",
            json!([{"name": "http", "port": 80}]),
        )];
        let t = RoutingTable::build(&[&ing], &other, &[]);
        assert!(
            matches!(t.route("h", "/missing"), Route::Unavailable(r) if r.contains("not found"))
        );
    }

    #[test]
    fn ready_endpoints_first_then_serving_terminating() {
        let svcs = vec![service(
            "default",
            "s",
            json!([{"name": "http", "port": 80}]),
        )];
        let ing = ingress(
            "default",
            "i",
            T0,
            json!({"rules": [{"http": {"paths": [path("/", "Prefix", "s")]}}]}),
        );
        let eps =
            |slices: Vec<Arc<EndpointSlice>>| match RoutingTable::build(&[&ing], &svcs, &slices)
                .route("h", "/")
            {
                Route::Backend(b) => b.endpoints().iter().map(|a| a.ip().to_string()).collect(),
                Route::Unavailable(_) => Vec::<String>::new(),
                Route::NotFound => panic!("404"),
            };
        let mixed = slice(
            "default",
            "s",
            "http",
            8080,
            &[
                ("10.0.0.1", true, true, false),
                ("10.0.0.2", false, true, true),
                ("10.0.0.3", false, false, false),
            ],
        );
        assert_eq!(eps(vec![mixed]), vec!["10.0.0.1"]);
        let draining = slice(
            "default",
            "s",
            "http",
            8080,
            &[
                ("10.0.0.2", false, true, true),
                ("10.0.0.3", false, false, true),
            ],
        );
        assert_eq!(eps(vec![draining]), vec!["10.0.0.2"]);
        let none = slice(
            "default",
            "s",
            "http",
            8080,
            &[("10.0.0.3", false, false, false)],
        );
        assert!(eps(vec![none]).is_empty());
    }

    #[test]
    fn round_robin_over_endpoints() {
        let b = Backend::new(
            "x".into(),
            vec![
                "10.0.0.1:80".parse().expect("addr"),
                "10.0.0.2:80".parse().expect("addr"),
            ],
        );
        let picks: Vec<_> = (0..4).map(|_| b.pick().expect("endpoint").ip()).collect();
        assert_eq!(picks[0], picks[2]);
        assert_eq!(picks[1], picks[3]);
        assert_ne!(picks[0], picks[1]);
        assert!(Backend::new("y".into(), vec![]).pick().is_none());
    }

    #[test]
    fn default_backend_of_oldest_ingress() {
        let names = ["old", "new"];
        let t = table(
            &[
                ingress(
                    "default",
                    "b",
                    T1,
                    json!({"defaultBackend": backend("new", 80)}),
                ),
                ingress(
                    "default",
                    "a",
                    T0,
                    json!({"defaultBackend": backend("old", 80)}),
                ),
            ],
            &names,
        );
        assert_eq!(hit(&t, "any", "/whatever", &names), "old");
    }

    #[test]
    fn normalize_host_strips_port_and_case() {
        assert_eq!(normalize_host("Foo.Example.com:443"), "foo.example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host(""), "");
    }
}
