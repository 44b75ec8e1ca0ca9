//! The ReplicaSet controller (and the ReplicationController one, the same loop over a map
//! selector), as upstream pkg/controller/replicaset.
//!
//! For each ReplicaSet: claim the active pods of its namespace (keep ours, adopt matching
//! orphans, release ours that stopped matching), create pods from the template or delete the
//! least useful ones until `spec.replicas` are active, and write the counts to the status
//! subresource. Pods are watched once, by a shared informer; a pod change requeues its
//! controller (or, for an orphan, every ReplicaSet whose selector matches it).
//!
//! Expectations (upstream `ControllerExpectations`): after creating or deleting pods a
//! ReplicaSet does not manage its pods again until the pod cache has seen those changes, so a
//! slow watch never leads to double creates.

pub mod ownership;
pub mod pods;

use crate::Options;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use kaji_api::selector::LabelSelector as Selector;
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use ownership::Claim;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many pods are created or deleted in one sync (upstream `BurstReplicas`).
const BURST_REPLICAS: usize = 500;
/// Workers per kind (upstream `--concurrent-replicaset-syncs`).
const CONCURRENCY: u16 = 5;
/// Expectations not met after this long are dropped (upstream `ExpectationsTimeout`).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);
/// A safety net: every ReplicaSet is looked at again this often even without changes.
const RESYNC: Duration = Duration::from_secs(300);

/// What the controller needs of a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    /// `None` when the selector is invalid (nothing is managed).
    fn selector(&self) -> Option<Selector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn current_status(&self) -> ReplicaStatus;
}

/// The counts written to `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Option<Selector> {
        ownership::selector(&self.spec.as_ref()?.selector)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn current_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
        }
    }
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Option<Selector> {
        // An RC without a selector selects its template's labels (upstream defaulting).
        let spec = self.spec.as_ref()?;
        let map = spec
            .selector
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| spec.template.as_ref()?.metadata.as_ref()?.labels.clone())?;
        Some(ownership::map_selector(&map))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn current_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
        }
    }
}

/// Pod creations and deletions a controller waits to see in the pod cache.
#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

struct Context<K: Resource<DynamicType = ()> + 'static> {
    client: Client,
    pods: Arc<Informer<Pod>>,
    owners: Store<K>,
    recorder: Recorder,
    expectations: Mutex<HashMap<ObjectRef<K>, Pending>>,
}

/// A failed sync.
pub type ReconcileError = controller::Error;

/// Registers the informers (pods, ReplicaSets, ReplicationControllers) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let pods = f.informer::<Pod>();
    let rs = run_for::<ReplicaSet>(f, pods.clone());
    let rc = run_for::<ReplicationController>(f, pods);
    Box::pin(async move {
        let (rs, rc) = tokio::join!(rs, rc);
        rs.and(rc)
    })
}

/// The controller for one kind (ReplicaSet or ReplicationController).
fn run_for<K: ReplicaOwner>(
    f: &Factory,
    pods: Arc<Informer<Pod>>,
) -> BoxFuture<'static, anyhow::Result<()>> {
    let owners_informer = f.informer::<K>();
    let controller = controller::for_informer(&owners_informer)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY));
    let owners = owners_informer.store();
    let triggers = {
        let owners = owners.clone();
        pods.objects()
            .flat_map(move |pod| futures::stream::iter(owners_of::<K>(&owners, &pod)))
    };
    let ctx = Arc::new(Context {
        client: f.client(),
        pods,
        owners,
        recorder: Recorder::new(f.client(), K::COMPONENT),
        expectations: Mutex::new(HashMap::new()),
    });
    controller::run(
        K::COMPONENT,
        f,
        controller.reconcile_on(triggers),
        reconcile::<K>,
        ctx,
    )
}

