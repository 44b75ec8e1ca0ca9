//! DefaultStorageClass (upstream `plugin/pkg/admission/storage/storageclass/setdefault`): a
//! PersistentVolumeClaim created without a class (no `storageClassName`, no beta annotation) gets
//! the default StorageClass, the one annotated `storageclass.kubernetes.io/is-default-class:
//! "true"` (or the beta annotation); with several, the newest (then the first by name), as
//! upstream's `GetDefaultClass` since 1.26. An explicit `storageClassName: ""` keeps no class.

use crate::objects;
use crate::registry::Registry;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Value, json};

const IS_DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";
const IS_DEFAULT_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn is_default(class: &Value) -> bool {
    let ann = class.pointer("/metadata/annotations");
    [IS_DEFAULT, IS_DEFAULT_BETA]
        .iter()
        .any(|k| ann.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"))
}

pub async fn admit(
    storage: &dyn kaji_store::Store,
    registry: &Registry,
    info: &ResourceInfo,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if !(info.group.is_empty() && info.plural == "persistentvolumeclaims") {
        return Ok(());
    }
    let has_class = obj
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
        || obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(BETA_CLASS))
            .is_some();
    if has_class {
        return Ok(());
    }
    let Some(classes) = registry.get("storage.k8s.io", "v1", "storageclasses") else {
        return Ok(());
    };
    let page = storage
        .list(
            &objects::prefix(classes.info(), None),
            kaji_store::ListOptions::default(),
        )
        .await
        .map_err(crate::store_error)?;
    let created = |c: &Value| {
        c.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = |c: &Value| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let default = page
        .items
        .iter()
        .map(objects::decode)
        .filter(is_default)
        .max_by(|a, b| {
            created(a)
                .cmp(&created(b))
                .then_with(|| name(b).cmp(&name(a)))
        });
    if let Some(class) = default
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        tracing::debug!(class = %name(&class), "defaulting the claim's storage class");
        spec.insert("storageClassName".into(), json!(name(&class)));
    }
    Ok(())
}
