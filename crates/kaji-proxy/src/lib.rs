//! The service proxy, modelled on kube-proxy's nftables mode. Where to start: [`run`] watches
//! Services, EndpointSlices and its own Node through the API (a spoke like any other), turns
//! them into one table with the pure [`ruleset::generate`] (its module doc draws the table), and
//! loads it with [`nft::Applier`] whenever it changes.
//!
//! - `model`: Services + EndpointSlices -> service ports with their endpoints (pure);
//! - `ruleset`: the generator and the transaction text (pure, unit-tested per feature);
//! - `nft`: the applier (`nft -f`);
//! - `metrics`: kube-proxy's sync metrics at `/metrics`;
//! - `healthcheck`: the `healthCheckNodePort` servers of `externalTrafficPolicy: Local` Services.

pub mod healthcheck;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod ruleset;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kaji_runtime::watch::reflect;
use kube::runtime::watcher;
use kaji_runtime::informer::Factory;
use ruleset::{Cidr, NodeFacts};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The proxy's settings (`kaji server`/`kaji agent`/`kaji proxy` fill them from their flags).
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    pub node_name: String,
    /// `--service-cidr` (10.43.0.0/16): every address of it that no Service holds is rejected.
    pub service_cidr: Cidr,
    /// `--cluster-dns` (10.43.0.10), served on the node itself by kaji-dns.
    pub cluster_dns: Ipv4Addr,
    /// The nftables table (family inet) the proxy owns; it never touches another.
    pub table: String,
    /// Where `/metrics` is served (kube-proxy's default 127.0.0.1:10249); None: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// How often the proxy checks that its table is still loaded (someone may flush the ruleset).
    pub check_interval: Duration,
}

impl ProxyOptions {
    pub fn new(node_name: &str, service_cidr: Cidr, cluster_dns: Ipv4Addr) -> ProxyOptions {
        ProxyOptions {
            node_name: node_name.to_string(),
            service_cidr,
            cluster_dns,
            table: "kaji-proxy".into(),
            metrics_addr: None,
            check_interval: Duration::from_secs(5),
        }
    }
}

/// The node settings the proxy needs from the kernel: forwarding, and `route_localnet` so that
/// NodePorts answer on 127.0.0.1 (as kube-proxy sets it).
fn set_sysctls() {
    for (path, value) in [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/ipv4/conf/all/route_localnet", "1"),
    ] {
        if let Err(e) = std::fs::write(path, value) {
            tracing::warn!(%path, error = %e, "setting a sysctl");
        }
    }
}

/// Runs the proxy until the process ends.
pub async fn run(factory: Factory, opts: ProxyOptions) -> Result<()> {
    set_sysctls();
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(addr) = opts.metrics_addr {
        let m = metrics.clone();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "proxy metrics");
        tokio::spawn(kaji_runtime::http::serve(
            listener,
            move |path| match path {
                "/metrics" => kaji_runtime::http::Response::new(
                    200,
                    kaji_runtime::http::PROMETHEUS_TEXT,
                    m.render(),
                ),
                _ => kaji_runtime::http::Response::not_found(),
            },
        ));
    }
    let notify = Arc::new(Notify::new());
    let all = watcher::Config::default;
    let services = reflect::<Service>(&factory, all(), notify.clone());
    let slices = reflect::<EndpointSlice>(&factory, all(), notify.clone());
    let node_cfg = all().fields(&format!("metadata.name={}", opts.node_name));
    let nodes = reflect::<Node>(&factory, node_cfg, notify.clone());
    let health = healthcheck::Servers::default();

    let mut applier = nft::Applier::default();
    let mut backoff = Duration::from_secs(1);
    let mut next_check = Instant::now() + opts.check_interval;
    // The first sync runs at once, before the watches have listed anything: it puts the reject
    // rules for the service range in place before any pod can send there.
    loop {
        let facts = NodeFacts {
            node_name: opts.node_name.clone(),
            pod_cidr: nodes
                .state()
                .first()
                .and_then(|n| n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()),
            service_cidr: opts.service_cidr,
            cluster_dns: opts.cluster_dns,
        };
        let svcs = services.state();
        let sls = slices.state();
        let ports = model::service_ports(
            &svcs.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            &sls.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        );
        let want = ruleset::generate(&opts.table, &facts, &ports);
        let started = Instant::now();
        let wait = match applier.apply(&want).await {
            Ok(ran) => {
                if ran {
                    metrics.synced(started.elapsed(), want.rule_count());
                    tracing::debug!(
                        rules = want.rule_count(),
                        ms = started.elapsed().as_millis() as u64,
                        "proxy rules synced"
                    );
                }
                backoff = Duration::from_secs(1);
                None
            }
            Err(e) => {
                metrics.failed();
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "syncing proxy rules; the last good rules stay");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                Some(w)
            }
        };
        health.sync(&ports, &opts.node_name).await;
        let sleep_until = match wait {
            Some(w) => Instant::now() + w,
            None => next_check,
        };
        tokio::select! {
            () = notify.notified() => {
                // Let a burst of changes (a rollout step) settle into one sync.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            () = tokio::time::sleep_until(sleep_until.into()) => {}
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + opts.check_interval;
            if !nft::present(&opts.table).await {
                tracing::warn!(table = %opts.table, "the proxy's table is gone (flushed by someone?); reloading it");
                applier.invalidate();
            }
        }
    }
}
