//! Throughput and latency of cluster answers over UDP on 127.0.0.1, beside a raw baseline: a
//! UDP echo server on the same loopback, in the same run, answering the same bytes. Figures,
//! not pass/fail: `cargo bench -p kaji-dns`.
//!
//! The index holds 1,000 Services in 10 namespaces (every tenth headless, with 3 endpoints);
//! the query mix is 80% ClusterIP A, 10% headless A, 10% NXDOMAIN.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaji_dns::wire::{self, Name, TYPE_A};
use kaji_dns::{Index, Metrics, ServerConfig, SharedIndex, Zone, serve};
use tokio::net::UdpSocket;

const SERVICES: usize = 1000;
const IN_FLIGHT: usize = 16;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn fixture() -> (Index, Vec<Vec<u8>>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    let mut names = Vec::new();
    for i in 0..SERVICES {
        let ns = format!("ns{}", i % 10);
        let name = format!("svc{i}");
        let headless = i % 10 == 0;
        let ip = if headless {
            "None".to_string()
        } else {
            format!("10.43.{}.{}", i / 250, i % 250 + 1)
        };
        services.push(Service {
            metadata: meta(&ns, &name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.clone()),
                cluster_ips: Some(vec![ip]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
        if headless {
            let mut m = meta(&ns, &format!("{name}-abcde"));
            m.labels = Some([("kubernetes.io/service-name".to_string(), name.clone())].into());
            slices.push(EndpointSlice {
                metadata: m,
                address_type: "IPv4".into(),
                endpoints: (0..3)
                    .map(|e| Endpoint {
                        addresses: vec![format!("10.42.{}.{}", i / 250, e + 1 + (i % 250) % 200)],
                        ..Endpoint::default()
                    })
                    .collect(),
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..EndpointPort::default()
                }]),
            });
        }
        names.push(format!("{name}.{ns}.svc.cluster.local"));
    }
    let namespaces: Vec<String> = (0..10).map(|i| format!("ns{i}")).collect();
    let index = Index::build(namespaces, &services, &slices, 1);
    // 80% ClusterIP, 10% headless, 10% missing.
    let mut queries = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let name = if i % 10 == 5 {
            format!("missing{i}.ns{}.svc.cluster.local", i % 10)
        } else {
            name.clone()
        };
        let q = wire::query(
            i as u16,
            Name::from_dotted(&name).expect("name"),
            TYPE_A,
            None,
        );
        queries.push(q.encode(512));
    }
    (index, queries)
}

/// A UDP server that sends every datagram back unchanged, with as many tasks as the DNS server.
async fn echo_server() -> SocketAddr {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind echo"));
    let addr = sock.local_addr().expect("addr");
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    for _ in 0..workers {
        let sock = sock.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((len, peer)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(&buf[..len], peer).await;
            }
        });
    }
    addr
}

struct Figures {
    qps: f64,
    p50: Duration,
    p99: Duration,
    lost: usize,
}

/// `IN_FLIGHT` clients, each one query outstanding at a time, for WARMUP + MEASURE.
async fn load(target: SocketAddr, queries: Arc<Vec<Vec<u8>>>) -> Figures {
    let begin = Instant::now();
    let measure_from = begin + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for c in 0..IN_FLIGHT {
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
            sock.connect(target).await.expect("connect");
            let mut buf = vec![0u8; 65535];
            let mut latencies = Vec::with_capacity(200_000);
            let mut lost = 0;
            let mut i = c * 61;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let q = &queries[i % queries.len()];
                i += 1;
                if sock.send(q).await.is_err() {
                    lost += 1;
                    continue;
                }
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(len)) if len >= 12 && buf[..2] == q[..2] => {
                        if now >= measure_from {
                            latencies.push(now.elapsed());
                        }
                    }
                    _ => lost += 1,
                }
            }
            (latencies, lost)
        }));
    }
    let mut all = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (l, n) = t.await.expect("client task");
        all.extend(l);
        lost += n;
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Figures {
        qps: all.len() as f64 / MEASURE.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        lost,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (index, queries) = fixture();
        let queries = Arc::new(queries);
        println!(
            "kaji-dns bench: {} services in the index, {IN_FLIGHT} clients in flight, {:?} measured",
            index.service_count(),
            MEASURE
        );
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let dns = udp.local_addr().expect("addr");
        let config = ServerConfig {
            zone: Zone::new("cluster.local", "127.0.0.1".parse().expect("ip")).expect("zone"),
            upstreams: vec![], // nothing leaves the machine; the mix has no outside names
            forward_timeout: Duration::from_secs(1),
        };
        let metrics = Arc::new(Metrics::new(format!("dns://{dns}")));
        tokio::spawn(serve(SharedIndex::new(index), config, metrics, udp, None));
        let echo = echo_server().await;

        let base = load(echo, queries.clone()).await;
        let ours = load(dns, queries.clone()).await;
        for (label, f) in [("udp echo (baseline)", &base), ("kaji-dns", &ours)] {
            println!(
                "{label:>20}: {:>9.0} queries/s  p50 {:>7.1} us  p99 {:>7.1} us  lost {}",
                f.qps,
                f.p50.as_secs_f64() * 1e6,
                f.p99.as_secs_f64() * 1e6,
                f.lost
            );
        }
        println!(
            "kaji-dns throughput is {:.0}% of the echo baseline",
            100.0 * ours.qps / base.qps.max(1.0)
        );
    });
}
