//! The `healthCheckNodePort` servers: a Service with `externalTrafficPolicy: Local` gets an HTTP
//! port on every node that answers 200 when the node has a local endpoint and 503 when not, so
//! an external load balancer sends traffic only to nodes that keep it (upstream's
//! `pkg/proxy/healthcheck`, same JSON body).

use crate::model::ServicePort;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// Answers every path with the Service's health, as upstream's health-check server does.
async fn serve(listener: tokio::net::TcpListener, health: Shared) {
    kaji_runtime::http::serve(listener, move |_path| {
        let h = health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (status, json) = body(&h);
        kaji_runtime::http::Response::new(status, "application/json", json)
    })
    .await;
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
