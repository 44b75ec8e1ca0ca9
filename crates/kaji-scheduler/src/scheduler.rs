//! The scheduler's main loop (upstream `scheduleOne`): pop the highest-priority pending pod,
//! run a cycle against the cache, assume the pod on the chosen node and bind it in the
//! background; on failure try preemption, record `FailedScheduling` and the PodScheduled=False
//! condition, and park the pod until an event could help.

use crate::cache::{Cache, PodInfo};
use crate::events::Recorder;
use crate::framework::fit_error_message;
use crate::informers::{self, Listers};
use crate::preemption::{Candidate, preempt};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::schedule_one::{Algorithm, ScheduleError};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Bindings in flight at once (back-pressure for bursts).
const MAX_CONCURRENT_BINDS: usize = 64;

pub struct Scheduler {
    client: kube::Client,
    pub cache: Arc<Mutex<Cache>>,
    pub queue: Arc<SchedulingQueue>,
    algorithm: Algorithm,
    listers: Listers,
    recorder: Recorder,
    binds: Arc<Semaphore>,
}

/// What a cycle decided, for the I/O that follows it.
enum Decision {
    Bind(String),
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
    /// Watches the cluster and schedules until dropped.
    pub async fn run(client: kube::Client, opts: crate::Options) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let cache = Arc::new(Mutex::new(Cache::default()));
        let queue = Arc::new(SchedulingQueue::default());
        let listers = informers::start_listers(&client, &mut tasks);
        let mut synced = informers::start_watches(
            &client,
            listers.clone(),
            cache.clone(),
            queue.clone(),
            &mut tasks,
        );
        synced.wait_for(|n| *n >= 2).await?;
        tracing::info!("scheduler caches synced");
        let (recorder, events) = Recorder::start(client.clone(), &opts.identity);
        let mut algorithm = Algorithm::new(crate::plugins::default_framework());
        algorithm.percentage_of_nodes_to_score = opts.percentage_of_nodes_to_score;
        let mut s = Scheduler {
            client,
            cache,
            queue,
            algorithm,
            listers,
            recorder,
            binds: Arc::new(Semaphore::new(MAX_CONCURRENT_BINDS)),
        };
        loop {
            let p = s.queue.pop().await;
            s.schedule_one(p).await;
            if tasks.try_join_next().is_some() || events.is_finished() {
                anyhow::bail!("a scheduler watch ended");
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
            Ok(node) => Some(Decision::Bind(node)),
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
            Decision::Bind(node) => {
                lock(&self.cache).assume_pod(p.info.clone(), &node);
                self.queue.done(&p.info.uid);
                let Ok(permit) = self.binds.clone().acquire_owned().await else {
                    return;
                };
                let (client, cache, queue, recorder) = (
                    self.client.clone(),
                    self.cache.clone(),
                    self.queue.clone(),
                    self.recorder.clone(),
                );
                tokio::spawn(async move {
                    bind(client, &cache, &queue, &recorder, &p, &node).await;
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
                tokio::spawn(async move {
                    record_failure(client, &recorder, &p.info, &message, nominate).await;
                });
            }
        }
    }
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
        Ok(_) => recorder.pod_event(
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
                recorder.pod_event(
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
    recorder.pod_event(
        pod,
        "Warning",
        "FailedScheduling",
        "Scheduling",
        message.to_string(),
    );
    if let Some(c) = nominate {
        for v in &c.victims {
            let vapi: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
            recorder.pod_event(
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