/// The controllers a pod change concerns: its controller, or every matching one for an orphan.
fn owners_of<K: ReplicaOwner>(owners: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = ownership::controller_of(&pod.metadata) {
        if r.kind == K::kind(&()) {
            return vec![ObjectRef::new(&r.name).within(&ns)];
        }
        return vec![];
    }
    owners
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| {
            o.selector().is_some_and(|s| {
                !s.is_empty() && ownership::matches(&s, pod.metadata.labels.as_ref())
            })
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

impl<K: ReplicaOwner> Context<K> {
    /// Whether the pod cache has caught up with our last creates and deletes.
    fn expectations_met(&self, key: &ObjectRef<K>, ns: &str) -> bool {
        let Ok(mut map) = self.expectations.lock() else {
            return true;
        };
        let Some(p) = map.get(key) else { return true };
        let seen = |name: &str| self.pods.get(&ObjectRef::new(name).within(ns));
        let created = p.creates.iter().all(|n| seen(n).is_some());
        let deleted = p
            .deletes
            .iter()
            .all(|n| seen(n).is_none_or(|pod| pod.metadata.deletion_timestamp.is_some()));
        if (created && deleted) || p.since.elapsed() > EXPECTATIONS_TIMEOUT {
            map.remove(key);
            return true;
        }
        false
    }

    fn expect(&self, key: ObjectRef<K>, creates: HashSet<String>, deletes: HashSet<String>) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        if let Ok(mut map) = self.expectations.lock() {
            map.insert(
                key,
                Pending {
                    creates,
                    deletes,
                    since: Instant::now(),
                },
            );
        }
    }
}

async fn reconcile<K: ReplicaOwner>(
    owner: Arc<K>,
    ctx: Arc<Context<K>>,
) -> Result<Action, ReconcileError> {
    let key = ObjectRef::from_obj(owner.as_ref());
    // The store may have moved on since the trigger; act on the newest copy.
    let Some(owner) = ctx.owners.get(&key) else {
        return Ok(Action::await_change());
    };
    ctx.pods.ready().await;
    let ns = owner.namespace().unwrap_or_default();
    let uid = owner.uid().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let Some(sel) = owner.selector() else {
        tracing::warn!(name = %owner.name_any(), "invalid selector; nothing to manage");
        return Ok(Action::await_change());
    };
    let needs_sync = ctx.expectations_met(&key, &ns);

    // Claim the active pods of the namespace.
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .claimable(&ns, &uid)
        .into_iter()
        .filter(|p| pods::is_active(p))
        .collect();
    let owner_ref = ownership::controller_ref(&K::api_version(&()), &K::kind(&()), owner.meta());
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut claimed: Vec<Arc<Pod>> = Vec::new();
    for pod in candidates {
        match ownership::claim(&uid, deleting, &sel, &pod.metadata) {
            Claim::Keep => claimed.push(pod),
            claim => {
                if let Some(p) = ownership::settle(&pod_api, pod.as_ref(), claim, &owner_ref).await
                {
                    claimed.push(Arc::new(p));
                }
            }
        }
    }

    let mut result = Ok(());
    if needs_sync && !deleting {
        result = manage_replicas(owner.as_ref(), &key, &claimed, &pod_api, ctx.as_ref()).await;
    }

    // Status from the claimed pods (upstream calculateStatus).
    let now = jiff::Timestamp::now();
    let min_ready = owner.min_ready_seconds();
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = ReplicaStatus {
        replicas: count(&claimed, |_| true),
        fully_labeled_replicas: count(&claimed, |p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        }),
        ready_replicas: count(&claimed, pods::is_ready),
        available_replicas: count(&claimed, |p| pods::is_available(p, min_ready, now)),
        observed_generation: owner.meta().generation.unwrap_or(0),
    };
    let conditions = failure_condition(owner.as_ref(), &result, claimed.len());
    if status != owner.current_status() || conditions.is_some() {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let mut patch = serde_json::json!({ "status": status });
        if let Some(c) = conditions {
            patch["status"]["conditions"] = serde_json::Value::Array(c);
        }
        api.patch_status(
            &owner.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    result?;
    // A ready pod becomes available after minReadySeconds: look again then.
    let next = claimed
        .iter()
        .filter_map(|p| pods::seconds_until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(s) => Action::requeue(Duration::from_secs(u64::try_from(s).unwrap_or(1).max(1))),
        None => Action::requeue(RESYNC),
    })
}

/// The conditions with `ReplicaFailure` set or removed, when that changes them (upstream
/// calculateStatus): set (reason FailedCreate or FailedDelete, the API's message) when managing
/// the replicas failed and it is not there yet, removed once managing them succeeds.
fn failure_condition<K: ReplicaOwner>(
    owner: &K,
    result: &anyhow::Result<()>,
    have: usize,
) -> Option<Vec<serde_json::Value>> {
    let obj = serde_json::to_value(owner).ok()?;
    let mut conditions = obj
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let present = conditions
        .iter()
        .any(|c| c.get("type").and_then(serde_json::Value::as_str) == Some("ReplicaFailure"));
    match result {
        Err(e) if !present => {
            let message = match e.downcast_ref::<kube::Error>() {
                Some(kube::Error::Api(s)) => s.message.clone(),
                _ => format!("{e:#}"),
            };
            let reason = if usize::try_from(owner.replicas()).unwrap_or(0) > have {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(serde_json::json!({
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second).ok()?.to_string(),
                "reason": reason,
                "message": message,
            }));
            Some(conditions)
        }
        Ok(()) if present => {
            conditions.retain(|c| {
                c.get("type").and_then(serde_json::Value::as_str) != Some("ReplicaFailure")
            });
            Some(conditions)
        }
        _ => None,
    }
}

fn count(pods: &[Arc<Pod>], f: impl Fn(&Pod) -> bool) -> i32 {
    i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
}

/// Creates or deletes pods until `spec.replicas` are active (upstream manageReplicas).
async fn manage_replicas<K: ReplicaOwner>(
    owner: &K,
    key: &ObjectRef<K>,
    claimed: &[Arc<Pod>],
    pod_api: &Api<Pod>,
    ctx: &Context<K>,
) -> anyhow::Result<()> {
    let want = usize::try_from(owner.replicas()).unwrap_or(0);
    let have = claimed.len();
    let obj_ref = reference(owner);
    if have < want {
        let Some(template) = owner.template() else {
            anyhow::bail!("no pod template")
        };
        let diff = (want - have).min(BURST_REPLICAS);
        let pod = pod_from_template(owner, template);
        let pp = PostParams::default();
        // Slow start: batches of 1, 2, 4, ... so that a failing create (quota, admission)
        // fails once rather than `diff` times.
        let mut created = HashSet::new();
        let mut batch = 1;
        let mut remaining = diff;
        let mut failure = None;
        while remaining > 0 && failure.is_none() {
            let n = batch.min(remaining);
            let results =
                futures::future::join_all((0..n).map(|_| pod_api.create(&pp, &pod))).await;
            for r in results {
                match r {
                    Ok(p) => {
                        let name = p.name_any();
                        ctx.recorder
                            .normal(
                                &obj_ref,
                                "SuccessfulCreate",
                                &format!("Created pod: {name}"),
                            )
                            .await;
                        created.insert(name);
                    }
                    Err(e) => {
                        let msg = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        ctx.recorder
                            .warning(&obj_ref, "FailedCreate", &format!("Error creating: {msg}"))
                            .await;
                        failure = Some(e);
                    }
                }
            }
            remaining -= n;
            batch *= 2;
        }
        ctx.expect(key.clone(), created, HashSet::new());
        if let Some(e) = failure {
            return Err(anyhow::Error::new(e).context("creating pods"));
        }
    } else if have > want {
        let diff = (have - want).min(BURST_REPLICAS);
        let mut victims: Vec<&Arc<Pod>> = claimed.iter().collect();
        victims.sort_by(|a, b| pods::deletion_order(a, b));
        victims.truncate(diff);
        let (deleted, failure) = crate::pod_control::delete_pods(
            pod_api,
            &ctx.recorder,
            &obj_ref,
            victims
                .iter()
                .map(|p| (p.name_any(), DeleteParams::default())),
        )
        .await;
        ctx.expect(key.clone(), HashSet::new(), deleted);
        if let Some(e) = failure {
            return Err(anyhow::Error::new(e).context("deleting pods"));
        }
    }
    Ok(())
}

/// A pod as the template describes it, owned by `owner` (upstream GetPodFromTemplate).
fn pod_from_template<K: ReplicaOwner>(owner: &K, template: &PodTemplateSpec) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name_any())),
            namespace: owner.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![ownership::controller_ref(
                &K::api_version(&()),
                &K::kind(&()),
                owner.meta(),
            )]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}
