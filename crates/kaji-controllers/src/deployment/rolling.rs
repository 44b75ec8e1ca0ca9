//! Upstream `rolling.go`: a RollingUpdate rollout moves replicas from the old ReplicaSets to the
//! new one within maxSurge and maxUnavailable.

use super::Sync;
use super::util::{max_unavailable, replicas, rs_replicas, rs_status};
use kube::runtime::controller::Action;

impl Sync<'_> {
    pub(super) async fn rollout_rolling(&mut self) -> anyhow::Result<Action> {
        let (new, old) = self.get_all_replica_sets_and_sync_revision(true).await?;
        let want = replicas(&self.d);
        if let Some(n) = new {
            let current = rs_replicas(&self.rs_list[n]);
            let target = if current > want {
                want
            } else {
                self.new_rs_new_replicas(new)
            };
            if target != current && self.scale_replica_set(n, target).await? {
                return self.sync_rollout_status(new).await;
            }
        }
        if self.reconcile_old_replica_sets(new, &old).await? {
            return self.sync_rollout_status(new).await;
        }
        if self.deployment_complete(&self.calculate_status(new)) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(new).await
    }

    /// Scales old ReplicaSets down: first their unhealthy replicas, then as far as
    /// maxUnavailable allows (upstream reconcileOldReplicaSets).
    pub(super) async fn reconcile_old_replica_sets(
        &mut self,
        new: Option<usize>,
        old: &[usize],
    ) -> anyhow::Result<bool> {
        if self.replicas_of(old) == 0 {
            return Ok(false);
        }
        let all_pods = self.replicas_of(&self.all());
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = new.map_or(0, |n| {
            let rs = &self.rs_list[n];
            (rs_replicas(rs) - rs_status(rs).2).max(0)
        });
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas of old ReplicaSets go first: they cost no availability.
        let mut cleaned = 0;
        for &i in old {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rs_list[i];
            let current = rs_replicas(rs);
            let unhealthy = current - rs_status(rs).2;
            if current == 0 || unhealthy <= 0 {
                continue;
            }
            let down = unhealthy.min(max_scaled_down - cleaned);
            self.scale_replica_set(i, current - down).await?;
            cleaned += down;
        }
        let available: i32 = self.rs_list.iter().map(|rs| rs_status(rs).2).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = (available - min_available).min(max_scaled_down - cleaned);
            for &i in old {
                if scaled >= total {
                    break;
                }
                let current = rs_replicas(&self.rs_list[i]);
                if current == 0 {
                    continue;
                }
                let down = current.min(total - scaled);
                self.scale_replica_set(i, current - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }
}
