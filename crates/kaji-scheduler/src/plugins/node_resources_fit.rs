//! NodeResourcesFit: the pod's requests must fit in allocatable minus what the node's pods
//! (bound and assumed) request; scores with the LeastAllocated strategy (cpu and memory, weight
//! 1 each, counting containers without requests at upstream's defaults).

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, ScorePlugin, Snapshot, Status};

pub struct NodeResourcesFit;

/// Every resource the pod lacks on the node, in upstream's order (pods, cpu, memory,
/// ephemeral-storage, then extended resources by name).
pub fn insufficient_resources(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    let (alloc, used, req) = (&node.allocatable, &node.requested, &pod.requests);
    if used.allowed_pod_number + 1 > alloc.allowed_pod_number {
        out.push("Too many pods".to_string());
    }
    if req.is_zero() {
        return out;
    }
    for (name, want, have, taken) in [
        ("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu),
        ("memory", req.memory, alloc.memory, used.memory),
        (
            "ephemeral-storage",
            req.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        ),
    ] {
        if want > 0 && want > have - taken {
            out.push(format!("Insufficient {name}"));
        }
    }
    for (name, want) in &req.scalar {
        if *want > 0 && *want > alloc.get(name) - used.get(name) {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons = insufficient_resources(pod, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                reasons,
                ..Status::unschedulable("")
            }
        }
    }
}

fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) -> i64 {
        let cpu = least_allocated(
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        );
        let mem = least_allocated(
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}
