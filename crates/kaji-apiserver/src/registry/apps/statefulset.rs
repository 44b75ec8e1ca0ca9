//! StatefulSets: upstream defaults (OrderedReady, RollingUpdate partition 0, PVC retention Retain)
//! and validation (pkg/apis/apps/validation `ValidateStatefulSet`/`ValidateStatefulSetUpdate`).

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
        let mut errs = podspec::validate_selector_and_template(obj, "statefulset");
        errs.extend(validate_spec(obj.get("spec").unwrap_or(&Value::Null)));
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = podspec::validate_selector_and_template(new, "statefulset");
        errs.extend(validate_spec(new.get("spec").unwrap_or(&Value::Null)));
        if !only_mutable_fields_changed(new, old) {
            errs.push(FieldError::forbidden("spec", FORBIDDEN_UPDATE));
        }
        errs
    }
}

/// ControllerRevisions (the StatefulSet's and DaemonSet's history): upstream
/// `ValidateControllerRevision` (data required, revision not negative) and
/// `ValidateControllerRevisionUpdate` (data immutable).
pub struct ControllerRevisionStrategy;

static REVISION_INFO: ResourceInfo =
    info("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, &[], &[]);

impl Strategy for ControllerRevisionStrategy {
    fn info(&self) -> &ResourceInfo {
        &REVISION_INFO
    }
    fn has_status(&self) -> bool {
        false
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj.get("data").is_none_or(Value::is_null) {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        non_negative(obj, "revision", "revision", &mut errs);
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(crate::registry::immutable(new, old, "/data", "data"));
        errs
    }
}

/// Upstream `ValidateStatefulSetUpdate`'s message (1.27+).
const FORBIDDEN_UPDATE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// The spec fields an update may change.
const MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn only_mutable_fields_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            for k in MUTABLE {
                m.remove(*k);
            }
        }
        spec
    };
    strip(new) == strip(old)
}

fn non_negative(spec: &Value, key: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = spec.get(key).filter(|v| v.as_i64().is_some_and(|n| n < 0)) {
        errs.push(FieldError::invalid(field, v, "must be greater than or equal to 0"));
    }
}

/// Upstream `ValidateStatefulSetSpec` beyond the selector and the pod template.
fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match spec.get("podManagementPolicy").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        Some("OrderedReady" | "Parallel") => {}
        Some(other) => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            &json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match strategy.get("type").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.updateStrategy", "")),
        Some("OnDelete") => {
            if let Some(r) = rolling {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    r,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            if let Some(r) = rolling {
                non_negative(r, "partition", "spec.updateStrategy.rollingUpdate.partition", &mut errs);
                if let Some(m) = r.get("maxUnavailable").filter(|m| !m.is_null()) {
                    let positive = match m {
                        Value::Number(n) => n.as_i64().is_some_and(|n| n > 0),
                        Value::String(s) => s
                            .strip_suffix('%')
                            .and_then(|p| p.parse::<i64>().ok())
                            .is_some_and(|p| p > 0 && p <= 100),
                        _ => false,
                    };
                    if !positive {
                        errs.push(FieldError::invalid(
                            "spec.updateStrategy.rollingUpdate.maxUnavailable",
                            m,
                            "must be greater than 0",
                        ));
                    }
                }
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            &json!(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let policy = spec.get("persistentVolumeClaimRetentionPolicy").unwrap_or(&Value::Null);
    for (key, field) in [
        ("whenDeleted", "spec.persistentVolumeClaimRetentionPolicy.whenDeleted"),
        ("whenScaled", "spec.persistentVolumeClaimRetentionPolicy.whenScaled"),
    ] {
        if let Some(v) = policy.get(key).and_then(Value::as_str)
            && v != "Retain"
            && v != "Delete"
        {
            errs.push(FieldError::not_supported(field, v, &["Retain", "Delete"]));
        }
    }
    non_negative(spec, "minReadySeconds", "spec.minReadySeconds", &mut errs);
    if let Some(ord) = spec.get("ordinals") {
        non_negative(ord, "start", "spec.ordinals.start", &mut errs);
    }
    let restart = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    if restart != "Always" {
        errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", restart, &["Always"]));
    }
    if spec.pointer("/template/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        let mut v = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "serviceName": "web",
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        StatefulSetStrategy.default(&mut v);
        v
    }

    #[test]
    fn defaults_validate() {
        let v = sts();
        assert_eq!(v["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(v["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        assert!(StatefulSetStrategy.validate(&v).is_empty(), "{:?}", StatefulSetStrategy.validate(&v));
    }

    #[test]
    fn update_may_change_only_some_fields() {
        let old = sts();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        assert!(StatefulSetStrategy.validate_update(&new, &old).is_empty());
        new["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = json!("data");
        let errs = StatefulSetStrategy.validate_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        assert!(errs[0].detail.starts_with("Forbidden: updates to statefulset spec"));
    }

    #[test]
    fn bad_strategies_are_refused() {
        let mut v = sts();
        v["spec"]["updateStrategy"] = json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        v["spec"]["podManagementPolicy"] = json!("Random");
        v["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = json!("Keep");
        let fields: Vec<String> = StatefulSetStrategy.validate(&v).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, [
            "spec.podManagementPolicy",
            "spec.updateStrategy.rollingUpdate",
            "spec.persistentVolumeClaimRetentionPolicy.whenScaled"
        ]);
    }
}
