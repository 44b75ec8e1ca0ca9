//! Shared informers, as client-go's `SharedInformerFactory`: one watch and one cache per kind
//! (and per label/field selector) for a whole process, whatever number of controllers read it.
//!
//! - [`Factory::informer`] registers an informer (no I/O); [`Factory::start`] starts every
//!   registered watch once; informers asked for after `start` start at once.
//! - Cached objects carry no `managedFields` (nothing in a spoke reads them, and they are often
//!   half of an object's size).
//! - Every change is sent to the subscribers after the cache holds it, deletions included; a
//!   re-list (after a watch expired) reports what vanished meanwhile as deleted.
//! - Indexes by namespace, by owner UID and by node name (pods' `spec.nodeName`) answer the
//!   questions controllers used to answer by scanning the whole cache.
//! - [`Factory::meta_informer`] serves the garbage collector a metadata view of any resource:
//!   the typed informer's when the process has one, else a metadata-only watch of its own.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::core::ObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{Lookup, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

/// One change of the cache, sent after the cache holds it.
#[derive(Debug)]
pub enum Change<K> {
    Applied(Arc<K>),
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
    pub fn into_object(self) -> Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
        }
    }
}

/// What a kind needs to be cached by an informer.
pub trait Cached: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static
where
    Self::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
}

impl<K> Cached for K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
}

/// The index keys of one object.
#[derive(Default, Clone)]
struct Keys {
    namespace: String,
    owners: Vec<String>,
    node: Option<String>,
}

struct Indexes<K: Resource>
where
    K::DynamicType: Eq + Hash,
{
    keys: HashMap<SharedRef<K>, Keys>,
    by_namespace: HashMap<String, HashSet<SharedRef<K>>>,
    by_owner: HashMap<String, HashSet<SharedRef<K>>>,
    by_node: HashMap<String, HashSet<SharedRef<K>>>,
}

/// One reference to an object, shared by every index that holds it: an `ObjectRef` is four
/// strings (name, namespace, resourceVersion, UID), and a pod is in up to four of these maps
/// (6 MiB of the API server's heap with 10,000 pods cached, when each held its own copy).
type SharedRef<K> = Arc<ObjectRef<K>>;

impl<K: Resource> Default for Indexes<K>
where
    K::DynamicType: Eq + Hash,
{
    fn default() -> Self {
        Indexes {
            keys: HashMap::new(),
            by_namespace: HashMap::new(),
            by_owner: HashMap::new(),
            by_node: HashMap::new(),
        }
    }
}

fn unindex<K: Resource>(
    map: &mut HashMap<String, HashSet<SharedRef<K>>>,
    key: &str,
    r: &ObjectRef<K>,
) where
    K::DynamicType: Eq + Hash,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(r);
        if set.is_empty() {
            map.remove(key);
        } else if sparse(set.len(), set.capacity()) {
            set.shrink_to(set.len() * 2);
        }
    }
}

/// Whether a map or set that many deletes left at a quarter of its capacity (and is not small)
/// should give the rest back: after a burst of thousands of pods is deleted, the indexes would
/// otherwise keep their tables at the burst's size. Shrinking to twice the length keeps it
/// amortized.
fn sparse(len: usize, capacity: usize) -> bool {
    capacity > 256 && len < capacity / 4
}

