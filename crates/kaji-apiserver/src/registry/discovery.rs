//! discovery.k8s.io/v1: EndpointSlices.

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain { info: info("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, &[], &[]), status: false, generation: false }));
}
