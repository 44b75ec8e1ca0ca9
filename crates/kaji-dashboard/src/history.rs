//! An hour of CPU and memory per node and per pod, kept by the dashboard (not by the page):
//! [`run_sampler`] reads the metrics API (`metrics.k8s.io` nodes and pods) once per metric
//! resolution and [`History`] keeps the samples in memory, bounded.
//!
//! The layout is chosen for a big cluster: one timeline of sampling rounds (their times) shared
//! by every series, and per node or pod only a ring of 4-byte samples (CPU and memory, each a
//! 16-bit float: 11 bits of mantissa, 5 of binary exponent, about 0.1 % precision) from the round
//! its ring starts at. An hour at 15 s is 240 rounds, about 1 KiB a pod: 5,000 pods cost about
//! 5.5 MiB with their names. A series whose object has left the metrics for a few rounds (the
//! pod or node is gone) is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How long the history lasts.
pub const HOUR: Duration = Duration::from_secs(3600);
/// At most this many rounds are kept, whatever the resolution (a 1 s resolution keeps 15 min).
pub const MAX_ROUNDS: usize = 900;
/// A series absent from this many rounds in a row belongs to an object that is gone.
const GONE_AFTER: u64 = 4;
/// No sample in a round (the object had no metrics then).
const MISSING: u32 = u32::MAX;

/// A non-negative amount as 16 bits: `mantissa << exponent`, mantissa < 2048 (saturates at
/// 2047 << 31, about 4.4e12: 4,400 cores in nanocores, 4 TB of memory).
fn pack16(v: u64) -> u16 {
    let mut e = (64 - v.leading_zeros()).saturating_sub(11);
    // Rounded to the nearest, not truncated.
    let mut m = if e == 0 {
        v
    } else {
        (v >> e) + ((v >> (e - 1)) & 1)
    };
    if m >= 2048 {
        m >>= 1;
        e += 1;
    }
    if e > 31 {
        return u16::MAX - 1;
    }
    // All ones is half of `MISSING`.
    (((e as u16) << 11) | m as u16).min(u16::MAX - 1)
}

fn unpack16(p: u16) -> u64 {
    u64::from(p & 0x7ff) << (p >> 11)
}

fn pack(cpu_nanocores: u64, memory_bytes: u64) -> u32 {
    (u32::from(pack16(cpu_nanocores)) << 16) | u32::from(pack16(memory_bytes))
}

/// One node's or pod's samples: `samples[i]` is of round `start + i`.
#[derive(Default)]
struct Series {
    start: u64,
    samples: VecDeque<u32>,
}

impl Series {
    fn last_round(&self) -> Option<u64> {
        (!self.samples.is_empty()).then(|| self.start + self.samples.len() as u64 - 1)
    }

    fn push(&mut self, round: u64, sample: u32, keep: usize) {
        match self.last_round() {
            None => self.start = round,
            Some(last) => {
                // Rounds without a sample (bounded by `keep`: older ones would be trimmed).
                let gap = round.saturating_sub(last + 1).min(keep as u64);
                if gap == keep as u64 {
                    self.samples.clear();
                    self.start = round;
                } else {
                    self.samples
                        .extend(std::iter::repeat_n(MISSING, gap as usize));
                }
            }
        }
        self.samples.push_back(sample);
        while self.samples.len() > keep {
            self.samples.pop_front();
            self.start += 1;
        }
    }
}

/// Which objects' history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nodes,
    Pods,
}

#[derive(Default)]
struct Inner {
    /// Rounds kept (an hour's worth at the resolution, at most `MAX_ROUNDS`).
    keep: usize,
    resolution: Duration,
    /// The time (Unix ms) of rounds `next_round - times.len()` .. `next_round`.
    times: VecDeque<i64>,
    next_round: u64,
    nodes: HashMap<String, Series>,
    /// By `namespace/name`.
    pods: HashMap<String, Series>,
}

/// One sample: time (Unix ms), CPU (cores), memory (bytes).
pub type Point = (i64, f64, f64);

