//! NodeAffinity: `nodeSelector` and required node affinity filter nodes; preferred terms add
//! their weights to the score.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{
    CycleState, FilterPlugin, ScorePlugin, Snapshot, Status, default_normalize,
};
use kaji_runtime::selector::node_selector_term_matches;

pub struct NodeAffinity;

/// Whether the node satisfies the pod's nodeSelector and required node affinity (also used by
/// PodTopologySpread, which counts only nodes the pod could go to).
pub fn required_node_affinity_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.pod.spec.as_ref().is_none_or(|spec| {
        kaji_runtime::selector::required_node_affinity_matches(spec, &node.labels, &node.name)
    })
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if required_node_affinity_matches(pod, node) {
            Status::success()
        } else {
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector")
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) -> i64 {
        let preferred = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        preferred
            .into_iter()
            .flatten()
            .filter(|t| {
                t.weight != 0 && node_selector_term_matches(&t.preference, &node.labels, &node.name)
            })
            .map(|t| i64::from(t.weight))
            .sum()
    }
    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}
