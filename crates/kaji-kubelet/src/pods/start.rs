//! Starting containers, as upstream's startContainer (kuberuntime_container.go): the image
//! pull, the config (environment with service links, mounts, the managed /etc/hosts), create and
//! start, the postStart hook, then the probes; each failure becomes the container's waiting
//! reason. Restarts go through the crash-loop back-off [`compute_pod_actions`] decided.
//!
//! [`compute_pod_actions`]: super::actions::compute_pod_actions

use super::actions::{ContainerAction, RuntimePod, grace_period};
use super::backoff::{Backoff, go_duration};
use super::container::{self, ContainerInputs};
use super::env::{self, EnvSources};
use super::events::{NORMAL, WARNING};
use super::probe::{self, Kind, ProbeTask};
use super::worker::{PodWorker, field_path};
use crate::cri::{self, api};
use crate::status::Waiting;
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kube::api::{Api, ListParams};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Where containers of one sync start: the pod, its ready sandbox and the pod's IP.
pub struct Start<'a> {
    pub pod: &'a Pod,
    pub sandbox_id: &'a str,
    pub sandbox_config: &'a api::PodSandboxConfig,
    pub pod_ip: &'a str,
}

impl PodWorker {
    /// Starts a container (`Start`), restarts it after moving its back-off on (`Restart`), or
    /// reports it waiting in CrashLoopBackOff (`BackOff`). Returns when to sync again.
    pub(super) async fn start_again(
        &mut self,
        at: &Start<'_>,
        rt: &RuntimePod,
        c: &Container,
        action: &ContainerAction,
        init: bool,
    ) -> Duration {
        match action {
            ContainerAction::Restart { finished } => {
                self.crash_backoff
                    .entry(c.name.clone())
                    .or_default()
                    .next_at(*finished, SystemTime::now());
                self.start(at, rt, c, init).await
            }
            ContainerAction::BackOff { delay, remaining } => {
                self.back_off(at.pod, c, *delay, init);
                *remaining + Duration::from_millis(50)
            }
            _ => self.start(at, rt, c, init).await,
        }
    }

    /// A container waiting out its crash-loop back-off: CrashLoopBackOff, with a BackOff event
    /// when it starts waiting.
    fn back_off(&mut self, pod: &Pod, c: &Container, delay: Duration, init: bool) {
        let who = format!(
            "{}_{}({})",
            pod.metadata.name.clone().unwrap_or_default(),
            pod.metadata.namespace.clone().unwrap_or_default(),
            self.uid
        );
        let message = format!(
            "back-off {} restarting failed container={} pod={who}",
            go_duration(delay),
            c.name,
        );
        if self.waiting.get(&c.name).map(|w| w.reason.as_str()) != Some("CrashLoopBackOff") {
            self.shared.recorder.pod(
                pod,
                Some(field_path(c, init)),
                WARNING,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {who}",
                    c.name
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
    }

    /// Pulls, creates and starts one container; failures become its waiting reason.
    async fn start(
        &mut self,
        at: &Start<'_>,
        rt: &RuntimePod,
        c: &Container,
        init: bool,
    ) -> Duration {
        let (pod, pod_ip) = (at.pod, at.pod_ip);
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
            me.failed(pod, c, &fp, "CreateContainerConfigError", message);
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
        let image = self.shared.cri.clone().image_status(&image_ref).await;
        let (image_uid, image_user) = match image {
            Ok(Some(i)) => (i.uid.map(|u| u.value), i.username),
            _ => (None, String::new()),
        };
        if let Err(m) = super::security::verify_run_as_non_root(pod, c, image_uid, &image_user) {
            return config_error(self, m);
        }
        let volumes = self.volumes.clone().unwrap_or_default();
        let hosts = self.hosts_file_path();
        let termination_log = match self.termination_log(c, attempt) {
            Ok(p) => p,
            Err(e) => return config_error(self, format!("create termination-log file: {e}")),
        };
        let config = match container::container_config(
            pod,
            c,
            ContainerInputs {
                image_ref: &image_ref,
                env,
                volumes: &volumes,
                hosts_file: Some(&hosts),
                termination_log: termination_log.as_deref(),
                attempt,
            },
        ) {
            Ok(cfg) => cfg,
            Err(m) => {
                remove_file(termination_log.as_deref());
                return config_error(self, m);
            }
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let _ = std::fs::create_dir_all(self.shared.log_dir(&ns, &name, &self.uid).join(&c.name));
        let mut cri = self.shared.cri.clone();
        let id = match cri
            .create_container(at.sandbox_id, config, at.sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                remove_file(termination_log.as_deref());
                self.failed(pod, c, &fp, "CreateContainerError", format!("{e:#}"));
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
            self.failed(pod, c, &fp, "RunContainerError", format!("{e:#}"));
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
        if !init || super::actions::is_sidecar(c) {
            self.start_probes(pod, c, &id, pod_ip);
        }
        Duration::from_secs(10)
    }

    /// A fresh, empty, world-writable file for the container's termination message (upstream:
    /// `<pod dir>/containers/<name>/<random id>`), none without a terminationMessagePath.
    fn termination_log(
        &self,
        c: &Container,
        attempt: u32,
    ) -> std::io::Result<Option<std::path::PathBuf>> {
        use std::os::unix::fs::PermissionsExt;
        if container::termination_message_path(c).is_empty() {
            return Ok(None);
        }
        let dir = crate::volumes::pod_volumes_dir(&self.shared.agent_dir, &self.uid)
            .join("containers")
            .join(&c.name);
        std::fs::create_dir_all(&dir)?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("{attempt}-{nanos:08x}"));
        std::fs::File::create(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Some(path))
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

    /// A failed step of a start: a Failed event (`Error: <message>`) and the container waiting
    /// with `reason`.
    fn failed(&mut self, pod: &Pod, c: &Container, fp: &str, reason: &str, message: String) {
        self.shared.recorder.pod(
            pod,
            Some(fp.to_string()),
            WARNING,
            "Failed",
            format!("Error: {message}"),
        );
        self.waiting.insert(
            c.name.clone(),
            Waiting {
                reason: reason.into(),
                message,
            },
        );
    }

    pub(super) fn start_probes(&mut self, pod: &Pod, c: &Container, id: &str, pod_ip: &str) {
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
}

/// Removes the termination-log file of a container that was never created.
fn remove_file(path: Option<&std::path::Path>) {
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
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
