//! One pod's worker: the sync loop of upstream's `SyncPod` / `computePodActions`
//! (pkg/kubelet/kuberuntime/kuberuntime_manager.go). Each sync reads the runtime's view of the
//! pod (sandboxes and containers found by the `io.kubernetes.pod.uid` label, so a restarted agent
//! adopts what is running), acts (volumes, sandbox, the next init container, app containers
//! with restart policy and CrashLoopBackOff), then writes the pod status if it changed.
//! A pod with a deletionTimestamp is stopped (preStop, then StopContainer with the grace period,
//! never less than 2 s to SIGKILL; a later delete with a shorter grace period interrupts the kill
//! and kills again with it), its sandbox, volumes and logs removed, and then deleted from the API
//! with grace 0. CrashLoopBackOff is timed from the exited container's finishedAt.

use super::Shared;
use super::container::{self, ContainerInputs};
use super::env::{self, EnvSources, PodFacts};
use super::events::{NORMAL, WARNING};
use super::probe::{self, Kind, ProbeTask, Results};
use crate::cri::{self, api};
use crate::status::{self, Waiting};
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

/// Upstream's crash-loop and image-pull back-off (client-go's flowcontrol.Backoff as the kubelet
/// configures it: 10 s doubling to 5 min, no jitter). Times are wall-clock, as the runtime's
/// finishedAt is.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    pub delay: Duration,
    /// When the back-off last moved on (upstream's lastUpdate).
    pub last: Option<SystemTime>,
}

const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long after `earlier` `later` is (zero when it is not later).
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

impl Backoff {
    /// An event more than twice the maximum after the last step starts the back-off over.
    fn expired(&self, event: SystemTime) -> bool {
        self.last.is_none_or(|l| since(event, l) > BACKOFF_MAX * 2)
    }

    /// Whether `now` is still within the back-off window that started at `event` (upstream's
    /// IsInBackOffSince; the crash loop's event is the exited container's finishedAt).
    pub fn in_backoff_since_at(&self, event: SystemTime, now: SystemTime) -> bool {
        !self.expired(event) && since(now, event) < self.delay
    }

    /// What is left at `now` of the window that started at `event`.
    pub fn remaining_since_at(&self, event: SystemTime, now: SystemTime) -> Duration {
        if self.expired(event) {
            return Duration::ZERO;
        }
        self.delay.saturating_sub(since(now, event))
    }

    /// Moves the back-off on for an event at `event`: the first (or the first after a quiet
    /// period of twice the maximum) waits 10 s, then each doubles, up to 5 min.
    pub fn next_at(&mut self, event: SystemTime, now: SystemTime) {
        self.delay = if self.expired(event) {
            BACKOFF_INITIAL
        } else {
            (self.delay * 2).min(BACKOFF_MAX)
        };
        self.last = Some(now);
    }

    /// Whether the last step is younger than the window (upstream's IsInBackOffSinceUpdate with
    /// now as the event: the image pull back-off).
    pub fn in_backoff(&self) -> bool {
        self.last
            .is_some_and(|l| self.in_backoff_since_at(l, SystemTime::now()))
    }
    pub fn remaining(&self) -> Duration {
        self.last.map_or(Duration::ZERO, |l| {
            self.remaining_since_at(l, SystemTime::now())
        })
    }
    /// Records a failure now (image pulls).
    pub fn next(&mut self) {
        let now = SystemTime::now();
        self.next_at(now, now);
    }
}

/// Upstream's minimumGracePeriodInSeconds: every container gets at least this long between
/// SIGTERM and SIGKILL, however short the grace period asked for (killContainer).
const MIN_STOP_TIMEOUT: i64 = 2;

/// The StopContainer timeout for a kill with `grace` seconds of which the preStop hook used
/// `spent`: what is left, but never less than the minimum.
fn stop_timeout(grace: i64, spent: Duration) -> i64 {
    (grace - spent.as_secs() as i64).max(MIN_STOP_TIMEOUT)
}

/// Upstream's calculateEffectiveGracePeriod: a terminating pod's grace period starts as the
/// deletion's (or, with none, the spec's), can only get shorter (a second delete with a shorter
/// grace period; a pod gone from the API is killed with 1 s), and is never below 1 s.
fn effective_grace(current: Option<i64>, pod: &Pod, gone: bool) -> i64 {
    let requested = if gone {
        Some(1)
    } else {
        pod.metadata.deletion_grace_period_seconds
    };
    let mut grace = current;
    if let Some(r) = requested
        && grace.is_none_or(|g| r < g)
    {
        grace = Some(r);
    }
    grace.unwrap_or_else(|| grace_period(pod)).max(1)
}

