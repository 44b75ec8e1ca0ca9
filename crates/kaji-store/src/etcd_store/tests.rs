//! The store behaviour suite on a real etcd member (Debian's `etcd`), one member per test so
//! that tests run in parallel and the suite's revision arithmetic holds; and what only etcd has.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{EtcdOptions, EtcdStore};
use crate::testsuite::{self, Backend};
use crate::{ListOptions, Store, StoreError, WatchCache};

const ETCD: &str = "/usr/bin/etcd";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One etcd member on free loopback ports with its data in a temporary directory; killed and
/// removed when dropped.
pub(super) struct Member {
    child: Child,
    dir: tempfile::TempDir,
    pub url: String,
}

impl Member {
    pub(super) fn start() -> Member {
        Member::start_with(None)
    }

    /// With `tls`, etcd serves clients over TLS with `server.crt`/`server.key` from that
    /// directory and requires client certificates signed by its `ca.crt`.
    fn start_with(tls: Option<&Path>) -> Member {
        // On tmpfs when there is one: the tests measure the store, not the disk's fsync.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("kaji-etcd-")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("kaji-etcd-").tempdir()
        }
        .expect("tempdir");
        // A free port can be taken by a parallel test's member between our probe and etcd's
        // bind: that etcd then exits, and requests would reach the other test's member. So
        // wait for this member's own "ready" line, and try new ports if it exited instead.
        for attempt in 1..=5 {
            let (client, peer) = (free_port(), free_port());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log_path = dir.path().join("etcd.log");
            let log = std::fs::File::create(&log_path).expect("log file");
            let _ = std::fs::remove_dir_all(dir.path().join("data"));
            let mut etcd = Command::new(ETCD);
            etcd.arg("--name=test")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--advertise-client-urls={url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=test={peer_url}"));
            if let Some(tls) = tls {
                etcd.arg(format!("--cert-file={}", tls.join("server.crt").display()))
                    .arg(format!("--key-file={}", tls.join("server.key").display()))
                    .arg(format!(
                        "--trusted-ca-file={}",
                        tls.join("ca.crt").display()
                    ))
                    .arg("--client-cert-auth");
            }
            let mut child = etcd
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {ETCD}: {e} (apt-get install etcd-server)"));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!(
                        "etcd exited ({status}) on attempt {attempt}: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    break;
                }
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                if text.contains("ready to serve client requests") {
                    return Member { child, dir, url };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("etcd not ready after 30 s:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("etcd could not start on free ports in 5 attempts")
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn options(&self) -> EtcdOptions {
        EtcdOptions::new([self.url.clone()])
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct EtcdBackend {
    member: Member,
}

#[async_trait::async_trait]
impl Backend for EtcdBackend {
    type Store = EtcdStore;

    async fn open(&self, _name: &str) -> EtcdStore {
        match EtcdStore::connect(self.member.options()).await {
            Ok(store) => store,
            Err(e) => panic!("connecting to etcd: {e}\netcd log:\n{}", self.member.log()),
        }
    }

    /// Closing is dropping the client; the data stays in etcd for the next connection.
    async fn close(&self, store: EtcdStore) {
        drop(store);
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            testsuite::$name(&EtcdBackend { member: Member::start() }).await;
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
);

/// The whole suite on one member, as `run_all` runs it (revisions go on from test to test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_member() {
    let backend = EtcdBackend {
        member: Member::start(),
    };
    let started = Instant::now();
    testsuite::run_all(&backend).await;
    eprintln!("store suite on etcd: {:?}", started.elapsed());
}

/// Keys are stored as given, so etcd's own tools show the API server's layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_as_given() {
    let member = Member::start();
    let store = EtcdStore::connect(member.options()).await.expect("connect");
    store
        .create("/registry/namespaces/default", b"{}".to_vec())
        .await
        .expect("create");
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", member.url))
        .args(["get", "--prefix", "/registry/", "--keys-only"])
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "etcdctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "/registry/namespaces/default"
    );
}

/// A key prefix namespaces everything: lists, watches and writes see only their own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_isolates_stores() {
    let member = Member::start();
    let plain = EtcdStore::connect(member.options()).await.expect("connect");
    let mut opts = member.options();
    opts.key_prefix = "/tenant".into();
    let tenant = EtcdStore::connect(opts).await.expect("connect");
    plain.create("/a/x", vec![1]).await.expect("create");
    let kv = tenant
        .create("/a/x", vec![2])
        .await
        .expect("same key, other prefix");
    assert_eq!(kv.key, "/a/x", "keys come back without the prefix");
    let mine = tenant
        .list("/a/", ListOptions::default())
        .await
        .expect("list");
    assert_eq!(mine.items, vec![kv]);
    let all = plain.list("/", ListOptions::default()).await.expect("list");
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/x", "/tenant/a/x"]);
}

/// An etcd that stops answering gives `etcdserver: request timed out`, as kube-apiserver
/// reports it, once: later requests fail at once with the same text; the client works again
/// once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_etcd_times_out() {
    let member = Member::start();
    let mut opts = member.options();
    opts.request_timeout = Duration::from_secs(1);
    let store = EtcdStore::connect(opts).await.expect("connect");
    store.create("/t/a", vec![]).await.expect("create");
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(member.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig}");
    };
    signal("STOP");
    let started = Instant::now();
    let result = store.create("/t/b", vec![]).await;
    let took = started.elapsed();
    let again = Instant::now();
    let second = store.get("/t/a").await;
    let second_took = again.elapsed();
    signal("CONT");
    match result {
        Err(StoreError::Backend(text)) => assert_eq!(text, "etcdserver: request timed out"),
        other => panic!("write to a stopped etcd: expected a timeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "the timeout took {took:?}");
    match second {
        Err(StoreError::Backend(text)) => assert_eq!(text, "etcdserver: request timed out"),
        other => panic!("read after a timeout: expected a timeout, got {other:?}"),
    }
    assert!(
        second_took < Duration::from_millis(100),
        "the next request failed at once, not after {second_took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get("/t/a").await {
            Ok(Some(kv)) => {
                assert_eq!(kv.key, "/t/a");
                break;
            }
            other if Instant::now() > deadline => panic!("get after etcd came back: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    eprintln!(
        "requests work again {:?} after etcd came back",
        again.elapsed()
    );
}

/// No etcd at the endpoint: connect fails with a message naming it, within the dial timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_nothing_fails_clearly() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut opts = EtcdOptions::new([url.clone()]);
    opts.dial_timeout = Duration::from_secs(1);
    match EtcdStore::connect(opts).await {
        Err(StoreError::Backend(text)) => {
            assert!(
                text.contains(&url) && text.contains("did not answer"),
                "{text}"
            );
        }
        Err(e) => panic!("expected a backend error, got {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    let bad = EtcdOptions::new(["127.0.0.1:2379"]);
    match EtcdStore::connect(bad).await {
        Err(StoreError::Backend(text)) => assert!(text.contains("expected http://"), "{text}"),
        Err(e) => panic!("expected a backend error, got {e}"),
        Ok(_) => panic!("connected without a scheme"),
    }
}

/// A CA, etcd's serving certificate (127.0.0.1) and a client certificate, as PEM files in `dir`.
fn write_certificates(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("write PEM");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(DnType::CommonName, "etcd-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    write("ca.crt", ca.self_signed(&ca_key).expect("CA").pem());
    let issuer = Issuer::new(ca, ca_key);
    for (name, usage) in [
        ("server", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        write(&format!("{name}.crt"), cert.pem());
        write(&format!("{name}.key"), key.serialize_pem());
    }
}

/// etcd with client-certificate authentication (k3s's --datastore-cafile/certfile/keyfile):
/// the store works with the client certificate, and without one the connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let certs = tempfile::tempdir().expect("tempdir");
    write_certificates(certs.path());
    let member = Member::start_with(Some(certs.path()));
    let mut opts = member.options();
    opts.ca_file = Some(certs.path().join("ca.crt"));
    opts.cert_file = Some(certs.path().join("client.crt"));
    opts.key_file = Some(certs.path().join("client.key"));
    let store = match EtcdStore::connect(opts.clone()).await {
        Ok(store) => store,
        Err(e) => panic!("connecting over TLS: {e}\netcd log:\n{}", member.log()),
    };
    let kv = store.create("/t/a", b"x".to_vec()).await.expect("create");
    assert_eq!(store.get("/t/a").await.expect("get"), Some(kv));

    let mut anonymous = opts.clone();
    anonymous.cert_file = None;
    anonymous.key_file = None;
    anonymous.dial_timeout = Duration::from_secs(2);
    assert!(
        EtcdStore::connect(anonymous).await.is_err(),
        "etcd requires a client certificate"
    );
    let mut no_ca = opts;
    no_ca.ca_file = None;
    match EtcdStore::connect(no_ca).await {
        Err(StoreError::Backend(text)) => assert!(text.contains("--datastore-cafile"), "{text}"),
        Err(e) => panic!("expected a backend error, got {e}"),
        Ok(_) => panic!("connected over https without a CA"),
    }
}

/// The suite's stores behind a [`WatchCache`] of `capacity` events.
struct CachedBackend {
    member: Member,
    capacity: usize,
}

#[async_trait::async_trait]
impl Backend for CachedBackend {
    type Store = WatchCache<EtcdStore>;

    async fn open(&self, _name: &str) -> WatchCache<EtcdStore> {
        match EtcdStore::connect(self.member.options()).await {
            Ok(store) => {
                let cache = WatchCache::new(store, self.capacity);
                cache.until_live().await;
                cache
            }
            Err(e) => panic!("connecting to etcd: {e}\netcd log:\n{}", self.member.log()),
        }
    }

    async fn close(&self, store: WatchCache<EtcdStore>) {
        drop(store);
    }
}

/// The whole suite through the watch cache: watches served from memory behave as etcd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_through_the_watch_cache() {
    let backend = CachedBackend {
        member: Member::start(),
        capacity: 10_000,
    };
    testsuite::run_all(&backend).await;
}

/// Watches served from the cache report how far they have come (etcd alone does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_through_the_watch_cache() {
    let backend = CachedBackend {
        member: Member::start(),
        capacity: 10_000,
    };
    testsuite::watch_progress_follows_the_store(&backend).await;
}

/// With a window of one event, every watcher keeps falling back to etcd: still the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_through_a_tiny_watch_cache() {
    let backend = CachedBackend {
        member: Member::start(),
        capacity: 1,
    };
    testsuite::run_all(&backend).await;
}

/// etcd's count of open watchers (its Prometheus gauge).
fn etcd_watchers(member: &Member) -> u64 {
    use std::io::{Read, Write};
    let addr = member.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to etcd");
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut body = String::new();
    conn.read_to_string(&mut body).expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or_else(
            || panic!("no watcher gauge in etcd's metrics"),
            |v| v as u64,
        )
}

/// N watchers through the cache cost etcd one watcher; each still sees every event. Prints how
/// long 50 watchers take to see 500 writes, with and without the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_share_one_etcd_watch() {
    const WATCHERS: usize = 50;
    const WRITES: usize = 500;
    let member = Member::start();
    let direct = EtcdStore::connect(member.options()).await.expect("connect");
    let cached = WatchCache::new(
        EtcdStore::connect(member.options()).await.expect("connect"),
        10_000,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cached.is_live() {
        assert!(Instant::now() < deadline, "the watch cache did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = etcd_watchers(&member);

    async fn run(store: &dyn Store, prefix: &str, member: &Member) -> (Duration, u64) {
        let mut watches = Vec::new();
        for _ in 0..WATCHERS {
            watches.push(store.watch(prefix, 0).await.expect("watch"));
        }
        let open = etcd_watchers(member);
        let started = Instant::now();
        for i in 0..WRITES {
            store
                .create(&format!("{prefix}{i:04}"), vec![])
                .await
                .expect("create");
        }
        let readers: Vec<_> = watches
            .into_iter()
            .map(|mut w| {
                tokio::spawn(async move {
                    for i in 0..WRITES {
                        let e = tokio::time::timeout(Duration::from_secs(20), w.next())
                            .await
                            .expect("an event within 20 s")
                            .expect("the watch goes on")
                            .expect("an event");
                        assert!(e.kv.key.ends_with(&format!("{i:04}")), "in order: {e:?}");
                    }
                })
            })
            .collect();
        for r in readers {
            r.await.expect("reader");
        }
        (started.elapsed(), open)
    }
    use futures::StreamExt;
    let (through_cache, cache_watchers) = run(&cached, "/cached/", &member).await;
    let (straight, direct_watchers) = run(&direct, "/direct/", &member).await;
    assert!(
        cache_watchers <= base,
        "{WATCHERS} cached watches opened {} etcd watchers",
        cache_watchers - base
    );
    assert!(
        direct_watchers >= base + WATCHERS as u64,
        "direct watches are etcd watchers ({direct_watchers}, base {base})"
    );
    eprintln!(
        "{WATCHERS} watchers x {WRITES} writes: {through_cache:?} through the watch cache (1 etcd watcher), {straight:?} straight on etcd ({WATCHERS} etcd watchers)"
    );
}

/// Lists of 1,000 and 10,000 keys (1 KiB each) from etcd and through the watch cache: the same
/// items, the cache's from memory (a list at its revision still answers while etcd is frozen);
/// prints the timings of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_served_from_the_watch_cache() {
    const WRITERS: usize = 32;
    let member = Member::start();
    let direct = std::sync::Arc::new(EtcdStore::connect(member.options()).await.expect("connect"));
    for n in [1_000usize, 10_000] {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = direct.clone();
                tokio::spawn(async move {
                    for i in (w..n).step_by(WRITERS) {
                        store
                            .create(&format!("/list/{n}/{i:05}"), vec![b'x'; 1024])
                            .await
                            .expect("create");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
    }
    let cached = WatchCache::new(
        EtcdStore::connect(member.options()).await.expect("connect"),
        10_000,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cached.is_live() {
        assert!(Instant::now() < deadline, "the watch cache did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    async fn timed(store: &dyn Store, prefix: &str) -> (Duration, crate::ListResult) {
        const ROUNDS: u32 = 5;
        let started = Instant::now();
        let mut last = None;
        for _ in 0..ROUNDS {
            last = Some(
                store
                    .list(prefix, ListOptions::default())
                    .await
                    .expect("list"),
            );
        }
        (started.elapsed() / ROUNDS, last.expect("a list"))
    }
    for n in [1_000usize, 10_000] {
        let prefix = format!("/list/{n}/");
        let (from_etcd, etcd_list) = timed(&*direct, &prefix).await;
        let (from_cache, cache_list) = timed(&cached, &prefix).await;
        assert_eq!(cache_list.items.len(), n);
        assert_eq!(
            cache_list.items, etcd_list.items,
            "the cache lists what etcd does"
        );
        assert_eq!(cache_list.revision, etcd_list.revision);
        eprintln!(
            "LIST of {n} keys: {from_etcd:?} from etcd, {from_cache:?} through the watch cache"
        );
    }
    // Pages at the cache's revision come from memory: etcd is not asked.
    let first = cached
        .list(
            "/list/10000/",
            ListOptions {
                limit: Some(500),
                ..ListOptions::default()
            },
        )
        .await
        .expect("first page");
    assert!(first.more);
    assert_eq!(first.remaining, 9_500);
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(member.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig}");
    };
    signal("STOP");
    let next = cached
        .list(
            "/list/10000/",
            ListOptions {
                limit: Some(500),
                start_after: first.items.last().map(|kv| kv.key.clone()),
                revision: Some(first.revision),
            },
        )
        .await;
    signal("CONT");
    let next = next.expect("the next page from memory");
    assert_eq!(
        next.items.first().map(|kv| kv.key.as_str()),
        Some("/list/10000/00500")
    );
    assert_eq!(next.remaining, 9_000);
}

/// Behind a key prefix, others' writes take revisions the cache never sees: lists of the
/// current state go to etcd at once (no wait for a revision that never comes) and are current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_lists_under_a_key_prefix() {
    let member = Member::start();
    let other = EtcdStore::connect(member.options()).await.expect("connect");
    let mut opts = member.options();
    opts.key_prefix = "/tenant".into();
    let cached = WatchCache::new(EtcdStore::connect(opts).await.expect("connect"), 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cached.is_live() {
        assert!(Instant::now() < deadline, "the watch cache did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mine = cached.create("/a/x", vec![1]).await.expect("create");
    other
        .create("/a/y", vec![2])
        .await
        .expect("another tenant's write");
    let started = Instant::now();
    let list = cached
        .list("/a/", ListOptions::default())
        .await
        .expect("list");
    assert!(
        started.elapsed() < super::super::watch_cache::CATCH_UP,
        "the list waited {:?}",
        started.elapsed()
    );
    assert_eq!(list.items, vec![mine]);
    assert_eq!(
        list.revision,
        other.current_revision().await.expect("revision")
    );
}
