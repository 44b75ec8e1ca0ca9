//! get and list, with label and field selectors and limit/continue paging at one revision.

use super::{Call, Reply};
use crate::objects;
use base64::Engine;
use kaji_api::ApiError;
use kaji_api::selector::{FieldSelector, LabelSelector};
use kaji_store::ListOptions;
use serde_json::{Value, json};

pub async fn get(call: Call<'_>) -> Result<Reply, ApiError> {
    let obj = fetch(&call).await?;
    Ok(Reply::ok(call.output.object(call.strategy.as_ref(), obj)))
}

/// Reads the object the URL names, or 404.
pub async fn fetch(call: &Call<'_>) -> Result<serde_json::Value, ApiError> {
    let info = call.strategy.info();
    let name = call.req.name.as_deref().unwrap_or_default();
    let key = call.strategy.key(call.namespace(), name);
    match call.server.store.get(&key).await.map_err(crate::store_error)? {
        Some(kv) => Ok(call.strategy.decode(&kv)),
        None => Err(ApiError::not_found(info.group, info.plural, name)),
    }
}

/// Label and field selectors of a list or watch, checked against what the kind supports.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn from_call(call: &Call<'_>) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(call.param("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(call.param("fieldSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
        for r in &fields.requirements {
            let generic = matches!(r.field.as_str(), "metadata.name" | "metadata.namespace");
            if !generic && call.strategy.field_value(&json!({}), &r.field).is_none() {
                return Err(ApiError::bad_request(format!("field label not supported: {}", r.field)));
            }
        }
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, strategy: &dyn crate::registry::Strategy, obj: &Value) -> bool {
        self.labels.matches_object(obj)
            && self.fields.matches(|f| match f {
                "metadata.name" => Some(objects::meta_str(obj, "name").unwrap_or_default().to_string()),
                "metadata.namespace" => Some(objects::meta_str(obj, "namespace").unwrap_or_default().to_string()),
                other => strategy.field_value(obj, other),
            })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.requirements.is_empty()
    }
}

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn encode_continue(rv: i64, start_after: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start_after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(s: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    Ok((rv, start))
}

/// One page of matching objects at one revision.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

pub async fn list_page(call: &Call<'_>, filter: &Filter) -> Result<Page, ApiError> {
    let prefix = call.strategy.prefix(call.namespace());
    let limit: Option<usize> = call.param("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let (mut revision, mut start_after) = match call.param("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (rv, start) = decode_continue(c)?;
            (Some(rv), Some(start))
        }
        None => (None, None),
    };
    if revision.is_none()
        && call.param("resourceVersionMatch") == Some("Exact")
        && let Some(rv) = call.param("resourceVersion").and_then(|r| r.parse::<i64>().ok())
    {
        revision = Some(rv);
    }
    let mut items = Vec::new();
    loop {
        let want = limit.map(|l| l - items.len());
        let opts = ListOptions { start_after: start_after.clone(), limit: want, revision };
        let res = call.server.store.list(&prefix, opts).await.map_err(|e| match e {
            kaji_store::StoreError::Compacted { .. } if call.param("continue").is_some() => ApiError::gone(CONTINUE_TOO_OLD),
            other => crate::store_error(other),
        })?;
        revision = Some(res.revision);
        let last_key = res.items.last().map(|kv| kv.key.clone());
        for kv in &res.items {
            let obj = call.strategy.decode(kv);
            if filter.matches(call.strategy.as_ref(), &obj) {
                items.push(obj);
            }
        }
        let full = limit.is_some_and(|l| items.len() >= l);
        if !res.more {
            return Ok(Page { items, revision: res.revision, continue_token: None, remaining: None });
        }
        if full || limit.is_none() {
            let token = last_key.map(|k| encode_continue(res.revision, &k));
            let remaining = filter.is_everything().then_some(res.remaining);
            return Ok(Page { items, revision: res.revision, continue_token: token, remaining });
        }
        start_after = last_key;
    }
}

pub async fn list(call: Call<'_>) -> Result<Reply, ApiError> {
    let filter = Filter::from_call(&call)?;
    let page = list_page(&call, &filter).await?;
    let info = call.strategy.info();
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    Ok(Reply::ok(call.output.list(call.strategy.as_ref(), &info.list_kind(), &info.api_version(), meta, page.items)))
}
