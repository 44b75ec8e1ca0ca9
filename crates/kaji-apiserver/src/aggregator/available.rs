//! The availability controller (upstream's `controllers/status/remote`
//! AvailableConditionController): each non-local APIService is checked when it, its Service or
//! the Service's EndpointSlices change, when a proxied request found its backend down, and every
//! `RESYNC`: the Service exists (`ServiceNotFound`), listens on the port (`ServicePortError`),
//! has EndpointSlices (`EndpointsNotFound`) with a ready address for the port
//! (`MissingEndpoints`), and a GET of `/apis/<group>/<version>` answers 2xx within 5 s
//! (`FailedDiscoveryCheck`); else `Passed`. The condition is written only when it changes. The
//! answer of a passed check is kept as the group/version's discovery document.
//!
//! Endpoints are resolved as upstream's `--enable-aggregator-routing=true` does (an endpoint
//! address and port from the EndpointSlices, not the Service's clusterIP): the API server
//! process on a node does not go through the node's service proxy for its own connections
//! reliably (and runs without any node at all), so routing to the endpoint directly is what
//! works everywhere.

use super::Remote;
use crate::ApiServer;
use crate::registry::store::{Filter, ListOptions, Part, Store, WriteOptions};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often every non-local APIService is checked without a change to look at.
const RESYNC: Duration = Duration::from_secs(10);

/// How long the discovery check waits for the backend (upstream's client timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// (reason, message) of an unavailable APIService.
pub type Unavailable = (&'static str, String);

/// One endpoint address of `remote`'s Service for its port (`pick_any`: a random ready one,
/// as the proxy spreads requests; else the first, so that the check's message is stable).
pub async fn resolve(
    server: &Arc<ApiServer>,
    remote: &Remote,
    pick_any: bool,
) -> Result<SocketAddr, Unavailable> {
    let (ns, name) = (&remote.namespace, &remote.service);
    let services = server
        .registry
        .get("", "v1", "services")
        .ok_or(("ServiceAccessError", "no services".to_string()))?;
    let svc = match Store::of(server, &services).get(Some(ns), name).await {
        Ok(s) => s,
        Err(e) if e.code == 404 => {
            return Err((
                "ServiceNotFound",
                format!("service/{name} in {ns:?} is not present"),
            ));
        }
        Err(e) => {
            return Err((
                "ServiceAccessError",
                format!("service/{name} in {ns:?} cannot be checked due to: {e}"),
            ));
        }
    };
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(port) = ports
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(remote.port)))
    else {
        return Err((
            "ServicePortError",
            format!(
                "service/{name} in {ns:?} is not listening on port {}",
                remote.port
            ),
        ));
    };
    let port_name = port["name"].as_str().unwrap_or_default().to_string();
    let slices_strategy = server
        .registry
        .get("discovery.k8s.io", "v1", "endpointslices")
        .ok_or(("EndpointsAccessError", "no endpointslices".to_string()))?;
    let filter = Filter::parse(
        &*slices_strategy,
        &format!("kubernetes.io/service-name={name}"),
        "",
    )
    .map_err(|e| ("EndpointsAccessError", e.to_string()))?;
    let slices = match Store::of(server, &slices_strategy)
        .list(Some(ns), &filter, &ListOptions::default())
        .await
    {
        Ok(p) => p.items,
        Err(e) => {
            return Err((
                "EndpointsAccessError",
                format!("service/{name} in {ns:?} cannot be checked due to: {e}"),
            ));
        }
    };
    if slices.is_empty() {
        return Err((
            "EndpointsNotFound",
            format!("cannot find endpointslices for service/{name} in {ns:?}"),
        ));
    }
    let mut candidates = Vec::new();
    for slice in &slices {
        let Some(number) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(ip) = ep
                .pointer("/addresses/0")
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
            {
                candidates.push(SocketAddr::new(ip, number));
            }
        }
    }
    if candidates.is_empty() {
        return Err((
            "MissingEndpoints",
            format!(
                "endpointslices for service/{name} in {ns:?} have no addresses with port name {port_name:?}"
            ),
        ));
    }
    let i = if pick_any {
        rand::random_range(0..candidates.len())
    } else {
        0
    };
    Ok(candidates[i])
}