impl<K: Resource + 'static> Indexes<K>
where
    K::DynamicType: Clone + Eq + Hash,
{
    fn keys_of(obj: &K) -> Keys {
        Keys {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            owners: {
                let refs = obj.meta().owner_references.iter().flatten();
                let mut owners: Vec<String> = refs.clone().map(|o| o.uid.clone()).collect();
                if !refs.clone().any(|o| o.controller == Some(true)) {
                    owners.push(String::new());
                }
                owners
            },
            node: (obj as &dyn Any)
                .downcast_ref::<Pod>()
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .filter(|n| !n.is_empty()),
        }
    }

    fn remove(&mut self, r: &ObjectRef<K>) {
        let Some(k) = self.keys.remove(r) else { return };
        if sparse(self.keys.len(), self.keys.capacity()) {
            self.keys.shrink_to(self.keys.len() * 2);
        }
        unindex(&mut self.by_namespace, &k.namespace, r);
        for o in &k.owners {
            unindex(&mut self.by_owner, o, r);
        }
        if let Some(n) = &k.node {
            unindex(&mut self.by_node, n, r);
        }
    }

    fn insert(&mut self, r: ObjectRef<K>, obj: &K) {
        self.remove(&r);
        let r = Arc::new(r);
        let k = Self::keys_of(obj);
        self.by_namespace
            .entry(k.namespace.clone())
            .or_default()
            .insert(r.clone());
        for o in &k.owners {
            self.by_owner
                .entry(o.clone())
                .or_default()
                .insert(r.clone());
        }
        if let Some(n) = &k.node {
            self.by_node.entry(n.clone()).or_default().insert(r.clone());
        }
        self.keys.insert(r, k);
    }
}

/// The subscribers of one informer.
struct Subscribers<K>(Arc<Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>>);

impl<K> Default for Subscribers<K> {
    fn default() -> Self {
        Subscribers(Arc::default())
    }
}

impl<K> Clone for Subscribers<K> {
    fn clone(&self) -> Self {
        Subscribers(self.0.clone())
    }
}

impl<K> Subscribers<K> {
    fn add(&self, tx: mpsc::UnboundedSender<Change<K>>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx);
    }

    /// Sends `change` to every subscriber still listening (and forgets the others).
    fn send(&self, change: Change<K>) {
        let mut subs = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subs.retain(|tx| tx.send(change.clone()).is_ok());
    }
}

/// What an informer's watch needs, kept until the factory starts it.
type Unstarted<K> = (Api<K>, watcher::Config, Writer<K>);

/// One kind's cache, its indexes and its subscribers.
pub struct Informer<K: Cached>
where
    K::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
    store: Store<K>,
    dyntype: K::DynamicType,
    /// One unbounded channel per subscriber: a slow subscriber costs memory while it catches
    /// up, never a lost change (a deletion included).
    subscribers: Subscribers<K>,
    indexes: Arc<RwLock<Indexes<K>>>,
    /// Whether the first list is in the cache.
    synced: Arc<tokio::sync::watch::Sender<bool>>,
    /// The watch, until it is started.
    pending: Mutex<Option<Unstarted<K>>>,
}

