//! PodTopologySpread: `topologySpreadConstraints` keep the number of matching pods per domain
//! within `maxSkew` (DoNotSchedule filters, ScheduleAnyway scores). Pods without constraints
//! get upstream's system defaults (hostname maxSkew 3, zone maxSkew 5, ScheduleAnyway) over
//! the pods of their Services, ReplicaSets and StatefulSets, which spreads a ReplicaSet.

use super::node_affinity::required_node_affinity_matches;
use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, ScorePlugin, Snapshot, Status};
use crate::selector::Selector;
use std::collections::HashMap;

pub struct PodTopologySpread;

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: usize,
}

fn constraints(pod: &PodInfo, hard: bool) -> Vec<Constraint> {
    let list = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    list.iter()
        .filter(|c| (c.when_unsatisfiable == "DoNotSchedule") == hard)
        .map(|c| {
            let mut selector = Selector::new(c.label_selector.as_ref());
            // matchLabelKeys: the pod's own values of those keys narrow the selector.
            for k in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels.get(k) {
                    selector.and_label(k, v);
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: c
                    .min_domains
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(1),
            }
        })
        .collect()
}

/// Pods on the node in the pod's namespace that the selector matches (terminating ones aside).
fn count_matching(node: &NodeInfo, sel: &Selector, ns: &str) -> i64 {
    let n = node
        .pods
        .iter()
        .filter(|p| !p.terminating && p.namespace == ns && sel.matches(&p.labels))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value -> matching pods.
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

const FILTER_KEY: &str = "PodTopologySpread/filter";
const SCORE_KEY: &str = "PodTopologySpread/score";

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, pod: &PodInfo, snap: &Snapshot<'_>, state: &mut CycleState) -> Status {
        let cs = constraints(pod, true);
        if cs.is_empty() {
            return Status::success();
        }
        let mut counts = vec![HashMap::<String, i64>::new(); cs.len()];
        for node in snap.cache.node_infos() {
            // Only nodes the pod could go to, and that carry every key, form domains.
            if !required_node_affinity_matches(pod, node)
                || !cs.iter().all(|c| node.labels.contains_key(&c.topology_key))
            {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                let v = &node.labels[&c.topology_key];
                *counts[i].entry(v.clone()).or_default() +=
                    count_matching(node, &c.selector, &pod.namespace);
            }
        }
        let min = cs
            .iter()
            .zip(&counts)
            .map(|(c, m)| {
                if m.len() < c.min_domains {
                    0
                } else {
                    m.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
        state.write(
            FILTER_KEY,
            FilterState {
                constraints: cs,
                counts,
                min,
            },
        );
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(FILTER_KEY) else {
            return Status::success();
        };
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.topology_key) else {
                return Status::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                );
            };
            let self_match = i64::from(c.selector.matches(&pod.labels));
            let matched = st.counts[i].get(v).copied().unwrap_or(0);
            if matched + self_match - st.min[i] > c.max_skew {
                return Status::unschedulable(
                    "node(s) didn't match pod topology spread constraints",
                );
            }
        }
        Status::success()
    }
}

struct ScoreState {
    constraints: Vec<Constraint>,
    /// Whether nodes lacking a key are skipped per constraint (system defaults) or ignored.
    require_all: bool,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

#[allow(clippy::cast_precision_loss, reason = "domain counts are small")]
fn normalizing_weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        snap: &Snapshot<'_>,
        nodes: &[&NodeInfo],
        state: &mut CycleState,
    ) {
        let has_any = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let (cs, require_all) = if has_any {
            (constraints(pod, false), true)
        } else if let Some(sel) = snap.default_spread_selector {
            let mk = |key: &str, skew| Constraint {
                max_skew: skew,
                topology_key: key.to_string(),
                selector: sel.clone(),
                min_domains: 1,
            };
            (vec![mk(HOSTNAME, 3), mk(ZONE, 5)], false)
        } else {
            (Vec::new(), false)
        };
        if cs.is_empty() {
            return;
        }
        let mut counts = vec![HashMap::<String, i64>::new(); cs.len()];
        let mut domains = vec![std::collections::HashSet::<&str>::new(); cs.len()];
        for n in nodes {
            for (i, c) in cs.iter().enumerate() {
                if let Some(v) = n.labels.get(&c.topology_key) {
                    domains[i].insert(v.as_str());
                }
            }
        }
        for node in snap.cache.node_infos() {
            if !required_node_affinity_matches(pod, node) {
                continue;
            }
            if require_all && !cs.iter().all(|c| node.labels.contains_key(&c.topology_key)) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                let Some(v) = node.labels.get(&c.topology_key) else {
                    continue;
                };
                if !domains[i].contains(v.as_str()) {
                    continue;
                }
                *counts[i].entry(v.clone()).or_default() +=
                    count_matching(node, &c.selector, &pod.namespace);
            }
        }
        let weights = domains
            .iter()
            .map(|d| normalizing_weight(d.len()))
            .collect();
        state.write(
            SCORE_KEY,
            ScoreState {
                constraints: cs,
                require_all,
                counts,
                weights,
            },
        );
    }

    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "scores are small"
    )]
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) -> i64 {
        let Some(st) = state.read::<ScoreState>(SCORE_KEY) else {
            return 0;
        };
        if st.require_all
            && !st
                .constraints
                .iter()
                .all(|c| node.labels.contains_key(&c.topology_key))
        {
            return -1; // ignored node: scored 0 after normalising
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            if let Some(v) = node.labels.get(&c.topology_key) {
                let cnt = st.counts[i].get(v).copied().unwrap_or(0);
                score += cnt as f64 * st.weights[i] + (c.max_skew - 1) as f64;
            }
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.read::<ScoreState>(SCORE_KEY).is_none() {
            scores.iter_mut().for_each(|s| *s = 0);
            return;
        }
        let valid = || scores.iter().copied().filter(|s| *s >= 0);
        let (Some(min), Some(max)) = (valid().min(), valid().max()) else {
            return;
        };
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}
