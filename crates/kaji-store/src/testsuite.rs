//! The behaviour every [`Store`] backend must have, as one suite.
//!
//! A backend implements [`Backend`] (open a named store, close it so it can be reopened) and
//! calls each test from its own `#[tokio::test]` so that failures are named, or [`run_all`].
//! Tests only assume revisions relative to what they observe, so a shared etcd works as well as
//! a fresh file. Failures panic with a message saying what was expected.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{
    EventType, KeyValue, ListOptions, Revision, Store, StoreError, WatchEvent, WatchStream,
};

/// How long a test waits for an event that should come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the suite needs from a backend.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    type Store: Store;
    /// Opens the store called `name`, empty the first time; opening the same name after
    /// [`Backend::close`] gives back the same data.
    async fn open(&self, name: &str) -> Self::Store;
    /// Closes `store` so that it can be opened again.
    async fn close(&self, store: Self::Store);
}

/// Runs every test of the suite, each on its own store.
pub async fn run_all<B: Backend>(backend: &B) {
    create_get_update_delete(backend).await;
    preconditions(backend).await;
    revisions_are_global_and_monotonic(backend).await;
    list_prefix_isolation(backend).await;
    list_paging_is_consistent_across_writes(backend).await;
    list_at_old_revision(backend).await;
    compaction(backend).await;
    watch_replays_history_then_streams_live(backend).await;
    watch_from_now(backend).await;
    watch_from_compacted_revision_fails(backend).await;
    watch_sees_every_concurrent_write_in_order(backend).await;
    concurrent_writers_lose_no_update(backend).await;
    persists_across_reopen(backend).await;
}

fn unwrap_ok<T>(what: &str, result: crate::Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

async fn next_event(what: &str, stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Err(_) => panic!("{what}: no event within {EVENT_TIMEOUT:?}"),
        Ok(None) => panic!("{what}: watch stream ended"),
        Ok(Some(Err(e))) => panic!("{what}: watch error: {e}"),
        Ok(Some(Ok(event))) => event,
    }
}

/// Asserts that nothing arrives on `stream` for a short while (events that should not be there
/// would normally arrive within it, since they were written before the call).
async fn expect_quiet(what: &str, stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("{what}: expected no event, got {item:?}");
    }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn create_get_update_delete<B: Backend>(backend: &B) {
    let store = backend.open("create_get_update_delete").await;
    let before = unwrap_ok("current_revision", store.current_revision().await);

    let created = unwrap_ok("create", store.create("/t/a", b"one".to_vec()).await);
    assert_eq!(created.key, "/t/a");
    assert_eq!(created.value, b"one");
    assert!(
        created.mod_revision > before,
        "create must get a new revision"
    );
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(
        unwrap_ok("get", store.get("/t/a").await),
        Some(created.clone())
    );

    let updated = unwrap_ok(
        "update",
        store
            .update("/t/a", b"two".to_vec(), created.mod_revision)
            .await,
    );
    assert_eq!(updated.value, b"two");
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(
        unwrap_ok("get", store.get("/t/a").await),
        Some(updated.clone())
    );

    let deleted = unwrap_ok(
        "delete",
        store.delete("/t/a", Some(updated.mod_revision)).await,
    );
    assert_eq!(deleted.value, b"two", "delete returns the last value");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert!(
        deleted.mod_revision > updated.mod_revision,
        "delete returns its own revision"
    );
    assert_eq!(unwrap_ok("get", store.get("/t/a").await), None);
    assert_eq!(
        unwrap_ok("current_revision", store.current_revision().await),
        deleted.mod_revision
    );

    let again = unwrap_ok("re-create", store.create("/t/a", b"three".to_vec()).await);
    assert!(
        again.create_revision > deleted.mod_revision,
        "a re-created key starts a new life"
    );
    let unconditional = unwrap_ok(
        "delete without precondition",
        store.delete("/t/a", None).await,
    );
    assert_eq!(unconditional.value, b"three");
    assert_eq!(unwrap_ok("get", store.get("/t/missing").await), None);
    backend.close(store).await;
}

