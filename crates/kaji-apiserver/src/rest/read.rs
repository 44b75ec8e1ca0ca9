//! get and list: selectors and paging (limit/continue at one revision) from the query; the
//! reading is the generic store's (`registry::store`).

use super::output::{self, Shape};
use super::{Call, Reply};
use crate::registry::store::{Filter, ListOptions, Page};
use kaji_api::ApiError;
use serde_json::{Value, json};

pub async fn get(call: Call<'_>) -> Result<Reply, ApiError> {
    let obj = fetch(&call).await?;
    Ok(Reply::ok(call.output.object(call.strategy.as_ref(), obj)))
}

/// Reads the object the URL names, or 404.
pub async fn fetch(call: &Call<'_>) -> Result<serde_json::Value, ApiError> {
    call.store().get(call.namespace(), call.req.name.as_deref().unwrap_or_default()).await
}

/// The label and field selectors of a list or watch.
pub fn filter(call: &Call<'_>) -> Result<Filter, ApiError> {
    Filter::parse(call.strategy.as_ref(), call.param("labelSelector").unwrap_or_default(), call.param("fieldSelector").unwrap_or_default())
}

/// limit, continue and resourceVersionMatch=Exact of a list.
pub fn list_options(call: &Call<'_>) -> ListOptions {
    let exact = if call.param("resourceVersionMatch") == Some("Exact") { call.param("resourceVersion").and_then(|r| r.parse::<i64>().ok()) } else { None };
    ListOptions {
        limit: call.param("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0),
        continue_token: call.param("continue").map(str::to_string),
        exact_revision: exact,
    }
}

fn list_meta<T>(page: &Page<T>) -> Value {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}

/// A whole list (no selector, no page, no conversion) written inside the store's read
/// (`output::JsonListSink`), its first chunks sent while the rest is read.
async fn stream_whole_list(call: &Call<'_>, opts: &ListOptions) -> Result<Reply, ApiError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = output::JsonListSink::new(call.strategy.clone(), call.server.stamps.clone(), tx);
    let storage = call.server.store.clone();
    let prefix = call.store().prefix(call.namespace());
    let store_opts = kaji_store::ListOptions { start_after: None, limit: None, revision: opts.exact_revision };
    let read = tokio::spawn(async move { storage.list_into(&prefix, store_opts, Box::new(sink)).await });
    // The envelope comes once the list has its revision; a list refused before that (a
    // compacted or future revision) is an error answer.
    match rx.recv().await {
        Some(head) => Ok(Reply::Stream { head, rest: rx }),
        None => match read.await {
            Ok(Err(e)) => Err(crate::store_error(e)),
            Ok(Ok(_)) | Err(_) => Err(ApiError::internal("the list ended before it began")),
        },
    }
}

pub async fn list(call: Call<'_>) -> Result<Reply, ApiError> {
    let filter = filter(&call)?;
    let info = call.strategy.info();
    if call.output.shape == Shape::Object && !call.output.yaml {
        // Plain JSON: the stored objects go out as they are, stamped, without a parse.
        let opts = list_options(&call);
        if filter.is_everything() && opts.limit.is_none() && opts.continue_token.as_deref().is_none_or(str::is_empty) && call.strategy.conversion_webhook().is_none() {
            return stream_whole_list(&call, &opts).await;
        }
        let page = call.store().list_stored(call.namespace(), &filter, &opts).await?;
        let envelope = json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": list_meta(&page), "items": []});
        return Ok(Reply::Chunks { code: 200, body: Box::new(output::list_chunks(call.strategy.clone(), call.server.stamps.clone(), &envelope, page.items)) });
    }
    let page = if call.output.shape == Shape::PartialMetadata {
        call.store().list_metadata(call.namespace(), &filter, &list_options(&call)).await?
    } else {
        call.store().list(call.namespace(), &filter, &list_options(&call)).await?
    };
    let meta = list_meta(&page);
    Ok(Reply::ok(call.output.list(call.strategy.as_ref(), &info.list_kind(), &info.api_version(), meta, page.items)))
}
