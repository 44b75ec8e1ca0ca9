//! The scheduler's main loop (upstream `scheduleOne`): pop the highest-priority pending pod,
//! run a cycle against the cache, assume the pod on the chosen node and bind it in the
//! background; on failure try preemption, record `FailedScheduling` and the PodScheduled=False
//! condition, and park the pod until an event could help. VolumeBinding reserves the pod's
//! volumes on the chosen node in the cycle and writes them (PreBind) in the binding task,
//! before the pod is bound.

use crate::cache::{Cache, PodInfo};
use crate::framework::fit_error_message;
use crate::informers::{Informers, Listers};
use crate::plugins::volume_binding::{self, PodVolumes, VolumeBinding};
use crate::preemption::{Candidate, preempt};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::schedule_one::{Algorithm, ScheduleError};
use k8s_openapi::api::core::v1::Pod;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::Factory;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Bindings in flight at once (back-pressure for bursts). Upstream binds each pod in its own
/// goroutine, bounded only by the client's QPS; a binding waits for the store's commit, so at
/// 64 the loop stalled on slots at ~520 binds/s (5,000 nodes, 120 ms per binding under load).
/// The failure reports (a pod's PodScheduled condition and event) take slots from the same
/// bound: upstream writes them inline in the scheduling cycle; a task each without a bound let
/// 3,000 unschedulable pods open up to 799 connections at once.
const MAX_CONCURRENT_BINDS: usize = 256;

pub struct Scheduler {
    client: kube::Client,
    pub cache: Arc<Mutex<Cache>>,
    pub queue: Arc<SchedulingQueue>,
    algorithm: Algorithm,
    listers: Listers,
    volume_binding: Arc<VolumeBinding>,
    recorder: Recorder,
    binds: Arc<Semaphore>,
}

/// What a cycle decided, for the I/O that follows it.
enum Decision {
    /// The node, and the volumes to bind first (VolumeBinding's reservation).
    Bind(String, Option<PodVolumes>),
    Fail {
        message: String,
        plugins: Vec<&'static str>,
        nominate: Option<Candidate>,
        error: bool,
    },
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scheduler {
    /// Schedules from the process's informers (registered and started by the caller) until
    /// dropped: builds a fresh cache and queue from them, then runs the loop.
    pub async fn run(
        client: kube::Client,
        opts: crate::Options,
        factory: &Factory,
        informers: &Informers,
    ) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let cache = Arc::new(Mutex::new(Cache::default()));
        let queue = Arc::new(SchedulingQueue::default());
        informers.handle(factory, &cache, &queue, &mut tasks).await;
        tracing::info!("scheduler caches synced");
        let listers = informers.listers.clone();
        let recorder = Recorder::with_source(
            client.clone(),
            crate::informers::SCHEDULER_NAME,
            None,
            &opts.identity,
        );
        let volume_binding = Arc::new(VolumeBinding::new(listers.volume_stores()));
        let mut algorithm = Algorithm::new(crate::plugins::framework_with(volume_binding.clone()));
        algorithm.percentage_of_nodes_to_score = opts.percentage_of_nodes_to_score;
        let mut s = Scheduler {
            client,
            cache,
            queue,
            algorithm,
            listers,
            volume_binding,
            recorder,
            binds: Arc::new(Semaphore::new(MAX_CONCURRENT_BINDS)),
        };
        // Where the loop's time goes, at debug every 10 s: waiting for pods, in cycles, and
        // waiting for a binding slot.
        let (mut waited, mut busy, mut cycles) = (Duration::ZERO, Duration::ZERO, 0u64);
        let mut report = Instant::now();
        loop {
            let t = Instant::now();
            let p = s.queue.pop().await;
            let popped = Instant::now();
            waited += popped - t;
            s.schedule_one(p).await;
            busy += popped.elapsed();
            cycles += 1;
            if report.elapsed() >= Duration::from_secs(10) {
                tracing::debug!(
                    cycles,
                    waiting_ms = waited.as_millis() as u64,
                    scheduling_ms = busy.as_millis() as u64,
                    binds_in_flight = MAX_CONCURRENT_BINDS - s.binds.available_permits(),
                    queued = s.queue.len(),
                    "scheduling loop"
                );
                (waited, busy, cycles, report) =
                    (Duration::ZERO, Duration::ZERO, 0, Instant::now());
            }
            if tasks.try_join_next().is_some() {
                anyhow::bail!("a scheduler event handler ended");
            }
        }
    }

