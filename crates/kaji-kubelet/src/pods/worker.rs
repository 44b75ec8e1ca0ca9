//! One pod's worker: the sync loop of upstream's `SyncPod` (pkg/kubelet/kuberuntime/
//! kuberuntime_manager.go). Each sync observes the runtime's view of the pod (sandboxes and
//! containers found by the `io.kubernetes.pod.uid` label, so a restarted agent adopts what is
//! running), asks [`compute_pod_actions`] what to do, does it (volumes, `sandbox`, the next init
//! container and app containers in `start`, kills in `kill`), garbage-collects old instances
//! (`gc`), then writes the pod status if it changed. A pod with a deletionTimestamp is
//! terminated (`kill::terminate`).

use super::Shared;
use super::actions::{
    ContainerAction, Inputs, PodActions, RuntimePod, SandboxAction, compute_pod_actions,
    restart_action,
};
use super::backoff::Backoff;
use super::env::PodFacts;
use super::events::{NORMAL, WARNING};
use super::probe::{Kind, Results};
use super::start::Start;
use crate::status::{self, Waiting};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

pub use super::gc::remove_orphans;

/// How often configMap/secret/downwardAPI volumes are refreshed (upstream: the sync period).
const VOLUME_RESYNC: Duration = Duration::from_secs(10);

/// The wait after a sync that has nothing sooner to do.
const RESYNC: Duration = Duration::from_secs(10);

/// A pod's labels and annotations.
type PodMeta = (
    Option<std::collections::BTreeMap<String, String>>,
    Option<std::collections::BTreeMap<String, String>>,
);

pub struct PodWorker {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: watch::Receiver<Option<Pod>>,
    pub(super) pod: Option<Pod>,
    pub(super) uid: String,
    pub(super) waiting: HashMap<String, Waiting>,
    pub(super) crash_backoff: HashMap<String, Backoff>,
    pub(super) probes: HashMap<String, Vec<AbortHandle>>,
    pub(super) results: Results,
    pub(super) wake: Arc<Notify>,
    pub(super) volumes: Option<HashMap<String, PathBuf>>,
    volumes_synced: Option<Instant>,
    /// The labels and annotations the volumes were last set up with (downward API files follow
    /// them at once, as upstream's remount on pod update).
    volumes_meta: Option<PodMeta>,
    last_status: Option<Value>,
    /// Once the pod reached Succeeded/Failed it is never started again.
    pub(super) terminal: bool,
    /// The grace period the pod is being terminated with; it can only get shorter.
    pub(super) grace: Option<i64>,
    mount_error_reported: Option<String>,
    /// Set once the pod ran past its activeDeadlineSeconds (the pod is Failed, DeadlineExceeded).
    deadline_exceeded: bool,
}

/// upstream's activeDeadlineHandler reason and message.
const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

impl PodWorker {
    pub fn new(shared: Arc<Shared>, rx: watch::Receiver<Option<Pod>>) -> PodWorker {
        let pod = rx.borrow().clone();
        let uid = pod
            .as_ref()
            .and_then(|p| p.metadata.uid.clone())
            .unwrap_or_default();
        let deadline_exceeded = pod.as_ref().is_some_and(|p| {
            p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some(DEADLINE_REASON)
        });
        PodWorker {
            shared,
            rx,
            pod,
            uid,
            waiting: HashMap::new(),
            crash_backoff: HashMap::new(),
            probes: HashMap::new(),
            results: Arc::default(),
            wake: Arc::new(Notify::new()),
            volumes: None,
            volumes_synced: None,
            volumes_meta: None,
            last_status: None,
            terminal: false,
            grace: None,
            mount_error_reported: None,
            deadline_exceeded,
        }
    }

