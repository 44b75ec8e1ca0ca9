//! A DaemonSet's revisions and its rolling update (upstream pkg/controller/daemon/update.go):
//! `construct_history` finds or creates the ControllerRevision of the current template through
//! the shared `crate::history`, `rolling_update` replaces old pods within maxUnavailable (or,
//! with maxSurge, starts the new pod first and deletes the old one once the new is available),
//! `cleanup_history` keeps `revisionHistoryLimit` old revisions that no pod uses.

use super::{
    Context, candidate_revision, daemon_pod_spec, min_ready_seconds, predicates, sync_nodes,
};
use crate::deployment::util::scaled_value;
use crate::history::{self, POD_REVISION_LABEL};
use crate::replicaset::pods;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kaji_api::selector::LabelSelector as Selector;
use kaji_runtime::controller;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn rolling_param(ds: &DaemonSet, surge: bool) -> Option<IntOrString> {
    if !is_rolling_update(ds) {
        return None;
    }
    let ru = ds
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?;
    if surge {
        ru.max_surge.clone()
    } else {
        ru.max_unavailable.clone()
    }
}

/// Upstream `SurgeCount` / `UnavailableCount`: the parameter scaled to `desired`, rounded up.
fn count(ds: &DaemonSet, surge: bool, desired: i32) -> i32 {
    rolling_param(ds, surge).map_or(0, |v| scaled_value(&v, desired, true))
}

/// Upstream `AllowsSurge`.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    count(ds, true, 1) != 0
}

/// Upstream `constructHistory`: the current revision, the old ones, and the collision count
/// to keep in the status.
pub(super) async fn construct_history(
    ctx: &Context,
    ds: &DaemonSet,
    sel: &Selector,
) -> Result<(ControllerRevision, Vec<ControllerRevision>, i32), controller::Error> {
    let revisions = ctx.history.claim(&ds.metadata, "DaemonSet", sel).await;
    let mut collision_count = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let candidate = candidate_revision(ds, history::next_revision(&revisions), collision_count)?;
    let cur = ctx
        .history
        .find_or_create(&ds.name_any(), &revisions, candidate, &mut collision_count)
        .await?;
    let old = revisions
        .into_iter()
        .filter(|r| r.name_any() != cur.name_any())
        .collect();
    Ok((cur, old, collision_count))
}

/// Upstream `cleanupHistory`: old revisions beyond `revisionHistoryLimit`, oldest first,
/// unless a pod still carries their hash.
pub(super) async fn cleanup_history(
    ctx: &Context,
    ds: &DaemonSet,
    sel: &Selector,
    old: &[ControllerRevision],
) -> Result<(), controller::Error> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    if old.len() <= usize::try_from(limit).unwrap_or(0) {
        return Ok(());
    }
    let live: HashSet<String> = ctx
        .node_to_pods(ds, sel, true)
        .await
        .values()
        .flatten()
        .filter_map(|p| p.labels().get(POD_REVISION_LABEL).cloned())
        .collect();
    let mut old = old.to_vec();
    history::sort_revisions(&mut old);
    ctx.history
        .truncate(
            &old,
            |r| {
                r.labels()
                    .get(POD_REVISION_LABEL)
                    .is_some_and(|h| live.contains(h))
            },
            limit,
        )
        .await?;
    Ok(())
}

/// A node's updated pod and old pod.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// Upstream `findUpdatedPodsOnNode`: the node's new and old pod (not being deleted); `None`
/// when it has more than one of either (the manage loop cleans that up first).
fn updated_and_old<'a>(
    pods: &'a [Arc<Pod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let slot = if super::is_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// Upstream `rollingUpdate`.
pub(super) async fn rolling_update(
    ctx: &Context,
    ds: &DaemonSet,
    key: &ObjectRef<DaemonSet>,
    sel: &Selector,
    nodes: &[Arc<Node>],
    hash: &str,
) -> Result<(), controller::Error> {
    let mut node_to_pods = ctx.node_to_pods(ds, sel, false).await;
    let spec = daemon_pod_spec(ds);
    let mut desired = 0;
    let mut should_run = HashSet::new();
    for node in nodes {
        if predicates::node_should_run(&spec, node).should_run {
            desired += 1;
            should_run.insert(node.name_any());
            node_to_pods.entry(node.name_any()).or_default();
        }
    }
    let max_surge = count(ds, true, desired);
    let mut max_unavailable = count(ds, false, desired);
    if desired > 0 && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let generation = super::template_generation(ds);
    let min_ready = min_ready_seconds(ds);
    let now = jiff::Timestamp::now();
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let by_node: &BTreeMap<String, Vec<Arc<Pod>>> = &node_to_pods;

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut allowed: Vec<Arc<Pod>> = Vec::new();
        let mut candidates: Vec<Arc<Pod>> = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_and_old(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        allowed.push(old.clone());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.clone());
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        candidates.truncate(room);
        allowed.extend(candidates);
        tracing::debug!(ds = %ds.name_any(), delete = allowed.len(), unavailable, max_unavailable, "rolling update");
        return sync_nodes(
            ctx,
            ds,
            key,
            allowed.into_iter().map(|p| (p, false)).collect(),
            Vec::new(),
            hash,
        )
        .await;
    }

    let mut surge = 0;
    let mut allowed_nodes = Vec::new();
    let mut candidate_nodes = Vec::new();
    let mut delete = Vec::new();
    for (node, pods) in by_node {
        let Some((new, old)) = updated_and_old(pods, hash, generation) else {
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(old) {
                    if should_run.contains(node) {
                        allowed_nodes.push(node.clone());
                    }
                } else if surge < max_surge {
                    candidate_nodes.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if !available(new) {
                    surge += 1;
                } else {
                    delete.push((old.clone(), false));
                }
            }
        }
    }
    let room = usize::try_from((max_surge - surge).max(0)).unwrap_or(0);
    candidate_nodes.truncate(room);
    allowed_nodes.extend(candidate_nodes);
    sync_nodes(ctx, ds, key, delete, allowed_nodes, hash).await
}
