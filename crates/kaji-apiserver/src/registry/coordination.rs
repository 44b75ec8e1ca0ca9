//! coordination.k8s.io/v1: Leases (node heartbeats, leader election).

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain { info: info("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, &[], &[]), status: false, generation: false }));
}
