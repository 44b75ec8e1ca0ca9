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
//!   ProvisioningFailed or ExternalProvisioning event (a class: nothing here provisions), or
//!   WaitForFirstConsumer (a `WaitForFirstConsumer` class: upstream's scheduler binds those).
//! - a volume without a claim is Available; a volume whose claim is gone is Released and its
//!   reclaim policy runs: Retain keeps it; Delete removes a hostPath volume's directory when the
//!   path matches upstream's `/tmp/.+` and then the volume object (other kinds fail with
//!   VolumeFailedDelete, as upstream without a deleter plugin; volumes of an external
//!   provisioner are left to it); Recycle (deprecated) is not done: the volume is Failed.
//!
//! Both loops also run every 15 s (upstream's resync), so a claim waiting for a volume is retried.
//! Dynamic provisioning and the StorageObjectInUseProtection finalizers are not here.

use crate::Options;
use crate::events::{EventRecorder, reference};
use crate::replicaset::informer::Informer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kaji_runtime::volume::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, check_volume_satisfies_claim,
    claim_class, find_best_match, is_bound_to, volume_mode_mismatch,
};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
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
    recorder: EventRecorder,
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

pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let _ = opts;
    let volumes = Informer::spawn(Api::<PersistentVolume>::all(client.clone()));
    let claims = Informer::spawn(Api::<PersistentVolumeClaim>::all(client.clone()));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        volumes: volumes.store.clone(),
        claims: claims.store.clone(),
        recorder: EventRecorder::new(client, COMPONENT),
    });
    let claim_triggers = {
        let claims = claims.store.clone();
        volumes
            .subscribe()
            .flat_map(move |pv| futures::stream::iter(claims_for_volume(&claims, &pv)))
    };
    let volume_triggers = {
        let volumes = volumes.store.clone();
        claims
            .subscribe()
            .flat_map(move |pvc| futures::stream::iter(volumes_for_claim(&volumes, &pvc)))
    };
    let claim_loop = Controller::for_shared_stream(claims.subscribe(), claims.store.clone())
        .with_config(Config::default().concurrency(1))
        .reconcile_on(claim_triggers)
        .run(sync_claim, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "claim sync");
            }
        });
    let volume_loop = Controller::for_shared_stream(volumes.subscribe(), volumes.store.clone())
        .with_config(Config::default().concurrency(1))
        .reconcile_on(volume_triggers)
        .run(sync_volume, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "volume sync");
            }
        });
    tokio::join!(claim_loop, volume_loop);
    Ok(())
}

