//! Subresources: status, scale (autoscaling/v1 Scale), pods/binding, pods/eviction,
//! namespaces/finalize, pods/log; exec, attach and portforward (`connect`) go to `crate::proxy`.
//! The kind-specific work is the kind's (`registry::core::pod`, `registry::core::namespace`).

use super::read::fetch;
use super::write::{patch_part, update_part};
use super::{Call, Reply};
use crate::objects::meta_str;
use crate::registry::core::{namespace, pod};
use crate::registry::store::Part;
use http::Method;
use kaji_api::ApiError;
use kaji_api::selector::LabelSelector;
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
        ("approval", "GET") => super::read::get(call).await,
        ("approval", "PUT") => crate::registry::certificates::approval(update_part(call, Part::Status)).await,
        ("approval", "PATCH") => crate::registry::certificates::approval(patch_part(call, Part::Status)).await,
        ("finalize", "PUT") => finalize(call).await,
        ("scale", "GET") => {
            let obj = fetch(&call).await?;
            Ok(Reply::ok(scale_of(&call, &obj)))
        }
        ("scale", "PUT" | "PATCH") => scale_write(call, method).await,
        ("binding", "POST") => binding(call).await,
        ("eviction", "POST") => eviction(call).await,
        ("token", "POST") => service_account_token(call).await,
        ("log", "GET") => pod_log(call).await,
        ("log" | "exec" | "attach" | "portforward", _) => Err(ApiError::new(
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
    let paths = call.strategy.scale_paths();
    let selector = match (paths, obj.pointer("/spec/selector")) {
        // A custom kind's selector is a string at labelSelectorPath.
        (Some(p), _) => p.label_selector.as_deref().and_then(|ptr| obj.pointer(ptr)).and_then(Value::as_str).unwrap_or_default().to_string(),
        (None, Some(sel)) if label_selector => LabelSelector::from_object(sel).map(|s| s.to_string()).unwrap_or_default(),
        (None, Some(Value::Object(m))) => LabelSelector::from_map(m).to_string(),
        _ => String::new(),
    };
    let (spec_ptr, status_ptr) = paths.map_or(("/spec/replicas", "/status/replicas"), |p| (p.spec_replicas.as_str(), p.status_replicas.as_str()));
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(k) {
            scale_meta[k] = v.clone();
        }
    }
    let mut status = json!({"replicas": obj.pointer(status_ptr).cloned().unwrap_or(json!(0))});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": obj.pointer(spec_ptr).cloned().unwrap_or(json!(0))},
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
        let spec_ptr = call.strategy.scale_paths().map_or("/spec/replicas", |p| p.spec_replicas.as_str());
        if cur.pointer(spec_ptr).and_then(Value::as_i64) != Some(replicas) {
            set_at(&mut next, spec_ptr, json!(replicas));
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

/// Sets the member at a JSON pointer, making the objects on the way.
fn set_at(obj: &mut Value, ptr: &str, value: Value) {
    let mut cur = obj;
    let segments: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else { return };
        if i + 1 == segments.len() {
            map.insert((*seg).to_string(), value);
            return;
        }
        cur = map.entry((*seg).to_string()).or_insert_with(|| json!({}));
    }
}

/// pods/binding.
async fn binding(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let name = call.req.name.clone().unwrap_or_default();
    pod::binding::bind(&call.store(), call.namespace(), &name, &body, &call.system_write_options()).await?;
    Ok(Reply::Json { code: 201, body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}), warnings: Vec::new() })
}

/// pods/eviction: the Eviction's deleteOptions (and the query's) decoded as a delete's.
async fn eviction(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let opts = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    let opts = super::delete::options_from(&call, &opts)?;
    let name = call.req.name.clone().unwrap_or_default();
    // Upstream EvictionREST.Create checks the body's name against the URL's.
    if body.pointer("/metadata/name").and_then(serde_json::Value::as_str) != Some(name.as_str()) {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let st = pod::eviction::evict(&call.store(), call.namespace(), &name, &opts.store).await?;
    Ok(Reply::Json { code: 201, body: st, warnings: Vec::new() })
}

/// serviceaccounts/token: a TokenRequest answered with a bound token (nothing is stored).
async fn service_account_token(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let name = call.req.name.clone().unwrap_or_default();
    let out = crate::registry::core::serviceaccount_token::create(call.server, call.namespace().unwrap_or_default(), &name, &body).await?;
    Ok(Reply::Json { code: 201, body: out, warnings: Vec::new() })
}

/// namespaces/finalize: the namespace controller's way to clear `spec.finalizers`.
async fn finalize(call: Call<'_>) -> Result<Reply, ApiError> {
    let body = super::write::decode_body(&call)?;
    let name = call.req.name.clone().unwrap_or_default();
    let obj = namespace::finalize(&call.store(), &name, &body, &call.system_write_options()).await?;
    Ok(Reply::ok(call.output.object(call.strategy.as_ref(), obj)))
}

/// pods/log: the kubelet's log stream, streamed back.
async fn pod_log(call: Call<'_>) -> Result<Reply, ApiError> {
    let pod = fetch(&call).await?;
    let mut options: Vec<(&str, &str)> = Vec::new();
    for k in ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"] {
        if let Some(v) = call.params.get(k) {
            options.push((k, v));
        }
    }
    let path = pod::location::log_path(&pod, call.param("container"), &options)?;
    let (ip, port) = pod::location::kubelet_address(&*call.server.store, &pod).await?;
    Ok(Reply::Watch(crate::proxy::kubelet::stream(call.server, &ip, port, &path).await?))
}

/// pods/exec, attach and portforward: the pod, then the upgrade relayed to its kubelet.
pub async fn connect(call: Call<'_>, req: http::Request<hyper::body::Incoming>) -> Result<http::Response<crate::server::Body>, ApiError> {
    let sub = call.req.subresource.clone().unwrap_or_default();
    let pod = fetch(&call).await?;
    if sub == "log" {
        return crate::proxy::log_ws::serve(call.server, &pod, call.params, req).await;
    }
    crate::proxy::streaming::upgrade(call.server, &pod, &sub, req).await
}
