//! The claim and volume syncs of the binder (upstream `pv_controller.go`: syncClaim,
//! syncUnboundClaim, syncBoundClaim, syncVolume, bind, unbindVolume, updateClaimStatus,
//! updateVolumePhase, and the events when no volume matches).

use super::reclaim::{reclaim_policy, reclaim_volume};
use super::{
    ANN_DYNAMICALLY_PROVISIONED, ANN_STORAGE_PROVISIONER, ANN_STORAGE_PROVISIONER_BETA, Ctx,
    RESYNC, SyncError, claim_key, claim_phase, claim_ref, claim_volume_name, has_annotation,
    set_annotation, stores_ready, volume_phase,
};
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kaji_runtime::events::reference;
use kaji_runtime::volume::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, check_volume_satisfies_claim,
    claim_class, find_best_match, is_bound_to, volume_mode_mismatch,
};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn sync_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, SyncError> {
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
pub(super) async fn delay_binding(
    ctx: &Ctx,
    class: &str,
) -> Result<(bool, Option<StorageClass>), SyncError> {
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

pub(super) async fn sync_unbound_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<(), SyncError> {
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

pub(super) fn claim_ref_of(v: &PersistentVolume) -> Option<&ObjectReference> {
    claim_ref(v)
}

/// Names of the pods that use the claim and wait for a node (upstream
/// `findNonScheduledPodsByPVC`).
pub(super) async fn unscheduled_pods_using(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Vec<String> {
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

/// A claim with a class and no volume: as upstream, the binder has no in-tree provisioner; it
/// reports a missing class or an unknown in-tree provisioner, or hands the claim to an external
/// provisioner by annotating it (the local-path provisioner, `super::provisioner`, is one).
pub(super) async fn provision_claim(
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

pub(super) async fn sync_bound_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<(), SyncError> {
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
pub(super) async fn bind(
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

pub(super) async fn bind_volume_to_claim(
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

pub(super) async fn bind_claim_to_volume(
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
pub(super) async fn update_claim_status(
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

pub(super) async fn update_claim_status_with_event(
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

pub(super) async fn update_volume_phase(
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

pub(super) async fn update_volume_phase_with_event(
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

pub(super) async fn sync_volume(
    volume: Arc<PersistentVolume>,
    ctx: Arc<Ctx>,
) -> Result<Action, SyncError> {
    if !stores_ready(&ctx).await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    sync_volume_once(&ctx, &volume).await?;
    Ok(Action::requeue(RESYNC))
}

pub(super) async fn sync_volume_once(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<(), SyncError> {
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

/// Upstream `unbindVolume`: a volume the controller bound loses its claimRef; one the user
/// pre-bound keeps it without the uid. Then it is Available.
pub(super) async fn unbind_volume(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
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
