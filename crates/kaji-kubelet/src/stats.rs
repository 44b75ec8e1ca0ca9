//! Resource usage for the kubelet's `/stats/summary` (upstream's statsapi `Summary`) and
//! `/metrics/resource` (the Prometheus text metrics-server scrapes), as kubelet 1.33 serves them.
//!
//! A [`Sample`] holds cumulative CPU time and memory of the node, its pods and their containers
//! at one instant: real nodes take it from CRI `ListContainerStats`/`ListPodSandboxStats` and
//! `/proc` ([`collect`]); hollow nodes synthesise it (`hollow.rs`). Both endpoints render from a
//! sample with the pure functions here. `usageNanoCores` is a rate, computed as cadvisor and the
//! kubelet's CRI stats provider do: from the previous cumulative sample of the same thing
//! ([`Rates`]).

use crate::cri::{self, Cri, api};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Memory figures, in bytes (`None`: unknown).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub working_set: Option<u64>,
    pub usage: Option<u64>,
    pub rss: Option<u64>,
    pub available: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

/// One container's usage.
#[derive(Clone, Debug, Default)]
pub struct ContainerSample {
    pub name: String,
    /// A key that changes when the container is replaced (the CRI container id).
    pub id: String,
    /// Seconds since the epoch.
    pub start_time: f64,
    /// When the figures were taken, nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Memory,
}

/// One pod's usage: its own (the pod cgroup) and its containers'.
#[derive(Clone, Debug, Default)]
pub struct PodSample {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub start_time: f64,
    pub timestamp_ns: i64,
    pub cpu_ns: Option<u64>,
    pub memory: Memory,
    pub containers: Vec<ContainerSample>,
}

/// The node's usage.
#[derive(Clone, Debug, Default)]
pub struct NodeSample {
    pub name: String,
    pub start_time: f64,
    pub timestamp_ns: i64,
    pub cpu_ns: Option<u64>,
    pub memory: Memory,
}

#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub node: NodeSample,
    pub pods: Vec<PodSample>,
    /// Whether reading container stats failed (`scrape_error 1`).
    pub scrape_error: bool,
}

/// Rates from cumulative CPU samples, per key (node, pod uid, container id): the previous
/// sample is kept, and replaced once the new one is at least `MIN_WINDOW_NS` later, so that
/// bursts of requests do not compute rates over a few microseconds.
#[derive(Default)]
pub struct Rates {
    prev: Mutex<HashMap<String, RateState>>,
}

#[derive(Clone, Copy)]
struct RateState {
    timestamp_ns: i64,
    cpu_ns: u64,
    last_rate: Option<u64>,
}

const MIN_WINDOW_NS: i64 = 1_000_000_000;

impl Rates {
    /// The CPU rate in nano-cores of `key` at `(timestamp_ns, cpu_ns)`, from the kept sample.
    pub fn nano_cores(&self, key: &str, timestamp_ns: i64, cpu_ns: u64) -> Option<u64> {
        let mut prev = self
            .prev
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = prev.get(key).copied();
        match entry {
            Some(p) if timestamp_ns - p.timestamp_ns >= MIN_WINDOW_NS && cpu_ns >= p.cpu_ns => {
                let window = (timestamp_ns - p.timestamp_ns) as u128;
                let rate = ((cpu_ns - p.cpu_ns) as u128 * 1_000_000_000 / window) as u64;
                prev.insert(
                    key.to_string(),
                    RateState {
                        timestamp_ns,
                        cpu_ns,
                        last_rate: Some(rate),
                    },
                );
                Some(rate)
            }
            Some(p) if cpu_ns >= p.cpu_ns => p.last_rate,
            _ => {
                // First sample, or the counter went back (a restarted container).
                prev.insert(
                    key.to_string(),
                    RateState {
                        timestamp_ns,
                        cpu_ns,
                        last_rate: None,
                    },
                );
                None
            }
        }
    }

    /// Forgets keys not in `live` (gone pods and containers).
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        let mut prev = self
            .prev
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prev.retain(|k, _| k == "node" || live.contains(k));
    }
}

