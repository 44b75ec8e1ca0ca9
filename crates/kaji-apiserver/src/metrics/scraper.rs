//! The metrics provider: metrics-server's scraper and storage inside the API server. Every
//! `resolution` it scrapes each node's kubelet `/metrics/resource` (over the API server's kubelet
//! client, as pods/log, on connections kept from round to round) and keeps the last two points of every node and container; usage is the
//! CPU rate between them and the last working-set memory, with their timestamp and window.
//!
//! Scraping starts with the first metrics.k8s.io request (a cluster that never asks pays
//! nothing), scrapes at once, and again after the resolution: metrics exist from the second
//! scrape on, as with metrics-server.

use super::prom;
use crate::ApiServer;
use crate::proxy::kubelet;
use kaji_api::ApiError;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// A point: cumulative CPU seconds and working-set bytes at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub timestamp_ms: i64,
    pub cpu_seconds: f64,
    pub memory_bytes: f64,
    /// Container start time (seconds); a change means a new container (the counter restarted).
    pub start_time: Option<f64>,
}

/// The last and the previous point of one node or container.
#[derive(Clone, Copy, Debug)]
struct Entry {
    last: Point,
    prev: Option<Point>,
    /// The provider's round that last reported it.
    seen: u64,
}

impl Entry {
    fn next(old: Option<&Entry>, new: Point) -> Entry {
        match old {
            Some(o) if o.last.timestamp_ms == new.timestamp_ms => *o,
            Some(o)
                if o.last.timestamp_ms < new.timestamp_ms
                    && o.last.start_time == new.start_time
                    && o.last.cpu_seconds <= new.cpu_seconds =>
            {
                Entry {
                    last: new,
                    prev: Some(o.last),
                    seen: o.seen,
                }
            }
            _ => Entry {
                last: new,
                prev: None,
                seen: 0,
            },
        }
    }

    /// (nano-cores, bytes, timestamp ms, window ms), when two points exist.
    fn usage(&self) -> Option<Usage> {
        let prev = self.prev?;
        let window_ms = self.last.timestamp_ms - prev.timestamp_ms;
        if window_ms <= 0 {
            return None;
        }
        let rate = (self.last.cpu_seconds - prev.cpu_seconds) / (window_ms as f64 / 1000.0);
        Some(Usage {
            nano_cores: (rate * 1e9).max(0.0) as u64,
            memory_bytes: self.last.memory_bytes.max(0.0) as u64,
            timestamp_ms: self.last.timestamp_ms,
            window_ms,
        })
    }
}

/// A node's or container's usage as the metrics API shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub nano_cores: u64,
    pub memory_bytes: u64,
    pub timestamp_ms: i64,
    pub window_ms: i64,
}

#[derive(Default)]
struct State {
    /// Rounds stored so far.
    round: u64,
    nodes: HashMap<String, Entry>,
    /// `namespace/pod` -> (container, entry): pods have few containers, a map each would cost
    /// several times more at thousands of pods.
    pods: HashMap<String, Vec<(String, Entry)>>,
}

/// One node's scrape: its own point and its containers' (`namespace/pod`, container, point).
#[derive(Default, Debug)]
pub struct Batch {
    pub node: Option<Point>,
    pub containers: Vec<(String, String, Point)>,
}

