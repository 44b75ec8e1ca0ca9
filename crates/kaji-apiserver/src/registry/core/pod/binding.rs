//! pods/binding (upstream's BindingREST): sets `spec.nodeName` once and marks the pod scheduled;
//! what the scheduler calls.

use crate::registry::store::{Part, Store, WriteOptions};
use kaji_api::ApiError;
use serde_json::{Value, json};

/// Binds pod `name` to the node a Binding (`binding`) targets.
pub async fn bind(store: &Store<'_>, namespace: Option<&str>, name: &str, binding: &Value, opts: &WriteOptions) -> Result<(), ApiError> {
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if node.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, vec![kaji_api::FieldError::required("target.name", "")]));
    }
    store
        .guaranteed_update(namespace, name, Part::System, opts, |cur| {
            if crate::objects::is_deleting(cur) {
                return Err(ApiError::conflict("", "pods", name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(existing) = cur.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict("", "pods", name, &format!("pod {name} is already assigned to node {existing:?}")));
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
    Ok(())
}