fn rfc3339_ns(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn rfc3339_secs(secs: f64) -> String {
    rfc3339_ns((secs * 1e9) as i64)
}

/// `/stats/summary`: upstream's `statsapi.Summary` (node, pods, containers: cpu and memory).
pub fn summary(sample: &Sample, rates: &Rates) -> Value {
    let cpu = |key: &str, ts: i64, cum: Option<u64>| {
        let mut v = json!({"time": rfc3339_ns(ts)});
        if let Some(c) = cum {
            v["usageCoreNanoSeconds"] = json!(c);
            if let Some(r) = rates.nano_cores(key, ts, c) {
                v["usageNanoCores"] = json!(r);
            }
        }
        v
    };
    let memory = |ts: i64, m: &Memory| {
        let mut v = json!({"time": rfc3339_ns(ts)});
        for (k, x) in [
            ("availableBytes", m.available),
            ("usageBytes", m.usage),
            ("workingSetBytes", m.working_set),
            ("rssBytes", m.rss),
            ("pageFaults", m.page_faults),
            ("majorPageFaults", m.major_page_faults),
        ] {
            if let Some(x) = x {
                v[k] = json!(x);
            }
        }
        v
    };
    let n = &sample.node;
    let pods: Vec<Value> = sample
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "startTime": rfc3339_secs(c.start_time),
                        "cpu": cpu(&c.id, c.timestamp_ns, c.cpu_ns),
                        "memory": memory(c.timestamp_ns, &c.memory),
                    })
                })
                .collect();
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": rfc3339_secs(p.start_time),
                "containers": containers,
                "cpu": cpu(&p.uid, p.timestamp_ns, p.cpu_ns),
                "memory": memory(p.timestamp_ns, &p.memory),
            })
        })
        .collect();
    json!({
        "node": {
            "nodeName": n.name,
            "startTime": rfc3339_secs(n.start_time),
            "cpu": cpu("node", n.timestamp_ns, n.cpu_ns),
            "memory": memory(n.timestamp_ns, &n.memory),
        },
        "pods": pods,
    })
}

