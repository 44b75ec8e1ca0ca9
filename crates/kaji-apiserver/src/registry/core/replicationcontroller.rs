//! ReplicationControllers (legacy): a map selector defaulted from the template labels.

use crate::registry::{ScaleSpec, Strategy, info, podspec};
use kaji_api::{FieldError, ResourceInfo, selector::LabelSelector};
use serde_json::{Value, json};

pub struct ReplicationControllerStrategy;

static INFO: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, &["rc"], &["status", "scale"])
};

impl Strategy for ReplicationControllerStrategy {
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
        Some(ScaleSpec { selector_is_label_selector: false })
    }
    fn default(&self, obj: &mut Value) {
        let labels = obj.pointer("/spec/template/metadata/labels").cloned();
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            if spec.get("selector").is_none_or(|s| s.as_object().is_none_or(|m| m.is_empty()))
                && let Some(l) = labels.clone()
            {
                spec["selector"] = l;
            }
            if spec.get("replicas").is_none_or(Value::is_null) {
                spec["replicas"] = json!(1);
            }
            podspec::default_template(spec);
        }
        if obj.pointer("/metadata/labels").is_none()
            && let Some(l) = labels
        {
            obj["metadata"]["labels"] = l;
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let sel = obj.pointer("/spec/selector").and_then(Value::as_object);
        match sel {
            None => errs.push(FieldError::required("spec.selector", "")),
            Some(m) if m.is_empty() => errs.push(FieldError::required("spec.selector", "")),
            Some(m) => {
                if !LabelSelector::from_map(m).matches_object(obj.pointer("/spec/template").unwrap_or(&Value::Null)) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        obj.pointer("/spec/template/metadata/labels").unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        errs.extend(podspec::validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec"));
        errs
    }
}
