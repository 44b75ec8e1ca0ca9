//! DaemonSets (upstream pkg/registry/apps/daemonset and ValidateDaemonSet): RollingUpdate
//! maxUnavailable 1 / maxSurge 0 and revisionHistoryLimit 10 by default; the template
//! generation kept in the `deprecated.daemonset.template.generation` annotation (1 at create,
//! +1 whenever the template changes; users cannot set it); validation of the selector against
//! the template, restartPolicy Always, no activeDeadlineSeconds, the update strategy; the
//! selector is immutable.

use crate::registry::{Strategy, default_key, info, podspec};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct DaemonSetStrategy;

static INFO: ResourceInfo =
    ResourceInfo { categories: &["all"], ..info("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], &["status"]) };

const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn template_generation(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/annotations")?.get(TEMPLATE_GENERATION)?.as_str()?.parse().ok()
}

fn set_template_generation(obj: &mut Value, g: i64) {
    let Some(meta) = crate::registry::child(obj, "metadata") else { return };
    let Some(ann) = crate::registry::child(meta, "annotations") else { return };
    ann[TEMPLATE_GENERATION] = json!(g.to_string());
}

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
        default_key(spec, "updateStrategy", json!({}));
        if let Some(us) = spec.get_mut("updateStrategy").filter(|u| u.is_object()) {
            default_key(us, "type", json!("RollingUpdate"));
            if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                default_key(us, "rollingUpdate", json!({}));
                if let Some(ru) = us.get_mut("rollingUpdate").filter(|r| r.is_object()) {
                    default_key(ru, "maxUnavailable", json!(1));
                    default_key(ru, "maxSurge", json!(0));
                }
            }
        }
        default_key(spec, "revisionHistoryLimit", json!(10));
        podspec::default_template(spec);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
        let g = template_generation(obj).filter(|g| *g >= 1).unwrap_or(1);
        set_template_generation(obj, g);
    }
    /// Upstream PrepareForUpdate: the template generation is the server's; a template change
    /// bumps it.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let mut g = template_generation(old).unwrap_or(1);
        if new.pointer("/spec/template") != old.pointer("/spec/template") {
            g += 1;
        }
        set_template_generation(new, g);
    }
    /// Spec changes bump the generation (not the template-generation annotation).
    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = podspec::validate_selector_and_template(obj, "daemonset");
        if let Some(rp) = obj.pointer("/spec/template/spec/restartPolicy").and_then(Value::as_str)
            && rp != "Always"
        {
            errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", rp, &["Always"]));
        }
        if let Some(ads) = obj.pointer("/spec/template/spec/activeDeadlineSeconds").filter(|v| !v.is_null()) {
            errs.push(FieldError::invalid("spec.template.spec.activeDeadlineSeconds", ads, "activeDeadlineSeconds in DaemonSet is not Supported"));
        }
        for field in ["minReadySeconds", "revisionHistoryLimit"] {
            if let Some(v) = obj.pointer(&format!("/spec/{field}")).filter(|v| v.as_i64().is_some_and(|n| n < 0)) {
                errs.push(FieldError::invalid(format!("spec.{field}"), v, "must be greater than or equal to 0"));
            }
        }
        errs.extend(validate_update_strategy(obj.pointer("/spec/updateStrategy")));
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(crate::registry::immutable(new, old, "/spec/selector", "spec.selector"));
        errs
    }
    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for field in [
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "collisionCount",
        ] {
            if let Some(v) = new.pointer(&format!("/status/{field}")).filter(|v| v.as_i64().is_some_and(|n| n < 0)) {
                errs.push(FieldError::invalid(format!("status.{field}"), v, "must be greater than or equal to 0"));
            }
        }
        errs
    }
}

/// An int-or-percent's value: the int, or the percent's number (None: not a valid percent).
fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => {
            let digits = s.strip_suffix('%')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().map(|n| (n, true))
        }
        _ => None,
    }
}

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// Upstream ValidatePositiveIntOrPercent and IsNotMoreThan100Percent for one field.
fn validate_int_or_percent(v: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) -> i64 {
    let Some(v) = v.filter(|v| !v.is_null()) else { return 0 };
    match int_or_percent(v) {
        None if v.is_string() => {
            errs.push(FieldError::invalid(field, v, PERCENT_MSG));
            0
        }
        None => 0,
        Some((n, percent)) => {
            if n < 0 {
                errs.push(FieldError::invalid(field, &json!(n), "must be greater than or equal to 0"));
            }
            if percent && n > 100 {
                errs.push(FieldError::invalid(field, v, "must not be greater than 100%"));
            }
            n
        }
    }
}

