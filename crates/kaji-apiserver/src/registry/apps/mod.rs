//! apps/v1: the workload kinds. Each shares the selector-and-template rules of `podspec`.

mod daemonset;
mod deployment;
mod replicaset;
mod statefulset;

use super::{Strategy, immutable, podspec};
use kaji_api::FieldError;
use serde_json::Value;
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(deployment::DeploymentStrategy));
    all.push(Arc::new(replicaset::ReplicaSetStrategy));
    all.push(Arc::new(statefulset::StatefulSetStrategy));
    all.push(Arc::new(daemonset::DaemonSetStrategy));
    all.push(Arc::new(statefulset::ControllerRevisionStrategy));
}

/// apps/v1 workloads: create validation plus an immutable selector.
fn validate_workload_update(new: &Value, old: &Value, kind_lower: &str) -> Vec<FieldError> {
    let mut errs = podspec::validate_selector_and_template(new, kind_lower);
    errs.extend(immutable(new, old, "/spec/selector", "spec.selector"));
    errs
}
