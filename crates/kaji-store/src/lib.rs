//! The durable key-value store behind the Kaji API server, in the role etcd v3 plays behind
//! kube-apiserver.
//!
//! Where to start:
//! - [`Store`] is the contract: string keys (`/registry/pods/default/nginx`), opaque values, one
//!   global [`Revision`] bumped by every write, compare-and-swap on `mod_revision`, lists at a
//!   consistent (possibly older) revision, and watches that replay history and then go live.
//!   Semantics follow etcd v3's MVCC store.
//! - [`RedbStore`] is the embedded backend: a single file, group-committed and fsynced before
//!   any write is acknowledged.
//! - [`EtcdStore`] is the etcd v3 backend (`kaji server --datastore-endpoint`): each write one
//!   etcd transaction whose comparison is the precondition, etcd's revisions as the store's,
//!   keys stored as given (the API server's are Kubernetes' `/registry/<resource>/...`); after
//!   one request timed out, requests fail at once until etcd answers again;
//!   [`spawn_compactor`] compacts as kube-apiserver does.
//! - [`WatchCache`] keeps every key and recent events in memory over one backend watch
//!   (kube-apiserver's watch cache): watches of recent revisions and lists of the current state
//!   are served from it; `kaji server` puts it in front of etcd.
//! - [`testsuite`] is the behaviour every backend must pass; a new backend calls it from its tests.
//!
//! A fresh store starts at revision 1 (as etcd does), so the first write gets revision 2 and a
//! list never reports revision 0, which Kubernetes clients read as "any".

mod etcd_store;
mod redb_store;
pub mod testsuite;
mod watch_cache;

pub use etcd_store::{EtcdOptions, EtcdStore, spawn_compactor};
pub use redb_store::{RedbOptions, RedbStore};
pub use watch_cache::WatchCache;

/// A point in the store's history: every write (create, update, delete) gets the next one.
pub type Revision = i64;

/// A key with its value and the revisions that created and last modified it (as in etcd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (a delete and re-create starts over).
    pub create_revision: Revision,
    /// Revision of the last write to the key; the compare-and-swap token.
    pub mod_revision: Revision,
}

