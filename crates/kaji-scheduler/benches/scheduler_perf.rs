//! Scheduling throughput, in the shape of upstream's `scheduler_perf` SchedulingBasic: N nodes
//! (4 cpu, 16Gi, 110 pods), then 10,000 pods (100m cpu, 500Mi) scheduled one after another.
//!
//! What it drives: the real scheduling core in-process — the priority queue, the assume cache
//! and the default plugins (every filter and score) — against fake Node and Pod objects in
//! memory. The API round trips (watch events in, pods/binding out) are not included: binding
//! happens asynchronously off the scheduling loop in the real scheduler, as upstream's.
//! Latency is from the pod entering the queue to its assumption on a node.

use k8s_openapi::api::core::v1::{Node, Pod};
use kaji_scheduler::cache::{Cache, PodInfo};
use kaji_scheduler::plugins::default_framework;
use kaji_scheduler::queue::SchedulingQueue;
use kaji_scheduler::schedule_one::Algorithm;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn node(i: usize) -> Node {
    let name = format!("node-{i}");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}, "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("node")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "sched-0", "uid": format!("uid-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    }))
    .expect("pod")
}

fn run(nodes: usize, pods: usize) {
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.set_node(Arc::new(node(i)));
    }
    let queue = SchedulingQueue::default();
    let mut alg = Algorithm::new(default_framework());
    let infos: Vec<Arc<PodInfo>> = (0..pods)
        .map(|i| Arc::new(PodInfo::new(Arc::new(pod(i)), 0)))
        .collect();
    let start = Instant::now();
    for p in infos {
        queue.add(p);
    }
    let mut latencies = Vec::with_capacity(pods);
    let mut cycles = Vec::with_capacity(pods);
    let mut failed = 0;
    while let Some(p) = queue.try_pop() {
        let t = Instant::now();
        let r = alg.schedule(&cache, &p.info, None);
        cycles.push(t.elapsed());
        match r {
            Ok(n) => {
                cache.assume_pod(p.info.clone(), &n);
                queue.done(&p.info.uid);
                latencies.push(p.added.elapsed());
            }
            Err(_) => {
                failed += 1;
                queue.delete(&p.info.uid);
            }
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    cycles.sort();
    let pct = |v: &[Duration], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::ZERO)
    };
    println!(
        "{nodes:>5} nodes, {pods} pods: {:>7.0} pods/s  (total {:.2?}; all pods queued at t=0, queue-to-assume p50 {:.2?} p99 {:.2?}; one scheduling cycle p50 {:.2?} p99 {:.2?}; unschedulable {failed}; feasible nodes sought per pod {})",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        elapsed,
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&cycles, 0.50),
        pct(&cycles, 0.99),
        alg.num_feasible_nodes_to_find(nodes)
    );
}

fn main() {
    let pods = std::env::var("PODS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10_000);
    for nodes in [1_000, 5_000] {
        run(nodes, pods);
    }
}
