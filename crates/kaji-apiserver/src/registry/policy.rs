//! policy/v1: PodDisruptionBudgets (Eviction is the pods/eviction subresource).

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain { info: info("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], &["status"]), status: true, generation: true }));
}
