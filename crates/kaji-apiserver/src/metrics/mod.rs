//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics), served as metrics-server serves it, from
//! the API server's own metrics provider (`scraper`: kubelets' `/metrics/resource` every
//! resolution, `--metric-resolution`, upstream's default 15 s). Read-only: get and list, label
//! and field selectors, pods by namespace; a node or pod without metrics is a 404 with
//! metrics-server's message (`podmetrics.metrics.k8s.io "ns/name" not found`).
//!
//! The kinds are registered like any other (discovery lists the group); `rest::dispatch` hands
//! their requests to [`dispatch`] instead of the generic store.

mod prom;
mod scraper;

pub(crate) use scraper::kubelet_target;
pub use scraper::{Provider, Usage};

use crate::ApiServer;
use crate::registry::Strategy;
use crate::rest::{Call, Reply};
use kaji_api::selector::{FieldSelector, LabelSelector};
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Value, json};
use std::sync::Arc;

pub const GROUP: &str = "metrics.k8s.io";

static NODE_METRICS: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1beta1",
    kind: "NodeMetrics",
    plural: "nodes",
    singular: "",
    namespaced: false,
    short_names: &[],
    categories: &[],
    verbs: &["get", "list"],
    subresources: &[],
};

static POD_METRICS: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1beta1",
    kind: "PodMetrics",
    plural: "pods",
    singular: "",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: &["get", "list"],
    subresources: &[],
};

struct Metrics(&'static ResourceInfo);

impl Strategy for Metrics {
    fn info(&self) -> &ResourceInfo {
        self.0
    }
}

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Metrics(&NODE_METRICS)));
    all.push(Arc::new(Metrics(&POD_METRICS)));
}

/// Canonical CPU quantity of nano-cores, as `resource.NewScaledQuantity(n, -9)` prints:
/// `12345n`, `12345u` when divisible by 1000, `5m`, `2`.
pub fn cpu_quantity(nano: u64) -> String {
    if nano == 0 {
        return "0".into();
    }
    let mut v = nano;
    for suffix in ["n", "u", "m"] {
        if !v.is_multiple_of(1000) {
            return format!("{v}{suffix}");
        }
        v /= 1000;
    }
    format!("{v}")
}

/// Canonical memory quantity of bytes, as `resource.NewQuantity(b, BinarySI)` prints: `4Ki`,
/// `12Mi`; below 1024 or not a multiple of 1024, plain bytes.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut v = bytes;
    let mut suffix = "";
    for s in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !v.is_multiple_of(1024) {
            break;
        }
        v /= 1024;
        suffix = s;
    }
    format!("{v}{suffix}")
}

/// Go's `time.Duration.String()` of milliseconds (metav1.Duration): `15s`, `10.036s`, `1m0.5s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.nano_cores), "memory": memory_quantity(u.memory_bytes)})
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn labels(obj: &Value) -> Value {
    obj.pointer("/metadata/labels")
        .cloned()
        .unwrap_or(Value::Null)
}

fn node_metrics(node: &Value, u: &Usage) -> Value {
    let mut meta = json!({"name": node.pointer("/metadata/name"), "creationTimestamp": now()});
    if !labels(node).is_null() {
        meta["labels"] = labels(node);
    }
    json!({
        "kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta,
        "timestamp": time(u.timestamp_ms), "window": go_duration(u.window_ms),
        "usage": usage_json(u),
    })
}

/// A pod's metrics, its containers in the pod spec's order (None: no metrics).
fn pod_metrics(provider: &Provider, pod: &Value) -> Option<Value> {
    let ns = pod.pointer("/metadata/namespace")?.as_str()?;
    let name = pod.pointer("/metadata/name")?.as_str()?;
    let mut containers = provider.pod(ns, name)?;
    let order: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    containers.sort_by_key(|(c, _)| order.iter().position(|o| o == c).unwrap_or(usize::MAX));
    // metrics-server gives the pod the earliest container timestamp and its window.
    let first = containers
        .iter()
        .map(|(_, u)| *u)
        .min_by_key(|u| u.timestamp_ms)?;
    let mut meta = json!({"name": name, "namespace": ns, "creationTimestamp": now()});
    if !labels(pod).is_null() {
        meta["labels"] = labels(pod);
    }
    Some(json!({
        "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta,
        "timestamp": time(first.timestamp_ms), "window": go_duration(first.window_ms),
        "containers": containers.iter().map(|(c, u)| json!({"name": c, "usage": usage_json(u)})).collect::<Vec<_>>(),
    }))
}

