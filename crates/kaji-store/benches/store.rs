//! A small benchmark of the redb store: `cargo bench -p kaji-store`.
//!
//! Prints throughput and p50/p99 latency for creates (1 and 64 concurrent writers), gets, a
//! list of 10k keys, and watch fan-out. No framework: plain `Instant`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kaji_store::{ListOptions, RedbOptions, RedbStore, Store};

const VALUE_SIZE: usize = 512;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        RedbStore::open(&dir.path().join("bench.redb"), RedbOptions::default()).expect("open"),
    );
    let epoch = Instant::now();

    creates(&store, "creates, 1 writer", 1, 1_000).await;
    creates(&store, "creates, 64 writers", 64, 160).await;
    // Fill up to 10k keys under one prefix for the reads.
    let filled = fill(&store, "/bench/list/", 10_000).await;
    gets(&store, &filled, 1, 20_000).await;
    gets(&store, &filled, 8, 5_000).await;
    lists(&store).await;
    watch_fan_out(&store, epoch, 100, 64, 40).await;

    let store = Arc::into_inner(store).expect("no other users");
    store.close().await.expect("close");
}

async fn creates(store: &Arc<RedbStore>, name: &str, writers: usize, per_writer: usize) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let key = format!("/bench/{name}/{w}/{i}");
                    let t = Instant::now();
                    store
                        .create(&key, vec![7; VALUE_SIZE])
                        .await
                        .expect("create");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    report(name, latencies, start.elapsed());
}

async fn fill(store: &Arc<RedbStore>, prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:06}")).collect();
    let tasks: Vec<_> = keys
        .chunks(n.div_ceil(64))
        .map(|chunk| {
            let store = store.clone();
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for key in chunk {
                    store.create(&key, vec![1; VALUE_SIZE]).await.expect("fill");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("fill task");
    }
    keys
}

async fn gets(store: &Arc<RedbStore>, keys: &[String], readers: usize, per_reader: usize) {
    let keys = Arc::new(keys.to_vec());
    let start = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|r| {
            let store = store.clone();
            let keys = keys.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_reader);
                for i in 0..per_reader {
                    // A cheap spread over the keys, different per reader.
                    let key = &keys[(i * 7919 + r * 104_729) % keys.len()];
                    let t = Instant::now();
                    let found = store.get(key).await.expect("get");
                    latencies.push(t.elapsed());
                    assert!(found.is_some());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    report(
        &format!("gets, {readers} readers"),
        latencies,
        start.elapsed(),
    );
}

async fn lists(store: &Arc<RedbStore>) {
    let mut latencies = Vec::new();
    let start = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        let list = store
            .list("/bench/list/", ListOptions::default())
            .await
            .expect("list");
        latencies.push(t.elapsed());
        assert_eq!(list.items.len(), 10_000);
    }
    report("list 10k keys (whole)", latencies, start.elapsed());

    // Paged by 500 at the first page's revision, with writes in between: the revision is old.
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut opts = ListOptions {
        limit: Some(500),
        ..ListOptions::default()
    };
    let mut total = 0;
    let mut page_no = 0;
    loop {
        let t = Instant::now();
        let page = store
            .list("/bench/list/", opts.clone())
            .await
            .expect("page");
        latencies.push(t.elapsed());
        total += page.items.len();
        if !page.more {
            break;
        }
        page_no += 1;
        store
            .create(&format!("/bench/paging/{page_no}"), vec![0; VALUE_SIZE])
            .await
            .expect("write between pages");
        opts.revision = Some(page.revision);
        opts.start_after = page.items.last().map(|kv| kv.key.clone());
    }
    assert_eq!(total, 10_000);
    report("list 10k keys (pages of 500)", latencies, start.elapsed());
}

async fn watch_fan_out(
    store: &Arc<RedbStore>,
    epoch: Instant,
    watchers: usize,
    writers: usize,
    per_writer: usize,
) {
    let events = writers * per_writer;
    let mut streams = Vec::new();
    for _ in 0..watchers {
        streams.push(store.watch("/bench/watch/", 0).await.expect("watch"));
    }
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(events);
                for _ in 0..events {
                    let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
                        .await
                        .expect("event in time")
                        .expect("stream open")
                        .expect("event");
                    let sent = u64::from_le_bytes(event.kv.value[..8].try_into().expect("ts"));
                    let now = u64::try_from(epoch.elapsed().as_nanos()).expect("ns");
                    latencies.push(Duration::from_nanos(now.saturating_sub(sent)));
                }
                latencies
            })
        })
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let now = u64::try_from(epoch.elapsed().as_nanos()).expect("ns");
                    let mut value = now.to_le_bytes().to_vec();
                    value.resize(VALUE_SIZE, 0);
                    store
                        .create(&format!("/bench/watch/{w}/{i}"), value)
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let mut latencies = Vec::new();
    for receiver in receivers {
        latencies.extend(receiver.await.expect("receiver"));
    }
    report(
        &format!("watch fan-out: {watchers} watchers x {events} events (write -> delivered)"),
        latencies,
        start.elapsed(),
    );
}

fn report(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i]
    };
    println!(
        "{name:<62} {:>9} ops in {:>8.3}s = {:>10.0} ops/s   p50 {:>9.3?}  p99 {:>9.3?}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
}