/// Reads a `/metrics/resource` answer.
pub fn decode_batch(text: &str, scraped_ms: i64) -> Batch {
    /// A container's figures as its lines come.
    #[derive(Default)]
    struct Partial {
        cpu: Option<(f64, i64)>,
        memory: Option<f64>,
        start: Option<f64>,
    }
    let mut batch = Batch::default();
    let mut node_cpu = None;
    let mut node_mem = None;
    // By `namespace/pod/container` (none of them holds a `/`), the key copied once a container.
    let mut containers: HashMap<String, Partial> = HashMap::new();
    let mut key = String::new();
    for s in prom::parse(text) {
        match s.name {
            "node_cpu_usage_seconds_total" => {
                node_cpu = Some((s.value, s.timestamp_ms.unwrap_or(scraped_ms)));
                continue;
            }
            "node_memory_working_set_bytes" => {
                node_mem = Some(s.value);
                continue;
            }
            "container_cpu_usage_seconds_total"
            | "container_memory_working_set_bytes"
            | "container_start_time_seconds" => {}
            _ => continue,
        }
        let (Some(ns), Some(pod), Some(c)) =
            (s.label("namespace"), s.label("pod"), s.label("container"))
        else {
            continue;
        };
        if [ns, pod, c].iter().any(|p| p.is_empty() || p.contains('/')) {
            continue;
        }
        key.clear();
        key.push_str(ns);
        key.push('/');
        key.push_str(pod);
        key.push('/');
        key.push_str(c);
        let partial = match containers.get_mut(key.as_str()) {
            Some(p) => p,
            None => containers.entry(key.clone()).or_default(),
        };
        match s.name {
            "container_cpu_usage_seconds_total" => {
                partial.cpu = Some((s.value, s.timestamp_ms.unwrap_or(scraped_ms)))
            }
            "container_memory_working_set_bytes" => partial.memory = Some(s.value),
            _ => partial.start = Some(s.value),
        }
    }
    if let (Some((c, ts)), Some(m)) = (node_cpu, node_mem) {
        batch.node = Some(Point {
            timestamp_ms: ts,
            cpu_seconds: c,
            memory_bytes: m,
            start_time: None,
        });
    }
    for (k, p) in containers {
        // metrics-server drops containers without both figures.
        let (Some((c, ts)), Some(m)) = (p.cpu, p.memory) else {
            continue;
        };
        let Some((pod, container)) = k.rsplit_once('/') else {
            continue;
        };
        batch.containers.push((
            pod.to_string(),
            container.to_string(),
            Point {
                timestamp_ms: ts,
                cpu_seconds: c,
                memory_bytes: m,
                start_time: p.start,
            },
        ));
    }
    batch
}

/// The metrics provider of one API server.
pub struct Provider {
    resolution: Duration,
    state: Mutex<State>,
    started: OnceLock<()>,
    /// Set after each scrape round (the first request waits for the first round).
    rounds: tokio::sync::watch::Sender<u64>,
}

impl Provider {
    pub fn new(resolution: Duration) -> Provider {
        Provider {
            resolution: resolution.max(Duration::from_millis(100)),
            state: Mutex::new(State::default()),
            started: OnceLock::new(),
            rounds: tokio::sync::watch::channel(0).0,
        }
    }

    /// Starts scraping (once); waits for the first round.
    pub async fn ensure_started(&self, server: &Arc<ApiServer>) {
        let mut rx = self.rounds.subscribe();
        if self.started.set(()).is_ok() {
            tracing::info!(resolution = ?self.resolution, "metrics provider: scraping kubelets' /metrics/resource");
            tokio::spawn(scrape_loop(Arc::downgrade(server), self.resolution));
        }
        if *rx.borrow() == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|r| *r > 0)).await;
        }
    }

    /// Replaces the stored points with a round of scrapes (nodes and containers not in it go).
    /// Updated in place: the keys and vectors of the nodes and pods that stay are kept from
    /// round to round, not allocated anew (rebuilding the maps every resolution made the state
    /// of thousands of pods new garbage each round, interleaved with the round's own).
    pub fn store(&self, batches: Vec<(String, Batch)>) {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = &mut *guard;
        st.round += 1;
        let round = st.round;
        let update = |e: &mut Entry, p: Point| {
            *e = Entry::next(Some(e), p);
            e.seen = round;
        };
        let new = |p: Point| Entry {
            seen: round,
            ..Entry::next(None, p)
        };
        for (node, b) in batches {
            if let Some(p) = b.node {
                match st.nodes.get_mut(&node) {
                    Some(e) => update(e, p),
                    None => {
                        st.nodes.insert(node, new(p));
                    }
                }
            }
            for (pod, c, p) in b.containers {
                if let Some(cs) = st.pods.get_mut(&pod) {
                    match cs.iter_mut().find(|(n, _)| *n == c) {
                        Some((_, e)) => update(e, p),
                        None => cs.push((c, new(p))),
                    }
                } else {
                    st.pods.insert(pod, vec![(c, new(p))]);
                }
            }
        }
        st.nodes.retain(|_, e| e.seen == round);
        st.pods.retain(|_, cs| {
            cs.retain(|(_, e)| e.seen == round);
            !cs.is_empty()
        });
        // After thousands of pods went, give their table back (amortized: to twice the rest).
        if st.pods.capacity() > 256 && st.pods.len() < st.pods.capacity() / 4 {
            st.pods.shrink_to(st.pods.len() * 2);
        }
        drop(guard);
        self.rounds.send_modify(|r| *r += 1);
    }

    pub fn node(&self, name: &str) -> Option<Usage> {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.nodes.get(name)?.usage()
    }

    /// The pod's containers' usage, or None when no container of it has two points.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Vec<(String, Usage)>> {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cs = st.pods.get(&format!("{namespace}/{name}"))?;
        let out: Vec<(String, Usage)> = cs
            .iter()
            .filter_map(|(c, e)| Some((c.clone(), e.usage()?)))
            .collect();
        (!out.is_empty()).then_some(out)
    }

    /// Every node's usage, and every pod's (its containers summed, as the metrics API sums them),
    /// of those with two points.
    #[allow(clippy::type_complexity)]
    pub fn everything(&self) -> (Vec<(String, Usage)>, Vec<(String, u64, u64, i64)>) {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let nodes = st
            .nodes
            .iter()
            .filter_map(|(n, e)| Some((n.clone(), e.usage()?)))
            .collect();
        let pods = st
            .pods
            .iter()
            .filter_map(|(key, cs)| {
                let (cpu, mem, window) = summed(cs)?;
                Some((key.clone(), cpu, mem, window))
            })
            .collect();
        (nodes, pods)
    }
}

