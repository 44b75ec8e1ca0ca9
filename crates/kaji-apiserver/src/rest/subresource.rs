//! Subresources: status, scale (autoscaling/v1 Scale), pods/binding, pods/eviction and
//! namespaces/finalize. The streaming ones (log, exec, attach, portforward, proxy) need a node.

use super::read::fetch;
use super::write::{patch_part, update_part};
use crate::registry::store::Part;
use super::{Call, Reply};
use crate::objects::meta_str;
use http::Method;
use kaji_api::ApiError;
use kaji_api::selector::LabelSelector;
use kaji_api::status::success_status;
use serde_json::{Value, json};

pub async fn dispatch(call: Call<'_>, method: &Method, sub: &str) -> Result<Reply, ApiError> {
    let info = call.strategy.info();
    if !info.subresources.contains(&sub) {
        return Err(ApiError::no_route(""));
    }
    match (sub, method.as_str()) {
        ("status", "GET") => super::read::get(call).await,
        ("status", "PUT") => update_part(call, Part::Status).await,
        ("status", "PATCH") => patch_part(call, Part::Status).await,
        ("finalize", "PUT") => finalize(call).await,
        ("scale", "GET") => {
            let obj = fetch(&call).await?;
            Ok(Reply::ok(scale_of(&call, &obj)))
        }
        ("scale", "PUT" | "PATCH") => scale_write(call, method).await,
        ("binding", "POST") => binding(call).await,
        ("eviction", "POST") => eviction(call).await,
        ("log", "GET") => pod_log(call).await,
        ("log" | "exec" | "attach" | "portforward" | "proxy", _) => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("{}/{sub} needs a node agent; no kubelet serves this pod yet", info.plural),
        )),
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}

/// The autoscaling/v1 Scale view of a workload.
fn scale_of(call: &Call<'_>, obj: &Value) -> Value {
    let label_selector = call.strategy.scale().is_some_and(|s| s.selector_is_label_selector);
    let selector = match obj.pointer("/spec/selector") {
        Some(sel) if label_selector => LabelSelector::from_object(sel).map(|s| s.to_string()).unwrap_or_default(),
        Some(Value::Object(m)) => LabelSelector::from_map(m).to_string(),
        _ => String::new(),
    };
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(k) {
            scale_meta[k] = v.clone();
        }
    }
    let mut status = json!({"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0))});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": status,
    })
}

async fn scale_write(call: Call<'_>, method: &Method) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let ct = call.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let patch_kind = if method == Method::PATCH {
        Some(kaji_patch::PatchType::from_content_type(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?)
    } else {
        None
    };
    let scale_defs = kaji_openapi::definitions();
    let name = call.req.name.clone().unwrap_or_default();
    let (obj, _) = call.store().guaranteed_update(call.namespace(), &name, Part::System, &call.system_write_options(), |cur| {
        let scale = scale_of(&call, cur);
        let new_scale = match patch_kind {
            None => body.clone(),
            Some(kaji_patch::PatchType::Json) => kaji_patch::json_patch(&scale, &body).map_err(|e| ApiError::bad_request(e.to_string()))?,
            Some(kaji_patch::PatchType::StrategicMerge) => {
                kaji_patch::strategic_merge_patch(&scale, &body, scale_defs, "io.k8s.api.autoscaling.v1.Scale").map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            Some(_) => kaji_patch::merge_patch(&scale, &body),
        };
        if let Some(want) = meta_str(&new_scale, "resourceVersion").filter(|s| !s.is_empty())
            && Some(want) != meta_str(cur, "resourceVersion")
        {
            let info = call.strategy.info();
            return Err(ApiError::stale(info.group, info.plural, call.req.name.as_deref().unwrap_or_default()));
        }
        let replicas = new_scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid("autoscaling", "Scale", call.req.name.as_deref().unwrap_or_default(), vec![kaji_api::FieldError::invalid("spec.replicas", &json!(replicas), "must be greater than or equal to 0")]));
        }
        let mut next = cur.clone();
        if cur.pointer("/spec/replicas").and_then(Value::as_i64) != Some(replicas) {
            next["spec"]["replicas"] = json!(replicas);
            if call.strategy.tracks_generation() {
                let g = cur.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                next["metadata"]["generation"] = json!(g);
            }
        }
        Ok(next)
    })
    .await?;
    Ok(Reply::ok(scale_of(&call, &obj)))
}

/// pods/binding: sets spec.nodeName once and marks the pod scheduled (what the scheduler calls).
async fn binding(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let node = body.pointer("/target/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = call.req.name.clone().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::invalid("", "Binding", &name, vec![kaji_api::FieldError::required("target.name", "")]));
    }
    call.store().guaranteed_update(call.namespace(), &name, Part::System, &call.system_write_options(), |cur| {
        if crate::objects::is_deleting(cur) {
            return Err(ApiError::conflict("", "pods", &name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(existing) = cur.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict("", "pods", &name, &format!("pod {name} is already assigned to node {existing:?}")));
        }
        let mut next = cur.clone();
        next["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": crate::objects::now_rfc3339()});
        let conds = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled")).collect();
        conds.push(cond);
        next["status"]["conditions"] = json!(conds);
        Ok(next)
    })
    .await?;
    Ok(Reply::Json { code: 201, body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}), warnings: Vec::new() })
}

