//! NamespaceLifecycle (upstream's `plugin/pkg/admission/namespace/lifecycle`): a namespaced
//! object may only be created in a namespace that exists and is not being terminated.

use crate::objects;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::Value;

/// Refuses a create in a missing (404) or terminating (403) namespace; cluster-scoped objects
/// (`namespace` None) pass.
pub async fn validate(storage: &dyn kaji_store::Store, info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<(), ApiError> {
    let Some(ns) = namespace else { return Ok(()) };
    let ns_info = crate::registry::core_namespace_info();
    let kv = storage.get(&objects::key(ns_info, None, ns)).await.map_err(crate::store_error)?;
    // Only what is judged is read from the stored namespace (not its managedFields).
    static READ: std::sync::LazyLock<crate::registry::store::sparse::Paths> = std::sync::LazyLock::new(|| {
        let mut paths = crate::registry::store::sparse::Paths::default();
        paths.add(&["metadata", "deletionTimestamp"]);
        paths.add(&["status", "phase"]);
        paths
    });
    match kv.map(|kv| READ.decode(&kv.value).unwrap_or_else(|| objects::decode(&kv))) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if objects::is_deleting(&n) || n.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") => Err(super::forbidden(
            info,
            name,
            &format!("unable to create new content in namespace {ns} because it is being terminated"),
        )),
        Some(_) => Ok(()),
    }
}
