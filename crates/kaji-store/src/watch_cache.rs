//! A watch cache in front of a [`Store`], in the role of kube-apiserver's watch cache: one
//! watch of the whole keyspace on the backend feeds a window of recent events and the current
//! value of every key in memory; every watch from a revision inside that window is served from
//! it, so N watchers cost one backend watch (on etcd: one gRPC stream instead of N), and lists
//! are served from the objects (upstream 1.31+'s ConsistentListFromCache).
//!
//! - The objects are loaded by a list at the revision the backend watch then starts from, and
//!   kept current by its events.
//! - A list of the current state asks the backend for its revision (one cheap request: on etcd
//!   a count-only range of one key), waits until the cache has applied the events up to it
//!   (at most [`CATCH_UP`]), and answers from memory at the cache's revision. A list at the
//!   cache's revision exactly (the next page of a paged list, while nothing changed) is served
//!   from memory too. Any other list (an older revision, a cache that did not catch up in
//!   time, a restarting feed) goes to the backend, and so do lists of the current state when
//!   [`Store::sees_every_revision`] is false (an etcd shared with other clusters under other
//!   key prefixes, whose writes take revisions this watch never sees). etcd's progress
//!   requests could tell the cache it is current, as upstream's `RequestWatchProgress` does,
//!   but Debian's etcd 3.4.23 answers them ahead of events still in flight (tried: the store
//!   suite then lists stale keys; etcd-io/etcd#15220, fixed by #15237 in later 3.4 and 3.5).
//!
//! - A watch from before the window (or while the backend watch is being re-established) goes
//!   to the backend, which replays its own history or answers [`StoreError::Compacted`].
//! - A watcher that falls more than `capacity` events behind the live broadcast, or whose feed
//!   restarts, switches over to a backend watch from the last revision it delivered: it sees
//!   every event once, in order, as with the backend alone.
//! - Compactions made through the cache shrink the window (a watch from before the compacted
//!   revision fails as the backend's would); compactions by others (another server) do not, so
//!   the cache may still serve a little history the backend has dropped, as upstream's does.
//! - Everything else (reads, writes) goes straight to the backend.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::{
    EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchEvent,
    WatchProgress, WatchStream,
};

/// How long a list of the current state waits for the cache to catch up with the backend's
/// revision before it goes to the backend.
pub const CATCH_UP: Duration = Duration::from_millis(250);

/// Keys per page of the list that loads the objects.
const LOAD_PAGE: usize = 1_000;

/// [`Store`] that serves watches of recent revisions and lists from memory.
pub struct WatchCache<S: Store> {
    inner: Arc<S>,
    window: Arc<Mutex<Window>>,
    /// The revision the objects reflect (0 while loading): lists wait on it.
    progress: watch::Receiver<Revision>,
    feed: tokio::task::JoinHandle<()>,
}

