//! create, update and patch: decoding the body (JSON, YAML, protobuf), its kind and field
//! validation, name and namespace against the URL, the patch itself; the write is the generic
//! store's (`registry::store`).

use super::{Call, Reply};
use crate::objects::{meta_mut, meta_str};
use crate::registry::store::Part;
use kaji_api::{ApiError, FieldError};
use kaji_patch::PatchType;
use serde_json::{Value, json};

/// Parses the request body as JSON or YAML into an object.
pub fn decode_body(call: &Call<'_>) -> Result<Value, ApiError> {
    let ct = call.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let parsed: Result<Value, String> = match ct.as_str() {
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            serde_yaml::from_slice::<Value>(&call.body).map_err(|e| format!("yaml: {e}"))
        }
        "application/json" | "" | "application/json-patch+json" | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" | "*/*" => {
            serde_json::from_slice::<Value>(&call.body).map_err(|e| format!("json: {e}"))
        }
        // Stock kubectl's typed commands (create deployment, drain's evictions, ...) send protobuf.
        kaji_protobuf::MEDIA_TYPE => kaji_protobuf::decode(&call.body).map_err(|e| format!("protobuf: {e}")),
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    parsed.map_err(|e| {
        let info = call.strategy.info();
        ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: {e}", info.kind, info.version, info.kind))
    })
}

/// The body must be an object of this kind; missing apiVersion/kind are filled in.
fn check_kind(call: &Call<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let info = call.strategy.info();
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: the body is not an object", info.kind, info.version, info.kind)));
    };
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(info.kind));
        }
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "{k} in version {:?} cannot be handled as a {}: the object's kind does not match the resource",
                info.version, info.kind
            )));
        }
        _ => {}
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(info.api_version()));
        }
        Some(v) if v != info.api_version() => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
        _ => {}
    }
    if map.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: metadata must be an object", info.kind, info.version, info.kind)));
    }
    Ok(())
}

/// fieldValidation=Strict rejects unknown fields, Warn (the default) warns; both then drop them,
/// as decoding into upstream's Go types does.
fn field_validation(call: &Call<'_>, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let info = call.strategy.info();
    // Custom kinds: what the schema prunes is what is unknown.
    if let Some(pruned) = call.strategy.prune_unknown(obj) {
        let texts: Vec<String> = pruned.iter().map(|u| format!("unknown field {u:?}")).collect();
        return match call.param("fieldValidation").unwrap_or("Warn") {
            _ if texts.is_empty() => Ok(Vec::new()),
            "Strict" => Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: strict decoding error: {}", info.kind, info.version, info.kind, texts.join(", ")))),
            "Ignore" => Ok(Vec::new()),
            _ => Ok(texts),
        };
    }
    let Some(def) = kaji_openapi::definition_name(info.group, info.version, info.kind) else {
        return Ok(Vec::new());
    };
    let unknown = kaji_openapi::unknown_fields(def, obj);
    let mut texts: Vec<String> = Vec::new();
    let json_body = !call.content_type.contains("yaml");
    if json_body {
        texts.extend(kaji_openapi::duplicate_fields(def, &call.body).iter().map(|d| format!("duplicate field {d:?}")));
    }
    texts.extend(unknown.iter().map(|u| format!("unknown field {u:?}")));
    if let Some(e) = kaji_openapi::types::type_error(info.group, info.version, info.kind, obj) {
        return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: {e}", info.kind, info.version, info.kind)));
    }
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    match call.param("fieldValidation").unwrap_or("Warn") {
        "Strict" => Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            info.kind,
            info.version,
            info.kind,
            texts.join(", ")
        ))),
        "Ignore" => {
            kaji_openapi::prune_unknown_fields(def, obj);
            Ok(Vec::new())
        }
        _ => {
            kaji_openapi::prune_unknown_fields(def, obj);
            Ok(texts)
        }
    }
}

pub async fn create(call: Call<'_>) -> Result<Reply, ApiError> {
    let mut obj = decode_body(&call)?;
    check_kind(&call, &mut obj)?;
    let warnings = field_validation(&call, &mut obj)?;
    if let Some(ns) = call.namespace() {
        match meta_str(&obj, "namespace") {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => {
                meta_mut(&mut obj).insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta_mut(&mut obj).remove("namespace");
    }
    let obj = call.store().create(call.namespace(), obj, &call.write_options()).await?;
    Ok(Reply::Json { code: 201, body: call.output.object(call.strategy.as_ref(), obj), warnings })
}

pub async fn update(call: Call<'_>) -> Result<Reply, ApiError> {
    update_part(call, Part::Main).await
}

pub async fn update_part(call: Call<'_>, part: Part) -> Result<Reply, ApiError> {
    let mut body = decode_body(&call)?;
    check_kind(&call, &mut body)?;
    let warnings = field_validation(&call, &mut body)?;
    let name = call.req.name.clone().unwrap_or_default();
    if let Some(n) = meta_str(&body, "name").filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
    }
    if let Some(ns) = call.namespace()
        && meta_str(&body, "namespace").is_some_and(|b| !b.is_empty() && b != ns)
    {
        return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
    }
    let (obj, created) = call.store().update(call.namespace(), &name, body, part, &call.write_options()).await?;
    let code = if created { 201 } else { 200 };
    Ok(Reply::Json { code, body: call.output.object(call.strategy.as_ref(), obj), warnings })
}

pub async fn patch(call: Call<'_>) -> Result<Reply, ApiError> {
    patch_part(call, Part::Main).await
}

/// Applies a JSON, merge, strategic-merge or apply patch to the current object.
pub async fn patch_part(call: Call<'_>, part: Part) -> Result<Reply, ApiError> {
    let ct = call.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some(kind) = PatchType::from_content_type(&ct) else {
        return Err(ApiError::unsupported_media_type(&ct));
    };
    if kind == PatchType::StrategicMerge && !call.strategy.supports_strategic_merge_patch() {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let info = call.strategy.info();
    let def = kaji_openapi::definition_name(info.group, info.version, info.kind).unwrap_or_default();
    let defs = kaji_openapi::definitions();
    let patch = decode_body(&call)?;
    if kind == PatchType::Apply {
        return super::apply::apply(call, part, patch).await;
    }
    let name = call.req.name.clone().unwrap_or_default();
    let mut warnings = Vec::new();
    let (obj, _) = call.store().guaranteed_update(call.namespace(), &name, part, &call.write_options(), |current| {
        let mut patched = match kind {
            PatchType::Json => kaji_patch::json_patch(current, &patch),
            PatchType::Merge => Ok(kaji_patch::merge_patch(current, &patch)),
            PatchType::StrategicMerge => kaji_patch::strategic_merge_patch(current, &patch, defs, def),
            PatchType::Apply => unreachable!("handled above"),
        }
        .map_err(|e| patch_error(&e.to_string(), info.group, info.kind, &name))?;
        // A patch may not rename the object or move it.
        if meta_str(&patched, "name") != Some(name.as_str()) {
            return Err(ApiError::bad_request("metadata.name: the name of the object may not be changed by a patch"));
        }
        let unknown = match call.strategy.prune_unknown(&mut patched) {
            Some(pruned) => pruned,
            None => kaji_openapi::unknown_fields(def, &patched),
        };
        if !unknown.is_empty() {
            let texts: Vec<String> = unknown.iter().map(|u| format!("unknown field {u:?}")).collect();
            if call.param("fieldValidation") == Some("Strict") {
                return Err(ApiError::bad_request(format!("strict decoding error: {}", texts.join(", "))));
            }
            if call.param("fieldValidation") != Some("Ignore") {
                warnings = texts;
            }
            kaji_openapi::prune_unknown_fields(def, &mut patched);
        }
        Ok(patched)
    })
    .await?;
    Ok(Reply::Json { code: 200, body: call.output.object(call.strategy.as_ref(), obj), warnings })
}

/// Patch failures: a malformed patch is a 400, one that cannot apply to this object a 422.
fn patch_error(msg: &str, group: &str, kind: &str, name: &str) -> ApiError {
    if msg.contains("test") || msg.contains("missing") || msg.contains("path") {
        ApiError::invalid(group, kind, name, vec![FieldError { reason: "FieldValueInvalid", field: String::new(), detail: msg.to_string() }])
    } else {
        ApiError::bad_request(msg.to_string())
    }
}
