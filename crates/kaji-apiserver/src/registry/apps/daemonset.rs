//! DaemonSets: RollingUpdate maxUnavailable 1 / maxSurge 0 by default.

use crate::registry::{Strategy, default_key, info, podspec};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct DaemonSetStrategy;

static INFO: ResourceInfo =
    ResourceInfo { categories: &["all"], ..info("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], &["status"]) };

impl Strategy for DaemonSetStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        default_key(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        default_key(spec, "revisionHistoryLimit", json!(10));
        podspec::default_template(spec);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        podspec::validate_selector_and_template(obj, "daemonset")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        super::validate_workload_update(new, old, "daemonset")
    }
}