struct Window {
    /// Every event with a revision above `start` (and up to the last one received), in order.
    events: VecDeque<Arc<WatchEvent>>,
    start: Revision,
    capacity: usize,
    /// `None` while the backend watch is (re)starting: watches and lists then go to the backend.
    live: Option<broadcast::Sender<Arc<WatchEvent>>>,
    /// Every key's value at `revision` (while `live`).
    objects: BTreeMap<String, KeyValue>,
    /// The revision of the last event applied to `objects` (or of the list that loaded them).
    revision: Revision,
    /// The highest revision compacted through the cache: a list at an older one fails as the
    /// backend's would, even when the cache lags behind and is still there.
    compacted: Revision,
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
            objects: BTreeMap::new(),
            revision: 0,
            compacted: 0,
        }));
        let (progress_tx, progress) = watch::channel(0);
        let feed = tokio::spawn(feed(inner.clone(), window.clone(), progress_tx));
        WatchCache {
            inner,
            window,
            progress,
            feed,
        }
    }

    /// Waits until the feed has loaded the objects and follows the backend.
    #[cfg(test)]
    pub(crate) async fn until_live(&self) {
        let mut progress = self.progress.clone();
        let _ = progress.wait_for(|r| *r > 0).await;
    }

    /// Waits (at most [`CATCH_UP`]) until the objects reflect `revision` or a later one.
    async fn catch_up(&self, revision: Revision) -> bool {
        let mut progress = self.progress.clone();
        matches!(
            tokio::time::timeout(CATCH_UP, progress.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        )
    }

    /// A page of the objects under `prefix`, if the cache is live and at `at` (an exact
    /// revision) or at least at `min`.
    fn list_cached(
        &self,
        prefix: &str,
        opts: &ListOptions,
        at: Option<Revision>,
        min: Revision,
    ) -> Option<ListResult> {
        let w = lock(&self.window);
        w.live.as_ref()?;
        if at.is_some_and(|at| at != w.revision || at < w.compacted) || w.revision < min {
            return None;
        }
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let mut keys = w
            .objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let items: Vec<KeyValue> = keys
            .by_ref()
            .take(limit)
            .map(|(_, kv)| kv.clone())
            .collect();
        let remaining = keys.count() as u64;
        Some(ListResult {
            items,
            revision: w.revision,
            more: remaining > 0,
            remaining,
        })
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

/// Every key at `revision`, a page at a time.
async fn load<S: Store>(inner: &S, revision: Revision) -> Result<BTreeMap<String, KeyValue>> {
    let mut objects = BTreeMap::new();
    let mut start_after = None;
    loop {
        let opts = ListOptions {
            start_after,
            limit: Some(LOAD_PAGE),
            revision: Some(revision),
        };
        let page = inner.list("", opts).await?;
        start_after = page.items.last().map(|kv| kv.key.clone());
        objects.extend(page.items.into_iter().map(|kv| (kv.key.clone(), kv)));
        if !page.more {
            return Ok(objects);
        }
    }
}

/// Keeps one backend watch of everything running and the window and objects filled from it.
async fn feed<S: Store>(
    inner: Arc<S>,
    window: Arc<Mutex<Window>>,
    progress: watch::Sender<Revision>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = async {
            let revision = inner.current_revision().await?;
            let objects = load(&*inner, revision).await?;
            Ok::<_, crate::StoreError>((revision, objects, inner.watch("", revision).await?))
        };
        let (revision, objects, mut events) = match started.await {
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
            // A compaction through the cache while this feed was starting still counts.
            w.start = revision.max(w.compacted);
            w.objects = objects;
            w.revision = revision;
            // Watchers read from the window first; the channel only has to cover the events
            // that arrive while they catch up.
            w.live = Some(broadcast::channel(w.capacity).0);
        }
        progress.send_replace(revision);
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
                    match event.event_type {
                        EventType::Put => {
                            w.objects.insert(event.kv.key.clone(), event.kv.clone());
                        }
                        EventType::Delete => {
                            w.objects.remove(&event.kv.key);
                        }
                    }
                    let revision = event.revision();
                    w.revision = revision;
                    if let Some(live) = &w.live {
                        let _ = live.send(event);
                    }
                    drop(w);
                    progress.send_replace(revision);
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the backend watch ended".to_string(),
            }
        };
        tracing::info!(error, "watch cache: restarting the backend watch");
        // Dropping the sender moves every cached watcher over to a backend watch.
        {
            let mut w = lock(&window);
            w.live = None;
            w.objects = BTreeMap::new();
            w.revision = 0;
        }
        progress.send_replace(0);
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
    /// From the cache: every event up to this revision has been received (wanted or not).
    seen: Revision,
    done: bool,
    /// `seen` (or `last` from the backend), published whenever nothing is pending.
    progress: WatchProgress,
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
            self.progress.advance(self.last.max(self.seen));
            match &mut self.source {
                Source::Cache(live) => match live.recv().await {
                    Ok(event) => {
                        self.seen = self.seen.max(event.revision());
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
        let cached = match opts.revision.filter(|r| *r > 0) {
            Some(at) => self.list_cached(prefix, &opts, Some(at), 0),
            // Under a key prefix the cache may never see the current revision: etcd answers.
            None if !self.inner.sees_every_revision() => None,
            None => {
                let current = self.inner.current_revision().await?;
                if self.catch_up(current).await {
                    self.list_cached(prefix, &opts, None, current)
                } else {
                    None
                }
            }
        };
        match cached {
            Some(list) => Ok(list),
            None => self.inner.list(prefix, opts).await,
        }
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        Ok(self.watch_with_progress(prefix, from_revision).await?.0)
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<(WatchStream, WatchProgress)> {
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
                    // Every event up to the window's revision is in it (the wanted ones are
                    // in `replay`); later ones come on `live`.
                    Some((replay, live.subscribe(), w.revision))
                }
                _ => None,
            }
        };
        let Some((replay, live, window_revision)) = cached else {
            return self.inner.watch_with_progress(prefix, from_revision).await;
        };
        let progress = WatchProgress::default();
        let watcher = Watcher {
            inner: self.inner.clone(),
            prefix: prefix.to_string(),
            pending: replay,
            source: Source::Cache(live),
            last: from,
            seen: window_revision,
            done: false,
            progress: progress.clone(),
        };
        Ok((
            futures::stream::unfold(watcher, Watcher::next).boxed(),
            progress,
        ))
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
        w.compacted = w.compacted.max(revision);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    fn sees_every_revision(&self) -> bool {
        self.inner.sees_every_revision()
    }
}
