//! Watches that keep the cache and the queue current (upstream `eventhandlers.go`): bound pods
//! go to the cache, pending pods of `default-scheduler` to the queue, and each change moves the
//! unschedulable pods it could help. Services, ReplicaSets and StatefulSets are mirrored for
//! default spreading, PriorityClasses for pods whose priority admission did not fill in, and
//! PersistentVolumeClaims, PersistentVolumes and StorageClasses for VolumeBinding (any of them
//! added or changed retries the pods it rejected).

use crate::cache::{Cache, PodInfo};
use crate::plugins::volume_binding::{self, VolumeStores};
use crate::queue::SchedulingQueue;
use crate::selector::Selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Plugins whose rejections a freed resource could undo.
const ON_POD_DELETE: &[&str] = &[
    "NodeResourcesFit",
    "NodePorts",
    "InterPodAffinity",
    "PodTopologySpread",
];
/// Plugins whose rejections a newly placed pod could undo.
const ON_POD_ADD: &[&str] = &["InterPodAffinity", "PodTopologySpread"];
/// Plugins whose rejections a claim, volume or class added or changed could undo.
const ON_VOLUME_CHANGE: &[&str] = &[volume_binding::NAME];

/// Mirrors of the objects plugins look up besides nodes and pods.
#[derive(Clone)]
pub struct Listers {
    pub services: Store<Service>,
    pub replicasets: Store<ReplicaSet>,
    pub statefulsets: Store<StatefulSet>,
    pub priority_classes: Store<PriorityClass>,
    pub pvcs: Store<PersistentVolumeClaim>,
    pub pvs: Store<PersistentVolume>,
    pub storage_classes: Store<StorageClass>,
}

impl Listers {
    pub fn volume_stores(&self) -> VolumeStores {
        VolumeStores {
            claims: self.pvcs.clone(),
            volumes: self.pvs.clone(),
            classes: self.storage_classes.clone(),
        }
    }

    /// Waits until the volume mirrors have listed everything, so that VolumeBinding never
    /// takes a claim for missing because its watch is late.
    pub async fn volumes_synced(&self) -> anyhow::Result<()> {
        self.pvcs.wait_until_ready().await?;
        self.pvs.wait_until_ready().await?;
        self.storage_classes.wait_until_ready().await?;
        Ok(())
    }

    /// The selector of the pod's "group" for default spreading: its Services' selectors and its
    /// ReplicaSets'/StatefulSets' selectors, ANDed (upstream `helper.DefaultSelector`).
    pub fn default_spread_selector(&self, pod: &PodInfo) -> Option<Selector> {
        let mut sel: Option<Selector> = None;
        let mut add = |s: Selector| match sel.as_mut() {
            Some(cur) => cur.merge(&s),
            None => sel = Some(s),
        };
        for svc in self.services.state() {
            if svc.metadata.namespace.as_deref() != Some(&pod.namespace) {
                continue;
            }
            if let Some(m) = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .filter(|m| !m.is_empty())
            {
                let s = Selector::from_map(m);
                if s.matches(&pod.labels) {
                    add(s);
                }
            }
        }
        for (ns, s) in self
            .replicasets
            .state()
            .iter()
            .map(|r| {
                (
                    r.metadata.namespace.clone(),
                    r.spec.as_ref().map(|s| s.selector.clone()),
                )
            })
            .chain(self.statefulsets.state().iter().map(|r| {
                (
                    r.metadata.namespace.clone(),
                    r.spec.as_ref().map(|s| s.selector.clone()),
                )
            }))
        {
            if ns.as_deref() != Some(&pod.namespace) {
                continue;
            }
            let s = Selector::new(s.as_ref());
            if s.matches(&pod.labels) {
                add(s);
            }
        }
        sel
    }

    pub fn priority(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        let class = spec
            .and_then(|s| s.priority_class_name.as_deref())
            .unwrap_or("");
        self.priority_classes
            .state()
            .iter()
            .find(|pc| pc.metadata.name.as_deref() == Some(class))
            .map_or(0, |pc| pc.value)
    }
}

fn mirror<K>(api: Api<K>, tasks: &mut tokio::task::JoinSet<()>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    mirror_then(api, tasks, || {})
}

/// A mirror that calls `changed` once an object is added or updated (or the list is done),
/// after the store has it.
fn mirror_then<K>(
    api: Api<K>,
    tasks: &mut tokio::task::JoinSet<()>,
    changed: impl Fn() + Send + Sync + 'static,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tasks.spawn(async move {
        stream
            .for_each(|ev| {
                if matches!(ev, Ok(watcher::Event::Apply(_) | watcher::Event::InitDone)) {
                    changed();
                }
                async {}
            })
            .await;
    });
    reader
}