pub async fn preconditions<B: Backend>(backend: &B) {
    let store = backend.open("preconditions").await;
    let a = unwrap_ok("create", store.create("/t/a", b"1".to_vec()).await);
    match store.create("/t/a", b"2".to_vec()).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/t/a"),
        other => panic!("create of an existing key: expected AlreadyExists, got {other:?}"),
    }
    match store.update("/t/nope", b"2".to_vec(), 1).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/t/nope"),
        other => panic!("update of a missing key: expected NotFound, got {other:?}"),
    }
    match store.delete("/t/nope", None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("delete of a missing key: expected NotFound, got {other:?}"),
    }
    let b = unwrap_ok(
        "update",
        store.update("/t/a", b"2".to_vec(), a.mod_revision).await,
    );
    match store.update("/t/a", b"3".to_vec(), a.mod_revision).await {
        Err(StoreError::Conflict { key, current }) => {
            assert_eq!(key, "/t/a");
            assert_eq!(
                current, b.mod_revision,
                "Conflict reports the current revision"
            );
        }
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    match store.delete("/t/a", Some(a.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, b.mod_revision),
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    // Failed writes change nothing.
    assert_eq!(unwrap_ok("get", store.get("/t/a").await), Some(b.clone()));
    assert_eq!(
        unwrap_ok("current_revision", store.current_revision().await),
        b.mod_revision,
        "failed writes must not consume revisions"
    );
    backend.close(store).await;
}

pub async fn revisions_are_global_and_monotonic<B: Backend>(backend: &B) {
    let store = backend.open("revisions_are_global_and_monotonic").await;
    let mut last = unwrap_ok("current_revision", store.current_revision().await);
    for i in 0..20 {
        let key = format!("/t/{}/{i}", i % 3);
        let kv = unwrap_ok("create", store.create(&key, vec![1]).await);
        assert_eq!(
            kv.mod_revision,
            last + 1,
            "one revision per write, across keys"
        );
        let kv = unwrap_ok("update", store.update(&key, vec![2], kv.mod_revision).await);
        assert_eq!(kv.mod_revision, last + 2);
        last = kv.mod_revision;
        assert_eq!(
            unwrap_ok("current_revision", store.current_revision().await),
            last
        );
    }
    let list = unwrap_ok("list", store.list("/t/", ListOptions::default()).await);
    assert_eq!(
        list.revision, last,
        "a current list reports the current revision"
    );
    backend.close(store).await;
}

pub async fn list_prefix_isolation<B: Backend>(backend: &B) {
    let store = backend.open("list_prefix_isolation").await;
    for key in [
        "/a/b/2", "/a/bc/1", "/a/b/1", "/a/b", "/a/", "/a/b/1/x", "/b/1",
    ] {
        unwrap_ok("create", store.create(key, key.as_bytes().to_vec()).await);
    }
    let list = unwrap_ok(
        "list /a/b/",
        store.list("/a/b/", ListOptions::default()).await,
    );
    assert_eq!(keys(&list.items), ["/a/b/1", "/a/b/1/x", "/a/b/2"]);
    assert!(!list.more);
    assert_eq!(list.remaining, 0);
    for kv in &list.items {
        assert_eq!(kv.value, kv.key.as_bytes(), "values belong to their keys");
    }
    let list = unwrap_ok(
        "list /a/bc/",
        store.list("/a/bc/", ListOptions::default()).await,
    );
    assert_eq!(keys(&list.items), ["/a/bc/1"]);
    let list = unwrap_ok("list /a/", store.list("/a/", ListOptions::default()).await);
    assert_eq!(
        keys(&list.items),
        ["/a/", "/a/b", "/a/b/1", "/a/b/1/x", "/a/b/2", "/a/bc/1"]
    );
    let list = unwrap_ok("list /c/", store.list("/c/", ListOptions::default()).await);
    assert!(list.items.is_empty() && !list.more);
    // A start_after outside the prefix neither leaks keys nor hides them.
    let opts = ListOptions {
        start_after: Some("/0".into()),
        ..ListOptions::default()
    };
    let list = unwrap_ok("list /a/bc/ after /0", store.list("/a/bc/", opts).await);
    assert_eq!(keys(&list.items), ["/a/bc/1"]);
    let opts = ListOptions {
        start_after: Some("/a/b/1".into()),
        ..ListOptions::default()
    };
    let list = unwrap_ok("list /a/b/ after /a/b/1", store.list("/a/b/", opts).await);
    assert_eq!(keys(&list.items), ["/a/b/1/x", "/a/b/2"]);
    backend.close(store).await;
}

pub async fn list_paging_is_consistent_across_writes<B: Backend>(backend: &B) {
    let store = backend
        .open("list_paging_is_consistent_across_writes")
        .await;
    let mut original = BTreeMap::new();
    for i in 0..10 {
        let key = format!("/p/k{i:02}");
        let kv = unwrap_ok(
            "create",
            store.create(&key, format!("v{i}").into_bytes()).await,
        );
        original.insert(key, kv);
    }
    unwrap_ok("create outside", store.create("/q/x", vec![]).await);

    let mut seen = Vec::new();
    let mut opts = ListOptions {
        limit: Some(3),
        ..ListOptions::default()
    };
    let first = unwrap_ok("first page", store.list("/p/", opts.clone()).await);
    assert_eq!(first.items.len(), 3);
    assert!(first.more);
    assert_eq!(first.remaining, 7);
    let at = first.revision;
    seen.extend(first.items.clone());
    let mut page = first;
    let mut round = 0;
    while page.more {
        // Writes between pages: inside and outside the remaining range.
        round += 1;
        let k05 = unwrap_ok("get", store.get("/p/k05").await);
        if let Some(k05) = k05 {
            unwrap_ok(
                "update k05",
                store
                    .update("/p/k05", b"changed".to_vec(), k05.mod_revision)
                    .await,
            );
        }
        if round == 1 {
            unwrap_ok("delete k08", store.delete("/p/k08", None).await);
            unwrap_ok("delete k00", store.delete("/p/k00", None).await);
            unwrap_ok("create k04a", store.create("/p/k04a", vec![]).await);
            unwrap_ok("create k99", store.create("/p/k99", vec![]).await);
        }
        opts.start_after = page.items.last().map(|kv| kv.key.clone());
        opts.revision = Some(at);
        page = unwrap_ok("next page", store.list("/p/", opts.clone()).await);
        assert_eq!(
            page.revision, at,
            "later pages are served at the first page's revision"
        );
        assert_eq!(
            page.remaining as usize,
            10 - seen.len() - page.items.len(),
            "remaining counts keys at the list's revision"
        );
        seen.extend(page.items.clone());
    }
    let seen: BTreeMap<_, _> = seen.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    assert_eq!(
        seen, original,
        "pages together are the state at the first page"
    );

    let now = unwrap_ok(
        "current list",
        store.list("/p/", ListOptions::default()).await,
    );
    assert_eq!(
        keys(&now.items),
        [
            "/p/k01", "/p/k02", "/p/k03", "/p/k04", "/p/k04a", "/p/k05", "/p/k06", "/p/k07",
            "/p/k09", "/p/k99"
        ]
    );
    assert_eq!(now.items[5].value, b"changed");
    backend.close(store).await;
}

pub async fn list_at_old_revision<B: Backend>(backend: &B) {
    let store = backend.open("list_at_old_revision").await;
    let a1 = unwrap_ok("create a", store.create("/o/a", b"a1".to_vec()).await);
    let b1 = unwrap_ok("create b", store.create("/o/b", b"b1".to_vec()).await);
    let r1 = unwrap_ok("current_revision", store.current_revision().await);
    let a2 = unwrap_ok(
        "update a",
        store.update("/o/a", b"a2".to_vec(), a1.mod_revision).await,
    );
    unwrap_ok("delete b", store.delete("/o/b", None).await);
    let c1 = unwrap_ok("create c", store.create("/o/c", b"c1".to_vec()).await);
    unwrap_ok(
        "update a again",
        store.update("/o/a", b"a3".to_vec(), a2.mod_revision).await,
    );
    let b2 = unwrap_ok("re-create b", store.create("/o/b", b"b2".to_vec()).await);
    let current = unwrap_ok("current_revision", store.current_revision().await);

    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    let old = unwrap_ok("list at r1", store.list("/o/", at(r1)).await);
    assert_eq!(old.revision, r1);
    assert_eq!(
        old.items,
        vec![a1.clone(), b1.clone()],
        "state at r1, revisions included"
    );

    let mid = unwrap_ok("list at c1", store.list("/o/", at(c1.mod_revision)).await);
    assert_eq!(mid.items, vec![a2.clone(), c1.clone()]);

    let paged = ListOptions {
        limit: Some(1),
        start_after: Some("/o/a".into()),
        revision: Some(r1),
    };
    let page = unwrap_ok("paged list at r1", store.list("/o/", paged).await);
    assert_eq!(page.items, vec![b1]);
    assert!(!page.more);

    let before_all = unwrap_ok(
        "list before a",
        store.list("/o/", at(a1.mod_revision - 1)).await,
    );
    assert!(
        before_all.items.is_empty(),
        "nothing existed before the first create"
    );

    let now = unwrap_ok("list now", store.list("/o/", at(current)).await);
    assert_eq!(keys(&now.items), ["/o/a", "/o/b", "/o/c"]);
    assert_eq!(now.items[1], b2);

    match store.list("/o/", at(current + 1)).await {
        Err(StoreError::FutureRevision {
            requested,
            current: c,
        }) => {
            assert_eq!((requested, c), (current + 1, current));
        }
        other => panic!("list in the future: expected FutureRevision, got {other:?}"),
    }
    backend.close(store).await;
}

pub async fn compaction<B: Backend>(backend: &B) {
    let store = backend.open("compaction").await;
    let a = unwrap_ok("create", store.create("/c/a", b"1".to_vec()).await);
    let mid = unwrap_ok(
        "update",
        store.update("/c/a", b"2".to_vec(), a.mod_revision).await,
    );
    unwrap_ok(
        "update",
        store.update("/c/a", b"3".to_vec(), mid.mod_revision).await,
    );
    let current = unwrap_ok("current_revision", store.current_revision().await);

    unwrap_ok("compact", store.compact(mid.mod_revision).await);
    assert_eq!(
        unwrap_ok("compacted_revision", store.compacted_revision().await),
        mid.mod_revision
    );
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    match store.list("/c/", at(a.mod_revision)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (a.mod_revision, mid.mod_revision));
        }
        other => panic!("list below the compacted revision: expected Compacted, got {other:?}"),
    }
    let at_compacted = unwrap_ok(
        "list at compacted",
        store.list("/c/", at(mid.mod_revision)).await,
    );
    assert_eq!(
        at_compacted.items,
        vec![mid.clone()],
        "the compacted revision stays readable"
    );

    match store.compact(a.mod_revision).await {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("compacting backwards: expected Compacted, got {other:?}"),
    }
    match store.compact(current + 1).await {
        Err(StoreError::FutureRevision { .. }) => {}
        other => panic!("compacting the future: expected FutureRevision, got {other:?}"),
    }
    unwrap_ok("compact at current", store.compact(current).await);
    let now = unwrap_ok("list", store.list("/c/", ListOptions::default()).await);
    assert_eq!(now.items.len(), 1, "compaction never drops current data");
    assert_eq!(now.items[0].value, b"3");
    backend.close(store).await;
}

