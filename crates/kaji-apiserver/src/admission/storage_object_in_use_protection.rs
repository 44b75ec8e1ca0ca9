//! StorageObjectInUseProtection (upstream
//! `plugin/pkg/admission/storage/storageobjectinuseprotection`): every new PersistentVolumeClaim
//! gets the `kubernetes.io/pvc-protection` finalizer and every new PersistentVolume
//! `kubernetes.io/pv-protection`, so deleting one that is in use (a claim a pod mounts, a bound
//! volume) leaves it Terminating until the protection controllers see it unused.

use crate::objects;
use kaji_api::ResourceInfo;
use serde_json::{Value, json};

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

pub fn admit(info: &ResourceInfo, obj: &mut Value) {
    let finalizer = match (info.group, info.plural) {
        ("", "persistentvolumeclaims") => PVC_PROTECTION,
        ("", "persistentvolumes") => PV_PROTECTION,
        _ => return,
    };
    if objects::finalizers(obj).iter().any(|f| f == finalizer) {
        return;
    }
    let meta = objects::meta_mut(obj);
    match meta.get_mut("finalizers").and_then(Value::as_array_mut) {
        Some(list) => list.push(json!(finalizer)),
        None => {
            meta.insert("finalizers".into(), json!([finalizer]));
        }
    }
}
