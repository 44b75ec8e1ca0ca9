//! A shared informer: one watch feeds a reflector store and fans every change out to the
//! controllers that react to it, as client-go's shared informers do. (kube-runtime's own shared
//! streams do not pass deletions on, and a ReplicaSet must see a pod go to replace it.)

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many changes a slow subscriber may fall behind before it misses some (it then resyncs
/// through its periodic requeue).
const BUFFER: usize = 16 * 1024;

pub struct Informer<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    tx: broadcast::Sender<Arc<K>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts watching `api`; the store is filled, then every added, changed or deleted object
    /// is sent to the subscribers after the store holds the change.
    pub fn spawn(api: Api<K>) -> Self {
        let mut writer: Writer<K> = Writer::default();
        let store = writer.as_reader();
        let (tx, _) = broadcast::channel(BUFFER);
        let sender = tx.clone();
        let reader = store.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        writer.apply_watcher_event(&event);
                        match event {
                            watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => {
                                let _ = sender.send(Arc::new(obj));
                            }
                            watcher::Event::InitDone => {
                                for obj in reader.state() {
                                    let _ = sender.send(obj);
                                }
                            }
                            watcher::Event::Init | watcher::Event::InitApply(_) => {}
                        }
                    }
                    Err(e) => {
                        tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                    }
                }
            }
        });
        Informer { store, tx }
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(obj) => return Some((obj, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a controller fell behind its informer");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}
