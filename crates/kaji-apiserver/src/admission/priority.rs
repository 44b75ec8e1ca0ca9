//! Priority (upstream's `plugin/pkg/admission/priority`), for pods at create: the priority and
//! preemption policy come from the pod's PriorityClass, or from the global default class when it
//! names none (priority 0 without one). A class that does not exist, or a priority in the pod
//! that disagrees with its class, is refused with 403 as upstream.

use crate::objects::{self, meta_str};
use crate::registry::Registry;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Value, json};

pub async fn admit(storage: &dyn kaji_store::Store, registry: &Registry, info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if !(info.group.is_empty() && info.plural == "pods") {
        return Ok(());
    }
    let Some(classes) = registry.get("scheduling.k8s.io", "v1", "priorityclasses") else { return Ok(()) };
    let pod_name = meta_str(obj, "name").unwrap_or_default().to_string();
    let forbidden = |msg: String| super::forbidden(info, &pod_name, &msg);
    let wanted = obj.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or_default().to_string();
    let class = if wanted.is_empty() {
        // The global default: with several, the one of lowest value (upstream).
        let prefix = objects::prefix(classes.info(), None);
        let page = storage.list(&prefix, kaji_store::ListOptions::default()).await.map_err(crate::store_error)?;
        // Stored objects are compact serde_json: a default class's bytes hold this member, so
        // only those are decoded (the system classes are not defaults).
        static MARKER: std::sync::LazyLock<memchr::memmem::Finder<'static>> = std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"globalDefault\":true"));
        page.items
            .iter()
            .filter(|kv| MARKER.find(&kv.value).is_some())
            .map(objects::decode)
            .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
    } else {
        let kv = storage.get(&objects::key(classes.info(), None, &wanted)).await.map_err(crate::store_error)?;
        match kv {
            Some(kv) => Some(objects::decode(&kv)),
            None => return Err(forbidden(format!("no PriorityClass with name {wanted} was found"))),
        }
    };
    let value = class.as_ref().and_then(|c| c.get("value")).and_then(Value::as_i64).unwrap_or(0);
    let policy = class
        .as_ref()
        .and_then(|c| c.get("preemptionPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    spec.insert("priority".into(), json!(value));
    spec.insert("preemptionPolicy".into(), json!(policy));
    if wanted.is_empty()
        && let Some(name) = class.as_ref().and_then(|c| c.pointer("/metadata/name")).and_then(Value::as_str)
    {
        spec.insert("priorityClassName".into(), json!(name));
    }
    Ok(())
}