/// The kept samples of every node and pod.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The resolution of the samples (zero before the first round).
    pub fn resolution(&self) -> Duration {
        self.lock().resolution
    }

    /// Records one round at `time_ms`: each node's and pod's (CPU nanocores, memory bytes), or
    /// None for a kind whose metrics could not be read this round (its series stay).
    pub fn record(
        &self,
        time_ms: i64,
        resolution: Duration,
        nodes: Option<Vec<(String, u64, u64)>>,
        pods: Option<Vec<(String, u64, u64)>>,
    ) {
        let mut g = self.lock();
        let inner = &mut *g;
        let res = resolution.max(Duration::from_millis(100));
        inner.resolution = res;
        inner.keep = ((HOUR.as_millis() / res.as_millis()) as usize).clamp(2, MAX_ROUNDS);
        let round = inner.next_round;
        inner.next_round += 1;
        inner.times.push_back(time_ms);
        while inner.times.len() > inner.keep {
            inner.times.pop_front();
        }
        let keep = inner.keep;
        for (map, samples) in [(&mut inner.nodes, nodes), (&mut inner.pods, pods)] {
            let Some(samples) = samples else { continue };
            for (key, cpu, mem) in samples {
                map.entry(key)
                    .or_default()
                    .push(round, pack(cpu, mem), keep);
            }
            map.retain(|_, s| s.last_round().is_some_and(|l| l + GONE_AFTER > round));
            if map.capacity() > 2 * map.len() + 64 {
                map.shrink_to_fit();
            }
        }
    }

    /// The samples of one node (`name`) or pod (`namespace/name`) after `since_ms`; None when
    /// there is no series for it.
    pub fn points(&self, kind: Kind, key: &str, since_ms: i64) -> Option<Vec<Point>> {
        let g = self.lock();
        let series = match kind {
            Kind::Nodes => g.nodes.get(key),
            Kind::Pods => g.pods.get(key),
        }?;
        Some(points_of(&g, series, since_ms))
    }

    /// Every node's samples after `since_ms`.
    pub fn all(&self, kind: Kind, since_ms: i64) -> Vec<(String, Vec<Point>)> {
        let g = self.lock();
        let map = match kind {
            Kind::Nodes => &g.nodes,
            Kind::Pods => &g.pods,
        };
        let mut out: Vec<(String, Vec<Point>)> = map
            .iter()
            .map(|(k, s)| (k.clone(), points_of(&g, s, since_ms)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Series kept, and an estimate of the bytes they and the timeline hold.
    pub fn footprint(&self) -> (usize, usize) {
        let g = self.lock();
        let per_map = |m: &HashMap<String, Series>| -> usize {
            m.iter()
                .map(|(k, s)| {
                    k.capacity()
                        + std::mem::size_of::<(String, Series)>()
                        + 8
                        + s.samples.capacity() * 4
                })
                .sum::<usize>()
                + (m.capacity() - m.len()) * (std::mem::size_of::<(String, Series)>() + 1)
        };
        (
            g.nodes.len() + g.pods.len(),
            per_map(&g.nodes) + per_map(&g.pods) + g.times.capacity() * 8,
        )
    }
}

fn points_of(g: &Inner, s: &Series, since_ms: i64) -> Vec<Point> {
    let first_round = g.next_round - g.times.len() as u64;
    s.samples
        .iter()
        .enumerate()
        .filter_map(|(i, &p)| {
            let round = s.start + i as u64;
            if p == MISSING || round < first_round {
                return None;
            }
            let t = *g.times.get((round - first_round) as usize)?;
            let cpu = unpack16((p >> 16) as u16) as f64 / 1e9;
            let mem = unpack16(p as u16) as f64;
            (t > since_ms).then_some((t, cpu, mem))
        })
        .collect()
}

/// A Go duration such as metrics-server's `window` (`15s`, `1m0s`, `500ms`, `1.5s`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    kaji_api::duration::parse_go(s.trim())
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_nanos)
}

/// A NodeMetricsList or PodMetricsList, only what the history keeps (parsed straight into
/// these: at 5,000 pods a `Value` of the list costs several times its bytes on every round).
#[derive(serde::Deserialize, Default)]
pub struct MetricsList {
    #[serde(default)]
    pub items: Vec<Metrics>,
}

#[derive(serde::Deserialize, Default)]
pub struct Metrics {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub containers: Vec<Container>,
}

#[derive(serde::Deserialize, Default)]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(serde::Deserialize, Default)]
pub struct Container {
    #[serde(default)]
    pub usage: Usage,
}

#[derive(serde::Deserialize, Default)]
pub struct Usage {
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
}

fn usage(u: &Usage) -> (u64, u64) {
    let q = |v: &Option<String>, scale: i128| {
        v.as_deref()
            .and_then(|s| kaji_api::quantity::scaled(s, scale))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    };
    (q(&u.cpu, 1_000_000_000), q(&u.memory, 1))
}

fn window(list: &MetricsList) -> Option<Duration> {
    list.items
        .iter()
        .find_map(|m| m.window.as_deref().and_then(parse_go_duration))
}

/// A NodeMetricsList's (name, nanocores, bytes) and its window.
pub fn node_samples(list: &MetricsList) -> (Vec<(String, u64, u64)>, Option<Duration>) {
    let samples = list
        .items
        .iter()
        .filter(|m| !m.metadata.name.is_empty())
        .map(|m| {
            let (cpu, mem) = usage(&m.usage);
            (m.metadata.name.clone(), cpu, mem)
        })
        .collect();
    (samples, window(list))
}

/// A PodMetricsList's (namespace/name, nanocores, bytes: its containers summed) and window.
pub fn pod_samples(list: &MetricsList) -> (Vec<(String, u64, u64)>, Option<Duration>) {
    let samples = list
        .items
        .iter()
        .filter(|m| !m.metadata.name.is_empty() && !m.metadata.namespace.is_empty())
        .map(|m| {
            let (mut cpu, mut mem) = (0u64, 0u64);
            for c in &m.containers {
                let (c_cpu, c_mem) = usage(&c.usage);
                cpu = cpu.saturating_add(c_cpu);
                mem = mem.saturating_add(c_mem);
            }
            (
                format!("{}/{}", m.metadata.namespace, m.metadata.name),
                cpu,
                mem,
            )
        })
        .collect();
    (samples, window(list))
}

