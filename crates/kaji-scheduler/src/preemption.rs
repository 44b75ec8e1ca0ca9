//! DefaultPreemption (upstream `plugins/defaultpreemption`): when nothing fits, find a node
//! where evicting lower-priority pods makes room, evicting as few and as unimportant pods as
//! possible; the caller nominates the node and deletes the victims.

use crate::cache::{Cache, PodInfo};
use crate::framework::{Code, CycleState, Diagnosis, Status, fit_error_message};
use crate::schedule_one::Algorithm;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A node and the pods to evict from it.
#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Tries preemption for a pod that failed with `diag`; on failure returns the message that
/// follows `preemption: ` in the FailedScheduling event.
pub fn preempt(
    alg: &Algorithm,
    cache: &Cache,
    state: &CycleState,
    pod: &PodInfo,
    diag: &Diagnosis,
) -> Result<Candidate, String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never".into());
    }
    // Still waiting for earlier victims to go: don't preempt again.
    if let Some(nominated) = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        && let Some(node) = cache.node(nominated)
        && node
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority)
    {
        return Err("not eligible due to a terminating pod on the nominated node".into());
    }
    let mut statuses: BTreeMap<String, Status> = BTreeMap::new();
    let mut candidates = Vec::new();
    for node in cache.node_infos() {
        let name = &node.name;
        match diag.node_status.get(name) {
            Some(st) if st.code == Code::UnschedulableAndUnresolvable => {
                statuses.insert(
                    name.clone(),
                    Status::unresolvable("Preemption is not helpful for scheduling"),
                );
                continue;
            }
            _ => {}
        }
        // Remove every lower-priority pod; if the pod still does not fit, preemption cannot help.
        let mut trial = node.clone();
        let mut potential: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if potential.is_empty() {
            statuses.insert(
                name.clone(),
                Status::unresolvable("No preemption victims found for incoming pod"),
            );
            continue;
        }
        for v in &potential {
            trial.remove_pod(&v.uid);
        }
        let st = alg.filter_node(state, pod, &trial);
        if !st.is_success() {
            statuses.insert(name.clone(), st);
            continue;
        }
        // Reprieve the most important pods first while the pod still fits.
        potential.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let mut victims = Vec::new();
        for v in potential {
            trial.add_pod(v.clone());
            if !alg.filter_node(state, pod, &trial).is_success() {
                trial.remove_pod(&v.uid);
                victims.push(v);
            }
        }
        candidates.push(Candidate {
            node: name.clone(),
            victims,
        });
    }
    // Fewest important victims: lowest highest priority, then lowest sum, then fewest pods.
    let key = |c: &Candidate| {
        let highest = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        (highest, sum, c.victims.len())
    };
    if let Some(best) = candidates.into_iter().min_by_key(key) {
        return Ok(best);
    }
    let d = Diagnosis {
        num_all_nodes: statuses.len(),
        node_status: statuses,
        ..Diagnosis::default()
    };
    Err(fit_error_message(&d).trim_end_matches('.').to_string())
}
