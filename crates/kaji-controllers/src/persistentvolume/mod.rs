//! The PersistentVolume binder, as upstream's persistentvolume controller
//! (pkg/controller/volume/persistentvolume, static provisioning). Two loops share one watch of
//! each kind, as upstream's claim and volume queues:
//! - a claim without `pv.kubernetes.io/bind-completed` is bound to the best Available volume:
//!   among the volumes whose access modes include the claim's (fewest modes first), one
//!   pre-bound to the claim (`claimRef`) wins, else the smallest that holds the requested
//!   storage, has the claim's storage class (an empty class matches only empty) and volume mode,
//!   and matches the claim's selector. A claim naming its volume (`volumeName`) gets that one if
//!   it fits. Binding writes the volume's `claimRef` (with the claim's uid), its phase Bound, the
//!   claim's `volumeName` and annotations, then the claim's phase Bound with the volume's
//!   capacity and access modes. With no match: a FailedBinding event (no class), a
//!   ProvisioningFailed or ExternalProvisioning event (a class: external provisioners, such as
//!   `provisioner` here, serve the annotated claim), or
//!   WaitForFirstConsumer (a `WaitForFirstConsumer` class: upstream's scheduler binds those).
//! - a volume without a claim is Available; a volume whose claim is gone is Released and its
//!   reclaim policy runs: Retain keeps it; Delete removes a hostPath volume's directory when the
//!   path matches upstream's `/tmp/.+` and then the volume object (other kinds fail with
//!   VolumeFailedDelete, as upstream without a deleter plugin; volumes of an external
//!   provisioner are left to it); Recycle (deprecated) is not done: the volume is Failed.
//!
//! Both loops also run every 15 s (upstream's resync), so a claim waiting for a volume is retried.
//!
//! Beside the binder, on the same watches: k3s's local-path provisioner (`provisioner`: the
//! default StorageClass `local-path` provisions hostPath volumes under `<data-dir>/storage` on the
//! node the scheduler picked; the node's agent makes and removes the directories) and the
//! pvc-protection and pv-protection controllers (`protection`).
//!
//! Files: here the watches ([`run`]) and small accessors; `binder` the claim and volume syncs
//! (binding, unbinding, the no-match events, status and phase writes; upstream
//! `pv_controller.go`'s syncClaim/syncVolume half); `reclaim` the reclaim policies (Retain,
//! Delete of hostPath, Recycle refused); `provisioner` and `protection` as above. Which volume
//! fits a claim is [`kaji_runtime::volume`], shared with the scheduler's VolumeBinding plugin.

mod binder;
pub mod protection;
pub mod provisioner;
mod reclaim;

use crate::Options;
use binder::{sync_claim, sync_volume};
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kaji_runtime::controller;
use kaji_runtime::events::Recorder;
use kaji_runtime::informer::Factory;
use kaji_runtime::volume::ANN_BIND_COMPLETED;
use kube::runtime::controller::Config;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "persistentvolume-controller";

const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim an external provisioner should serve (the beta name, and the GA one since 1.23).
const ANN_STORAGE_PROVISIONER_BETA: &str = "volume.beta.kubernetes.io/storage-provisioner";
const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";

/// Upstream's `--pvclaimbinder-sync-period`.
const RESYNC: Duration = Duration::from_secs(15);