/// Checks one remote: Ok with its resource list, or why it is unavailable.
async fn check(server: &Arc<ApiServer>, remote: &Remote) -> Result<Option<Value>, Unavailable> {
    let addr = resolve(server, remote, false).await?;
    let path = format!("/apis/{}/{}", remote.group, remote.version);
    let url = format!("https://{addr}{path}");
    let failed = |e: String| ("FailedDiscoveryCheck", e);
    match tokio::time::timeout(
        CHECK_TIMEOUT,
        super::proxy::get(&server.aggregator, remote, addr, &path, false),
    )
    .await
    {
        Err(_) => Err(failed(format!("timed out waiting for {url}"))),
        Ok(Err(e)) => Err(failed(format!(
            "failing or missing response from {url}: Get {url:?}: {e}"
        ))),
        Ok(Ok((status, _))) if !status.is_success() && !status.is_redirection() => {
            Err(failed(format!(
                "failing or missing response from {url}: bad status from {url}: {}",
                status.as_u16()
            )))
        }
        Ok(Ok(_)) => Ok(discover(server, remote, addr).await),
    }
}

/// The backend's resource list, read as the proxy reads (the serving certificate verified):
/// None when that fails (a wrong caBundle: available as upstream says, but not discoverable).
async fn discover(server: &Arc<ApiServer>, remote: &Remote, addr: SocketAddr) -> Option<Value> {
    let path = format!("/apis/{}/{}", remote.group, remote.version);
    let fetched = tokio::time::timeout(
        CHECK_TIMEOUT,
        super::proxy::get(&server.aggregator, remote, addr, &path, true),
    )
    .await;
    let body = match fetched {
        Ok(Ok((status, body))) if status.is_success() => body,
        Ok(Ok((status, _))) => {
            tracing::debug!(apiservice = %remote.name, %status, "reading the aggregated discovery document");
            return None;
        }
        Ok(Err(e)) => {
            tracing::warn!(apiservice = %remote.name, error = %e, "reading the aggregated discovery document");
            return None;
        }
        Err(_) => return None,
    };
    openapi_v3_entry(server, remote, addr).await;
    openapi_v2_document(server, remote, addr).await;
    serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|v| v["kind"] == "APIResourceList")
}

/// Keeps the backend's `/openapi/v2` document for the merged one (`discovery::openapi_v2`).
async fn openapi_v2_document(server: &Arc<ApiServer>, remote: &Remote, addr: SocketAddr) {
    let gv = format!("{}/{}", remote.group, remote.version);
    let fetched = tokio::time::timeout(
        CHECK_TIMEOUT,
        super::proxy::get(&server.aggregator, remote, addr, "/openapi/v2", true),
    )
    .await;
    if let Ok(Ok((status, body))) = fetched
        && status.is_success()
        && let Ok(doc) = serde_json::from_slice::<Value>(&body)
        && doc["swagger"].is_string()
    {
        server.aggregator.set_openapi_v2(&gv, doc);
    }
}

/// Keeps the backend's `/openapi/v3` index entry of the group/version (upstream's OpenAPI v3
/// aggregation lists each backend's documents and serves them from the backend); a backend
/// without one just has none.
async fn openapi_v3_entry(server: &Arc<ApiServer>, remote: &Remote, addr: SocketAddr) {
    let gv = format!("{}/{}", remote.group, remote.version);
    let fetched = tokio::time::timeout(
        CHECK_TIMEOUT,
        super::proxy::get(&server.aggregator, remote, addr, "/openapi/v3", true),
    )
    .await;
    if let Ok(Ok((status, body))) = fetched
        && status.is_success()
        && let Ok(index) = serde_json::from_slice::<Value>(&body)
        && let Some(entry) = index.pointer(&format!(
            "/paths/apis~1{}~1{}",
            remote.group, remote.version
        ))
    {
        server.aggregator.set_openapi_v3(&gv, entry.clone());
    }
}

/// The Available condition of a check's result.
fn condition(result: &Result<Option<Value>, Unavailable>) -> (&'static str, &'static str, String) {
    match result {
        Ok(_) => ("True", "Passed", "all checks passed".to_string()),
        Err((reason, message)) => ("False", reason, message.clone()),
    }
}