fn error_policy<K>(_obj: Arc<K>, err: &SyncError, _ctx: Arc<Ctx>) -> Action {
    if err.conflict {
        // The store is behind our own write; the watch event brings it up to date.
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %err, "persistentvolume sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
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

async fn sync_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, SyncError> {
    if !stores_ready(&ctx).await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        sync_bound_claim(&ctx, &claim).await?;
    } else {
        sync_unbound_claim(&ctx, &claim).await?;
    }
    Ok(Action::requeue(RESYNC))
}

/// The claim's StorageClass binding mode: whether binding waits for the first pod.
async fn delay_binding(ctx: &Ctx, class: &str) -> Result<(bool, Option<StorageClass>), SyncError> {
    if class.is_empty() {
        return Ok((false, None));
    }
    let sc = Api::<StorageClass>::all(ctx.client.clone())
        .get_opt(class)
        .await?;
    let delay =
        sc.as_ref().and_then(|s| s.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
    Ok((delay, sc))
}

async fn sync_unbound_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), SyncError> {
    let claim_ref = reference(claim);
    let volume_name = claim_volume_name(claim).to_string();
    if volume_name.is_empty() {
        let class = claim_class(claim);
        let (delay, sc) = delay_binding(ctx, class).await?;
        let volumes = ctx.volumes.state();
        match find_best_match(claim, &volumes, delay) {
            Some(v) => return bind(ctx, &v, claim).await,
            None if delay && !has_annotation(&claim.metadata, ANN_SELECTED_NODE) => {
                let pods = unscheduled_pods_using(ctx, claim).await;
                let (reason, message) = match pods.as_slice() {
                    [] => (
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding".to_string(),
                    ),
                    [one] => (
                        "WaitForPodScheduled",
                        format!("waiting for pod {one} to be scheduled"),
                    ),
                    many => (
                        "WaitForPodScheduled",
                        format!("waiting for pods {} to be scheduled", many.join(",")),
                    ),
                };
                ctx.recorder.normal(&claim_ref, reason, &message).await;
            }
            None if !class.is_empty() => {
                provision_claim(ctx, claim, class, sc).await?;
                return Ok(());
            }
            None => {
                ctx.recorder
                    .normal(
                        &claim_ref,
                        "FailedBinding",
                        "no persistent volumes available for this claim and no storage class is set",
                    )
                    .await;
            }
        }
        update_claim_status(ctx, claim, "Pending", None).await?;
        return Ok(());
    }
    // The user asked for a specific volume.
    let Some(volume) = ctx.volumes.get(&ObjectRef::new(&volume_name)) else {
        update_claim_status(ctx, claim, "Pending", None).await?;
        return Ok(());
    };
    if claim_ref_of(&volume).is_none() {
        if let Err(why) = check_volume_satisfies_claim(&volume, claim) {
            ctx.recorder
                .warning(
                    &claim_ref,
                    "VolumeMismatch",
                    &format!("Cannot bind to requested volume {volume_name:?}: {why}"),
                )
                .await;
            update_claim_status(ctx, claim, "Pending", None).await?;
            return Ok(());
        }
        return bind(ctx, &volume, claim).await;
    }
    if is_bound_to(&volume, claim) {
        return bind(ctx, &volume, claim).await;
    }
    let message = format!("volume {volume_name:?} already bound to a different claim.");
    ctx.recorder
        .warning(&claim_ref, "FailedBinding", &message)
        .await;
    if has_annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER) {
        return Err(SyncError::new(format!(
            "Invalid binding of claim {:?} to volume {volume_name:?}: volume already claimed by another claim",
            claim_key(claim)
        )));
    }
    update_claim_status(ctx, claim, "Pending", None).await?;
    Ok(())
}

fn claim_ref_of(v: &PersistentVolume) -> Option<&ObjectReference> {
    claim_ref(v)
}

/// Names of the pods that use the claim and wait for a node (upstream
/// `findNonScheduledPodsByPVC`).
async fn unscheduled_pods_using(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Vec<String> {
    let ns = claim.namespace().unwrap_or_default();
    let Ok(pods) = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
    else {
        return Vec::new();
    };
    let name = claim.name_any();
    let mut out: Vec<String> = pods
        .items
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            let spec = p.spec.as_ref();
            !matches!(phase, Some("Succeeded" | "Failed"))
                && spec
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or_default()
                    .is_empty()
                && spec.and_then(|s| s.volumes.as_ref()).is_some_and(|vs| {
                    vs.iter().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == name)
                    })
                })
        })
        .map(|p| p.name_any())
        .collect();
    out.sort();
    out
}

/// A claim with a class and no volume: upstream would provision. Nothing here provisions, so
/// this reports what upstream reports when it cannot: the class is missing, an in-tree
/// provisioner is unknown, or an external provisioner is asked for (the claim is annotated for it).
async fn provision_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &str,
    sc: Option<StorageClass>,
) -> Result<(), SyncError> {
    let claim_ref = reference(claim);
    let Some(sc) = sc else {
        ctx.recorder
            .warning(
                &claim_ref,
                "ProvisioningFailed",
                &format!("storageclass.storage.k8s.io {class:?} not found"),
            )
            .await;
        return Ok(());
    };
    let provisioner = sc.provisioner.clone();
    if provisioner.starts_with("kubernetes.io/") {
        ctx.recorder
            .warning(
                &claim_ref,
                "ProvisioningFailed",
                &format!("no volume plugin matched name: {provisioner}"),
            )
            .await;
        return Ok(());
    }
    let annotations = claim.annotations();
    if annotations.get(ANN_STORAGE_PROVISIONER_BETA) != Some(&provisioner)
        || annotations.get(ANN_STORAGE_PROVISIONER) != Some(&provisioner)
    {
        let mut next = claim.clone();
        set_annotation(
            &mut next.metadata,
            ANN_STORAGE_PROVISIONER_BETA,
            &provisioner,
        );
        set_annotation(&mut next.metadata, ANN_STORAGE_PROVISIONER, &provisioner);
        Api::<PersistentVolumeClaim>::namespaced(
            ctx.client.clone(),
            &claim.namespace().unwrap_or_default(),
        )
        .replace(&claim.name_any(), &PostParams::default(), &next)
        .await?;
    }
    ctx.recorder
        .normal(
            &claim_ref,
            "ExternalProvisioning",
            &format!(
                "waiting for a volume to be created, either by external provisioner {provisioner:?} or manually created by system administrator"
            ),
        )
        .await;
    Ok(())
}

