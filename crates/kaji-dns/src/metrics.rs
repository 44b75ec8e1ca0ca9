//! Prometheus metrics under CoreDNS's names (so its dashboards and alerts work unchanged), and
//! a tiny HTTP/1.1 responder for `GET /metrics`.
//!
//! Counters are plain atomics in fixed arrays indexed by label values: recording costs a few
//! relaxed adds on the answering path, never a lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::wire;

/// Query types with their own label value, as CoreDNS's `vars.monitorType`; others are "other".
const TYPES: [(u16, &str); 13] = [
    (wire::TYPE_A, "A"),
    (wire::TYPE_AAAA, "AAAA"),
    (wire::TYPE_CNAME, "CNAME"),
    (wire::TYPE_MX, "MX"),
    (wire::TYPE_NS, "NS"),
    (wire::TYPE_PTR, "PTR"),
    (wire::TYPE_SOA, "SOA"),
    (wire::TYPE_SRV, "SRV"),
    (wire::TYPE_TXT, "TXT"),
    (65, "HTTPS"),
    (wire::TYPE_IXFR, "IXFR"),
    (wire::TYPE_AXFR, "AXFR"),
    (wire::TYPE_ANY, "ANY"),
];
const N_TYPES: usize = TYPES.len() + 1;

const RCODES: [(u16, &str); 7] = [
    (wire::RCODE_NOERROR, "NOERROR"),
    (wire::RCODE_FORMERR, "FORMERR"),
    (wire::RCODE_SERVFAIL, "SERVFAIL"),
    (wire::RCODE_NXDOMAIN, "NXDOMAIN"),
    (wire::RCODE_NOTIMP, "NOTIMP"),
    (wire::RCODE_REFUSED, "REFUSED"),
    (wire::RCODE_BADVERS, "BADVERS"),
];
const N_RCODES: usize = RCODES.len() + 1;

/// CoreDNS's buckets: `prometheus.ExponentialBuckets(0.00025, 2, 16)`.
const BUCKETS: usize = 16;
fn bucket_bound(i: usize) -> f64 {
    0.00025 * f64::from(1u32 << i)
}

/// How the query arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// Who wrote the response (the `plugin` label of `coredns_dns_responses_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The server itself (malformed queries and the like).
    Server,
    Kubernetes,
    Forward,
    /// A forwarded answer served again from the cache.
    Cache,
}

const SOURCES: [&str; 4] = ["", "kubernetes", "forward", "cache"];

pub struct Metrics {
    server: String,
    /// [proto][family][type]
    requests: [[[AtomicU64; N_TYPES]; 2]; 2],
    /// [source][rcode]
    responses: [[AtomicU64; N_RCODES]; 4],
    /// [type][bucket], the last bucket being +Inf; not cumulative here.
    duration: [[AtomicU64; BUCKETS + 1]; N_TYPES],
    duration_sum_ns: [AtomicU64; N_TYPES],
    forwards: Mutex<BTreeMap<SocketAddr, u64>>,
}

fn type_slot(qtype: u16) -> usize {
    TYPES
        .iter()
        .position(|(t, _)| *t == qtype)
        .unwrap_or(TYPES.len())
}

fn type_label(slot: usize) -> &'static str {
    TYPES.get(slot).map_or("other", |(_, l)| l)
}

