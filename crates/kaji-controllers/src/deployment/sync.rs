//! Upstream `sync.go`: the ReplicaSets of a Deployment (finding or creating the new one and
//! syncing its revision), scaling (one ReplicaSet, or proportionally across all of them for a
//! paused Deployment or a changed `spec.replicas`), cleanup of old ReplicaSets beyond
//! `revisionHistoryLimit`, and the status computed from the ReplicaSets.

use super::util::{
    self, annotation, max_surge, max_unavailable, replicas, revision, rs_replicas, rs_status,
};
use super::util::{DESIRED_REPLICAS, MAX_REPLICAS, POD_TEMPLATE_HASH, REVISION, REVISION_HISTORY};
use super::{RESYNC, Sync, created};
use crate::replicaset::ownership;
use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use kaji_runtime::events::reference;
use kube::ResourceExt;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

impl Sync<'_> {
    pub(super) fn replicas_of(&self, idx: &[usize]) -> i32 {
        idx.iter().map(|&i| rs_replicas(&self.rs_list[i])).sum()
    }

    pub(super) fn all(&self) -> Vec<usize> {
        (0..self.rs_list.len()).collect()
    }

    /// The new ReplicaSet (the oldest whose template equals the Deployment's) and the old ones,
    /// oldest first.
    pub(super) fn split(&self) -> (Option<usize>, Vec<usize>) {
        let mut idx = self.all();
        idx.sort_by_key(|&i| created(&self.rs_list[i]));
        let template = self.d.spec.as_ref().map(|s| &s.template);
        let new = idx.iter().copied().find(|&i| {
            let t = self.rs_list[i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref());
            matches!((t, template), (Some(a), Some(b)) if util::equal_ignore_hash(a, b))
        });
        let old = idx.into_iter().filter(|&i| Some(i) != new).collect();
        (new, old)
    }

    /// Finds (or creates) the new ReplicaSet and gives it the next revision (upstream
    /// getAllReplicaSetsAndSyncRevision).
    pub(super) async fn get_all_replica_sets_and_sync_revision(
        &mut self,
        create: bool,
    ) -> anyhow::Result<(Option<usize>, Vec<usize>)> {
        let (new, old) = self.split();
        let max_old = old
            .iter()
            .map(|&i| revision(&self.rs_list[i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let new = match new {
            Some(i) => {
                self.sync_new_rs_annotations(i, new_revision).await?;
                Some(i)
            }
            None if create => self.create_new_rs(new_revision).await?,
            None => None,
        };
        if let Some(i) = new {
            let rev = annotation(&self.rs_list[i].metadata, REVISION)
                .unwrap_or_default()
                .to_string();
            if annotation(&self.d.metadata, REVISION) != Some(rev.as_str()) {
                // Through the status subresource, as upstream's UpdateStatus: the Deployment's
                // status strategy lets annotations through, and the generation stays put.
                let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
                self.d = self
                    .deploy_api
                    .patch_status(
                        &self.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
            if util::condition(&self.d, "Progressing").is_none() {
                let msg = format!("Found new replica set \"{}\"", self.rs_list[i].name_any());
                util::set_condition(
                    &mut self.conditions,
                    util::new_condition("Progressing", "True", "FoundNewReplicaSet", msg),
                );
            }
        }
        Ok(self.split())
    }

    /// Copies the Deployment's annotations and minReadySeconds to the new ReplicaSet, and moves
    /// its revision to the newest (a rollback reuses an old ReplicaSet).
    pub(super) async fn sync_new_rs_annotations(
        &mut self,
        i: usize,
        new_revision: i64,
    ) -> anyhow::Result<()> {
        let rs = &self.rs_list[i];
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        for (k, v) in self.d.metadata.annotations.iter().flatten() {
            if !util::skip_annotation(k) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        let current = revision(rs);
        if current < new_revision {
            if current > 0 {
                let history = annotations
                    .get(REVISION_HISTORY)
                    .map(|h| format!("{h},{current}"))
                    .unwrap_or(current.to_string());
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            annotations.insert(REVISION.into(), new_revision.to_string());
        }
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if Some(&annotations) == rs.metadata.annotations.as_ref()
            && min_ready.unwrap_or(0) == rs_min_ready.unwrap_or(0)
        {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"annotations": annotations, "resourceVersion": rs.metadata.resource_version},
            "spec": {"minReadySeconds": min_ready.unwrap_or(0)},
        });
        self.rs_list[i] = self
            .rs_api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// How many replicas the new ReplicaSet may have now (upstream NewRSNewReplicas).
    pub(super) fn new_rs_new_replicas(&self, new: Option<usize>) -> i32 {
        let want = replicas(&self.d);
        let current_new = new.map_or(0, |i| rs_replicas(&self.rs_list[i]));
        if !util::is_rolling_update(&self.d) {
            return want;
        }
        let current = self.replicas_of(&self.all());
        let max_total = want + max_surge(&self.d);
        if current >= max_total {
            return current_new;
        }
        let up = (max_total - current).min(want - current_new).max(0);
        current_new + up
    }

    pub(super) async fn create_new_rs(
        &mut self,
        new_revision: i64,
    ) -> anyhow::Result<Option<usize>> {
        let Some(spec) = self.d.spec.clone() else {
            return Ok(None);
        };
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let want = self.new_rs_new_replicas(None);
        let mut annotations: std::collections::BTreeMap<String, String> = self
            .d
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| !util::skip_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(REVISION.into(), new_revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas(&self.d).to_string());
        annotations.insert(
            MAX_REPLICAS.into(),
            (replicas(&self.d) + max_surge(&self.d)).to_string(),
        );
        let name = format!("{}-{hash}", self.d.name_any());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![ownership::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(want),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.rs_list.push(created);
                let dref = reference(&self.d);
                if want > 0 {
                    self.ctx
                        .recorder
                        .normal(
                            &dref,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {name} from 0 to {want}"),
                        )
                        .await;
                }
                let msg = format!("Created new replica set \"{name}\"");
                util::set_condition(
                    &mut self.conditions,
                    util::new_condition("Progressing", "True", "NewReplicaSetCreated", msg),
                );
                Ok(Some(self.rs_list.len() - 1))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Either our cache is behind, or another template hashes the same: bump the
                // collision count so the next sync picks another name (upstream).
                let existing = self.rs_api.get(&name).await?;
                let ours = ownership::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if ours && same {
                    self.rs_list
                        .retain(|r| r.metadata.uid != existing.metadata.uid);
                    self.rs_list.push(existing);
                    return Ok(Some(self.rs_list.len() - 1));
                }
                let count = collision_count.unwrap_or(0) + 1;
                let patch = json!({"status": {"collisionCount": count}});
                self.deploy_api
                    .patch_status(
                        &self.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                anyhow::bail!(
                    "replica set {name} exists with another template; collision count now {count}"
                )
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Scales one ReplicaSet and stamps the desired/max replicas annotations (upstream
    /// scaleReplicaSet); returns whether its size changed.
    pub(super) async fn scale_replica_set(
        &mut self,
        i: usize,
        new_scale: i32,
    ) -> anyhow::Result<bool> {
        let rs = &self.rs_list[i];
        let old_scale = rs_replicas(rs);
        let desired = replicas(&self.d).to_string();
        let max = (replicas(&self.d) + max_surge(&self.d)).to_string();
        let annotations_ok = annotation(&rs.metadata, DESIRED_REPLICAS) == Some(desired.as_str())
            && annotation(&rs.metadata, MAX_REPLICAS) == Some(max.as_str());
        if old_scale == new_scale && annotations_ok {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"resourceVersion": rs.metadata.resource_version, "annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}},
            "spec": {"replicas": new_scale},
        });
        let name = rs.name_any();
        self.rs_list[i] = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if old_scale != new_scale {
            let dir = if new_scale > old_scale { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {name} from {old_scale} to {new_scale}");
            self.ctx
                .recorder
                .normal(&reference(&self.d), "ScalingReplicaSet", &msg)
                .await;
        }
        Ok(old_scale != new_scale)
    }

    /// Whether `spec.replicas` changed since the active ReplicaSets were last scaled.
    pub(super) fn is_scaling_event(&self) -> bool {
        let want = replicas(&self.d).to_string();
        let (new, old) = self.split();
        new.into_iter()
            .chain(old)
            .map(|i| &self.rs_list[i])
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| annotation(&rs.metadata, DESIRED_REPLICAS).is_some_and(|d| d != want))
    }

    pub(super) fn check_paused_conditions(&mut self) {
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .is_none()
        {
            return;
        }
        let reason = self
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .and_then(|c| c.reason.clone());
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            let c = util::new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            );
            util::set_condition(&mut self.conditions, c);
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            let c = util::new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            );
            util::set_condition(&mut self.conditions, c);
        }
    }

    /// Scaling only (paused, or replicas changed): upstream sync.
    pub(super) async fn sync(&mut self, paused: bool) -> anyhow::Result<Action> {
        let (new, old) = self.get_all_replica_sets_and_sync_revision(false).await?;
        self.scale(new, &old).await?;
        if paused {
            let (_, old) = self.split();
            self.cleanup_deployment(&old).await?;
        }
        self.sync_status(new).await
    }

    /// Upstream `scale`: one active ReplicaSet takes all replicas; a saturated new one lets the
    /// old ones go; otherwise the change is spread in proportion to the ReplicaSets' sizes.
    pub(super) async fn scale(&mut self, new: Option<usize>, old: &[usize]) -> anyhow::Result<()> {
        let want = replicas(&self.d);
        let active: Vec<usize> = new
            .into_iter()
            .chain(old.iter().copied())
            .filter(|&i| rs_replicas(&self.rs_list[i]) > 0)
            .collect();
        let target = match active.len() {
            0 => new.or_else(|| old.last().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            self.scale_replica_set(i, want).await?;
            return Ok(());
        }
        if let Some(n) = new {
            let rs = &self.rs_list[n];
            let saturated = rs_replicas(rs) == want
                && annotation(&rs.metadata, DESIRED_REPLICAS) == Some(want.to_string().as_str())
                && rs_status(rs).2 == want;
            if saturated {
                for &i in old {
                    if rs_replicas(&self.rs_list[i]) > 0 {
                        self.scale_replica_set(i, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !util::is_rolling_update(&self.d) {
            return Ok(());
        }
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - self.replicas_of(&active);
        if to_add == 0 {
            return Ok(());
        }
        let mut order = active.clone();
        // Bigger first; among equals the newer first when adding, the older first when removing.
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rs_list[a], &self.rs_list[b]);
            let by_size = rs_replicas(rb).cmp(&rs_replicas(ra));
            let by_age = created(ra).cmp(&created(rb));
            by_size.then(if to_add > 0 { by_age.reverse() } else { by_age })
        });
        let deploy_replicas = want + max_surge(&self.d);
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for &i in &order {
            let rs = &self.rs_list[i];
            let current = rs_replicas(rs);
            let proportion = if current == 0 || to_add == added {
                0
            } else {
                let fraction = if want == 0 {
                    -current
                } else {
                    let annotated = annotation(&rs.metadata, MAX_REPLICAS)
                        .and_then(|m| m.parse::<i32>().ok())
                        .unwrap_or_else(|| {
                            self.d
                                .status
                                .as_ref()
                                .map_or(0, |s| s.replicas.unwrap_or(0))
                        });
                    if annotated == 0 {
                        0
                    } else {
                        let size = (f64::from(current) * f64::from(deploy_replicas)
                            / f64::from(annotated))
                        .round();
                        #[allow(clippy::cast_possible_truncation)] // a replica count
                        let size = size as i32;
                        size - current
                    }
                };
                let left = to_add - added;
                if to_add > 0 {
                    fraction.min(left)
                } else {
                    fraction.max(left)
                }
            };
            added += proportion;
            sizes.push((i, current + proportion));
        }
        // Whatever rounding left over goes to the biggest.
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale_replica_set(i, size).await?;
        }
        Ok(())
    }
    /// Deletes the oldest old ReplicaSets beyond revisionHistoryLimit that have no pods left.
    pub(super) async fn cleanup_deployment(&mut self, old: &[usize]) -> anyhow::Result<()> {
        let limit = usize::try_from(
            self.d
                .spec
                .as_ref()
                .and_then(|s| s.revision_history_limit)
                .unwrap_or(10),
        )
        .unwrap_or(0);
        let mut alive: Vec<usize> = old
            .iter()
            .copied()
            .filter(|&i| self.rs_list[i].metadata.deletion_timestamp.is_none())
            .collect();
        if alive.len() <= limit {
            return Ok(());
        }
        alive.sort_by_key(|&i| (revision(&self.rs_list[i]), created(&self.rs_list[i])));
        let excess = alive.len() - limit;
        for &i in alive.iter().take(excess) {
            let rs = &self.rs_list[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status(rs).0 != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            match self
                .rs_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream calculateStatus: counts from the ReplicaSets and the Available condition.
    pub(super) fn calculate_status(&self, new: Option<usize>) -> DeploymentStatus {
        let (mut replicas_, mut ready, mut available) = (0, 0, 0);
        for rs in &self.rs_list {
            let (r, rd, a) = rs_status(rs);
            replicas_ += r;
            ready += rd;
            available += a;
        }
        let total = self.replicas_of(&self.all());
        let mut conditions = self.conditions.clone();
        let want = replicas(&self.d);
        if available >= want - max_unavailable(&self.d) {
            let c = util::new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            );
            util::set_condition(&mut conditions, c);
        } else {
            let c = util::new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            );
            util::set_condition(&mut conditions, c);
        }
        // Available first, as upstream lists them.
        conditions.sort_by_key(|c| c.type_ != "Available");
        DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(replicas_),
            updated_replicas: Some(new.map_or(0, |n| rs_status(&self.rs_list[n]).0)),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            terminating_replicas: None,
            collision_count: self.d.status.as_ref().and_then(|s| s.collision_count),
            conditions: Some(conditions),
        }
    }
    pub(super) async fn sync_status(&mut self, new: Option<usize>) -> anyhow::Result<Action> {
        let status = self.calculate_status(new);
        self.write_status(status).await?;
        Ok(Action::requeue(RESYNC))
    }
    pub(super) async fn write_status(&mut self, status: DeploymentStatus) -> anyhow::Result<()> {
        let old = self.d.status.clone().unwrap_or_default();
        if same_status(&old, &status) {
            return Ok(());
        }
        let patch = json!({"status": status});
        self.d = self
            .deploy_api
            .patch_status(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }
}

/// Equal but for the timestamps of conditions that did not otherwise change.
fn same_status(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_update_time = None;
            c.last_transition_time = None;
        }
        let mut v = serde_json::to_value(&s).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, x| !x.is_null() && x != &json!(0));
        }
        v
    };
    strip(a) == strip(b)
}
