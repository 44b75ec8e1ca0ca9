//! One scheduling cycle without I/O (upstream `schedule_one.go` `schedulePod`): PreFilter,
//! Filter over a round-robin window of nodes that stops once enough feasible nodes are found
//! (`percentageOfNodesToScore`, adaptive as upstream), Score, and pick the best node (ties
//! broken at random).

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{CycleState, Diagnosis, Framework, Snapshot, Status};
use crate::selector::Selector;
use rand::Rng;

/// Upstream never scores fewer than this many nodes (unless there are fewer).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// The framework plus the round-robin position of the next cycle.
pub struct Algorithm {
    pub framework: Framework,
    next_start: usize,
    /// 0 = adaptive (upstream default); else a fixed percentage.
    pub percentage_of_nodes_to_score: usize,
}

/// Why a pod could not be placed.
#[derive(Debug)]
pub enum ScheduleError {
    /// `no nodes available to schedule pods`
    NoNodes,
    Unfit(Box<Diagnosis>, CycleState),
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CycleState")
    }
}

impl Algorithm {
    pub fn new(framework: Framework) -> Algorithm {
        Algorithm {
            framework,
            next_start: 0,
            percentage_of_nodes_to_score: 0,
        }
    }

    /// How many feasible nodes to look for before scoring (upstream `numFeasibleNodesToFind`).
    pub fn num_feasible_nodes_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES_TO_FIND {
            return all;
        }
        let pct = if self.percentage_of_nodes_to_score == 0 {
            (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE)
        } else {
            self.percentage_of_nodes_to_score
        };
        if pct >= 100 {
            return all;
        }
        (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Picks a node for the pod, or explains why none fits.
    pub fn schedule(
        &mut self,
        cache: &Cache,
        pod: &PodInfo,
        default_spread: Option<&Selector>,
    ) -> Result<String, ScheduleError> {
        let all = cache.node_count();
        if all == 0 {
            return Err(ScheduleError::NoNodes);
        }
        let snap = Snapshot {
            cache,
            default_spread_selector: default_spread,
        };
        let mut state = CycleState::default();
        let mut diag = Diagnosis {
            num_all_nodes: all,
            ..Diagnosis::default()
        };
        if let Err(st) = self.framework.run_pre_filters(pod, &snap, &mut state) {
            diag.pre_filter_msg = Some(st.reasons.join(", "));
            diag.failing_plugins.push(st.plugin);
            for n in cache.node_infos() {
                diag.node_status.insert(n.name.clone(), st.clone());
            }
            return Err(ScheduleError::Unfit(Box::new(diag), state));
        }
        // A pod that preempted others tries its nominated node first.
        if let Some(nominated) = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            && let Some(node) = cache.node(nominated)
            && self.framework.run_filters(&state, pod, node).is_success()
        {
            return Ok(nominated.to_string());
        }
        let want = self.num_feasible_nodes_to_find(all);
        // Round robin over the cache's positions, from where the last cycle stopped.
        let slots = cache.slots();
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
        let mut walked = 0;
        for i in 0..slots {
            walked = i + 1;
            let Some(node) = cache.node_at((self.next_start + i) % slots) else {
                continue;
            };
            let st = self.framework.run_filters(&state, pod, node);
            if st.is_success() {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            } else {
                if !diag.failing_plugins.contains(&st.plugin) {
                    diag.failing_plugins.push(st.plugin);
                }
                diag.node_status.insert(node.name.clone(), st);
            }
        }
        self.next_start = (self.next_start + walked) % slots;
        if feasible.is_empty() {
            return Err(ScheduleError::Unfit(Box::new(diag), state));
        }
        if feasible.len() == 1 {
            return Ok(feasible[0].name.clone());
        }
        let scores = self.framework.run_scores(&mut state, pod, &snap, &feasible);
        Ok(select_host(&feasible, &scores))
    }

    /// Runs every filter on one (possibly modified) node with the cycle's state.
    pub fn filter_node(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        self.framework.run_filters(state, pod, node)
    }
}

/// The highest score wins; among equals each is equally likely (reservoir sampling).
fn select_host(nodes: &[&NodeInfo], scores: &[i64]) -> String {
    let mut rng = rand::rng();
    let mut best = 0;
    let mut ties = 1u32;
    for i in 1..nodes.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}
