//! The agent's client-side load balancer over the servers, as k3s's agent has it
//! (`pkg/agent/loadbalancer`): a TCP pass-through on 127.0.0.1 (k3s: port 6444) that every
//! client of the node (kubelet, proxy, DNS, ingress, hollow nodes) dials instead of a server.
//! The servers are the URL the agent was given plus every address of the `kubernetes` Service's
//! endpoints (refreshed every few seconds). Connections go to the current server; when it
//! refuses a connection or fails a health check (every second: a connect and an answer within
//! 2 s, so that a hung server counts as failed too) the balancer
//! switches to the next healthy one and closes the connections still open to the failed one,
//! so that clients reconnect (their watches start again) through a live server.
//!
//! TLS goes through untouched, so the clients verify the server they reach: every Kaji server's
//! certificate carries 127.0.0.1, the name the node's kubeconfigs use (as k3s's do).

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a dial of a server may take before the next one is tried.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a health check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often every server is health-checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the server list is read from the `kubernetes` endpoints.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

struct Server {
    addr: String,
    healthy: bool,
    /// Bumped when the server fails: its proxied connections close.
    generation: watch::Sender<u64>,
}

struct State {
    /// The server the agent was given, always kept (k3s's default server).
    default: String,
    servers: Vec<Server>,
    /// Index of the server new connections go to.
    current: usize,
}