/// A pod's containers' usage summed (nano-cores, bytes) with the pod's window (its earliest
/// container's, as the metrics API gives it); None when no container has two points.
fn summed(cs: &[(String, Entry)]) -> Option<(u64, u64, i64)> {
    let (mut cpu, mut mem, mut first) = (0u64, 0u64, None::<Usage>);
    for u in cs.iter().filter_map(|(_, e)| e.usage()) {
        cpu = cpu.saturating_add(u.nano_cores);
        mem = mem.saturating_add(u.memory_bytes);
        if first.is_none_or(|f| u.timestamp_ms < f.timestamp_ms) {
            first = Some(u);
        }
    }
    first.map(|f| (cpu, mem, f.window_ms))
}

/// Where a node's `/metrics/resource` is: its kubelet (InternalIP, daemon endpoint port), or
/// for a hollow node (simulation) the hollow agent's endpoint named in its annotation.
pub fn kubelet_target(node: &Value) -> Option<(String, u16, String)> {
    let name = node.pointer("/metadata/name")?.as_str()?;
    let hollow = node
        .pointer("/metadata/labels/kaji.io~1hollow")
        .and_then(Value::as_str)
        == Some("true");
    if hollow {
        let endpoint = node
            .pointer("/metadata/annotations/kaji.io~1hollow-kubelet-endpoint")?
            .as_str()?;
        let (host, port) = endpoint.rsplit_once(':')?;
        return Some((
            host.to_string(),
            port.parse().ok()?,
            format!("/hollow/{name}"),
        ));
    }
    let ip = node
        .pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?
        .get("address")?
        .as_str()?
        .to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(10250);
    Some((ip, port, String::new()))
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Kept-alive connections to the kubelets, reused from round to round: a scrape is one request
/// on an open connection instead of a TCP and TLS handshake on both ends every resolution (as
/// metrics-server's HTTP client keeps its connections). At most [`PER_ENDPOINT`] scrapes of one
/// kubelet endpoint run at once, so as many connections are kept to it (the hollow nodes of a
/// process share one endpoint: 4 connections serve its 50 nodes as well as 32 did, and keep
/// less memory on both ends); those of endpoints that a round no longer scrapes are closed.
#[derive(Default)]
struct Pool {
    endpoints: Mutex<HashMap<(String, u16), Endpoint>>,
}

/// Scrapes of one kubelet endpoint running at once.
const PER_ENDPOINT: usize = 4;

/// One kubelet endpoint's idle connections and turns to scrape it.
struct Endpoint {
    idle: Vec<kubelet::Sender>,
    turns: Arc<tokio::sync::Semaphore>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u16), Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn endpoint<'a>(
        endpoints: &'a mut HashMap<(String, u16), Endpoint>,
        ip: &str,
        port: u16,
    ) -> &'a mut Endpoint {
        endpoints
            .entry((ip.to_string(), port))
            .or_insert_with(|| Endpoint {
                idle: Vec::new(),
                turns: Arc::new(tokio::sync::Semaphore::new(PER_ENDPOINT)),
            })
    }

    /// Waits for a turn to scrape `ip:port`.
    async fn permit(&self, ip: &str, port: u16) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let turns = Self::endpoint(&mut self.lock(), ip, port).turns.clone();
        turns.acquire_owned().await.ok()
    }

    /// An open idle connection to `ip:port`, if one is kept.
    fn take(&self, ip: &str, port: u16) -> Option<kubelet::Sender> {
        let mut endpoints = self.lock();
        let idle = &mut endpoints.get_mut(&(ip.to_string(), port))?.idle;
        std::iter::from_fn(|| idle.pop()).find(|s| !s.is_closed())
    }

    fn put(&self, ip: &str, port: u16, sender: kubelet::Sender) {
        if !sender.is_closed() {
            Self::endpoint(&mut self.lock(), ip, port).idle.push(sender);
        }
    }

    /// Closes the connections to endpoints not in `targets`.
    fn retain(&self, targets: &HashSet<(String, u16)>) {
        self.lock().retain(|k, _| targets.contains(k));
    }

    /// How many connections are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().map(|e| e.idle.len()).sum()
    }
}