pub fn start_listers(
    client: &kube::Client,
    queue: &Arc<SchedulingQueue>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Listers {
    let on_volumes = || {
        let q = queue.clone();
        move || q.move_all(Some(ON_VOLUME_CHANGE))
    };
    Listers {
        services: mirror(Api::all(client.clone()), tasks),
        replicasets: mirror(Api::all(client.clone()), tasks),
        statefulsets: mirror(Api::all(client.clone()), tasks),
        priority_classes: mirror(Api::all(client.clone()), tasks),
        pvcs: mirror_then(Api::all(client.clone()), tasks, on_volumes()),
        pvs: mirror_then(Api::all(client.clone()), tasks, on_volumes()),
        storage_classes: mirror_then(Api::all(client.clone()), tasks, on_volumes()),
    }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a node change could make a pod fit that did not before.
fn node_changed(old: &Node, new: &Node) -> bool {
    let st = |n: &Node| {
        n.status
            .as_ref()
            .map(|s| (s.allocatable.clone(), s.images.as_ref().map(Vec::len)))
    };
    old.metadata.labels != new.metadata.labels || old.spec != new.spec || st(old) != st(new)
}

/// Applies one pod as the API server reports it.
pub fn on_pod(pod: Pod, listers: &Listers, cache: &Mutex<Cache>, queue: &SchedulingQueue) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let terminal = matches!(phase, Some("Succeeded" | "Failed"));
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let priority = listers.priority(&pod);
    match node {
        Some(node) => {
            queue.delete(&uid);
            if terminal {
                if lock(cache).remove_pod(&uid).is_some() {
                    queue.move_all(Some(ON_POD_DELETE));
                }
            } else {
                let info = Arc::new(PodInfo::new(Arc::new(pod), priority));
                let mut c = lock(cache);
                let fresh = !c.contains_pod(&uid) || c.is_assumed(&uid);
                c.add_bound_pod(info, &node);
                drop(c);
                if fresh {
                    queue.move_all(Some(ON_POD_ADD));
                }
            }
        }
        None => {
            let ours = pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduler_name.as_deref())
                .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
            if !ours || terminal || pod.metadata.deletion_timestamp.is_some() {
                queue.delete(&uid);
            } else if !lock(cache).is_assumed(&uid) {
                queue.add(Arc::new(PodInfo::new(Arc::new(pod), priority)));
            }
        }
    }
}

pub fn on_pod_delete(pod: &Pod, cache: &Mutex<Cache>, queue: &SchedulingQueue) {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    queue.delete(uid);
    if lock(cache).remove_pod(uid).is_some() {
        queue.move_all(Some(ON_POD_DELETE));
    }
}

pub fn on_node(node: Node, cache: &Mutex<Cache>, queue: &SchedulingQueue) {
    let new = Arc::new(node);
    let old = lock(cache).set_node(new.clone());
    if old.is_none_or(|o| node_changed(&o, &new)) {
        queue.move_all(None);
    }
}

/// Runs the pod and node watches; `synced` turns true once both have listed everything.
pub fn start_watches(
    client: &kube::Client,
    listers: Listers,
    cache: Arc<Mutex<Cache>>,
    queue: Arc<SchedulingQueue>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> watch::Receiver<u8> {
    let (synced_tx, synced_rx) = watch::channel(0u8);
    let synced_tx = Arc::new(synced_tx);
    let pods =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff();
    let (c, q, s) = (cache.clone(), queue.clone(), synced_tx.clone());
    tasks.spawn(async move {
        let mut pods = std::pin::pin!(pods);
        let mut first = true;
        while let Some(ev) = pods.next().await {
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    on_pod(p, &listers, &c, &q)
                }
                Ok(watcher::Event::Delete(p)) => on_pod_delete(&p, &c, &q),
                Ok(watcher::Event::InitDone) if first => {
                    first = false;
                    s.send_modify(|n| *n += 1);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("watching pods: {e}"),
            }
        }
    });
    let nodes =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff();
    tasks.spawn(async move {
        let mut nodes = std::pin::pin!(nodes);
        let mut first = true;
        while let Some(ev) = nodes.next().await {
            match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                    on_node(n, &cache, &queue)
                }
                Ok(watcher::Event::Delete(n)) => {
                    lock(&cache).remove_node(n.metadata.name.as_deref().unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) if first => {
                    first = false;
                    synced_tx.send_modify(|n| *n += 1);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("watching nodes: {e}"),
            }
        }
    });
    synced_rx
}