/// A running load balancer. Cheap to clone.
#[derive(Clone)]
pub struct LoadBalancer {
    local: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// `host:port` of an `https://host:port[/...]` URL.
pub fn host_port(url: &str) -> Result<String> {
    let uri: http::Uri = url.parse().with_context(|| format!("server URL {url:?}"))?;
    let host = uri.host().context("no host in the server URL")?;
    let port = uri.port_u16().unwrap_or(443);
    Ok(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl LoadBalancer {
    /// Listens on `listen` (127.0.0.1:6444 as k3s; port 0: any free port) in front of `server`
    /// (the agent's `--server` URL).
    pub async fn start(listen: SocketAddr, server: &str) -> Result<LoadBalancer> {
        let default = host_port(server)?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the agent load balancer on {listen}"))?;
        let local = listener.local_addr()?;
        let lb = LoadBalancer {
            local,
            state: Arc::new(Mutex::new(State {
                servers: vec![Server {
                    addr: default.clone(),
                    healthy: true,
                    generation: watch::channel(0).0,
                }],
                default,
                current: 0,
            })),
        };
        tracing::info!(%local, servers = ?lb.servers(), "agent load balancer started");
        let this = lb.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        let this = this.clone();
                        tokio::spawn(async move { this.proxy(conn).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "agent load balancer: accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let this = lb.clone();
        tokio::spawn(async move { this.health_checks().await });
        Ok(lb)
    }

    /// The local address clients dial.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `https://127.0.0.1:<port>`, the URL the node's kubeconfigs carry.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The servers, the current one first.
    pub fn servers(&self) -> Vec<String> {
        let s = self.lock();
        let mut out: Vec<String> = s.servers.iter().map(|x| x.addr.clone()).collect();
        if s.current < out.len() {
            let cur = out.remove(s.current);
            out.insert(0, cur);
        }
        out
    }

    /// Replaces the server list (`host:port` each); the default server always stays, and so
    /// does the current one while it is healthy.
    pub fn set_servers(&self, mut addrs: Vec<String>) {
        let mut s = self.lock();
        if !addrs.contains(&s.default) {
            addrs.insert(0, s.default.clone());
        }
        addrs.dedup();
        let current = s.servers.get(s.current).map(|c| c.addr.clone());
        let before: Vec<String> = s.servers.iter().map(|x| x.addr.clone()).collect();
        let mut old: Vec<Server> = std::mem::take(&mut s.servers);
        let mut next = Vec::new();
        for a in &addrs {
            match old.iter().position(|o| &o.addr == a) {
                Some(i) => next.push(old.swap_remove(i)),
                None => next.push(Server {
                    addr: a.clone(),
                    healthy: true,
                    generation: watch::channel(0).0,
                }),
            }
        }
        if next.iter().map(|n| &n.addr).ne(before.iter()) {
            tracing::info!(servers = ?addrs, "agent load balancer: server list updated");
        }
        // Servers no longer listed: their connections close.
        for gone in old {
            gone.generation.send_modify(|g| *g += 1);
        }
        s.current = current
            .and_then(|c| next.iter().position(|n| n.addr == c))
            .unwrap_or(0);
        s.servers = next;
    }

    /// Where the next connection goes: the current server if healthy, else the next healthy
    /// one (which becomes current), else the current anyway.
    fn pick(&self, skip: &[String]) -> Option<(String, watch::Receiver<u64>)> {
        let mut s = self.lock();
        let n = s.servers.len();
        for i in 0..n {
            let idx = (s.current + i) % n;
            let srv = &s.servers[idx];
            if srv.healthy && !skip.contains(&srv.addr) {
                if idx != s.current {
                    tracing::info!(from = %s.servers[s.current].addr, to = %srv.addr, "agent load balancer: switching server");
                    s.current = idx;
                }
                let srv = &s.servers[idx];
                return Some((srv.addr.clone(), srv.generation.subscribe()));
            }
        }
        s.servers
            .iter()
            .find(|srv| !skip.contains(&srv.addr))
            .map(|srv| (srv.addr.clone(), srv.generation.subscribe()))
    }

    fn mark(&self, addr: &str, healthy: bool) {
        let mut s = self.lock();
        if let Some(srv) = s.servers.iter_mut().find(|x| x.addr == addr)
            && srv.healthy != healthy
        {
            srv.healthy = healthy;
            if healthy {
                tracing::info!(server = %addr, "agent load balancer: server healthy again");
            } else {
                tracing::warn!(server = %addr, "agent load balancer: server failed; closing its connections");
                srv.generation.send_modify(|g| *g += 1);
            }
        }
    }

    async fn proxy(&self, mut conn: TcpStream) {
        let mut tried: Vec<String> = Vec::new();
        loop {
            let Some((addr, mut generation)) = self.pick(&tried) else {
                tracing::debug!("agent load balancer: no server to dial");
                return;
            };
            match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr)).await {
                Ok(Ok(mut upstream)) => {
                    let _ = conn.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    generation.borrow_and_update();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
                        _ = generation.changed() => {}
                    }
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(server = %addr, error = %e, "agent load balancer: dial failed");
                }
                Err(_) => tracing::debug!(server = %addr, "agent load balancer: dial timed out"),
            }
            self.mark(&addr, false);
            tried.push(addr);
        }
    }

    async fn health_checks(&self) {
        loop {
            tokio::time::sleep(HEALTH_INTERVAL).await;
            let addrs: Vec<String> = self.lock().servers.iter().map(|s| s.addr.clone()).collect();
            let checks = addrs.into_iter().map(|a| async move {
                let ok = probe(&a).await;
                (a, ok)
            });
            for (a, ok) in futures::future::join_all(checks).await {
                self.mark(&a, ok);
            }
            // Move off a failed current server at once (not only at the next dial).
            let _ = self.pick(&[]);
        }
    }

    /// Keeps the server list current from the `kubernetes` endpoints, read with `client`
    /// (one allowed to list endpoints in `default`, such as the node's proxy).
    pub async fn follow_endpoints(self, client: kube::Client) {
        use k8s_openapi::api::core::v1::Endpoints;
        let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
        let params = kube::api::ListParams::default().fields("metadata.name=kubernetes");
        loop {
            match api.list(&params).await {
                Ok(list) => {
                    let mut addrs = Vec::new();
                    for ep in list.items {
                        for subset in ep.subsets.unwrap_or_default() {
                            let port = subset
                                .ports
                                .unwrap_or_default()
                                .iter()
                                .find(|p| p.name.as_deref() == Some("https"))
                                .map(|p| p.port);
                            for a in subset.addresses.unwrap_or_default() {
                                if let Some(port) = port {
                                    addrs.push(SocketAddr::new(
                                        a.ip.parse()
                                            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                                        u16::try_from(port).unwrap_or(443),
                                    ));
                                }
                            }
                        }
                    }
                    let addrs: Vec<String> = addrs
                        .into_iter()
                        .filter(|a| !a.ip().is_unspecified())
                        .map(|a| a.to_string())
                        .collect();
                    if !addrs.is_empty() {
                        self.set_servers(addrs);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "agent load balancer: reading the kubernetes endpoints")
                }
            }
            tokio::time::sleep(REFRESH_INTERVAL).await;
        }
    }
}

/// Whether the server at `addr` answers: a TCP connect, then a plaintext HTTP request, to which a
/// live TLS server answers at once (an alert, or it closes). A process that is stopped or hung
/// still gets its connections accepted by the kernel, but answers nothing.
async fn probe(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let check = async {
        let mut conn = TcpStream::connect(addr).await.ok()?;
        conn.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        // Bytes, EOF and a reset all mean a live process answered.
        let _ = conn.read(&mut buf).await;
        Some(())
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, check).await,
        Ok(Some(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: u8) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    while c.read_exact(&mut b).await.is_ok() {
                        if c.write_all(&[tag]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, h)
    }

    async fn ask(lb: &LoadBalancer) -> Option<u8> {
        let mut c = TcpStream::connect(lb.local_addr()).await.ok()?;
        c.write_all(b"?").await.ok()?;
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut b))
            .await
            .ok()?
            .ok()?;
        Some(b[0])
    }

    #[tokio::test]
    async fn a_hung_server_fails_its_health_check() {
        // Bound but never accepting: the kernel completes the handshake, nobody answers.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = hung.local_addr().unwrap();
        let (b, _hb) = echo_server(b'b').await;
        let lb = LoadBalancer::start("127.0.0.1:0".parse().unwrap(), &format!("https://{a}"))
            .await
            .unwrap();
        lb.set_servers(vec![a.to_string(), b.to_string()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lb.servers()[0] != b.to_string() {
            assert!(
                std::time::Instant::now() < deadline,
                "still on the hung server"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ask(&lb).await, Some(b'b'));
        drop(hung);
    }

    #[test]
    fn host_port_of_urls() {
        assert_eq!(host_port("https://10.0.0.1:6443").unwrap(), "10.0.0.1:6443");
        assert_eq!(host_port("https://example.com").unwrap(), "example.com:443");
        assert_eq!(host_port("https://[::1]:6443/").unwrap(), "[::1]:6443");
    }

    #[tokio::test]
    async fn fails_over_to_a_live_server_and_back_to_the_list() {
        let (a, ha) = echo_server(b'a').await;
        let (b, _hb) = echo_server(b'b').await;
        let lb = LoadBalancer::start("127.0.0.1:0".parse().unwrap(), &format!("https://{a}"))
            .await
            .unwrap();
        assert_eq!(ask(&lb).await, Some(b'a'));
        lb.set_servers(vec![a.to_string(), b.to_string()]);
        assert_eq!(
            lb.servers(),
            vec![a.to_string(), b.to_string()],
            "the current server stays first"
        );
        assert_eq!(ask(&lb).await, Some(b'a'));
        // The current server dies: the next connection goes to the other one at once.
        ha.abort();
        let _ = ha.await;
        assert_eq!(ask(&lb).await, Some(b'b'));
        assert_eq!(lb.servers()[0], b.to_string());
        // The given server is always kept in the list.
        lb.set_servers(vec![b.to_string()]);
        assert!(lb.servers().contains(&a.to_string()));
    }
}
