//! A watch cache in front of a [`Store`], in the role of kube-apiserver's watch cache: one
//! watch of the whole keyspace on the backend feeds a window of recent events in memory, and
//! every watch from a revision inside that window is served from it, so N watchers cost one
//! backend watch (on etcd: one gRPC stream instead of N).
//!
//! - A watch from before the window (or while the backend watch is being re-established) goes
//!   to the backend, which replays its own history or answers [`StoreError::Compacted`].
//! - A watcher that falls more than `capacity` events behind the live broadcast, or whose feed
//!   restarts, switches over to a backend watch from the last revision it delivered: it sees
//!   every event once, in order, as with the backend alone.
//! - Compactions made through the cache shrink the window (a watch from before the compacted
//!   revision fails as the backend's would); compactions by others (another server) do not, so
//!   the cache may still serve a little history the backend has dropped, as upstream's does.
//! - Everything else (reads, writes, lists) goes straight to the backend.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::{KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchEvent, WatchStream};

/// [`Store`] that serves watches of recent revisions from memory.
pub struct WatchCache<S: Store> {
    inner: Arc<S>,
    window: Arc<Mutex<Window>>,
    feed: tokio::task::JoinHandle<()>,
}

struct Window {
    /// Every event with a revision above `start` (and up to the last one received), in order.
    events: VecDeque<Arc<WatchEvent>>,
    start: Revision,
    capacity: usize,
    /// `None` while the backend watch is (re)starting: watches then go to the backend.
    live: Option<broadcast::Sender<Arc<WatchEvent>>>,
}

fn lock(window: &Mutex<Window>) -> MutexGuard<'_, Window> {
    // A panic while holding the lock leaves a consistent window (each step is one push/pop).
    window
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: Store> WatchCache<S> {
    /// Wraps `inner`, keeping the last `capacity` events (at least 1); starts the feed on the
    /// current tokio runtime.
    pub fn new(inner: S, capacity: usize) -> Self {
        let inner = Arc::new(inner);
        let capacity = capacity.max(1);
        let window = Arc::new(Mutex::new(Window {
            events: VecDeque::new(),
            start: 0,
            capacity,
            live: None,
        }));
        let feed = tokio::spawn(feed(inner.clone(), window.clone()));
        WatchCache {
            inner,
            window,
            feed,
        }
    }

    /// Whether the feed is running (watches are served from memory).
    pub fn is_live(&self) -> bool {
        lock(&self.window).live.is_some()
    }
}

impl<S: Store> Drop for WatchCache<S> {
    fn drop(&mut self) {
        self.feed.abort();
    }
}

/// Keeps one backend watch of everything running and the window filled from it.
async fn feed<S: Store>(inner: Arc<S>, window: Arc<Mutex<Window>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = async {
            let revision = inner.current_revision().await?;
            Ok::<_, crate::StoreError>((revision, inner.watch("", revision).await?))
        };
        let (revision, mut events) = match started.await {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: starting the backend watch");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        {
            let mut w = lock(&window);
            w.events.clear();
            w.start = revision;
            // Watchers read from the window first; the channel only has to cover the events
            // that arrive while they catch up.
            w.live = Some(broadcast::channel(w.capacity).0);
        }
        let error = loop {
            match events.next().await {
                Some(Ok(event)) => {
                    let event = Arc::new(event);
                    let mut w = lock(&window);
                    // Not kept when compacted through the cache meanwhile, but still sent to
                    // the watchers that started before.
                    if event.revision() > w.start {
                        if w.events.len() >= w.capacity
                            && let Some(old) = w.events.pop_front()
                        {
                            w.start = old.revision();
                        }
                        w.events.push_back(event.clone());
                    }
                    if let Some(live) = &w.live {
                        let _ = live.send(event);
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the backend watch ended".to_string(),
            }
        };
        tracing::info!(error, "watch cache: restarting the backend watch");
        // Dropping the sender moves every cached watcher over to a backend watch.
        lock(&window).live = None;
    }
}

enum Source {
    Cache(broadcast::Receiver<Arc<WatchEvent>>),
    Backend(WatchStream),
}

/// One watcher served from the cache, until it has to fall back to the backend.
struct Watcher<S: Store> {
    inner: Arc<S>,
    prefix: String,
    pending: VecDeque<Arc<WatchEvent>>,
    source: Source,
    /// The revision of the last event handed out (or the watch's starting revision).
    last: Revision,
    done: bool,
}

impl<S: Store> Watcher<S> {
    fn wants(&self, event: &WatchEvent) -> bool {
        event.revision() > self.last && event.kv.key.starts_with(&self.prefix)
    }

    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.revision();
                return Some((Ok(WatchEvent::clone(&event)), self));
            }
            if self.done {
                return None;
            }
            match &mut self.source {
                Source::Cache(live) => match live.recv().await {
                    Ok(event) => {
                        if self.wants(&event) {
                            self.pending.push_back(event);
                        }
                    }
                    // Too far behind, or the feed restarts: go on from the backend.
                    Err(_) => match self.inner.watch(&self.prefix, self.last).await {
                        Ok(stream) => self.source = Source::Backend(stream),
                        Err(e) => {
                            self.done = true;
                            return Some((Err(e), self));
                        }
                    },
                },
                Source::Backend(stream) => {
                    let item = stream.next().await?;
                    match &item {
                        Ok(event) => self.last = event.revision(),
                        Err(_) => self.done = true,
                    }
                    return Some((item, self));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for WatchCache<S> {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.inner.create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        self.inner.update(key, value, expected_mod_revision).await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.inner.list(prefix, opts).await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        // "From now" is the backend's now, not the cache's (which may lag a little).
        let from = if from_revision > 0 {
            from_revision
        } else {
            self.inner.current_revision().await?
        };
        let cached = {
            let w = lock(&self.window);
            match &w.live {
                Some(live) if from >= w.start => {
                    let replay: VecDeque<_> = w
                        .events
                        .iter()
                        .filter(|e| e.revision() > from && e.kv.key.starts_with(prefix))
                        .cloned()
                        .collect();
                    Some((replay, live.subscribe()))
                }
                _ => None,
            }
        };
        let Some((replay, live)) = cached else {
            return self.inner.watch(prefix, from_revision).await;
        };
        let watcher = Watcher {
            inner: self.inner.clone(),
            prefix: prefix.to_string(),
            pending: replay,
            source: Source::Cache(live),
            last: from,
            done: false,
        };
        Ok(futures::stream::unfold(watcher, Watcher::next).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await?;
        let mut w = lock(&self.window);
        while w.events.front().is_some_and(|e| e.revision() <= revision) {
            w.events.pop_front();
        }
        w.start = w.start.max(revision);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}