impl Metrics {
    /// `server` is CoreDNS's `server` label, e.g. `dns://10.43.0.10:53`.
    pub fn new(server: String) -> Metrics {
        Metrics {
            server,
            requests: Default::default(),
            responses: Default::default(),
            duration: Default::default(),
            duration_sum_ns: Default::default(),
            forwards: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn request(&self, proto: Proto, ipv6: bool, qtype: u16) {
        self.requests[proto as usize][usize::from(ipv6)][type_slot(qtype)].fetch_add(1, Relaxed);
    }

    pub fn response(&self, source: Source, rcode: u16, qtype: u16, took: Duration) {
        let r = RCODES
            .iter()
            .position(|(c, _)| *c == rcode)
            .unwrap_or(RCODES.len());
        self.responses[source as usize][r].fetch_add(1, Relaxed);
        let t = type_slot(qtype);
        let secs = took.as_secs_f64();
        let b = (0..BUCKETS)
            .find(|&i| secs <= bucket_bound(i))
            .unwrap_or(BUCKETS);
        self.duration[t][b].fetch_add(1, Relaxed);
        self.duration_sum_ns[t].fetch_add(took.as_nanos() as u64, Relaxed);
    }

    pub fn forward(&self, to: SocketAddr) {
        let mut map = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(to).or_default() += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let server = &self.server;
        out.push_str("# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter\n");
        for (p, proto) in ["udp", "tcp"].iter().enumerate() {
            for (f, family) in ["1", "2"].iter().enumerate() {
                for t in 0..N_TYPES {
                    let v = self.requests[p][f][t].load(Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "coredns_dns_requests_total{{server=\"{server}\",zone=\".\",view=\"\",proto=\"{proto}\",family=\"{family}\",type=\"{}\"}} {v}",
                            type_label(t)
                        );
                    }
                }
            }
        }
        out.push_str("# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter\n");
        for (s, plugin) in SOURCES.iter().enumerate() {
            for r in 0..N_RCODES {
                let v = self.responses[s][r].load(Relaxed);
                if v > 0 {
                    let rcode = RCODES.get(r).map_or("other", |(_, l)| l);
                    let _ = writeln!(
                        out,
                        "coredns_dns_responses_total{{server=\"{server}\",zone=\".\",view=\"\",rcode=\"{rcode}\",plugin=\"{plugin}\"}} {v}"
                    );
                }
            }
        }
        out.push_str("# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took per zone.\n# TYPE coredns_dns_request_duration_seconds histogram\n");
        for t in 0..N_TYPES {
            let counts: Vec<u64> = self.duration[t].iter().map(|c| c.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let labels = format!(
                "server=\"{server}\",zone=\".\",view=\"\",type=\"{}\"",
                type_label(t)
            );
            let mut cumulative = 0;
            for (i, c) in counts.iter().enumerate().take(BUCKETS) {
                cumulative += c;
                let _ = writeln!(
                    out,
                    "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                    bucket_bound(i)
                );
            }
            let sum = self.duration_sum_ns[t].load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}\ncoredns_dns_request_duration_seconds_sum{{{labels}}} {sum}\ncoredns_dns_request_duration_seconds_count{{{labels}}} {total}"
            );
        }
        out.push_str("# HELP coredns_forward_requests_total Counter of requests made per upstream.\n# TYPE coredns_forward_requests_total counter\n");
        let forwards = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        for (to, v) in forwards.iter() {
            let _ = writeln!(out, "coredns_forward_requests_total{{to=\"{to}\"}} {v}");
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve_metrics(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    use kaji_runtime::http::{PROMETHEUS_TEXT, Response, serve};
    serve(listener, move |path| match path {
        "/metrics" => Response::new(200, PROMETHEUS_TEXT, metrics.render()),
        _ => Response::not_found(),
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn renders_coredns_names() {
        let m = Metrics::new("dns://127.0.0.1:53".into());
        m.request(Proto::Udp, false, wire::TYPE_A);
        m.request(Proto::Tcp, false, 999);
        m.response(
            Source::Kubernetes,
            wire::RCODE_NXDOMAIN,
            wire::TYPE_A,
            Duration::from_micros(300),
        );
        m.forward("127.0.0.1:5353".parse().unwrap());
        let text = m.render();
        assert!(text.contains("coredns_dns_requests_total{server=\"dns://127.0.0.1:53\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"} 1"), "{text}");
        assert!(text.contains("type=\"other\"} 1"));
        assert!(text.contains("rcode=\"NXDOMAIN\",plugin=\"kubernetes\"} 1"));
        assert!(text.contains("type=\"A\",le=\"0.00025\"} 0"));
        assert!(text.contains("type=\"A\",le=\"0.0005\"} 1"));
        assert!(text.contains("coredns_dns_request_duration_seconds_count{"));
        assert!(text.contains("coredns_forward_requests_total{to=\"127.0.0.1:5353\"} 1"));
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let m = std::sync::Arc::new(Metrics::new("dns://127.0.0.1:53".into()));
        m.request(Proto::Udp, false, wire::TYPE_AAAA);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_metrics(listener, m));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let page = get("/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("type=\"AAAA\"} 1"));
        assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    }
}
