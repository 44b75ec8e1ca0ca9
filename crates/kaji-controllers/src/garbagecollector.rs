//! The garbage collector, as upstream's (pkg/controller/garbagecollector): a graph of every
//! object's ownerReferences, fed by metadata-only watches over every served resource (found by
//! discovery, refreshed so that CustomResources join), and workers that act on it:
//! - an object whose owners are all gone (dangling: the owner's uid no longer exists, checked with
//!   a live GET) is deleted; this is how background cascading deletion happens;
//! - an owner being deleted with the `foregroundDeletion` finalizer has its dependents deleted
//!   (foreground), and loses the finalizer once no dependent with `blockOwnerDeletion` is left;
//! - an owner being deleted with the `orphan` finalizer has its ownerReference removed from every
//!   dependent, then loses the finalizer;
//! - an object with some live owners and some gone has the gone owners' references removed.

use crate::Options;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kaji_runtime::informer::{Change, Factory};
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, PostParams, Preconditions,
    PropagationPolicy,
};
use kube::core::ObjectMeta;
use kube::discovery::{ApiResource, Discovery, Scope};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FINALIZER_ORPHAN: &str = "orphan";
const FINALIZER_FOREGROUND: &str = "foregroundDeletion";
/// How often discovery runs again to pick up new resources (CustomResourceDefinitions).
const REDISCOVERY: Duration = Duration::from_secs(30);
/// The shortest time between two discoveries woken by an owner of an unknown kind (a custom
/// resource whose CRD is newer than the last discovery).
const REDISCOVERY_ON_MISS: Duration = Duration::from_secs(5);
const WORKERS: usize = 8;

/// One object in the graph.
#[derive(Clone, Debug)]
struct GraphNode {
    resource: Arc<ApiResource>,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl GraphNode {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, GraphNode>,
    /// Owner uid -> dependents' uids (the owner need not be in `nodes`: a "virtual" owner).
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn remove(&mut self, uid: &str) -> Option<GraphNode> {
        let node = self.nodes.remove(uid)?;
        for o in &node.owners {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(node)
    }

    fn insert(&mut self, uid: String, node: GraphNode) {
        self.remove(&uid);
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.nodes.insert(uid, node);
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A deduplicating work queue: an item queued twice is processed once, and an item queued while
/// being processed is processed again afterwards (as client-go's workqueue).
#[derive(Default)]
struct QueueState {
    pending: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
}

struct Collector {
    client: Client,
    factory: Factory,
    graph: Mutex<Graph>,
    queue: Mutex<QueueState>,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    /// (group, kind) -> the resource and whether it is namespaced, for resolving owners.
    kinds: Mutex<HashMap<GroupKind, (Arc<ApiResource>, bool)>>,
    /// Wakes the discovery loop early: an owner's kind was not among `kinds`.
    rediscover: tokio::sync::Notify,
}

/// (group, kind), as an ownerReference names its owner (modulo version).
type GroupKind = (String, String);

/// The collector's loop; its watches come from `f` (typed informers already registered there
/// are shared, other resources get metadata-only informers).
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let factory = f.clone();
    Box::pin(async move {
        let client = factory.client();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let gc = Arc::new(Collector {
            client,
            factory,
            graph: Mutex::new(Graph::default()),
            queue: Mutex::new(QueueState::default()),
            tx,
            kinds: Mutex::new(HashMap::new()),
            rediscover: tokio::sync::Notify::new(),
        });
        tokio::spawn(gc.clone().discovery_loop());
        let workers = Arc::new(tokio::sync::Semaphore::new(WORKERS));
        while let Some(uid) = rx.recv().await {
            let permit = workers.clone().acquire_owned().await?;
            {
                let mut q = gc.queue.lock().expect("gc queue");
                q.pending.remove(&uid);
                q.active.insert(uid.clone());
            }
            let gc = gc.clone();
            tokio::spawn(async move {
                if let Err(e) = gc.attempt(&uid).await {
                    tracing::debug!(uid, error = %e, "garbage collector: will retry");
                    let gc2 = gc.clone();
                    let uid2 = uid.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        gc2.enqueue(&uid2);
                    });
                }
                let again = {
                    let mut q = gc.queue.lock().expect("gc queue");
                    q.active.remove(&uid);
                    q.dirty.remove(&uid)
                };
                if again {
                    gc.enqueue(&uid);
                }
                drop(permit);
            });
        }
        Ok(())
    })
}

fn has_owner_changes(old: Option<&GraphNode>, new: &GraphNode) -> bool {
    let Some(old) = old else { return true };
    let uids = |n: &GraphNode| {
        n.owners
            .iter()
            .map(|o| (o.uid.clone(), o.block_owner_deletion))
            .collect::<Vec<_>>()
    };
    uids(old) != uids(new) || old.deleting != new.deleting || old.finalizers != new.finalizers
}

impl Collector {
    fn enqueue(&self, uid: &str) {
        let mut q = self.queue.lock().expect("gc queue");
        if q.active.contains(uid) {
            q.dirty.insert(uid.to_string());
        } else if q.pending.insert(uid.to_string()) {
            let _ = self.tx.send(uid.to_string());
        }
    }