/// pods/eviction: deletes the pod with the eviction's DeleteOptions (disruption budgets are
/// checked once a disruption controller keeps their status).
async fn eviction(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let opts = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    let opts = super::delete::options_from(&call, &opts)?;
    let name = call.req.name.clone().unwrap_or_default();
    let store = call.store();
    let obj = store.get(call.namespace(), &name).await?;
    store.delete(call.namespace(), &name, &opts.store).await?;
    let info = call.strategy.info();
    let mut st = success_status(info.group, info.plural, &name, meta_str(&obj, "uid").unwrap_or_default());
    st["code"] = json!(201);
    Ok(Reply::Json { code: 201, body: st, warnings: Vec::new() })
}

/// namespaces/finalize: the namespace controller's way to clear `spec.finalizers`.
async fn finalize(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let finalizers = body.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
    let name = call.req.name.clone().unwrap_or_default();
    let (obj, _) = call.store().guaranteed_update(call.namespace(), &name, Part::System, &call.system_write_options(), |cur| {
        let mut next = cur.clone();
        next["spec"]["finalizers"] = finalizers.clone();
        Ok(next)
    })
    .await?;
    Ok(Reply::ok(call.output.object(call.strategy.as_ref(), obj)))
}

/// pods/log: picks the container as upstream's LogLocation does, then streams the kubelet's
/// `/containerLogs/<ns>/<pod>/<container>` (https://<node InternalIP>:<kubeletEndpoint port>).
/// The kubelet's certificate is not verified yet (it is self-signed); see kaji-kubelet's server.
async fn pod_log(call: Call<'_>) -> Result<Reply, ApiError> {
    let pod = fetch(&call).await?;
    let name = call.req.name.clone().unwrap_or_default();
    let ns = call.namespace().unwrap_or("default").to_string();
    let container = pod_container(&pod, call.params.get("container").map(String::as_str), false)?;
    let (ip, port) = kubelet_address(&call, &pod).await?;
    let mut query: Vec<String> = Vec::new();
    for k in ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"] {
        if let Some(v) = call.params.get(k) {
            query.push(format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)));
        }
    }
    let path = format!("/containerLogs/{ns}/{name}/{container}?{}", query.join("&"));
    kubelet_stream(call.server, &ip, port, &path).await
}

/// The container a log, exec or attach request is for, as upstream's `validateContainer`: the
/// one asked for (init containers count), else the only one, else the
/// `kubectl.kubernetes.io/default-container` annotation when `use_annotation`, else an error
/// naming the choices.
pub(super) fn pod_container(pod: &Value, requested: Option<&str>, use_annotation: bool) -> Result<String, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path).and_then(Value::as_array).map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let (containers, inits) = (names("/spec/containers"), names("/spec/initContainers"));
    let annotated = pod.pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container").and_then(Value::as_str).filter(|_| use_annotation);
    match requested.filter(|c| !c.is_empty()).or(annotated) {
        Some(c) if containers.iter().chain(&inits).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !inits.is_empty() {
                msg.push_str(&format!(" or one of the init containers: [{}]", inits.join(" ")));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Where the pod's kubelet listens: its node's InternalIP and `daemonEndpoints.kubeletEndpoint`.
pub(super) async fn kubelet_address(call: &Call<'_>, pod: &Value) -> Result<(String, u16), ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let node = call
        .server
        .store
        .get(&format!("/registry/core/v1/nodes/{node_name}"))
        .await
        .map_err(crate::store_error)?
        .map(|kv| crate::objects::decode(&kv))
        .ok_or_else(|| ApiError::not_found("", "nodes", &node_name))?;
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP").or_else(|| a.first()))
        .and_then(|a| a["address"].as_str())
        .unwrap_or_default()
        .to_string();
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(10250);
    if ip.is_empty() {
        return Err(ApiError::new(503, "ServiceUnavailable", format!("node {node_name} has no address")));
    }
    Ok((ip, port))
}

/// A TLS connection to a kubelet (HTTP/1.1, for streams and upgrades).
pub(super) async fn kubelet_connect(server: &crate::ApiServer, ip: &str, port: u16) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ApiError> {
    let unavailable = |e: String| ApiError::new(503, "ServiceUnavailable", format!("connecting to the kubelet at {ip}:{port}: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip, port)).await.map_err(|e| unavailable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let server_name = rustls::pki_types::ServerName::try_from(ip.to_string()).map_err(|e| unavailable(e.to_string()))?;
    tokio_rustls::TlsConnector::from(server.kubelet_tls.clone()).connect(server_name, tcp).await.map_err(|e| unavailable(e.to_string()))
}

/// GETs `path` from a kubelet and streams the body back (errors keep the kubelet's message).
async fn kubelet_stream(server: &crate::ApiServer, ip: &str, port: u16, path: &str) -> Result<Reply, ApiError> {
    use http_body_util::BodyExt;
    let unavailable = |e: String| ApiError::new(503, "ServiceUnavailable", format!("connecting to the kubelet at {ip}:{port}: {e}"));
    let tls = kubelet_connect(server, ip, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(conn);
    let req = http::Request::get(path).header(http::header::HOST, format!("{ip}:{port}")).body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| unavailable(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| unavailable(e.to_string()))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let msg = String::from_utf8_lossy(&bytes).trim().to_string();
        return Err(if status.as_u16() == 400 { ApiError::bad_request(msg) } else { ApiError::new(status.as_u16(), "InternalError", msg) });
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                break;
            }
        }
    });
    Ok(Reply::Watch(rx))
}

