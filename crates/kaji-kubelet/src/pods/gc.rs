//! Garbage: old container instances and dead sandboxes of a running pod (upstream's container
//! GC keeps the newest exited instances), a terminated pod's volumes, logs and cgroups, and
//! sandboxes of pods the API no longer has for this node.

use super::Shared;
use super::actions::RuntimePod;
use super::container;
use super::worker::PodWorker;
use crate::cri::{self, api};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashSet;
use std::sync::Arc;

impl PodWorker {
    /// Keeps the newest two instances of each container (the current and `--previous`).
    pub(super) async fn garbage_collect(&self, rt: &RuntimePod) {
        let mut cri = self.shared.cri.clone();
        for v in rt.instances.values() {
            for s in v.iter().skip(2) {
                if s.state != api::ContainerState::ContainerRunning as i32 {
                    let _ = cri.remove_container(&s.id).await;
                    super::termination::remove_file(
                        s,
                        &crate::volumes::pod_volumes_dir(&self.shared.agent_dir, &self.uid),
                    );
                }
            }
        }
        for s in rt
            .sandboxes
            .iter()
            .filter(|s| s.state != api::PodSandboxState::SandboxReady as i32)
        {
            let has = rt.containers.iter().any(|c| c.pod_sandbox_id == s.id);
            if !has {
                let _ = cri.remove_sandbox(&s.id).await;
            }
        }
    }

    pub(super) async fn clean_up(&self, pod: &Pod) {
        crate::volumes::tear_down(&self.shared.agent_dir, &self.uid);
        self.shared.tokens.delete_pod_tokens(&self.uid);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let _ = std::fs::remove_dir_all(self.shared.log_dir(&ns, &name, &self.uid));
        container::remove_pod_cgroups(&container::cgroup_parent(pod)).await;
    }
}

/// Removes sandboxes (and their containers) of pods the API no longer has for this node.
pub async fn remove_orphans(shared: Arc<Shared>, known: HashSet<String>) {
    let mut cri = shared.cri.clone();
    let Ok(sandboxes) = cri.list_sandboxes(None).await else {
        return;
    };
    for s in sandboxes {
        let Some(uid) = s.labels.get(cri::POD_UID_LABEL) else {
            continue;
        };
        if known.contains(uid) {
            continue;
        }
        tracing::info!(sandbox = %s.id, pod_uid = %uid, "removing the sandbox of a pod that is gone");
        let _ = cri.stop_sandbox(&s.id).await;
        let _ = cri.remove_sandbox(&s.id).await;
        crate::volumes::tear_down(&shared.agent_dir, uid);
        shared.tokens.delete_pod_tokens(uid);
        if let Some(m) = &s.metadata {
            let _ = std::fs::remove_dir_all(shared.log_dir(&m.namespace, &m.name, uid));
        }
        // The pod's QoS class is unknown here: its cgroup is under one of the three parents.
        for parent in ["/kubepods", "/kubepods/burstable", "/kubepods/besteffort"] {
            container::remove_pod_cgroups(&format!("{parent}/pod{uid}")).await;
        }
    }
}
