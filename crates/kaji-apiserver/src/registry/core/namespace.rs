//! Namespaces: RFC 1123 label names, phase Active, the `kubernetes` finalizer, the
//! `kubernetes.io/metadata.name` label upstream adds; the `finalize` subresource.

use crate::registry::store::{Part, Store, WriteOptions};
use crate::registry::{Strategy, child, info, str_at};
use kaji_api::{ApiError, ResourceInfo, validation};
use serde_json::{Value, json};

pub struct NamespaceStrategy;

pub static INFO: ResourceInfo = info("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], &["status", "finalize"]);

impl Strategy for NamespaceStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::dns1123_label(name)
    }
    fn default(&self, obj: &mut Value) {
        let name = str_at(obj, "/metadata/name").unwrap_or_default().to_string();
        if let Some(meta) = child(obj, "metadata")
            && let Some(labels) = child(meta, "labels")
            && let Some(m) = labels.as_object_mut()
        {
            m.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        if let Some(spec) = child(obj, "spec")
            && spec.get("finalizers").is_none()
        {
            spec["finalizers"] = json!(["kubernetes"]);
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
    }
    fn prepare_for_delete(&self, obj: &mut Value) -> bool {
        // The namespace controller empties the namespace, then removes spec.finalizers.
        obj["status"]["phase"] = json!("Terminating");
        obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
    }
    fn ready_to_remove(&self, obj: &Value) -> bool {
        crate::objects::finalizers(obj).is_empty()
            && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "status.phase" => Some(str_at(obj, "/status/phase").unwrap_or_default().to_string()),
            _ => None,
        }
    }
}

/// namespaces/finalize (upstream's FinalizeREST): the namespace controller's way to set
/// `spec.finalizers` (to clear them once the namespace is empty); takes them from `namespace`.
pub async fn finalize(store: &Store<'_>, name: &str, namespace: &Value, opts: &WriteOptions) -> Result<Value, ApiError> {
    let finalizers = namespace.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
    let (obj, _) = store
        .guaranteed_update(None, name, Part::System, opts, |cur| {
            let mut next = cur.clone();
            next["spec"]["finalizers"] = finalizers.clone();
            Ok(next)
        })
        .await?;
    Ok(obj)
}
