//! watch: a chunked stream of `{"type": ..., "object": ...}` lines. Without a resourceVersion the
//! current objects come first as ADDED; bookmarks when asked; a compacted resourceVersion ends
//! the stream with a 410 Expired ERROR event, as kube-apiserver does.

use super::read::filter;
use super::output::Shape;
use super::{Call, Output, Reply};
use crate::registry::Strategy;
use crate::server::LongRunning;
use bytes::Bytes;
use futures::StreamExt;
use kaji_api::ApiError;
use kaji_store::{EventType, KeyValue, ListOptions, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The streamed response body: one JSON document per line.
pub type WatchBody = mpsc::Receiver<Bytes>;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// `{"type": kind, "object": object}` and a newline.
fn line(kind: &str, object: Value) -> Bytes {
    line_with(kind, |out| {
        let _ = serde_json::to_writer(out, &object);
    })
}

/// An event line whose object `write` appends (serialising a `json!` of it would copy it first).
fn line_with(kind: &str, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut v = Vec::with_capacity(1024);
    v.extend_from_slice(b"{\"type\":");
    let _ = serde_json::to_writer(&mut v, kind);
    v.extend_from_slice(b",\"object\":");
    write(&mut v);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

/// An event line of a stored object in `output`'s shape; a plain object is spliced from the
/// stored bytes (`Strategy::write_json`; even when a selector decoded it, serialising that again
/// would cost more), others are decoded.
fn stored_line(kind: &str, output: &Output, strategy: &dyn Strategy, kv: &KeyValue, decoded: Option<Value>) -> Bytes {
    match output.shape {
        Shape::Object => line_with(kind, |out| strategy.write_json(kv, out)),
        _ => line(kind, output.object(strategy, decoded.unwrap_or_else(|| strategy.decode(kv)))),
    }
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

    // Without selectors nothing needs decoding: every event is the watcher's.
    let everything = filter.is_everything();
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
                start_after = res.items.last().map(|kv| kv.key.clone());
                for kv in res.items {
                    if filter.matches_stored(strategy.as_ref(), &kv) {
                        initial.push(kv);
                    }
                }
                if !res.more {
                    break res.revision;
                }
            }
        }
    };
    let initial = strategy.convert_stored(initial).await?;
    let upstream = store.watch_with_progress(&prefix, from).await;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (mut upstream, progress) = match upstream {
        Ok(s) => s,
        Err(StoreError::Compacted { requested, compacted }) => {
            let e = ApiError::gone(format!("too old resource version: {requested} ({compacted})"));
            let _ = tx.try_send(line("ERROR", e.to_status()));
            return Ok(Reply::Watch(rx));
        }
        Err(e) => return Err(crate::store_error(e)),
    };
    let gauge = call.server.metrics.long_running(long_running_labels(&call));
    // A custom kind's watch ends when its CRD goes or changes what its storage is (upstream
    // destroys the CRD's storage then, closing its watches; clients watch again).
    let mut kind_changes = strategy.is_custom().then(|| (call.server.clone(), call.server.registry.custom_changes(), call.req.group.clone(), call.req.version.clone(), call.req.plural.clone()));
    tokio::spawn(async move {
        // Counted in apiserver_longrunning_requests while this task streams, whatever ends it.
        let _gauge = gauge;
        for kv in initial {
            if tx.send(stored_line("ADDED", &output, strategy.as_ref(), &kv, None)).await.is_err() {
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
                    // As upstream's watch cache, a bookmark carries how far the store has come
                    // for this watch, not the last event it sent: a watcher of a kind that does
                    // not change resumes from a revision still in the kept history. Every event
                    // up to `progress` has been handed out, so it has been sent above.
                    from = from.max(progress.get());
                    if bookmarks && tx.send(bookmark(strategy.as_ref(), from, false)).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = kind_gone(&mut kind_changes, strategy.storage_identity()) => return,
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
            // A custom kind with a conversion webhook: the event's objects in this version.
            let ev = match convert_event(strategy.as_ref(), ev).await {
                Ok(ev) => ev,
                Err(e) => {
                    let _ = tx.send(line("ERROR", e.to_status())).await;
                    return;
                }
            };
            let (obj, now_matches, was) = if everything {
                (None, true, ev.prev.as_ref().map(|_| true))
            } else if output.shape == Shape::Object {
                // The line is spliced from the stored bytes: the selectors' members are enough.
                let now_matches = filter.matches_stored(strategy.as_ref(), &ev.kv);
                let was = ev.prev.as_ref().map(|p| filter.matches_stored(strategy.as_ref(), p));
                (None, now_matches, was)
            } else {
                let obj = strategy.decode(&ev.kv);
                let now_matches = filter.matches(strategy.as_ref(), &obj);
                let was = ev.prev.as_ref().map(|p| filter.matches(strategy.as_ref(), &strategy.decode(p)));
                (Some(obj), now_matches, was)
            };
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
            if tx.send(stored_line(kind, &output, strategy.as_ref(), &ev.kv, obj)).await.is_err() {
                return;
            }
        }
    });
    Ok(Reply::Watch(rx))
}

/// `Strategy::convert_stored` of a watch event's object and previous object.
async fn convert_event(strategy: &dyn Strategy, mut ev: kaji_store::WatchEvent) -> Result<kaji_store::WatchEvent, ApiError> {
    if strategy.conversion_webhook().is_none() {
        return Ok(ev);
    }
    let mut kvs = vec![ev.kv];
    kvs.extend(ev.prev.take());
    let mut kvs = strategy.convert_stored(kvs).await?.into_iter();
    ev.kv = kvs.next().ok_or_else(|| ApiError::internal("conversion lost the watch event's object"))?;
    ev.prev = kvs.next();
    Ok(ev)
}

/// The server, its custom-kind change signal, and the watched group, version and plural.
type KindChanges = (Arc<crate::ApiServer>, tokio::sync::watch::Receiver<u64>, String, String, String);

/// Resolves when the custom kind of a watch is no longer served as it was (see `watch`);
/// never for a built-in kind.
async fn kind_gone(changes: &mut Option<KindChanges>, identity: u64) {
    let Some((server, rx, group, version, plural)) = changes else {
        return std::future::pending().await;
    };
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        match server.registry.get(group, version, plural) {
            Some(s) if s.storage_identity() == identity => {}
            _ => return,
        }
    }
}
