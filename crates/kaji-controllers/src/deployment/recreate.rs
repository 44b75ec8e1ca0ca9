//! Upstream `recreate.go`: a Recreate rollout scales the old ReplicaSets to zero and waits for
//! their pods to be gone before it scales up the new one.

use super::Sync;
use super::util::{replicas, rs_replicas, rs_status};
use kube::runtime::controller::Action;

impl Sync<'_> {
    pub(super) async fn rollout_recreate(&mut self) -> anyhow::Result<Action> {
        let (new, old) = self.get_all_replica_sets_and_sync_revision(false).await?;
        let mut scaled_down = false;
        for &i in &old {
            if rs_replicas(&self.rs_list[i]) > 0 {
                scaled_down |= self.scale_replica_set(i, 0).await?;
            }
        }
        // Old pods must be gone before new ones start (upstream oldPodsRunning, here from the
        // old ReplicaSets' counts).
        let old_running = old.iter().any(|&i| rs_status(&self.rs_list[i]).0 > 0);
        if scaled_down || old_running {
            return self.sync_rollout_status(new).await;
        }
        let (new, old) = if new.is_none() {
            self.get_all_replica_sets_and_sync_revision(true).await?
        } else {
            (new, old)
        };
        if let Some(n) = new {
            self.scale_replica_set(n, replicas(&self.d)).await?;
        }
        if self.deployment_complete(&self.calculate_status(new)) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(new).await
    }
}
