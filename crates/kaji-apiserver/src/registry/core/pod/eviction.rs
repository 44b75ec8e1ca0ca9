//! pods/eviction (upstream's EvictionREST): deletes the pod with the eviction's DeleteOptions
//! (disruption budgets are checked once a disruption controller keeps their status).

use crate::objects::meta_str;
use crate::registry::store::{DeleteOptions, Store};
use kaji_api::ApiError;
use kaji_api::status::success_status;
use serde_json::{Value, json};

/// Evicts pod `name`; the answer is upstream's Status (code 201).
pub async fn evict(store: &Store<'_>, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Value, ApiError> {
    let pod = store.get(namespace, name).await?;
    store.delete(namespace, name, opts).await?;
    let info = store.strategy.info();
    let mut st = success_status(info.group, info.plural, name, meta_str(&pod, "uid").unwrap_or_default());
    st["code"] = json!(201);
    Ok(st)
}
