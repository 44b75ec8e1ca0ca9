//! The embedded backend: one redb file with three tables.
//!
//! - `kv`: the current value of every key (`create_revision`, `mod_revision`, bytes).
//! - `history`: revision -> the event written at that revision, with the previous value. Watches
//!   replay it; a list at an older revision reads the current state and undoes later changes
//!   from it (the first event after revision `r` on a key carries that key's value at `r`).
//! - `meta`: the current and the compacted revision.
//!
//! Writes go through a single writer thread ([`writer`]) that group-commits every queued request
//! in one fsynced transaction before answering any of them. Reads run in their own read
//! transactions (snapshots), so a list sees one consistent revision; a get of one key and a
//! short list at the current revision run in place, longer lists on the blocking pool. Watches
//! ([`watch`]) replay `history` from disk, then follow an in-memory broadcast of committed
//! events, and go back to disk whenever they fall behind the broadcast buffer.

mod codec;
mod watch;
mod writer;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    ItemRef, KeyValue, ListOptions, ListResult, ListSink, ListSummary, Result, Revision, Store, StoreError, WatchProgress,
    WatchStream,
};
use writer::{Op, Request};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_CURRENT: &str = "current_revision";
const META_COMPACTED: &str = "compacted_revision";

/// The revision of a fresh store (as in etcd), so that no list ever reports revision 0.
const INITIAL_REVISION: Revision = 1;

/// Tuning of [`RedbStore`]. Automatic compaction drops an event only once it is outside every
/// configured window; with both windows `None` it never runs (explicit `compact` still works).
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// Keep at least this many of the latest revisions of history.
    pub history_revisions: Option<u64>,
    /// Keep at least the history written during this long.
    pub history_duration: Option<Duration>,
    /// Events buffered in memory for live watchers; a watcher further behind catches up from
    /// disk (as etcd's unsynced watchers do).
    pub watch_buffer: usize,
    /// Most write requests committed in one transaction.
    pub max_batch: usize,
    /// Bytes of pages redb keeps in its own (heap) cache. redb's default is 1 GiB, which a busy
    /// store fills with history pages and never gives back; beyond this, pages are read through
    /// the OS page cache, which the kernel reclaims (as etcd's bbolt mmap).
    pub cache_bytes: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            history_revisions: Some(10_000),
            history_duration: Some(Duration::from_secs(5 * 60)),
            watch_buffer: 4096,
            max_batch: 1024,
            // 48 rather than 64 MiB: the API server's RSS at the end of the controllers bench
            // (1,000 Deployments x 10 replicas) went from 305-309 to 278-280 MiB, at the same
            // speed there; a LIST of 10,000 pods took about 7 % more CPU (p99 58 against 54 ms).
            cache_bytes: 48 << 20,
        }
    }
}

/// What the writer thread, the readers and the watchers share.
struct Shared {
    db: Database,
    /// The latest committed (and acknowledged) revision.
    revision: AtomicI64,
    compacted: AtomicI64,
}

/// A [`Store`] in a single redb file. Not `Clone`: share it behind an `Arc`.
pub struct RedbStore {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    events: broadcast::WeakSender<Arc<crate::WatchEvent>>,
    writer: std::thread::JoinHandle<()>,
}

impl RedbStore {
    /// Opens the store at `path`, creating it if needed.
    pub fn open(path: &Path, opts: RedbOptions) -> Result<RedbStore> {
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(backend(&format!("open {}", path.display())))?;
        let (revision, compacted) = init_tables(&db)?;
        let shared = Arc::new(Shared {
            db,
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let max_batch = opts.max_batch.max(1);
        let (requests, queue) = mpsc::channel(max_batch * 4);
        let (events_tx, _) = broadcast::channel(opts.watch_buffer.max(1));
        let events = events_tx.downgrade();
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kaji-store-writer".into())
                .spawn(move || writer::run(&shared, queue, &events_tx, &opts))
                .map_err(backend("spawn writer thread"))?
        };
        tracing::debug!(path = %path.display(), revision, compacted, "opened redb store");
        Ok(RedbStore {
            shared,
            requests,
            events,
            writer,
        })
    }

    /// Stops the writer after the writes already queued, and closes the file once no read is in
    /// flight, so that it can be reopened at once. Dropping the store also stops the writer,
    /// but without waiting.
    pub async fn close(self) -> Result<()> {
        let RedbStore {
            shared,
            requests,
            writer,
            ..
        } = self;
        drop(requests);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(backend("join writer thread"))?
            .map_err(|_| StoreError::Backend("the writer thread panicked".into()))?;
        // Readers on the blocking pool may still hold the database for a moment.
        let mut shared = shared;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Arc::try_unwrap(shared) {
                Ok(inner) => return inner.db.close().map_err(backend("close database")),
                Err(still_shared) if tokio::time::Instant::now() < deadline => {
                    shared = still_shared;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => {
                    return Err(StoreError::Backend(
                        "database still in use by readers after 10s".into(),
                    ));
                }
            }
        }
    }

    async fn write(&self, op: Op) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Write { op, reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn submit(&self, request: Request) -> Result<()> {
        self.requests.send(request).await.map_err(|_| writer_gone())
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared.db))
            .await
            .map_err(backend("read task"))?
    }
}