/// Writes the Available condition when it differs (upstream's SetAPIServiceCondition: the
/// transition time moves only with the status).
async fn write_condition(
    server: &Arc<ApiServer>,
    name: &str,
    (status, reason, message): (&str, &str, String),
) -> Result<(), kaji_api::ApiError> {
    let strategy = server
        .registry
        .get("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or_else(|| kaji_api::ApiError::internal("no apiservices"))?;
    let store = Store::of(server, &strategy);
    let current = store.get(None, name).await?;
    let conditions = current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old = conditions.iter().find(|c| c["type"] == "Available");
    if old.is_some_and(|c| {
        c["status"] == status && c["reason"] == reason && c["message"] == message.as_str()
    }) {
        return Ok(());
    }
    if old.is_none_or(|c| c["status"] != status) {
        tracing::info!(apiservice = name, status, reason, %message, "changing APIService availability");
    }
    let opts = WriteOptions {
        dry_run: false,
        field_manager: Some("kube-apiserver".to_string()),
    };
    store
        .guaranteed_update(None, name, Part::Status, &opts, |cur| {
            let mut new = cur.clone();
            let mut conditions = cur.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let now = crate::objects::now_rfc3339();
            let mut cond = json!({"type": "Available", "status": status, "lastTransitionTime": now, "reason": reason, "message": message});
            match conditions.iter_mut().find(|c| c["type"] == "Available") {
                Some(c) => {
                    if c["status"] == status {
                        cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
                    }
                    *c = cond;
                }
                None => conditions.push(cond),
            }
            if let Some(map) = new.as_object_mut() {
                map.insert("status".to_string(), json!({"conditions": conditions}));
            }
            Ok(new)
        })
        .await
        .map(|_| ())
}

/// One round: the APIServices read again, every remote checked (side by side).
async fn sync_all(server: &Arc<ApiServer>) -> Result<(), kaji_api::ApiError> {
    let strategy = server
        .registry
        .get("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or_else(|| kaji_api::ApiError::internal("no apiservices"))?;
    let page = Store::of(server, &strategy)
        .list(None, &Filter::everything(), &ListOptions::default())
        .await?;
    let remotes: BTreeMap<String, Remote> = page
        .items
        .iter()
        .filter_map(Remote::from_object)
        .map(|r| (r.name.clone(), r))
        .collect();
    server.aggregator.set_remotes(remotes.clone());
    let checks = remotes.values().map(|remote| async move {
        let result = check(server, remote).await;
        let gv = format!("{}/{}", remote.group, remote.version);
        if let Ok(Some(list)) = &result {
            server.aggregator.set_resources(&gv, list.clone());
        }
        server.aggregator.set_available(&remote.name, result.is_ok());
        if let Err(e) = write_condition(server, &remote.name, condition(&result)).await
            && e.code != 404
        {
            tracing::warn!(apiservice = %remote.name, error = %e, "writing the Available condition");
        }
    });
    futures::future::join_all(checks).await;
    Ok(())
}

/// Whether a store event under `prefix` concerns the checks: an APIService whose spec changed
/// (not the controller's own status writes), or a Service/EndpointSlice in a namespace some
/// remote's Service lives in.
fn relevant(
    server: &ApiServer,
    apiservices: bool,
    prefix: &str,
    ev: &kaji_store::WatchEvent,
) -> bool {
    if apiservices {
        let spec = |kv: &kaji_store::KeyValue| {
            serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .map(|v| v["spec"].clone())
        };
        return ev.event_type == kaji_store::EventType::Delete
            || ev.prev.as_ref().and_then(spec) != spec(&ev.kv);
    }
    let ns = ev
        .kv
        .key
        .strip_prefix(prefix)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    server
        .aggregator
        .remotes()
        .iter()
        .any(|r| r.namespace == ns)
}

/// Wakes the controller on changes under one kind's prefix, re-watching after a failure.
async fn watch(server: Arc<ApiServer>, group: &'static str, plural: &'static str) {
    let Some(strategy) = server.registry.get(group, "v1", plural) else {
        return;
    };
    let prefix = strategy.prefix(None);
    loop {
        match server.store.watch(&prefix, 0).await {
            Ok(mut events) => {
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(ev) if relevant(&server, plural == "apiservices", &prefix, &ev) => {
                            server.aggregator.wake.notify_one()
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, plural, "aggregator watch ended");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, plural, "aggregator watch failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the controller for the server's lifetime.
pub async fn run(server: Arc<ApiServer>) {
    for (group, plural) in [
        ("apiregistration.k8s.io", "apiservices"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
    ] {
        tokio::spawn(watch(server.clone(), group, plural));
    }
    loop {
        if let Err(e) = sync_all(&server).await {
            tracing::warn!(error = %e, "checking APIServices");
        }
        tokio::select! {
            _ = server.aggregator.wake.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        // Changes come in bursts (a Service and its EndpointSlice): one round for them.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
