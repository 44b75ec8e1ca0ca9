//! InterPodAffinity: required pod affinity and anti-affinity by `topologyKey` (including the
//! anti-affinity of pods already placed), and preferred terms as a score.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, ScorePlugin, Snapshot, Status};
use std::collections::HashMap;

pub struct InterPodAffinity;

type TopologyCounts = HashMap<(String, String), i64>;

#[derive(Default)]
struct FilterState {
    /// (key, value) domains where a placed pod's required anti-affinity selects the pod.
    existing_anti: TopologyCounts,
    /// Domains holding pods that match all the pod's affinity terms.
    affinity: TopologyCounts,
    /// Domains holding pods that match one of the pod's anti-affinity terms.
    anti: TopologyCounts,
}

const FILTER_KEY: &str = "InterPodAffinity/filter";
const SCORE_KEY: &str = "InterPodAffinity/score";

fn bump(m: &mut TopologyCounts, node: &NodeInfo, key: &str, by: i64) {
    if let Some(v) = node.labels.get(key) {
        *m.entry((key.to_string(), v.clone())).or_default() += by;
    }
}

fn any_domain(m: &TopologyCounts, node: &NodeInfo, key: &str) -> bool {
    node.labels
        .get(key)
        .is_some_and(|v| m.get(&(key.to_string(), v.clone())).is_some_and(|c| *c > 0))
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, pod: &PodInfo, snap: &Snapshot<'_>, state: &mut CycleState) -> Status {
        let mut st = FilterState::default();
        let incoming = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !incoming && !snap.cache.has_pods_with_required_anti_affinity() {
            return Status::success(); // nothing to count on any node
        }
        for node in snap.cache.node_infos() {
            if node.pods_with_required_anti_affinity > 0 {
                for existing in node
                    .pods
                    .iter()
                    .filter(|p| !p.required_anti_affinity.is_empty())
                {
                    for t in existing
                        .required_anti_affinity
                        .iter()
                        .filter(|t| t.matches(pod))
                    {
                        bump(&mut st.existing_anti, node, &t.topology_key, 1);
                    }
                }
            }
            if !incoming {
                continue;
            }
            for existing in &node.pods {
                if !pod.required_affinity.is_empty()
                    && pod.required_affinity.iter().all(|t| t.matches(existing))
                {
                    for t in &pod.required_affinity {
                        bump(&mut st.affinity, node, &t.topology_key, 1);
                    }
                }
                for t in pod
                    .required_anti_affinity
                    .iter()
                    .filter(|t| t.matches(existing))
                {
                    bump(&mut st.anti, node, &t.topology_key, 1);
                }
            }
        }
        if !st.existing_anti.is_empty() || incoming {
            state.write(FILTER_KEY, st);
        }
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(FILTER_KEY) else {
            return Status::success();
        };
        if !pod.required_affinity.is_empty()
            && !pod
                .required_affinity
                .iter()
                .all(|t| any_domain(&st.affinity, node, &t.topology_key))
        {
            // The first pod of a group that selects itself may go anywhere with the keys.
            let self_ok = st.affinity.is_empty()
                && pod
                    .required_affinity
                    .iter()
                    .all(|t| t.matches(pod) && node.labels.contains_key(&t.topology_key));
            if !self_ok {
                return Status::unresolvable("node(s) didn't match pod affinity rules");
            }
        }
        if pod
            .required_anti_affinity
            .iter()
            .any(|t| any_domain(&st.anti, node, &t.topology_key))
        {
            return Status::unschedulable("node(s) didn't match pod anti-affinity rules");
        }
        if node.labels.iter().any(|(k, v)| {
            st.existing_anti
                .get(&(k.clone(), v.clone()))
                .is_some_and(|c| *c > 0)
        }) {
            return Status::unschedulable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            );
        }
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        snap: &Snapshot<'_>,
        _nodes: &[&NodeInfo],
        state: &mut CycleState,
    ) {
        if pod.preferred_affinity.is_empty() && pod.preferred_anti_affinity.is_empty() {
            return;
        }
        let mut scores = TopologyCounts::new();
        for node in snap.cache.node_infos() {
            for existing in &node.pods {
                for (w, t) in &pod.preferred_affinity {
                    if t.matches(existing) {
                        bump(&mut scores, node, &t.topology_key, i64::from(*w));
                    }
                }
                for (w, t) in &pod.preferred_anti_affinity {
                    if t.matches(existing) {
                        bump(&mut scores, node, &t.topology_key, -i64::from(*w));
                    }
                }
            }
        }
        state.write(SCORE_KEY, scores);
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) -> i64 {
        let Some(m) = state.read::<TopologyCounts>(SCORE_KEY) else {
            return 0;
        };
        node.labels
            .iter()
            .filter_map(|(k, v)| m.get(&(k.clone(), v.clone())))
            .sum()
    }

    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.read::<TopologyCounts>(SCORE_KEY).is_none() {
            return;
        }
        let (min, max) = (
            scores.iter().copied().min().unwrap_or(0),
            scores.iter().copied().max().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if max == min {
                0
            } else {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            };
        }
    }
}
