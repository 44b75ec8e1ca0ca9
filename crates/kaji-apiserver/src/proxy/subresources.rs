//! Where pods/proxy, services/proxy and nodes/proxy go, as upstream's ResourceLocation of each
//! kind (`pkg/registry/core/{pod,service,node}`), then `upgrade_aware` relays the request:
//!
//! - `pods/[https:]NAME[:PORT]/proxy[/PATH]`: the pod's IP, the port by number or by a
//!   container port's name (upstream takes the first container port when none is named).
//! - `services/[https:]NAME[:PORT]/proxy[/PATH]`: a ready endpoint of the service, its port
//!   found by the service port's name (a number is turned into the name first) in the
//!   Endpoints; 503 `no endpoints available for service "NAME"` when there is none.
//! - `nodes/NAME[:PORT]/proxy[/PATH]`: the node's kubelet over TLS with the API server's kubelet
//!   client certificate; another port is reached like a pod's.

use super::upgrade_aware::{self, Location, status_response};
use crate::ApiServer;
use crate::request::ResourceRequest;
use crate::server::Body;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use kaji_api::ApiError;
use serde_json::Value;
use std::net::IpAddr;

/// The kinds with a `proxy` subresource.
pub fn is_proxy(rr: &ResourceRequest) -> bool {
    rr.group.is_empty()
        && rr.subresource.as_deref() == Some("proxy")
        && matches!(rr.plural.as_str(), "pods" | "services" | "nodes")
}

/// Serves `.../<plural>/<id>/proxy[/path]`.
pub async fn serve(
    server: &ApiServer,
    rr: &ResourceRequest,
    req: Request<Incoming>,
) -> Response<Body> {
    match locate(server, rr, req.uri().path()).await {
        Ok(loc) => upgrade_aware::serve(loc, req).await,
        Err(e) => {
            // Read what the client is still sending, so that an HTTP/2 client gets the answer.
            let _ = Limited::new(req.into_body(), crate::server::MAX_BODY)
                .collect()
                .await;
            status_response(&e)
        }
    }
}

/// Upstream's `net.SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`, the scheme
/// empty, `http` or `https`.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// The API path up to `/proxy` and the rest (the backend path, empty when there is none).
fn split_path(path: &str, namespaced: bool) -> Option<(String, String)> {
    // `/api/v1/namespaces/NS/pods/NAME/proxy` has 7 segments, `/api/v1/nodes/NAME/proxy` 5.
    let segments = if namespaced { 7 } else { 5 };
    let end = path
        .match_indices('/')
        .nth(segments)
        .map_or(path.len(), |(i, _)| i);
    let (prefix, rest) = path.split_at(end);
    prefix
        .ends_with("/proxy")
        .then(|| (prefix.to_string(), rest.to_string()))
}

/// Upstream's `IsProxyableIP`: no loopback, link-local or unspecified addresses.
fn proxyable(ip: &str) -> Result<IpAddr, ApiError> {
    let not_allowed = || ApiError::bad_request("address not allowed");
    let ip: IpAddr = ip.parse().map_err(|_| not_allowed())?;
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || link_local {
        return Err(not_allowed());
    }
    Ok(ip)
}

async fn get(
    server: &ApiServer,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let strategy = server
        .registry
        .get("", "v1", plural)
        .ok_or_else(|| ApiError::no_route(plural))?;
    let key = crate::objects::key(strategy.info(), namespace, name);
    let kv = server.store.get(&key).await.map_err(crate::store_error)?;
    kv.map(|kv| crate::objects::decode(&kv))
        .ok_or_else(|| ApiError::not_found("", plural, name))
}

fn scheme_of(
    scheme: &str,
) -> (
    &'static str,
    Option<std::sync::Arc<rustls::ClientConfig>>,
    u16,
) {
    if scheme == "https" {
        ("https", Some(upgrade_aware::insecure_tls()), 443)
    } else {
        ("http", None, 80)
    }
}