pub async fn watch_replays_history_then_streams_live<B: Backend>(backend: &B) {
    let store = backend
        .open("watch_replays_history_then_streams_live")
        .await;
    let start = unwrap_ok("current_revision", store.current_revision().await);
    let created = unwrap_ok("create", store.create("/w/a", b"1".to_vec()).await);
    unwrap_ok(
        "create elsewhere",
        store.create("/wx/a", b"x".to_vec()).await,
    );
    let updated = unwrap_ok(
        "update",
        store
            .update("/w/a", b"2".to_vec(), created.mod_revision)
            .await,
    );
    let deleted = unwrap_ok("delete", store.delete("/w/a", None).await);

    let mut watch = unwrap_ok("watch", store.watch("/w/", start).await);
    let e = next_event("replayed create", &mut watch).await;
    assert_eq!(
        (e.event_type, &e.kv, &e.prev),
        (EventType::Put, &created, &None)
    );
    let e = next_event("replayed update", &mut watch).await;
    assert_eq!(e.event_type, EventType::Put);
    assert_eq!(e.kv, updated);
    assert_eq!(
        e.prev.as_ref(),
        Some(&created),
        "update events carry the previous value"
    );
    let e = next_event("replayed delete", &mut watch).await;
    assert_eq!(e.event_type, EventType::Delete);
    assert_eq!(
        e.kv, deleted,
        "delete events carry the last value at the delete's revision"
    );
    assert_eq!(e.revision(), deleted.mod_revision);
    assert_eq!(e.prev.as_ref(), Some(&updated));

    let live = unwrap_ok("create live", store.create("/w/b", b"live".to_vec()).await);
    unwrap_ok(
        "create elsewhere",
        store.create("/wx/b", b"x".to_vec()).await,
    );
    let e = next_event("live create", &mut watch).await;
    assert_eq!(e.kv, live);

    // Replay starts strictly after the given revision.
    let mut watch = unwrap_ok("watch", store.watch("/w/", updated.mod_revision).await);
    let e = next_event("first event after update", &mut watch).await;
    assert_eq!(e.kv, deleted);
    let e = next_event("then live", &mut watch).await;
    assert_eq!(e.kv, live);
    expect_quiet("nothing else under /w/", &mut watch).await;
    backend.close(store).await;
}