async fn sync_bound_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), SyncError> {
    let volume_name = claim_volume_name(claim).to_string();
    if volume_name.is_empty() {
        update_claim_status_with_event(
            ctx,
            claim,
            "Lost",
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        )
        .await?;
        return Ok(());
    }
    let Some(volume) = ctx.volumes.get(&ObjectRef::new(&volume_name)) else {
        update_claim_status_with_event(
            ctx,
            claim,
            "Lost",
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        )
        .await?;
        return Ok(());
    };
    match claim_ref(&volume) {
        None => bind(ctx, &volume, claim).await,
        Some(r) if r.uid.is_some() && r.uid == claim.metadata.uid => {
            bind(ctx, &volume, claim).await
        }
        Some(_) => {
            update_claim_status_with_event(
                ctx,
                claim,
                "Lost",
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await?;
            Ok(())
        }
    }
}

/// Upstream `bind`: the volume first (claimRef, then phase), then the claim (volumeName and
/// annotations, then phase, capacity and access modes). Stops at the first failed write; the
/// next sync finishes the job.
async fn bind(
    ctx: &Ctx,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), SyncError> {
    let volume = bind_volume_to_claim(ctx, volume, claim).await?;
    let volume = update_volume_phase(ctx, &volume, "Bound", None).await?;
    let claim = bind_claim_to_volume(ctx, claim, &volume).await?;
    update_claim_status(ctx, &claim, "Bound", Some(&volume)).await?;
    tracing::info!(volume = %volume.name_any(), claim = %claim_key(&claim), "volume bound to claim");
    Ok(())
}

async fn bind_volume_to_claim(
    ctx: &Ctx,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<PersistentVolume, SyncError> {
    let by_controller = !is_bound_to(volume, claim);
    let mut next = volume.clone();
    let mut dirty = false;
    let current = claim_ref(volume);
    if current.is_none_or(|r| {
        r.name.as_deref() != claim.metadata.name.as_deref()
            || r.namespace.as_deref() != claim.metadata.namespace.as_deref()
            || r.uid.as_deref() != claim.metadata.uid.as_deref()
    }) {
        next.spec.get_or_insert_with(Default::default).claim_ref = Some(reference(claim));
        dirty = true;
    }
    if by_controller && !has_annotation(&next.metadata, ANN_BOUND_BY_CONTROLLER) {
        set_annotation(&mut next.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        dirty = true;
    }
    if !dirty {
        return Ok(volume.clone());
    }
    Ok(Api::<PersistentVolume>::all(ctx.client.clone())
        .replace(&volume.name_any(), &PostParams::default(), &next)
        .await?)
}

async fn bind_claim_to_volume(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<PersistentVolumeClaim, SyncError> {
    let mut next = claim.clone();
    let mut dirty = false;
    let name = volume.name_any();
    if claim_volume_name(claim) != name {
        next.spec.get_or_insert_with(Default::default).volume_name = Some(name);
        if !has_annotation(&next.metadata, ANN_BOUND_BY_CONTROLLER) {
            set_annotation(&mut next.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        }
        dirty = true;
    }
    if !has_annotation(&next.metadata, ANN_BIND_COMPLETED) {
        set_annotation(&mut next.metadata, ANN_BIND_COMPLETED, "yes");
        dirty = true;
    }
    if !dirty {
        return Ok(claim.clone());
    }
    Ok(Api::<PersistentVolumeClaim>::namespaced(
        ctx.client.clone(),
        &claim.namespace().unwrap_or_default(),
    )
    .replace(&claim.name_any(), &PostParams::default(), &next)
    .await?)
}

/// Upstream `updateClaimStatus`: the phase, and the volume's access modes and (when the claim
/// becomes Bound) capacity; without a volume both are cleared.
async fn update_claim_status(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Result<PersistentVolumeClaim, SyncError> {
    let mut next = claim.clone();
    let status = next
        .status
        .get_or_insert_with(PersistentVolumeClaimStatus::default);
    let mut dirty = false;
    let phase_changes = claim_phase(claim) != phase;
    if phase_changes {
        status.phase = Some(phase.into());
        dirty = true;
    }
    match volume {
        None => {
            if status.access_modes.is_some() {
                status.access_modes = None;
                dirty = true;
            }
            if status.capacity.is_some() {
                status.capacity = None;
                dirty = true;
            }
        }
        Some(v) => {
            let modes = v.spec.as_ref().and_then(|s| s.access_modes.clone());
            if status.access_modes != modes {
                status.access_modes = modes;
                dirty = true;
            }
            if phase_changes {
                let cap = v.spec.as_ref().and_then(|s| s.capacity.clone());
                let Some(storage) = cap.as_ref().and_then(|c| c.get("storage")) else {
                    return Err(SyncError::new(format!(
                        "PersistentVolume {:?} is without a storage capacity",
                        v.name_any()
                    )));
                };
                let current = status
                    .capacity
                    .as_ref()
                    .and_then(|c| c.get("storage"))
                    .and_then(|q| kaji_api::quantity::nanos(&q.0));
                if current != kaji_api::quantity::nanos(&storage.0) {
                    status.capacity = cap;
                    dirty = true;
                }
            }
        }
    }
    if !dirty {
        return Ok(claim.clone());
    }
    let api = Api::<PersistentVolumeClaim>::namespaced(
        ctx.client.clone(),
        &claim.namespace().unwrap_or_default(),
    );
    let out = api
        .replace_status(&claim.name_any(), &PostParams::default(), &next)
        .await?;
    if phase_changes {
        tracing::info!(claim = %claim_key(claim), phase, "claim entered phase");
    }
    Ok(out)
}

async fn update_claim_status_with_event(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    phase: &str,
    reason: &str,
    message: &str,
) -> Result<(), SyncError> {
    if claim_phase(claim) == phase {
        return Ok(());
    }
    let updated = update_claim_status(ctx, claim, phase, None).await?;
    ctx.recorder
        .warning(&reference(&updated), reason, message)
        .await;
    Ok(())
}

async fn update_volume_phase(
    ctx: &Ctx,
    volume: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<PersistentVolume, SyncError> {
    if volume_phase(volume) == phase {
        return Ok(volume.clone());
    }
    let mut next = volume.clone();
    let status = next
        .status
        .get_or_insert_with(PersistentVolumeStatus::default);
    status.phase = Some(phase.into());
    status.message = message.map(str::to_string);
    let out = Api::<PersistentVolume>::all(ctx.client.clone())
        .replace_status(&volume.name_any(), &PostParams::default(), &next)
        .await?;
    tracing::info!(volume = %volume.name_any(), phase, "volume entered phase");
    Ok(out)
}

async fn update_volume_phase_with_event(
    ctx: &Ctx,
    volume: &PersistentVolume,
    phase: &str,
    reason: &str,
    message: &str,
) -> Result<PersistentVolume, SyncError> {
    if volume_phase(volume) == phase {
        return Ok(volume.clone());
    }
    let updated = update_volume_phase(ctx, volume, phase, Some(message)).await?;
    ctx.recorder
        .warning(&reference(&updated), reason, message)
        .await;
    Ok(updated)
}

async fn sync_volume(volume: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, SyncError> {
    if !stores_ready(&ctx).await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    sync_volume_once(&ctx, &volume).await?;
    Ok(Action::requeue(RESYNC))
}

async fn sync_volume_once(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
    let Some(r) = claim_ref(volume).cloned() else {
        update_volume_phase(ctx, volume, "Available", None).await?;
        return Ok(());
    };
    if r.uid.as_deref().unwrap_or_default().is_empty() {
        // Pre-bound to a claim that has not been bound yet: the claim's sync does that.
        update_volume_phase(ctx, volume, "Available", None).await?;
        return Ok(());
    }
    let ns = r.namespace.clone().unwrap_or_default();
    let name = r.name.clone().unwrap_or_default();
    let mut claim = ctx
        .claims
        .get(&ObjectRef::new(&name).within(&ns))
        .map(|c| (*c).clone());
    let phase = volume_phase(volume);
    if claim.is_none() && phase != "Released" && phase != "Failed" {
        // The store may be behind a claim just created: ask the API before releasing.
        claim = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&name)
            .await?;
    }
    if claim
        .as_ref()
        .is_some_and(|c| c.metadata.uid.as_deref() != r.uid.as_deref())
    {
        // The claim was deleted and another made with the same name.
        claim = None;
    }
    let Some(claim) = claim else {
        let mut volume = volume.clone();
        if phase != "Released" && phase != "Failed" {
            tracing::info!(volume = %volume.name_any(), policy = ?reclaim_policy(&volume), "volume is released and its reclaim policy will be executed");
            volume = update_volume_phase(ctx, &volume, "Released", None).await?;
        }
        return reclaim_volume(ctx, &volume).await;
    };
    let claim_volume = claim_volume_name(&claim);
    if claim_volume.is_empty() {
        if volume_mode_mismatch(&claim, volume) {
            ctx.recorder
                .warning(
                    &reference(volume),
                    "VolumeMismatch",
                    &format!(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due to incompatible volumeMode.",
                        claim.name_any()
                    ),
                )
                .await;
            ctx.recorder
                .warning(
                    &reference(&claim),
                    "VolumeMismatch",
                    &format!(
                        "Cannot bind PersistentVolume {:?} to requested PersistentVolumeClaim due to incompatible volumeMode.",
                        volume.name_any()
                    ),
                )
                .await;
        }
        // Bound here, Pending there: the claim's sync (triggered by this volume) finishes it.
        return Ok(());
    }
    if claim_volume == volume.name_any() {
        update_volume_phase(ctx, volume, "Bound", None).await?;
        return Ok(());
    }
    // The claim is bound to another volume.
    if has_annotation(&volume.metadata, ANN_DYNAMICALLY_PROVISIONED)
        && reclaim_policy(volume) == "Delete"
    {
        let mut volume = volume.clone();
        if phase != "Released" && phase != "Failed" {
            volume = update_volume_phase(ctx, &volume, "Released", None).await?;
        }
        return reclaim_volume(ctx, &volume).await;
    }
    unbind_volume(ctx, volume).await
}

/// The reclaim policy; an object written without the API's defaulting has none: Retain.
fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("Retain")
}

/// Upstream `unbindVolume`: a volume the controller bound loses its claimRef; one the user
/// pre-bound keeps it without the uid. Then it is Available.
async fn unbind_volume(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
    let mut next = volume.clone();
    if has_annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER) {
        if let Some(s) = next.spec.as_mut() {
            s.claim_ref = None;
        }
        if let Some(a) = next.metadata.annotations.as_mut() {
            a.remove(ANN_BOUND_BY_CONTROLLER);
            if a.is_empty() {
                next.metadata.annotations = None;
            }
        }
    } else if let Some(r) = next.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        r.uid = None;
    }
    let updated = Api::<PersistentVolume>::all(ctx.client.clone())
        .replace(&volume.name_any(), &PostParams::default(), &next)
        .await?;
    update_volume_phase(ctx, &updated, "Available", None).await?;
    Ok(())
}

async fn reclaim_volume(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
    match reclaim_policy(volume) {
        "Retain" => Ok(()),
        "Recycle" => {
            update_volume_phase_with_event(
                ctx,
                volume,
                "Failed",
                "VolumeFailedRecycle",
                "No recycler plugin found for the volume!",
            )
            .await?;
            Ok(())
        }
        "Delete" => delete_volume(ctx, volume).await,
        _ => {
            update_volume_phase_with_event(
                ctx,
                volume,
                "Failed",
                "VolumeUnknownReclaimPolicy",
                "Volume has unrecognized PersistentVolumeReclaimPolicy",
            )
            .await?;
            Ok(())
        }
    }
}

/// Upstream `deleteVolumeOperation` for the one deleter that needs no cloud: hostPath.
async fn delete_volume(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    let Some(fresh) = api.get_opt(&volume.name_any()).await? else {
        return Ok(());
    };
    if fresh.metadata.deletion_timestamp.is_some() || !is_released(ctx, &fresh) {
        return Ok(());
    }
    match delete_storage(&fresh) {
        Ok(true) => {
            tracing::info!(volume = %fresh.name_any(), "volume deleted");
            match api
                .delete(&fresh.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        // An external provisioner deletes its own volumes.
        Ok(false) => Ok(()),
        Err(message) => {
            update_volume_phase_with_event(ctx, &fresh, "Failed", "VolumeFailedDelete", &message)
                .await?;
            Ok(())
        }
    }
}

/// Upstream `isVolumeReleased`: bound (with a uid) to a claim that is gone, replaced, or bound
/// elsewhere.
fn is_released(ctx: &Ctx, v: &PersistentVolume) -> bool {
    let Some(r) = claim_ref(v) else { return false };
    let Some(uid) = r.uid.as_deref().filter(|u| !u.is_empty()) else {
        return false;
    };
    let claim = ctx.claims.get(
        &ObjectRef::new(r.name.as_deref().unwrap_or_default())
            .within(r.namespace.as_deref().unwrap_or_default()),
    );
    match claim {
        Some(c) if c.metadata.uid.as_deref() == Some(uid) => {
            let bound = claim_volume_name(&c);
            !bound.is_empty() && bound != v.name_any()
        }
        _ => true,
    }
}

/// Deletes what the volume stores: Ok(true) when done, Ok(false) when an external provisioner
/// owns it, Err with upstream's message when no deleter applies or it fails.
fn delete_storage(v: &PersistentVolume) -> Result<bool, String> {
    if let Some(p) = v.annotations().get(ANN_DYNAMICALLY_PROVISIONED)
        && !p.is_empty()
        && !p.starts_with("kubernetes.io/")
    {
        return Ok(false);
    }
    let Some(hp) = v.spec.as_ref().and_then(|s| s.host_path.as_ref()) else {
        return Err(format!(
            "Error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
            v.name_any()
        ));
    };
    // Upstream's hostPath deleter only deletes paths matching the (unanchored) regexp `/tmp/.+`.
    if !hp
        .path
        .match_indices("/tmp/")
        .any(|(i, _)| hp.path.len() > i + "/tmp/".len())
    {
        return Err(format!(
            "host_path deleter only supports /tmp/.+ but received provided {}",
            hp.path
        ));
    }
    match std::fs::remove_dir_all(&hp.path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => std::fs::remove_file(&hp.path)
            .map(|()| true)
            .map_err(|e| format!("unlinkat {}: {e}", hp.path)),
        Err(e) => Err(format!("unlinkat {}: {e}", hp.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostPathVolumeSource, PersistentVolumeSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> Arc<PersistentVolume> {
        Arc::new(PersistentVolume {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: (!class.is_empty()).then(|| class.to_string()),
                host_path: Some(HostPathVolumeSource {
                    path: "/tmp/x".into(),
                    type_: None,
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn host_path_deleter_only_under_tmp() {
        let mut v = (*pv("v", "1Gi", &["ReadWriteOnce"], "")).clone();
        v.spec.as_mut().unwrap().host_path.as_mut().unwrap().path = "/data/x".into();
        assert_eq!(
            delete_storage(&v),
            Err("host_path deleter only supports /tmp/.+ but received provided /data/x".into())
        );
        let dir = tempfile_dir();
        std::fs::write(dir.join("f"), b"x").unwrap();
        v.spec.as_mut().unwrap().host_path.as_mut().unwrap().path =
            dir.to_string_lossy().into_owned();
        assert_eq!(delete_storage(&v), Ok(true));
        assert!(!dir.exists());
        v.spec.as_mut().unwrap().host_path = None;
        assert!(
            delete_storage(&v)
                .unwrap_err()
                .contains("no deletable volume plugin matched")
        );
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::path::PathBuf::from(format!(
            "/tmp/kaji-pv-test-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