fn gave_up() -> StoreError {
    StoreError::Backend("a list without a cap gave up".into())
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the store's writer has stopped".into())
}

/// Maps a backend error to [`StoreError::Backend`] with what we were doing.
fn backend<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{context}: {e}"))
}

/// Creates the tables of a new file; returns the current and the compacted revision.
fn init_tables(db: &Database) -> Result<(Revision, Revision)> {
    let txn = db.begin_write().map_err(backend("begin write"))?;
    let revisions = {
        txn.open_table(KV).map_err(backend("open kv table"))?;
        txn.open_table(HISTORY)
            .map_err(backend("open history table"))?;
        let mut meta = txn.open_table(META).map_err(backend("open meta table"))?;
        let current = read_meta(&meta, META_CURRENT)?;
        let compacted = read_meta(&meta, META_COMPACTED)?;
        match (current, compacted) {
            (Some(current), Some(compacted)) => (current, compacted),
            (None, None) => {
                meta.insert(META_CURRENT, INITIAL_REVISION)
                    .map_err(backend("write meta"))?;
                meta.insert(META_COMPACTED, 0)
                    .map_err(backend("write meta"))?;
                (INITIAL_REVISION, 0)
            }
            _ => {
                return Err(StoreError::Backend(
                    "corrupt meta table: only one of the current and compacted revisions is set"
                        .into(),
                ));
            }
        }
    };
    txn.commit().map_err(backend("commit table creation"))?;
    Ok(revisions)
}

fn read_meta(table: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<Option<i64>> {
    Ok(table
        .get(name)
        .map_err(backend("read meta"))?
        .map(|guard| guard.value()))
}

fn require_meta(table: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64> {
    read_meta(table, name)?
        .ok_or_else(|| StoreError::Backend(format!("corrupt meta table: {name} is missing")))
}

fn get_blocking(db: &Database, key: &str) -> Result<Option<KeyValue>> {
    let txn = db.begin_read().map_err(backend("begin read"))?;
    let kv = txn.open_table(KV).map_err(backend("open kv table"))?;
    let found = kv.get(key).map_err(backend("read kv"))?;
    found
        .map(|raw| codec::decode_kv(key, raw.value()))
        .transpose()
}

/// Lists of at most this many keys, at the current revision, are read in place; longer ones
/// (and lists at an older revision, which walk the history) go to the blocking pool.
const IN_PLACE_KEYS: usize = 32;

/// Lists `prefix` into `sink`. With `in_place_cap`, gives up (`None`, before the sink hears
/// anything) when the list needs the history or holds more than that many keys: the caller then
/// runs it on the blocking pool.
fn list_blocking(
    db: &Database,
    prefix: &str,
    opts: &ListOptions,
    in_place_cap: Option<usize>,
    sink: &mut dyn ListSink,
) -> Result<Option<ListSummary>> {
    let txn = db.begin_read().map_err(backend("begin read"))?;
    let meta = txn.open_table(META).map_err(backend("open meta table"))?;
    let current = require_meta(&meta, META_CURRENT)?;
    let compacted = require_meta(&meta, META_COMPACTED)?;
    let at = match opts.revision {
        Some(r) if r > 0 => r,
        _ => current,
    };
    if at > current {
        return Err(StoreError::FutureRevision {
            requested: at,
            current,
        });
    }
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    let start_after = opts.start_after.as_deref().filter(|s| *s >= prefix);
    let lower = match start_after {
        Some(s) => Bound::Excluded(s),
        None => Bound::Included(prefix),
    };
    let kv = txn.open_table(KV).map_err(backend("open kv table"))?;
    if let Some(cap) = in_place_cap {
        if at < current {
            return Ok(None);
        }
        let mut keys = kv
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(backend("read kv"))?;
        let mut counted = 0;
        while let Some(entry) = keys.next().transpose().map_err(backend("read kv"))? {
            if !entry.0.value().starts_with(prefix) {
                break;
            }
            counted += 1;
            if counted > cap {
                return Ok(None);
            }
        }
    }
    sink.start(at);
    let wanted = |key: &str| key.starts_with(prefix) && start_after.is_none_or(|s| key > s);

    // Keys changed after `at`, with their value at `at` (None: absent then).
    let mut undo: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    if at < current {
        let history = txn
            .open_table(HISTORY)
            .map_err(backend("open history table"))?;
        for entry in history.range(at + 1..).map_err(backend("read history"))? {
            let (revision, raw) = entry.map_err(backend("read history"))?;
            let (revision, raw) = (revision.value(), raw.value());
            let (key, _) = codec::peek_event(revision, raw)?;
            if wanted(key) && !undo.contains_key(key) {
                undo.insert(key.to_owned(), codec::decode_event(revision, raw)?.prev);
            }
        }
    }

    let mut live = kv
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend("read kv"))?;
    // Items are handed over in place, and only those that make the page (the guards borrow
    // the pages).
    type Live<'a> = Option<(
        ::redb::AccessGuard<'a, &'static str>,
        ::redb::AccessGuard<'a, &'static [u8]>,
    )>;
    let mut next_live = move || -> Result<Live<'_>> {
        match live.next() {
            None => Ok(None),
            Some(entry) => {
                let (key, raw) = entry.map_err(backend("read kv"))?;
                Ok(key.value().starts_with(prefix).then_some((key, raw)))
            }
        }
    };

    let limit = opts.limit.filter(|&l| l > 0).unwrap_or(usize::MAX);
    let mut listed = 0usize;
    let mut remaining = 0u64;
    let mut undo = undo.into_iter().peekable();
    let mut live_head = next_live()?;
    loop {
        let take_live = match (&live_head, undo.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((live_key, _)), Some((undo_key, _))) => live_key.value() < undo_key.as_str(),
        };
        if take_live {
            if let Some((key, raw)) = live_head.take() {
                if listed < limit {
                    listed += 1;
                    sink.item(codec::peek_kv(key.value(), raw.value())?);
                } else {
                    remaining += 1;
                }
            }
            live_head = next_live()?;
        } else if let Some((key, at_value)) = undo.next() {
            if live_head.as_ref().is_some_and(|(k, _)| k.value() == key) {
                live_head = next_live()?;
            }
            match at_value {
                Some(kv) if listed < limit => {
                    listed += 1;
                    sink.item(kv.as_item());
                }
                Some(_) => remaining += 1,
                None => {}
            }
        }
    }
    let summary = ListSummary {
        revision: at,
        more: remaining > 0,
        remaining,
    };
    sink.end(&summary);
    Ok(Some(summary))
}

