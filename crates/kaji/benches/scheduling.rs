//! End-to-end scheduler benchmark (issue 4): `kaji server --hollow-nodes N` (API server, store,
//! scheduler and N simulated nodes in one process; no controllers, no real agent), then 10,000
//! pods created by concurrent tasks through the kube-rs client, their bindings seen by a watch.
//! Reports pods/s from the first create to the last binding, and p50/p99 from just before each
//! create call (the bench's clock: creationTimestamp is second-granular) to the watch seeing
//! `spec.nodeName`. The anchor is kube-scheduler's scheduler_perf floor of 680-810 pods/s at
//! 5,000 nodes, which measures the scheduler alone; here a real API server shares the machine.
//! Sizes: KAJI_BENCH_NODES (comma list, "1000,5000"), KAJI_BENCH_PODS (10000),
//! KAJI_BENCH_CREATORS (16 concurrent creating tasks), KAJI_BENCH_RATE (pods a second the
//! creators offer, pod k due k/rate seconds after the first; unset: as fast as they can, and
//! creation outrunning binding then shows as latency); KAJI_BENCH_LOG sets the server's KAJI_LOG
//! (`warn`) and KAJI_BENCH_SERVER_LOG names a file for its log (none); KAJI_BENCH_BIN runs another
//! `kaji` binary (a saved build, to compare two versions on one machine).

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each bench uses part of it
mod common;
use common::{Proc, pct, usage};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    }))
    .expect("pod")
}

