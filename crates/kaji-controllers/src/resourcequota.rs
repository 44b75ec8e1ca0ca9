//! The ResourceQuota controller, as upstream pkg/controller/resourcequota: each quota's
//! `status.hard` is its `spec.hard`, and `status.used` what the objects of its namespace use now
//! (`kaji_api::quota::usage`, only objects its scopes select), every resource of `hard` listed
//! (0 when nothing uses it). Admission charges creates at once; this controller gives back what
//! deleted objects and terminated pods held (upstream's replenishment): the deletion of an object
//! of a kind quotas commonly count, or a pod terminating or being deleted, recalculates the quotas
//! of its namespace, as does a Service that stops being a NodePort or LoadBalancer; a quota whose `spec.hard` changed is recalculated, and every quota at start
//! and every 5 minutes (upstream's full resync). The quota is read fresh and its pods listed from
//! the API server, and status is replaced with that resourceVersion, so a charge made meanwhile by
//! admission is never overwritten (the sync is retried).

use crate::Options;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use kaji_api::quota::{self, ResourceList};
use kaji_runtime::controller;
use kaji_runtime::informer::{Change, Factory};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COMPONENT: &str = "resourcequota-controller";

/// Upstream's `--resource-quota-sync-period` (5 minutes).
const RESYNC: Duration = Duration::from_secs(300);

/// Kinds whose changes recalculate the quotas of their namespace at once (group, version, kind,
/// plural); others are counted at the next full resync.
const WATCHED: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Service", "services"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("", "v1", "ReplicationController", "replicationcontrollers"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
];

/// Core kinds counted under legacy names (`services`, `secrets`, ...).
const CORE_COUNTED: &[(&str, &str)] = &[
    ("Service", "services"),
    ("Secret", "secrets"),
    ("ConfigMap", "configmaps"),
    ("PersistentVolumeClaim", "persistentvolumeclaims"),
    ("ReplicationController", "replicationcontrollers"),
    ("ResourceQuota", "resourcequotas"),
];

struct Context {
    client: Client,
    quotas: Store<ResourceQuota>,
    /// `(group, plural)` of a `count/` resource to its served resource, once discovered.
    resolved: Mutex<HashMap<(String, String), Option<ApiResource>>>,
}

fn quotas_in(store: &Store<ResourceQuota>, ns: Option<String>) -> Vec<ObjectRef<ResourceQuota>> {
    let Some(ns) = ns else { return Vec::new() };
    store
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(ns.as_str()))
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let informer = f.informer::<ResourceQuota>();
    let pods = f.informer::<Pod>();
    let store = informer.store();
    // As upstream's replenishment: creates are charged by admission, so only what gives units
    // back (a deletion, a pod terminating) recalculates; recalculating on creates would race
    // admission (a pod charged but not yet stored would be given back).
    let pod_triggers = {
        let store = store.clone();
        pods.subscribe().flat_map(move |change| {
            let gives_back = match &change {
                Change::Deleted(_) => true,
                Change::Applied(p) => {
                    p.metadata.deletion_timestamp.is_some()
                        || matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        )
                }
            };
            let quotas = if gives_back {
                quotas_in(&store, change.object().namespace())
            } else {
                Vec::new()
            };
            futures::stream::iter(quotas)
        })
    };
    let other_triggers = {
        let streams: Vec<_> = WATCHED
            .iter()
            .map(|(g, v, k, p)| {
                let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p);
                f.meta_informer(&ar).boxed()
            })
            .collect();
        let store = store.clone();
        futures::stream::select_all(streams).flat_map(move |c| {
            let quotas = match c {
                Change::Deleted(m) => quotas_in(&store, m.namespace.clone()),
                Change::Applied(_) => Vec::new(),
            };
            futures::stream::iter(quotas)
        })
    };
    // A Service that stops being a NodePort or LoadBalancer gives back `services.nodeports` /
    // `services.loadbalancers` (upstream's replenishment compares the old and new object: its
    // service evaluator's usage changed).
    let service_triggers = {
        let store = store.clone();
        let mut last_type: HashMap<String, String> = HashMap::new();
        f.informer::<Service>().subscribe().flat_map(move |change| {
            let uid = change.object().metadata.uid.clone().unwrap_or_default();
            let quotas = match &change {
                Change::Deleted(_) => {
                    last_type.remove(&uid);
                    Vec::new()
                }
                Change::Applied(s) => {
                    let ty = s
                        .spec
                        .as_ref()
                        .and_then(|s| s.type_.clone())
                        .unwrap_or_default();
                    let before = last_type.insert(uid, ty.clone());
                    let holds = |t: &str| t == "NodePort" || t == "LoadBalancer";
                    if before.is_some_and(|b| b != ty && holds(&b)) {
                        quotas_in(&store, s.namespace())
                    } else {
                        Vec::new()
                    }
                }
            };
            futures::stream::iter(quotas)
        })
    };
    // Every quota at start and then every 5 minutes (upstream's full resync).
    let resync = {
        let store = store.clone();
        futures::stream::unfold(true, |first| async move {
            if !first {
                tokio::time::sleep(RESYNC).await;
            }
            Some(((), false))
        })
        .flat_map(move |()| {
            futures::stream::iter(
                store
                    .state()
                    .iter()
                    .map(|q| ObjectRef::from_obj(q.as_ref()))
                    .collect::<Vec<_>>(),
            )
        })
    };
    let ctx = Arc::new(Context {
        client: f.client(),
        quotas: store,
        resolved: Mutex::new(HashMap::new()),
    });
    controller::run(
        COMPONENT,
        f,
        // A quota is synced when its spec.hard is not yet its status.hard (upstream's update
        // filter): admission's charges to status.used do not trigger a recount.
        Controller::for_shared_stream(
            informer
                .objects()
                .filter(|q| futures::future::ready(needs_sync(q))),
            informer.store(),
        )
        .reconcile_on(pod_triggers)
        .reconcile_on(other_triggers)
        .reconcile_on(service_triggers)
        .reconcile_on(resync),
        reconcile,
        ctx,
    )
}