    /// Runs discovery now and then, and starts a metadata watch for each new resource.
    async fn discovery_loop(self: Arc<Self>) {
        let mut watched: HashSet<String> = HashSet::new();
        loop {
            match Discovery::new(self.client.clone()).run().await {
                Ok(discovery) => {
                    let mut kinds = HashMap::new();
                    for group in discovery.groups() {
                        for (ar, caps) in group.recommended_resources() {
                            let namespaced = caps.scope == Scope::Namespaced;
                            let ar = Arc::new(ar);
                            kinds.insert(
                                (ar.group.clone(), ar.kind.clone()),
                                (ar.clone(), namespaced),
                            );
                            // Events are never owners nor owned in practice; upstream ignores them too.
                            if ar.plural == "events"
                                || !(caps.supports_operation("list")
                                    && caps.supports_operation("watch")
                                    && caps.supports_operation("delete"))
                            {
                                continue;
                            }
                            let key = format!("{}/{}/{}", ar.group, ar.version, ar.plural);
                            if watched.insert(key) {
                                tokio::spawn(self.clone().watch_resource(ar));
                            }
                        }
                    }
                    *self.kinds.lock().expect("gc kinds") = kinds;
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector: discovery"),
            }
            tokio::time::sleep(REDISCOVERY_ON_MISS).await;
            let _ = tokio::time::timeout(
                REDISCOVERY - REDISCOVERY_ON_MISS,
                self.rediscover.notified(),
            )
            .await;
        }
    }

    /// Follows one resource's objects through the process's informer of it (shared with the
    /// controllers that cache that kind), metadata only.
    async fn watch_resource(self: Arc<Self>, ar: Arc<ApiResource>) {
        let mut changes = std::pin::pin!(self.factory.meta_informer(&ar));
        while let Some(change) = changes.next().await {
            match change {
                Change::Applied(meta) => self.observe(&ar, &meta),
                Change::Deleted(meta) => {
                    if let Some(uid) = meta.uid.as_deref() {
                        self.forget(uid);
                    }
                }
            }
        }
    }

    fn observe(&self, ar: &Arc<ApiResource>, meta: &ObjectMeta) {
        let Some(uid) = meta.uid.clone() else { return };
        let node = GraphNode {
            resource: ar.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        };
        let (changed, owners_waiting) = {
            let mut g = self.graph.lock().expect("gc graph");
            let changed = has_owner_changes(g.nodes.get(&uid), &node);
            // A dependent now being deleted may unblock an owner deleting in the foreground.
            // So may a dependent whose references stopped blocking (a cycle broken).
            let owners_waiting: Vec<String> = if node.deleting || changed {
                node.owners
                    .iter()
                    .filter(|o| {
                        g.nodes
                            .get(&o.uid)
                            .is_some_and(|n| n.deleting && n.has_finalizer(FINALIZER_FOREGROUND))
                    })
                    .map(|o| o.uid.clone())
                    .collect()
            } else {
                Vec::new()
            };
            g.insert(uid.clone(), node.clone());
            (changed, owners_waiting)
        };
        if !changed {
            return;
        }
        if !node.owners.is_empty()
            || (node.deleting
                && (node.has_finalizer(FINALIZER_ORPHAN)
                    || node.has_finalizer(FINALIZER_FOREGROUND)))
        {
            self.enqueue(&uid);
        }
        for o in owners_waiting {
            self.enqueue(&o);
        }
    }

    /// An object is gone: its dependents may now be dangling, and an owner waiting for it in the
    /// foreground may now go.
    fn forget(&self, uid: &str) {
        let (dependents, owners) = {
            let mut g = self.graph.lock().expect("gc graph");
            let node = g.remove(uid);
            (
                g.dependents_of(uid),
                node.map(|n| n.owners.into_iter().map(|o| o.uid).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
        };
        for d in dependents.iter().chain(owners.iter()) {
            self.enqueue(d);
        }
    }

    fn api_for(&self, node: &GraphNode) -> Api<DynamicObject> {
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, node.resource.as_ref()),
            None => Api::all_with(self.client.clone(), node.resource.as_ref()),
        }
    }

    /// Upstream attemptToDeleteItem and processDeletingDependentsItem / orphanDependents.
    async fn attempt(&self, uid: &str) -> anyhow::Result<()> {
        let Some(node) = self.graph.lock().expect("gc graph").nodes.get(uid).cloned() else {
            return Ok(());
        };
        if node.deleting {
            if node.has_finalizer(FINALIZER_ORPHAN) {
                return self.orphan_dependents(uid, &node).await;
            }
            if node.has_finalizer(FINALIZER_FOREGROUND) {
                return self.process_deleting_dependents(uid, &node).await;
            }
            return Ok(());
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for owner in &node.owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Solid => solid.push(owner.uid.clone()),
                OwnerState::Dangling => dangling.push(owner.uid.clone()),
                OwnerState::WaitingForDependents => waiting.push(owner.uid.clone()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Some owners live on: only the references to the others go.
            let gone: HashSet<String> = dangling.into_iter().chain(waiting).collect();
            tracing::info!(object = %node.name, kind = %node.resource.kind, "garbage collector: removing references to deleted owners");
            return self
                .update_meta(&node, uid, |m| {
                    if let Some(refs) = m.owner_references.as_mut() {
                        refs.retain(|r| !gone.contains(&r.uid));
                    }
                })
                .await;
        }
        // An owner waits for this object, and a dependent of this object waits for it too: an
        // ownership cycle under foreground deletion. As upstream, this object's references stop
        // blocking their owners before it goes in the foreground, so the cycle unwinds.
        let in_cycle = !waiting.is_empty() && {
            let g = self.graph.lock().expect("gc graph");
            g.dependents_of(uid).iter().any(|d| {
                g.nodes
                    .get(d)
                    .is_some_and(|n| n.deleting && n.has_finalizer(FINALIZER_FOREGROUND))
            })
        };
        if in_cycle {
            tracing::info!(object = %node.name, kind = %node.resource.kind, "garbage collector: an owner and a dependent both wait for this object; making its owner references non-blocking to break the cycle");
            self.update_meta(&node, uid, |m| {
                for r in m.owner_references.iter_mut().flatten() {
                    if r.block_owner_deletion == Some(true) {
                        r.block_owner_deletion = Some(false);
                    }
                }
            })
            .await?;
        }
        // No owner lives: the object goes, in the foreground when an owner waits for it.
        let policy = if !waiting.is_empty()
            && !self
                .graph
                .lock()
                .expect("gc graph")
                .dependents_of(uid)
                .is_empty()
        {
            PropagationPolicy::Foreground
        } else if node.has_finalizer(FINALIZER_ORPHAN) {
            PropagationPolicy::Orphan
        } else if node.has_finalizer(FINALIZER_FOREGROUND) || !waiting.is_empty() {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(object = %node.name, kind = %node.resource.kind, namespace = ?node.namespace, ?policy, "garbage collector: deleting object whose owners are gone");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api_for(&node).delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn owner_state(
        &self,
        dependent: &GraphNode,
        owner: &OwnerReference,
    ) -> anyhow::Result<OwnerState> {
        if let Some(n) = self.graph.lock().expect("gc graph").nodes.get(&owner.uid) {
            return Ok(if n.deleting && n.has_finalizer(FINALIZER_FOREGROUND) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            });
        }
        // Not in the graph: the owner may not be watched yet, so ask the API server.
        let group = owner
            .api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_string();
        let Some((ar, namespaced)) = self
            .kinds
            .lock()
            .expect("gc kinds")
            .get(&(group, owner.kind.clone()))
            .cloned()
        else {
            self.rediscover.notify_one();
            anyhow::bail!(
                "owner kind {} {} is not served (yet)",
                owner.api_version,
                owner.kind
            );
        };
        let api: Api<PartialObjectMeta<DynamicObject>> = match (&dependent.namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, ar.as_ref()),
            (None, true) => return Ok(OwnerState::Dangling), // a cluster-scoped object cannot have a namespaced owner
            (_, false) => Api::all_with(self.client.clone(), ar.as_ref()),
        };
        match api.get_opt(&owner.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                let fg = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FINALIZER_FOREGROUND);
                Ok(if fg {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                })
            }
            _ => Ok(OwnerState::Dangling),
        }
    }

