//! The `healthCheckNodePort` servers: a Service with `externalTrafficPolicy: Local` gets an HTTP
//! port on every node that answers 200 when the node has a local endpoint and 503 when not, so
//! an external load balancer sends traffic only to nodes that keep it (upstream's
//! `pkg/proxy/healthcheck`, same JSON body).

use crate::model::ServicePort;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Default, PartialEq)]
struct Health {
    namespace: String,
    name: String,
    local_endpoints: usize,
}

fn body(h: &Health) -> (u16, String) {
    let status = if h.local_endpoints > 0 { 200 } else { 503 };
    let json = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": \"{}\",\n\t\t\"name\": \"{}\"\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": true\n}}",
        h.namespace, h.name, h.local_endpoints
    );
    (status, json)
}

type Shared = Arc<Mutex<Health>>;

#[derive(Default)]
pub struct Servers(tokio::sync::Mutex<HashMap<u16, (Shared, tokio::task::JoinHandle<()>)>>);

impl Servers {
    /// Starts, updates and stops servers so that there is one per health-check node port.
    pub async fn sync(&self, ports: &[ServicePort], node: &str) {
        let mut want: HashMap<u16, Health> = HashMap::new();
        for sp in ports.iter().filter(|p| p.external_local) {
            let Some(port) = sp.health_check_node_port else {
                continue;
            };
            let local = sp
                .endpoints
                .iter()
                .filter(|e| e.ready && e.node.as_deref() == Some(node))
                .count();
            let h = want.entry(port).or_insert_with(|| Health {
                namespace: sp.namespace.clone(),
                name: sp.name.clone(),
                local_endpoints: 0,
            });
            // Several ports of one Service share the check; count endpoints once.
            h.local_endpoints = h.local_endpoints.max(local);
        }
        let mut servers = self.0.lock().await;
        servers.retain(|port, (_, task)| {
            let keep = want.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, h) in want {
            if let Some((shared, _)) = servers.get(&port) {
                *shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = h;
                continue;
            }
            let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port, error = %e, "serving a health-check node port");
                    continue;
                }
            };
            let shared: Shared = Arc::new(Mutex::new(h));
            let task = tokio::spawn(serve(listener, shared.clone()));
            servers.insert(port, (shared, task));
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, health: Shared) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf)).await;
            let h = health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let (status, json) = body(&h);
            let reason = if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_with_a_local_endpoint() {
        let mut h = Health {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 0,
        };
        let (status, json) = body(&h);
        assert_eq!(status, 503);
        assert!(json.contains("\"localEndpoints\": 0"));
        h.local_endpoints = 2;
        assert_eq!(body(&h).0, 200);
    }
}