async fn locate(
    server: &ApiServer,
    rr: &ResourceRequest,
    path: &str,
) -> Result<Location, ApiError> {
    let raw = rr.name.clone().unwrap_or_default();
    let id = percent_encoding::percent_decode_str(&raw)
        .decode_utf8_lossy()
        .into_owned();
    let (prefix, rest) =
        split_path(path, rr.namespace.is_some()).ok_or_else(|| ApiError::no_route(path))?;
    let kind = match rr.plural.as_str() {
        "pods" => "pod",
        "services" => "service",
        _ => "node",
    };
    let (scheme, name, port) = split_scheme_name_port(&id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid {kind} request {id:?}")))?;
    let ns = rr.namespace.as_deref();
    let mut loc = match rr.plural.as_str() {
        "pods" => pod_location(server, ns, scheme, name, port).await?,
        "services" => service_location(server, ns, &id, scheme, name, port).await?,
        _ => node_location(server, scheme, name, port).await?,
    };
    loc.prefix = prefix;
    loc.path = rest;
    Ok(loc)
}

/// A port given as a number, or an error worded as Go's dialer would.
fn numeric_port(port: &str) -> Result<u16, ApiError> {
    port.parse().map_err(|_| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: dial tcp: lookup tcp/{port}: unknown port"),
        )
    })
}

async fn pod_location(
    server: &ApiServer,
    ns: Option<&str>,
    scheme: &str,
    name: &str,
    port: &str,
) -> Result<Location, ApiError> {
    let pod = get(server, "pods", ns, name).await?;
    let container_ports = || {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["ports"].as_array())
            .flatten()
    };
    let port = if port.is_empty() {
        // Upstream: the first container port of the first container that has one.
        container_ports()
            .next()
            .and_then(|p| p["containerPort"].as_u64())
            .map(|p| p.to_string())
            .unwrap_or_default()
    } else if port.parse::<u16>().is_err() {
        // A container port's name.
        container_ports()
            .find(|p| p["name"].as_str() == Some(port))
            .and_then(|p| p["containerPort"].as_u64())
            .map_or_else(|| port.to_string(), |p| p.to_string())
    } else {
        port.to_string()
    };
    let ip = proxyable(
        pod.pointer("/status/podIP")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )?;
    let (scheme, tls, default_port) = scheme_of(scheme);
    let port = if port.is_empty() {
        default_port
    } else {
        numeric_port(&port)?
    };
    Ok(Location::new(scheme, ip, port, tls))
}

/// The IPs of a pod (`status.podIPs`, or `status.podIP`).
fn pod_ips(pod: &Value) -> Vec<&str> {
    let mut ips: Vec<&str> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p["ip"].as_str())
        .collect();
    if ips.is_empty() {
        ips.extend(pod.pointer("/status/podIP").and_then(Value::as_str));
    }
    ips
}

/// Upstream's `isValidAddress`: the address is a pod of the service's namespace that has it.
async fn valid_address(server: &ApiServer, ns: Option<&str>, addr: &Value) -> bool {
    let Some(target) = addr.get("targetRef").filter(|t| t.is_object()) else {
        return false;
    };
    if target["namespace"].as_str() != ns || target["kind"].as_str().is_some_and(|k| k != "Pod") {
        return false;
    }
    let Some(name) = target["name"].as_str() else {
        return false;
    };
    match get(server, "pods", ns, name).await {
        Ok(pod) => pod_ips(&pod).contains(&addr["ip"].as_str().unwrap_or_default()),
        Err(_) => false,
    }
}

async fn service_location(
    server: &ApiServer,
    ns: Option<&str>,
    id: &str,
    scheme: &str,
    name: &str,
    port: &str,
) -> Result<Location, ApiError> {
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let svc = get(server, "services", ns, name).await?;
        let ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let found = ports.iter().find(|p| p["port"].as_i64() == Some(number));
        port_name = match found {
            Some(p) => p["name"].as_str().unwrap_or_default().to_string(),
            None => {
                return Err(ApiError::new(
                    503,
                    "ServiceUnavailable",
                    format!("no service port {number} found for service {name:?}"),
                ));
            }
        };
    }
    let endpoints = get(server, "endpoints", ns, name).await?;
    let subsets = endpoints["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service {name:?}"),
        ));
    }
    // Start at a random subset and address, as upstream, so that requests spread.
    let seed = rand::random::<u32>() as usize;
    for i in 0..subsets.len() {
        let subset = &subsets[(seed + i) % subsets.len()];
        let addresses = subset["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        for p in subset["ports"].as_array().into_iter().flatten() {
            if p["name"].as_str().unwrap_or_default() != port_name {
                continue;
            }
            let Some(number) = p["port"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            let start = rand::random::<u32>() as usize;
            for j in 0..addresses.len() {
                let addr = &addresses[(start + j) % addresses.len()];
                if !valid_address(server, ns, addr).await {
                    tracing::debug!(service = name, address = %addr, "endpoint address is not a pod of the service's namespace; skipped");
                    continue;
                }
                let Ok(ip) = addr["ip"].as_str().unwrap_or_default().parse::<IpAddr>() else {
                    continue;
                };
                let (scheme, tls, _) = scheme_of(scheme);
                return Ok(Location::new(scheme, ip, number, tls));
            }
        }
    }
    Err(ApiError::new(
        503,
        "ServiceUnavailable",
        format!("no endpoints available for service {id:?}"),
    ))
}

