//! Deployments: upstream defaults (RollingUpdate 25%/25%, revisionHistoryLimit 10,
//! progressDeadlineSeconds 600) and validation; the scale subresource.

use crate::registry::{ScaleSpec, Strategy, default_key, info, podspec};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct DeploymentStrategy;

static INFO: ResourceInfo =
    ResourceInfo { categories: &["all"], ..info("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], &["status", "scale"]) };

impl Strategy for DeploymentStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    /// Upstream's PrepareForUpdate: spec changes bump the generation, and so do annotation
    /// changes, because annotations are copied from a Deployment to its ReplicaSets. (The
    /// deployment controller writes its revision annotation through the status subresource.)
    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec") || new.pointer("/metadata/annotations") != old.pointer("/metadata/annotations")
    }
    /// Upstream's deploymentStatusStrategy: a status update keeps the stored spec and labels but
    /// takes the new annotations (how the deployment controller records revisions).
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let mut merged = old.clone();
        match new.get("status") {
            Some(s) => merged["status"] = s.clone(),
            None => {
                merged.as_object_mut().map(|m| m.remove("status"));
            }
        }
        match new.pointer("/metadata/annotations") {
            Some(a) => merged["metadata"]["annotations"] = a.clone(),
            None => {
                merged.get_mut("metadata").and_then(Value::as_object_mut).map(|m| m.remove("annotations"));
            }
        }
        *new = merged;
    }
    fn scale(&self) -> Option<ScaleSpec> {
        Some(ScaleSpec { selector_is_label_selector: true })
    }
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        default_key(spec, "replicas", json!(1));
        default_key(spec, "strategy", json!({}));
        if let Some(strategy) = spec.get_mut("strategy") {
            default_key(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                default_key(strategy, "rollingUpdate", json!({}));
                if let Some(ru) = strategy.get_mut("rollingUpdate") {
                    default_key(ru, "maxUnavailable", json!("25%"));
                    default_key(ru, "maxSurge", json!("25%"));
                }
            }
        }
        default_key(spec, "revisionHistoryLimit", json!(10));
        default_key(spec, "progressDeadlineSeconds", json!(600));
        podspec::default_template(spec);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = podspec::validate_selector_and_template(obj, "deployment");
        let ty = obj.pointer("/spec/strategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
        if !["Recreate", "RollingUpdate"].contains(&ty) {
            errs.push(FieldError::not_supported("spec.strategy.type", ty, &["Recreate", "RollingUpdate"]));
        }
        if ty == "Recreate" && obj.pointer("/spec/strategy/rollingUpdate").is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"));
        }
        let zero = |v: Option<&Value>| match v {
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s == "0%" || s == "0",
            _ => false,
        };
        if zero(obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable")) && zero(obj.pointer("/spec/strategy/rollingUpdate/maxSurge")) {
            errs.push(FieldError::invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable").unwrap_or(&Value::Null),
                "may not be 0 when `maxSurge` is 0",
            ));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(crate::registry::immutable(new, old, "/spec/selector", "spec.selector"));
        errs
    }
}
