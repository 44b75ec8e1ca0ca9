//! The StatefulSet controller, as upstream pkg/controller/statefulset (1.33).
//!
//! A StatefulSet owns pods with stable identities: `<set>-<ordinal>` for ordinals
//! `spec.ordinals.start ..` (labels `statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index`, hostname = pod name, subdomain = `spec.serviceName`), each
//! with its own claims `<template>-<pod>` from `volumeClaimTemplates`, created before the pod and
//! kept when the pod goes (unless `persistentVolumeClaimRetentionPolicy` says Delete: then the set
//! or the scaled-down pod becomes an owner of the claim and the garbage collector removes it).
//!
//! Each sync (upstream `syncStatefulSet` + `defaultStatefulSetControl.UpdateStatefulSet`, here
//! `control`): claim the member pods and the set's ControllerRevisions, find or create the
//! update revision (see [`crate::history`]), then
//! - create missing pods (OrderedReady: one at a time, only while every lower ordinal is
//!   Running and Ready; Parallel: all at once), replace failed ones, fix identities and claims;
//! - delete condemned pods (ordinals out of range) from the highest, one at a time and only when
//!   the others are healthy (OrderedReady), or all at once (Parallel);
//! - RollingUpdate: delete the highest-ordinal pod not at the update revision, down to
//!   `partition`, waiting for each to come back healthy (`maxUnavailable`, when set, deletes up
//!   to that many at once); OnDelete: new pods get the update revision, nothing is deleted;
//! - write the status (replicas, ready, current, updated, available, revisions, collisionCount)
//!   and truncate the history to `revisionHistoryLimit`.

mod control;
pub mod utils;

use crate::Options;
use crate::history::History;
use crate::replicaset::ownership;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kaji_runtime::controller;
use kaji_runtime::events::Recorder;
use kaji_runtime::informer::{Factory, Informer};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use ownership::Claim;
use std::sync::Arc;

/// Workers (upstream `--concurrent-statefulset-syncs`).
const CONCURRENCY: u16 = 5;
const COMPONENT: &str = "statefulset-controller";

struct Context {
    client: Client,
    pods: Arc<Informer<Pod>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    sets: Store<StatefulSet>,
    history: History,
    recorder: Recorder,
}

/// A failed sync.
pub type ReconcileError = controller::Error;

/// Registers the informers (StatefulSets, pods, claims, ControllerRevisions) and returns the
/// loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let pods = f.informer::<Pod>();
    let claims = f.informer::<PersistentVolumeClaim>();
    let history = History::new(f);
    let sets_informer = f.informer::<StatefulSet>();
    let controller = controller::for_informer(&sets_informer)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY));
    let sets = sets_informer.store();
    let pod_triggers = {
        let sets = sets.clone();
        pods.objects()
            .flat_map(move |pod| futures::stream::iter(sets_of_pod(&sets, &pod)))
    };
    let revision_triggers = history.informer().objects().filter_map(|r| async move {
        let c = ownership::controller_of(&r.metadata)?;
        (c.kind == "StatefulSet")
            .then(|| ObjectRef::new(&c.name).within(&r.namespace().unwrap_or_default()))
    });
    let ctx = Arc::new(Context {
        client: f.client(),
        pods,
        claims,
        sets,
        history,
        recorder: Recorder::new(f.client(), COMPONENT),
    });
    controller::run(
        COMPONENT,
        f,
        controller
            .reconcile_on(pod_triggers)
            .reconcile_on(revision_triggers),
        reconcile,
        ctx,
    )
}

/// The sets a pod change concerns: its controller, or for an orphan every set of its
/// namespace whose selector matches it (upstream `getStatefulSetsForPod`).
fn sets_of_pod(sets: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = ownership::controller_of(&pod.metadata) {
        return if r.kind == "StatefulSet" {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            vec![]
        };
    }
    sets.state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| ownership::selector(&sp.selector))
                .is_some_and(|sel| {
                    !sel.is_empty() && ownership::matches(&sel, pod.metadata.labels.as_ref())
                })
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let key = ObjectRef::from_obj(set.as_ref());
    let Some(set) = ctx.sets.get(&key) else {
        return Ok(Action::await_change());
    };
    ctx.pods.ready().await;
    ctx.claims.ready().await;
    ctx.history.informer().ready().await;
    let set = (*set).clone();
    let Some(sel) = set
        .spec
        .as_ref()
        .and_then(|s| ownership::selector(&s.selector))
    else {
        tracing::warn!(name = %set.name_any(), "invalid selector; nothing to manage");
        return Ok(Action::await_change());
    };
    if sel.is_empty() {
        return Ok(Action::await_change());
    }
    let pods = claim_pods(&set, &sel, &ctx).await;
    let revisions = ctx.history.claim(&set.metadata, "StatefulSet", &sel).await;
    Ok(control::Sync::new(&ctx, set).run(pods, revisions).await?)
}

/// The pods of the namespace that are the set's members, after adopting matching orphans and
/// releasing its own that stopped matching or are not named as members (upstream
/// `getPodsForStatefulSet`: the claim filter is `isMemberOf`).
async fn claim_pods(
    set: &StatefulSet,
    sel: &kaji_api::selector::LabelSelector,
    ctx: &Context,
) -> Vec<Pod> {
    let ns = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let deleting = set.metadata.deletion_timestamp.is_some();
    let ours = ownership::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut out = Vec::new();
    for pod in ctx.pods.claimable(&ns, &uid) {
        let mut claim = ownership::claim(&uid, deleting, sel, &pod.metadata);
        if !utils::is_member_of(set, &pod) {
            claim = match claim {
                Claim::Keep | Claim::Release if !deleting => Claim::Release,
                Claim::Keep => Claim::Keep,
                _ => Claim::Ignore,
            };
        }
        if let Some(p) = ownership::settle(&api, pod.as_ref(), claim, &ours).await {
            out.push(p);
        }
    }
    out
}