/// A label value escaped for the text format; borrowed when nothing needs escaping (nearly
/// always: every scrape writes three labels a line, for every container of the node).
fn label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// `/metrics/resource`: the kubelet's resource metrics in the Prometheus text format, each
/// sample with its timestamp (milliseconds), as metrics-server reads them.
pub fn resource_metrics(sample: &Sample) -> String {
    // About 110 bytes a line, three lines a container and one a pod, plus the headers: sized
    // once instead of doubled up through the node's answer.
    let lines: usize = sample.pods.iter().map(|p| 1 + 3 * p.containers.len()).sum();
    let mut out = String::with_capacity(1024 + 120 * lines);
    let ms = |ns: i64| ns / 1_000_000;
    let header = |out: &mut String, name: &str, help: &str, ty: &str| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {ty}");
    };
    let containers = || {
        sample
            .pods
            .iter()
            .flat_map(|p| p.containers.iter().map(move |c| (p, c)))
    };
    header(
        &mut out,
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    for (p, c) in containers() {
        if let Some(cpu) = c.cpu_ns {
            let _ = writeln!(
                out,
                "container_cpu_usage_seconds_total{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {}",
                label(&c.name),
                label(&p.namespace),
                label(&p.name),
                cpu as f64 / 1e9,
                ms(c.timestamp_ns)
            );
        }
    }
    header(
        &mut out,
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        "gauge",
    );
    for (p, c) in containers() {
        if let Some(ws) = c.memory.working_set {
            let _ = writeln!(
                out,
                "container_memory_working_set_bytes{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {ws} {}",
                label(&c.name),
                label(&p.namespace),
                label(&p.name),
                ms(c.timestamp_ns)
            );
        }
    }
    header(
        &mut out,
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        "gauge",
    );
    for (p, c) in containers() {
        let _ = writeln!(
            out,
            "container_start_time_seconds{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {}",
            label(&c.name),
            label(&p.namespace),
            label(&p.name),
            c.start_time,
            ms(c.timestamp_ns)
        );
    }
    let n = &sample.node;
    header(
        &mut out,
        "node_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    if let Some(cpu) = n.cpu_ns {
        let _ = writeln!(
            out,
            "node_cpu_usage_seconds_total {} {}",
            cpu as f64 / 1e9,
            ms(n.timestamp_ns)
        );
    }
    header(
        &mut out,
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        "gauge",
    );
    if let Some(ws) = n.memory.working_set {
        let _ = writeln!(
            out,
            "node_memory_working_set_bytes {ws} {}",
            ms(n.timestamp_ns)
        );
    }
    header(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    for p in &sample.pods {
        if let Some(cpu) = p.cpu_ns {
            let _ = writeln!(
                out,
                "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {} {}",
                label(&p.namespace),
                label(&p.name),
                cpu as f64 / 1e9,
                ms(p.timestamp_ns)
            );
        }
    }
    header(
        &mut out,
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
        "gauge",
    );
    for p in &sample.pods {
        if let Some(ws) = p.memory.working_set {
            let _ = writeln!(
                out,
                "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {ws} {}",
                label(&p.namespace),
                label(&p.name),
                ms(p.timestamp_ns)
            );
        }
    }
    let err = u8::from(sample.scrape_error);
    header(
        &mut out,
        "resource_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );
    let _ = writeln!(out, "resource_scrape_error {err}");
    let _ = writeln!(
        out,
        "# HELP scrape_error [ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error {err}"
    );
    out
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn memory_of(m: Option<&api::MemoryUsage>) -> Memory {
    let Some(m) = m else { return Memory::default() };
    let v = |x: &Option<api::UInt64Value>| x.as_ref().map(|x| x.value);
    Memory {
        working_set: v(&m.working_set_bytes),
        usage: v(&m.usage_bytes),
        rss: v(&m.rss_bytes),
        available: v(&m.available_bytes),
        page_faults: v(&m.page_faults),
        major_page_faults: v(&m.major_page_faults),
    }
}

fn cpu_of(c: Option<&api::CpuUsage>) -> Option<u64> {
    c?.usage_core_nano_seconds.as_ref().map(|x| x.value)
}

fn stamp(ts: i64) -> i64 {
    if ts > 0 { ts } else { now_ns() }
}

/// The node's cumulative CPU time (from `/proc/stat`: all but idle and iowait, in USER_HZ) and
/// memory (from `/proc/meminfo`, as cadvisor's root container: usage = total - free, working
/// set = usage - inactive file pages).
pub fn node_usage(name: &str) -> NodeSample {
    let timestamp_ns = now_ns();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let hz = 100u64; // USER_HZ is 100 on every Linux architecture Kaji runs on.
    let cpu_ns = stat.lines().find(|l| l.starts_with("cpu ")).map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let busy: u64 = f
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
            .map(|(_, x)| *x)
            .sum();
        busy * (1_000_000_000 / hz)
    });
    let boot = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|x| x.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let usage = match (kb("MemTotal"), kb("MemFree")) {
        (Some(t), Some(f)) => Some(t.saturating_sub(f)),
        _ => None,
    };
    let working_set = usage.map(|u| u.saturating_sub(kb("Inactive(file)").unwrap_or(0)));
    NodeSample {
        name: name.to_string(),
        start_time: boot,
        timestamp_ns,
        cpu_ns,
        memory: Memory {
            working_set,
            usage,
            rss: kb("AnonPages"),
            available: kb("MemAvailable"),
            ..Default::default()
        },
    }
}

/// A sample of the node and its running pods from the CRI (`ListContainerStats`,
/// `ListPodSandboxStats`) and `/proc`.
pub async fn collect(cri: &Cri, node_name: &str) -> Sample {
    let mut cri = cri.clone();
    let mut sample = Sample {
        node: node_usage(node_name),
        ..Default::default()
    };
    let running = api::ContainerFilter {
        state: Some(api::ContainerStateValue {
            state: api::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let containers = match cri.list_containers(Some(running)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "listing containers for stats");
            sample.scrape_error = true;
            return sample;
        }
    };
    let stats = match cri
        .runtime
        .list_container_stats(api::ListContainerStatsRequest { filter: None })
        .await
    {
        Ok(r) => r.into_inner().stats,
        Err(e) => {
            tracing::debug!(error = %e, "CRI ListContainerStats");
            sample.scrape_error = true;
            Vec::new()
        }
    };
    let by_id: HashMap<&str, &api::ContainerStats> = stats
        .iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.as_str(), s)))
        .collect();
    // Pod-level figures (the pod cgroup) where the runtime gives them; else the containers' sum.
    let sandbox_stats: HashMap<String, api::PodSandboxStats> = match cri
        .runtime
        .list_pod_sandbox_stats(api::ListPodSandboxStatsRequest { filter: None })
        .await
    {
        Ok(r) => r
            .into_inner()
            .stats
            .into_iter()
            .filter_map(|s| {
                let uid = s
                    .attributes
                    .as_ref()?
                    .labels
                    .get(cri::POD_UID_LABEL)?
                    .clone();
                Some((uid, s))
            })
            .collect(),
        Err(_) => HashMap::new(),
    };
    let sandboxes = cri.list_sandboxes(None).await.unwrap_or_default();
    let mut pods: Vec<PodSample> = Vec::new();
    for c in &containers {
        let (Some(ns), Some(pod), Some(uid)) = (
            c.labels.get(cri::POD_NAMESPACE_LABEL),
            c.labels.get(cri::POD_NAME_LABEL),
            c.labels.get(cri::POD_UID_LABEL),
        ) else {
            continue;
        };
        let name = c
            .labels
            .get(cri::CONTAINER_NAME_LABEL)
            .cloned()
            .unwrap_or_default();
        let s = by_id.get(c.id.as_str());
        let cs = ContainerSample {
            name,
            id: c.id.clone(),
            start_time: c.created_at as f64 / 1e9,
            timestamp_ns: stamp(s.and_then(|s| s.cpu.as_ref()).map_or(0, |c| c.timestamp)),
            cpu_ns: s.and_then(|s| cpu_of(s.cpu.as_ref())),
            memory: memory_of(s.and_then(|s| s.memory.as_ref())),
        };
        let idx = match pods.iter().position(|p| &p.uid == uid) {
            Some(i) => i,
            None => {
                let start = sandboxes
                    .iter()
                    .find(|s| s.labels.get(cri::POD_UID_LABEL) == Some(uid))
                    .map_or(cs.start_time, |s| s.created_at as f64 / 1e9);
                pods.push(PodSample {
                    namespace: ns.clone(),
                    name: pod.clone(),
                    uid: uid.clone(),
                    start_time: start,
                    ..Default::default()
                });
                pods.len() - 1
            }
        };
        pods[idx].containers.push(cs);
    }
    for p in &mut pods {
        let linux = sandbox_stats.get(&p.uid).and_then(|s| s.linux.as_ref());
        match linux.and_then(|l| cpu_of(l.cpu.as_ref()).map(|c| (l, c))) {
            Some((l, cpu)) => {
                p.cpu_ns = Some(cpu);
                p.timestamp_ns = stamp(l.cpu.as_ref().map_or(0, |c| c.timestamp));
                p.memory = memory_of(l.memory.as_ref());
            }
            None => {
                p.timestamp_ns = p
                    .containers
                    .iter()
                    .map(|c| c.timestamp_ns)
                    .max()
                    .unwrap_or_else(now_ns);
                p.cpu_ns = p.containers.iter().map(|c| c.cpu_ns).sum();
                let sum = |f: fn(&Memory) -> Option<u64>| {
                    p.containers
                        .iter()
                        .map(|c| f(&c.memory))
                        .sum::<Option<u64>>()
                };
                p.memory = Memory {
                    working_set: sum(|m| m.working_set),
                    usage: sum(|m| m.usage),
                    rss: sum(|m| m.rss),
                    ..Default::default()
                };
            }
        }
    }
    sample.pods = pods;
    sample
}

