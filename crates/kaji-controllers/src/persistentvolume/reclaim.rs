//! A released volume's reclaim policy (upstream `reclaimVolume`, `deleteVolumeOperation`,
//! `isVolumeReleased`): Retain keeps it, Delete removes a hostPath directory under `/tmp/` and
//! then the volume, Recycle and unknown policies fail the volume.

use super::binder::update_volume_phase_with_event;
use super::{ANN_DYNAMICALLY_PROVISIONED, Ctx, SyncError, claim_ref, claim_volume_name};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::ObjectRef;

/// The reclaim policy; an object written without the API's defaulting has none: Retain.
pub(super) fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("Retain")
}

pub(super) async fn reclaim_volume(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
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
pub(super) async fn delete_volume(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), SyncError> {
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
pub(super) fn is_released(ctx: &Ctx, v: &PersistentVolume) -> bool {
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
pub(super) fn delete_storage(v: &PersistentVolume) -> Result<bool, String> {
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
    use k8s_openapi::api::core::v1::{
        HostPathVolumeSource, PersistentVolumeSpec, PersistentVolumeStatus,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::sync::Arc;

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
