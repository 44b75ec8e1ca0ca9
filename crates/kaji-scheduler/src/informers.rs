//! The event handlers that keep the cache and the queue current (upstream `eventhandlers.go`),
//! on the process's shared informers (`kaji_runtime::informer`): bound pods go to the cache,
//! pending pods of `default-scheduler` to the queue, and each change moves the unschedulable pods
//! it could help. Services, ReplicaSets and StatefulSets are read for default spreading,
//! PriorityClasses for pods whose priority admission did not fill in, and
//! PersistentVolumeClaims, PersistentVolumes and StorageClasses for VolumeBinding (any of them
//! added or changed retries the pods it rejected).
//!
//! As upstream, the informers are started once for the process, before leader election, so a
//! standby scheduler's caches are warm; each term of leadership builds its cache and queue from
//! them ([`Informers::handle`]).

use crate::cache::{Cache, PodInfo};
use crate::plugins::volume_binding::{self, VolumeStores};
use crate::queue::SchedulingQueue;
use crate::selector::Selector;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kaji_runtime::informer::{Change, Factory, Informer};
use kube::runtime::reflector::ObjectRef;
use std::sync::{Arc, Mutex};

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

/// The scheduler's informers, one per kind, registered on the process's factory.
#[derive(Clone)]
pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub listers: Listers,
}

/// The informers plugins look up besides nodes and pods.
#[derive(Clone)]
pub struct Listers {
    pub services: Arc<Informer<Service>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub priority_classes: Arc<Informer<PriorityClass>>,
    pub pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pub pvs: Arc<Informer<PersistentVolume>>,
    pub storage_classes: Arc<Informer<StorageClass>>,
}

impl Informers {
    /// Registers every informer the scheduler reads (no I/O; the caller starts the factory).
    pub fn register(factory: &Factory) -> Informers {
        Informers {
            pods: factory.informer(),
            nodes: factory.informer(),
            listers: Listers {
                services: factory.informer(),
                replicasets: factory.informer(),
                statefulsets: factory.informer(),
                priority_classes: factory.informer(),
                pvcs: factory.informer(),
                pvs: factory.informer(),
                storage_classes: factory.informer(),
            },
        }
    }

    /// Feeds `cache` and `queue` from the informers: spawns the event handlers into `tasks`,
    /// waits until every informer has its first list, then applies the whole cache once more
    /// (the handlers may still be working through the first list; applying an object twice does
    /// nothing), so that scheduling starts from a complete cache (upstream `WaitForCacheSync`).
    pub async fn handle(
        &self,
        factory: &Factory,
        cache: &Arc<Mutex<Cache>>,
        queue: &Arc<SchedulingQueue>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let (c, q, l) = (cache.clone(), queue.clone(), self.listers.clone());
        tasks.spawn(each(self.pods.subscribe(), move |change| match change {
            Change::Applied(p) => on_pod(p, &l, &c, &q),
            Change::Deleted(p) => on_pod_delete(&p, &c, &q),
        }));
        let (c, q) = (cache.clone(), queue.clone());
        tasks.spawn(each(self.nodes.subscribe(), move |change| match change {
            Change::Applied(n) => on_node(n, &c, &q),
            Change::Deleted(n) => {
                lock(&c).remove_node(n.metadata.name.as_deref().unwrap_or_default())
            }
        }));
        let l = &self.listers;
        tasks.spawn(each(l.pvcs.subscribe(), on_volume_change(queue.clone())));
        tasks.spawn(each(l.pvs.subscribe(), on_volume_change(queue.clone())));
        tasks.spawn(each(
            l.storage_classes.subscribe(),
            on_volume_change(queue.clone()),
        ));
        factory.synced().await;
        for n in self.nodes.state() {
            on_node(n, cache, queue);
        }
        for p in self.pods.state() {
            on_pod(p, &self.listers, cache, queue);
        }
    }
}

/// A claim, volume or class added or changed retries the pods VolumeBinding rejected.
fn on_volume_change<K>(queue: Arc<SchedulingQueue>) -> impl FnMut(Change<K>) {
    move |change| {
        if matches!(change, Change::Applied(_)) {
            queue.move_all(Some(ON_VOLUME_CHANGE));
        }
    }
}

/// Runs `f` on every change of a subscription.
async fn each<K>(changes: impl Stream<Item = Change<K>>, mut f: impl FnMut(Change<K>)) {
    let mut changes = std::pin::pin!(changes);
    while let Some(c) = changes.next().await {
        f(c);
    }
}

impl Listers {
    pub fn volume_stores(&self) -> VolumeStores {
        VolumeStores {
            claims: self.pvcs.store(),
            volumes: self.pvs.store(),
            classes: self.storage_classes.store(),
        }
    }

    /// The selector of the pod's "group" for default spreading: its Services' selectors and its
    /// ReplicaSets'/StatefulSets' selectors, ANDed (upstream `helper.DefaultSelector`).
    pub fn default_spread_selector(&self, pod: &PodInfo) -> Option<Selector> {
        let mut sel: Option<Selector> = None;
        let mut add = |s: Selector| match sel.as_mut() {
            Some(cur) => cur.merge(&s),
            None => sel = Some(s),
        };
        for svc in self.services.in_namespace(&pod.namespace) {
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
        let replicasets = self.replicasets.in_namespace(&pod.namespace);
        let statefulsets = self.statefulsets.in_namespace(&pod.namespace);
        for s in replicasets
            .iter()
            .map(|r| r.spec.as_ref().map(|s| &s.selector))
            .chain(
                statefulsets
                    .iter()
                    .map(|r| r.spec.as_ref().map(|s| &s.selector)),
            )
        {
            let s = Selector::new(s);
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
            .get(&ObjectRef::new(class))
            .map_or(0, |pc| pc.value)
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
pub fn on_pod(pod: Arc<Pod>, listers: &Listers, cache: &Mutex<Cache>, queue: &SchedulingQueue) {
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
                let info = Arc::new(PodInfo::new(pod, priority));
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
                queue.add(Arc::new(PodInfo::new(pod, priority)));
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

pub fn on_node(new: Arc<Node>, cache: &Mutex<Cache>, queue: &SchedulingQueue) {
    let old = lock(cache).set_node(new.clone());
    if old.is_none_or(|o| node_changed(&o, &new)) {
        queue.move_all(None);
    }
}
