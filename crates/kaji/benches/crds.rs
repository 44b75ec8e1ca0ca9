//! Custom resources benchmark (`cargo bench -p kaji --bench crds`): starts a real `kaji server`
//! (release build) and measures, through kube-rs over HTTPS:
//! - discovery latency: from the CRD's create call until its group/version answers in legacy
//!   discovery (`/apis/<group>/<version>`) and in aggregated discovery (`/apis` as
//!   APIGroupDiscoveryList), and until a create of its first object succeeds;
//! - creates of `KAJI_BENCH_CRS` custom objects (default 10,000) with 32 concurrent clients,
//!   validated against a schema with a dozen fields, beside the same number of ConfigMaps of the
//!   same size (the ratio shows what schema validation, pruning and defaulting cost);
//! - LIST of all of them (p50 of 5), custom objects and ConfigMaps;
//! - watch delivery of custom objects (latency from just before the create call).
//!
//! Numbers are printed, not asserted: performance targets live here, not in tests.

#![recursion_limit = "256"]

#[allow(dead_code)] // each bench uses part of it
mod common;

use common::{pct, run};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};


fn report(name: &str, total: Duration, mut lat: Vec<Duration>) -> f64 {
    lat.sort();
    let n = lat.len();
    let rate = n as f64 / total.as_secs_f64();
    println!(
        "{name:<44} {n:>6} ops  {rate:>9.0} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms",
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
    rate
}


const GROUP: &str = "bench.kaji.io";

fn crd() -> serde_json::Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 0, "maximum": 1000},
                        "color": {"type": "string", "enum": ["red", "green", "blue"]},
                        "name": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9-]+$"},
                        "replicas": {"type": "integer", "default": 1},
                        "enabled": s("boolean"),
                        "ratio": s("number"),
                        "payload": s("string"),
                        "tags": {"type": "array", "items": s("string"), "x-kubernetes-list-type": "set"},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {"name": s("string"), "port": s("integer")}}},
                        "labels": {"type": "object", "additionalProperties": s("string")},
                    }},
                    "status": {"type": "object", "properties": {"ready": s("boolean")}},
                }}},
            }],
        },
    })
}

fn widget(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "spec": {
            "size": 7, "color": "green", "name": name, "enabled": true, "ratio": 0.5,
            "payload": "x".repeat(400), "tags": ["a", "b"],
            "ports": [{"name": "http", "port": 80}], "labels": {"tier": "web"},
        },
    }))
    .expect("widget")
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "data": {"payload": "x".repeat(512)},
    }))
    .expect("configmap")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("KAJI_BENCH_CRS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("KAJI_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()?;
    let server = common::Proc(child);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let client = common::ready_client(&kubeconfig).await?;

    // Discovery latency after the CRD's create.
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&kube::core::GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions"),
    );
    let t0 = Instant::now();
    crds.create(&PostParams::default(), &serde_json::from_value(crd())?).await?;
    let created = t0.elapsed();
    let mut legacy = None;
    let mut aggregated = None;
    while legacy.is_none() || aggregated.is_none() {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "the CRD's group never appeared in discovery");
        if legacy.is_none() {
            let req = http::Request::get(format!("/apis/{GROUP}/v1")).body(Vec::new())?;
            if client.request_text(req).await.is_ok() {
                legacy = Some(t0.elapsed());
            }
        }
        if aggregated.is_none() {
            let req = http::Request::get("/apis")
                .header("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
                .body(Vec::new())?;
            if let Ok(text) = client.request_text(req).await
                && text.contains(GROUP)
            {
                aggregated = Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ar = ApiResource::from_gvk_with_plural(&kube::core::GroupVersionKind::gvk(GROUP, "v1", "Widget"), "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let first = loop {
        if widgets.create(&PostParams::default(), &widget("first")).await.is_ok() {
            break t0.elapsed();
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "the first custom object was never accepted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "CRD create answered after {:.1} ms; in /apis/{GROUP}/v1 after {:.1} ms; in aggregated discovery after {:.1} ms; first object created after {:.1} ms",
        ms(created),
        ms(legacy.unwrap_or_default()),
        ms(aggregated.unwrap_or_default()),
        ms(first)
    );

    // Watch delivery of custom objects created below.
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let sent_w = sent.clone();
    let watch_api = widgets.clone();
    let watcher = tokio::spawn(async move {
        let mut lat = Vec::new();
        let stream = watch_api.watch(&WatchParams::default().labels("bench=true"), "0").await.expect("watch");
        let mut stream = stream.boxed();
        while lat.len() < n {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Added(o))) => {
                    let name = o.metadata.name.unwrap_or_default();
                    if let Some(t) = sent_w.lock().expect("lock").get(&name) {
                        lat.push(t.elapsed());
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        lat
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let w = widgets.clone();
    let s = sent.clone();
    let (t, lat) = run(n, 32, move |i| {
        let w = w.clone();
        let s = s.clone();
        async move {
            let name = format!("w-{i}");
            s.lock().expect("lock").insert(name.clone(), Instant::now());
            w.create(&PostParams::default(), &widget(&name)).await.expect("create widget");
        }
    })
    .await;
    let cr_rate = report("create custom object (concurrency 32)", t, lat);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let c = cms.clone();
    let (t, lat) = run(n, 32, move |i| {
        let c = c.clone();
        async move {
            c.create(&PostParams::default(), &cm(&format!("c-{i}"))).await.expect("create configmap");
        }
    })
    .await;
    let cm_rate = report("create configmap (concurrency 32)", t, lat);
    println!("custom object creates run at {:.2}x the rate of ConfigMap creates", cr_rate / cm_rate);

    match tokio::time::timeout(Duration::from_secs(60), watcher).await {
        Ok(Ok(lat)) => {
            let total = lat.iter().max().copied().unwrap_or_default();
            report("watch delivery of custom objects", total.max(Duration::from_millis(1)), lat);
        }
        _ => println!("watch delivery: the watcher did not see every create within 60 s"),
    }

    let list_lat = |name: &str, lat: &mut Vec<Duration>| {
        lat.sort();
        println!("{name:<44} p50 {:>8.2} ms  max {:>8.2} ms", ms(pct(lat, 0.5)), ms(lat.last().copied().unwrap_or_default()));
    };
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = widgets.list(&ListParams::default()).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(l.items.len() > n, "the list has {} custom objects", l.items.len());
    }
    list_lat(&format!("LIST {} custom objects", n + 1), &mut lat);
    let cr_list = pct(&lat, 0.5);
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = cms.list(&ListParams::default().labels("bench=true")).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(l.items.len() >= n, "the list has {} configmaps", l.items.len());
    }
    list_lat(&format!("LIST {n} configmaps"), &mut lat);
    println!("a LIST of custom objects takes {:.2}x a LIST of as many ConfigMaps", cr_list.as_secs_f64() / pct(&lat, 0.5).as_secs_f64());
    let (cpu, rss) = common::usage(server.id());
    println!("server: {cpu:.1} s CPU in all, RSS {rss:.0} MiB");
    Ok(())
}
