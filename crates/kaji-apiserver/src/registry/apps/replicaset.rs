//! ReplicaSets: replicas default 1, selector validation, scale subresource.

use crate::registry::{ScaleSpec, Strategy, default_key, info, podspec};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct ReplicaSetStrategy;

static INFO: ResourceInfo =
    ResourceInfo { categories: &["all"], ..info("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], &["status", "scale"]) };

impl Strategy for ReplicaSetStrategy {
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
        podspec::default_template(spec);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        podspec::validate_selector_and_template(obj, "replicaset")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        super::validate_workload_update(new, old, "replicaset")
    }
}
