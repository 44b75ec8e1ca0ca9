//! Pods on this node: one watch on pods with `spec.nodeName=<node>`, and one worker task per pod
//! (upstream's pod workers) that drives the runtime towards the pod's spec and reports status.
//! - `worker`: the sync loop (observe, decide, act, report); `actions`: the decision, a pure
//!   function (upstream's computePodActions: sandbox, init containers in order, app containers,
//!   restarts with back-off, probe and spec-change kills); `sandbox`, `start`, `kill` and `gc`:
//!   the runtime side of it (sandboxes, starting containers, stopping containers and
//!   terminating pods, garbage); `backoff`: crash-loop and image-pull back-off.
//! - `container`: CRI configs from a pod spec, `pull`: images and pull policies, `probe`:
//!   liveness/readiness/startup probes and hooks, `env`: the environment, `service_env`: the
//!   docker-links service variables, `events`: the event recorder. Requests, limits, cgroup
//!   settings and the QoS class are in `crate::resources`.

pub mod actions;
pub mod backoff;
pub mod container;
pub mod env;
pub mod events;
mod gc;
mod kill;
pub mod probe;
pub mod pull;
mod sandbox;
pub mod security;
pub mod service_env;
mod start;
mod termination;
pub mod worker;

use crate::cri::Cri;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What every pod worker shares: the API client, the runtime, and the node's facts.
pub struct Shared {
    pub client: Client,
    pub cri: Cri,
    pub node_name: String,
    pub node_ip: String,
    /// `<data-dir>/agent`: pod log directories (`pods/`) and volumes (`volumes/`).
    pub agent_dir: PathBuf,
    pub recorder: events::Recorder,
    /// The runtime's name in container IDs (`containerd://...`).
    pub runtime_name: String,
    pub cluster_dns: String,
    pub cluster_domain: String,
    pub node_cpu: String,
    pub node_memory: String,
    /// Image pull back-off, shared by the pods of the node as upstream (key: image).
    pub image_backoff: Mutex<HashMap<String, backoff::Backoff>>,
    /// Service-account tokens of the node's projected volumes.
    pub tokens: crate::token_manager::TokenManager,
}

impl Shared {
    /// The pod's log directory, as upstream's /var/log/pods/<ns>_<name>_<uid>.
    pub fn log_dir(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.agent_dir
            .join("pods")
            .join(format!("{ns}_{name}_{uid}"))
    }
}

type Workers = Arc<Mutex<HashMap<String, watch::Sender<Option<Pod>>>>>;

/// Watches this node's pods and runs a worker for each, until the process ends.
pub async fn run(shared: Arc<Shared>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let workers: Workers = Arc::default();
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    let mut first_list = true;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(pod) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                dispatch(&shared, &workers, pod);
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down, and sandboxes of pods this agent
                // no longer knows (e.g. deleted while it was stopped), are torn down.
                let gone: Vec<(String, watch::Sender<Option<Pod>>)> = {
                    let w = workers.lock().unwrap_or_else(|e| e.into_inner());
                    w.iter()
                        .filter(|(uid, _)| !listed.contains(*uid))
                        .map(|(u, s)| (u.clone(), s.clone()))
                        .collect()
                };
                for (_, tx) in gone {
                    let _ = tx.send(None);
                }
                if first_list {
                    first_list = false;
                    tokio::spawn(worker::remove_orphans(shared.clone(), listed.clone()));
                }
            }
            watcher::Event::Apply(pod) => dispatch(&shared, &workers, pod),
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let tx = workers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&uid)
                    .cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(None);
                }
            }
        }
    }
    Ok(())
}

fn dispatch(shared: &Arc<Shared>, workers: &Workers, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut w = workers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = w.get(&uid) {
        let _ = tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    w.insert(uid.clone(), tx);
    let shared = shared.clone();
    let workers = workers.clone();
    tokio::spawn(async move {
        worker::PodWorker::new(shared, rx).run().await;
        workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
    });
}
