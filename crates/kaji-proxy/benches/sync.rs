//! `cargo bench -p kaji-proxy` (root, nftables): how long a proxy sync takes with 1,000
//! Services x 10 endpoints and 10,000 Services x 1 endpoint (kube-proxy nftables' published
//! figures are the anchor), beside a raw baseline measured in the same run: `nft -f` of the very
//! same transaction text, already rendered. Figures, not pass/fail. The table is the bench's own
//! (`kaji-proxy-bench`) and is removed at the end.

use kaji_proxy::model::{Endpoint, Protocol, ServicePort};
use kaji_proxy::nft;
use kaji_proxy::ruleset::{NodeFacts, generate};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const TABLE: &str = "kaji-proxy-bench";

fn ports(services: u32, endpoints: u32) -> Vec<ServicePort> {
    (0..services)
        .map(|i| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: Some(30000 + (i % 2768) as u16).filter(|_| i < 2768),
            cluster_ip: Some(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 43, 0, 0)) + 16 + i,
            )),
            external_ips: vec![],
            load_balancer_ips: vec![],
            external_local: false,
            internal_local: false,
            affinity_timeout: None,
            health_check_node_port: None,
            endpoints: (0..endpoints)
                .map(|e| Endpoint {
                    ip: Ipv4Addr::from(
                        u32::from(Ipv4Addr::new(10, 42, 0, 0)) + i * endpoints + e + 2,
                    )
                    .into(),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    node: Some("bench".into()),
                })
                .collect(),
        })
        .collect()
}

fn node() -> NodeFacts {
    NodeFacts {
        node_name: "bench".into(),
        pod_cidr: Some("10.42.0.0/16".parse().expect("cidr")),
        service_cidr: "10.43.0.0/16".parse().expect("cidr"),
        cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn case(services: u32, endpoints: u32) {
    let mut ps = ports(services, endpoints);
    let facts = node();
    let runs = 5;
    let (mut full, mut raw, mut incr, mut gen_only) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let _ = nft::delete_table(TABLE).await;
        // A first sync: generate, render, load (the table is created whole).
        let t = Instant::now();
        let r = generate(TABLE, &facts, &ps);
        gen_only.push(t.elapsed());
        let mut applier = nft::Applier::default();
        applier.apply(&r).await.expect("first load");
        full.push(t.elapsed());
        // The baseline: nft alone, on the same text.
        let text = r.transaction(None);
        let t = Instant::now();
        nft::load(&text).await.expect("raw load");
        raw.push(t.elapsed());
        applier.invalidate();
        applier.apply(&r).await.expect("reload");
        // A sync after one endpoint changed (a rollout step): the table is refilled in place.
        ps[0].endpoints[0].ready = !ps[0].endpoints[0].ready;
        let t = Instant::now();
        let r2 = generate(TABLE, &facts, &ps);
        applier.apply(&r2).await.expect("incremental load");
        incr.push(t.elapsed());
    }
    let r = generate(TABLE, &facts, &ps);
    println!(
        "{services:>6} services x {endpoints:>2} endpoints: {:>6} rules+elements | generate {:>8.1?} | first sync {:>8.1?} | \
         sync after one endpoint change {:>8.1?} | raw nft -f of the same text {:>8.1?} | sync / raw {:.2}",
        r.rule_count(),
        median(gen_only),
        median(full.clone()),
        median(incr),
        median(raw.clone()),
        median(full).as_secs_f64() / median(raw).as_secs_f64(),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("proxy rules sync (median of 5 runs; table {TABLE})");
        case(1_000, 10).await;
        case(10_000, 1).await;
        let _ = nft::delete_table(TABLE).await;
    });
}
