//! ResourceQuota (upstream `plugin/pkg/admission/resourcequota` and its quota evaluator), a
//! validating plug-in on create: the object's usage (`kaji_api::quota::usage`) is charged to every
//! quota of its namespace that tracks it and whose scopes select it, against the quota's
//! `status.hard` and `status.used` (a quota the controller has not yet processed restricts
//! nothing). Over the limit is a 403 `exceeded quota: ...`, a pod lacking a cpu or memory amount a
//! quota needs a 403 `failed quota: ...`. The new `status.used` is written with a compare-and-swap
//! on each quota in the same request, so two creates cannot both take the last unit; on a
//! conflict the evaluation starts again from the quotas as they now are. Updates of services and
//! claims (`validate_update`, from the store's update path) are charged what they add.

use crate::objects::meta_str;
use crate::registry::Registry;
use kaji_api::quota::{self, ResourceList};
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Value, json};

/// Attempts before giving up on a quota that keeps changing under us.
const ATTEMPTS: usize = 8;

pub async fn validate(
    storage: &dyn kaji_store::Store,
    registry: &Registry,
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    // The usage is computed only when the namespace has a quota (most creates meet none).
    let delta = || quota::usage(info.group, info.plural, obj, false);
    charge(storage, registry, info, namespace, obj, delta, dry_run).await
}

/// On an update (of the main resource, not a subresource), as upstream's evaluators that handle
/// updates: services (a type change to NodePort or LoadBalancer, more ports) and claims (a
/// larger `requests.storage`) are charged what grew, `max(0, new - old)` per resource; a pod's
/// resources do not change (in-place resize is not served) and object counts do not move.
pub async fn validate_update(
    storage: &dyn kaji_store::Store,
    registry: &Registry,
    info: &ResourceInfo,
    namespace: Option<&str>,
    old: &Value,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    if !info.group.is_empty() || !matches!(info.plural, "services" | "persistentvolumeclaims") {
        return Ok(());
    }
    let before = quota::usage(info.group, info.plural, old, false);
    let mut delta = quota::usage(info.group, info.plural, obj, false);
    for (k, v) in delta.iter_mut() {
        *v = (*v - before.get(k).copied().unwrap_or(0)).max(0);
    }
    delta.retain(|_, v| *v != 0);
    charge(storage, registry, info, namespace, obj, move || delta, dry_run).await
}

/// Charges `delta` (what the request adds) to every quota of the namespace that tracks it and
/// selects `obj`.
async fn charge(
    storage: &dyn kaji_store::Store,
    registry: &Registry,
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: &Value,
    delta: impl FnOnce() -> ResourceList,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(ns) = namespace else { return Ok(()) };
    let Some(quotas) = registry.get("", "v1", "resourcequotas") else { return Ok(()) };
    // Computed once, at the first list that finds a quota.
    let (mut delta_of, mut delta) = (Some(delta), ResourceList::new());
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let forbidden = |msg: String| super::forbidden(info, &name, &msg);
    for _ in 0..ATTEMPTS {
        let page = storage.list(&quotas.prefix(Some(ns)), kaji_store::ListOptions::default()).await.map_err(crate::store_error)?;
        if page.items.is_empty() {
            return Ok(());
        }
        if let Some(f) = delta_of.take() {
            delta = f();
        }
        let mut charges = Vec::new();
        for kv in &page.items {
            let q = quotas.decode(kv);
            let qname = meta_str(&q, "name").unwrap_or_default().to_string();
            let hard_json = q.pointer("/status/hard").cloned();
            let hard = quota::parse_list(hard_json.as_ref());
            let restricted = quota::matching(info.group, info.plural, hard.keys());
            if restricted.is_empty() || !quota::matches_scopes(info.group, info.plural, obj, &q) {
                continue;
            }
            if info.group.is_empty()
                && info.plural == "pods"
                && let Some(msg) = quota::pod_constraints(obj, &restricted)
            {
                return Err(forbidden(format!("failed quota: {qname}: {msg}")));
            }
            let used_json = q.pointer("/status/used").cloned();
            let used = quota::parse_list(used_json.as_ref());
            let unknown: Vec<&str> = restricted.iter().filter(|r| !used.contains_key(*r)).map(String::as_str).collect();
            if !unknown.is_empty() {
                let mut unknown = unknown;
                unknown.sort_unstable();
                return Err(forbidden(format!("status unknown for quota: {qname}, resources: {}", unknown.join(","))));
            }
            let requested: ResourceList = delta.iter().filter(|(k, v)| hard.contains_key(*k) && **v != 0).map(|(k, v)| (k.clone(), *v)).collect();
            if requested.is_empty() {
                continue;
            }
            let mut new_used = used.clone();
            for (k, v) in &requested {
                *new_used.entry(k.clone()).or_insert(0) += v;
            }
            let exceeded: Vec<&String> = requested.keys().filter(|k| new_used[*k] > hard[*k]).collect();
            if !exceeded.is_empty() {
                let mask = |l: &ResourceList| -> ResourceList { l.iter().filter(|(k, _)| exceeded.contains(k)).map(|(k, v)| (k.clone(), *v)).collect() };
                let like = hard_json.as_ref();
                return Err(forbidden(format!(
                    "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                    quota::pretty(&mask(&requested), like),
                    quota::pretty(&mask(&used), like),
                    quota::pretty(&mask(&hard), like)
                )));
            }
            let mut q = q;
            let mut used_out = used_json.unwrap_or_else(|| json!({}));
            let changed: ResourceList = requested.keys().map(|k| (k.clone(), new_used[k])).collect();
            if let (Some(out), Value::Object(new)) = (used_out.as_object_mut(), quota::to_json(&changed, hard_json.as_ref())) {
                out.extend(new);
            }
            q["status"]["used"] = used_out;
            charges.push((kv.key.clone(), kv.mod_revision, q));
        }
        if dry_run || charges.is_empty() {
            return Ok(());
        }
        let mut conflict = false;
        for (key, rev, q) in charges {
            match storage.update(&key, quotas.encode(&q), rev).await {
                Ok(_) => {}
                Err(kaji_store::StoreError::Conflict { .. }) => {
                    tracing::debug!(%key, "quota changed while charging it; evaluating again");
                    conflict = true;
                    break;
                }
                Err(kaji_store::StoreError::NotFound { .. }) => {}
                Err(e) => return Err(crate::store_error(e)),
            }
        }
        if !conflict {
            return Ok(());
        }
    }
    Err(ApiError::internal("resource quota evaluation timed out"))
}