/// A whole-second duration as Go prints it (`10s`, `1m20s`, `5m0s`), for back-off messages.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The wall-clock time of a CRI timestamp (nanoseconds since the epoch), or now when unset.
fn cri_time(ns: i64) -> SystemTime {
    u64::try_from(ns)
        .ok()
        .filter(|&n| n > 0)
        .map_or_else(SystemTime::now, |n| UNIX_EPOCH + Duration::from_nanos(n))
}

/// How often configMap/secret/downwardAPI volumes are refreshed (upstream: the sync period).
const VOLUME_RESYNC: Duration = Duration::from_secs(10);

/// A pod's labels and annotations.
type PodMeta = (
    Option<std::collections::BTreeMap<String, String>>,
    Option<std::collections::BTreeMap<String, String>>,
);

pub struct PodWorker {
    shared: Arc<Shared>,
    rx: watch::Receiver<Option<Pod>>,
    pod: Option<Pod>,
    uid: String,
    waiting: HashMap<String, Waiting>,
    crash_backoff: HashMap<String, Backoff>,
    probes: HashMap<String, Vec<AbortHandle>>,
    results: Results,
    wake: Arc<Notify>,
    volumes: Option<HashMap<String, PathBuf>>,
    volumes_synced: Option<Instant>,
    /// The labels and annotations the volumes were last set up with (downward API files follow
    /// them at once, as upstream's remount on pod update).
    volumes_meta: Option<PodMeta>,
    last_status: Option<Value>,
    /// Once the pod reached Succeeded/Failed it is never started again.
    terminal: bool,
    /// The grace period the pod is being terminated with; it can only get shorter.
    grace: Option<i64>,
    mount_error_reported: Option<String>,
}

/// What the runtime has for the pod.
struct RuntimePod {
    sandbox: Option<api::PodSandbox>,
    sandboxes: Vec<api::PodSandbox>,
    pod_ip: Option<String>,
    /// CRI statuses by container name, newest first (all sandboxes).
    instances: HashMap<String, Vec<api::ContainerStatus>>,
    containers: Vec<api::Container>,
}