pub async fn watch_from_now<B: Backend>(backend: &B) {
    let store = backend.open("watch_from_now").await;
    unwrap_ok("create before", store.create("/n/old", vec![]).await);
    let mut watch = unwrap_ok("watch", store.watch("/n/", 0).await);
    let new = unwrap_ok("create after", store.create("/n/new", vec![]).await);
    let e = next_event("new event", &mut watch).await;
    assert_eq!(e.kv, new, "a watch from 0 starts now, without history");
    expect_quiet("nothing else", &mut watch).await;
    backend.close(store).await;
}

pub async fn watch_from_compacted_revision_fails<B: Backend>(backend: &B) {
    let store = backend.open("watch_from_compacted_revision_fails").await;
    let a = unwrap_ok("create", store.create("/wc/a", vec![]).await);
    let b = unwrap_ok("create", store.create("/wc/b", vec![]).await);
    let c = unwrap_ok("create", store.create("/wc/c", vec![]).await);
    unwrap_ok("compact", store.compact(b.mod_revision).await);
    match store.watch("/wc/", a.mod_revision).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (a.mod_revision, b.mod_revision));
        }
        Ok(_) => panic!("watch from a compacted revision: expected Compacted, got a stream"),
        Err(e) => panic!("watch from a compacted revision: expected Compacted, got {e}"),
    }
    let mut watch = unwrap_ok(
        "watch at compacted",
        store.watch("/wc/", b.mod_revision).await,
    );
    let e = next_event("event after the compacted revision", &mut watch).await;
    assert_eq!(e.kv, c);
    backend.close(store).await;
}

