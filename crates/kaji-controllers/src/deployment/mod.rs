//! The Deployment controller, as upstream pkg/controller/deployment.
//!
//! A Deployment owns one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`.
//! Each sync claims the ReplicaSets that match the selector, then either scales them
//! proportionally (paused, or `spec.replicas` changed) or rolls out: RollingUpdate moves
//! replicas from the old ReplicaSets to the new one within maxSurge/maxUnavailable, Recreate
//! scales the old ones to zero before creating the new one. Revisions live in the
//! `deployment.kubernetes.io/revision` annotation; a rollback (`kubectl rollout undo` copies an
//! old template back) makes the old ReplicaSet new again with the next revision. Status carries
//! the replica counts and the Progressing and Available conditions.
//!
//! The files follow upstream's: here the watches ([`run`]) and the entry of a sync (`reconcile`,
//! upstream `syncDeployment`); `sync` (ReplicaSets and revisions, scaling, cleanup, status),
//! `rolling` and `recreate` (the two strategies), `progress` (complete/progressing, the
//! Progressing condition and the progress deadline), `util` (the pure helpers). Upstream's
//! `rollback.go` serves the old `spec.rollbackTo` field, which apps/v1 does not have; a rollback
//! here is a template change like any other.

mod progress;
mod recreate;
mod rolling;
mod sync;
pub mod util;

use crate::Options;
use crate::replicaset::ownership;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// Workers (upstream `--concurrent-deployment-syncs`).
const CONCURRENCY: u16 = 5;
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    replica_sets: Arc<Informer<ReplicaSet>>,
    deployments: Store<Deployment>,
    recorder: Recorder,
}

/// A failed sync.
pub type ReconcileError = controller::Error;

/// Registers the informers (Deployments, ReplicaSets) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let replica_sets = f.informer::<ReplicaSet>();
    let deployments_informer = f.informer::<Deployment>();
    let controller = controller::for_informer(&deployments_informer)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY));
    let deployments = deployments_informer.store();
    let triggers = {
        let deployments = deployments.clone();
        replica_sets
            .objects()
            .flat_map(move |rs| futures::stream::iter(deployments_of(&deployments, &rs)))
    };
    let ctx = Arc::new(Context {
        client: f.client(),
        replica_sets: replica_sets.clone(),
        deployments,
        recorder: Recorder::new(f.client(), "deployment-controller"),
    });
    controller::run(
        "deployment-controller",
        f,
        controller.reconcile_on(triggers),
        reconcile,
        ctx,
    )
}

/// The Deployments a ReplicaSet change concerns: its controller, or every matching one for an orphan.
fn deployments_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = ownership::controller_of(&rs.metadata) {
        return if r.kind == "Deployment" {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            vec![]
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| ownership::selector(&s.selector))
                .is_some_and(|sel| {
                    !sel.is_empty() && ownership::matches(&sel, rs.metadata.labels.as_ref())
                })
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let key = ObjectRef::from_obj(d.as_ref());
    let Some(d) = ctx.deployments.get(&key) else {
        return Ok(Action::await_change());
    };
    ctx.replica_sets.ready().await;
    let d = (*d).clone();
    let ns = d.namespace().unwrap_or_default();
    let Some(sel) = d
        .spec
        .as_ref()
        .and_then(|s| ownership::selector(&s.selector))
    else {
        return Ok(Action::await_change());
    };
    if sel.is_empty() {
        let msg = "This deployment is selecting all pods. A non-empty selector is required.";
        ctx.recorder
            .warning(&reference(&d), "SelectingAll", msg)
            .await;
        return Ok(Action::await_change());
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_list = claim_replica_sets(&d, &sel, &rs_api, &ctx).await;
    let conditions = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut s = Sync {
        ctx: &ctx,
        rs_api,
        deploy_api: Api::namespaced(ctx.client.clone(), &ns),
        d,
        rs_list,
        conditions,
    };

    if s.d.metadata.deletion_timestamp.is_some() {
        let (new, _) = s.get_all_replica_sets_and_sync_revision(false).await?;
        return Ok(s.sync_status(new).await?);
    }
    s.check_paused_conditions();
    let paused = s.d.spec.as_ref().and_then(|x| x.paused).unwrap_or(false);
    if paused || s.is_scaling_event() {
        return Ok(s.sync(paused).await?);
    }
    Ok(if util::is_rolling_update(&s.d) {
        s.rollout_rolling().await?
    } else {
        s.rollout_recreate().await?
    })
}

/// The ReplicaSets of the namespace this Deployment controls, after adopting matching orphans
/// and releasing its own that stopped matching (upstream getReplicaSetsForDeployment).
async fn claim_replica_sets(
    d: &Deployment,
    sel: &kaji_api::selector::LabelSelector,
    rs_api: &Api<ReplicaSet>,
    ctx: &Context,
) -> Vec<ReplicaSet> {
    let ns = d.namespace();
    let uid = d.uid().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let ours = ownership::controller_ref("apps/v1", "Deployment", &d.metadata);
    let mut out = Vec::new();
    let ns = ns.unwrap_or_default();
    for rs in ctx.replica_sets.claimable(&ns, &uid) {
        let claim = ownership::claim(&uid, deleting, sel, &rs.metadata);
        if let Some(r) = ownership::settle(rs_api, rs.as_ref(), claim, &ours).await {
            out.push(r);
        }
    }
    out
}

/// One sync of one Deployment: its ReplicaSets (updated in place as they are written) and the
/// conditions to write with the status.
struct Sync<'a> {
    ctx: &'a Context,
    rs_api: Api<ReplicaSet>,
    deploy_api: Api<Deployment>,
    d: Deployment,
    rs_list: Vec<ReplicaSet>,
    conditions: Vec<DeploymentCondition>,
}

fn created(rs: &ReplicaSet) -> (Option<jiff::Timestamp>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.name_any(),
    )
}
