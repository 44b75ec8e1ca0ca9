//! What a new cluster has before anyone writes: the namespaces default, kube-system, kube-public
//! and kube-node-lease, the `kubernetes` Service (10.43.0.1:443) with its Endpoints and EndpointSlice, and the
//! `kube-dns` Service at the cluster DNS address (10.43.0.10), and the default StorageClass
//! `local-path` with its ConfigMap, as k3s has them. Also
//! rebuilds the Service IP and NodePort allocations from the stored Services at start.

use crate::ApiServer;
use crate::request::ResourceRequest;
use crate::rest::{self, Call, Output};
use anyhow::{Result, anyhow};
use http::Method;
use kaji_store::ListOptions;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Creates an object through the REST machinery (so defaults and validation apply), unless it exists.
pub(crate) async fn ensure(server: &Arc<ApiServer>, group: &str, plural: &str, namespace: Option<&str>, obj: Value) -> Result<()> {
    let strategy = server.registry.get(group, "v1", plural).ok_or_else(|| anyhow!("no {plural}"))?;
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if server.store.get(&crate::objects::key(strategy.info(), namespace, name)).await?.is_some() {
        return Ok(());
    }
    let req = ResourceRequest {
        group: group.to_string(),
        version: "v1".to_string(),
        plural: plural.to_string(),
        namespace: namespace.map(str::to_string),
        name: None,
        subresource: None,
        watch_path: false,
    };
    let params = HashMap::from([("fieldManager".to_string(), "kaji-server".to_string())]);
    let call = Call {
        server,
        strategy: &strategy,
        req: &req,
        params: &params,
        output: &Output::plain(),
        content_type: "application/json",
        user_agent: "kaji-server",
        body: serde_json::to_vec(&obj)?.into(),
    };
    match rest::dispatch(call, &Method::POST).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(anyhow!("creating {plural} {name}: {e}")),
    }
}

pub async fn ensure_defaults(server: &Arc<ApiServer>, addr: SocketAddr, config: &crate::Config) -> Result<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(server, "", "namespaces", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": config.kubernetes_service_ip().to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]},
    });
    ensure(server, "", "services", Some("default"), svc).await?;
    let ip = crate::pki::advertise_ip().to_string();
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}],
    });
    ensure(server, "", "endpoints", Some("default"), ep).await?;
    // Its EndpointSlice, as upstream's endpoints reconciler writes it beside the Endpoints (which
    // are not mirrored): the service proxy reads slices, so pods reach the API server this way.
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}],
    });
    ensure(server, "discovery.k8s.io", "endpointslices", Some("default"), slice).await?;
    // The cluster DNS is served by every node's agent itself (kaji-dns, on the node's copy of this
    // address), so the Service has no selector and no endpoints: the proxy lets its ports through
    // to the node's own server. Labels and ports as k3s's CoreDNS Service.
    let dns = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"clusterIP": config.cluster_dns.to_string(), "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
        ]},
    });
    ensure(server, "", "services", Some("kube-system"), dns).await?;
    // The two built-in PriorityClasses upstream's API server creates.
    for (name, value, description) in [
        ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        ensure(server, "scheduling.k8s.io", "priorityclasses", None, class).await?;
    }
    ensure_local_storage(server, config).await
}

/// k3s's local-storage add-on: the default StorageClass `local-path` (served in-process by the
/// controller manager's local-path provisioner) and its `local-path-config` ConfigMap, whose
/// nodePathMap puts volumes under `<data-dir>/storage` on every node.
async fn ensure_local_storage(server: &Arc<ApiServer>, config: &crate::Config) -> Result<()> {
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete",
    });
    ensure(server, "storage.k8s.io", "storageclasses", None, class).await?;
    let data_dir = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let paths = json!({"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [data_dir.join("storage")]}]});
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "local-path-config", "namespace": "kube-system"},
        "data": {"config.json": serde_json::to_string_pretty(&paths)?},
    });
    ensure(server, "", "configmaps", Some("kube-system"), cm).await
}

pub async fn restore_allocations(server: &Arc<ApiServer>) -> Result<()> {
    let Some(strategy) = server.registry.get("", "v1", "services") else { return Ok(()) };
    let prefix = crate::objects::prefix(strategy.info(), None);
    let mut start_after = None;
    loop {
        let page = server.store.list(&prefix, ListOptions { start_after: start_after.clone(), limit: Some(500), revision: None }).await?;
        for kv in &page.items {
            let svc = crate::objects::decode(kv);
            if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                let _ = server.allocators.allocate_ip(Some(ip));
            }
            for p in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                    let _ = server.allocators.allocate_port(Some(n as u16));
                }
            }
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            return Ok(());
        }
    }
}

/// Where a joining server gets the cluster's shared material (k3s's `/v1-k3s/server-bootstrap`).
pub const SERVER_BOOTSTRAP_PATH: &str = "/v1-kaji/server-bootstrap";

/// What every server of a cluster shares, relative to the data dir: the cluster CA, the
/// service-account signing key, the etcd CAs, and both tokens.
const SHARED_FILES: &[&str] = &[
    "server/tls/ca.crt",
    "server/tls/ca.key",
    "server/tls/service-account.key",
    "server/tls/etcd/server-ca.crt",
    "server/tls/etcd/server-ca.key",
    "server/tls/etcd/peer-ca.crt",
    "server/tls/etcd/peer-ca.key",
    "server/token",
    "token",
];

/// The critical configuration a server records at start (`--cluster-cidr`, `--service-cidr`,
/// its etcd member's client URL), handed to joining servers, which must agree.
pub const CRITICAL_CONFIG_FILE: &str = "server/critical-config.json";

/// `GET /v1-kaji/server-bootstrap`, basic auth `server:<password of the server token>`, served
/// before authentication: `{"files": {path: PEM}, "config": {...}}`; 401 for any other credentials
/// (and where this server has no server token, i.e. no managed etcd).
pub async fn server_bootstrap(server: &ApiServer, headers: &http::HeaderMap) -> http::Response<crate::server::Body> {
    use http_body_util::BodyExt;
    let respond = |code: u16, body: &Value| {
        let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default())).boxed());
        *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        resp
    };
    let Some(data_dir) = server.pki.dir.parent().and_then(std::path::Path::parent) else {
        return respond(404, &kaji_api::ApiError::new(404, "NotFound", "no data dir").to_status());
    };
    let expected = std::fs::read_to_string(crate::pki::server_token_path(data_dir)).ok();
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authorized = match (&expected, &given) {
        (Some(expected), Some(given)) => {
            let want = crate::pki::token_password(expected);
            given.strip_prefix("server:").is_some_and(|p| !want.is_empty() && constant_time_eq(p.as_bytes(), want.as_bytes()))
        }
        _ => false,
    };
    if !authorized {
        tracing::warn!("refused a server bootstrap request: wrong or missing server token");
        return respond(401, &kaji_api::ApiError::unauthorized().to_status());
    }
    let mut files = serde_json::Map::new();
    for rel in SHARED_FILES {
        if let Ok(text) = std::fs::read_to_string(data_dir.join(rel)) {
            files.insert((*rel).to_string(), Value::String(text));
        }
    }
    let config = std::fs::read_to_string(data_dir.join(CRITICAL_CONFIG_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .unwrap_or_else(|| json!({}));
    tracing::info!("handed the cluster's shared material to a joining server");
    respond(200, &json!({"files": files, "config": config}))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