async fn stored(call: &Call<'_>, key: &str) -> Result<Option<Value>, ApiError> {
    Ok(call
        .server
        .store
        .get(key)
        .await
        .map_err(crate::store_error)?
        .map(|kv| crate::objects::decode(&kv)))
}

/// The stored pods or nodes under `prefix`, each reduced to what metrics need (see [`Light`]).
async fn stored_list(call: &Call<'_>, prefix: &str) -> Result<Vec<Value>, ApiError> {
    let l = call
        .server
        .store
        .list(prefix, kaji_store::ListOptions::default())
        .await
        .map_err(crate::store_error)?;
    Ok(l.items.iter().filter_map(|kv| light(&kv.value)).collect())
}

/// Only what a metrics answer reads of a stored pod or node: name, namespace, labels and the
/// containers' names. A whole pod as a `Value` tree is many times its bytes in small allocations,
/// and a list of every pod each metric resolution (the dashboard's sampler, `kubectl top`) left
/// the allocator's arenas holding tens of MiB more at 5,000 pods.
#[derive(serde::Deserialize)]
struct Light {
    metadata: LightMeta,
    #[serde(default)]
    spec: Option<LightSpec>,
}

#[derive(serde::Deserialize)]
struct LightMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<serde_json::Map<String, Value>>,
}

#[derive(serde::Deserialize)]
struct LightSpec {
    #[serde(default)]
    containers: Vec<LightContainer>,
}

#[derive(serde::Deserialize)]
struct LightContainer {
    #[serde(default)]
    name: String,
}

/// The [`Light`] view of stored bytes as the small object the metrics code reads.
fn light(bytes: &[u8]) -> Option<Value> {
    let l: Light = serde_json::from_slice(bytes).ok()?;
    let mut meta = json!({ "name": l.metadata.name });
    if let Some(ns) = l.metadata.namespace {
        meta["namespace"] = Value::String(ns);
    }
    if let Some(labels) = l.metadata.labels {
        meta["labels"] = Value::Object(labels);
    }
    let containers: Vec<Value> = l
        .spec
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({ "name": c.name }))
        .collect();
    Some(json!({ "metadata": meta, "spec": { "containers": containers } }))
}

