//! Admission plug-ins (upstream's `plugin/pkg/admission`), one file per plug-in. The generic
//! store (`registry::store`) runs them on create: the mutating ones after the kind's own
//! `Strategy::admit` (the pod strategy's calls ServiceAccount and DefaultTolerationSeconds, here), the
//! validating ones after the kind's validation. They read other objects straight from the store
//! and know nothing of HTTP.

pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod node_restriction;
pub mod priority;
pub mod resource_quota;
pub mod service_account;
pub mod storage_class;
pub mod storage_object_in_use_protection;
pub mod webhook;

use crate::registry::Registry;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::Value;

/// The mutating plug-ins on create, in order (LimitRanger, ServiceAccount, Priority,
/// DefaultStorageClass, StorageObjectInUseProtection).
pub async fn admit_create(storage: &dyn kaji_store::Store, registry: &Registry, info: &ResourceInfo, admission: &crate::registry::Admission, obj: &mut Value) -> Result<(), ApiError> {
    limit_ranger::admit(storage, registry, info, obj).await?;
    service_account::admit_create(storage, registry, info, admission, obj).await?;
    priority::admit(storage, registry, info, obj).await?;
    storage_class::admit(storage, registry, info, obj).await?;
    storage_object_in_use_protection::admit(info, obj);
    Ok(())
}

/// The validating plug-ins on create, in order (NamespaceLifecycle, ResourceQuota: last, as it
/// charges the quotas).
pub async fn validate_create(storage: &dyn kaji_store::Store, registry: &Registry, info: &ResourceInfo, namespace: Option<&str>, obj: &Value, dry_run: bool) -> Result<(), ApiError> {
    let name = crate::objects::meta_str(obj, "name").unwrap_or_default();
    namespace_lifecycle::validate(storage, info, namespace, name).await?;
    resource_quota::validate(storage, registry, info, namespace, obj, dry_run).await
}

/// A 403 naming the object, as upstream's `admission.NewForbidden`.
fn forbidden(info: &ResourceInfo, name: &str, msg: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("{} {name:?} is forbidden: {msg}", info.qualified_plural()));
    e.name = Some(name.to_string());
    e.kind = Some(info.plural.to_string());
    e
}