/// The default resolution, metrics-server's.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15);

/// Reads the metrics API with `client` once per resolution into `history`, forever. The
/// resolution is `resolution` when the caller knows it (in `kaji server`, `--metric-resolution`),
/// else the metrics' own `window` (the time between the provider's two last scrapes: its
/// resolution), else 15 s.
pub async fn run_sampler(
    history: std::sync::Arc<History>,
    client: kube::Client,
    resolution: Option<Duration>,
) {
    let mut warned = false;
    loop {
        // One round per resolution, however long the reading takes.
        let started = tokio::time::Instant::now();
        let get = |path: &'static str| {
            let client = client.clone();
            async move {
                let req = http::Request::get(path)
                    .body(Vec::new())
                    .map_err(kube::Error::HttpError)?;
                client.request::<MetricsList>(req).await
            }
        };
        let (nodes, pods) = tokio::join!(
            get("/apis/metrics.k8s.io/v1beta1/nodes"),
            get("/apis/metrics.k8s.io/v1beta1/pods")
        );
        for e in [nodes.as_ref().err(), pods.as_ref().err()]
            .into_iter()
            .flatten()
        {
            if !warned {
                tracing::warn!(error = %e, "the dashboard cannot read the metrics API; it keeps trying");
                warned = true;
            }
        }
        let (nodes, node_window) = match &nodes {
            Ok(l) => {
                let (s, w) = node_samples(l);
                (Some(s), w)
            }
            Err(_) => (None, None),
        };
        let (pods, pod_window) = match &pods {
            Ok(l) => {
                let (s, w) = pod_samples(l);
                (Some(s), w)
            }
            Err(_) => (None, None),
        };
        let every = resolution
            .or(node_window)
            .or(pod_window)
            .unwrap_or(DEFAULT_RESOLUTION)
            .clamp(Duration::from_millis(500), Duration::from_secs(120));
        if nodes.is_some() || pods.is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            history.record(now, every, nodes, pods);
        }
        tokio::time::sleep_until(started + every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_within_a_thousandth() {
        for v in [
            0u64,
            1,
            2047,
            2048,
            4095,
            123_456_789,
            16 << 30,
            250_000_000,
            1_000_000_000,
        ] {
            let back = unpack16(pack16(v));
            assert!(
                back.abs_diff(v) as f64 <= v as f64 / 2048.0,
                "{v} -> {back}"
            );
        }
    }

    #[test]
    fn keeps_an_hour_and_drops_the_gone() {
        let h = History::new();
        let res = Duration::from_secs(15);
        for r in 0..300i64 {
            let pods = if r < 250 {
                vec![
                    ("ns/a".to_string(), 5_000_000, 1 << 20),
                    ("ns/b".to_string(), 1, 2),
                ]
            } else {
                vec![("ns/b".to_string(), 1, 2)]
            };
            h.record(
                r * 15_000,
                res,
                Some(vec![("n1".into(), 1_000_000_000, 1 << 30)]),
                Some(pods),
            );
        }
        let b = h.points(Kind::Pods, "ns/b", 0).unwrap();
        assert_eq!(b.len(), 240);
        assert_eq!(b[0].0, 60 * 15_000);
        assert!(
            h.points(Kind::Pods, "ns/a", 0).is_none(),
            "a pod gone for 4 rounds is dropped"
        );
        let n = h.points(Kind::Nodes, "n1", 299 * 15_000 - 1).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].0, 299 * 15_000);
        assert!(
            (n[0].1 - 1.0).abs() < 1e-3 && n[0].2 == (1u64 << 30) as f64,
            "{n:?}"
        );
        assert_eq!(h.all(Kind::Nodes, 0)[0].1.len(), 240);
    }

    #[test]
    fn gaps_and_failed_rounds() {
        let h = History::new();
        let res = Duration::from_secs(15);
        let one = |k: &str| Some(vec![(k.to_string(), 1_000, 1_000)]);
        h.record(1, res, one("n"), one("p/x"));
        h.record(2, res, None, Some(vec![]));
        h.record(3, res, one("n"), one("p/x"));
        assert_eq!(h.points(Kind::Nodes, "n", 0).unwrap().len(), 2);
        let x = h.points(Kind::Pods, "p/x", 0).unwrap();
        assert_eq!(x.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn five_thousand_pods_for_an_hour() {
        let h = History::new();
        let res = Duration::from_secs(15);
        let pods: Vec<(String, u64, u64)> = (0..5000)
            .map(|i| {
                (
                    format!("namespace-{}/deployment-5d8f7c9b6-{i:05}", i % 20),
                    1_000_000,
                    50 << 20,
                )
            })
            .collect();
        for r in 0..240 {
            h.record(r, res, Some(vec![]), Some(pods.clone()));
        }
        let (series, bytes) = h.footprint();
        assert_eq!(series, 5000);
        println!("an hour of 5,000 pods at 15 s: {bytes} bytes");
        assert!(bytes < 8 << 20, "{bytes} bytes");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("x"), None);
    }
}