/// One GET of `path` on `sender`; gives the connection back with the whole answer.
async fn request(
    mut sender: kubelet::Sender,
    ip: &str,
    port: u16,
    path: &str,
) -> Result<(kubelet::Sender, http::StatusCode, bytes::Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = kubelet::get_request(ip, port, path).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((sender, status, body))
}

/// GETs `path` from the kubelet at `ip:port` on a kept connection, or on a new one when none is
/// kept or the kept one fails (the kubelet restarted, or closed it while idle); the connection
/// is kept again once the whole answer is read.
async fn get(
    server: &ApiServer,
    pool: &Pool,
    ip: &str,
    port: u16,
    path: &str,
) -> Result<bytes::Bytes, ApiError> {
    let failed = |e: String| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("scraping the kubelet at {ip}:{port}: {e}"),
        )
    };
    let _turn = pool.permit(ip, port).await;
    let kept = match pool.take(ip, port) {
        Some(sender) => request(sender, ip, port, path).await.ok(),
        None => None,
    };
    let (sender, status, body) = match kept {
        Some(answer) => answer,
        None => request(kubelet::open(server, ip, port).await?, ip, port, path)
            .await
            .map_err(failed)?,
    };
    pool.put(ip, port, sender);
    if !status.is_success() {
        return Err(failed(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    Ok(body)
}

async fn scrape_node(
    server: &ApiServer,
    pool: &Pool,
    name: &str,
    (ip, port, prefix): &(String, u16, String),
    timeout: Duration,
) -> Option<Batch> {
    let path = format!("{prefix}/metrics/resource");
    match tokio::time::timeout(timeout, get(server, pool, ip, *port, &path)).await {
        Ok(Ok(body)) => Some(decode_batch(&String::from_utf8_lossy(&body), now_ms())),
        Ok(Err(e)) => {
            tracing::debug!(node = %name, error = %e, "scraping /metrics/resource");
            None
        }
        Err(_) => {
            tracing::debug!(node = %name, "scraping /metrics/resource timed out");
            None
        }
    }
}

async fn scrape_loop(server: Weak<ApiServer>, resolution: Duration) {
    let mut tick = tokio::time::interval(resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pool = Pool::default();
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        let targets = match server
            .store
            .list(
                &crate::registry::keys::resource_prefix("", "nodes"),
                kaji_store::ListOptions::default(),
            )
            .await
        {
            Ok(l) => l
                .items
                .iter()
                .map(crate::objects::decode)
                .filter_map(|n| {
                    let name = n.pointer("/metadata/name")?.as_str()?.to_string();
                    Some((name, kubelet_target(&n)?))
                })
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "metrics provider: listing nodes");
                continue;
            }
        };
        pool.retain(
            &targets
                .iter()
                .map(|(_, (ip, port, _))| (ip.clone(), *port))
                .collect(),
        );
        // metrics-server's scrape timeout is a fraction of the resolution (at most 10 s here).
        let timeout = resolution
            .mul_f64(0.9)
            .min(Duration::from_secs(10))
            .max(Duration::from_millis(500));
        use futures::StreamExt;
        let (server, pool) = (&server, &pool);
        let batches: Vec<(String, Batch)> = futures::stream::iter(targets)
            .map(|(name, target)| async move {
                let batch = scrape_node(server, pool, &name, &target, timeout).await;
                batch.map(|b| (name, b))
            })
            .buffer_unordered(32)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        server.resource_metrics.store(batches);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_the_rate_between_two_scrapes() {
        let p = Provider::new(Duration::from_secs(15));
        let text = |cpu: f64, ts: i64| {
            format!(
                "node_cpu_usage_seconds_total {cpu} {ts}\nnode_memory_working_set_bytes 8192 {ts}\ncontainer_cpu_usage_seconds_total{{container=\"c\",namespace=\"ns\",pod=\"p\"}} {cpu} {ts}\ncontainer_memory_working_set_bytes{{container=\"c\",namespace=\"ns\",pod=\"p\"}} 4096 {ts}\ncontainer_start_time_seconds{{container=\"c\",namespace=\"ns\",pod=\"p\"}} 1 {ts}\n"
            )
        };
        p.store(vec![("n".into(), decode_batch(&text(1.0, 10_000), 0))]);
        assert_eq!(p.node("n"), None);
        assert_eq!(p.pod("ns", "p"), None);
        p.store(vec![("n".into(), decode_batch(&text(6.0, 20_000), 0))]);
        assert_eq!(
            p.node("n"),
            Some(Usage {
                nano_cores: 500_000_000,
                memory_bytes: 8192,
                timestamp_ms: 20_000,
                window_ms: 10_000
            })
        );
        assert_eq!(p.pod("ns", "p").unwrap()[0].1.memory_bytes, 4096);
        let (nodes, pods) = p.everything();
        assert_eq!(nodes.len(), 1);
        assert_eq!(pods, vec![("ns/p".to_string(), 500_000_000, 4096, 10_000)]);
        // A pod missing from a round is gone; the one that stays keeps its points.
        let other = text(11.0, 30_000).replace("pod=\"p\"", "pod=\"q\"");
        p.store(vec![("n".into(), decode_batch(&other, 0))]);
        assert_eq!(p.pod("ns", "p"), None);
        assert_eq!(p.node("n").map(|u| u.window_ms), Some(10_000));
        assert_eq!(p.everything().1, vec![]);
        p.store(vec![("n".into(), decode_batch(&text(16.0, 40_000).replace("pod=\"p\"", "pod=\"q\""), 0))]);
        assert_eq!(p.everything().1, vec![("ns/q".to_string(), 500_000_000, 4096, 10_000)]);
        // A node missing from a round is gone.
        p.store(vec![]);
        assert_eq!(p.node("n"), None);
    }

    /// Scrapes reuse one kept connection; a connection the kubelet closed is not given out again,
    /// and endpoints no round scrapes lose theirs.
    #[tokio::test]
    async fn the_pool_reuses_open_connections_only() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let served = Arc::new(AtomicUsize::new(0));
        let (client_io, server_io) = tokio::io::duplex(4096);
        let count = served.clone();
        let kubelet = tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(
                hyper_util::rt::TokioIo::new(server_io),
                hyper::service::service_fn(move |_req| {
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(format!("answer {n}"))),
                        ))
                    }
                }),
            ),
        );
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client_io))
                .await
                .unwrap();
        tokio::spawn(conn);
        let pool = Pool::default();
        let (ip, port, path) = ("10.0.0.1", 10250, "/metrics/resource");
        let (sender, status, body) = request(sender, ip, port, path).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"answer 1"[..]));
        pool.put(ip, port, sender);
        assert_eq!(pool.len(), 1);
        assert!(pool.take("10.0.0.2", port).is_none(), "another endpoint");
        let sender = pool.take(ip, port).expect("the kept connection");
        let (sender, _, body) = request(sender, ip, port, path).await.unwrap();
        assert_eq!(&body[..], b"answer 2", "the second scrape on the same connection");
        pool.put(ip, port, sender);
        // The kubelet closes it (restarted): it is not given out any more.
        kubelet.abort();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while !pool.lock().values().flat_map(|e| &e.idle).all(|s| s.is_closed()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "the client saw the connection close");
        assert!(pool.take(ip, port).is_none());
        assert_eq!(served.load(Ordering::SeqCst), 2);
        // Endpoints a round does not scrape lose their connections.
        let (client_io, _server_io) = tokio::io::duplex(64);
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(
                hyper_util::rt::TokioIo::new(client_io),
            )
            .await
            .unwrap();
        tokio::spawn(conn);
        pool.put("10.0.0.3", port, sender);
        assert_eq!(pool.len(), 1);
        pool.retain(&HashSet::from([(ip.to_string(), port)]));
        assert_eq!(pool.len(), 0);
    }

    /// At most PER_ENDPOINT scrapes of one endpoint at once; other endpoints are not held up.
    #[tokio::test]
    async fn scrapes_of_one_endpoint_take_turns() {
        let pool = Pool::default();
        let mut turns = Vec::new();
        for _ in 0..PER_ENDPOINT {
            turns.push(pool.permit("10.0.0.1", 10250).await.expect("a turn"));
        }
        let wait = Duration::from_millis(50);
        assert!(tokio::time::timeout(wait, pool.permit("10.0.0.1", 10250)).await.is_err(), "a fifth scrape at once");
        assert!(tokio::time::timeout(wait, pool.permit("10.0.0.2", 10250)).await.is_ok(), "another endpoint");
        turns.pop();
        assert!(tokio::time::timeout(wait, pool.permit("10.0.0.1", 10250)).await.is_ok(), "after one ended");
    }
}
