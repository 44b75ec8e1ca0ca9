//! Server-side apply (`application/apply-patch+yaml`): merges the applied configuration into the
//! live object by field ownership, creating the object when it does not exist.

use super::{Call, Reply};
use crate::registry::store::{Part, WriteOptions};
use crate::objects::{self, meta_mut};
use kaji_api::{ApiError, FieldError};
use kaji_patch::apply::ApplyError;
use serde_json::{Value, json};

fn to_api_error(e: ApplyError, group: &str, kind: &str, name: &str) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => {
            // Upstream: `Apply failed with 1 conflict: conflict with "mgr" using apps/v1: .spec.replicas`
            let mut err = ApiError::new(409, "Conflict", kaji_patch::apply::conflicts_message(&conflicts));
            err.causes = conflicts
                .iter()
                .map(|c| FieldError {
                    reason: "FieldManagerConflict",
                    field: c.path.clone(),
                    detail: format!("conflict with {}", c.manager_description()),
                })
                .collect();
            err
        }
        ApplyError::Invalid(msg) => ApiError::invalid(group, kind, name, vec![FieldError { reason: "FieldValueInvalid", field: String::new(), detail: msg }]),
    }
}

pub async fn apply(call: Call<'_>, part: Part, applied: Value) -> Result<Reply, ApiError> {
    let info = call.strategy.info();
    let name = call.req.name.clone().unwrap_or_default();
    let Some(manager) = call.param("fieldManager").filter(|m| !m.is_empty()).map(str::to_string) else {
        return Err(ApiError::invalid("meta.k8s.io", "PatchOptions", "", vec![FieldError::required("fieldManager", "is required for apply patch")]));
    };
    if !applied.is_object() {
        return Err(ApiError::bad_request("the apply configuration must be an object"));
    }
    for f in ["apiVersion", "kind"] {
        if applied.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(format!("{f} must be set in the apply configuration")));
        }
    }
    // Custom kinds: fields their schema does not know are reported as fieldValidation says
    // (the store prunes them from the result).
    let mut warnings = Vec::new();
    if let Some(pruned) = call.strategy.prune_unknown(&mut applied.clone()).filter(|p| !p.is_empty()) {
        let texts: Vec<String> = pruned.iter().map(|u| format!("unknown field {u:?}")).collect();
        match call.param("fieldValidation").unwrap_or("Warn") {
            "Strict" => return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: strict decoding error: {}", info.kind, info.version, info.kind, texts.join(", ")))),
            "Ignore" => {}
            _ => warnings = texts,
        }
    }
    let force = call.param("force") == Some("true");
    let (defs, def) = call
        .strategy
        .apply_definitions()
        .unwrap_or_else(|| (kaji_openapi::definitions(), kaji_openapi::definition_name(info.group, info.version, info.kind).unwrap_or_default()));
    let now = objects::now_rfc3339();
    let store = call.store();
    // managedFields are the apply's own: the store records none.
    let opts = WriteOptions { dry_run: call.dry_run(), field_manager: None };
    match store.get(call.namespace(), &name).await {
        Err(e) if e.code == 404 && part == Part::Main => {
            let mut obj = kaji_patch::apply::server_side_apply(None, &applied, &manager, force, defs, def, &now)
                .map_err(|e| to_api_error(e, info.group, info.kind, &name))?;
            let meta = meta_mut(&mut obj);
            meta.insert("name".into(), json!(name));
            if let Some(ns) = call.namespace() {
                meta.insert("namespace".into(), json!(ns));
            }
            let obj = store.create(call.namespace(), obj, &opts).await?;
            Ok(Reply::Json { code: 201, body: call.output.object(call.strategy.as_ref(), obj), warnings })
        }
        Err(e) => Err(e),
        Ok(_) => {
            let (obj, _) = store.guaranteed_update(call.namespace(), &name, part, &opts, |cur| {
                kaji_patch::apply::server_side_apply(Some(cur), &applied, &manager, force, defs, def, &now)
                    .map_err(|e| to_api_error(e, info.group, info.kind, &name))
            })
            .await?;
            Ok(Reply::Json { code: 200, body: call.output.object(call.strategy.as_ref(), obj), warnings })
        }
    }
}
