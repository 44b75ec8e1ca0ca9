//! Dashboard memory benchmark (issue 13: "the dashboard adds at most 10 MiB to the server's idle
//! RSS", at 5,000 pods on hollow nodes). Two `kaji server`s run side by side with the same
//! cluster, KAJI_BENCH_PODS (5,000) pods of one Deployment on KAJI_BENCH_NODES (50) hollow
//! nodes, one of them with `--disable dashboard`; nobody opens a page. Both RSS are read every
//! 15 s for KAJI_BENCH_MINUTES (65): the dashboard keeps an hour of CPU and memory history, so
//! its memory is whole only after an hour. Prints a line a minute and, at the end, the median
//! RSS of each server over the last 10 minutes and their difference.
//!
//! What the difference holds: the history, the metrics provider the dashboard's sampler starts
//! (without the dashboard nothing reads metrics, so kubelets are not scraped), and the embedded
//! files (only when a page is served).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each bench uses part of it
mod common;
use common::{Proc, usage};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

struct Server {
    proc: Proc,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

async fn start(nodes: usize, dashboard: bool) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaji"));
    cmd.args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", &port, "--data-dir", &data])
        .args(["--hollow-nodes", &nodes.to_string()]);
    if !dashboard {
        cmd.args(["--disable", "dashboard"]);
    }
    let proc = Proc(cmd.env("KAJI_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let client = common::ready_client(&kubeconfig).await?;
    Ok(Server { proc, client, _dir: dir })
}

async fn run_pods(client: &kube::Client, pods: usize) -> anyhow::Result<()> {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "big"},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": {"app": "big"}},
            "template": {
                "metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &d).await?;
    let t0 = Instant::now();
    loop {
        let d = deployments.get("big").await?;
        if d.status.and_then(|s| s.available_replicas).unwrap_or(0) as usize == pods {
            return Ok(());
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(900), "pods did not start");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = env_or("KAJI_BENCH_NODES", 50);
    let pods = env_or("KAJI_BENCH_PODS", 5000);
    let minutes = env_or("KAJI_BENCH_MINUTES", 65);
    // One after the other, so that the pods' creation does not compete; then both idle together.
    let without = start(nodes, false).await?;
    let with = start(nodes, true).await?;
    let t0 = Instant::now();
    run_pods(&without.client, pods).await?;
    run_pods(&with.client, pods).await?;
    println!(
        "{pods} hollow pods on {nodes} hollow nodes Running in both servers after {:.0} s; RSS now {:.0} MiB without the dashboard, {:.0} MiB with it",
        t0.elapsed().as_secs_f64(),
        usage(without.proc.id()).1,
        usage(with.proc.id()).1
    );
    let t0 = Instant::now();
    let mut samples: Vec<(f64, f64, f64)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    while t0.elapsed() < Duration::from_secs(60 * minutes as u64) {
        tick.tick().await;
        let (a, b) = (usage(without.proc.id()).1, usage(with.proc.id()).1);
        let t = t0.elapsed().as_secs_f64();
        samples.push((t, a, b));
        if samples.len() % 4 == 1 {
            println!("t+{:>4.0} min  without {a:>5.0} MiB  with {b:>5.0} MiB  difference {:>+4.0} MiB", t / 60.0, b - a);
        }
    }
    let end = t0.elapsed().as_secs_f64();
    let last: Vec<_> = samples.iter().filter(|s| s.0 >= end - 600.0).collect();
    let mut a: Vec<f64> = last.iter().map(|s| s.1).collect();
    let mut b: Vec<f64> = last.iter().map(|s| s.2).collect();
    let (a, b) = (median(&mut a), median(&mut b));
    let (cpu_a, _) = usage(without.proc.id());
    let (cpu_b, _) = usage(with.proc.id());
    println!(
        "idle RSS over the last 10 of {minutes} minutes (median of {} readings): without the dashboard {a:.1} MiB, with it {b:.1} MiB: the dashboard adds {:+.1} MiB (budget 10)",
        last.len(),
        b - a
    );
    println!("server CPU seconds for the whole run: without {cpu_a:.0}, with {cpu_b:.0}");
    Ok(())
}
