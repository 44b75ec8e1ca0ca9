//! Controller-manager benchmark (issue 3): how long 1,000 Deployments x 10 replicas take to
//! become Available on 100 hollow nodes, and what the controller manager costs in CPU and RSS.
//! Three processes, so each is measured alone: `kaji server` (API server + scheduler),
//! `kaji agent --hollow` (the simulated nodes) and `kaji controller-manager`.
//! Sizes: KAJI_BENCH_DEPLOYMENTS (1000), KAJI_BENCH_REPLICAS (10), KAJI_BENCH_NODES (100);
//! KAJI_BENCH_BIN runs another build of `kaji`.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each bench uses part of it
mod common;
use common::{Proc, usage};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(common::kaji_bin())
            .args(args)
            .env("KAJI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning kaji"),
    )
}

fn deployment(name: &str, replicas: usize) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                          "spec": {"containers": [{"name": "c", "image": "nginx:1.16",
                                                   "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}},
        },
    }))
    .expect("deployment")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n_deploy = env_or("KAJI_BENCH_DEPLOYMENTS", 1000);
    let replicas = env_or("KAJI_BENCH_REPLICAS", 10);
    let nodes = env_or("KAJI_BENCH_NODES", 100);
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let server = spawn(&[
        "server", "--disable-agent", "--disable-controllers", "--bind-address", "127.0.0.1", "--https-listen-port", &port, "--data-dir", &data,
    ]);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let start = Instant::now();
    let client = common::ready_client(&kubeconfig).await?;
    let token = dir.path().join("token");
    let agent = spawn(&[
        "agent", "--hollow", "--nodes", &nodes.to_string(), "--server", &format!("https://127.0.0.1:{port}"), "--token-file", &token.to_string_lossy(),
    ]);
    let cm = spawn(&["controller-manager", "--kubeconfig", &kubeconfig.to_string_lossy()]);
    let nodes_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    while nodes_api.list(&ListParams::default()).await?.items.len() < nodes {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "hollow nodes did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cm_cpu0, cm_rss0) = usage(cm.id());
    println!("{nodes} hollow nodes registered; controller manager idle RSS {cm_rss0:.1} MiB");

    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..n_deploy).collect::<Vec<_>>().chunks(n_deploy.div_ceil(16).max(1)) {
        let api = api.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for i in chunk {
                api.create(&PostParams::default(), &deployment(&format!("d{i}"), replicas)).await.expect("create deployment");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let created = t0.elapsed();
    let mut peak_rss = 0f64;
    loop {
        let list = api.list(&ListParams::default()).await?;
        let available = list
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) as usize == replicas)
            .count();
        peak_rss = peak_rss.max(usage(cm.id()).1);
        if available == n_deploy {
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(1800), "only {available}/{n_deploy} deployments available after 30 min");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total = t0.elapsed();
    let (cm_cpu1, cm_rss1) = usage(cm.id());
    let (srv_cpu, srv_rss) = usage(server.id());
    let (agent_cpu, agent_rss) = usage(agent.id());
    println!("created {n_deploy} deployments in {:.1} s", created.as_secs_f64());
    println!(
        "{n_deploy} deployments x {replicas} replicas Available on {nodes} hollow nodes after {:.1} s ({:.0} pods/s)",
        total.as_secs_f64(),
        (n_deploy * replicas) as f64 / total.as_secs_f64()
    );
    println!("controller manager: {:.1} s CPU during the run, RSS {cm_rss1:.1} MiB (peak seen {peak_rss:.1} MiB)", cm_cpu1 - cm_cpu0);
    println!("api server + scheduler: {srv_cpu:.1} s CPU in all, RSS {srv_rss:.1} MiB; hollow agent: {agent_cpu:.1} s CPU, RSS {agent_rss:.1} MiB");
    drop((cm, agent, server));
    Ok(())
}
