//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory fractions stay close
//! once the pod is placed (score `(1 - standard deviation) * 100`).

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin, Snapshot};

pub struct BalancedAllocation;

#[allow(
    clippy::cast_precision_loss,
    reason = "resource amounts are far below 2^52"
)]
fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        1.0
    } else {
        (requested as f64 / capacity as f64).min(1.0)
    }
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn weight(&self) -> i64 {
        1
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "the score is within 0..=100"
    )]
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) -> i64 {
        let cpu = fraction(
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        );
        let mem = fraction(
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        );
        // With two resources the standard deviation is half their difference.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}
