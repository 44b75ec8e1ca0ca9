//! Cluster DNS (CoreDNS's kubernetes plugin, in-process). Where to start: [`run`].
//!
//! Layers, pure first:
//! - [`wire`]: the DNS message codec;
//! - [`index`]: Services, EndpointSlices and Namespaces -> the in-memory index;
//! - [`records`]: the answer function, question + index -> records (no I/O);
//! - [`server`]: UDP/TCP sockets and forwarding; [`serve`] runs it from any index (tests, bench);
//! - [`cache`]: forwarded answers kept for their TTL (at most 30 s);
//! - [`watch`]: the reflectors that keep the index current; [`metrics`]: CoreDNS's metrics.

pub mod cache;
pub mod index;
pub mod metrics;
pub mod records;
pub mod server;
pub mod watch;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket};

pub use index::{Index, SharedIndex};
pub use metrics::Metrics;
pub use records::Zone;
pub use server::{ServerConfig, serve};

/// How long [`run`] waits for the first full index before answering anyway (CoreDNS waits 5 s
/// for its API sync too).
const INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// How the node's DNS server is set up (`kaji server`/`kaji agent` fill it from their flags).
#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// The cluster DNS address (`--cluster-dns`, default 10.43.0.10); the server makes it a local
    /// address of the node (a /32 on `lo`) and listens on it.
    pub listen_ip: IpAddr,
    /// 53, except in tests.
    pub port: u16,
    /// `cluster.local`.
    pub cluster_domain: String,
    /// Resolvers for names outside the cluster domain; empty: those of the host's /etc/resolv.conf.
    pub upstreams: Vec<SocketAddr>,
    /// Where `/metrics` is served (CoreDNS's default is :9153); None: not served.
    pub metrics_addr: Option<SocketAddr>,
}

/// Serves cluster DNS until the process ends.
pub async fn run(factory: kaji_runtime::informer::Factory, opts: DnsOptions) -> anyhow::Result<()> {
    ensure_local_address(opts.listen_ip)?;
    let addr = SocketAddr::new(opts.listen_ip, opts.port);
    let udp = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding DNS on udp {addr}"))?;
    let tcp = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding DNS on tcp {addr}"))?;
    let upstreams = if opts.upstreams.is_empty() {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        server::resolv_conf_nameservers(&text, opts.listen_ip)
    } else {
        opts.upstreams.clone()
    };
    if upstreams.is_empty() {
        tracing::warn!("DNS: no upstream resolvers; names outside the cluster will fail");
    }
    let zone = Zone::new(&opts.cluster_domain, opts.listen_ip)
        .with_context(|| format!("cluster domain {:?}", opts.cluster_domain))?;
    let metrics = Arc::new(Metrics::new(format!("dns://{addr}")));
    if let Some(metrics_addr) = opts.metrics_addr {
        let listener = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("binding DNS metrics on {metrics_addr}"))?;
        tokio::spawn(metrics::serve_metrics(listener, metrics.clone()));
    }

    let index = SharedIndex::default();
    let (synced_tx, synced) = tokio::sync::oneshot::channel();
    watch::spawn(&factory, index.clone(), synced_tx);
    if tokio::time::timeout(INITIAL_SYNC_TIMEOUT, synced)
        .await
        .is_err()
    {
        tracing::warn!("DNS: API not synced after 5s; serving with what we have");
    }
    tracing::info!(%addr, domain = %opts.cluster_domain, ?upstreams, "cluster DNS serving");
    let config = ServerConfig {
        zone,
        upstreams,
        forward_timeout: server::DEFAULT_FORWARD_TIMEOUT,
    };
    serve(index, config, metrics, udp, Some(tcp)).await
}

/// Makes `ip` a local address of the node: a /32 (/128) on `lo`, unless already there.
/// Loopback and unspecified addresses need nothing.
pub fn ensure_local_address(ip: IpAddr) -> anyhow::Result<()> {
    if ip.is_loopback() || ip.is_unspecified() {
        return Ok(());
    }
    let shown = Command::new("ip")
        .args(["-o", "addr", "show", "dev", "lo"])
        .output()
        .context("running `ip addr show dev lo`")?;
    if has_address(&String::from_utf8_lossy(&shown.stdout), ip) {
        return Ok(());
    }
    let cidr = host_cidr(ip);
    let added = Command::new("ip")
        .args(["addr", "add", &cidr, "dev", "lo"])
        .output()
        .with_context(|| format!("running `ip addr add {cidr} dev lo`"))?;
    let stderr = String::from_utf8_lossy(&added.stderr);
    // "File exists": someone added it in between, which is what we wanted.
    if !added.status.success() && !stderr.contains("File exists") {
        anyhow::bail!("`ip addr add {cidr} dev lo` failed: {}", stderr.trim());
    }
    Ok(())
}

/// Removes what [`ensure_local_address`] added (best effort).
pub fn remove_local_address(ip: IpAddr) {
    if ip.is_loopback() || ip.is_unspecified() {
        return;
    }
    let cidr = host_cidr(ip);
    if let Err(e) = Command::new("ip")
        .args(["addr", "del", &cidr, "dev", "lo"])
        .output()
    {
        tracing::debug!(error = %e, "removing {cidr} from lo");
    }
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// Whether `ip -o addr show` output lists `ip`.
fn has_address(output: &str, ip: IpAddr) -> bool {
    output.lines().any(|line| {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if (w == "inet" || w == "inet6")
                && let Some(addr) = words.next()
                && addr
                    .split('/')
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    == Some(ip)
            {
                return true;
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_in_ip_output() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n1: lo    inet 10.43.0.10/32 scope global lo\\       valid_lft forever\n1: lo    inet6 ::1/128 scope host \\       valid_lft forever\n";
        assert!(has_address(out, "10.43.0.10".parse().unwrap()));
        assert!(has_address(out, "::1".parse().unwrap()));
        assert!(!has_address(out, "10.43.0.1".parse().unwrap()));
        assert_eq!(host_cidr("10.43.0.10".parse().unwrap()), "10.43.0.10/32");
    }

    #[test]
    fn loopback_needs_no_address() {
        assert!(ensure_local_address("127.0.0.1".parse().unwrap()).is_ok());
    }
}
