//! Watch streams: replay `history` from disk, then follow the live broadcast.
//!
//! Revisions are contiguous (every revision is exactly one event), so a watcher knows the last
//! revision it has seen and can always tell whether it missed something. Whenever it falls
//! behind the broadcast buffer (a slow consumer), it goes back to reading `history` from disk,
//! in bounded chunks, like etcd's unsynced watchers; memory stays bounded either way. Only when
//! the history it needs has been compacted does it end, with [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use ::redb::{Database, ReadableDatabase};
use tokio::sync::broadcast;

use super::{HISTORY, META, META_COMPACTED, Shared, backend, codec, require_meta};
use crate::{Result, Revision, StoreError, WatchEvent, WatchProgress, WatchStream};

/// History records examined per trip to disk, so that one read is short and bounded.
const CHUNK: usize = 1024;

struct Watcher {
    shared: Weak<Shared>,
    events: broadcast::WeakSender<Arc<WatchEvent>>,
    /// `None` after a lag, until the next trip to disk subscribes again.
    live: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    prefix: String,
    /// Every event up to this revision has been seen (delivered or filtered out).
    seen: Revision,
    /// Whether the next events come from disk rather than from `live`.
    catching_up: bool,
    pending: VecDeque<WatchEvent>,
    done: bool,
    /// `seen`, published whenever nothing is pending.
    progress: WatchProgress,
}

/// A stream of the events under `prefix` after revision `from`. `live` must have been
/// subscribed before `from` was determined. With `replay`, history after `from` is read from
/// disk first.
pub(super) fn stream(
    shared: Weak<Shared>,
    events: broadcast::WeakSender<Arc<WatchEvent>>,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    prefix: String,
    from: Revision,
    replay: bool,
    progress: WatchProgress,
) -> WatchStream {
    let watcher = Watcher {
        shared,
        events,
        live: Some(live),
        prefix,
        seen: from,
        catching_up: replay,
        pending: VecDeque::new(),
        done: false,
        progress,
    };
    Box::pin(futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            // Every event under the prefix up to `seen` has been handed out.
            self.progress.advance(self.seen);
            if self.catching_up {
                if let Err(e) = self.read_disk().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            // The store is closed once the live sender is gone; end the stream quietly.
            let live = self.live.as_mut()?;
            match live.recv().await {
                Ok(event) => {
                    let revision = event.revision();
                    if revision <= self.seen {
                        continue;
                    }
                    if revision > self.seen + 1 {
                        // Missed something: fetch it from disk; the live receiver stays.
                        self.catching_up = true;
                        continue;
                    }
                    self.seen = revision;
                    if event.kv.key.starts_with(&self.prefix) {
                        self.pending.push_back((*event).clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        seen = self.seen,
                        "watcher lagged, reading from disk"
                    );
                    self.live = None;
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next chunk of history after `seen`.
    async fn read_disk(&mut self) -> Result<()> {
        if self.live.is_none() {
            // Subscribe before reading, so nothing falls between the disk and the broadcast.
            let Some(sender) = self.events.upgrade() else {
                self.done = true;
                return Ok(());
            };
            self.live = Some(sender.subscribe());
        }
        let Some(shared) = self.shared.upgrade() else {
            self.done = true;
            return Ok(());
        };
        let (prefix, after) = (self.prefix.clone(), self.seen);
        let chunk = tokio::task::spawn_blocking(move || read_history(&shared.db, &prefix, after))
            .await
            .map_err(backend("watch read task"))??;
        self.seen = chunk.seen;
        self.catching_up = !chunk.caught_up;
        self.pending.extend(chunk.events);
        Ok(())
    }
}

struct Chunk {
    events: Vec<WatchEvent>,
    seen: Revision,
    caught_up: bool,
}

fn read_history(db: &Database, prefix: &str, after: Revision) -> Result<Chunk> {
    let txn = db.begin_read().map_err(backend("begin read"))?;
    let meta = txn.open_table(META).map_err(backend("open meta table"))?;
    let compacted = require_meta(&meta, META_COMPACTED)?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let history = txn
        .open_table(HISTORY)
        .map_err(backend("open history table"))?;
    let mut events = Vec::new();
    let mut seen = after;
    let records = history
        .range(after + 1..)
        .map_err(backend("read history"))?;
    for (scanned, entry) in records.enumerate() {
        if scanned == CHUNK {
            return Ok(Chunk {
                events,
                seen,
                caught_up: false,
            });
        }
        let (revision, raw) = entry.map_err(backend("read history"))?;
        let (revision, raw) = (revision.value(), raw.value());
        if revision != seen + 1 {
            return Err(StoreError::Backend(format!(
                "history has a gap: revision {revision} follows {seen}"
            )));
        }
        let (key, _) = codec::peek_event(revision, raw)?;
        if key.starts_with(prefix) {
            events.push(codec::decode_event(revision, raw)?);
        }
        seen = revision;
    }
    Ok(Chunk {
        events,
        seen,
        caught_up: true,
    })
}
