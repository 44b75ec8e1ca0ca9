//! The built-in ingress controller (k3s ships Traefik; Kaji's is in the binary). Where to start: [`run`].
//!
//! - [`routing`]: the pure part: served Ingresses + Services + EndpointSlices -> a routing table,
//!   and a request's host and path -> a backend (the Ingress spec's matching rules).
//! - [`tls`]: SNI -> the `kubernetes.io/tls` Secret named by `spec.tls`, else a self-signed default.
//! - [`snapshot`]: both tables, rebuilt whole on every change and swapped in atomically.
//! - [`proxy`]: the hyper HTTP/HTTPS servers that forward to endpoints ([`proxy::serve`] runs
//!   one from a snapshot, without an API server).
//! - [`controller`]: the watches that rebuild the snapshot, and the Ingress status writer.
//! - [`class`]: which Ingresses are ours, and the IngressClass created at start.
//! - [`events`]: Warning Events for missing Services and Secrets.

pub mod class;
pub mod controller;
pub mod events;
pub mod headers;
pub mod proxy;
pub mod routing;
pub mod snapshot;
pub mod tls;

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct IngressOptions {
    /// HTTP listener (default 0.0.0.0:80).
    pub http_addr: SocketAddr,
    /// HTTPS listener (default 0.0.0.0:443).
    pub https_addr: SocketAddr,
    /// The IngressClass this controller serves, created at start and marked default (`kaji`).
    pub class_name: String,
    /// The node's addresses, published in each served Ingress's status.loadBalancer.
    pub node_ips: Vec<IpAddr>,
}

/// Serves Ingresses until the process ends.
pub async fn run(factory: kaji_runtime::informer::Factory, opts: IngressOptions) -> anyhow::Result<()> {
    let client = factory.client();
    let snapshot = snapshot::SnapshotHandle::default();
    let default_cert = tls::default_certificate()?;
    let resolver = Arc::new(tls::CertResolver::new(snapshot.clone(), default_cert));
    let tls_config = tls::server_config(resolver)?;
    let http = tokio::net::TcpListener::bind(opts.http_addr)
        .await
        .with_context(|| format!("listening on {} (ingress HTTP)", opts.http_addr))?;
    let https = tokio::net::TcpListener::bind(opts.https_addr)
        .await
        .with_context(|| format!("listening on {} (ingress HTTPS)", opts.https_addr))?;
    tracing::info!(http = %opts.http_addr, https = %opts.https_addr, class = opts.class_name, "ingress controller listening");

    // The class is created in the background: the API server may still be starting.
    let class_client = client.clone();
    let class_name = opts.class_name.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(500);
        while let Err(e) = class::ensure_class(&class_client, &class_name).await {
            tracing::warn!("{e:#}; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });

    let proxy = proxy::Proxy::new(snapshot.clone());
    tokio::select! {
        r = proxy.clone().serve_http(http) => r.context("ingress HTTP server"),
        r = proxy.serve_https(https, tls_config) => r.context("ingress HTTPS server"),
        r = controller::run(&factory, opts.class_name, opts.node_ips, snapshot) => r.context("ingress controller"),
    }
}