impl KeyValue {
    /// This key-value as a list item, borrowed.
    #[must_use]
    pub fn as_item(&self) -> ItemRef<'_> {
        ItemRef {
            key: &self.key,
            value: &self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change, as seen by a watcher.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub event_type: EventType,
    /// For `Put`: the new value. For `Delete`: the last value, with `mod_revision` = the
    /// delete's revision.
    pub kv: KeyValue,
    /// The value before this event; `None` for a create.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// A compare-and-swap precondition failed: `current` is the key's actual `mod_revision`.
    #[error("key {key:?} was modified: current mod_revision is {current}")]
    Conflict { key: String, current: Revision },
    /// The requested revision is older than the oldest kept history ("too old resource
    /// version"; the API server answers 410 Gone).
    #[error("revision {requested} has been compacted (compacted revision is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (the continue token of a paged list).
    pub start_after: Option<String>,
    /// At most this many items; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
    /// List the state as of this revision; `None` (or a value <= 0) means current.
    pub revision: Option<Revision>,
}

#[derive(Clone, Debug)]
pub struct ListResult {
    /// In lexical key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was served at; pass it back for the next page.
    pub revision: Revision,
    /// Whether keys remain after this page.
    pub more: bool,
    /// How many keys remain after this page.
    pub remaining: u64,
}

/// Events in revision order. An `Err` item (e.g. [`StoreError::Compacted`] for a watcher that
/// fell behind the kept history) is always the last one.
pub type WatchStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<WatchEvent>> + Send>>;

/// How far a watch has come: every event under its prefix up to this revision has been handed
/// out by its stream (etcd's progress notifications, read when wanted rather than sent). A
/// watch of a quiet prefix in a busy store moves on with the store, so that the revision the API
/// server puts in its bookmarks stays inside the kept history: a client resuming from it is not
/// told 410 Gone and made to list everything again.
#[derive(Clone, Debug, Default)]
pub struct WatchProgress(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl WatchProgress {
    /// The revision every event up to which has been handed out (0: not known).
    pub fn get(&self) -> Revision {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Call only when no event at or below `to` is waiting to be handed out.
    pub(crate) fn advance(&self, to: Revision) {
        self.0.fetch_max(to, std::sync::atomic::Ordering::AcqRel);
    }
}

/// One item of a list as [`Store::list_into`] hands it over, borrowed from the store's read.
#[derive(Clone, Copy, Debug)]
pub struct ItemRef<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

impl ItemRef<'_> {
    /// The item copied out.
    #[must_use]
    pub fn to_key_value(&self) -> KeyValue {
        KeyValue {
            key: self.key.to_owned(),
            value: self.value.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// A [`ListResult`] without its items (they went to a [`ListSink`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListSummary {
    pub revision: Revision,
    pub more: bool,
    pub remaining: u64,
}

/// What [`Store::list_into`] hands a list to: `start` once the list's revision is known and
/// before any item, `item` for each item in key order, `end` once the list is complete. A list
/// that fails calls no `end` (and may have called `start` and some `item`s).
pub trait ListSink: Send {
    fn start(&mut self, revision: Revision);
    fn item(&mut self, item: ItemRef<'_>);
    fn end(&mut self, summary: &ListSummary);
}

/// The store contract, shaped after etcd v3 so that an etcd backend can implement it as well.
///
/// Prefixes are plain string prefixes: callers pass prefixes ending in `/` so that `/a/b/`
/// does not match `/a/bc`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates `key`; fails with [`StoreError::AlreadyExists`].
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    /// Replaces `key`'s value if its `mod_revision` is `expected_mod_revision`; fails with
    /// [`StoreError::NotFound`] or [`StoreError::Conflict`].
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;
    /// Deletes `key` (if its `mod_revision` matches, when given). Returns the deleted value with
    /// `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue>;
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys under `prefix` in lexical order, all at one consistent revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;
    /// [`Store::list`], handing the items to `sink` instead of returning them: a backend that
    /// reads its own pages hands them over in place, so a list served as stored copies each
    /// value once, and can send the first items while it reads the next. The default lists and
    /// hands over the copies.
    async fn list_into(
        &self,
        prefix: &str,
        opts: ListOptions,
        mut sink: Box<dyn ListSink>,
    ) -> Result<ListSummary> {
        let page = self.list(prefix, opts).await?;
        sink.start(page.revision);
        for kv in &page.items {
            sink.item(kv.as_item());
        }
        let summary = ListSummary {
            revision: page.revision,
            more: page.more,
            remaining: page.remaining,
        };
        sink.end(&summary);
        Ok(summary)
    }
    /// Every event under `prefix` with revision > `from_revision`, in order, then live events.
    /// `from_revision` = 0 means "from now". Fails with [`StoreError::Compacted`] if the history
    /// after `from_revision` is gone.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream>;
    /// [`Store::watch`] with its [`WatchProgress`]. A backend that cannot tell gives one that
    /// stays at 0: etcd alone (its progress requests are answered ahead of events still in
    /// flight in Debian's 3.4, see [`WatchCache`]); the watch cache in front of it can.
    async fn watch_with_progress(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<(WatchStream, WatchProgress)> {
        Ok((
            self.watch(prefix, from_revision).await?,
            WatchProgress::default(),
        ))
    }
    async fn current_revision(&self) -> Result<Revision>;
    /// Drops the history before `revision`: lists at an older revision and watches from an
    /// older revision fail with [`StoreError::Compacted`] afterwards; `revision` itself stays
    /// readable. As in etcd, compacting at or below the compacted revision fails with
    /// `Compacted`, and beyond the current revision with `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// The revision up to which history has been dropped (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;
    /// Whether every revision is a write this store's watches see. Not so for an etcd shared
    /// under a key prefix: other tenants' writes take revisions too, so a cache cannot tell from
    /// its watch alone that it has caught up with the current revision.
    fn sees_every_revision(&self) -> bool {
        true
    }
}
