//! The disruption controller, as upstream pkg/controller/disruption: keeps each
//! PodDisruptionBudget's status, which the eviction subresource of the API server reads.
//!
//! For a budget: the pods of its namespace its selector picks; how many are expected and how
//! many must stay healthy (`minAvailable` as an int: that number of the pods there are;
//! `maxUnavailable` or a percentage: the sum of the owning controllers' `spec.replicas`,
//! ReplicaSets counting through their Deployment, as upstream's finders); how many are healthy
//! (Ready, not being deleted, not just evicted: the `disruptedPods` the API server notes when it
//! evicts, forgotten after 2 minutes if the pod was not deleted); `disruptionsAllowed` and the
//! `DisruptionAllowed` condition (SufficientPods / InsufficientPods). A budget that cannot be
//! computed (a pod whose controller is unknown) fails safe: no disruption allowed, reason
//! SyncFailed. The status is written with the resourceVersion read, so an eviction that
//! decremented `disruptionsAllowed` in between is never overwritten.

use crate::Options;
use crate::deployment::util::scaled_value;
use crate::replicaset::{ownership, pods};
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "disruption-controller";
/// How long an evicted pod counts as disrupted before it is expected to be gone (upstream
/// `DeletionTimeout`).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// A budget that could not be computed is looked at again after this long.
const FAILED_RETRY: Duration = Duration::from_secs(30);
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    pods: Arc<Informer<Pod>>,
    budgets: Store<PodDisruptionBudget>,
    replicasets: Arc<Informer<ReplicaSet>>,
    deployments: Arc<Informer<Deployment>>,
    statefulsets: Arc<Informer<StatefulSet>>,
    rcs: Arc<Informer<ReplicationController>>,
    recorder: Recorder,
}

/// Registers the informers (budgets, pods and the controllers whose scale counts) and returns
/// the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let pdbs = f.informer::<PodDisruptionBudget>();
    let pods = f.informer::<Pod>();
    let budgets = pdbs.store();
    let triggers = {
        let budgets = budgets.clone();
        pods.objects()
            .flat_map(move |pod| futures::stream::iter(budgets_of(&budgets, &pod)))
    };
    let ctx = Arc::new(Context {
        client: f.client(),
        pods,
        budgets,
        replicasets: f.informer::<ReplicaSet>(),
        deployments: f.informer::<Deployment>(),
        statefulsets: f.informer::<StatefulSet>(),
        rcs: f.informer::<ReplicationController>(),
        recorder: Recorder::new(f.client(), COMPONENT),
    });
    let controller = controller::for_informer(&pdbs).reconcile_on(triggers);
    controller::run(COMPONENT, f, controller, reconcile, ctx)
}

/// Upstream `LabelSelectorAsSelector` of a budget: a missing selector selects nothing, an
/// empty one every pod of the namespace.
fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| {
            kaji_runtime::selector::label_selector_matches(sel, pod.metadata.labels.as_ref())
        })
}