    /// An owner deleted with propagationPolicy Orphan: its dependents lose the reference to it,
    /// then it loses the `orphan` finalizer (and goes).
    async fn orphan_dependents(&self, uid: &str, owner: &GraphNode) -> anyhow::Result<()> {
        let dependents: Vec<(String, GraphNode)> = {
            let g = self.graph.lock().expect("gc graph");
            g.dependents_of(uid)
                .into_iter()
                .filter_map(|d| g.nodes.get(&d).cloned().map(|n| (d, n)))
                .collect()
        };
        for (duid, dep) in dependents {
            self.update_meta(&dep, &duid, |m| {
                if let Some(refs) = m.owner_references.as_mut() {
                    refs.retain(|r| r.uid != uid);
                }
            })
            .await?;
        }
        tracing::info!(object = %owner.name, kind = %owner.resource.kind, "garbage collector: dependents orphaned");
        self.remove_finalizer(owner, uid, FINALIZER_ORPHAN).await
    }

    /// An owner deleted with propagationPolicy Foreground: its dependents are deleted; it loses
    /// the `foregroundDeletion` finalizer once no dependent blocks it.
    async fn process_deleting_dependents(
        &self,
        uid: &str,
        owner: &GraphNode,
    ) -> anyhow::Result<()> {
        let (dependents, blocking) = {
            let g = self.graph.lock().expect("gc graph");
            let deps = g.dependents_of(uid);
            let blocking = deps
                .iter()
                .filter(|d| {
                    g.nodes.get(*d).is_some_and(|n| {
                        n.owners
                            .iter()
                            .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                    })
                })
                .count();
            (deps, blocking)
        };
        if blocking == 0 {
            tracing::info!(object = %owner.name, kind = %owner.resource.kind, "garbage collector: foreground deletion done");
            return self
                .remove_finalizer(owner, uid, FINALIZER_FOREGROUND)
                .await;
        }
        // Dependents deleting in the foreground themselves are not pushed (upstream); a cycle
        // among them is broken in `attempt`.
        let deps_to_push: Vec<String> = {
            let g = self.graph.lock().expect("gc graph");
            dependents
                .into_iter()
                .filter(|d| {
                    !g.nodes
                        .get(d)
                        .is_some_and(|n| n.deleting && n.has_finalizer(FINALIZER_FOREGROUND))
                })
                .collect()
        };
        for d in deps_to_push {
            self.enqueue(&d);
        }
        Ok(())
    }