/// For stores that report [`crate::WatchProgress`] (not in [`run_all`]: etcd alone does not): a
/// watch's progress never passes an event it has not handed out, and once its stream has been
/// read it follows the writes under other prefixes, replayed or live.
pub async fn watch_progress_follows_the_store<B: Backend>(backend: &B) {
    let store = backend.open("watch_progress_follows_the_store").await;
    let start = unwrap_ok("current_revision", store.current_revision().await);
    let a = unwrap_ok("create", store.create("/p/a", vec![]).await);
    unwrap_ok("create elsewhere", store.create("/q/x", vec![]).await);
    let b = unwrap_ok("create", store.create("/p/b", vec![]).await);
    let y = unwrap_ok("create elsewhere", store.create("/q/y", vec![]).await);
    let (mut watch, progress) = unwrap_ok(
        "watch with progress",
        store.watch_with_progress("/p/", start).await,
    );
    assert!(
        progress.get() < a.mod_revision,
        "before any event: {}",
        progress.get()
    );
    assert_eq!(next_event("replayed /p/a", &mut watch).await.kv, a);
    assert!(
        progress.get() < b.mod_revision,
        "progress {} passed /p/b ({}) before it was handed out",
        progress.get(),
        b.mod_revision
    );
    assert_eq!(next_event("replayed /p/b", &mut watch).await.kv, b);
    expect_quiet("nothing else under /p/", &mut watch).await;
    assert_eq!(progress.get(), y.mod_revision, "after the replay");

    let mut last = y;
    for i in 0..5 {
        last = unwrap_ok(
            "create elsewhere",
            store.create(&format!("/q/live-{i}"), vec![]).await,
        );
    }
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while progress.get() < last.mod_revision {
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(50), watch.next()).await {
            panic!("writes elsewhere: expected no event, got {item:?}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "progress stayed at {} while the store went on to {}",
            progress.get(),
            last.mod_revision
        );
    }
    assert_eq!(progress.get(), last.mod_revision, "live writes elsewhere");
    let c = unwrap_ok("create", store.create("/p/c", vec![]).await);
    assert_eq!(next_event("live /p/c", &mut watch).await.kv, c);
    backend.close(store).await;
}

