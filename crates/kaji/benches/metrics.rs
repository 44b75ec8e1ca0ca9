//! Metrics and HPA benchmark (issue 10): `kaji server` with hollow nodes whose pods report
//! synthetic usage (simulation: `kaji.io/hollow-cpu-millicores`). Measures
//! - the metrics API's latency: list of every PodMetrics, get of one, list of NodeMetrics
//!   (`kubectl top pod -A` / `kubectl top pod x` / `kubectl top node`), p50/p99;
//! - the HPA's reaction time: from creating an HPA over a Deployment running at 180% of its
//!   target to the first rescale and to its maximum, at the given metric resolution and sync
//!   period (upstream's 15 s and 15 s by default);
//! - the server's CPU and RSS while scraping.
//!
//! Sizes: KAJI_BENCH_NODES (100), KAJI_BENCH_PODS (1000); KAJI_BENCH_RESOLUTION (15s),
//! KAJI_BENCH_SYNC (15s).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each bench uses part of it
mod common;
use common::{Proc, usage};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn metrics_api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    if kind == "PodMetrics" {
        Api::namespaced_with(client.clone(), "default", &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// What one timed call asks: a list (with a label selector) or a get.
enum Call<'a> {
    List(&'a Api<DynamicObject>, &'a str),
    Get(&'a Api<DynamicObject>, &'a str),
}

async fn timed(name: &str, call: Call<'_>, n: usize) -> anyhow::Result<()> {
    let mut lat = Vec::with_capacity(n);
    let mut items = 0;
    for _ in 0..n {
        let t = Instant::now();
        items = match &call {
            Call::List(api, sel) => api.list(&ListParams::default().labels(sel)).await?.items.len(),
            Call::Get(api, name) => api.get(name).await.map(|_| 1)?,
        };
        lat.push(t.elapsed());
    }
    lat.sort();
    println!("{name:<36} {items:>6} items  p50 {:>8.2} ms  p99 {:>8.2} ms", pct(&lat, 0.5), pct(&lat, 0.99));
    Ok(())
}

fn deployment(name: &str, replicas: usize, millicores: u32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {
                    "kaji.io/hollow-cpu-millicores": millicores.to_string(),
                    "kaji.io/hollow-memory-bytes": "8388608"}},
                "spec": {"containers": [{"name": "c", "image": "nginx",
                    "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}}]},
            },
        },
    }))
    .expect("deployment")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = env_or("KAJI_BENCH_NODES", "100");
    let pods: usize = env_or("KAJI_BENCH_PODS", "1000").parse()?;
    let resolution = env_or("KAJI_BENCH_RESOLUTION", "15s");
    let sync = env_or("KAJI_BENCH_SYNC", "15s");
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let server = Proc(
        Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", &port, "--data-dir", &data])
            .args(["--hollow-nodes", &nodes, "--metric-resolution", &resolution, "--horizontal-pod-autoscaler-sync-period", &sync])
            .env("KAJI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = server.0.id();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let client = common::ready_client(&kubeconfig).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("load", pods, 20)).await?;
    let t0 = Instant::now();
    loop {
        let d = deployments.get("load").await?;
        if d.status.and_then(|s| s.available_replicas).unwrap_or(0) as usize == pods {
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "pods did not start");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{pods} hollow pods on {nodes} hollow nodes Running after {:.1} s", t0.elapsed().as_secs_f64());
    // Metrics exist from the second scrape on.
    let t0 = Instant::now();
    let pod_metrics = metrics_api(&client, "PodMetrics", "pods");
    let node_metrics = metrics_api(&client, "NodeMetrics", "nodes");
    loop {
        if pod_metrics.list(&ListParams::default()).await?.items.len() >= pods {
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(300), "pod metrics did not appear");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("metrics of all pods served {:.1} s after they ran (resolution {resolution})", t0.elapsed().as_secs_f64());
    let (cpu0, _) = usage(pid);
    let t_scrape = Instant::now();
    timed("list PodMetrics (all pods)", Call::List(&pod_metrics, ""), 50).await?;
    timed("list PodMetrics -l app=load", Call::List(&pod_metrics, "app=load"), 50).await?;
    let one = pod_metrics.list(&ListParams::default()).await?.items[0].metadata.name.clone().unwrap_or_default();
    timed("get PodMetrics (one pod)", Call::Get(&pod_metrics, &one), 200).await?;
    timed("list NodeMetrics", Call::List(&node_metrics, ""), 50).await?;

    // HPA reaction: 2 replicas at 90m of 100m against a 50% target.
    deployments.create(&PostParams::default(), &deployment("web", 2, 90)).await?;
    loop {
        if pod_metrics.list(&ListParams::default().labels("app=web")).await?.items.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}});
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let t0 = Instant::now();
    hpas.create(&PostParams::default(), &serde_json::from_value(hpa)?).await?;
    let mut first = None;
    loop {
        let r = deployments.get("web").await?.spec.and_then(|s| s.replicas).unwrap_or(0);
        if r > 2 && first.is_none() {
            first = Some(t0.elapsed());
        }
        if r == 10 {
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "the HPA did not reach 10 replicas");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "HPA reaction (resolution {resolution}, sync period {sync}): first rescale after {:.2} s, 2 -> 10 replicas after {:.2} s",
        first.unwrap_or_default().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let (cpu1, rss) = usage(pid);
    println!(
        "server (API server, controllers, scheduler, hollow nodes, scraper): {:.2} CPU cores on average over the last {:.0} s, RSS {rss:.0} MiB",
        (cpu1 - cpu0) / t_scrape.elapsed().as_secs_f64(),
        t_scrape.elapsed().as_secs_f64(),
    );
    drop(server);
    Ok(())
}