impl PodWorker {
    pub fn new(shared: Arc<Shared>, rx: watch::Receiver<Option<Pod>>) -> PodWorker {
        let pod = rx.borrow().clone();
        let uid = pod
            .as_ref()
            .and_then(|p| p.metadata.uid.clone())
            .unwrap_or_default();
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
        }
    }

    fn name(&self) -> String {
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

    async fn runtime_pod(&self) -> anyhow::Result<RuntimePod> {
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
            if let Ok(st) = cri.container_status(&c.id).await {
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

    fn facts<'a>(&'a self, pod_ip: &'a str) -> PodFacts<'a> {
        PodFacts {
            pod_ip,
            host_ip: &self.shared.node_ip,
            node_cpu: &self.shared.node_cpu,
            node_memory: &self.shared.node_memory,
        }
    }

    async fn sync(&mut self) -> anyhow::Result<Duration> {
        let Some(pod) = self.pod.clone() else {
            return Ok(Duration::from_secs(10));
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let already_terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let mut rt = self.runtime_pod().await?;
        let mut next = Duration::from_secs(10);
        if self.terminal || already_terminal {
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
            match crate::volumes::set_up(&self.shared.client, &self.shared.agent_dir, &pod, &facts)
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
        // The sandbox: create it when there is none ready (a dead one means a fresh start).
        let sandbox_attempt = rt
            .sandboxes
            .first()
            .and_then(|s| s.metadata.as_ref())
            .map_or(0, |m| m.attempt + u32::from(rt.sandbox.is_none()));
        let sandbox_config = container::sandbox_config(
            &self.shared,
            &pod,
            rt.sandbox
                .as_ref()
                .and_then(|s| s.metadata.as_ref())
                .map_or(sandbox_attempt, |m| m.attempt),
        );
        if rt.sandbox.is_none() {
            let all_done_never = policy == "Never" && !rt.sandboxes.is_empty();
            if all_done_never {
                // The sandbox died under a Never pod: its containers will not run again.
                self.terminal = true;
                self.write_status(&pod, &rt, false).await?;
                return Ok(Duration::from_secs(60));
            }
            for old in &rt.sandboxes {
                let mut cri = self.shared.cri.clone();
                let _ = cri.stop_sandbox(&old.id).await;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            std::fs::create_dir_all(self.shared.log_dir(&ns, &name, &self.uid))?;
            let mut cri = self.shared.cri.clone();
            if let Err(e) = cri.run_sandbox(sandbox_config.clone()).await {
                self.shared.recorder.pod(
                    &pod,
                    None,
                    WARNING,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e:#}"),
                );
                self.write_status(&pod, &rt, false).await?;
                return Ok(Duration::from_secs(5));
            }
            rt = self.runtime_pod().await?;
        }
        let Some(sandbox) = rt.sandbox.clone() else {
            return Ok(Duration::from_secs(2));
        };
        let pod_ip = rt.pod_ip.clone().unwrap_or_default();
        let hosts =
            crate::volumes::pod_volumes_dir(&self.shared.agent_dir, &self.uid).join("etc-hosts");
        if !hosts.exists() || due {
            let content = container::hosts_file(&pod, &pod_ip);
            if let Some(parent) = hosts.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if std::fs::read_to_string(&hosts).ok().as_deref() != Some(&content) {
                std::fs::write(&hosts, content)?;
            }
        }
        let current = |rt: &RuntimePod, name: &str| -> Option<api::ContainerStatus> {
            rt.instances.get(name).and_then(|v| {
                v.iter()
                    .find(|s| {
                        rt.containers
                            .iter()
                            .any(|c| c.id == s.id && c.pod_sandbox_id == sandbox.id)
                    })
                    .cloned()
            })
        };
        // Init containers, one at a time, in order.
        let mut init_done = true;
        for c in spec.init_containers.clone().unwrap_or_default() {
            match current(&rt, &c.name) {
                Some(s)
                    if s.state == api::ContainerState::ContainerExited as i32
                        && s.exit_code == 0 =>
                {
                    self.waiting.remove(&c.name);
                    continue;
                }
                Some(s) if s.state == api::ContainerState::ContainerRunning as i32 => {
                    init_done = false;
                    break;
                }
                Some(s) if s.state == api::ContainerState::ContainerExited as i32 => {
                    init_done = false;
                    if policy == "Never" {
                        self.terminal = true;
                        break;
                    }
                    next = next.min(
                        self.restart(&pod, &c, &rt, &sandbox.id, &sandbox_config, &pod_ip, true)
                            .await,
                    );
                    break;
                }
                _ => {
                    init_done = false;
                    next = next.min(
                        self.start(&pod, &c, &rt, &sandbox.id, &sandbox_config, &pod_ip, true)
                            .await,
                    );
                    break;
                }
            }
        }
        if init_done && !self.terminal {
            for c in &spec.containers {
                match current(&rt, &c.name) {
                    Some(s) if s.state == api::ContainerState::ContainerRunning as i32 => {
                        let failed = |k: Kind| {
                            self.results
                                .lock()
                                .map(|r| r.get(&(s.id.clone(), k)) == Some(&false))
                                .unwrap_or(false)
                        };
                        let (liveness_failed, startup_failed) = (
                            failed(Kind::Liveness),
                            c.startup_probe.is_some() && failed(Kind::Startup),
                        );
                        if liveness_failed || startup_failed {
                            let (what, probe) = if liveness_failed {
                                ("liveness", &c.liveness_probe)
                            } else {
                                ("startup", &c.startup_probe)
                            };
                            // The probe's own terminationGracePeriodSeconds wins over the pod's.
                            let grace = probe
                                .as_ref()
                                .and_then(|p| p.termination_grace_period_seconds)
                                .unwrap_or_else(|| grace_period(&pod));
                            self.shared.recorder.pod(
                                &pod,
                                Some(format!("spec.containers{{{}}}", c.name)),
                                NORMAL,
                                "Killing",
                                format!(
                                    "Container {} failed {what} probe, will be restarted",
                                    c.name
                                ),
                            );
                            self.kill_container(&pod, c, &s.id, &pod_ip, grace).await;
                            rt = self.runtime_pod().await?;
                            if policy != "Never" {
                                next = next.min(
                                    self.restart(
                                        &pod,
                                        c,
                                        &rt,
                                        &sandbox.id,
                                        &sandbox_config,
                                        &pod_ip,
                                        false,
                                    )
                                    .await,
                                );
                            }
                        }
                    }
                    Some(s) if s.state == api::ContainerState::ContainerExited as i32 => {
                        self.stop_probes(&s.id);
                        let restart = match policy.as_str() {
                            "Always" => true,
                            "OnFailure" => s.exit_code != 0,
                            _ => false,
                        };
                        if restart {
                            next = next.min(
                                self.restart(
                                    &pod,
                                    c,
                                    &rt,
                                    &sandbox.id,
                                    &sandbox_config,
                                    &pod_ip,
                                    false,
                                )
                                .await,
                            );
                        }
                    }
                    Some(s) if s.state == api::ContainerState::ContainerCreated as i32 => {
                        // Created but never started (a failed start): remove it and try again.
                        let mut cri = self.shared.cri.clone();
                        let _ = cri.remove_container(&s.id).await;
                        next = next.min(Duration::from_secs(1));
                    }
                    Some(_) => {}
                    None => {
                        next = next.min(
                            self.start(&pod, c, &rt, &sandbox.id, &sandbox_config, &pod_ip, false)
                                .await,
                        );
                    }
                }
            }
        }
        let rt = self.runtime_pod().await?;
        self.garbage_collect(&rt).await;
        let st = self.write_status(&pod, &rt, false).await?;
        if matches!(st["phase"].as_str(), Some("Succeeded" | "Failed")) {
            self.terminal = true;
            let rt = self.runtime_pod().await?;
            self.stop_everything(&pod, &rt, 0).await;
            return Ok(Duration::from_millis(100));
        }
        Ok(next)
    }

    /// Restarts an exited container, honouring CrashLoopBackOff.
    #[allow(clippy::too_many_arguments)]
    async fn restart(
        &mut self,
        pod: &Pod,
        c: &Container,
        rt: &RuntimePod,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        pod_ip: &str,
        init: bool,
    ) -> Duration {
        // As upstream's doBackOff: the window is timed from the finishedAt of the container's
        // latest exited instance, not from when it was last started.
        let finished = rt
            .instances
            .get(&c.name)
            .and_then(|v| {
                v.iter()
                    .find(|s| s.state == api::ContainerState::ContainerExited as i32)
            })
            .map(|s| cri_time(s.finished_at));
        let Some(finished) = finished else {
            return self
                .start(pod, c, rt, sandbox_id, sandbox_config, pod_ip, init)
                .await;
        };
        let now = SystemTime::now();
        let b = self.crash_backoff.entry(c.name.clone()).or_default();
        if b.in_backoff_since_at(finished, now) {
            let remaining = b.remaining_since_at(finished, now);
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                go_duration(b.delay),
                c.name,
                pod.metadata.name.clone().unwrap_or_default(),
                pod.metadata.namespace.clone().unwrap_or_default(),
                self.uid
            );
            if self.waiting.get(&c.name).map(|w| w.reason.as_str()) != Some("CrashLoopBackOff") {
                self.shared.recorder.pod(
                    pod,
                    Some(field_path(c, init)),
                    WARNING,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name,
                        pod.metadata.name.clone().unwrap_or_default(),
                        pod.metadata.namespace.clone().unwrap_or_default(),
                        self.uid
                    ),
                );
            }
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message,
                },
            );
            return remaining + Duration::from_millis(50);
        }
        b.next_at(finished, now);
        self.start(pod, c, rt, sandbox_id, sandbox_config, pod_ip, init)
            .await
    }

    /// Pulls, creates and starts one container; failures become its waiting reason.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        rt: &RuntimePod,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        pod_ip: &str,
        init: bool,
    ) -> Duration {
        let fp = field_path(c, init);
        let image_ref = match super::pull::ensure_image(&self.shared, pod, c, &fp).await {
            Ok(r) => r,
            Err(e) => {
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: e.reason.into(),
                        message: e.message,
                    },
                );
                let remaining = self.shared.image_backoff.lock().ok().and_then(|m| {
                    m.get(&c.image.clone().unwrap_or_default())
                        .map(Backoff::remaining)
                });
                return remaining
                    .unwrap_or(Duration::from_secs(10))
                    .max(Duration::from_millis(500));
            }
        };
        let attempt = rt
            .instances
            .get(&c.name)
            .and_then(|v| v.first())
            .map_or(0, |s| {
                s.annotations
                    .get(cri::RESTART_COUNT_ANNOTATION)
                    .and_then(|a| a.parse::<u32>().ok())
                    .unwrap_or(0)
                    + 1
            });
        let config_error = |me: &mut Self, message: String| {
            me.shared.recorder.pod(
                pod,
                Some(fp.clone()),
                WARNING,
                "Failed",
                format!("Error: {message}"),
            );
            me.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                },
            );
            Duration::from_secs(2)
        };
        let facts = self.facts(pod_ip);
        let services = self.services(pod).await;
        let env = env::make_env(
            &self.shared.client,
            pod,
            c,
            &facts,
            &EnvSources { services },
        )
        .await;
        let (env, skipped) = match env {
            Ok(v) => v,
            Err(e) => return config_error(self, e.0),
        };
        if !skipped.is_empty() {
            self.shared.recorder.pod(
                pod,
                Some(fp.clone()),
                WARNING,
                "InvalidEnvironmentVariableNames",
                format!("Keys [{}] from the EnvFrom configMap {}/... were skipped since they are considered invalid environment variable names.", skipped.join(", "), pod.metadata.namespace.clone().unwrap_or_default()),
            );
        }
        let volumes = self.volumes.clone().unwrap_or_default();
        let hosts =
            crate::volumes::pod_volumes_dir(&self.shared.agent_dir, &self.uid).join("etc-hosts");
        let config = match container::container_config(
            pod,
            c,
            ContainerInputs {
                image_ref: &image_ref,
                env,
                volumes: &volumes,
                hosts_file: Some(&hosts),
                attempt,
            },
        ) {
            Ok(cfg) => cfg,
            Err(m) => return config_error(self, m),
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let _ = std::fs::create_dir_all(self.shared.log_dir(&ns, &name, &self.uid).join(&c.name));
        let mut cri = self.shared.cri.clone();
        let id = match cri
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let message = format!("{e:#}");
                self.shared.recorder.pod(
                    pod,
                    Some(fp.clone()),
                    WARNING,
                    "Failed",
                    format!("Error: {message}"),
                );
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CreateContainerError".into(),
                        message,
                    },
                );
                return Duration::from_secs(2);
            }
        };
        self.shared.recorder.pod(
            pod,
            Some(fp.clone()),
            NORMAL,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = cri.start_container(&id).await {
            let message = format!("{e:#}");
            self.shared.recorder.pod(
                pod,
                Some(fp.clone()),
                WARNING,
                "Failed",
                format!("Error: {message}"),
            );
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "RunContainerError".into(),
                    message,
                },
            );
            // The runtime keeps it as exited (reason StartError, with its finishedAt), as
            // upstream: the next sync restarts it under the crash-loop back-off.
            return Duration::from_millis(100);
        }
        self.waiting.remove(&c.name);
        self.shared.recorder.pod(
            pod,
            Some(fp.clone()),
            NORMAL,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            // As upstream, the hook runs before the container counts as started, with no time
            // limit of its own; a deletion of the pod cuts it short (termination takes over).
            let hook = probe::run_hook(&self.shared, pod, pod_ip, c, &id, h);
            let outcome = tokio::select! {
                r = hook => r,
                () = deletion(self.rx.clone()) => Ok(()),
            };
            if let Err(msg) = outcome {
                self.shared.recorder.pod(
                    pod,
                    Some(fp.clone()),
                    WARNING,
                    "FailedPostStartHook",
                    msg.clone(),
                );
                self.shared.recorder.pod(
                    pod,
                    Some(fp.clone()),
                    NORMAL,
                    "Killing",
                    "FailedPostStartHook".into(),
                );
                self.kill_container(pod, c, &id, pod_ip, grace_period(pod))
                    .await;
                // Upstream's reason cache: the container waits with the start error until the
                // next start (or CrashLoopBackOff) replaces it.
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "PostStartHookError".into(),
                        message: msg,
                    },
                );
                return Duration::from_millis(100);
            }
        }
        if !init {
            self.start_probes(pod, c, &id, pod_ip);
        }
        Duration::from_secs(10)
    }

    async fn services(&self, pod: &Pod) -> Vec<Service> {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut out = Vec::new();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        if links
            && let Ok(list) = Api::<Service>::namespaced(self.shared.client.clone(), &ns)
                .list(&ListParams::default())
                .await
        {
            out.extend(list.items);
        }
        // The master service's variables are set even without service links (see service_env).
        if (ns != "default" || !links)
            && let Ok(Some(k)) = Api::<Service>::namespaced(self.shared.client.clone(), "default")
                .get_opt("kubernetes")
                .await
        {
            out.push(k);
        }
        out
    }

    fn start_probes(&mut self, pod: &Pod, c: &Container, id: &str, pod_ip: &str) {
        let mut handles = Vec::new();
        for (kind, p) in [
            (Kind::Startup, &c.startup_probe),
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Readiness, &c.readiness_probe),
        ] {
            let Some(p) = p.clone() else { continue };
            let task = ProbeTask {
                shared: self.shared.clone(),
                pod: pod.clone(),
                container: c.clone(),
                container_id: id.to_string(),
                pod_ip: pod_ip.to_string(),
                kind,
                probe: p,
                results: self.results.clone(),
                wake: self.wake.clone(),
            };
            handles.push(tokio::spawn(task.run()).abort_handle());
        }
        self.probes.insert(id.to_string(), handles);
    }

    fn stop_probes(&mut self, id: &str) {
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

    /// Runs the preStop hook, then stops the container with the remaining grace period.
    async fn kill_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        id: &str,
        pod_ip: &str,
        grace: i64,
    ) {
        self.stop_probes(id);
        let started = Instant::now();
        // The preStop hook gets the grace period (upstream: only when there is one); what it
        // leaves is the SIGTERM-to-SIGKILL window, at least 2 s even for a grace period of 0.
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
            && grace > 0
        {
            let hook = probe::run_hook(&self.shared, pod, pod_ip, c, id, h);
            let limit = Duration::from_secs(grace as u64);
            if let Ok(Err(msg)) = tokio::time::timeout(limit, hook).await {
                self.shared.recorder.pod(
                    pod,
                    Some(field_path(c, false)),
                    WARNING,
                    "FailedPreStopHook",
                    msg,
                );
            }
        }
        let left = stop_timeout(grace, started.elapsed());
        let mut cri = self.shared.cri.clone();
        if let Err(e) = cri.stop_container(id, left).await {
            tracing::warn!(pod = %self.name(), container = %c.name, error = %format!("{e:#}"), "stopping container");
        }
    }

    /// Stops all running containers (in parallel, as upstream) and the sandbox.
    async fn stop_everything(&mut self, pod: &Pod, rt: &RuntimePod, grace: i64) {
        let pod_ip = rt.pod_ip.clone().unwrap_or_default();
        let running: Vec<(Container, String)> = rt
            .containers
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .filter_map(|rc| {
                let name = rc.metadata.as_ref()?.name.clone();
                let spec = super::find_container(pod, &name)
                    .cloned()
                    .unwrap_or(Container {
                        name,
                        ..Default::default()
                    });
                Some((spec, rc.id.clone()))
            })
            .collect();
        // Joined, not spawned: dropping this future (a shorter grace period arrived) cancels the
        // kills in progress, their hooks and StopContainer calls included.
        let mut kills = Vec::new();
        for (c, id) in running {
            self.stop_probes(&id);
            self.shared.recorder.pod(
                pod,
                Some(field_path(&c, false)),
                NORMAL,
                "Killing",
                format!("Stopping container {}", c.name),
            );
            let mut me = PodWorker::new(self.shared.clone(), self.rx.clone());
            me.pod = Some(pod.clone());
            let pod = pod.clone();
            let pod_ip = pod_ip.clone();
            kills.push(async move { me.kill_container(&pod, &c, &id, &pod_ip, grace).await });
        }
        futures::future::join_all(kills).await;
        for s in &rt.sandboxes {
            if s.state == api::PodSandboxState::SandboxReady as i32 {
                let mut cri = self.shared.cri.clone();
                let _ = cri.stop_sandbox(&s.id).await;
            }
        }
    }

    /// Keeps the newest two instances of each container (the current and `--previous`).
    async fn garbage_collect(&self, rt: &RuntimePod) {
        let mut cri = self.shared.cri.clone();
        for v in rt.instances.values() {
            for s in v.iter().skip(2) {
                if s.state != api::ContainerState::ContainerRunning as i32 {
                    let _ = cri.remove_container(&s.id).await;
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

    /// Computes the status and writes it when it differs from the last one written.
    async fn write_status(
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

    /// Stops and removes everything of the pod, then (if it still exists) deletes it from the API.
    async fn terminate(&mut self, gone: bool) -> anyhow::Result<()> {
        let Some(pod) = self.pod.clone() else {
            return Ok(());
        };
        // Upstream's pod worker: a grace period that gets shorter while the containers are being
        // stopped (a second delete, or the pod removed from the API) cancels the kill in
        // progress, and the containers are killed again with the shorter one.
        let mut gone = gone;
        let mut pod = pod;
        loop {
            let grace = effective_grace(self.grace, &pod, gone);
            self.grace = Some(grace);
            let rt = self.runtime_pod().await?;
            let shortened = shorter_grace(self.rx.clone(), grace);
            tokio::select! {
                () = self.stop_everything(&pod, &rt, grace) => break,
                () = shortened => {}
            }
            match self.rx.borrow().clone() {
                Some(p) => pod = p,
                None => gone = true,
            }
            tracing::info!(pod = %self.name(), grace = effective_grace(Some(grace), &pod, gone), "grace period shortened; killing again");
        }
        self.pod = Some(pod.clone());
        let rt = self.runtime_pod().await?;
        if !gone {
            let _ = self.write_status(&pod, &rt, true).await;
        }
        let mut cri = self.shared.cri.clone();
        for s in &rt.sandboxes {
            cri.remove_sandbox(&s.id).await?;
        }
        for id in self.probes.keys().cloned().collect::<Vec<_>>() {
            self.stop_probes(&id);
        }
        self.clean_up(&pod).await;
        if !gone {
            let api: Api<Pod> = Api::namespaced(
                self.shared.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api
                .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn clean_up(&self, pod: &Pod) {
        crate::volumes::tear_down(&self.shared.agent_dir, &self.uid);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let _ = std::fs::remove_dir_all(self.shared.log_dir(&ns, &name, &self.uid));
        container::remove_pod_cgroups(&container::cgroup_parent(pod)).await;
    }
}

fn field_path(c: &Container, init: bool) -> String {
    if init {
        format!("spec.initContainers{{{}}}", c.name)
    } else {
        format!("spec.containers{{{}}}", c.name)
    }
}

/// Resolves once the pod's termination grace period drops below `grace`: a later delete with a
/// shorter grace period, or the pod removed from the API.
async fn shorter_grace(mut rx: watch::Receiver<Option<Pod>>, grace: i64) {
    loop {
        let shorter = match rx.borrow_and_update().as_ref() {
            Some(p) => effective_grace(Some(grace), p, false) < grace,
            None => grace > 1,
        };
        if shorter {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Resolves once the pod is deleted or being deleted (its deletionTimestamp is set).
async fn deletion(mut rx: watch::Receiver<Option<Pod>>) {
    loop {
        let deleting = rx
            .borrow_and_update()
            .as_ref()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        if deleting || rx.changed().await.is_err() {
            return;
        }
    }
}

fn grace_period(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
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
        if let Some(m) = &s.metadata {
            let _ = std::fs::remove_dir_all(shared.log_dir(&m.namespace, &m.name, uid));
        }
        // The pod's QoS class is unknown here: its cgroup is under one of the three parents.
        for parent in ["/kubepods", "/kubepods/burstable", "/kubepods/besteffort"] {
            container::remove_pod_cgroups(&format!("{parent}/pod{uid}")).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// The crash-loop window runs from the container's finishedAt (upstream's doBackOff with
    /// IsInBackOffSince), so a container that ran for a while before it crashed is not restarted
    /// any sooner for it: it always waits the full window after it exited.
    #[test]
    fn crash_backoff_is_timed_from_the_finish() {
        let mut b = Backoff::default();
        // First exit (t=5): no entry yet, restarted at once; the window is now 10 s.
        assert!(!b.in_backoff_since_at(at(5), at(5)));
        b.next_at(at(5), at(5));
        assert_eq!(b.delay, Duration::from_secs(10));
        // The restarted container runs 8 s and exits at t=13: it waits until t=23, although
        // the last restart was at t=5 (10 s after the restart would be t=15).
        assert!(b.in_backoff_since_at(at(13), at(16)));
        assert!(b.in_backoff_since_at(at(13), at(22)));
        assert_eq!(b.remaining_since_at(at(13), at(16)), Duration::from_secs(7));
        assert!(!b.in_backoff_since_at(at(13), at(23)));
        b.next_at(at(13), at(23));
        assert_eq!(b.delay, Duration::from_secs(20));
        // Doubling up to 5 min.
        for _ in 0..10 {
            b.next_at(at(30), at(30));
        }
        assert_eq!(b.delay, BACKOFF_MAX);
        assert_eq!(go_duration(b.delay), "5m0s");
        // A container that ran for more than twice the maximum after the last step starts over.
        let exit = at(30 + 601);
        assert!(!b.in_backoff_since_at(exit, exit));
        b.next_at(exit, exit);
        assert_eq!(b.delay, BACKOFF_INITIAL);
    }

    #[test]
    fn image_backoff_is_timed_from_the_failure() {
        let mut b = Backoff::default();
        assert!(!b.in_backoff());
        b.next();
        assert!(b.in_backoff());
        assert!(b.remaining() > Duration::from_secs(9));
        b.next();
        assert_eq!(b.delay, Duration::from_secs(20));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
    }

    /// Every stop gives the container at least 2 s between SIGTERM and SIGKILL (upstream's
    /// minimumGracePeriodInSeconds), a grace period of 0 and a preStop hook that used it all
    /// included.
    #[test]
    fn stop_timeout_has_a_minimum_of_two_seconds() {
        assert_eq!(stop_timeout(0, Duration::ZERO), 2);
        assert_eq!(stop_timeout(1, Duration::ZERO), 2);
        assert_eq!(stop_timeout(30, Duration::ZERO), 30);
        assert_eq!(stop_timeout(30, Duration::from_millis(4500)), 26);
        assert_eq!(stop_timeout(5, Duration::from_secs(7)), 2);
    }

    fn pod(spec_grace: Option<i64>, deletion_grace: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                deletion_grace_period_seconds: deletion_grace,
                ..Default::default()
            },
            spec: Some(PodSpec {
                termination_grace_period_seconds: spec_grace,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Upstream's calculateEffectiveGracePeriod: the deletion's grace period, which can only get
    /// shorter, at least 1 s; the spec's without one; 1 s for a pod gone from the API.
    #[test]
    fn the_grace_period_can_only_get_shorter() {
        assert_eq!(
            effective_grace(None, &pod(Some(120), Some(120)), false),
            120
        );
        assert_eq!(effective_grace(None, &pod(Some(120), None), false), 120);
        assert_eq!(effective_grace(None, &pod(None, None), false), 30);
        assert_eq!(effective_grace(None, &pod(Some(120), Some(0)), false), 1);
        assert_eq!(
            effective_grace(Some(120), &pod(Some(120), Some(1)), false),
            1
        );
        assert_eq!(
            effective_grace(Some(5), &pod(Some(120), Some(60)), false),
            5
        );
        assert_eq!(
            effective_grace(Some(120), &pod(Some(120), Some(120)), true),
            1
        );
    }

    /// The watch on a terminating pod resolves when a second delete shortens its grace period,
    /// or when the pod is removed from the API, and not for other changes.
    #[tokio::test]
    async fn a_shorter_grace_period_interrupts_the_kill() {
        let (tx, rx) = watch::channel(Some(pod(Some(120), Some(120))));
        let mut waiting = Box::pin(shorter_grace(rx.clone(), 120));
        fn pending<F: std::future::Future<Output = ()>>(w: &mut std::pin::Pin<Box<F>>) -> bool {
            futures::FutureExt::now_or_never(w.as_mut()).is_none()
        }
        assert!(pending(&mut waiting));
        tx.send(Some(pod(Some(120), Some(120)))).unwrap();
        assert!(pending(&mut waiting));
        tx.send(Some(pod(Some(120), Some(1)))).unwrap();
        assert!(!pending(&mut waiting));

        let mut waiting = Box::pin(shorter_grace(rx.clone(), 120));
        assert!(
            !pending(&mut waiting),
            "the latest value is already shorter"
        );
        let mut waiting = Box::pin(shorter_grace(rx.clone(), 1));
        assert!(pending(&mut waiting));
        tx.send(None).unwrap();
        assert!(
            pending(&mut waiting),
            "gone, but 1 s is as short as it gets"
        );
        let mut waiting = Box::pin(shorter_grace(rx, 30));
        assert!(!pending(&mut waiting));
    }
}