fn node_ready(n: &Node) -> bool {
    let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Starts `kaji server` with `nodes` hollow nodes and returns it with a client once it answers.
async fn start(dir: &std::path::Path, nodes: usize) -> anyhow::Result<(Proc, kube::Client)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let server = Proc(
        Command::new(common::kaji_bin())
            .args([
                "server",
                "--disable-agent",
                "--disable-controllers",
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                &port,
            ])
            .arg("--data-dir")
            .arg(dir)
            .args(["--hollow-nodes", &nodes.to_string()])
            .env(
                "KAJI_LOG",
                std::env::var("KAJI_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(match std::env::var_os("KAJI_BENCH_SERVER_LOG") {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::null(),
            })
            .spawn()?,
    );
    let kubeconfig = dir.join("kubeconfig.yaml");
    let start = Instant::now();
    loop {
        if kubeconfig.exists()
            && let Ok(kc) = Kubeconfig::read_from(&kubeconfig)
            && let Ok(cfg) =
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
            && let Ok(c) = kube::Client::try_from(cfg)
            && c.apiserver_version().await.is_ok()
        {
            return Ok((server, c));
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Watches pods from `rv` and records when each is first seen bound; returns once `want` are.
async fn watch_bindings(
    api: Api<Pod>,
    mut rv: String,
    want: usize,
) -> anyhow::Result<HashMap<String, Instant>> {
    let mut bound = HashMap::with_capacity(want);
    while bound.len() < want {
        // A watch may end (server timeout); resume from the last revision seen.
        let mut stream = api
            .watch(
                &WatchParams::default()
                    .fields("spec.nodeName!=")
                    .timeout(290),
                &rv,
            )
            .await?
            .boxed();
        while let Some(ev) = stream.next().await {
            let pod = match ev? {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
            };
            if let Some(v) = &pod.metadata.resource_version {
                rv.clone_from(v);
            }
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
                && let Some(name) = pod.metadata.name
            {
                bound.entry(name).or_insert_with(Instant::now);
                if bound.len() == want {
                    break;
                }
            }
        }
    }
    Ok(bound)
}

async fn run(nodes: usize, pods: usize, creators: usize, offered: Option<f64>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let t_start = Instant::now();
    let (server, client) = start(dir.path(), nodes).await?;
    // Nodes turning Ready, seen by a watch (listing 5,000 nodes twice a second would load the
    // server that is registering them).
    let nodes_api: Api<Node> = Api::all(client.clone());
    let mut ready = HashSet::new();
    let mut events = watcher::watcher(nodes_api, watcher::Config::default()).boxed();
    while ready.len() < nodes {
        let ev =
            tokio::time::timeout_at((t_start + Duration::from_secs(600)).into(), events.next())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("only {}/{nodes} nodes Ready after 10 min", ready.len())
                })?;
        match ev.ok_or_else(|| anyhow::anyhow!("node watch ended"))?? {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                if node_ready(&n) {
                    ready.insert(name);
                } else {
                    ready.remove(&name);
                }
            }
            watcher::Event::Delete(n) => {
                ready.remove(&n.metadata.name.unwrap_or_default());
            }
            _ => {}
        }
    }
    drop(events);
    let (cpu0, rss0) = usage(server.0.id());
    println!(
        "\n{nodes} hollow nodes Ready after {:.1} s; server RSS {rss0:.0} MiB",
        t_start.elapsed().as_secs_f64()
    );

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let rv_start: i64 = rv.parse().unwrap_or(0);
    let watcher = tokio::spawn(watch_bindings(api.clone(), rv, pods));

    let created: Arc<Mutex<HashMap<String, Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(pods)));
    // How long each create call took: the API server's share of the creation rate.
    let create_calls: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::with_capacity(pods)));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..creators {
        let (api, created, calls) = (api.clone(), created.clone(), create_calls.clone());
        tasks.spawn(async move {
            for i in (k..pods).step_by(creators) {
                if let Some(rate) = offered {
                    let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let name = format!("p-{i}");
                let p = pod(&name);
                let at = Instant::now();
                created.lock().expect("lock").insert(name, at);
                api.create(&PostParams::default(), &p).await?;
                calls.lock().expect("lock").push(at.elapsed());
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let create_time = t0.elapsed();
    let bound = tokio::time::timeout(Duration::from_secs(1800), watcher)
        .await
        .map_err(|_| anyhow::anyhow!("not all pods bound after 30 min"))???;
    // Writes the run made (every write is a store revision): the pods' own and the rest.
    let rv_end: i64 = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    let last = bound.values().max().copied().unwrap_or(t0);
    let total = last - t0;
    let (cpu1, rss1) = usage(server.0.id());

    let created = created.lock().expect("lock");
    // Creation -> bound of each pod, in creation order.
    let mut by_order: Vec<(Instant, Duration)> = bound
        .iter()
        .filter_map(|(name, at)| {
            let c = *created.get(name)?;
            Some((c, *at - c))
        })
        .collect();
    by_order.sort();
    let mut lat: Vec<Duration> = by_order.iter().map(|(_, d)| *d).collect();
    lat.sort();
    // Latency by creation order (tenths of the pods, earliest first): a queue that grows shows
    // as rising tenths, a fixed delay in the pipeline as flat ones.
    let tenths: Vec<String> = by_order
        .chunks(by_order.len().div_ceil(10).max(1))
        .map(|c| {
            let mut l: Vec<Duration> = c.iter().map(|(_, d)| *d).collect();
            l.sort();
            format!("{:.0}", pct(&l, 0.50).as_secs_f64() * 1e3)
        })
        .collect();
    let rate = pods as f64 / total.as_secs_f64();
    let mut calls = create_calls.lock().expect("lock").clone();
    calls.sort();
    println!(
        "{pods} pods created by {creators} tasks{} in {:.1} s ({:.0} creates/s); create call p50 {:.1} ms, p99 {:.1} ms",
        offered.map(|r| format!(" offering {r:.0}/s")).unwrap_or_default(),
        create_time.as_secs_f64(),
        pods as f64 / create_time.as_secs_f64(),
        pct(&calls, 0.50).as_secs_f64() * 1e3,
        pct(&calls, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "{nodes} nodes: {pods} pods bound in {:.1} s: {rate:.0} pods/s; creation -> bound p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        total.as_secs_f64(),
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "store writes during the run: {} ({:.1} a pod)",
        rv_end - rv_start,
        (rv_end - rv_start) as f64 / pods as f64
    );
    println!(
        "creation -> bound p50 by creation order (tenths, ms): {}",
        tenths.join(" ")
    );
    println!(
        "server (API server + scheduler + hollow nodes): {:.1} s CPU during the run ({:.2} cores), RSS {rss1:.0} MiB",
        cpu1 - cpu0,
        (cpu1 - cpu0) / total.as_secs_f64()
    );
    println!(
        "anchor: kube-scheduler scheduler_perf floor 680-810 pods/s at 5,000 nodes (scheduler alone): {:.2}x-{:.2}x",
        rate / 810.0,
        rate / 680.0
    );
    drop(server);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods: usize = env_or("KAJI_BENCH_PODS", "10000").parse()?;
    let creators: usize = env_or("KAJI_BENCH_CREATORS", "16").parse::<usize>()?.max(1);
    let rate = match std::env::var("KAJI_BENCH_RATE") {
        Ok(r) => Some(r.parse::<f64>()?).filter(|r| *r > 0.0),
        Err(_) => None,
    };
    for nodes in env_or("KAJI_BENCH_NODES", "1000,5000").split(',') {
        run(nodes.trim().parse()?, pods, creators, rate).await?;
    }
    Ok(())
}
