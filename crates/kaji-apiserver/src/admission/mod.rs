//! Admission plug-ins (upstream's `plugin/pkg/admission`), one file per plug-in. The generic
//! store (`registry::store`) runs them on create: the mutating ones after the kind's own
//! `Strategy::admit` (the pod strategy's calls ServiceAccount and DefaultTolerationSeconds, here), the
//! validating ones after the kind's validation. They read other objects straight from the store
//! and know nothing of HTTP.

pub mod default_toleration_seconds;
pub mod namespace_lifecycle;
pub mod priority;
pub mod service_account;

use crate::registry::Registry;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::Value;

/// The mutating plug-ins on create, in order (Priority).
pub async fn admit_create(storage: &dyn kaji_store::Store, registry: &Registry, info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    priority::admit(storage, registry, info, obj).await
}

/// The validating plug-ins on create (NamespaceLifecycle).
pub async fn validate_create(storage: &dyn kaji_store::Store, info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<(), ApiError> {
    namespace_lifecycle::validate(storage, info, namespace, name).await
}

/// A 403 naming the object, as upstream's `admission.NewForbidden`.
fn forbidden(info: &ResourceInfo, name: &str, msg: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("{} {name:?} is forbidden: {msg}", info.qualified_plural()));
    e.name = Some(name.to_string());
    e.kind = Some(info.plural.to_string());
    e
}