/// Hollow pods' CPU use in millicores (simulation: hollow nodes run nothing, they report what
/// this annotation says; without it a hollow pod uses no CPU).
pub const HOLLOW_CPU_ANNOTATION: &str = "kaji.io/hollow-cpu-millicores";
/// Hollow pods' working-set memory in bytes (simulation; without it, none).
pub const HOLLOW_MEMORY_ANNOTATION: &str = "kaji.io/hollow-memory-bytes";

/// Synthetic usage of hollow nodes' running pods, from the annotations above: CPU time grows at
/// the annotated rate (integrated across changes, so counters stay monotonic), memory is the
/// annotated figure, both split evenly over the pod's containers. A node's usage is the sum of
/// its pods' (with the CPU time of pods gone kept, as a real node's counter would).
#[derive(Default)]
pub struct Synthetic {
    state: Mutex<SyntheticState>,
}

#[derive(Default)]
struct SyntheticState {
    pods: HashMap<String, SyntheticPod>,
    /// CPU time of pods no longer running, per node.
    retired_ns: HashMap<String, u128>,
    /// When each node was first seen (its start time).
    node_start: HashMap<String, f64>,
}

struct SyntheticPod {
    node: String,
    namespace: String,
    name: String,
    containers: Vec<String>,
    start_time: f64,
    millicores: u64,
    memory: u64,
    cpu_ns: u128,
    at_ns: i64,
}

