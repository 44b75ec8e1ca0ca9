use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{RedbOptions, RedbStore};
use crate::testsuite::{self, Backend};
use crate::{ListOptions, Store, StoreError};

struct RedbBackend {
    dir: tempfile::TempDir,
    opts: RedbOptions,
}

impl RedbBackend {
    fn new(opts: RedbOptions) -> Self {
        RedbBackend {
            dir: tempfile::tempdir().expect("tempdir"),
            opts,
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedbBackend {
    type Store = RedbStore;

    async fn open(&self, name: &str) -> RedbStore {
        let path = self.dir.path().join(format!("{name}.redb"));
        RedbStore::open(&path, self.opts.clone()).expect("open store")
    }

    async fn close(&self, store: RedbStore) {
        store.close().await.expect("close store");
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            testsuite::$name(&RedbBackend::new(RedbOptions::default())).await;
        }
    )*};
}

suite!(
    create_get_update_delete,
    preconditions,
    revisions_are_global_and_monotonic,
    list_prefix_isolation,
    list_paging_is_consistent_across_writes,
    list_at_old_revision,
    compaction,
    watch_replays_history_then_streams_live,
    watch_from_now,
    watch_from_compacted_revision_fails,
    watch_sees_every_concurrent_write_in_order,
    concurrent_writers_lose_no_update,
    persists_across_reopen,
    watch_progress_follows_the_store,
);

/// The whole suite against one backend, as a new backend would call it; with tiny batches
/// and watch buffers, to exercise the other paths of the writer and of watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_with_small_buffers() {
    let opts = RedbOptions {
        watch_buffer: 1,
        max_batch: 2,
        ..RedbOptions::default()
    };
    testsuite::run_all(&RedbBackend::new(opts)).await;
}

async fn next_item(stream: &mut crate::WatchStream) -> Option<crate::Result<crate::WatchEvent>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch item within 10s")
}

#[tokio::test]
async fn slow_watcher_catches_up_from_disk() {
    let backend = RedbBackend::new(RedbOptions {
        watch_buffer: 4,
        ..RedbOptions::default()
    });
    let store = backend.open("slow").await;
    let mut watch = store.watch("/s/", 0).await.expect("watch");
    let start = store.current_revision().await.expect("revision");
    for i in 0..100 {
        store
            .create(&format!("/s/{i:03}"), vec![])
            .await
            .expect("create");
    }
    // 100 events with a buffer of 4: the watcher lagged and must fetch from disk.
    for i in 0..100 {
        let event = next_item(&mut watch)
            .await
            .expect("stream open")
            .expect("event");
        assert_eq!(event.kv.key, format!("/s/{i:03}"));
        assert_eq!(event.revision(), start + 1 + i);
    }
    backend.close(store).await;
}

#[tokio::test]
async fn slow_watcher_behind_compaction_ends_with_compacted() {
    let backend = RedbBackend::new(RedbOptions {
        watch_buffer: 4,
        ..RedbOptions::default()
    });
    let store = backend.open("slow").await;
    let mut watch = store.watch("/s/", 0).await.expect("watch");
    for i in 0..100 {
        store
            .create(&format!("/s/{i:03}"), vec![])
            .await
            .expect("create");
    }
    let current = store.current_revision().await.expect("revision");
    store.compact(current).await.expect("compact");
    match next_item(&mut watch).await {
        Some(Err(StoreError::Compacted { compacted, .. })) => assert_eq!(compacted, current),
        other => panic!("expected a Compacted error, got {other:?}"),
    }
    assert!(
        next_item(&mut watch).await.is_none(),
        "the stream ends after the error"
    );
    backend.close(store).await;
}

#[tokio::test]
async fn auto_compaction_keeps_the_revision_window() {
    let backend = RedbBackend::new(RedbOptions {
        history_revisions: Some(50),
        history_duration: None,
        ..RedbOptions::default()
    });
    let store = backend.open("auto").await;
    for i in 0..200 {
        store
            .create(&format!("/a/{i:03}"), vec![])
            .await
            .expect("create");
    }
    let current = store.current_revision().await.expect("revision");
    let compacted = store.compacted_revision().await.expect("compacted");
    let kept = current - compacted;
    assert!(
        (50..=50 + 50 / 8 + 1).contains(&kept),
        "history window {kept} (current {current}, compacted {compacted})"
    );
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("/a/", at(compacted - 1)).await,
        Err(StoreError::Compacted { .. })
    ));
    let list = store
        .list("/a/", at(current - 50))
        .await
        .expect("list inside the window");
    assert_eq!(list.items.len(), 150);
    backend.close(store).await;

    // The compacted revision is durable.
    let store = backend.open("auto").await;
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        compacted
    );
    backend.close(store).await;
}

