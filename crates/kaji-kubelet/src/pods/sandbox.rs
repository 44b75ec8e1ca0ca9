//! The runtime's view of a pod and its sandbox: what the CRI has for the pod (found by the pod
//! UID label, so a restarted agent adopts what kept running), creating a sandbox (upstream's
//! createPodSandbox, after stopping the dead ones), and the pod's managed /etc/hosts.

use super::actions::RuntimePod;
use super::container;
use super::events::WARNING;
use super::worker::PodWorker;
use crate::cri::api;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;

impl PodWorker {
    /// Reads what the runtime has for the pod: its sandboxes (the ready one, and its IP), and
    /// every container instance with its status, newest first.
    pub(super) async fn runtime_pod(&self) -> anyhow::Result<RuntimePod> {
        let mut cri = self.shared.cri.clone();
        let sandboxes = cri.pod_sandboxes(&self.uid).await?;
        let sandbox = sandboxes
            .iter()
            .find(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .cloned();
        let mut pod_ip = None;
        if let Some(s) = &sandbox {
            let st = cri.sandbox_status(&s.id).await?;
            pod_ip = st.network.map(|n| n.ip).filter(|ip| !ip.is_empty());
            if pod_ip.is_none()
                && self
                    .pod
                    .as_ref()
                    .and_then(|p| p.spec.as_ref())
                    .and_then(|s| s.host_network)
                    == Some(true)
            {
                pod_ip = Some(self.shared.node_ip.clone());
            }
        }
        let containers = cri.pod_containers(&self.uid).await?;
        let mut instances: HashMap<String, Vec<api::ContainerStatus>> = HashMap::new();
        for c in &containers {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if let Ok(mut st) = cri.container_status(&c.id).await {
                super::termination::fill(&mut st);
                instances.entry(name).or_default().push(st);
            }
        }
        for v in instances.values_mut() {
            v.sort_by_key(|s| {
                std::cmp::Reverse((s.created_at, s.metadata.as_ref().map_or(0, |m| m.attempt)))
            });
        }
        Ok(RuntimePod {
            sandbox,
            sandboxes,
            pod_ip,
            instances,
            containers,
        })
    }

    /// Stops the sandboxes `stop` and creates a new one with `attempt`. Ok(false) when the
    /// runtime refused it (reported as a FailedCreatePodSandBox event).
    pub(super) async fn create_sandbox(
        &self,
        pod: &Pod,
        stop: &[String],
        attempt: u32,
    ) -> anyhow::Result<bool> {
        let mut cri = self.shared.cri.clone();
        for id in stop {
            let _ = cri.stop_sandbox(id).await;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        std::fs::create_dir_all(self.shared.log_dir(&ns, &name, &self.uid))?;
        let config = container::sandbox_config(&self.shared, pod, attempt);
        if let Err(e) = cri.run_sandbox(config).await {
            self.shared.recorder.pod(
                pod,
                None,
                WARNING,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {e:#}"),
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// Writes the pod's /etc/hosts when it is missing or due (`refresh`) and differs.
    pub(super) fn write_hosts_file(
        &self,
        pod: &Pod,
        pod_ip: &str,
        refresh: bool,
    ) -> anyhow::Result<()> {
        let hosts = self.hosts_file_path();
        if !hosts.exists() || refresh {
            let content = container::hosts_file(pod, pod_ip, &self.shared.cluster_domain);
            if let Some(parent) = hosts.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if std::fs::read_to_string(&hosts).ok().as_deref() != Some(&content) {
                std::fs::write(&hosts, content)?;
            }
        }
        Ok(())
    }

    /// Where the pod's managed /etc/hosts lives.
    pub(super) fn hosts_file_path(&self) -> std::path::PathBuf {
        crate::volumes::pod_volumes_dir(&self.shared.agent_dir, &self.uid).join("etc-hosts")
    }
}