    fn decide(&mut self, p: &QueuedPod) -> Option<Decision> {
        let sel = self.listers.default_spread_selector(&p.info);
        let cache = lock(&self.cache);
        if cache.contains_pod(&p.info.uid) {
            return None; // already bound or assumed
        }
        match self.algorithm.schedule(&cache, &p.info, sel.as_ref()) {
            Ok(node) => {
                let reserved = match cache.node(&node) {
                    Some(info) => self.volume_binding.reserve(&p.info, info),
                    None => Ok(None),
                };
                Some(match reserved {
                    Ok(volumes) => Decision::Bind(node, volumes),
                    Err(e) => Decision::Fail {
                        message: format!("running Reserve plugin {:?}: {e}", volume_binding::NAME),
                        plugins: vec![volume_binding::NAME],
                        nominate: None,
                        error: true,
                    },
                })
            }
            Err(ScheduleError::NoNodes) => Some(Decision::Fail {
                message: "no nodes available to schedule pods".into(),
                plugins: Vec::new(),
                nominate: None,
                error: false,
            }),
            Err(ScheduleError::Unfit(mut diag, state)) => {
                let nominate = match preempt(&self.algorithm, &cache, &state, &p.info, &diag) {
                    Ok(c) => Some(c),
                    Err(msg) => {
                        diag.post_filter_msg = Some(format!("preemption: {msg}"));
                        None
                    }
                };
                Some(Decision::Fail {
                    message: fit_error_message(&diag),
                    plugins: diag.failing_plugins.clone(),
                    nominate,
                    error: false,
                })
            }
        }
    }

    async fn schedule_one(&mut self, p: QueuedPod) {
        let Some(decision) = self.decide(&p) else {
            self.queue.done(&p.info.uid);
            return;
        };
        match decision {
            Decision::Bind(node, volumes) => {
                lock(&self.cache).assume_pod(p.info.clone(), &node);
                self.queue.done(&p.info.uid);
                let Ok(permit) = self.binds.clone().acquire_owned().await else {
                    if let Some(v) = &volumes {
                        self.volume_binding.unreserve(v);
                    }
                    return;
                };
                let b = Binder {
                    client: self.client.clone(),
                    cache: self.cache.clone(),
                    queue: self.queue.clone(),
                    recorder: self.recorder.clone(),
                    volume_binding: self.volume_binding.clone(),
                };
                tokio::spawn(async move {
                    b.bind(&p, &node, volumes).await;
                    drop(permit);
                });
            }
            Decision::Fail {
                message,
                plugins,
                nominate,
                error,
            } => {
                tracing::debug!(pod = %p.info.key(), "unschedulable: {message}");
                self.queue.add_unschedulable(&p, plugins, error);
                let (client, recorder) = (self.client.clone(), self.recorder.clone());
                // Closed only when the scheduler stops: nothing left to report to.
                let Ok(permit) = self.binds.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    record_failure(client, &recorder, &p.info, &message, nominate).await;
                    drop(permit);
                });
            }
        }
    }
}

/// What the binding task of one pod works with.
struct Binder {
    client: kube::Client,
    cache: Arc<Mutex<Cache>>,
    queue: Arc<SchedulingQueue>,
    recorder: Recorder,
    volume_binding: Arc<VolumeBinding>,
}