impl SyntheticPod {
    fn advance(&mut self, now: i64) {
        let dt = u128::try_from(now - self.at_ns).unwrap_or(0);
        // millicores * ns / 1000 = CPU nanoseconds.
        self.cpu_ns += u128::from(self.millicores) * dt / 1000;
        self.at_ns = now.max(self.at_ns);
    }
}

impl Synthetic {
    /// Tracks a hollow pod bound to `node`: running ones count, others (pending, finished,
    /// being deleted) stop counting.
    pub fn observe(&self, pod: &k8s_openapi::api::core::v1::Pod, node: &str) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let running = pod.metadata.deletion_timestamp.is_none()
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running {
            self.forget(&uid);
            return;
        }
        let ann = |k: &str| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (millicores, memory) = (ann(HOLLOW_CPU_ANNOTATION), ann(HOLLOW_MEMORY_ANNOTATION));
        let now = now_ns();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.node_start
            .entry(node.to_string())
            .or_insert(now as f64 / 1e9);
        let p = st.pods.entry(uid).or_insert_with(|| SyntheticPod {
            node: node.to_string(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            containers: pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
                .collect(),
            start_time: now as f64 / 1e9,
            millicores,
            memory,
            cpu_ns: 0,
            at_ns: now,
        });
        p.advance(now);
        p.millicores = millicores;
        p.memory = memory;
    }

