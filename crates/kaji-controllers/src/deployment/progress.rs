//! Upstream `progress.go` and the rollout predicates it uses: whether a rollout is complete or
//! progressing, and the Progressing condition with the progress deadline.

use super::util::{self, replicas};
use super::{RESYNC, Sync};
use k8s_openapi::api::apps::v1::DeploymentStatus;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::time::Duration;

impl Sync<'_> {
    pub(super) fn deployment_complete(&self, s: &DeploymentStatus) -> bool {
        let want = replicas(&self.d);
        s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.observed_generation >= self.d.metadata.generation
    }

    /// Whether this sync moved the rollout forward (upstream DeploymentProgressing).
    pub(super) fn deployment_progressing(&self, s: &DeploymentStatus) -> bool {
        let old = self.d.status.clone().unwrap_or_default();
        let g = |v: Option<i32>| v.unwrap_or(0);
        let old_old = g(old.replicas) - g(old.updated_replicas);
        let new_old = g(s.replicas) - g(s.updated_replicas);
        g(s.updated_replicas) > g(old.updated_replicas)
            || new_old < old_old
            || g(s.ready_replicas) > g(old.ready_replicas)
            || g(s.available_replicas) > g(old.available_replicas)
    }
    /// Status with the Progressing condition (upstream syncRolloutStatus); requeues for the
    /// progress deadline.
    pub(super) async fn sync_rollout_status(
        &mut self,
        new: Option<usize>,
    ) -> anyhow::Result<Action> {
        let mut status = self.calculate_status(new);
        let deadline = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds);
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let mut requeue = RESYNC;
        if let (Some(deadline), false) = (deadline, paused) {
            let mut conds = status.conditions.take().unwrap_or_default();
            let what = match new {
                Some(n) => format!("ReplicaSet \"{}\"", self.rs_list[n].name_any()),
                None => format!("Deployment \"{}\"", self.d.name_any()),
            };
            let current = conds.iter().find(|c| c.type_ == "Progressing").cloned();
            if self.deployment_complete(&status) {
                let c = util::new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("{what} has successfully progressed."),
                );
                util::set_condition(&mut conds, c);
            } else if self.deployment_progressing(&status) {
                let mut c = util::new_condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("{what} is progressing."),
                );
                if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time.clone_from(&cur.last_transition_time);
                }
                conds.retain(|x| x.type_ != "Progressing");
                conds.push(c);
                requeue = Duration::from_secs(u64::try_from(deadline).unwrap_or(600) + 1);
            } else {
                let reason = current.as_ref().and_then(|c| c.reason.as_deref());
                let since = current
                    .as_ref()
                    .and_then(|c| c.last_update_time.as_ref())
                    .map(|t| t.0);
                let timed_out = match reason {
                    Some("NewReplicaSetAvailable") => false,
                    Some("ProgressDeadlineExceeded") => true,
                    _ => since.is_some_and(|t| {
                        t.as_second() + i64::from(deadline) < jiff::Timestamp::now().as_second()
                    }),
                };
                if timed_out {
                    let c = util::new_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("{what} has timed out progressing."),
                    );
                    util::set_condition(&mut conds, c);
                } else if let Some(t) = since {
                    let left =
                        t.as_second() + i64::from(deadline) - jiff::Timestamp::now().as_second();
                    requeue = Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0) + 1);
                }
            }
            conds.sort_by_key(|c| c.type_ != "Available");
            status.conditions = Some(conds);
        }
        self.write_status(status).await?;
        Ok(Action::requeue(requeue))
    }
}
