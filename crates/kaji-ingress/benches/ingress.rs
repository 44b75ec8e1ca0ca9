//! Throughput and latency through the ingress proxy, beside a raw baseline in the same run.
//! A hyper backend on 127.0.0.1, the proxy in front of it (snapshot built by hand), and a load
//! client of keep-alive HTTP/1.1 connections. Figures, not pass/fail:
//! `cargo bench -p kaji-ingress` (env `INGRESS_BENCH_SECS`, `INGRESS_BENCH_CONNS` to vary).

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use kaji_ingress::snapshot::{ClusterState, Snapshot, SnapshotHandle};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"hello from the backend, a small response body\n";

async fn start_backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn start_ingress(backend: SocketAddr) -> anyhow::Result<SocketAddr> {
    let ingresses = vec![Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "bench", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "kaji", "rules": [{"host": "bench.test", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}},
        ]}}]},
    }))?)];
    let services = vec![Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))?)];
    let slices = vec![Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web-1",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
    }))?)];
    let (snap, _) = Snapshot::build(&ClusterState {
        class_name: "kaji",
        ingresses: &ingresses,
        ingress_classes: &[],
        services: &services,
        endpoint_slices: &slices,
        secrets: &[],
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(kaji_ingress::proxy::serve(
        listener,
        SnapshotHandle::new(snap),
        None,
    ));
    Ok(addr)
}

/// One keep-alive connection sending GETs back to back until `until`; latencies in µs.
async fn client(addr: SocketAddr, until: Instant) -> anyhow::Result<Vec<u32>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut lat = Vec::with_capacity(100_000);
    while Instant::now() < until {
        let req = Request::builder()
            .uri("/api/items?id=1")
            .header(header::HOST, "bench.test")
            .body(Empty::<Bytes>::new())?;
        let start = Instant::now();
        let resp = sender.send_request(req).await?;
        anyhow::ensure!(resp.status() == StatusCode::OK, "status {}", resp.status());
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(body.len() == BODY.len(), "short body");
        lat.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(lat)
}

async fn load(name: &str, addr: SocketAddr, conns: usize, secs: u64) -> anyhow::Result<()> {
    // Warm up (connections, pools, caches).
    let warm = Instant::now() + Duration::from_millis(500);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(addr, warm)))
        .collect();
    for t in tasks {
        t.await??;
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(addr, until)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(i).copied().unwrap_or(0)
    };
    println!(
        "{name:<18} {conns:>3} conns  {:>9} requests  {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let secs = std::env::var("INGRESS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let conns = std::env::var("INGRESS_BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let backend = start_backend().await?;
        let ingress = start_ingress(backend).await?;
        println!(
            "kaji-ingress bench: {secs} s per run, {} CPUs, everything in one process on 127.0.0.1",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        load("direct (baseline)", backend, conns, secs).await?;
        load("through ingress", ingress, conns, secs).await?;
        Ok(())
    })
}