pub async fn watch_sees_every_concurrent_write_in_order<B: Backend>(backend: &B) {
    let store = Arc::new(
        backend
            .open("watch_sees_every_concurrent_write_in_order")
            .await,
    );
    let mut watch = unwrap_ok("watch", store.watch("/cw/", 0).await);
    let (tasks, per_task) = (8, 25);
    let writers: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    unwrap_ok(
                        "create",
                        store.create(&format!("/cw/{t}/{i}"), vec![]).await,
                    );
                }
            })
        })
        .collect();
    let mut last: Option<Revision> = None;
    let mut keys = HashSet::new();
    for _ in 0..tasks * per_task {
        let e = next_event("concurrent event", &mut watch).await;
        if let Some(last) = last {
            assert_eq!(
                e.revision(),
                last + 1,
                "events come in revision order, none missing"
            );
        }
        last = Some(e.revision());
        assert!(keys.insert(e.kv.key), "each event once");
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    expect_quiet("no extra events", &mut watch).await;
    drop(watch);
    let store = Arc::into_inner(store).expect("writers are done");
    backend.close(store).await;
}

pub async fn concurrent_writers_lose_no_update<B: Backend>(backend: &B) {
    let store = Arc::new(backend.open("concurrent_writers_lose_no_update").await);
    let start = unwrap_ok("current_revision", store.current_revision().await);
    unwrap_ok(
        "create counter",
        store.create("/cc/counter", b"0".to_vec()).await,
    );
    let (tasks, increments) = (16, 10);
    let writers: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..increments {
                    let kv = unwrap_ok(
                        "create",
                        store.create(&format!("/cc/{t}/{i}"), vec![]).await,
                    );
                    revisions.push(kv.mod_revision);
                    // Read-modify-write with compare-and-swap, retrying on conflict.
                    loop {
                        let current = unwrap_ok("get", store.get("/cc/counter").await)
                            .expect("counter exists");
                        let n: u64 = String::from_utf8_lossy(&current.value)
                            .parse()
                            .expect("counter is a number");
                        match store
                            .update(
                                "/cc/counter",
                                (n + 1).to_string().into_bytes(),
                                current.mod_revision,
                            )
                            .await
                        {
                            Ok(kv) => {
                                revisions.push(kv.mod_revision);
                                break;
                            }
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("increment: {e}"),
                        }
                    }
                }
                revisions
            })
        })
        .collect();
    let mut all = Vec::new();
    for writer in writers {
        all.extend(writer.await.expect("writer task"));
    }
    let counter = unwrap_ok("get", store.get("/cc/counter").await).expect("counter exists");
    assert_eq!(
        counter.value,
        (tasks * increments).to_string().into_bytes(),
        "no increment may be lost"
    );
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "every write gets its own revision");
    let current = unwrap_ok("current_revision", store.current_revision().await);
    assert_eq!(
        current - start,
        i64::try_from(all.len() + 1).expect("small"),
        "exactly one revision per successful write"
    );
    let list = unwrap_ok("list", store.list("/cc/", ListOptions::default()).await);
    assert_eq!(list.items.len(), tasks * increments + 1);
    let store = Arc::into_inner(store).expect("writers are done");
    backend.close(store).await;
}

