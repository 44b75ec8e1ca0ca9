//! One sync of one StatefulSet (upstream stateful_set_control.go and stateful_pod_control.go):
//! revisions, pods in ordinal order, claims, rolling update, status and history.

use super::Context;
use super::utils::{self, ordinal};
use crate::history;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaji_runtime::events::reference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// A safety net: every set is looked at again this often even without changes.
const RESYNC: Duration = Duration::from_secs(300);

/// One sync: the set, its APIs, and the revisions it works with.
pub(super) struct Sync<'a> {
    ctx: &'a Context,
    set: StatefulSet,
    pod_api: Api<Pod>,
    claim_api: Api<PersistentVolumeClaim>,
    now: jiff::Timestamp,
    /// A pod waits for the garbage collector to remove a claim of its predecessor; claims are
    /// not watched, so look again soon.
    waiting_for_claims: std::sync::atomic::AtomicBool,
}

/// The counts of upstream `computeReplicaStatus`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    replicas: i32,
    ready: i32,
    available: i32,
    current: i32,
    updated: i32,
}

impl<'a> Sync<'a> {
    pub(super) fn new(ctx: &'a Context, set: StatefulSet) -> Self {
        let ns = set.namespace().unwrap_or_default();
        Sync {
            pod_api: Api::namespaced(ctx.client.clone(), &ns),
            claim_api: Api::namespaced(ctx.client.clone(), &ns),
            ctx,
            set,
            now: jiff::Timestamp::now(),
            waiting_for_claims: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn name(&self) -> String {
        self.set.name_any()
    }

    fn template(&self) -> PodTemplateSpec {
        self.set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// Upstream `UpdateStatefulSet`: revisions, pods, status, history.
    pub(super) async fn run(
        mut self,
        pods: Vec<Pod>,
        mut revisions: Vec<ControllerRevision>,
    ) -> anyhow::Result<Action> {
        let status = self.set.status.clone().unwrap_or_default();
        let mut collision_count = status.collision_count.unwrap_or(0);

        // The update revision: the set's template now (upstream getStatefulSetRevisions).
        let data = history::template_patch(&self.set)?;
        let template = self.template();
        let mut candidate = history::new_revision(
            &self.set.metadata,
            "StatefulSet",
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            data,
            history::next_revision(&revisions),
            Some(collision_count),
        );
        // The set's annotations go with the revision (upstream newRevision), so that
        // `kubectl rollout history` shows the `kubernetes.io/change-cause` of each.
        candidate.metadata.annotations = self.set.metadata.annotations.clone();
        let update = self
            .ctx
            .history
            .find_or_create(&self.name(), &revisions, candidate, &mut collision_count)
            .await?;
        revisions.retain(|r| r.name_any() != update.name_any());
        revisions.push(update.clone());
        history::sort_revisions(&mut revisions);
        let current = status
            .current_revision
            .as_ref()
            .and_then(|n| revisions.iter().find(|r| &r.name_any() == n))
            .cloned()
            .unwrap_or_else(|| update.clone());

        let mut sync_result = Ok(());
        let (replicas, condemned) = match self.update_pods(pods, &current, &update).await {
            Ok(lists) => lists,
            Err((lists, e)) => {
                sync_result = Err(e);
                lists
            }
        };

        // Status (upstream updateStatus + completeRollingUpdate).
        let min_ready = utils::min_ready_seconds(&self.set);
        let counts = self.counts(replicas.iter().chain(condemned.iter()), &current, &update);
        let (mut current_name, update_name) = (current.name_any(), update.name_any());
        let mut current_replicas = counts.current;
        if !utils::is_on_delete(&self.set)
            && counts.updated == counts.replicas
            && counts.ready == counts.replicas
        {
            current_replicas = counts.updated;
            current_name = update_name.clone();
        }
        self.write_status(
            &counts,
            current_replicas,
            &current_name,
            &update_name,
            collision_count,
        )
        .await?;

        // History (upstream truncateHistory): what pods still run, current and update stay.
        let mut live: HashSet<String> = replicas
            .iter()
            .chain(condemned.iter())
            .filter(|p| utils::is_created(p))
            .map(|p| utils::pod_revision(p).to_string())
            .collect();
        live.insert(current_name);
        live.insert(update_name);
        let limit = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        self.ctx
            .history
            .truncate(&revisions, |r| live.contains(&r.name_any()), limit)
            .await?;
        sync_result?;

        let want = utils::replicas(&self.set);
        if min_ready > 0 && counts.available != want {
            return Ok(Action::requeue(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        if self
            .waiting_for_claims
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Ok(Action::requeue(RESYNC))
    }

    fn counts<'p>(
        &self,
        pods: impl Iterator<Item = &'p Pod>,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Counts {
        let min_ready = utils::min_ready_seconds(&self.set);
        let (cur, upd) = (current.name_any(), update.name_any());
        let mut c = Counts::default();
        for p in pods {
            if utils::is_created(p) {
                c.replicas += 1;
            }
            if utils::is_running_and_ready(p) {
                c.ready += 1;
                if utils::is_running_and_available(p, min_ready, self.now) {
                    c.available += 1;
                }
            }
            if utils::is_created(p) && !utils::is_terminating(p) {
                let rev = utils::pod_revision(p);
                if rev == cur {
                    c.current += 1;
                }
                if rev == upd {
                    c.updated += 1;
                }
            }
        }
        c
    }

    async fn write_status(
        &self,
        c: &Counts,
        current_replicas: i32,
        current_revision: &str,
        update_revision: &str,
        collision_count: i32,
    ) -> anyhow::Result<()> {
        // Zeros and empty strings are left out, as upstream's omitempty fields are.
        let nz = |v: i32| if v == 0 { Value::Null } else { json!(v) };
        let ns_ = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
        let want = json!({
            "observedGeneration": self.set.metadata.generation,
            "replicas": c.replicas,
            "readyReplicas": nz(c.ready),
            "currentReplicas": nz(current_replicas),
            "updatedReplicas": nz(c.updated),
            "availableReplicas": c.available,
            "currentRevision": ns_(current_revision),
            "updateRevision": ns_(update_revision),
            "collisionCount": collision_count,
        });
        let have = serde_json::to_value(self.set.status.clone().unwrap_or_default())?;
        let differs = want.as_object().into_iter().flatten().any(|(k, v)| {
            let h = have.get(k).cloned().unwrap_or(Value::Null);
            // A zero the API server kept counts as left out.
            let h = if h == json!(0) && v.is_null() {
                Value::Null
            } else {
                h
            };
            &h != v
        });
        if !differs {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(
            self.ctx.client.clone(),
            &self.set.namespace().unwrap_or_default(),
        );
        api.patch_status(
            &self.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": want })),
        )
        .await?;
        Ok(())
    }

    /// The pod of `ordinal` at the revision it should have (upstream
    /// `newVersionedStatefulSetPod`): below the partition the current revision, else the update.
    fn new_versioned_pod(
        &self,
        ordinal: i32,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Pod {
        let rolling = !utils::is_on_delete(&self.set);
        let start = utils::start_ordinal(&self.set);
        let rev = if rolling && ordinal < start + utils::partition(&self.set) {
            current
        } else {
            update
        };
        let template = utils::revision_template(rev).unwrap_or_else(|| self.template());
        utils::new_pod(&self.set, &template, &rev.name_any(), ordinal)
    }

    /// Creates, replaces, fixes and deletes pods (upstream `updateStatefulSet`); returns the
    /// replicas and condemned pods as they are after this sync.
    #[allow(clippy::type_complexity)]
    async fn update_pods(
        &mut self,
        pods: Vec<Pod>,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<(Vec<Pod>, Vec<Pod>), ((Vec<Pod>, Vec<Pod>), anyhow::Error)> {
        let start = utils::start_ordinal(&self.set);
        let count = usize::try_from(utils::replicas(&self.set)).unwrap_or(0);
        let mut slots: Vec<Option<Pod>> = vec![None; count];
        let mut condemned = Vec::new();
        for pod in pods {
            let o = ordinal(&pod);
            if utils::in_ordinal_range(&pod, &self.set) {
                if let Some(slot) = usize::try_from(o - start)
                    .ok()
                    .and_then(|i| slots.get_mut(i))
                {
                    *slot = Some(pod);
                }
            } else if o >= 0 {
                condemned.push(pod);
            }
        }
        let mut replicas: Vec<Pod> = slots
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                p.unwrap_or_else(|| {
                    self.new_versioned_pod(start + i32::try_from(i).unwrap_or(0), current, update)
                })
            })
            .collect();
        // Highest ordinal first.
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));

        // The first unhealthy pod: a replica in ordinal order, or else the lowest condemned one.
        let first_unhealthy = replicas
            .iter()
            .chain(condemned.iter().rev())
            .find(|p| !utils::is_healthy(p))
            .map(ResourceExt::name_any);

        if self.set.metadata.deletion_timestamp.is_some() {
            return Ok((replicas, condemned));
        }
        let monotonic = !utils::pod_management_parallel(&self.set);

        if monotonic {
            for i in 0..replicas.len() {
                match self.process_replica(&replicas[i], true).await {
                    Ok((stop, changed)) => {
                        if let Some(p) = changed {
                            replicas[i] = p;
                        }
                        if stop {
                            return Ok((replicas, condemned));
                        }
                    }
                    Err(e) => return Err(((replicas, condemned), e)),
                }
            }
        } else {
            // Parallel: all at once, in slow-start batches of 1, 2, 4, ... (upstream
            // slowStartBatch), so that a failing create fails once rather than N times.
            let mut next = 0;
            let mut batch = 1;
            while next < replicas.len() {
                let end = (next + batch).min(replicas.len());
                let results = futures::future::join_all(
                    replicas[next..end]
                        .iter()
                        .map(|p| self.process_replica(p, false)),
                )
                .await;
                let mut failure = None;
                for (offset, r) in results.into_iter().enumerate() {
                    match r {
                        Ok((_, Some(p))) => replicas[next + offset] = p,
                        Ok((_, None)) => {}
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if let Some(e) = failure {
                    return Err(((replicas, condemned), e));
                }
                next = end;
                batch *= 2;
            }
        }

        // Claims of condemned pods follow the retention policy before the pods go.
        for pod in &condemned {
            if let Err(e) = self.fix_claims(pod).await {
                return Err(((replicas, condemned), e));
            }
        }

        // Scale down: highest ordinal first.
        let min_ready = utils::min_ready_seconds(&self.set);
        for i in 0..condemned.len() {
            let pod = &condemned[i];
            if utils::is_terminating(pod) {
                if monotonic {
                    return Ok((replicas, condemned));
                }
                continue;
            }
            let first = first_unhealthy.as_deref() == Some(pod.name_any().as_str());
            if monotonic
                && !first
                && (!utils::is_running_and_ready(pod)
                    || !utils::is_running_and_available(pod, min_ready, self.now))
            {
                return Ok((replicas, condemned));
            }
            match self.delete_pod(pod).await {
                Ok(p) => condemned[i] = p,
                Err(e) => return Err(((replicas, condemned), e)),
            }
            if monotonic {
                return Ok((replicas, condemned));
            }
        }

        if utils::is_on_delete(&self.set) {
            return Ok((replicas, condemned));
        }
        let result = self.rolling_update(&mut replicas, update).await;
        match result {
            Ok(()) => Ok((replicas, condemned)),
            Err(e) => Err(((replicas, condemned), e)),
        }
    }

    /// Upstream `processReplica`: whether a monotonic sync must stop here, and the pod as it is
    /// after what was done to it.
    async fn process_replica(
        &self,
        pod: &Pod,
        monotonic: bool,
    ) -> anyhow::Result<(bool, Option<Pod>)> {
        let min_ready = utils::min_ready_seconds(&self.set);
        // A finished pod is deleted and made again on a later sync (whatever its exit code).
        if utils::is_failed(pod) || utils::is_succeeded(pod) {
            if !utils::is_terminating(pod) {
                let (kind, reason, what) = if utils::is_failed(pod) {
                    (
                        kaji_runtime::events::WARNING,
                        "RecreatingFailedPod",
                        "failed",
                    )
                } else {
                    (
                        kaji_runtime::events::NORMAL,
                        "RecreatingTerminatedPod",
                        "terminated",
                    )
                };
                let msg = format!(
                    "StatefulSet {}/{} is recreating {what} Pod {}",
                    self.set.namespace().unwrap_or_default(),
                    self.name(),
                    pod.name_any()
                );
                self.ctx
                    .recorder
                    .record(&reference(&self.set), kind, reason, &msg)
                    .await;
                return Ok((true, Some(self.delete_pod(pod).await?)));
            }
            return Ok((true, None));
        }
        if !utils::is_created(pod) {
            if self.claims_are_stale(pod) {
                self.waiting_for_claims
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                // The garbage collector has yet to remove a claim of the pod's predecessor.
                return Ok((true, None));
            }
            return Ok((monotonic, Some(self.create_pod(pod).await?)));
        }
        if utils::is_pending(pod) {
            self.create_claims(pod).await?;
        }
        if utils::is_terminating(pod) && monotonic {
            return Ok((true, None));
        }
        if monotonic
            && (!utils::is_running_and_ready(pod)
                || !utils::is_running_and_available(pod, min_ready, self.now))
        {
            return Ok((true, None));
        }
        if utils::identity_matches(&self.set, pod)
            && utils::storage_matches(&self.set, pod)
            && !self.claims_need_update(pod)
        {
            return Ok((false, None));
        }
        Ok((false, Some(self.update_pod(pod).await?)))
    }

    /// Upstream's rolling update: delete the highest-ordinal pod not at the update revision down
    /// to the partition, one at a time and only once the others above are healthy; with
    /// `maxUnavailable` set, up to that many at once less those already unavailable.
    async fn rolling_update(
        &self,
        replicas: &mut [Pod],
        update: &ControllerRevision,
    ) -> anyhow::Result<()> {
        let update_min = usize::try_from(utils::partition(&self.set)).unwrap_or(0);
        let upd = update.name_any();
        let explicit_max = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref())
            .is_some_and(|r| r.max_unavailable.is_some());
        if !explicit_max {
            for target in (update_min..replicas.len()).rev() {
                let pod = &replicas[target];
                if utils::pod_revision(pod) != upd && !utils::is_terminating(pod) {
                    tracing::debug!(set = %self.name(), pod = %pod.name_any(), "deleting the pod for the update");
                    replicas[target] = self.delete_pod(pod).await?;
                    return Ok(());
                }
                if !utils::is_healthy(pod) {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let min_ready = utils::min_ready_seconds(&self.set);
        let max = usize::try_from(utils::max_unavailable(&self.set)).unwrap_or(1);
        let unavailable = replicas
            .iter()
            .filter(|p| {
                !utils::is_healthy(p) || !utils::is_running_and_available(p, min_ready, self.now)
            })
            .count();
        if unavailable >= max {
            return Ok(());
        }
        let mut to_delete = max - unavailable;
        for target in (update_min..replicas.len()).rev() {
            if to_delete == 0 {
                break;
            }
            let pod = &replicas[target];
            if utils::pod_revision(pod) != upd && !utils::is_terminating(pod) {
                replicas[target] = self.delete_pod(pod).await?;
                to_delete -= 1;
            }
        }
        Ok(())
    }

    fn claim_in_cache(&self, name: &str) -> Option<std::sync::Arc<PersistentVolumeClaim>> {
        self.ctx
            .claims
            .get(&ObjectRef::new(name).within(&self.set.namespace().unwrap_or_default()))
    }

    fn claims_are_stale(&self, pod: &Pod) -> bool {
        utils::claims_for(&self.set, ordinal(pod))
            .iter()
            .filter_map(|c| self.claim_in_cache(&c.name_any()))
            .any(|c| utils::claim_is_stale(&c, pod))
    }

    /// Whether a claim of the pod lacks the owner references of the retention policy.
    fn claims_need_update(&self, pod: &Pod) -> bool {
        utils::claims_for(&self.set, ordinal(pod))
            .iter()
            .filter_map(|c| self.claim_in_cache(&c.name_any()))
            .any(|c| {
                let mut c = (*c).clone();
                utils::update_claim_owner_refs(&mut c, &self.set, pod)
            })
    }

    /// Upstream `createPersistentVolumeClaims`: the pod's missing claims.
    async fn create_claims(&self, pod: &Pod) -> anyhow::Result<()> {
        let set_ref = reference(&self.set);
        for claim in utils::claims_for(&self.set, ordinal(pod)) {
            let name = claim.name_any();
            if let Some(existing) = self.claim_in_cache(&name) {
                if existing.metadata.deletion_timestamp.is_some() {
                    anyhow::bail!("pvc {name} is being deleted");
                }
                continue;
            }
            match self.claim_api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    let msg = format!(
                        "create Claim {name} Pod {} in StatefulSet {} success",
                        pod.name_any(),
                        self.name()
                    );
                    self.ctx
                        .recorder
                        .normal(&set_ref, "SuccessfulCreate", &msg)
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    let msg = format!(
                        "create Claim {name} for Pod {} in StatefulSet {} failed error: {e}",
                        pod.name_any(),
                        self.name()
                    );
                    self.ctx
                        .recorder
                        .warning(&set_ref, "FailedCreate", &msg)
                        .await;
                    return Err(anyhow::Error::new(e).context(format!("creating claim {name}")));
                }
            }
        }
        Ok(())
    }

    /// Upstream `UpdatePodClaimForRetentionPolicy`: the owner references of the pod's claims.
    async fn fix_claims(&self, pod: &Pod) -> anyhow::Result<()> {
        for claim in utils::claims_for(&self.set, ordinal(pod)) {
            let Some(c) = self.claim_in_cache(&claim.name_any()) else {
                continue;
            };
            let mut c = (*c).clone();
            if !utils::update_claim_owner_refs(&mut c, &self.set, pod) {
                continue;
            }
            let patch = json!({"metadata": {
                "ownerReferences": c.metadata.owner_references,
                "resourceVersion": c.metadata.resource_version,
            }});
            match self
                .claim_api
                .patch(
                    &c.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    let msg = format!(
                        "update Claim {} for Pod {} in StatefulSet {} failed error: {e}",
                        c.name_any(),
                        pod.name_any(),
                        self.name()
                    );
                    self.ctx
                        .recorder
                        .warning(&reference(&self.set), "FailedUpdate", &msg)
                        .await;
                    return Err(anyhow::Error::new(e).context("updating a claim's owners"));
                }
            }
        }
        Ok(())
    }

    /// Upstream `CreateStatefulPod`: the claims, then the pod, then the claims' owners.
    async fn create_pod(&self, pod: &Pod) -> anyhow::Result<Pod> {
        self.create_claims(pod).await?;
        let set_ref = reference(&self.set);
        let name = pod.name_any();
        match self.pod_api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                let msg = format!(
                    "create Pod {name} in StatefulSet {} successful",
                    self.name()
                );
                self.ctx
                    .recorder
                    .normal(&set_ref, "SuccessfulCreate", &msg)
                    .await;
                self.fix_claims(&created).await?;
                Ok(created)
            }
            // The cache is behind: the pod is there already.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let mut p = pod.clone();
                p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                });
                Ok(p)
            }
            Err(e) => {
                let msg = format!(
                    "create Pod {name} in StatefulSet {} failed error: {e}",
                    self.name()
                );
                self.ctx
                    .recorder
                    .warning(&set_ref, "FailedCreate", &msg)
                    .await;
                Err(anyhow::Error::new(e).context(format!("creating pod {name}")))
            }
        }
    }

