//! policy/v1: PodDisruptionBudgets (upstream pkg/registry/policy/poddisruptionbudget and
//! ValidatePodDisruptionBudget): a new budget starts with a zero status (no disruption allowed
//! until the disruption controller has computed it), spec changes bump the generation, and
//! validation refuses both minAvailable and maxUnavailable, negative or over-100% values,
//! malformed percentages, a bad selector and an unknown unhealthyPodEvictionPolicy. (Eviction is
//! the pods/eviction subresource, `core::pod::eviction`.)

use super::{Strategy, info};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct PodDisruptionBudgetStrategy;

static INFO: ResourceInfo = info("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], &["status"]);

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(PodDisruptionBudgetStrategy));
}

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// Upstream ValidatePositiveIntOrPercent and IsNotMoreThan100Percent.
fn validate_int_or_percent(v: &Value, field: &str, errs: &mut Vec<FieldError>) {
    match v {
        Value::Number(n) if n.as_i64().is_none_or(|n| n < 0) => {
            errs.push(FieldError::invalid(field, v, "must be greater than or equal to 0"));
        }
        Value::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or_default();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                errs.push(FieldError::invalid(field, v, PERCENT_MSG));
            } else if digits.parse::<u64>().is_ok_and(|p| p > 100) {
                errs.push(FieldError::invalid(field, v, "must not be greater than 100%"));
            }
        }
        _ => {}
    }
}

impl Strategy for PodDisruptionBudgetStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            errs.push(FieldError::invalid("spec", &spec, "minAvailable and maxUnavailable cannot be both set"));
        }
        if let Some(v) = min {
            validate_int_or_percent(v, "spec.minAvailable", &mut errs);
        }
        if let Some(v) = max {
            validate_int_or_percent(v, "spec.maxUnavailable", &mut errs);
        }
        if let Some(sel) = spec.get("selector").filter(|v| !v.is_null())
            && let Err(e) = kaji_api::selector::LabelSelector::from_object(sel)
        {
            errs.push(FieldError::invalid("spec.selector", sel, &e));
        }
        if let Some(p) = spec.get("unhealthyPodEvictionPolicy").and_then(Value::as_str)
            && !["AlwaysAllow", "IfHealthyBudget"].contains(&p)
        {
            errs.push(FieldError::not_supported("spec.unhealthyPodEvictionPolicy", p, &["AlwaysAllow", "IfHealthyBudget"]));
        }
        errs
    }
    /// Upstream ValidatePodDisruptionBudgetStatusUpdate: the counts are not negative.
    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for field in ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"] {
            if let Some(v) = new.pointer(&format!("/status/{field}")).filter(|v| v.as_i64().is_some_and(|n| n < 0)) {
                errs.push(FieldError::invalid(format!("status.{field}"), v, "must be greater than or equal to 0"));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(spec: Value) -> Vec<String> {
        PodDisruptionBudgetStrategy
            .validate(&json!({"metadata": {"name": "b"}, "spec": spec}))
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn validation_as_upstream() {
        assert!(errs(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "a"}}})).is_empty());
        assert!(errs(json!({"maxUnavailable": "50%", "selector": {}})).is_empty());
        assert_eq!(
            errs(json!({"minAvailable": 1, "maxUnavailable": 1})),
            ["spec: Invalid value: \"object\": minAvailable and maxUnavailable cannot be both set"]
        );
        assert_eq!(errs(json!({"minAvailable": -1})), ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(
            errs(json!({"maxUnavailable": "120%"})),
            ["spec.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%"]
        );
        assert_eq!(errs(json!({"maxUnavailable": "x%"})), [format!("spec.maxUnavailable: Invalid value: \"x%\": {PERCENT_MSG}")]);
        assert_eq!(
            errs(json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"})),
            ["spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""]
        );
    }
}