/// The budgets a pod change concerns (upstream `getPdbForPod`: those of its namespace that
/// select it).
fn budgets_of(
    budgets: &Store<PodDisruptionBudget>,
    pod: &Pod,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let ns = pod.namespace();
    budgets
        .state()
        .iter()
        .filter(|b| b.namespace() == ns && selects(b, pod))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

impl Context {
    /// The replicas a pod's controller wants, and its UID (upstream's finders: ReplicaSet or
    /// its Deployment, ReplicationController, StatefulSet).
    fn controller_scale(&self, pod: &Pod) -> Option<(String, i32)> {
        let r = ownership::controller_of(&pod.metadata)?;
        let ns = pod.namespace().unwrap_or_default();
        let key = |name: &str| (name.to_string(), ns.clone());
        let found = |uid: Option<&String>| uid.is_some_and(|u| *u == r.uid);
        let group = r.api_version.split('/').next().unwrap_or_default();
        match (group, r.kind.as_str()) {
            ("apps", "ReplicaSet") => {
                let (name, ns) = key(&r.name);
                let rs = self.replicasets.get(&ObjectRef::new(&name).within(&ns))?;
                if !found(rs.metadata.uid.as_ref()) {
                    return None;
                }
                if let Some(d) =
                    ownership::controller_of(&rs.metadata).filter(|d| d.kind == "Deployment")
                {
                    let dep = self.deployments.get(&ObjectRef::new(&d.name).within(&ns))?;
                    if dep.metadata.uid.as_deref() != Some(d.uid.as_str()) {
                        return None;
                    }
                    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((d.uid.clone(), replicas));
                }
                Some((
                    r.uid.clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            ("v1", "ReplicationController") => {
                let (name, ns) = key(&r.name);
                let rc = self.rcs.get(&ObjectRef::new(&name).within(&ns))?;
                found(rc.metadata.uid.as_ref()).then(|| {
                    (
                        r.uid.clone(),
                        rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })
            }
            ("apps", "StatefulSet") => {
                let (name, ns) = key(&r.name);
                let sts = self.statefulsets.get(&ObjectRef::new(&name).within(&ns))?;
                found(sts.metadata.uid.as_ref()).then(|| {
                    (
                        r.uid.clone(),
                        sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })
            }
            _ => None,
        }
    }

    /// Upstream `getExpectedScale`: the sum of the controllers' scales, and the pods without a
    /// controller.
    fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<(i32, Vec<String>), String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(r) = ownership::controller_of(&pod.metadata) else {
                unmanaged.push(pod.name_any());
                continue;
            };
            if scales.contains_key(&r.uid) {
                continue;
            }
            match self.controller_scale(pod) {
                Some((uid, n)) => {
                    scales.insert(uid, n);
                }
                None => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
            }
        }
        Ok((scales.values().sum(), unmanaged))
    }
}

/// Upstream `getExpectedPodCount`: (expected pods, desired healthy, unmanaged pods).
fn expected_counts(
    ctx: &Context,
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
) -> Result<(i32, i32, Vec<String>), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(mu) = &spec.max_unavailable {
        let (expected, unmanaged) = ctx.expected_scale(pods)?;
        let max = scaled_value(mu, expected, true);
        return Ok((expected, (expected - max).max(0), unmanaged));
    }
    match &spec.min_available {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => Ok((
            i32::try_from(pods.len()).unwrap_or(i32::MAX),
            *n,
            Vec::new(),
        )),
        Some(pct) => {
            let (expected, unmanaged) = ctx.expected_scale(pods)?;
            Ok((expected, scaled_value(pct, expected, true), unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// Upstream `buildDisruptedPodMap`: the evicted pods still expected to go, and when the first
/// of them stops counting as disrupted.
fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<jiff::Timestamp>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let mut overdue = Vec::new();
    let Some(noted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (out, recheck, overdue);
    };
    let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(t) = noted.get(&pod.name_any()) else {
            continue;
        };
        let expected = t.0.checked_add(timeout).unwrap_or(t.0);
        if expected < now {
            overdue.push(pod.name_any());
        } else {
            recheck = Some(recheck.map_or(expected, |r| r.min(expected)));
            out.insert(pod.name_any(), t.clone());
        }
    }
    (out, recheck, overdue)
}

/// Upstream `countHealthyPods`.
fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| pods::is_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Upstream `apimeta.SetStatusCondition` for the DisruptionAllowed condition.
fn set_condition(
    conds: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let now = Time(jiff::Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = now;
            }
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// Upstream `UpdateDisruptionAllowedCondition`.
pub fn update_allowed_condition(status: &mut PodDisruptionBudgetStatus) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if status.disruptions_allowed > 0 {
        set_condition(
            conds,
            "True",
            "SufficientPods",
            "",
            status.observed_generation,
        );
    } else {
        set_condition(
            conds,
            "False",
            "InsufficientPods",
            "",
            status.observed_generation,
        );
    }
}

async fn write_status(
    ctx: &Context,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), kube::Error> {
    let api: Api<PodDisruptionBudget> =
        Api::namespaced(ctx.client.clone(), &pdb.namespace().unwrap_or_default());
    let mut next = pdb.clone();
    next.status = Some(status);
    api.replace_status(&pdb.name_any(), &PostParams::default(), &next)
        .await?;
    Ok(())
}

async fn reconcile(
    pdb: Arc<PodDisruptionBudget>,
    ctx: Arc<Context>,
) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(pdb.as_ref());
    let Some(pdb) = ctx.budgets.get(&key) else {
        return Ok(Action::await_change());
    };
    ctx.pods.ready().await;
    let ns = pdb.namespace().unwrap_or_default();
    let obj_ref = reference(pdb.as_ref());
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .in_namespace(&ns)
        .into_iter()
        .filter(|p| selects(&pdb, p))
        .collect();
    if pods.is_empty() {
        ctx.recorder
            .normal(&obj_ref, "NoPods", "No matching pods found")
            .await;
    }
    let generation = pdb.metadata.generation;
    let (expected, desired, unmanaged) = match expected_counts(&ctx, &pdb, &pods) {
        Ok(v) => v,
        Err(e) => {
            ctx.recorder
                .warning(
                    &obj_ref,
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {e}"),
                )
                .await;
            // Fail safe: no disruption allowed.
            let mut status = pdb.status.clone().unwrap_or_default();
            status.disruptions_allowed = 0;
            let og = status.observed_generation;
            set_condition(
                status.conditions.get_or_insert_with(Vec::new),
                "False",
                "SyncFailed",
                &e,
                og,
            );
            if Some(&status) != pdb.status.as_ref() {
                write_status(&ctx, &pdb, status).await?;
            }
            return Ok(Action::requeue(FAILED_RETRY));
        }
    };
    if !unmanaged.is_empty() {
        let sel = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| kaji_runtime::selector::compile(s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default();
        ctx.recorder
            .warning(
                &obj_ref,
                "UnmanagedPods",
                &format!(
                    "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                ),
            )
            .await;
    }
    let now = jiff::Timestamp::now();
    let (disrupted, recheck, overdue) = disrupted_pods(&pdb, &pods, now);
    for name in overdue {
        let pod_ref = pods
            .iter()
            .find(|p| p.name_any() == name)
            .map(|p| reference(p.as_ref()));
        if let Some(r) = pod_ref {
            ctx.recorder
                .warning(
                    &r,
                    "NotDeleted",
                    &format!(
                        "Pod was expected by PDB {ns}/{} to be deleted but it wasn't",
                        pdb.name_any()
                    ),
                )
                .await;
        }
    }
    let healthy = count_healthy(&pods, &disrupted);
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let up_to_date = {
        let cond = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionAllowed");
        cond.is_some_and(|c| {
            old.observed_generation == generation
                && if old.disruptions_allowed > 0 {
                    c.status == "True" && c.reason == "SufficientPods"
                } else {
                    c.status == "False" && c.reason == "InsufficientPods"
                }
        })
    };
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    let same = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && up_to_date;
    if !same {
        let mut status = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            disruptions_allowed: allowed,
            disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
            observed_generation: generation,
            conditions: old.conditions.clone(),
        };
        update_allowed_condition(&mut status);
        write_status(&ctx, &pdb, status).await?;
    }
    let wait = recheck
        .and_then(|t| u64::try_from(t.duration_since(now).as_secs()).ok())
        .map_or(RESYNC, |s| Duration::from_secs(s.max(1)));
    Ok(Action::requeue(wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "a"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(p).expect("pod"))
    }

    #[test]
    fn healthy_pods_leave_out_disrupted_deleting_and_unready_ones() {
        let now = jiff::Timestamp::now();
        let recent = Time(now);
        let old = Time(
            now.checked_sub(jiff::SignedDuration::from_secs(600))
                .expect("time"),
        );
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "b"},
            "status": {"currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0, "disruptionsAllowed": 0,
                "disruptedPods": {"p1": recent, "p2": old, "gone": recent}}}))
        .expect("pdb");
        let pods = vec![
            pod("p1", true, false),
            pod("p2", true, false),
            pod("p3", true, true),
            pod("p4", false, false),
            pod("p5", true, false),
        ];
        let (disrupted, recheck, overdue) = disrupted_pods(&pdb, &pods, now);
        assert_eq!(disrupted.keys().collect::<Vec<_>>(), ["p1"]);
        assert!(recheck.is_some());
        assert_eq!(overdue, ["p2"]);
        assert_eq!(count_healthy(&pods, &disrupted), 2, "p2 and p5");
    }

    #[test]
    fn condition_follows_disruptions_allowed() {
        let mut st = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(1),
            ..Default::default()
        };
        update_allowed_condition(&mut st);
        let c = &st.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        st.disruptions_allowed = 0;
        update_allowed_condition(&mut st);
        let c = &st.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InsufficientPods")
        );
        assert_eq!(st.conditions.as_ref().map(Vec::len), Some(1));
    }
}
