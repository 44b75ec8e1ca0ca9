//! ResourceQuotas (upstream `pkg/registry/core/resourcequota`): `status` is written only through
//! the status subresource (the controller and quota admission keep it), and `spec.hard` amounts
//! must be quantities that are not negative, as upstream's ValidateResourceQuota says.

use crate::registry::{Strategy, info};
use kaji_api::quantity::milli_value;
use kaji_api::{FieldError, ResourceInfo};
use serde_json::Value;

pub struct ResourceQuotaStrategy;

static INFO: ResourceInfo = info("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"], &["status"]);

const SCOPES: &[&str] = &["Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity", "VolumeAttributesClass"];

impl Strategy for ResourceQuotaStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (k, v) in obj.pointer("/spec/hard").and_then(Value::as_object).into_iter().flatten() {
            match v.as_str().and_then(milli_value) {
                None => errs.push(FieldError::invalid(format!("spec.hard[{k}]"), v, "must be a valid quantity")),
                Some(n) if n < 0 => errs.push(FieldError::invalid(format!("spec.hard[{k}]"), v, "must be greater than or equal to 0")),
                _ => {}
            }
        }
        for (i, s) in obj.pointer("/spec/scopes").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let s = s.as_str().unwrap_or_default();
            if !SCOPES.contains(&s) {
                errs.push(FieldError::not_supported(format!("spec.scopes[{i}]"), s, SCOPES));
            }
        }
        errs
    }
    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for key in ["hard", "used"] {
            for (k, v) in new.pointer(&format!("/status/{key}")).and_then(Value::as_object).into_iter().flatten() {
                match v.as_str().and_then(milli_value) {
                    None => errs.push(FieldError::invalid(format!("status.{key}[{k}]"), v, "must be a valid quantity")),
                    Some(n) if n < 0 => errs.push(FieldError::invalid(format!("status.{key}[{k}]"), v, "must be greater than or equal to 0")),
                    _ => {}
                }
            }
        }
        errs
    }
}