fn selectors(call: &Call<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let l = LabelSelector::parse(call.param("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let f = FieldSelector::parse(call.param("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((l, f))
}

fn field(obj: &Value, f: &str) -> Option<String> {
    match f {
        "metadata.name" => obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string),
        "metadata.namespace" => obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// get and list of NodeMetrics and PodMetrics.
pub async fn dispatch(call: Call<'_>, method: &http::Method) -> Result<Reply, ApiError> {
    let info = call.strategy.info();
    if method != http::Method::GET || call.req.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    if call.req.watch_path || call.param("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let provider = &call.server.resource_metrics;
    provider.ensure_started(call.server).await;
    let pods = info.plural == "pods";
    let name = call.req.name.clone();
    let ns = call.namespace().map(str::to_string);
    if let Some(name) = name {
        let (key, what) = if pods {
            let ns = ns.clone().unwrap_or_default();
            (
                format!(
                    "{}{ns}/{name}",
                    crate::registry::keys::resource_prefix("", "pods")
                ),
                format!("{ns}/{name}"),
            )
        } else {
            (
                format!(
                    "{}{name}",
                    crate::registry::keys::resource_prefix("", "nodes")
                ),
                name.clone(),
            )
        };
        let plural = if pods { "podmetrics" } else { "nodemetrics" };
        let not_found = || ApiError::not_found(GROUP, plural, &what);
        let obj = stored(&call, &key).await?.ok_or_else(not_found)?;
        let m = if pods {
            pod_metrics(provider, &obj)
        } else {
            provider.node(&name).map(|u| node_metrics(&obj, &u))
        };
        return Ok(Reply::ok(
            call.output
                .object(call.strategy.as_ref(), m.ok_or_else(not_found)?),
        ));
    }
    let (lsel, fsel) = selectors(&call)?;
    let prefix = if pods {
        let all = crate::registry::keys::resource_prefix("", "pods");
        match &ns {
            Some(ns) => format!("{all}{ns}/"),
            None => all,
        }
    } else {
        crate::registry::keys::resource_prefix("", "nodes")
    };
    let items: Vec<Value> = stored_list(&call, &prefix)
        .await?
        .into_iter()
        .filter(|o| lsel.matches_object(o) && fsel.matches(|f| field(o, f)))
        .filter_map(|o| {
            if pods {
                pod_metrics(provider, &o)
            } else {
                let name = o.pointer("/metadata/name").and_then(Value::as_str)?;
                provider.node(name).map(|u| node_metrics(&o, &u))
            }
        })
        .collect();
    let list_kind = if pods {
        "PodMetricsList"
    } else {
        "NodeMetricsList"
    };
    Ok(Reply::ok(call.output.list(
        call.strategy.as_ref(),
        list_kind,
        "metrics.k8s.io/v1beta1",
        json!({}),
        items,
    )))
}

/// One reading of the provider for an in-process reader (the dashboard's history in
/// `kaji server`): the usage of every node and pod the provider holds, without building,
/// sending and parsing the metrics API's lists.
#[derive(Debug, Default)]
pub struct Round {
    /// (name, nano-cores, bytes).
    pub nodes: Vec<(String, u64, u64)>,
    /// (`namespace/name`, nano-cores, bytes: its containers summed).
    pub pods: Vec<(String, u64, u64)>,
    /// The metrics' window (the time between the provider's two last scrapes), when any.
    pub window: Option<std::time::Duration>,
}

/// Every node's and pod's usage the provider holds, for in-process readers (the dashboard's
/// history), starting the provider as a metrics request does. It reads no stored object: the
/// pods are those the kubelets reported in the provider's last scrape, so a pod deleted since
/// shows for at most one more resolution (the metrics API itself lists only stored pods).
/// Reading every stored pod's key each round also read every page of the pods into the store's
/// page cache (bounded, 48 MiB by default), which otherwise holds only what the cluster's own work reads.
pub async fn round(server: &Arc<ApiServer>) -> Round {
    let provider = &server.resource_metrics;
    provider.ensure_started(server).await;
    let (nodes, pods) = provider.everything();
    let window_ms = nodes.iter().map(|n| n.1.window_ms).chain(pods.iter().map(|p| p.3)).next();
    Round {
        nodes: nodes
            .into_iter()
            .map(|(name, u)| (name, u.nano_cores, u.memory_bytes))
            .collect(),
        pods: pods
            .into_iter()
            .map(|(key, cpu, mem, _)| (key, cpu, mem))
            .collect(),
        window: window_ms
            .and_then(|w| u64::try_from(w).ok())
            .map(std::time::Duration::from_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_durations_print_as_upstream() {
        assert_eq!(cpu_quantity(12345), "12345n");
        assert_eq!(cpu_quantity(12_345_000), "12345u");
        assert_eq!(cpu_quantity(5_000_000), "5m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(memory_quantity(4096), "4Ki");
        assert_eq!(memory_quantity(3 * 1024 * 1024), "3Mi");
        assert_eq!(memory_quantity(1536), "1536");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(go_duration(15_000), "15s");
        assert_eq!(go_duration(10_036), "10.036s");
        assert_eq!(go_duration(60_500), "1m0.5s");
        assert_eq!(go_duration(250), "250ms");
    }
}