/// The items of a list, copied out (the [`Store::list`] form of [`list_blocking`]).
#[derive(Default)]
struct Collect(Vec<KeyValue>);

impl ListSink for Collect {
    fn start(&mut self, _revision: Revision) {}
    fn item(&mut self, item: ItemRef<'_>) {
        self.0.push(item.to_key_value());
    }
    fn end(&mut self, _summary: &ListSummary) {}
}

fn list_collect(
    db: &Database,
    prefix: &str,
    opts: &ListOptions,
    in_place_cap: Option<usize>,
) -> Result<Option<ListResult>> {
    let mut items = Collect::default();
    let summary = list_blocking(db, prefix, opts, in_place_cap, &mut items)?;
    Ok(summary.map(|s| ListResult {
        items: items.0,
        revision: s.revision,
        more: s.more,
        remaining: s.remaining,
    }))
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.write(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        self.write(Op::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        self.write(Op::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        // One key from (almost always) cached pages takes microseconds: read it here rather
        // than hand it to the blocking pool and back (two thread switches per read).
        get_blocking(&self.shared.db, key)
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        // Most lists an admission plug-in or a controller makes are short (a namespace's quotas,
        // the priority classes): read here, as a get is; a handoff to the blocking pool costs
        // more than such a read (measured: `spawn_blocking` was 3 % of the server's CPU while
        // pods were created, three short lists per create).
        if let Some(page) = list_collect(&self.shared.db, prefix, &opts, Some(IN_PLACE_KEYS))? {
            return Ok(page);
        }
        let prefix = prefix.to_owned();
        self.read(move |db| list_collect(db, &prefix, &opts, None))
            .await?
            .ok_or_else(gave_up)
    }

    async fn list_into(
        &self,
        prefix: &str,
        opts: ListOptions,
        mut sink: Box<dyn ListSink>,
    ) -> Result<ListSummary> {
        if let Some(summary) =
            list_blocking(&self.shared.db, prefix, &opts, Some(IN_PLACE_KEYS), sink.as_mut())?
        {
            return Ok(summary);
        }
        let prefix = prefix.to_owned();
        self.read(move |db| list_blocking(db, &prefix, &opts, None, sink.as_mut()))
            .await?
            .ok_or_else(gave_up)
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        Ok(self.watch_with_progress(prefix, from_revision).await?.0)
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<(WatchStream, WatchProgress)> {
        let events = self.events.upgrade().ok_or_else(writer_gone)?;
        // Subscribe before looking at the revision, so that no event falls in between.
        let live = events.subscribe();
        let (from, replay) = if from_revision <= 0 {
            (self.shared.revision.load(Ordering::SeqCst), false)
        } else {
            let compacted = self.shared.compacted.load(Ordering::SeqCst);
            if from_revision < compacted {
                return Err(StoreError::Compacted {
                    requested: from_revision,
                    compacted,
                });
            }
            (from_revision, true)
        };
        let progress = WatchProgress::default();
        let stream = watch::stream(
            Arc::downgrade(&self.shared),
            self.events.clone(),
            live,
            prefix.to_owned(),
            from,
            replay,
            progress.clone(),
        );
        Ok((stream, progress))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Compact { revision, reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests;