#[tokio::test]
async fn auto_compaction_keeps_young_history() {
    let backend = RedbBackend::new(RedbOptions {
        history_revisions: Some(10),
        history_duration: Some(Duration::from_secs(3600)),
        ..RedbOptions::default()
    });
    let store = backend.open("young").await;
    for i in 0..100 {
        store
            .create(&format!("/y/{i:03}"), vec![])
            .await
            .expect("create");
    }
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        0,
        "events younger than history_duration are kept"
    );
    backend.close(store).await;
}

/// Short lists are read in place and long ones on the blocking pool: around the cut (32 keys)
/// both give the same items, counts and continuation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_and_long_lists_agree() {
    let backend = RedbBackend::new(RedbOptions::default());
    let store = backend.open("short_and_long_lists_agree").await;
    for n in [31usize, 32, 33, 100] {
        for i in 0..n {
            let key = format!("/n{n}/k{i:03}");
            store.create(&key, key.clone().into_bytes()).await.expect("create");
        }
    }
    for n in [31usize, 32, 33, 100] {
        let prefix = format!("/n{n}/");
        let all = store.list(&prefix, ListOptions::default()).await.expect("list");
        let keys: Vec<String> = all.items.iter().map(|kv| kv.key.clone()).collect();
        let expected: Vec<String> = (0..n).map(|i| format!("/n{n}/k{i:03}")).collect();
        assert_eq!(keys, expected, "{prefix}");
        assert!(all.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
        assert!(!all.more && all.remaining == 0);
        let mut page = store
            .list(&prefix, ListOptions { limit: Some(30), ..ListOptions::default() })
            .await
            .expect("first page");
        assert_eq!((page.items.len(), page.remaining), (30, n as u64 - 30), "{prefix}");
        let mut listed = page.items.len();
        while page.more {
            let after = page.items.last().map(|kv| kv.key.clone());
            page = store
                .list(&prefix, ListOptions { limit: Some(30), start_after: after, revision: Some(page.revision) })
                .await
                .expect("next page");
            listed += page.items.len();
        }
        assert_eq!(listed, n, "{prefix} paged");
    }
    // `list_into` hands over what `list` returns, in place or not, now and at an older revision
    // (the history walk), with or without a limit: start (the revision), items, end.
    #[derive(Default)]
    struct Heard {
        started: Option<i64>,
        items: Vec<crate::KeyValue>,
        ended: Option<crate::ListSummary>,
    }
    struct Sink(std::sync::Arc<std::sync::Mutex<Heard>>);
    impl crate::ListSink for Sink {
        fn start(&mut self, revision: i64) {
            let mut heard = self.0.lock().expect("heard");
            assert!(heard.started.is_none() && heard.items.is_empty(), "start comes first, once");
            heard.started = Some(revision);
        }
        fn item(&mut self, item: crate::ItemRef<'_>) {
            let mut heard = self.0.lock().expect("heard");
            assert!(heard.started.is_some() && heard.ended.is_none(), "items between start and end");
            heard.items.push(item.to_key_value());
        }
        fn end(&mut self, summary: &crate::ListSummary) {
            self.0.lock().expect("heard").ended = Some(*summary);
        }
    }
    let before = store.current_revision().await.expect("revision");
    for n in [31usize, 100] {
        let key = format!("/n{n}/k005");
        let kv = store.get(&key).await.expect("get").expect("exists");
        store.update(&key, b"changed".to_vec(), kv.mod_revision).await.expect("update");
        store.delete(&format!("/n{n}/k007"), None).await.expect("delete");
    }
    for n in [31usize, 32, 33, 100] {
        let prefix = format!("/n{n}/");
        for opts in [
            ListOptions::default(),
            ListOptions { revision: Some(before), ..ListOptions::default() },
            ListOptions { limit: Some(10), ..ListOptions::default() },
            ListOptions { limit: Some(10), revision: Some(before), ..ListOptions::default() },
        ] {
            let listed = store.list(&prefix, opts.clone()).await.expect("list");
            let heard = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
            let summary = store
                .list_into(&prefix, opts.clone(), Box::new(Sink(heard.clone())))
                .await
                .expect("list_into");
            let heard = heard.lock().expect("heard");
            assert_eq!(heard.items, listed.items, "{prefix} {opts:?}");
            assert_eq!(heard.started, Some(listed.revision), "{prefix} {opts:?}");
            assert_eq!(heard.ended, Some(summary), "{prefix} {opts:?}");
            assert_eq!(
                (summary.revision, summary.more, summary.remaining),
                (listed.revision, listed.more, listed.remaining),
                "{prefix} {opts:?}"
            );
        }
    }
    backend.close(store).await;
}