impl Binder {
    /// Binds the reserved volumes (PreBind), then the pod; if either fails the assumed pod and
    /// volumes are forgotten and the pod is retried after backoff.
    async fn bind(&self, p: &QueuedPod, node: &str, volumes: Option<PodVolumes>) {
        // A pod deleted meanwhile has left the cache (its assumption with it).
        let pod_exists = || lock(&self.cache).contains_pod(&p.info.uid);
        if let Some(mut v) = volumes
            && let Err(e) = self
                .volume_binding
                .bind_pod_volumes(&self.client, &mut v, pod_exists)
                .await
        {
            self.volume_binding.unreserve(&v);
            tracing::warn!(pod = %p.info.key(), "binding volumes on {node} failed: {e}");
            if !pod_exists() {
                return;
            }
            lock(&self.cache).forget_pod(&p.info.uid);
            self.queue.add_after_error(p.info.clone(), p.attempts);
            pod_event(
                &self.recorder,
                &p.info.pod,
                "Warning",
                "FailedScheduling",
                "Scheduling",
                format!("running PreBind plugin {:?}: {e}", volume_binding::NAME),
            );
            return;
        }
        bind(
            self.client.clone(),
            &self.cache,
            &self.queue,
            &self.recorder,
            p,
            node,
        )
        .await;
    }
}

/// Records an event about a pod (never blocks: the recorder writes in the background).
fn pod_event(
    recorder: &Recorder,
    pod: &Pod,
    event_type: &str,
    reason: &str,
    action: &str,
    message: String,
) {
    recorder.event(&reference(pod), event_type, reason, Some(action), &message);
}

/// POSTs pods/binding; if it fails the assumed pod is forgotten and retried after backoff.
async fn bind(
    client: kube::Client,
    cache: &Mutex<Cache>,
    queue: &SchedulingQueue,
    recorder: &Recorder,
    p: &QueuedPod,
    node: &str,
) {
    let pod = &p.info.pod;
    let api: Api<Pod> = Api::namespaced(client, &p.info.namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": p.info.name, "namespace": p.info.namespace, "uid": p.info.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &p.info.name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => pod_event(
            recorder,
            pod,
            "Normal",
            "Scheduled",
            "Binding",
            format!(
                "Successfully assigned {}/{} to {node}",
                p.info.namespace, p.info.name
            ),
        ),
        Err(e) => {
            lock(cache).forget_pod(&p.info.uid);
            let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
            tracing::warn!(pod = %p.info.key(), "binding to {node} failed: {e}");
            if !gone {
                queue.add_after_error(p.info.clone(), p.attempts);
                pod_event(
                    recorder,
                    pod,
                    "Warning",
                    "FailedScheduling",
                    "Scheduling",
                    format!("Binding rejected: {e}"),
                );
            }
        }
    }
}

/// The PodScheduled=False condition (only when it changes), nominatedNodeName and victims
/// for preemption, and the `FailedScheduling` event.
async fn record_failure(
    client: kube::Client,
    recorder: &Recorder,
    info: &PodInfo,
    message: &str,
    nominate: Option<Candidate>,
) {
    let pod = &info.pod;
    let api: Api<Pod> = Api::namespaced(client.clone(), &info.namespace);
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let unchanged = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let mut status = serde_json::Map::new();
    if !unchanged {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        status.insert(
            "conditions".into(),
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}]),
        );
    }
    if let Some(c) = &nominate {
        status.insert("nominatedNodeName".into(), json!(c.node));
    }
    if !status.is_empty()
        && let Err(e) = api
            .patch_status(
                &info.name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": status})),
            )
            .await
    {
        tracing::debug!(pod = %info.key(), "updating PodScheduled condition: {e}");
    }
    pod_event(
        recorder,
        pod,
        "Warning",
        "FailedScheduling",
        "Scheduling",
        message.to_string(),
    );
    if let Some(c) = nominate {
        for v in &c.victims {
            let vapi: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
            pod_event(
                recorder,
                &v.pod,
                "Normal",
                "Preempted",
                "Preempting",
                format!("Preempted by pod {} on node {}", info.uid, c.node),
            );
            if let Err(e) = vapi.delete(&v.name, &DeleteParams::default()).await {
                tracing::warn!(victim = %v.key(), "preempting: {e}");
            }
        }
    }
}