struct Ctx {
    client: Client,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyncError {
    message: String,
    /// A write refused for a stale resourceVersion (409).
    conflict: bool,
}

impl SyncError {
    fn new(message: String) -> Self {
        SyncError {
            message,
            conflict: false,
        }
    }
}

impl From<kube::Error> for SyncError {
    fn from(e: kube::Error) -> Self {
        SyncError {
            conflict: matches!(&e, kube::Error::Api(a) if a.code == 409),
            message: e.to_string(),
        }
    }
}

/// Registers the informers (volumes, claims) and returns the two loops (claims and volumes,
/// one worker each, as upstream's single-threaded binder).
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let volumes = f.informer::<PersistentVolume>();
    let claims = f.informer::<PersistentVolumeClaim>();
    let ctx = Arc::new(Ctx {
        client: f.client(),
        volumes: volumes.store(),
        claims: claims.store(),
        recorder: Recorder::new(f.client(), COMPONENT),
    });
    let claim_triggers = {
        let claims = claims.store();
        volumes
            .objects()
            .flat_map(move |pv| futures::stream::iter(claims_for_volume(&claims, &pv)))
    };
    let volume_triggers = {
        let volumes = volumes.store();
        claims
            .objects()
            .flat_map(move |pvc| futures::stream::iter(volumes_for_claim(&volumes, &pvc)))
    };
    let claim_controller = controller::for_informer(&claims)
        .with_config(Config::default().concurrency(1))
        .reconcile_on(claim_triggers);
    let volume_controller = controller::for_informer(&volumes)
        .with_config(Config::default().concurrency(1))
        .reconcile_on(volume_triggers);
    let claims_loop = controller::run(
        "persistentvolume-binder-claims",
        f,
        claim_controller,
        sync_claim,
        ctx.clone(),
    );
    let volumes_loop = controller::run(
        "persistentvolume-binder-volumes",
        f,
        volume_controller,
        sync_volume,
        ctx,
    );
    let provisioner_ctx = Arc::new(provisioner::Ctx {
        client: f.client(),
        volumes: volumes.store(),
        classes: f.informer::<StorageClass>().store(),
        recorder: Recorder::new(f.client(), provisioner::LOCAL_PATH),
    });
    let provision_loop = controller::run(
        "local-path-provisioner-claims",
        f,
        controller::for_informer(&claims),
        provisioner::sync_claim,
        provisioner_ctx.clone(),
    );
    let delete_loop = controller::run(
        "local-path-provisioner-volumes",
        f,
        controller::for_informer(&volumes),
        provisioner::sync_volume,
        provisioner_ctx,
    );
    let pods = f.informer::<Pod>();
    let protection_ctx = Arc::new(protection::Ctx {
        client: f.client(),
        pods: pods.clone(),
    });
    let pod_claims = pods
        .objects()
        .flat_map(|pod| futures::stream::iter(protection::claims_of(&pod)));
    let pvc_protection = controller::run(
        "pvc-protection",
        f,
        controller::for_informer(&claims).reconcile_on(pod_claims),
        protection::sync_claim,
        protection_ctx.clone(),
    );
    let pv_protection = controller::run(
        "pv-protection",
        f,
        controller::for_informer(&volumes),
        protection::sync_volume,
        protection_ctx,
    );
    Box::pin(async move {
        let (claims, volumes, provision, delete, pvc, pv) = tokio::join!(
            claims_loop,
            volumes_loop,
            provision_loop,
            delete_loop,
            pvc_protection,
            pv_protection
        );
        claims
            .and(volumes)
            .and(provision)
            .and(delete)
            .and(pvc)
            .and(pv)
    })
}

/// The claims a volume change concerns: the claim it names, and when it is Available, every
/// claim still waiting for a volume (upstream waits for its periodic resync for those).
fn claims_for_volume(
    claims: &Store<PersistentVolumeClaim>,
    pv: &PersistentVolume,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let mut out = Vec::new();
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if let Some(r) = claim_ref {
        out.push(
            ObjectRef::new(r.name.as_deref().unwrap_or_default())
                .within(r.namespace.as_deref().unwrap_or_default()),
        );
    }
    if volume_phase(pv) == "Available"
        && claim_ref.is_none_or(|r| r.uid.as_deref().unwrap_or_default().is_empty())
    {
        out.extend(
            claims
                .state()
                .iter()
                .filter(|c| !has_annotation(&c.metadata, ANN_BIND_COMPLETED))
                .map(|c| ObjectRef::from_obj(c.as_ref())),
        );
    }
    out
}

/// The volumes a claim change concerns: the one it names and those that name it.
fn volumes_for_claim(
    volumes: &Store<PersistentVolume>,
    pvc: &PersistentVolumeClaim,
) -> Vec<ObjectRef<PersistentVolume>> {
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let mut out: Vec<ObjectRef<PersistentVolume>> = volumes
        .state()
        .iter()
        .filter(|v| {
            v.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|r| {
                    r.name.as_deref() == Some(name.as_str())
                        && r.namespace.as_deref() == Some(ns.as_str())
                })
        })
        .map(|v| ObjectRef::from_obj(v.as_ref()))
        .collect();
    if let Some(v) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        out.push(ObjectRef::new(v));
    }
    out
}

fn has_annotation(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn set_annotation(meta: &mut kube::api::ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

fn claim_volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

async fn stores_ready(ctx: &Ctx) -> bool {
    ctx.volumes.wait_until_ready().await.is_ok() && ctx.claims.wait_until_ready().await.is_ok()
}