#[tokio::test]
async fn corrupt_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.redb");
    std::fs::write(&path, vec![0xAB; 64 * 1024]).expect("write garbage");
    match RedbStore::open(&path, RedbOptions::default()) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("garbage.redb"), "{msg}"),
        Err(e) => panic!("expected a Backend error, got {e}"),
        Ok(_) => panic!("a garbage file must not open"),
    }
}

const CRASH_CHILD_ENV: &str = "KAJI_STORE_CRASH_CHILD_DB";
const CRASH_TEST: &str = "redb_store::tests::crash_keeps_every_acknowledged_write";

fn crash_value(key: &str) -> Vec<u8> {
    key.as_bytes().repeat(32)
}

/// Re-executes this test binary as a writer that prints every acknowledged write, kills it
/// with SIGKILL mid-way, and checks that the reopened file has every acknowledged write.
#[test]
fn crash_keeps_every_acknowledged_write() {
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(std::path::Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout);

    let mut acked = Vec::new(); // (key, revision)
    let mut counter_acked = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 400 {
        if Instant::now() > deadline || !read_ack(&mut lines, &mut acked, &mut counter_acked) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the writer child acknowledged only {} writes before it stopped or timed out",
                acked.len()
            );
        }
    }
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("reap the writer");
    assert!(
        !status.success(),
        "the writer must have been killed, not finished"
    );
    // Whatever it printed before dying was acknowledged too.
    while read_ack(&mut lines, &mut acked, &mut counter_acked) {}

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = RedbStore::open(&path, RedbOptions::default()).expect("reopen after crash");
        let mut max_revision = 0;
        for (key, revision) in &acked {
            let kv = store
                .get(key)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged key {key} lost in the crash"));
            assert_eq!(kv.value, crash_value(key), "value of {key}");
            assert_eq!(kv.mod_revision, *revision, "revision of {key}");
            max_revision = max_revision.max(*revision);
        }
        let counter = store
            .get("/crash/counter")
            .await
            .expect("get")
            .expect("counter");
        let n: u64 = String::from_utf8_lossy(&counter.value)
            .parse()
            .expect("number");
        assert!(
            n >= counter_acked,
            "counter {n} < acknowledged {counter_acked}"
        );
        let current = store.current_revision().await.expect("revision");
        assert!(current >= max_revision);
        let next = store
            .create("/crash/after", vec![])
            .await
            .expect("write after crash");
        assert_eq!(
            next.mod_revision,
            current + 1,
            "the revision counter goes on"
        );
        store.close().await.expect("close");
    });
    eprintln!(
        "crash test: {} acknowledged creates, counter {counter_acked}, all present",
        acked.len()
    );
}

/// Reads one line of the child's output; false at its end.
fn read_ack(
    lines: &mut impl BufRead,
    acked: &mut Vec<(String, i64)>,
    counter_acked: &mut u64,
) -> bool {
    let mut line = String::new();
    match lines.read_line(&mut line) {
        Ok(0) | Err(_) => return false,
        Ok(_) => {}
    }
    // A line cut short by the kill was never completely acknowledged on our side.
    let Some(line) = line.strip_suffix('\n') else {
        return true;
    };
    let fields: Vec<_> = line.split(' ').collect();
    match fields.as_slice() {
        ["ack", key, revision] => {
            acked.push(((*key).to_string(), revision.parse().expect("revision")));
        }
        ["counter", n] => *counter_acked = (*counter_acked).max(n.parse().expect("counter")),
        _ => {} // the test harness's own output
    }
    true
}

/// The child side: concurrent writers printing each acknowledged write, until killed.
fn crash_child(path: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store =
            std::sync::Arc::new(RedbStore::open(path, RedbOptions::default()).expect("open store"));
        store
            .create("/crash/counter", b"0".to_vec())
            .await
            .expect("create counter");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded, in case the parent never kills us.
                for i in 0..20_000 {
                    let key = format!("/crash/{t}/{i}");
                    let kv = store.create(&key, crash_value(&key)).await.expect("create");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {key} {}", kv.mod_revision).expect("stdout");
                    out.flush().expect("stdout");
                }
            }));
        }
        let counter = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20_000 {
                let kv = counter
                    .get("/crash/counter")
                    .await
                    .expect("get")
                    .expect("counter");
                let n: u64 = String::from_utf8_lossy(&kv.value).parse().expect("number");
                let next = (n + 1).to_string().into_bytes();
                counter
                    .update("/crash/counter", next, kv.mod_revision)
                    .await
                    .expect("only this task updates the counter");
                let mut out = std::io::stdout().lock();
                writeln!(out, "counter {}", n + 1).expect("stdout");
                out.flush().expect("stdout");
            }
        }));
        for task in tasks {
            task.await.expect("writer task");
        }
    });
}
