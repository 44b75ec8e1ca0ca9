//! events.k8s.io/v1 Events (stored apart from core/v1 Events for now).

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain { info: info("events.k8s.io", "v1", "Event", "events", "event", true, &["ev"], &[]), status: false, generation: false }));
}
