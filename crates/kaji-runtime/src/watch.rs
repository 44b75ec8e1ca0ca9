//! Cached watches for spokes that recompute a whole picture when anything changes (the proxy's
//! rules, the DNS index, the ingress routes), on the process's shared informers.

use crate::informer::{Factory, Informer};
use futures::StreamExt;
use kube::runtime::watcher;
use std::sync::Arc;
use tokio::sync::Notify;

/// The shared informer of the `K`s that `cfg` selects, with a task that pokes `changed` after
/// every change the cache takes (the objects of a list count once each; `Notify` keeps one
/// wake-up, so a burst wakes the waiter once).
pub fn reflect<K>(factory: &Factory, cfg: watcher::Config, changed: Arc<Notify>) -> Arc<Informer<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let informer = factory.informer_with::<K>(cfg);
    let changes = informer.subscribe();
    tokio::spawn(async move {
        let mut changes = std::pin::pin!(changes);
        while changes.next().await.is_some() {
            changed.notify_one();
        }
    });
    informer
}