pub async fn persists_across_reopen<B: Backend>(backend: &B) {
    let name = "persists_across_reopen";
    let store = backend.open(name).await;
    let a = unwrap_ok("create", store.create("/r/a", b"a".to_vec()).await);
    let b = unwrap_ok("create", store.create("/r/b", b"b".to_vec()).await);
    let b2 = unwrap_ok(
        "update",
        store.update("/r/b", b"b2".to_vec(), b.mod_revision).await,
    );
    unwrap_ok("create", store.create("/r/c", b"c".to_vec()).await);
    let deleted = unwrap_ok("delete", store.delete("/r/c", None).await);
    unwrap_ok("compact", store.compact(a.mod_revision).await);
    let revision = unwrap_ok("current_revision", store.current_revision().await);
    backend.close(store).await;

    let store = backend.open(name).await;
    assert_eq!(
        unwrap_ok("current_revision", store.current_revision().await),
        revision,
        "the revision survives a reopen"
    );
    assert!(unwrap_ok("compacted_revision", store.compacted_revision().await) >= a.mod_revision);
    assert_eq!(unwrap_ok("get", store.get("/r/a").await), Some(a.clone()));
    assert_eq!(unwrap_ok("get", store.get("/r/b").await), Some(b2.clone()));
    assert_eq!(unwrap_ok("get", store.get("/r/c").await), None);
    let list = unwrap_ok("list", store.list("/r/", ListOptions::default()).await);
    assert_eq!(list.items, vec![a.clone(), b2.clone()]);
    // History survives too: lists and watches at old revisions.
    let old = ListOptions {
        revision: Some(b.mod_revision),
        ..ListOptions::default()
    };
    let list = unwrap_ok("list at old revision", store.list("/r/", old).await);
    assert_eq!(list.items, vec![a.clone(), b.clone()]);
    let mut watch = unwrap_ok("watch", store.watch("/r/", b2.mod_revision).await);
    let e = next_event("replayed create of c", &mut watch).await;
    assert_eq!(e.kv.key, "/r/c");
    let e = next_event("replayed delete of c", &mut watch).await;
    assert_eq!(e.kv, deleted);
    drop(watch);
    // The counter goes on.
    let d = unwrap_ok("create after reopen", store.create("/r/d", vec![]).await);
    assert_eq!(d.mod_revision, revision + 1);
    backend.close(store).await;
}