/// Whether the quota's hard limits are not yet those in its status.
fn needs_sync(q: &ResourceQuota) -> bool {
    let spec = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let status = q
        .status
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    q.status.as_ref().and_then(|s| s.used.as_ref()).is_none() || spec != status
}

/// Whether a deleted pod is past its grace period (it no longer counts, upstream `QuotaV1Pod`).
fn past_grace(pod: &Pod, now: jiff::Timestamp) -> bool {
    match (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        (Some(t), Some(g)) => now.as_second() > t.0.as_second() + g,
        _ => false,
    }
}

impl Context {
    /// The served resource of `count/<plural>.<group>`, found through discovery.
    async fn resolve(&self, group: &str, plural: &str) -> Option<ApiResource> {
        let key = (group.to_string(), plural.to_string());
        if let Some(r) = self.resolved.lock().ok()?.get(&key) {
            return r.clone();
        }
        let found = match kube::discovery::oneshot::group(&self.client, group).await {
            Ok(g) => g
                .recommended_resources()
                .into_iter()
                .find(|(ar, _)| ar.plural == plural)
                .map(|(ar, _)| ar),
            Err(e) => {
                tracing::debug!(group, error = %e, "discovering a counted group");
                return None;
            }
        };
        if let Ok(mut m) = self.resolved.lock() {
            m.insert(key, found.clone());
        }
        found
    }

    /// The objects of a kind in `ns`, as JSON.
    async fn list(&self, ar: &ApiResource, ns: &str) -> Result<Vec<Value>, kube::Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, ar);
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect())
    }
}

/// What the objects of `ns` use of the resources in `hard`, for the quota `q`.
async fn calculate(
    ctx: &Context,
    q: &Value,
    ns: &str,
    hard: &ResourceList,
) -> Result<ResourceList, kube::Error> {
    let mut used: ResourceList = hard.keys().map(|k| (k.clone(), 0)).collect();
    let mut charge = |group: &str, plural: &str, obj: &Value, past: bool| {
        if !quota::matches_scopes(group, plural, obj, q) {
            return;
        }
        for (k, v) in quota::usage(group, plural, obj, past) {
            if let Some(u) = used.get_mut(&k) {
                *u += v;
            }
        }
    };
    let tracked = |group: &str, plural: &str| hard.keys().any(|k| quota::tracks(group, plural, k));
    if tracked("", "pods") {
        // Listed from the API server, not the pod cache: the quota was read just before, so every
        // pod admission charged to it is (but for the instant between charge and write) in this
        // list; a lagging cache would give back units admission has just handed out.
        let now = jiff::Timestamp::now();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        for p in api.list(&ListParams::default()).await?.items {
            if let Ok(v) = serde_json::to_value(&p) {
                charge("", "pods", &v, past_grace(&p, now));
            }
        }
    }
    let mut kinds: Vec<ApiResource> = CORE_COUNTED
        .iter()
        .filter(|(_, p)| tracked("", p))
        .map(|(k, p)| ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", k), p))
        .collect();
    for name in hard.keys() {
        let Some(rest) = name.strip_prefix("count/") else {
            continue;
        };
        let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
        if group.is_empty() && (plural == "pods" || CORE_COUNTED.iter().any(|(_, p)| *p == plural))
        {
            continue;
        }
        if let Some(ar) = ctx.resolve(group, plural).await
            && !kinds
                .iter()
                .any(|k| k.group == ar.group && k.plural == ar.plural)
        {
            kinds.push(ar);
        }
    }
    for ar in kinds {
        for obj in ctx.list(&ar, ns).await? {
            charge(&ar.group, &ar.plural, &obj, false);
        }
    }
    Ok(used)
}

async fn reconcile(q: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(q.as_ref());
    if ctx.quotas.get(&key).is_none() {
        return Ok(Action::await_change());
    }
    let ns = key.namespace.clone().unwrap_or_default();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    // The newest copy: usage is counted against what admission has charged so far.
    let q = match api.get(&key.name).await {
        Ok(q) => q,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    if q.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut obj = serde_json::to_value(&q).map_err(anyhow::Error::from)?;
    let hard_json = obj
        .pointer("/spec/hard")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let hard = quota::parse_list(Some(&hard_json));
    let used = calculate(&ctx, &obj, &ns, &hard).await?;
    let status_hard = quota::parse_list(obj.pointer("/status/hard"));
    let status_used = quota::parse_list(obj.pointer("/status/used"));
    if status_hard == hard && status_used == used {
        return Ok(Action::await_change());
    }
    tracing::debug!(quota = %key, ?used, "updating quota usage");
    obj["status"] =
        serde_json::json!({"hard": hard_json, "used": quota::to_json(&used, Some(&hard_json))});
    let body: ResourceQuota = serde_json::from_value(obj).map_err(anyhow::Error::from)?;
    match api
        .replace_status(&q.name_any(), &PostParams::default(), &body)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}
