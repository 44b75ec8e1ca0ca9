//! delete and deletecollection: DeleteOptions from the body and the query (grace period,
//! propagation policy, preconditions), and the answer's shape; the deletion itself (graceful
//! deletion, finalizers, the orphan / foregroundDeletion finalizers for the garbage collector) is
//! the generic store's (`registry::store`).

use super::{Call, Reply};
use crate::objects::{self, meta_str};
use crate::registry::store::{DeleteOptions, Preconditions};
use kaji_api::ApiError;
use kaji_api::status::success_status;
use serde_json::{Value, json};

/// DeleteOptions as decoded; `cascade_requested` is `orphanDependents: false` given explicitly:
/// the answer for a pending deletion is then 202 Accepted rather than 200 (upstream keeps 200
/// otherwise for old clients).
pub struct Options {
    pub store: DeleteOptions,
    pub cascade_requested: bool,
}

/// DeleteOptions from a decoded body (`{}` when none) and the query, which wins.
pub fn options_from(call: &Call<'_>, body: &Value) -> Result<Options, ApiError> {
    let mut grace = body.get("gracePeriodSeconds").and_then(Value::as_i64);
    if let Some(g) = call.param("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
        grace = Some(g);
    }
    let mut propagation = body.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
    if let Some(p) = call.param("propagationPolicy") {
        propagation = Some(p.to_string());
    }
    let orphan = body.get("orphanDependents").and_then(Value::as_bool).or_else(|| call.param("orphanDependents").map(|o| o == "true"));
    if propagation.is_none()
        && let Some(o) = orphan
    {
        propagation = Some(if o { "Orphan" } else { "Background" }.to_string());
    }
    if let Some(p) = &propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid("meta.k8s.io", "DeleteOptions", "", vec![kaji_api::FieldError::not_supported("propagationPolicy", p, &["Foreground", "Background", "Orphan"])]));
    }
    Ok(Options {
        store: DeleteOptions {
            grace_period_seconds: grace,
            propagation_policy: propagation,
            preconditions: Preconditions {
                uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
                resource_version: body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string),
            },
            dry_run: call.dry_run(),
        },
        cascade_requested: orphan == Some(false),
    })
}

fn options(call: &Call<'_>) -> Result<Options, ApiError> {
    let body: Value = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if call.body.starts_with(kaji_protobuf::MAGIC) {
        kaji_protobuf::decode(&call.body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(&call.body)
            .or_else(|_| serde_yaml::from_slice(&call.body))
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    options_from(call, &body)
}

pub async fn delete(call: Call<'_>) -> Result<Reply, ApiError> {
    let opts = options(&call)?;
    let info = call.strategy.info();
    let name = call.req.name.clone().unwrap_or_default();
    let done = call.store().delete(call.namespace(), &name, &opts.store).await?;
    if done.removed {
        let uid = meta_str(&done.object, "uid").unwrap_or_default();
        return Ok(Reply::ok(success_status(info.group, info.plural, &name, uid)));
    }
    let code = if objects::is_deleting(&done.object) && opts.cascade_requested { 202 } else { 200 };
    Ok(Reply::Json { code, body: call.output.object(call.strategy.as_ref(), done.object), warnings: Vec::new() })
}

pub async fn delete_collection(call: Call<'_>) -> Result<Reply, ApiError> {
    let opts = options(&call)?;
    let filter = super::read::filter(&call)?;
    let (deleted, revision) = call.store().delete_collection(call.namespace(), &filter, &super::read::list_options(&call), &opts.store).await?;
    let info = call.strategy.info();
    let meta = json!({"resourceVersion": revision.to_string()});
    Ok(Reply::ok(call.output.list(call.strategy.as_ref(), &info.list_kind(), &info.api_version(), meta, deleted)))
}
