//! networking.k8s.io/v1: Ingress, IngressClass, NetworkPolicy.

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain { info: info("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], &["status"]), status: true, generation: true }));
    all.push(Arc::new(Plain { info: info("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, &[], &[]), status: false, generation: false }));
    all.push(Arc::new(Plain { info: info("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], &[]), status: false, generation: true }));
}