impl<K: Cached> Informer<K>
where
    K::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
    fn new(api: Api<K>, cfg: watcher::Config, dyntype: K::DynamicType) -> Self {
        let writer = Writer::new(dyntype.clone());
        Informer {
            store: writer.as_reader(),
            dyntype,
            subscribers: Subscribers::default(),
            indexes: Arc::default(),
            synced: Arc::new(tokio::sync::watch::channel(false).0),
            pending: Mutex::new(Some((api, cfg, writer))),
        }
    }

    /// Starts the watch on `rt` (once; later calls do nothing).
    fn start(&self, rt: &tokio::runtime::Handle) {
        let Some((api, cfg, mut writer)) = self.pending.lock().ok().and_then(|mut p| p.take())
        else {
            return;
        };
        let tx = self.subscribers.clone();
        let reader = self.store.clone();
        let indexes = self.indexes.clone();
        let synced = self.synced.clone();
        let dyntype = self.dyntype.clone();
        let kind = K::kind(&dyntype).to_string();
        rt.spawn(async move {
            let mut events = watcher(api, cfg)
                .default_backoff()
                .modify(|o: &mut K| o.meta_mut().managed_fields = None)
                .boxed();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(%kind, error = %e, "watch failed; retrying");
                        continue;
                    }
                };
                match &event {
                    watcher::Event::Apply(obj) => {
                        writer.apply_watcher_event(&event);
                        let r = obj.to_object_ref(dyntype.clone());
                        if let Some(cached) = reader.get(&r) {
                            write(&indexes).insert(r, &cached);
                            tx.send(Change::Applied(cached));
                        }
                    }
                    watcher::Event::Delete(obj) => {
                        writer.apply_watcher_event(&event);
                        let r = obj.to_object_ref(dyntype.clone());
                        write(&indexes).remove(&r);
                        tx.send(Change::Deleted(Arc::new(obj.clone())));
                    }
                    watcher::Event::InitDone => {
                        let before = reader.state();
                        writer.apply_watcher_event(&event);
                        let after = reader.state();
                        tracing::debug!(%kind, objects = after.len(), "informer synced");
                        let now: HashSet<ObjectRef<K>> = after
                            .iter()
                            .map(|o| o.to_object_ref(dyntype.clone()))
                            .collect();
                        {
                            let mut ix = write(&indexes);
                            *ix = Indexes::default();
                            for o in &after {
                                ix.insert(o.to_object_ref(dyntype.clone()), o);
                            }
                        }
                        for o in before {
                            if !now.contains(&o.to_object_ref(dyntype.clone())) {
                                tx.send(Change::Deleted(o));
                            }
                        }
                        for o in after {
                            tx.send(Change::Applied(o));
                        }
                        // Ready only once the cache, its indexes and every subscriber's
                        // queue have the list.
                        synced.send_replace(true);
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => {
                        writer.apply_watcher_event(&event);
                    }
                }
            }
        });
    }

    /// The cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list is in the cache. (Not kube-runtime's
    /// `Store::wait_until_ready`: it wakes only the last of several tasks waiting at once.)
    pub async fn ready(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn get(&self, r: &ObjectRef<K>) -> Option<Arc<K>> {
        self.store.get(r)
    }

    pub fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    fn lookup(&self, pick: impl Fn(&Indexes<K>) -> Option<&HashSet<SharedRef<K>>>) -> Vec<Arc<K>> {
        let refs: Vec<SharedRef<K>> = {
            let ix = read(&self.indexes);
            pick(&ix)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        refs.iter().filter_map(|r| self.store.get(r)).collect()
    }

    /// The cached objects of a namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.lookup(|ix| ix.by_namespace.get(namespace))
    }

    /// The cached objects with an ownerReference to `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<K>> {
        self.lookup(|ix| ix.by_owner.get(uid))
    }

    /// The cached objects of a namespace that a controller may claim with the UID `uid`: those
    /// it controls or names as an owner, and those no controller controls (orphans it may
    /// adopt). What another controller controls is left out: a claim ignores it anyway. This
    /// is what upstream's ReplicaSet and Deployment controllers look at, without scanning the
    /// namespace.
    pub fn claimable(&self, namespace: &str, uid: &str) -> Vec<Arc<K>> {
        let mut out = self.owned_by(uid);
        if !uid.is_empty() {
            out.extend(self.owned_by(""));
        }
        let mut seen = HashSet::new();
        out.retain(|o| {
            o.meta().namespace.as_deref().unwrap_or_default() == namespace
                && seen.insert(o.meta().uid.clone())
        });
        out
    }

    /// The cached pods bound to `node`.
    pub fn on_node(&self, node: &str) -> Vec<Arc<K>> {
        self.lookup(|ix| ix.by_node.get(node))
    }

    /// Every change from now on, starting with the whole cache when it is already filled (so a
    /// late subscriber misses nothing).
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static + use<K> {
        // Registered before the cache is read: a change in between comes twice, never not at
        // all, and the live changes (in order) come last.
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.add(tx);
        let replay: Vec<Change<K>> = if self.pending.lock().map(|p| p.is_none()).unwrap_or(true) {
            self.store
                .state()
                .into_iter()
                .map(Change::Applied)
                .collect()
        } else {
            Vec::new()
        };
        let live =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        futures::stream::iter(replay).chain(live)
    }

    /// The objects that changed (applied or deleted), for kube-runtime's
    /// `Controller::for_shared_stream` and `reconcile_on`.
    pub fn objects(&self) -> impl Stream<Item = Arc<K>> + Send + 'static + use<K> {
        self.subscribe().map(Change::into_object)
    }
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The metadata of one object, as the garbage collector sees every resource.
pub type MetaChange = Change<ObjectMeta>;