    pub(super) fn name(&self) -> String {
        self.pod
            .as_ref()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default()
                )
            })
            .unwrap_or_default()
    }

    pub async fn run(mut self) {
        let mut gone = false;
        loop {
            let pod = self.rx.borrow_and_update().clone();
            match pod {
                Some(p) => self.pod = Some(p),
                None => gone = true,
            }
            let deleting = gone
                || self
                    .pod
                    .as_ref()
                    .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
            let next = if deleting {
                match self.terminate(gone).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(pod = %self.name(), error = %format!("{e:#}"), "terminating pod");
                        Duration::from_secs(2)
                    }
                }
            } else {
                match self.sync().await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(pod = %self.name(), error = %format!("{e:#}"), "syncing pod");
                        Duration::from_secs(2)
                    }
                }
            };
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { gone = true; },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    pub(super) fn facts<'a>(&'a self, pod_ip: &'a str) -> PodFacts<'a> {
        PodFacts {
            pod_ip,
            host_ip: &self.shared.node_ip,
            node_cpu: &self.shared.node_cpu,
            node_memory: &self.shared.node_memory,
        }
    }

    /// What this sync should do, from the runtime's view and the worker's state.
    fn compute(&self, pod: &Pod, rt: &RuntimePod) -> PodActions {
        let probes = self.results.lock().map(|r| r.clone()).unwrap_or_default();
        compute_pod_actions(&Inputs {
            pod,
            runtime: rt,
            terminal: self.terminal,
            probes: &probes,
            crash_backoff: &self.crash_backoff,
            now: SystemTime::now(),
        })
    }

    /// One sync: observe, decide, act, report. Returns when to sync again at the latest.
    async fn sync(&mut self) -> anyhow::Result<Duration> {
        let Some(pod) = self.pod.clone() else {
            return Ok(RESYNC);
        };
        let mut rt = self.runtime_pod().await?;
        let deadline_in = self.active_deadline_left(&pod);
        if deadline_in == Some(Duration::ZERO) && !self.deadline_exceeded && !self.terminal {
            // upstream's activeDeadlineHandler: the pod is killed (with its grace period) and
            // Failed, DeadlineExceeded.
            self.deadline_exceeded = true;
            self.terminal = true;
            self.shared
                .recorder
                .pod(&pod, None, NORMAL, DEADLINE_REASON, DEADLINE_MESSAGE.into());
            self.write_status(&pod, &rt, false).await?;
            self.stop_everything(&pod, &rt, super::actions::grace_period(&pod))
                .await;
            let rt = self.runtime_pod().await?;
            self.write_status(&pod, &rt, false).await?;
            return Ok(Duration::from_secs(60));
        }
        let mut actions = self.compute(&pod, &rt);
        if actions.kill_pod {
            self.terminal = true;
            self.stop_everything(&pod, &rt, 0).await;
            let rt = self.runtime_pod().await?;
            self.write_status(&pod, &rt, false).await?;
            return Ok(Duration::from_secs(60));
        }
        // Volumes (refreshed every resync for configMap/secret/downwardAPI contents).
        let meta: PodMeta = (
            pod.metadata.labels.clone(),
            pod.metadata.annotations.clone(),
        );
        let due = self
            .volumes_synced
            .is_none_or(|t| t.elapsed() >= VOLUME_RESYNC)
            || self.volumes_meta.as_ref() != Some(&meta);
        if due {
            let ip = rt.pod_ip.clone().unwrap_or_default();
            let facts = self.facts(&ip);
            match crate::volumes::set_up(
                &self.shared.client,
                &self.shared.tokens,
                &self.shared.agent_dir,
                &pod,
                &facts,
            )
            .await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_synced = Some(Instant::now());
                    self.volumes_meta = Some(meta);
                    self.mount_error_reported = None;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.mount_error_reported.as_deref() != Some(&msg) {
                        self.shared
                            .recorder
                            .pod(&pod, None, WARNING, "FailedMount", msg.clone());
                        self.mount_error_reported = Some(msg);
                    }
                    if self.volumes.is_none() {
                        self.write_status(&pod, &rt, false).await?;
                        return Ok(Duration::from_secs(2));
                    }
                }
            }
        }
        // The sandbox: created when there is none ready (a dead one means a fresh start).
        match &actions.sandbox {
            SandboxAction::Keep => {}
            SandboxAction::GiveUp => {
                // The sandbox died under a Never pod: its containers will not run again.
                self.terminal = true;
                self.write_status(&pod, &rt, false).await?;
                return Ok(Duration::from_secs(60));
            }
            SandboxAction::Create { stop } => {
                if !self
                    .create_sandbox(&pod, stop, actions.sandbox_attempt)
                    .await?
                {
                    self.write_status(&pod, &rt, false).await?;
                    return Ok(Duration::from_secs(5));
                }
                rt = self.runtime_pod().await?;
                actions = self.compute(&pod, &rt);
            }
        }
        let Some(sandbox) = rt.sandbox.clone() else {
            return Ok(Duration::from_secs(2));
        };
        let pod_ip = rt.pod_ip.clone().unwrap_or_default();
        self.write_hosts_file(&pod, &pod_ip, due)?;
        let sandbox_config =
            super::container::sandbox_config(&self.shared, &pod, actions.sandbox_attempt);
        let start = Start {
            pod: &pod,
            sandbox_id: &sandbox.id,
            sandbox_config: &sandbox_config,
            pod_ip: &pod_ip,
        };
        let mut next = RESYNC;
        // Init containers, one at a time, in order; then the app containers.
        for name in &actions.init_succeeded {
            self.waiting.remove(name);
        }
        if actions.init_failed {
            self.terminal = true;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        if let Some((name, action)) = &actions.next_init
            && let Some(c) = spec
                .init_containers
                .iter()
                .flatten()
                .find(|c| &c.name == name)
        {
            next = next.min(self.execute(&start, &rt, c, action, true).await?);
        }
        for id in &actions.exited {
            self.stop_probes(id);
        }
        for (name, action) in &actions.sidecars {
            if let Some(c) = spec
                .init_containers
                .iter()
                .flatten()
                .find(|c| &c.name == name)
            {
                next = next.min(self.execute(&start, &rt, c, action, true).await?);
            }
        }
        for (name, action) in &actions.containers {
            if let Some(c) = spec.containers.iter().find(|c| &c.name == name) {
                next = next.min(self.execute(&start, &rt, c, action, false).await?);
            }
        }
        let rt = self.runtime_pod().await?;
        self.garbage_collect(&rt).await;
        if let Some(d) = deadline_in {
            next = next.min(d + Duration::from_millis(20));
        }
        let st = self.write_status(&pod, &rt, false).await?;
        if matches!(st["phase"].as_str(), Some("Succeeded" | "Failed")) {
            self.terminal = true;
            let rt = self.runtime_pod().await?;
            self.stop_everything(&pod, &rt, 0).await;
            return Ok(Duration::from_millis(100));
        }
        Ok(next)
    }

    /// Does what [`compute_pod_actions`] decided for one container; returns when to sync again.
    async fn execute(
        &mut self,
        start: &Start<'_>,
        rt: &RuntimePod,
        c: &Container,
        action: &ContainerAction,
        init: bool,
    ) -> anyhow::Result<Duration> {
        match action {
            ContainerAction::Kill {
                id,
                reason,
                grace,
                restart,
            } => {
                self.shared.recorder.pod(
                    start.pod,
                    Some(field_path(c, false)),
                    NORMAL,
                    "Killing",
                    reason.message(&c.name),
                );
                self.kill_container(start.pod, c, id, start.pod_ip, *grace)
                    .await;
                if !restart {
                    return Ok(RESYNC);
                }
                // Started again under the back-off, timed from the exit just caused.
                let rt = self.runtime_pod().await?;
                let again = restart_action(&rt, &c.name, &self.crash_backoff, SystemTime::now());
                Ok(self.start_again(start, &rt, c, &again, init).await)
            }
            ContainerAction::Remove { id } => {
                // Created but never started (a failed start): remove it and try again.
                let mut cri = self.shared.cri.clone();
                let _ = cri.remove_container(id).await;
                Ok(Duration::from_secs(1))
            }
            other => Ok(self.start_again(start, rt, c, other, init).await),
        }
    }

    /// Computes the status and writes it when it differs from the last one written.
    pub(super) async fn write_status(
        &mut self,
        pod: &Pod,
        rt: &RuntimePod,
        terminating: bool,
    ) -> anyhow::Result<Value> {
        let probes = |id: &str, c: &Container| self.probe_state(id, c);
        let input = status::Input {
            pod,
            instances: &rt.instances,
            waiting: &self.waiting,
            probes: &probes,
            pod_ip: rt.pod_ip.as_deref(),
            host_ip: &self.shared.node_ip,
            runtime_name: &self.shared.runtime_name,
            terminating,
            failed: self
                .deadline_exceeded
                .then_some((DEADLINE_REASON, DEADLINE_MESSAGE)),
        };
        let old = pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        let base = self.last_status.clone().or(old);
        let st = status::pod_status(&input, base.as_ref());
        if self.last_status.as_ref() == Some(&st) {
            return Ok(st);
        }
        // Keep a terminal phase terminal even if a racing read says otherwise.
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = json!([{"op": "add", "path": "/status", "value": st}]);
        match api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(patch)?),
            )
            .await
        {
            Ok(_) => self.last_status = Some(st.clone()),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(st)
    }

    /// How long the pod may still be active under its activeDeadlineSeconds (counted from its
    /// startTime, as upstream); None without a deadline or before the pod started.
    fn active_deadline_left(&self, pod: &Pod) -> Option<Duration> {
        let secs = pod.spec.as_ref()?.active_deadline_seconds?;
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .or_else(|| {
                self.last_status
                    .as_ref()
                    .and_then(|s| s["startTime"].as_str())
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            })?;
        let end = started
            .checked_add(jiff::SignedDuration::from_secs(secs.max(0)))
            .ok()?;
        let left = end.duration_since(jiff::Timestamp::now());
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    pub(super) fn stop_probes(&mut self, id: &str) {
        for h in self.probes.remove(id).unwrap_or_default() {
            h.abort();
        }
        if let Ok(mut r) = self.results.lock() {
            r.retain(|(cid, _), _| cid != id);
        }
    }

    /// (ready, started) of a running container, from its probes.
    fn probe_state(&self, id: &str, c: &Container) -> (bool, bool) {
        let r = self.results.lock().map(|r| r.clone()).unwrap_or_default();
        let started =
            c.startup_probe.is_none() || r.get(&(id.to_string(), Kind::Startup)) == Some(&true);
        let ready = started
            && (c.readiness_probe.is_none()
                || r.get(&(id.to_string(), Kind::Readiness)) == Some(&true));
        (ready, started)
    }
}

/// The event field path of a container (`spec.containers{name}`, `spec.initContainers{name}`).
pub(super) fn field_path(c: &Container, init: bool) -> String {
    if init {
        format!("spec.initContainers{{{}}}", c.name)
    } else {
        format!("spec.containers{{{}}}", c.name)
    }
}