    async fn remove_finalizer(
        &self,
        node: &GraphNode,
        uid: &str,
        finalizer: &str,
    ) -> anyhow::Result<()> {
        self.update_meta(node, uid, |m| {
            if let Some(f) = m.finalizers.as_mut() {
                f.retain(|x| x != finalizer);
            }
        })
        .await
    }

    /// Read-modify-write of an object's metadata, retried on conflicts; a vanished object is fine.
    async fn update_meta(
        &self,
        node: &GraphNode,
        uid: &str,
        change: impl Fn(&mut ObjectMeta),
    ) -> anyhow::Result<()> {
        let api = self.api_for(node);
        for _ in 0..5 {
            let Some(mut obj) = api.get_opt(&node.name).await? else {
                return Ok(());
            };
            if obj.metadata.uid.as_deref() != Some(uid) {
                return Ok(());
            }
            let before = (
                obj.metadata.owner_references.clone(),
                obj.metadata.finalizers.clone(),
            );
            change(&mut obj.metadata);
            if before
                == (
                    obj.metadata.owner_references.clone(),
                    obj.metadata.finalizers.clone(),
                )
            {
                return Ok(());
            }
            match api.replace(&node.name, &PostParams::default(), &obj).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("conflicts updating {}", node.name)
    }
}

enum OwnerState {
    Solid,
    Dangling,
    WaitingForDependents,
}
