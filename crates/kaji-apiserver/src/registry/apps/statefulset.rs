//! StatefulSets: upstream defaults (OrderedReady, RollingUpdate partition 0, PVC retention Retain).

use crate::registry::{ScaleSpec, Strategy, default_key, info, podspec};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct StatefulSetStrategy;

static INFO: ResourceInfo =
    ResourceInfo { categories: &["all"], ..info("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], &["status", "scale"]) };

impl Strategy for StatefulSetStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn scale(&self) -> Option<ScaleSpec> {
        Some(ScaleSpec { selector_is_label_selector: true })
    }
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        default_key(spec, "replicas", json!(1));
        default_key(spec, "podManagementPolicy", json!("OrderedReady"));
        default_key(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        default_key(spec, "revisionHistoryLimit", json!(10));
        default_key(spec, "persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        if let Some(claims) = spec.get_mut("volumeClaimTemplates").and_then(Value::as_array_mut) {
            for c in claims {
                if let Some(s) = c.get_mut("spec") {
                    default_key(s, "volumeMode", json!("Filesystem"));
                }
            }
        }
        podspec::default_template(spec);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0, "availableReplicas": 0});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        podspec::validate_selector_and_template(obj, "statefulset")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        super::validate_workload_update(new, old, "statefulset")
    }
}