/// Upstream ValidateDaemonSetUpdateStrategy and ValidateRollingUpdateDaemonSet.
fn validate_update_strategy(us: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(us) = us.filter(|u| u.is_object()) else { return errs };
    let ty = us.get("type").and_then(Value::as_str).unwrap_or_default();
    match ty {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = us.get("rollingUpdate").filter(|r| r.is_object()) else {
                errs.push(FieldError::required("spec.updateStrategy.rollingUpdate", ""));
                return errs;
            };
            let unavailable = validate_int_or_percent(ru.get("maxUnavailable"), "spec.updateStrategy.rollingUpdate.maxUnavailable", &mut errs);
            let surge = validate_int_or_percent(ru.get("maxSurge"), "spec.updateStrategy.rollingUpdate.maxSurge", &mut errs);
            match (unavailable != 0, surge != 0) {
                (true, true) => errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    ru.get("maxSurge").unwrap_or(&Value::Null),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => errs.push(FieldError::required("spec.updateStrategy.rollingUpdate.maxUnavailable", "cannot be 0 when maxSurge is 0")),
                _ => {}
            }
        }
        other => errs.push(FieldError::not_supported("spec.updateStrategy", other, &["RollingUpdate", "OnDelete"])),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(extra: Value) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "a"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        merge(&mut d, extra);
        DaemonSetStrategy.default(&mut d);
        d
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| format!("{}: {}", e.field, e.detail)).collect()
    }

    #[test]
    fn defaults_and_template_generation() {
        let mut d = ds(json!({}));
        assert_eq!(d.pointer("/spec/updateStrategy"), Some(&json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})));
        assert_eq!(d.pointer("/spec/revisionHistoryLimit"), Some(&json!(10)));
        DaemonSetStrategy.prepare_for_create(&mut d);
        assert_eq!(template_generation(&d), Some(1));
        let mut same = d.clone();
        same["spec"]["minReadySeconds"] = json!(5);
        DaemonSetStrategy.prepare_for_update(&mut same, &d);
        assert_eq!(template_generation(&same), Some(1));
        let mut changed = same.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        changed["metadata"]["annotations"][TEMPLATE_GENERATION] = json!("7");
        DaemonSetStrategy.prepare_for_update(&mut changed, &same);
        assert_eq!(template_generation(&changed), Some(2));
        assert!(DaemonSetStrategy.validate(&d).is_empty(), "{:?}", DaemonSetStrategy.validate(&d));
    }

    #[test]
    fn validation_as_upstream() {
        let d = ds(json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}));
        assert_eq!(
            fields(&DaemonSetStrategy.validate(&d)),
            ["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
        );
        let d = ds(json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}}));
        assert_eq!(
            fields(&DaemonSetStrategy.validate(&d)),
            ["spec.template.metadata.labels: Invalid value: \"object\": `selector` does not match template `labels`"]
        );
        let d = ds(json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}}));
        assert_eq!(
            fields(&DaemonSetStrategy.validate(&d)),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        let d = ds(json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "20%"}}}}));
        assert_eq!(
            fields(&DaemonSetStrategy.validate(&d)),
            ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"20%\": may not be set when maxUnavailable is non-zero"]
        );
        let d = ds(json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%", "maxSurge": 0}}}}));
        assert_eq!(
            fields(&DaemonSetStrategy.validate(&d)),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        let d = ds(json!({"spec": {"updateStrategy": {"type": "Sometimes"}}}));
        assert_eq!(
            fields(&DaemonSetStrategy.validate(&d)),
            ["spec.updateStrategy: Unsupported value: \"Sometimes\": supported values: \"RollingUpdate\", \"OnDelete\""]
        );
        let old = ds(json!({}));
        let new = ds(json!({"spec": {"selector": {"matchLabels": {"app": "a", "x": "y"}}, "template": {"metadata": {"labels": {"x": "y"}}}}}));
        let errs = fields(&DaemonSetStrategy.validate_update(&new, &old));
        assert_eq!(errs, ["spec.selector: Invalid value: \"object\": field is immutable"]);
    }
}
