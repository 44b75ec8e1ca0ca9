//! Stopping containers and pods, as upstream's killContainer and killPodWithSyncResult
//! (kuberuntime_container.go, kuberuntime_manager.go) and the pod worker's termination: the
//! preStop hook within the grace period, then StopContainer with what is left of it (never less
//! than 2 s to SIGKILL); a pod with a deletionTimestamp has every container stopped in
//! parallel, its sandbox, volumes and logs removed, and is then deleted from the API with grace
//! 0. A later delete with a shorter grace period interrupts the kill and kills again with it.

use super::actions::{RuntimePod, grace_period};
use super::events::{NORMAL, WARNING};
use super::probe;
use super::worker::{PodWorker, field_path};
use crate::cri::api;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

impl PodWorker {
    /// Runs the preStop hook, then stops the container with the remaining grace period.
    pub(super) async fn kill_container(
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
    pub(super) async fn stop_everything(&mut self, pod: &Pod, rt: &RuntimePod, grace: i64) {
        let pod_ip = rt.pod_ip.clone().unwrap_or_default();
        let running: Vec<(Container, String)> = rt
            .containers
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .filter_map(|rc| {
                let name = rc.metadata.as_ref()?.name.clone();
                let spec = crate::resources::find_container(pod, &name)
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

    /// Stops and removes everything of the pod, then (if it still exists) deletes it from the API.
    pub(super) async fn terminate(&mut self, gone: bool) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
