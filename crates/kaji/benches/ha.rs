//! HA benchmark (`cargo bench -p kaji --bench ha`; root: the servers get loopback addresses):
//! ConfigMap creates from N clients (kube-rs over HTTPS), writes/s and p50/p99, in one run on
//! - the embedded store (one server),
//! - a 1-member etcd (one server, `--datastore-endpoint`),
//! - a 3-member etcd with 3 servers (the clients spread over them; `tests/support/ha.rs`),
//!
//! then failover on the 3-server cluster: kill -9 of the server holding the Leases while one
//! client per server keeps creating (each moving to the next server when its own fails): the
//! time until another server holds the controller-manager and scheduler Leases, and the longest
//! gap between two acknowledged writes around the kill. Figures are printed, not asserted.
//! `KAJI_BENCH_HA_CLIENTS` (default 8) and `KAJI_BENCH_HA_WRITES` (default 2,000) size the load.
//!
//! Measured (release build, 2 shared cores, 8 clients, 2,000 creates): embedded store 965
//! writes/s (p99 20 ms), 1-member etcd 336 writes/s (p99 63 ms), 3-member etcd with 3 servers
//! 127 writes/s (p99 154 ms); after the kill new leaders in 15.4 s (controller manager) and
//! 15.7 s (scheduler), the first write acknowledged through another server 8 ms after it.

#[path = "../../../tests/support/ha.rs"]
mod ha;
#[path = "../../../tests/support/mod.rs"]
mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn client_for(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn cm(name: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..ConfigMap::default()
    }
}

/// `writes` creates from `clients` concurrent clients, client t on `servers[t % len]`.
async fn load(label: &str, servers: &[kube::Client], clients: usize, writes: usize) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|t| {
            let api: Api<ConfigMap> =
                Api::namespaced(servers[t % servers.len()].clone(), "default");
            let label: String = label
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
                .split('-')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (t..writes).step_by(clients) {
                    let t0 = Instant::now();
                    api.create(&PostParams::default(), &cm(format!("{label}-{i}")))
                        .await
                        .expect("a create");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("a client"));
    }
    let elapsed = started.elapsed();
    lat.sort();
    println!(
        "{label:<28} {clients:>3} clients {writes:>6} creates: {:>7.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        writes as f64 / elapsed.as_secs_f64(),
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let clients = env("KAJI_BENCH_HA_CLIENTS", 8);
    let writes = env("KAJI_BENCH_HA_WRITES", 2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    {
        let c = support::Cluster::start("bench-ha-embedded");
        let client = rt.block_on(client_for(&c.kubeconfig));
        rt.block_on(load("embedded store", &[client], clients, writes));
    }
    {
        let c = ha::HaCluster::start("bench-ha-etcd1", 1, 1, &[]);
        let client = rt.block_on(c.client(0));
        rt.block_on(load("etcd 1 member, 1 server", &[client], clients, writes));
    }
    let mut c = ha::HaCluster::start("bench-ha-etcd3", 3, 3, &[]);
    let all: Vec<kube::Client> =
        rt.block_on(async { futures::future::join_all((0..3).map(|i| c.client(i))).await });
    rt.block_on(load("etcd 3 members, 3 servers", &all, clients, writes));

    // Failover.
    let holder = |c: &ha::HaCluster, lease: &str| {
        support::wait_for("a lease holder", Duration::from_secs(60), || {
            c.lease_holder(lease)
        })
    };
    let cm_holder = holder(&c, "kube-controller-manager");
    let sched_holder = holder(&c, "kube-scheduler");
    let leader = c.server_of(&cm_holder).expect("the leader's server");
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (all, stop, acks) = (all.clone(), stop.clone(), acks.clone());
            rt.spawn(async move {
                let mut server = t;
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let api: Api<ConfigMap> = Api::namespaced(all[server].clone(), "default");
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        api.create(&PostParams::default(), &cm(format!("failover-{t}-{i}"))),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {
                            acks.lock().expect("acks").push(Instant::now());
                            i += 1;
                        }
                        Ok(Err(kube::Error::Api(e))) if e.code == 409 => i += 1,
                        _ => server = (server + 1) % all.len(),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    c.kill(leader);
    let killed = Instant::now();
    let took = |c: &ha::HaCluster, lease: &str, old: &str| {
        support::wait_for("a new lease holder", Duration::from_secs(60), || {
            c.lease_holder(lease).filter(|h| h != old)
        });
        killed.elapsed()
    };
    let cm_took = took(&c, "kube-controller-manager", &cm_holder);
    let sched_took = took(&c, "kube-scheduler", &sched_holder);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = rt.block_on(w);
    }
    let acks = acks.lock().expect("acks").clone();
    let mut sorted = acks.clone();
    sorted.sort();
    let first_after = sorted
        .iter()
        .find(|t| **t > killed)
        .map(|t| t.duration_since(killed));
    let longest_gap = sorted
        .windows(2)
        .filter(|w| {
            w[1] > killed - Duration::from_secs(1) && w[0] < killed + Duration::from_secs(5)
        })
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    println!(
        "failover (kill -9 of the leader, 3 servers): new controller-manager leader after {:.1} s, scheduler after {:.1} s",
        cm_took.as_secs_f64(),
        sched_took.as_secs_f64()
    );
    println!(
        "failover writes: first acknowledged write {:.0} ms after the kill, longest gap between acknowledged writes around it {:.0} ms ({} writes in the run)",
        first_after.unwrap_or_default().as_secs_f64() * 1e3,
        longest_gap.as_secs_f64() * 1e3,
        acks.len()
    );
}
