//! An hour of CPU and memory per node and per pod, kept by the dashboard (not by the page):
//! [`run_sampler`] reads the metrics API (`metrics.k8s.io` nodes and pods) once per metric
//! resolution and [`History`] keeps the samples in memory, bounded.
//!
//! The layout is chosen for a big cluster: one timeline of sampling rounds (their times) shared
//! by every series, and per node or pod only a ring of 4-byte samples (CPU and memory, each a
//! 16-bit float: 11 bits of mantissa, 5 of binary exponent, about 0.1 % precision) from the round
//! its ring starts at. An hour at 15 s is 240 rounds, about 1 KiB a pod; past the budget rounds
//! are spaced further apart: 5,000 pods cost about 3.7 MiB with their names. A series whose
//! object has left the metrics for a few rounds (the pod or node is gone) is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How long the history lasts.
pub const HOUR: Duration = Duration::from_secs(3600);
/// At most this many rounds are kept, whatever the resolution (an hour at 1 s).
pub const MAX_ROUNDS: usize = 3600;
/// What the samples of every series together may cost: with more series than an hour of rounds
/// at the resolution affords, rounds are spaced further apart (fewer, still over the hour).
/// 5,000 pods at any resolution: about 157 rounds (one each 23 s), 3 MiB of samples; the
/// dashboard's whole cost must stay within 10 MiB at that size.
pub const BUDGET_BYTES: usize = 3 << 20;
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
        let mut gap = match self.last_round() {
            None => {
                self.start = round;
                0
            }
            Some(last) => round.saturating_sub(last + 1),
        };
        // Rounds without a sample (bounded by `keep`: older ones would be trimmed).
        if gap >= keep as u64 {
            self.samples.clear();
            self.start = round;
            gap = 0;
        }
        let add = gap as usize + 1;
        while !self.samples.is_empty() && self.samples.len() + add > keep {
            self.samples.pop_front();
            self.start += 1;
        }
        // Grown by doubling as a VecDeque does, but never past `keep` (a full ring of `keep`
        // would otherwise hold up to twice that), and shrunk when `keep` shrank.
        let need = self.samples.len() + add;
        if need > self.samples.capacity() {
            let target = (self.samples.capacity() * 2)
                .clamp(8, keep.max(need))
                .max(need);
            self.samples.reserve_exact(target - self.samples.len());
        } else if self.samples.capacity() > keep.max(8) + keep / 2 {
            self.samples.shrink_to(keep.max(need));
        }
        self.samples
            .extend(std::iter::repeat_n(MISSING, gap as usize));
        self.samples.push_back(sample);
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

    /// The time between two rounds for `series` nodes and pods at `resolution`: the
    /// resolution, or longer when an hour of rounds for that many series would cost more than
    /// [`BUDGET_BYTES`].
    pub fn spacing(resolution: Duration, series: usize) -> Duration {
        let rounds = (BUDGET_BYTES / (4 * series.max(1))).clamp(2, MAX_ROUNDS);
        resolution.max(HOUR / rounds as u32)
    }

    /// Nodes and pods with a series now.
    pub fn series(&self) -> usize {
        let g = self.lock();
        g.nodes.len() + g.pods.len()
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
        while inner.times.len() >= inner.keep {
            inner.times.pop_front();
        }
        inner.times.push_back(time_ms);
        if inner.times.capacity() > 2 * inner.keep + 64 {
            inner.times.shrink_to(inner.keep);
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

/// One reading of the metrics: each kind's samples (None: that kind could not be read), the
/// metrics' window, and what went wrong.
#[derive(Default)]
pub struct Reading {
    pub nodes: Option<Vec<(String, u64, u64)>>,
    pub pods: Option<Vec<(String, u64, u64)>>,
    pub window: Option<Duration>,
    pub error: Option<String>,
}

/// Reads the metrics API with `client` once per resolution into `history`, forever (the
/// standalone dashboard's sampler; see [`run`]).
pub async fn run_sampler(
    history: std::sync::Arc<History>,
    client: kube::Client,
    resolution: Option<Duration>,
) {
    run(history, move || read_api(client.clone()), resolution).await
}

/// One reading of `metrics.k8s.io` nodes and pods, as lists over HTTP.
pub async fn read_api(client: kube::Client) -> Reading {
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
    let error = [nodes.as_ref().err(), pods.as_ref().err()]
        .into_iter()
        .flatten()
        .next()
        .map(ToString::to_string);
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
    Reading {
        nodes,
        pods,
        window: node_window.or(pod_window),
        error,
    }
}

/// Calls `read` once per round into `history`, forever. A round lasts `resolution` when the
/// caller knows it (in `kaji server`, `--metric-resolution`), else the metrics' own `window`
/// (the time between the provider's two last scrapes: its resolution), else 15 s; longer when
/// the cluster has more nodes and pods than an hour at that resolution affords
/// ([`History::spacing`]).
pub async fn run<F, Fut>(
    history: std::sync::Arc<History>,
    mut read: F,
    resolution: Option<Duration>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reading>,
{
    let mut warned = false;
    loop {
        // One round per spacing, however long the reading takes.
        let started = tokio::time::Instant::now();
        let reading = read().await;
        if let Some(e) = &reading.error
            && !warned
        {
            tracing::warn!(error = %e, "the dashboard cannot read the metrics API; it keeps trying");
            warned = true;
        }
        let every = resolution
            .or(reading.window)
            .unwrap_or(DEFAULT_RESOLUTION)
            .clamp(Duration::from_millis(500), Duration::from_secs(120));
        let series = match (&reading.nodes, &reading.pods) {
            (None, None) => history.series(),
            (n, p) => n.as_ref().map_or(0, Vec::len) + p.as_ref().map_or(0, Vec::len),
        };
        let every = History::spacing(every, series);
        if reading.nodes.is_some() || reading.pods.is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            history.record(now, every, reading.nodes, reading.pods);
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
        // Over the budget at 15 s (240 rounds): a round every 23 s, 157 over the hour.
        let spacing = History::spacing(res, 5000);
        assert_eq!(spacing.as_secs_f64().round(), 23.0, "{spacing:?}");
        for r in 0..300 {
            h.record(r, spacing, Some(vec![]), Some(pods.clone()));
        }
        let (series, bytes) = h.footprint();
        assert_eq!(series, 5000);
        println!("an hour of 5,000 pods at 15 s: {bytes} bytes");
        assert!(bytes < 4 << 20, "{bytes} bytes");
        assert_eq!(
            h.points(Kind::Pods, "namespace-0/deployment-5d8f7c9b6-00000", 0)
                .unwrap()
                .len(),
            (HOUR.as_millis() / spacing.as_millis()) as usize
        );
    }

    #[test]
    fn a_finer_resolution_spaces_rounds_within_the_budget() {
        // At 5 s an hour is 720 rounds: for 5,000 pods that is over the budget, so rounds are
        // spaced to still cover the hour.
        let spacing = History::spacing(Duration::from_secs(5), 5000);
        assert!(
            spacing > Duration::from_secs(22) && spacing < Duration::from_secs(24),
            "{spacing:?}"
        );
        assert_eq!(
            History::spacing(Duration::from_secs(5), 50),
            Duration::from_secs(5)
        );
        assert_eq!(
            History::spacing(Duration::from_secs(1), 10),
            Duration::from_secs(1)
        );
        let h = History::new();
        let pods: Vec<(String, u64, u64)> = (0..5000)
            .map(|i| (format!("default/big-5d8f7c9b6-{i:05}"), 1_000_000, 50 << 20))
            .collect();
        // A small cluster first (finer rounds, longer rings), then 5,000 pods.
        for r in 0..800 {
            h.record(r, Duration::from_secs(5), None, Some(pods[..10].to_vec()));
        }
        let rounds = (HOUR.as_millis() / spacing.as_millis()) as i64;
        for r in 800..800 + rounds + 20 {
            h.record(r, spacing, None, Some(pods.clone()));
        }
        let (series, bytes) = h.footprint();
        assert_eq!(series, 5000);
        println!("an hour of 5,000 pods at 5 s: {bytes} bytes");
        assert!(bytes < 4 << 20, "{bytes} bytes");
        let first = h
            .points(Kind::Pods, "default/big-5d8f7c9b6-00000", 0)
            .unwrap();
        assert_eq!(first.len() as i64, rounds);
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