/// An informer seen through its objects' metadata.
trait Shared: Send + Sync {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn start(&self, rt: &tokio::runtime::Handle);
    fn ready(&self) -> futures::future::BoxFuture<'static, ()>;
    fn meta(&self) -> std::pin::Pin<Box<dyn Stream<Item = MetaChange> + Send>>;
}

impl<K: Cached> Shared for Informer<K>
where
    K::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn start(&self, rt: &tokio::runtime::Handle) {
        Informer::start(self, rt)
    }
    fn ready(&self) -> futures::future::BoxFuture<'static, ()> {
        let mut rx = self.synced.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    }
    fn meta(&self) -> std::pin::Pin<Box<dyn Stream<Item = MetaChange> + Send>> {
        self.subscribe()
            .map(|c| match c {
                Change::Applied(o) => Change::Applied(Arc::new(o.meta().clone())),
                Change::Deleted(o) => Change::Deleted(Arc::new(o.meta().clone())),
            })
            .boxed()
    }
}

/// The informers of one process.
///
/// [`Factory::with_client`] gives another component of the process the same informers with its
/// own client (its identity for the writes it makes through [`Factory::client`]): in `kaji
/// server` the scheduler, the controller manager and the node's spokes share one factory, so
/// every pod is cached once, not once per component.
#[derive(Clone)]
pub struct Factory {
    client: Client,
    inner: Arc<FactoryInner>,
}

struct FactoryInner {
    informers: Mutex<HashMap<String, Arc<dyn Shared>>>,
    started: std::sync::atomic::AtomicBool,
    /// Where the watches run: the runtime the factory was made on, so that a watch started for
    /// a component whose runtime ends (the controller manager's term, after it loses its Lease)
    /// lives on with the factory.
    rt: tokio::runtime::Handle,
}

/// The registry key of a resource with selectors: `group/version/plural?labels&fields`.
fn key(group: &str, version: &str, plural: &str, cfg: &watcher::Config) -> String {
    format!(
        "{group}/{version}/{plural}?{}&{}",
        cfg.label_selector.as_deref().unwrap_or_default(),
        cfg.field_selector.as_deref().unwrap_or_default()
    )
}

