//! watch: a chunked stream of `{"type": ..., "object": ...}` lines. Without a resourceVersion the
//! current objects come first as ADDED; bookmarks when asked; a compacted resourceVersion ends
//! the stream with a 410 Expired ERROR event, as kube-apiserver does.

use super::read::filter;
use super::{Call, Output, Reply};
use crate::registry::Strategy;
use crate::server::LongRunning;
use bytes::Bytes;
use futures::StreamExt;
use kaji_api::ApiError;
use kaji_store::{EventType, ListOptions, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The streamed response body: one JSON document per line.
pub type WatchBody = mpsc::Receiver<Bytes>;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(strategy: &dyn Strategy, rv: i64, initial_end: bool) -> Bytes {
    let info = strategy.info();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}))
}

/// This watch's labels in `apiserver_longrunning_requests`. As upstream's RequestInfoFactory, a
/// `metadata.name=` field selector names one object, and CleanScope makes that `resource`.
fn long_running_labels(call: &Call<'_>) -> LongRunning {
    let named = call.req.name.is_some()
        || kaji_api::selector::FieldSelector::parse(call.param("fieldSelector").unwrap_or_default())
            .is_ok_and(|f| f.requirements.iter().any(|r| r.field == "metadata.name" && !r.negated));
    let scope = if named {
        "resource"
    } else if call.namespace().is_some() {
        "namespace"
    } else {
        "cluster"
    };
    LongRunning {
        verb: "WATCH",
        group: call.req.group.clone(),
        version: call.req.version.clone(),
        resource: call.req.plural.clone(),
        subresource: call.req.subresource.clone().unwrap_or_default(),
        scope,
    }
}

pub async fn watch(call: Call<'_>) -> Result<Reply, ApiError> {
    let filter = filter(&call)?;
    let prefix = call.strategy.prefix(call.namespace());
    let store = call.server.store.clone();
    let strategy: Arc<dyn Strategy> = call.strategy.clone();
    let output: Output = *call.output;
    let bookmarks = call.param("allowWatchBookmarks") == Some("true");
    let send_initial = call.param("sendInitialEvents").map(|s| s == "true");
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let rv_param = call.param("resourceVersion").unwrap_or_default().to_string();

    // Initial state: for no resourceVersion or "0" (or sendInitialEvents), as upstream.
    let mut initial = Vec::new();
    let mut from: i64 = match rv_param.parse::<i64>() {
        Ok(n) if n > 0 && send_initial != Some(true) => n,
        _ => {
            let mut start_after = None;
            loop {
                let res = store
                    .list(&prefix, ListOptions { start_after: start_after.clone(), limit: Some(500), revision: None })
                    .await
                    .map_err(crate::store_error)?;
                for kv in &res.items {
                    let obj = strategy.decode(kv);
                    if filter.matches(strategy.as_ref(), &obj) {
                        initial.push(obj);
                    }
                }
                start_after = res.items.last().map(|kv| kv.key.clone());
                if !res.more {
                    break res.revision;
                }
            }
        }
    };
    let upstream = store.watch(&prefix, from).await;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut upstream = match upstream {
        Ok(s) => s,
        Err(StoreError::Compacted { requested, compacted }) => {
            let e = ApiError::gone(format!("too old resource version: {requested} ({compacted})"));
            let _ = tx.try_send(line("ERROR", e.to_status()));
            return Ok(Reply::Watch(rx));
        }
        Err(e) => return Err(crate::store_error(e)),
    };
    let gauge = call.server.metrics.long_running(long_running_labels(&call));
    tokio::spawn(async move {
        // Counted in apiserver_longrunning_requests while this task streams, whatever ends it.
        let _gauge = gauge;
        for obj in initial {
            if tx.send(line("ADDED", output.object(strategy.as_ref(), obj))).await.is_err() {
                return;
            }
        }
        if bookmarks && send_initial == Some(true) && tx.send(bookmark(strategy.as_ref(), from, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
        tick.tick().await;
        loop {
            let ev = tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                _ = tick.tick() => {
                    if bookmarks && tx.send(bookmark(strategy.as_ref(), from, false)).await.is_err() {
                        return;
                    }
                    continue;
                }
                ev = upstream.next() => ev,
            };
            let ev = match ev {
                None => return,
                Some(Ok(ev)) => ev,
                Some(Err(StoreError::Compacted { requested, compacted })) => {
                    let e = ApiError::gone(format!("too old resource version: {requested} ({compacted})"));
                    let _ = tx.send(line("ERROR", e.to_status())).await;
                    return;
                }
                Some(Err(e)) => {
                    let _ = tx.send(line("ERROR", crate::store_error(e).to_status())).await;
                    return;
                }
            };
            from = ev.kv.mod_revision;
            let obj = strategy.decode(&ev.kv);
            let now_matches = filter.matches(strategy.as_ref(), &obj);
            let was = ev.prev.as_ref().map(|p| filter.matches(strategy.as_ref(), &strategy.decode(p)));
            let kind = match ev.event_type {
                EventType::Delete if now_matches => "DELETED",
                EventType::Delete => continue,
                EventType::Put => match (was, now_matches) {
                    (None | Some(false), true) => "ADDED",
                    (Some(true), true) => "MODIFIED",
                    (Some(true), false) => "DELETED",
                    (_, false) => continue,
                },
            };
            if tx.send(line(kind, output.object(strategy.as_ref(), obj))).await.is_err() {
                return;
            }
        }
    });
    Ok(Reply::Watch(rx))
}
