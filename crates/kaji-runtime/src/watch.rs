//! Cached watches for spokes that recompute a whole picture when anything changes.

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;
use tokio::sync::Notify;

/// Starts a reflector for `api` (with `cfg`'s selectors) and returns its cache. Every change
/// (applied or deleted object, and the end of each full list) pokes `changed`, after the cache
/// has it; the objects of a list are reported once, at its end. Watch errors are retried with
/// back-off and logged at `warn`.
pub fn reflect<K>(api: Api<K>, cfg: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, cfg).default_backoff().reflect(writer);
    let kind = K::kind(&()).to_string();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(%kind, error = %e, "watch failed; retrying"),
            }
        }
    });
    store
}