async fn node_location(
    server: &ApiServer,
    scheme: &str,
    name: &str,
    port: &str,
) -> Result<Location, ApiError> {
    let node = get(server, "nodes", None, name).await?;
    // Its InternalIP and daemon endpoint port, or a hollow node's simulated kubelet (the
    // endpoint the metrics scraper reads too), which is on the loopback address by design.
    let (host, kubelet_port, base) = crate::metrics::kubelet_target(&node).ok_or_else(|| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {name} has no address"),
        )
    })?;
    let hollow = !base.is_empty();
    let ip = if hollow {
        host.parse()
            .map_err(|_| ApiError::bad_request("address not allowed"))?
    } else {
        proxyable(&host)?
    };
    // The kubelet's own port: its TLS, with the API server's client certificate.
    if port.is_empty() || port == kubelet_port.to_string() {
        let mut loc = Location::new("https", ip, kubelet_port, Some(server.kubelet_tls.clone()));
        loc.base = base;
        return Ok(loc);
    }
    let (scheme, tls, _) = scheme_of(scheme);
    Ok(Location::new(scheme, ip, numeric_port(port)?, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ids_as_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:"),
            Some(("https", "web", ""))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn splits_the_api_path_from_the_backend_path() {
        let s = |p: &str, ns: bool| split_path(p, ns);
        assert_eq!(
            s("/api/v1/namespaces/d/pods/web:80/proxy/a/b", true),
            Some((
                "/api/v1/namespaces/d/pods/web:80/proxy".into(),
                "/a/b".into()
            ))
        );
        assert_eq!(
            s("/api/v1/namespaces/d/pods/web/proxy", true),
            Some(("/api/v1/namespaces/d/pods/web/proxy".into(), String::new()))
        );
        assert_eq!(
            s("/api/v1/namespaces/d/services/web/proxy/", true),
            Some(("/api/v1/namespaces/d/services/web/proxy".into(), "/".into()))
        );
        assert_eq!(
            s("/api/v1/nodes/n1/proxy/stats/summary", false),
            Some(("/api/v1/nodes/n1/proxy".into(), "/stats/summary".into()))
        );
        assert_eq!(s("/api/v1/nodes/n1/status", false), None);
    }

    #[test]
    fn authorizes_the_methods_verb_on_the_proxy_subresource() {
        let user = crate::auth::User {
            name: "u".into(),
            ..Default::default()
        };
        let path = "/api/v1/namespaces/d/pods/https:web:8443/proxy/a/b";
        for (method, verb) in [
            (http::Method::GET, "get"),
            (http::Method::HEAD, "get"),
            (http::Method::POST, "create"),
            (http::Method::PUT, "update"),
            (http::Method::PATCH, "patch"),
            (http::Method::DELETE, "delete"),
        ] {
            let a = crate::auth::authz::attributes(&user, &method, path, None);
            assert!(a.resource_request);
            assert_eq!(
                (
                    a.verb.as_str(),
                    a.resource.as_str(),
                    a.subresource.as_str(),
                    a.name.as_str(),
                    a.namespace.as_str()
                ),
                (verb, "pods", "proxy", "https:web:8443", "d")
            );
        }
        let node = crate::auth::authz::attributes(
            &user,
            &http::Method::GET,
            "/api/v1/nodes/n1/proxy/stats/summary",
            None,
        );
        assert_eq!(
            (
                node.verb.as_str(),
                node.resource.as_str(),
                node.subresource.as_str(),
                node.name.as_str()
            ),
            ("get", "nodes", "proxy", "n1")
        );
    }

    #[test]
    fn refuses_addresses_upstream_does_not_proxy_to() {
        assert!(proxyable("10.42.0.5").is_ok());
        for bad in ["", "127.0.0.1", "169.254.1.1", "::1", "fe80::1", "0.0.0.0"] {
            assert_eq!(
                proxyable(bad).unwrap_err().to_status()["message"],
                "address not allowed",
                "{bad}"
            );
        }
    }
}