impl Factory {
    /// A factory whose watches run on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(client: Client) -> Self {
        Factory {
            client,
            inner: Arc::new(FactoryInner {
                informers: Mutex::new(HashMap::new()),
                started: Default::default(),
                rt: tokio::runtime::Handle::current(),
            }),
        }
    }

    /// The same informers (the same caches and watches), with `client` as this view's client:
    /// what [`Factory::client`] returns, and what watches the informers first asked for here.
    pub fn with_client(&self, client: Client) -> Self {
        Factory {
            client,
            inner: self.inner.clone(),
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The informer of every `K` in the cluster.
    pub fn informer<K>(&self) -> Arc<Informer<K>>
    where
        K: Cached + Resource<DynamicType = ()>,
    {
        self.informer_with(watcher::Config::default())
    }

    /// The informer of the `K`s that `cfg`'s label and field selectors pick.
    pub fn informer_with<K>(&self, cfg: watcher::Config) -> Arc<Informer<K>>
    where
        K: Cached + Resource<DynamicType = ()>,
    {
        let k = key(&K::group(&()), &K::version(&()), &K::plural(&()), &cfg);
        let mut map = self
            .inner
            .informers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = map.get(&k)
            && let Ok(inf) = found.clone().into_any().downcast::<Informer<K>>()
        {
            return inf;
        }
        let inf = Arc::new(Informer::new(Api::<K>::all(self.client()), cfg, ()));
        map.insert(k, inf.clone());
        if self.inner.started.load(std::sync::atomic::Ordering::SeqCst) {
            inf.start(&self.inner.rt);
        }
        inf
    }

    /// The metadata of every object of `resource`: from the process's typed informer of that
    /// resource when there is one, else from a metadata-only watch shared the same way.
    ///
    /// Which informer serves it is decided when the stream is first polled (controllers are
    /// polled after the factory started), not when it is asked for: a typed informer registered
    /// by a controller asked for later then still serves it. Deciding at once let a later typed
    /// informer replace a metadata one that was never started, and its subscribers heard nothing.
    pub fn meta_informer(
        &self,
        resource: &ApiResource,
    ) -> impl Stream<Item = MetaChange> + Send + 'static + use<> {
        let this = self.clone();
        let resource = resource.clone();
        futures::stream::once(async move { this.meta_informer_now(&resource) }).flatten()
    }

    fn meta_informer_now(
        &self,
        resource: &ApiResource,
    ) -> std::pin::Pin<Box<dyn Stream<Item = MetaChange> + Send>> {
        let k = key(
            &resource.group,
            &resource.version,
            &resource.plural,
            &watcher::Config::default(),
        );
        let shared = {
            let mut map = self
                .inner
                .informers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match map.get(&k) {
                Some(s) => s.clone(),
                None => {
                    let api: Api<PartialObjectMeta<DynamicObject>> =
                        Api::all_with(self.client(), resource);
                    let inf: Arc<dyn Shared> = Arc::new(Informer::new(
                        api,
                        watcher::Config::default(),
                        resource.clone(),
                    ));
                    map.insert(k, inf.clone());
                    if self.inner.started.load(std::sync::atomic::Ordering::SeqCst) {
                        inf.start(&self.inner.rt);
                    }
                    inf
                }
            }
        };
        shared.meta()
    }

    /// Every informer registered so far.
    fn all(&self) -> Vec<Arc<dyn Shared>> {
        let map = self
            .inner
            .informers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().cloned().collect()
    }

    /// Waits until every informer registered so far has its first list (client-go's
    /// `WaitForCacheSync`); controllers call it before they start.
    pub async fn synced(&self) {
        futures::future::join_all(self.all().iter().map(|i| i.ready())).await;
    }

    /// Starts every registered informer's watch (once); informers registered later start at
    /// once.
    pub fn start(&self) {
        self.inner
            .started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for i in self.all() {
            i.start(&self.inner.rt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn client() -> Client {
        Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap()
    }

    #[tokio::test]
    async fn one_informer_per_kind_and_selector() {
        let f = Factory::new(client());
        let a = f.informer::<Pod>();
        let b = f.informer::<Pod>();
        assert!(Arc::ptr_eq(&a, &b), "the same kind gives the same informer");
        let _n = f.informer::<Node>();
        assert!(Arc::ptr_eq(&a, &f.informer::<Pod>()));
        let sel = f.informer_with::<Pod>(watcher::Config::default().labels("app=x"));
        assert!(
            !Arc::ptr_eq(&a, &sel),
            "another selector is another informer"
        );
        assert_eq!(f.inner.informers.lock().unwrap().len(), 3);
    }

    #[test]
    fn indexes_give_memory_back_after_mass_deletes() {
        let mut ix = Indexes::<Pod>::default();
        let pod = |i: usize| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("p-{i}"), "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": []},
            }))
            .unwrap()
        };
        for i in 0..3000 {
            let p = pod(i);
            ix.insert(ObjectRef::from_obj(&p), &p);
        }
        let burst = ix.keys.capacity();
        for i in 10..3000 {
            ix.remove(&ObjectRef::from_obj(&pod(i)));
        }
        assert_eq!(ix.keys.len(), 10);
        assert!(
            ix.keys.capacity() < burst / 8,
            "{} of {burst}",
            ix.keys.capacity()
        );
        assert!(ix.by_namespace["default"].capacity() < burst / 8);
        assert!(ix.by_node["n1"].capacity() < burst / 8);
        assert_eq!(ix.by_node["n1"].len(), 10);
    }
}