    /// Upstream `DeleteStatefulPod`; returns the pod as being deleted.
    async fn delete_pod(&self, pod: &Pod) -> anyhow::Result<Pod> {
        let set_ref = reference(&self.set);
        let name = pod.name_any();
        let dp = DeleteParams {
            preconditions: pod.uid().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.pod_api.delete(&name, &dp).await {
            Ok(_) => {
                let msg = format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    self.name()
                );
                self.ctx
                    .recorder
                    .normal(&set_ref, "SuccessfulDelete", &msg)
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                let msg = format!(
                    "delete Pod {name} in StatefulSet {} failed error: {e}",
                    self.name()
                );
                self.ctx
                    .recorder
                    .warning(&set_ref, "FailedDelete", &msg)
                    .await;
                return Err(anyhow::Error::new(e).context(format!("deleting pod {name}")));
            }
        }
        let mut p = pod.clone();
        p.metadata.deletion_timestamp = Some(Time(self.now));
        Ok(p)
    }

    /// Upstream `UpdateStatefulPod`: identity labels, storage and the claims' owners.
    async fn update_pod(&self, pod: &Pod) -> anyhow::Result<Pod> {
        let ord = ordinal(pod);
        let mut fixed = pod.clone();
        if !utils::identity_matches(&self.set, &fixed) {
            utils::update_identity(&self.set, &mut fixed, ord);
        }
        if !utils::storage_matches(&self.set, &fixed) {
            // Volumes of a pod cannot change; upstream tries and fails the same way. The claims
            // are made so that a replacement pod finds them.
            self.create_claims(&fixed).await?;
        }
        self.fix_claims(&fixed).await?;
        if fixed.metadata.labels == pod.metadata.labels {
            return Ok(fixed);
        }
        let patch = json!({"metadata": {
            "labels": fixed.metadata.labels,
            "resourceVersion": pod.metadata.resource_version,
        }});
        let name = pod.name_any();
        match self
            .pod_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                let msg = format!(
                    "update Pod {name} in StatefulSet {} successful",
                    self.name()
                );
                self.ctx
                    .recorder
                    .normal(&reference(&self.set), "SuccessfulUpdate", &msg)
                    .await;
                Ok(p)
            }
            Err(e) => {
                let msg = format!(
                    "update Pod {name} in StatefulSet {} failed error: {e}",
                    self.name()
                );
                self.ctx
                    .recorder
                    .warning(&reference(&self.set), "FailedUpdate", &msg)
                    .await;
                Err(anyhow::Error::new(e).context(format!("updating pod {name}")))
            }
        }
    }
}