    /// The pod stopped (deleted, finished): its CPU time stays in its node's counter.
    pub fn forget(&self, uid: &str) {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut p) = st.pods.remove(uid) {
            p.advance(now_ns());
            *st.retired_ns.entry(p.node).or_default() += p.cpu_ns;
        }
    }

    /// The node's sample now.
    pub fn sample(&self, node: &str) -> Sample {
        let now = now_ns();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut pods = Vec::new();
        let (mut node_cpu, mut node_mem) = (st.retired_ns.get(node).copied().unwrap_or(0), 0u64);
        for (uid, p) in st.pods.iter_mut().filter(|(_, p)| p.node == node) {
            p.advance(now);
            node_cpu += p.cpu_ns;
            node_mem += p.memory;
            let n = p.containers.len().max(1) as u128;
            let containers = p
                .containers
                .iter()
                .map(|c| ContainerSample {
                    name: c.clone(),
                    id: format!("{uid}/{c}"),
                    start_time: p.start_time,
                    timestamp_ns: now,
                    cpu_ns: Some((p.cpu_ns / n) as u64),
                    memory: Memory {
                        working_set: Some(p.memory / n as u64),
                        usage: Some(p.memory / n as u64),
                        ..Default::default()
                    },
                })
                .collect();
            pods.push(PodSample {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: uid.clone(),
                start_time: p.start_time,
                timestamp_ns: now,
                cpu_ns: Some(p.cpu_ns as u64),
                memory: Memory {
                    working_set: Some(p.memory),
                    usage: Some(p.memory),
                    ..Default::default()
                },
                containers,
            });
        }
        let start_time = *st
            .node_start
            .entry(node.to_string())
            .or_insert(now as f64 / 1e9);
        Sample {
            node: NodeSample {
                name: node.to_string(),
                start_time,
                timestamp_ns: now,
                cpu_ns: Some(node_cpu as u64),
                memory: Memory {
                    working_set: Some(node_mem),
                    usage: Some(node_mem),
                    ..Default::default()
                },
            },
            pods,
            scrape_error: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_only_when_needed() {
        assert!(matches!(
            label("web-1"),
            std::borrow::Cow::Borrowed("web-1")
        ));
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    fn sample() -> Sample {
        Sample {
            node: NodeSample {
                name: "n".into(),
                start_time: 1.0,
                timestamp_ns: 2_000_000_000,
                cpu_ns: Some(1_500_000_000),
                memory: Memory {
                    working_set: Some(4096),
                    ..Default::default()
                },
            },
            pods: vec![PodSample {
                namespace: "default".into(),
                name: "p".into(),
                uid: "u".into(),
                start_time: 1.0,
                timestamp_ns: 2_000_000_000,
                cpu_ns: Some(500_000_000),
                memory: Memory {
                    working_set: Some(2048),
                    ..Default::default()
                },
                containers: vec![ContainerSample {
                    name: "c".into(),
                    id: "id".into(),
                    start_time: 1.5,
                    timestamp_ns: 2_000_000_000,
                    cpu_ns: Some(500_000_000),
                    memory: Memory {
                        working_set: Some(2048),
                        ..Default::default()
                    },
                }],
            }],
            scrape_error: false,
        }
    }

    #[test]
    fn renders_resource_metrics_like_the_kubelet() {
        let text = resource_metrics(&sample());
        assert!(text.contains("container_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"p\"} 0.5 2000\n"), "{text}");
        assert!(text.contains("container_memory_working_set_bytes{container=\"c\",namespace=\"default\",pod=\"p\"} 2048 2000\n"));
        assert!(text.contains("container_start_time_seconds{container=\"c\",namespace=\"default\",pod=\"p\"} 1.5 2000\n"));
        assert!(text.contains("node_cpu_usage_seconds_total 1.5 2000\n"));
        assert!(text.contains("node_memory_working_set_bytes 4096 2000\n"));
        assert!(
            text.contains(
                "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"p\"} 0.5 2000\n"
            )
        );
        assert!(
            text.contains(
                "pod_memory_working_set_bytes{namespace=\"default\",pod=\"p\"} 2048 2000\n"
            )
        );
        assert!(text.contains("\nscrape_error 0\n"));
    }

    #[test]
    fn nano_cores_come_from_two_cumulative_samples() {
        let rates = Rates::default();
        assert_eq!(rates.nano_cores("k", 0, 0), None);
        // Too close to the kept sample: no rate yet.
        assert_eq!(rates.nano_cores("k", 500_000_000, 100), None);
        // Half a core over two seconds.
        assert_eq!(
            rates.nano_cores("k", 2_000_000_000, 1_000_000_000),
            Some(500_000_000)
        );
        assert_eq!(
            rates.nano_cores("k", 2_100_000_000, 1_000_000_000),
            Some(500_000_000)
        );
        let s = summary(&sample(), &rates);
        assert_eq!(s["node"]["cpu"]["usageCoreNanoSeconds"], 1_500_000_000u64);
        assert_eq!(
            s["pods"][0]["containers"][0]["memory"]["workingSetBytes"],
            2048
        );
    }
}
